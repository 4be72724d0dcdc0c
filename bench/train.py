#!/usr/bin/env python3
"""End-to-end PPO throughput on the default town: agent-steps per second, with the time split
into env stepping, policy forward passes and learning.

`python bench/train.py [--json] [--epochs N] [--num-envs N]`
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from townlet import load_config
from townlet.sim.settings import PPOConfig
from townlet.training.envs import TownTrainEnv
from townlet.training.trainer import Trainer

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--rollout-ticks", type=int, default=128)
    p.add_argument("--torch-threads", type=int, default=1)
    args = p.parse_args()
    cfg = load_config(REPO / "configs/examples/poc_hybrid.yaml")
    ppo = PPOConfig(num_envs=args.num_envs, rollout_ticks=args.rollout_ticks, torch_threads=args.torch_threads)
    trainer = Trainer(TownTrainEnv(cfg, ppo.num_envs, 1, None), ppo, seed=1)
    trainer.run(1)  # warm-up epoch, not timed
    res = trainer.run(1 + args.epochs)  # to an epoch target: args.epochs more
    env = sum(r["time_env_sec"] for r in res.records)
    fwd = sum(r["time_policy_sec"] for r in res.records)
    learn = sum(r["time_learn_sec"] for r in res.records)
    total = sum(r["epoch_duration_sec"] for r in res.records)
    steps = sum(r["transitions"] for r in res.records)
    out = {
        "benchmark": "train",
        "agent_steps_per_sec": steps / total,
        "agent_steps": steps,
        "seconds": total,
        "split": {"env": env / total, "policy_forward": fwd / total, "learn": learn / total},
        "num_envs": args.num_envs,
        "goal_agent_steps_per_sec": 20_000,
    }
    if args.json:
        print(json.dumps(out, sort_keys=True))
        return
    print(
        f"PPO on the default town, {args.num_envs} towns x {args.rollout_ticks} ticks per epoch, {args.epochs} epochs"
    )
    print(f"  {out['agent_steps_per_sec']:,.0f} agent-steps/s end to end (goal 20,000)")
    s = out["split"]
    print(f"  time: env {s['env']:.0%}, policy forward {s['policy_forward']:.0%}, learning {s['learn']:.0%}")


if __name__ == "__main__":
    main()
