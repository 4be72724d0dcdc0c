#!/usr/bin/env python3
"""VecTown throughput: agent-steps per second with hybrid observations, 64 towns x the default
town's agents, random valid actions, with 1 and 2 threads; and the per-call overhead of a
single-town step (measured against stepping that town alone inside Rust, in the same process).

`python bench/vec_step.py [--json] [--steps N]`
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from townlet import load_config
from townlet.sim.env import VecTown

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs/examples/poc_hybrid.yaml"


def random_valid(rng: np.random.Generator, masks: np.ndarray) -> np.ndarray:
    scores = rng.random(masks.shape, dtype=np.float32) * masks
    return scores.argmax(axis=1)


def throughput(num_envs: int, threads: int, steps: int) -> float:
    vec = VecTown(load_config(CONFIG), num_envs, seed=1, num_threads=threads)
    vec.reset()
    rng = np.random.default_rng(0)
    actions = [random_valid(rng, vec.action_masks()) for _ in range(8)]  # pre-drawn, outside the timing
    for k in range(20):
        vec.step(actions[k % 8])
    t0 = time.perf_counter()
    for k in range(steps):
        vec.step(actions[k % 8])
    return vec.num_agents * steps / (time.perf_counter() - t0)


def call_overhead(steps: int, rounds: int = 21) -> dict[str, float]:
    """Per-call cost of VecTown.step for one town, minus the cost of the same ticks in Rust: `rounds` rounds of
    `steps` calls then `steps` native ticks, back to back, and the median of each and of the per-round
    differences (load from elsewhere on a shared machine falls on both sides of a round alike)."""
    cfg = load_config(CONFIG)
    vec = VecTown(cfg, 1, seed=1, num_threads=1)
    vec.reset()
    wait = np.zeros(vec.num_agents, np.int64)
    # Baseline: the same ticks (step, observations, masks) looped inside Rust, no Python between.
    base = VecTown(cfg, 1, seed=1, num_threads=1)
    base.reset()
    for _ in range(50):
        vec.step(wait)
    base.native.step_repeat(wait, 50)
    calls, ticks = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(steps):
            vec.step(wait)
        t1 = time.perf_counter()
        base.native.step_repeat(wait, steps)
        t2 = time.perf_counter()
        calls.append((t1 - t0) / steps)
        ticks.append((t2 - t1) / steps)
    return {
        "per_call_us": statistics.median(calls) * 1e6,
        "rust_tick_us": statistics.median(ticks) * 1e6,
        "overhead_us": max(statistics.median(c - t for c, t in zip(calls, ticks, strict=True)), 0.0) * 1e6,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--envs", type=int, default=64)
    args = p.parse_args()
    one = throughput(args.envs, 1, args.steps)
    two = throughput(args.envs, 2, args.steps)
    over = call_overhead(500)
    out = {
        "benchmark": "vec_step",
        "num_envs": args.envs,
        "variant": "hybrid",
        "agent_steps_per_sec_1_thread": one,
        "agent_steps_per_sec_2_threads": two,
        "thread_scaling": two / one,
        "single_town_call": over,
        # The bench convention (bench/README.md): figure path -> goal; figures shown without one.
        "goals": {
            "agent_steps_per_sec_2_threads": {"value": 1_000_000, "op": ">="},
            "single_town_call.overhead_us": {"value": 5.0, "op": "<="},
        },
        "figures": ["agent_steps_per_sec_1_thread", "thread_scaling"],
    }
    if args.json:
        print(json.dumps(out, sort_keys=True))
        return
    print(f"VecTown, {args.envs} towns x default town, hybrid observations, random valid actions")
    print(f"  1 thread : {one:>12,.0f} agent-steps/s")
    print(f"  2 threads: {two:>12,.0f} agent-steps/s  ({two / one:.2f}x)   goal 1,000,000")
    print(
        f"  single-town step: {over['per_call_us']:.1f} us per call, of which ~{over['overhead_us']:.1f} us overhead"
        f" beyond the same tick looped in Rust ({over['rust_tick_us']:.1f} us)   goal < 5 us"
    )


if __name__ == "__main__":
    main()
