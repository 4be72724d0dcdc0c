#!/usr/bin/env python3
"""Is the trainer a correct PPO? Train on Gymnasium's CartPole-v1, through a one-agent PettingZoo
ParallelEnv adapter, for 500,000 steps with 3 seeds; the reference implementations reach a mean
return of about 490. Prints the final mean return (last 20 episodes) per seed.

`python bench/ppo_cartpole.py [--json] [--steps N] [--seeds 1 2 3]`
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from townlet.sim.settings import PPOConfig
from townlet.training.envs import GymAsParallel, ParallelTrainEnv
from townlet.training.network import MLPPolicy
from townlet.training.trainer import Trainer

NUM_ENVS = 4
ROLLOUT = 128


def train(seed: int, steps: int) -> tuple[float, float]:
    cfg = PPOConfig(
        learning_rate=2.5e-4,
        num_envs=NUM_ENVS,
        rollout_ticks=ROLLOUT,
        hidden=64,
        update_epochs=4,
        num_minibatches=4,
        ent_coef=0.01,
        torch_threads=1,
    )
    env = ParallelTrainEnv(lambda: GymAsParallel("CartPole-v1"), num_envs=NUM_ENVS)
    trainer = Trainer(env, cfg, seed=seed, policy=MLPPolicy(env.obs_dim, env.n_actions, 64))
    t0 = time.perf_counter()
    res = trainer.run(steps // (NUM_ENVS * ROLLOUT))
    return float(np.mean(res.episode_returns[-20:])), time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--steps", type=int, default=500_000)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = p.parse_args()
    finals, secs = [], []
    for seed in args.seeds:
        final, sec = train(seed, args.steps)
        finals.append(final)
        secs.append(sec)
        if not args.json:
            print(f"seed {seed}: final mean return {final:.1f} ({sec:.0f}s)", flush=True)
    if args.json:
        print(json.dumps({"final_mean_return": finals, "steps": args.steps, "seconds": secs}))
        return
    ok = all(f >= 475 for f in finals)
    print(f"goal: >= 475 for every seed within {args.steps:,} steps -> {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
