#!/usr/bin/env python3
"""End-to-end PPO throughput on the default town: agent-steps per second, with the epoch's wall
time split into env stepping, policy inference while collecting, learning and the rest.

`python bench/train.py [--json] [--epochs N] [--num-envs N] [--rollout-ticks T] [--torch-threads N|auto]
[--precision bf16|fp32] [--overlap] [--vs REF | --vs-threads N|auto | --vs-overlap] [--pairs N]`

The figures are the trainer's own per-epoch timings (the telemetry's `time_*` fields), summed over
the timed epochs after one warm-up epoch. The goal is twice `BASELINE_AGENT_STEPS_PER_SEC`, the
figure this script gave before the speed work (same flags, same machine); on a shared machine
compare A/B in one command instead of against the constant. `agent_steps_per_cpu_sec` divides by
the process's CPU time instead of the wall clock: on a machine shared with other work it moves
much less than the wall-clock figure (with one torch thread). `--torch-threads` defaults to the
config's `auto` (each phase on one thread or every usable CPU, whichever measures faster:
training/threads.py); `threads_used` says what each phase last ran on.

`--vs REF` is the A/B on a shared machine: the same measurement, in fresh processes, of this tree and of
git revision REF's Python package and configs (with this tree's native extension, so it compares the
Python side), taking turns `--pairs` times; it prints each pair's ratio (this tree over REF) and
their median, for agent-steps per second and per CPU second. `--vs-threads T` is the same A/B
between thread settings of this tree: `--torch-threads` over `T` (for instance `--torch-threads
auto --vs-threads 1`; with `--overlap` both sides collect ahead; each pair names the `torch_threads` and
`overlap` each side ran with). `--overlap` measures with `ppo.overlap` (the next epoch collected in a second
process during the update; the parts then overlap in time, so `time_split` gives each one's share of
their sum; with `--vs REF` both sides collect ahead, and a REF from before `ppo.overlap` fails with its
config error), and `--vs-overlap` is the A/B of `--overlap` over the same settings without it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from townlet import load_config
from townlet.sim.settings import PPOConfig

REPO = Path(__file__).resolve().parent.parent

#: Measured 2026-11-30 at commit 727c499 (before the speed work), default flags (16 towns x 9
#: agents, 128 ticks, 1 torch thread), on the 2-core AMD EPYC development box while it was idle.
BASELINE_AGENT_STEPS_PER_SEC = 39_100
BASELINE_DATE = "2026-11-30"
GOAL_FACTOR = 2.0

SPLIT_FIELDS = {
    "env": "time_env_sec",
    "inference": "time_inference_sec",
    "learn": "time_learn_sec",
    "other": "time_other_sec",
}


CONFIG = "configs/examples/poc_hybrid.yaml"


def measure(
    num_envs: int,
    rollout_ticks: int,
    epochs: int,
    torch_threads: int | str,
    precision: str,
    root: Path = REPO,
    overlap: bool = False,
) -> dict[str, Any]:
    # Imported here: `--vs` only runs other processes, so it never loads torch itself.
    from townlet.training.envs import TownTrainEnv
    from townlet.training.trainer import Trainer

    cfg = load_config(root / CONFIG)
    fields: dict[str, Any] = {"overlap": True} if overlap else {}
    try:
        ppo = PPOConfig(
            num_envs=num_envs, rollout_ticks=rollout_ticks, torch_threads=torch_threads, precision=precision, **fields
        )
    except ValueError:  # `--vs REF` with an older tree that has no `auto`: its default then
        ppo = PPOConfig(num_envs=num_envs, rollout_ticks=rollout_ticks, precision=precision)
    trainer = Trainer(TownTrainEnv(cfg, ppo.num_envs, 1, None), ppo, seed=1)
    trainer.run(1)  # warm-up epoch, not timed
    cpu0 = time.process_time()
    res = trainer.run(1 + epochs)  # to an epoch target: `epochs` more
    cpu = time.process_time() - cpu0
    total = sum(r["epoch_duration_sec"] for r in res.records)
    steps = sum(r["transitions"] for r in res.records)
    parts = {name: sum(r[field] for r in res.records) for name, field in SPLIT_FIELDS.items()}
    # Collecting ahead, the parts overlap in time: the split is then each part's share of their sum (of the work).
    split = {name: part / (sum(parts.values()) if overlap else total) for name, part in parts.items()}
    return {
        "agent_steps_per_sec": steps / total,
        "agent_steps_per_cpu_sec": steps / cpu if cpu > 0 else 0.0,
        "agent_steps": steps,
        "seconds": total,
        "time_split": split,
        "torch_threads": ppo.torch_threads,
        "overlap": overlap,
        "threads_used": dict(getattr(getattr(trainer, "threads", None), "last", {})),
    }


def checkout(ref: str, into: Path) -> Path:
    """REF's `python/` and `configs/` under `into`, with this tree's native extension; returns the
    root to measure from."""
    tar = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", ref, "python", "configs"], capture_output=True, check=False
    )
    if tar.returncode != 0:
        print(f"error: --vs {ref}: {tar.stderr.decode().strip() or 'git archive failed'}", file=sys.stderr)
        sys.exit(2)
    with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as archive:
        archive.extractall(into, filter="data")
    from townlet import _core  # the extension built here: the A/B compares the Python side

    shutil.copy2(_core.__file__, into / "python/townlet" / Path(str(_core.__file__)).name)
    return into


def run_one(root: Path, argv: list[str]) -> dict[str, Any]:
    """One measurement in a fresh process importing townlet from `root`/python."""
    env = {**os.environ, "PYTHONPATH": str(root / "python")}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--json", "--root", str(root), *argv]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"error: the measurement under {root} failed: {proc.stderr.strip().splitlines()[-1:]}")
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def versus(ref: str, pairs: int, argv: list[str], ref_argv: list[str] | None = None) -> dict[str, Any]:
    """`pairs` turns of (REF, this tree), alternating which goes first; per-pair ratios and medians.
    With `ref_argv` the "ref" side is this tree too, run with those arguments."""
    with tempfile.TemporaryDirectory(prefix="bench-train-vs-") as tmp:
        roots = {"ref": REPO if ref_argv is not None else checkout(ref, Path(tmp)), "this": REPO}
        argvs = {"ref": argv if ref_argv is None else ref_argv, "this": argv}
        rows: list[dict[str, Any]] = []
        for i in range(pairs):
            order = ("ref", "this") if i % 2 == 0 else ("this", "ref")
            got = {side: run_one(roots[side], argvs[side]) for side in order}
            keys = ("agent_steps_per_sec", "agent_steps_per_cpu_sec", "torch_threads", "overlap")
            rows.append({side: {k: got[side][k] for k in keys if k in got[side]} for side in ("ref", "this")})
    for row in rows:  # each side with the settings it ran with
        for key in ("agent_steps_per_sec", "agent_steps_per_cpu_sec"):
            row[f"ratio_{key}"] = row["this"][key] / row["ref"][key]
    return {
        "ref": ref,
        "pairs": rows,
        "median_ratio": statistics.median(r["ratio_agent_steps_per_sec"] for r in rows),
        "median_ratio_cpu": statistics.median(r["ratio_agent_steps_per_cpu_sec"] for r in rows),
    }


def threads_arg(text: str) -> int | str:
    """`--torch-threads`: a count (>= 1) or auto, as `ppo.torch_threads`."""
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a count (>= 1) or auto, got {text!r}")
    return int(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--rollout-ticks", type=int, default=128)
    p.add_argument("--torch-threads", type=threads_arg, default=PPOConfig().torch_threads, help="a count or auto")
    p.add_argument("--precision", choices=("bf16", "fp32"), default=PPOConfig().precision)
    p.add_argument("--vs", metavar="REF", help="A/B against git revision REF (this tree over REF, per pair)")
    p.add_argument("--vs-threads", type=threads_arg, help="A/B: --torch-threads over this thread setting, per pair")
    p.add_argument("--overlap", action="store_true", help="collect the next epoch while learning (ppo.overlap)")
    p.add_argument("--vs-overlap", action="store_true", help="A/B: --overlap over the same settings without it")
    p.add_argument("--pairs", type=int, default=5, help="with --vs or --vs-threads: how many (ref, this) turns")
    p.add_argument("--root", type=Path, default=REPO, help=argparse.SUPPRESS)  # --vs: the tree whose configs to use
    args = p.parse_args()
    if sum((args.vs is not None, args.vs_threads is not None, args.vs_overlap)) > 1:
        p.error("--vs, --vs-threads and --vs-overlap: choose one")
    if args.vs_overlap and args.torch_threads == "auto":
        p.error("--vs-overlap: needs a fixed --torch-threads (ppo.overlap refuses auto)")
    if args.vs is not None or args.vs_threads is not None or args.vs_overlap:
        if args.pairs < 1:
            p.error("--pairs must be at least 1")
        common = ["--epochs", str(args.epochs), "--num-envs", str(args.num_envs)]
        common += ["--rollout-ticks", str(args.rollout_ticks), "--precision", args.precision]
        mine = [*common, "--torch-threads", str(args.torch_threads)]
        ref_argv, label = None, args.vs
        if args.vs_threads is not None:  # the same settings but the count (collecting ahead too, with --overlap)
            ref_argv = [*common, "--torch-threads", str(args.vs_threads), *(["--overlap"] if args.overlap else [])]
            label = f"--torch-threads {args.vs_threads}"
        elif args.vs_overlap:
            ref_argv, label = mine, "no overlap"
        ab = versus(label, args.pairs, [*mine, *(["--overlap"] if args.overlap or args.vs_overlap else [])], ref_argv)
        if args.json:
            print(json.dumps({"benchmark": "train_vs", **ab}, sort_keys=True))
            return
        this = "this tree"
        if args.vs_threads is not None:
            this = f"--torch-threads {args.torch_threads}"
        elif args.vs_overlap:
            this = "--overlap"
        print(f"{this} over {label}, {args.pairs} pairs ({args.precision}, {args.epochs} epochs each):")
        for i, row in enumerate(ab["pairs"], 1):
            print(
                f"  pair {i}: {row['ref']['agent_steps_per_sec']:,.0f} -> {row['this']['agent_steps_per_sec']:,.0f} "
                f"agent-steps/s, ratio {row['ratio_agent_steps_per_sec']:.3f} (per CPU second "
                f"{row['ratio_agent_steps_per_cpu_sec']:.3f})"
            )
        print(f"  median ratio {ab['median_ratio']:.3f} (per CPU second {ab['median_ratio_cpu']:.3f})")
        return
    if args.overlap and args.torch_threads == "auto":
        p.error("--overlap: needs a fixed --torch-threads (ppo.overlap refuses auto)")
    res = measure(
        args.num_envs, args.rollout_ticks, args.epochs, args.torch_threads, args.precision, args.root, args.overlap
    )
    goal = GOAL_FACTOR * BASELINE_AGENT_STEPS_PER_SEC
    out = {
        "benchmark": "train",
        **res,
        "num_envs": args.num_envs,
        "precision": args.precision,
        "baseline_agent_steps_per_sec": BASELINE_AGENT_STEPS_PER_SEC,
        "baseline_date": BASELINE_DATE,
        "goal_agent_steps_per_sec": goal,
        "vs_baseline": res["agent_steps_per_sec"] / BASELINE_AGENT_STEPS_PER_SEC,
        "goals": {"agent_steps_per_sec": {"value": goal, "op": ">="}},
        "figures": ["vs_baseline", *(f"time_split.{k}" for k in SPLIT_FIELDS)],
    }
    if args.json:
        print(json.dumps(out, sort_keys=True))
        return
    print(
        f"PPO on the default town, {args.num_envs} towns x {args.rollout_ticks} ticks per epoch, {args.epochs} epochs, "
        f"{args.precision}"
    )
    print(
        f"  {out['agent_steps_per_sec']:,.0f} agent-steps/s end to end "
        f"(goal {goal:,.0f}: {GOAL_FACTOR:g}x the {BASELINE_AGENT_STEPS_PER_SEC:,} measured on {BASELINE_DATE}; "
        f"now {out['vs_baseline']:.2f}x)"
    )
    print(f"  {out['agent_steps_per_cpu_sec']:,.0f} agent-steps per CPU second")
    used = ", ".join(f"{phase} {n}" for phase, n in out["threads_used"].items())
    print(f"  torch threads {args.torch_threads} (last used: {used})")
    s = out["time_split"]
    print(f"  time: env {s['env']:.0%}, inference {s['inference']:.0%}, learn {s['learn']:.0%}, other {s['other']:.0%}")


if __name__ == "__main__":
    main()
