#!/usr/bin/env python3
"""Tick throughput: agent-steps per second of the scripted town, stepped from Python in large
batches on one core, for the default town and for a 64-agent town.

`python bench/tick.py [--json] [--ticks N] [--repeats R]`
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from townlet import Simulation, load_config

REPO = Path(__file__).resolve().parent.parent
TOWNS = {
    "default": REPO / "configs/examples/poc_hybrid.yaml",
    "town64": REPO / "configs/examples/town64.yaml",
}
#: Ticks per native call: large batches, so Python overhead is negligible.
BATCH = 1440


def measure(config: Path, ticks: int, repeats: int) -> dict[str, float]:
    cfg = load_config(config)
    best = 0.0
    agents = 0
    for _ in range(repeats):
        sim = Simulation(cfg)
        agents = sim.town.n_agents
        sim.run(BATCH)  # warm-up: first day out of the timing
        before = sim.town.agent_steps
        t0 = time.perf_counter()
        done = 0
        while done < ticks:
            n = min(BATCH, ticks - done)
            sim.run(n)
            done += n
        elapsed = time.perf_counter() - t0
        best = max(best, (sim.town.agent_steps - before) / elapsed)
    return {"agents": agents, "ticks": ticks, "agent_steps_per_sec": best, "ticks_per_sec": best / max(agents, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--ticks", type=int, default=14400, help="timed ticks per repeat (default 10 days)")
    p.add_argument("--repeats", type=int, default=3, help="repeats; the best is reported")
    args = p.parse_args()
    results = {name: measure(path, args.ticks, args.repeats) for name, path in TOWNS.items()}
    goal = 2_000_000
    out = {
        "benchmark": "tick",
        "threads": 1,
        "towns": results,
        "default_vs_goal": results["default"]["agent_steps_per_sec"] / goal,
        # The bench convention (bench/README.md): figure path -> goal; figures shown without one.
        "goals": {"towns.default.agent_steps_per_sec": {"value": goal, "op": ">="}},
        "figures": ["towns.town64.agent_steps_per_sec"],
    }
    if args.json:
        print(json.dumps(out, sort_keys=True))
        return
    print("scripted town, one core, stepped from Python in batches of", BATCH, "ticks")
    for name, r in results.items():
        print(
            f"  {name:8s} {r['agents']:3d} agents: {r['agent_steps_per_sec']:>13,.0f} agent-steps/s"
            f"  ({r['ticks_per_sec']:,.0f} ticks/s)"
        )
    print(f"  goal {goal:,} agent-steps/s for the default town: {out['default_vs_goal']:.2f}x")


if __name__ == "__main__":
    main()
