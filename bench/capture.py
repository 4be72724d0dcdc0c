#!/usr/bin/env python3
"""Rollout capture cost: wall time of capturing the five golden scenarios in-process, and the capture
overhead relative to stepping the same towns the same ticks under the same expert actions without
recording or writing anything; plus the same for a longer capture of the default town (1440 ticks),
where the fixed costs weigh less. Every figure is measured in this process, interleaved, median of
several repeats; overheads are ratios of those medians.

`python bench/capture.py [--json] [--repeats N] [--long-ticks T]`   (goal: overhead < 10 %)

Yardsticks (all printed; the first is the original one and the one the goal is stated against):

* `step_only`: the town built, reset and stepped from Python one tick at a time (`expert_actions`
  then `step`), as a user of `VecTown` steps it.
* `step_native`: the same ticks stepped by the Rust loop a capture runs (`VecTown.run_expert`:
  the same expert, the same masking, every observation built), without writing anything. A capture
  steps through that loop, so it no longer pays the per-tick Python calls that `step_only` pays;
  this stricter yardstick keeps that saving from hiding capture costs.
* `io_floor`: what the files alone cost on this disk: the same number of files with the same
  sizes (zero bytes) written into a staging folder, each fsynced (in parallel, by the capture's own
  `publish`), then renamed into place — with no stepping, no arrays, no hashing. A capture cannot
  be cheaper than its own file writes and fsyncs; `beyond floor` is the overhead left after both
  the native stepping and this floor are subtracted (it can be negative: a capture overlaps its
  writes with stepping).

Diagnostics: `record_only` (the native loop recording into the capture arrays, nothing else) and
`no_fsync` (a full capture with `os.fsync` patched out: never a mode of the tool).

`plain_writer`: the same capture written the plain way, to hold the streaming .npz writer
(`townlet.capture.npz`) to its keep: the whole run recorded first, then each sample made by
`npz_bytes` (`zipfile`, as `np.savez` would) and published by the same `publish`; the files are
byte-identical (checked on the first round). The streaming writer stays only while
`plain_writer_ratio` (plain / streaming) is above 1 on the default town.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from townlet import load_config
from townlet.capture import rollout
from townlet.capture.npz import npz_bytes
from townlet.capture.rollout import capture_rollout, publish, scripted_config
from townlet.sim.config import TownConfig
from townlet.sim.env import VecTown

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = ("kitchen_breakfast", "queue_conflict", "employment_punctuality", "rivalry_decay", "observation_baseline")
DEFAULT_TOWN = REPO / "configs/examples/poc_hybrid.yaml"
GOAL_OVERHEAD = 0.10
SETS = ("suite", "suite_compressed", "default_town", "default_town_compressed")


def _town(config: TownConfig, ticks: int) -> VecTown:
    return VecTown(scripted_config(config, auto_seed_agents=False), 1, None, episode_ticks=ticks + 1, num_threads=1)


def step_only(config: TownConfig, ticks: int) -> float:
    """The same town, seed and ticks as a capture, under the expert, with nothing recorded or written."""
    t0 = time.perf_counter()
    vec = _town(config, ticks)
    vec.reset(None)
    for _ in range(ticks):
        actions, _ = vec.expert_actions()
        vec.step(actions)
    return time.perf_counter() - t0


def step_native(config: TownConfig, ticks: int) -> float:
    """`step_only` through the capture's own Rust loop, recording nothing."""
    t0 = time.perf_counter()
    vec = _town(config, ticks)
    vec.reset(None)
    vec.native.run_expert(ticks)
    return time.perf_counter() - t0


def record_only(config: TownConfig, ticks: int) -> float:
    """`step_native` recording every tick into the capture's agent-major arrays; no metrics or files."""
    t0 = time.perf_counter()
    vec = _town(config, ticks)
    n, a, ml, nf = vec.num_agents, vec.n_actions, int(np.prod(vec.native.map_shape)), vec.native.n_features
    arrays = (
        np.empty((n, ticks, ml), np.float32),
        np.empty((n, ticks, nf), np.float32),
        np.empty((n, ticks, a), np.bool_),
        np.empty((n, ticks), np.int64),
        np.empty((n, ticks), np.float32),
        np.empty((n, ticks), np.float32),
        np.empty((n, ticks), np.bool_),
        np.empty((n, ticks), np.bool_),
    )
    vec.reset(None)
    vec.native.capture_expert(0, ticks, *arrays)
    return time.perf_counter() - t0


@contextmanager
def no_fsync() -> Iterator[None]:
    """Diagnostics only: a capture with its fsyncs left out."""
    with mock.patch("townlet.capture.staging.os.fsync", lambda fd: None):
        yield


def capture_once(config: TownConfig, ticks: int, out: Path, *, compress: bool) -> tuple[float, dict[str, int]]:
    t0 = time.perf_counter()
    result = capture_rollout(config, out, ticks=ticks, compress=compress)
    elapsed = time.perf_counter() - t0
    return elapsed, {p.name: p.stat().st_size for p in result.files}


def plain_writer(config: TownConfig, ticks: int, out: Path, *, compress: bool) -> tuple[float, dict[str, bytes]]:
    """The capture with `npz_bytes` + `publish` instead of the streaming writer (same files)."""
    t0 = time.perf_counter()
    plan = rollout._plan(config, ticks=ticks, agent_id=None, prefix=rollout.DEFAULT_PREFIX, policy=None,
                         policy_name="scripted", seed=None)  # fmt: skip
    vec = plan.vec
    rec = rollout._Recording.allocate(
        vec.num_agents, ticks, int(np.prod(plan.map_shape)), int(plan.meta["n_features"]), vec.n_actions
    )
    vec.reset(None)
    vec.native.capture_expert(0, ticks, *rec.native_args())
    rec.close_episode()
    arrays = [rec.sample(slot, plan.map_shape) for slot in plan.slots]
    docs = rollout._documents(plan, arrays, rollout.event_metrics(vec.native))
    files = {
        f"{plan.stems[slot]}.npz": npz_bytes(a, compress=compress) for slot, a in zip(plan.slots, arrays, strict=True)
    }
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    files.update(docs.sidecars)
    files[plan.metrics_name] = docs.metrics_file
    files[plan.manifest_name] = rollout._manifest(plan, docs, digests)
    written = publish(out, files, last=plan.manifest_name)
    elapsed = time.perf_counter() - t0
    return elapsed, {p.name: p.read_bytes() for p in written}


def io_floor(out: Path, files: dict[str, bytes]) -> float:
    """The files alone: written, fsynced and renamed into place by the capture's `publish`."""
    last = next(name for name in files if name.endswith("_manifest.json"))
    t0 = time.perf_counter()
    publish(out, files, last=last)
    return time.perf_counter() - t0


def measure(configs: list[tuple[str, TownConfig, int]], repeats: int, *, compress: bool) -> dict[str, Any]:
    """Median over `repeats` of the whole set captured, stepped, recorded, written (interleaved)."""
    keys = ("capture", "step", "native", "record", "no_fsync", "io_floor", "plain")
    runs: dict[str, list[float]] = {k: [] for k in keys}
    written = 0
    with tempfile.TemporaryDirectory(prefix="townlet-bench-capture-") as tmp:
        sizes: dict[str, dict[str, int]] = {}
        for r in range(repeats + 1):  # the first round warms caches and is not counted
            tot = dict.fromkeys(keys, 0.0)
            for name, cfg, ticks in configs:
                tot["step"] += step_only(cfg, ticks)
                tot["native"] += step_native(cfg, ticks)
                tot["record"] += record_only(cfg, ticks)
                elapsed, size = capture_once(cfg, ticks, Path(tmp) / f"{name}_{r}", compress=compress)
                tot["capture"] += elapsed
                with no_fsync():
                    tot["no_fsync"] += capture_once(cfg, ticks, Path(tmp) / f"{name}_{r}_nf", compress=compress)[0]
                plain_sec, plain_files = plain_writer(cfg, ticks, Path(tmp) / f"{name}_{r}_plain", compress=compress)
                tot["plain"] += plain_sec
                if r == 0:
                    sizes[name] = size
                    written += sum(size.values())
                    streamed = {p.name: p.read_bytes() for p in (Path(tmp) / f"{name}_{r}").iterdir()}
                    if streamed != plain_files:
                        raise SystemExit(f"{name}: the plain writer's files differ from the capture's")
                files = {fname: bytes(nbytes) for fname, nbytes in sizes[name].items()}
                tot["io_floor"] += io_floor(Path(tmp) / f"{name}_{r}_io", files)
            if r:
                for key, value in tot.items():
                    runs[key].append(value)
    med = {key: statistics.median(values) for key, values in runs.items()}
    ticks = sum(t for _, _, t in configs)
    cap, step, native = med["capture"], med["step"], med["native"]
    return {
        "towns": [n for n, _, _ in configs],
        "ticks": ticks,
        "compress": compress,
        "repeats": repeats,
        "files": sum(len(s) for s in sizes.values()),
        "capture_sec": cap,
        "step_only_sec": step,
        "overhead_ratio": cap / step - 1.0,
        "step_native_sec": native,
        "overhead_ratio_vs_native": cap / native - 1.0,
        "record_only_sec": med["record"],
        "overhead_ratio_record_only": med["record"] / native - 1.0,
        "capture_no_fsync_sec": med["no_fsync"],
        "overhead_ratio_no_fsync": med["no_fsync"] / native - 1.0,
        "io_floor_sec": med["io_floor"],
        "overhead_ratio_io_floor": med["io_floor"] / native,
        "overhead_ratio_beyond_floor": cap / (native + med["io_floor"]) - 1.0,
        "plain_writer_sec": med["plain"],
        "plain_writer_ratio": med["plain"] / cap,
        "bytes_written": written,
        "ms_per_tick_capture": cap / ticks * 1e3,
        "ms_per_tick_step_only": step / ticks * 1e3,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--repeats", type=int, default=7, help="timed repeats (median reported)")
    p.add_argument("--long-ticks", type=int, default=1440, help="ticks of the default-town capture")
    p.add_argument("--only", default="", help="comma-separated subset of: " + ", ".join(SETS))
    args = p.parse_args()
    only = [k for k in args.only.split(",") if k] or list(SETS)
    if unknown := sorted(set(only) - set(SETS)):
        p.error(f"--only: unknown {', '.join(unknown)} (choose from {', '.join(SETS)})")

    suite = []
    for name in SCENARIOS:
        cfg = load_config(REPO / f"configs/scenarios/{name}.yaml")
        suite.append((name, cfg, int(cfg.scenario_ticks or 100)))
    long = [("default_town", load_config(DEFAULT_TOWN), args.long_ticks)]

    plan = {
        "suite": (suite, args.repeats, False),
        "suite_compressed": (suite, args.repeats, True),
        "default_town": (long, args.repeats, False),
        "default_town_compressed": (long, max(1, args.repeats // 2), True),
    }
    out: dict[str, Any] = {"benchmark": "capture", "goal_overhead_ratio": GOAL_OVERHEAD}
    for key in only:
        configs, repeats, compress = plan[key]
        out[key] = measure(configs, repeats, compress=compress)
    if args.json:
        print(json.dumps(out, sort_keys=True))
        return

    def lines(label: str, m: dict[str, Any]) -> list[str]:
        ms = {k: m[k] * 1e3 for k in m if k.endswith("_sec")}
        return [
            f"  {label} ({m['ticks']} ticks, {m['files']} files, {m['bytes_written'] / 1e6:.2f} MB;"
            f" median of {m['repeats']})",
            f"    capture {ms['capture_sec']:7.1f} ms vs stepping from Python {ms['step_only_sec']:6.1f} ms"
            f"  -> overhead {m['overhead_ratio']:+7.1%}   [original yardstick; goal < {GOAL_OVERHEAD:.0%}]",
            f"    {'':15} vs stepping natively    {ms['step_native_sec']:6.1f} ms"
            f"  -> overhead {m['overhead_ratio_vs_native']:+7.1%}   [same loop as the capture]",
            f"    of which: recording into arrays {ms['record_only_sec']:.1f} ms"
            f" ({m['overhead_ratio_record_only']:+.0%}); capture without fsync {ms['capture_no_fsync_sec']:.1f} ms"
            f" ({m['overhead_ratio_no_fsync']:+.0%})",
            f"    I/O floor (same files and sizes: write, fsync, rename; nothing else) {ms['io_floor_sec']:.1f} ms"
            f" (= {m['overhead_ratio_io_floor']:.0%} of native stepping); capture beyond native stepping + floor"
            f" {m['overhead_ratio_beyond_floor']:+.0%}",
            f"    plain writer (npz_bytes + publish, same bytes) {ms['plain_writer_sec']:.1f} ms"
            f" = {m['plain_writer_ratio']:.2f}x the streaming capture",
        ]

    print("Rollout capture, in-process; overhead = capture / stepping - 1 (ratios of medians, same process)")
    labels = {
        "suite": "5-scenario suite",
        "suite_compressed": "5-scenario suite --compress",
        "default_town": f"default town, {args.long_ticks} ticks",
        "default_town_compressed": "default town --compress",
    }
    for key in only:
        print("\n".join(lines(labels[key], out[key])))


if __name__ == "__main__":
    main()
