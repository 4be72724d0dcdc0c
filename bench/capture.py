#!/usr/bin/env python3
"""Rollout capture cost: wall time of capturing the five golden scenarios in-process, and the capture
overhead relative to stepping the same towns the same ticks under the same expert actions without
recording or writing anything; plus the same for a longer capture of the default town (1440 ticks),
where the fixed costs weigh less. Both sides are measured in this process, median of several repeats.

`python bench/capture.py [--json] [--repeats N] [--long-ticks T]`   (goal: overhead < 10 %)
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from townlet import load_config
from townlet.capture import capture_rollout, scripted_config
from townlet.config import TownConfig
from townlet.env import VecTown

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = ("kitchen_breakfast", "queue_conflict", "employment_punctuality", "rivalry_decay", "observation_baseline")
DEFAULT_TOWN = REPO / "configs/examples/poc_hybrid.yaml"
GOAL_OVERHEAD = 0.10


def step_only(config: TownConfig, ticks: int) -> float:
    """The same town, seed and ticks as a capture, under the expert, with nothing recorded or written."""
    t0 = time.perf_counter()
    vec = VecTown(scripted_config(config, auto_seed_agents=False), 1, None, episode_ticks=ticks + 1, num_threads=1)
    vec.reset(None)
    for _ in range(ticks):
        actions, _ = vec.expert_actions()
        vec.step(actions)
    return time.perf_counter() - t0


@contextmanager
def without(part: str) -> Iterator[None]:
    """Diagnostics only: leave out the fsyncs ("fsync") or the whole file writing ("write")."""
    target = "townlet.capture.os.fsync" if part == "fsync" else "townlet.capture.publish"
    with mock.patch(target, lambda *a, **k: []):
        yield


def record_only(config: TownConfig, ticks: int) -> float:
    """`step_only` plus the per-tick copies a capture makes (observations, masks, actions, log-probs,
    rewards, dones, alive), into preallocated arrays; no metrics, serialisation or files."""
    t0 = time.perf_counter()
    vec = VecTown(scripted_config(config, auto_seed_agents=False), 1, None, episode_ticks=ticks + 1, num_threads=1)
    n, d, a = vec.num_agents, vec.obs_dim, vec.n_actions
    obs_log = np.zeros((ticks, n, d), np.float32)
    mask_log = np.zeros((ticks, n, a), np.bool_)
    act_log = np.zeros((ticks, n), np.int64)
    logp_log = np.zeros((ticks, n), np.float32)
    rew_log = np.zeros((ticks, n), np.float32)
    term_log = np.zeros((ticks, n), np.bool_)
    alive_log = np.zeros((ticks, n), np.bool_)
    obs, info = vec.reset(None)
    for t in range(ticks):
        obs_log[t] = obs
        mask_log[t] = vec.action_masks()
        alive_log[t] = info["alive"]
        act_log[t], logp_log[t] = vec.expert_actions()
        obs, rewards, terminated, _, info = vec.step(act_log[t])
        rew_log[t] = rewards
        term_log[t] = terminated
    return time.perf_counter() - t0


def capture_once(config: TownConfig, ticks: int, out: Path, *, compress: bool, skip: str = "") -> tuple[float, int]:
    with without(skip) if skip else nullcontext():
        t0 = time.perf_counter()
        result = capture_rollout(config, out, ticks=ticks, compress=compress)
        elapsed = time.perf_counter() - t0
    return elapsed, sum(p.stat().st_size for p in result.files)


def measure(configs: list[tuple[str, TownConfig, int]], repeats: int, *, compress: bool) -> dict[str, Any]:
    """Median over `repeats` of the whole set captured, and of the whole set only stepped (interleaved)."""
    runs: dict[str, list[float]] = {"capture": [], "step": [], "record": [], "no_fsync": [], "no_write": []}
    written = 0
    with tempfile.TemporaryDirectory(prefix="townlet-bench-capture-") as tmp:
        for r in range(repeats + 1):  # the first round warms caches and is not counted
            tot = dict.fromkeys(runs, 0.0)
            for name, cfg, ticks in configs:
                tot["step"] += step_only(cfg, ticks)
                tot["record"] += record_only(cfg, ticks)
                elapsed, size = capture_once(cfg, ticks, Path(tmp) / f"{name}_{r}", compress=compress)
                tot["capture"] += elapsed
                for skip in ("fsync", "write"):
                    out = Path(tmp) / f"{name}_{r}_{skip}"
                    tot[f"no_{skip}"] += capture_once(cfg, ticks, out, compress=compress, skip=skip)[0]
                if r == 0:
                    written += size
            if r:
                for key, value in tot.items():
                    runs[key].append(value)
    med = {key: statistics.median(values) for key, values in runs.items()}
    cap_med, step_med = med["capture"], med["step"]
    ticks = sum(t for _, _, t in configs)
    return {
        "towns": [n for n, _, _ in configs],
        "ticks": ticks,
        "compress": compress,
        "capture_sec": cap_med,
        "step_only_sec": step_med,
        "overhead_ratio": cap_med / step_med - 1.0,
        "record_only_sec": med["record"],
        "overhead_ratio_record_only": med["record"] / step_med - 1.0,
        "capture_no_fsync_sec": med["no_fsync"],
        "overhead_ratio_no_fsync": med["no_fsync"] / step_med - 1.0,
        "capture_no_write_sec": med["no_write"],
        "overhead_ratio_no_write": med["no_write"] / step_med - 1.0,
        "bytes_written": written,
        "ms_per_tick_capture": cap_med / ticks * 1e3,
        "ms_per_tick_step_only": step_med / ticks * 1e3,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    p.add_argument("--long-ticks", type=int, default=1440, help="ticks of the default-town capture")
    args = p.parse_args()

    suite = []
    for name in SCENARIOS:
        cfg = load_config(REPO / f"configs/scenarios/{name}.yaml")
        suite.append((name, cfg, int(cfg.scenario_ticks or 100)))
    long = [("default_town", load_config(DEFAULT_TOWN), args.long_ticks)]

    out: dict[str, Any] = {
        "benchmark": "capture",
        "suite": measure(suite, args.repeats, compress=False),
        "suite_compressed": measure(suite, args.repeats, compress=True),
        "default_town": measure(long, max(1, args.repeats // 2), compress=False),
        "default_town_compressed": measure(long, max(1, args.repeats // 2), compress=True),
        "goal_overhead_ratio": GOAL_OVERHEAD,
    }
    if args.json:
        print(json.dumps(out, sort_keys=True))
        return

    def line(label: str, m: dict[str, Any]) -> str:
        return (
            f"  {label:<26} {m['capture_sec'] * 1e3:8.1f} ms capture vs {m['step_only_sec'] * 1e3:8.1f} ms stepping"
            f"  -> overhead {m['overhead_ratio']:+7.1%}   ({m['ticks']} ticks, {m['bytes_written'] / 1e6:.2f} MB)"
        )

    def parts(m: dict[str, Any]) -> str:
        return (
            f"  {'':<26} of which: per-tick recording only {m['record_only_sec'] * 1e3:.1f} ms"
            f" ({m['overhead_ratio_record_only']:+.0%}); + metrics, npz, sha256, no files"
            f" {m['capture_no_write_sec'] * 1e3:.1f} ms ({m['overhead_ratio_no_write']:+.0%});"
            f" + files without fsync {m['capture_no_fsync_sec'] * 1e3:.1f} ms ({m['overhead_ratio_no_fsync']:+.0%})"
        )

    print("Rollout capture, in-process (median of repeats); overhead = capture / step-only - 1, goal < 10 %")
    for label, key in (
        ("5-scenario suite", "suite"),
        ("5-scenario suite --compress", "suite_compressed"),
        (f"default town, {args.long_ticks} ticks", "default_town"),
        ("default town --compress", "default_town_compressed"),
    ):
        print(line(label, out[key]))
        print(parts(out[key]))


if __name__ == "__main__":
    main()
