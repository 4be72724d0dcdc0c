#!/usr/bin/env python3
"""Does PPO learn the town? PPO from scratch on the default town for a fixed wall-clock budget,
against the scripted expert's mean episode return on the same towns and seeds.

`python bench/learn_town.py [--json] [--minutes M] [--num-envs N]`

Prints the learning curve (episode return per epoch), both KPI sets (expert, and the trained
policy run greedily on fresh towns), and `ratio = ppo_return / expert_return`. An acceptance
script, not a CI test.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from townlet import load_config
from townlet.config import TownConfig
from townlet.env import VecTown
from townlet.training.envs import TownTrainEnv
from townlet.training.settings import PPOConfig
from townlet.training.trainer import Trainer

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs/examples/poc_hybrid.yaml"
EPISODE = 1440


def episode_return(cfg: TownConfig, act: object, *, envs: int, seed: int) -> tuple[float, dict[str, float]]:
    """Mean per-agent return over one day in `envs` fresh towns, and the KPIs of town 0."""
    vec = VecTown(cfg, envs, seed, episode_ticks=EPISODE + 1, num_threads=0)
    obs, _ = vec.reset(seed)
    total = np.zeros(vec.num_agents)
    for _ in range(EPISODE):
        actions = act(vec, obs)  # type: ignore[operator]
        obs, rewards, *_ = vec.step(actions)
        total += rewards
    return float(total.mean()), {k: float(v) for k, v in vec.native.kpis(0).items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--minutes", type=float, default=15.0, help="training wall-clock budget")
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    cfg = load_config(CONFIG)

    expert_return, expert_kpis = episode_return(
        cfg, lambda vec, obs: vec.expert_actions()[0].copy(), envs=args.num_envs, seed=10_000 + args.seed
    )

    ppo = PPOConfig(num_envs=args.num_envs, rollout_ticks=128, episode_ticks=EPISODE, torch_threads=1, anneal_lr=False)
    env = TownTrainEnv(cfg, ppo.num_envs, args.seed, ppo.episode_ticks)
    trainer = Trainer(env, ppo, seed=args.seed)
    curve: list[tuple[int, float]] = []
    deadline = time.perf_counter() + 60 * args.minutes
    t0 = time.perf_counter()
    while time.perf_counter() < deadline:
        res = trainer.run(1)
        rec = res.records[-1]
        if rec["episodes"]:
            curve.append((int(rec["steps"]), float(rec["episode_return_mean"])))
        if not args.json and trainer.epoch % 10 == 0:
            last = curve[-1][1] if curve else float("nan")
            print(
                f"epoch {trainer.epoch:4d}  steps {trainer.steps:>9,}  return {last:8.3f}  sps {rec['sps']:,.0f}",
                flush=True,
            )
    minutes = (time.perf_counter() - t0) / 60

    policy = trainer.policy.eval()

    def greedy(vec: VecTown, obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            a, _, _ = policy.act(torch.from_numpy(obs), torch.from_numpy(vec.action_masks()), deterministic=True)
        return a.numpy().astype(np.int64)

    ppo_return, ppo_kpis = episode_return(cfg, greedy, envs=args.num_envs, seed=10_000 + args.seed)
    out = {
        "ppo_return": ppo_return,
        "expert_return": expert_return,
        "ratio": ppo_return / expert_return if expert_return else float("nan"),
        "minutes": minutes,
        "steps": trainer.steps,
        "curve": curve,
        "expert_kpis": expert_kpis,
        "ppo_kpis": ppo_kpis,
        "goal_ratio": 0.8,
    }
    if args.json:
        print(json.dumps(out, sort_keys=True))
        return
    print(
        f"expert return {expert_return:.3f}   PPO (greedy) return {ppo_return:.3f}   "
        f"ratio {out['ratio']:.2f} (goal 0.80)"
    )
    print(f"trained {trainer.steps:,} agent-steps in {minutes:.1f} min")
    for name in ("self_sufficiency", "on_time_rate", "relationship_coverage", "faints"):
        print(f"  {name:24s} expert {expert_kpis[name]:8.3f}   ppo {ppo_kpis[name]:8.3f}")


if __name__ == "__main__":
    main()
