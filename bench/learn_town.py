#!/usr/bin/env python3
"""Does PPO learn the town? PPO on the default town for a fixed wall-clock budget, from scratch or
warm-started by behaviour cloning, against the scripted expert's mean episode return on the same
towns and seeds.

`python bench/learn_town.py [--json] [--minutes M] [--num-envs N] [--bc-days D [--bc-epochs E]]`

With `--bc-days D` the expert is captured for D days (one town, its own seed), the policy is cloned
from that capture (the `bc` phase's trainer, accuracy on held-out ticks), its greedy return is
measured, and PPO then starts from those weights; the BC time counts against the budget.

Prints the learning curve (episode return per epoch), both KPI sets (expert, and the trained
policy run greedily on fresh towns), and `ratio = ppo_return / expert_return`. An acceptance
script, not a CI test.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from townlet import load_config
from townlet.capture.rollout import capture_rollout
from townlet.sim.config import TownConfig
from townlet.sim.env import VecTown
from townlet.sim.settings import BCConfig, PPOConfig
from townlet.training.bc import BCTrainer, split_rows
from townlet.training.data import load_replay
from townlet.training.envs import TownTrainEnv
from townlet.training.network import ActorCritic
from townlet.training.trainer import Trainer, make_policy

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


def greedy_of(policy: ActorCritic) -> Callable[[VecTown, np.ndarray], np.ndarray]:
    def greedy(vec: VecTown, obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            a, _, _ = policy.act(torch.from_numpy(obs), torch.from_numpy(vec.action_masks()), deterministic=True)
        return a.numpy().astype(np.int64)

    return greedy


def behaviour_clone(
    cfg: TownConfig, env: TownTrainEnv, *, days: int, epochs: int, seed: int
) -> tuple[ActorCritic, dict[str, float]]:
    """Capture `days` days of the expert in one town (seed 20_000 + seed) and clone it."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        capture_rollout(cfg.with_seed(20_000 + seed), Path(tmp), ticks=EPISODE * days)
        data = load_replay(None, Path(tmp))
    bc_cfg = BCConfig(epochs=epochs, batch_size=256)
    train, holdout = split_rows(data.samples, bc_cfg)
    meta = env.metadata()
    torch.manual_seed(seed)
    policy = make_policy(meta, env.obs_dim, env.n_actions, bc_cfg.hidden)
    bc = BCTrainer(policy, bc_cfg, train, holdout, seed=seed)
    recs = bc.run(epochs)
    policy.eval()
    return policy, {
        "rows": float(len(train)),
        "holdout_accuracy": float(recs[-1]["holdout_accuracy"]),
        "train_accuracy": float(recs[-1]["train_accuracy"]),
        "seconds": time.perf_counter() - t0,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--minutes", type=float, default=15.0, help="training wall-clock budget")
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--bc-days", type=int, default=0, help="warm start: clone D days of the expert first")
    p.add_argument("--bc-epochs", type=int, default=5)
    args = p.parse_args()
    cfg = load_config(CONFIG)

    expert_return, expert_kpis = episode_return(
        cfg, lambda vec, obs: vec.expert_actions()[0].copy(), envs=args.num_envs, seed=10_000 + args.seed
    )

    ppo = PPOConfig(num_envs=args.num_envs, rollout_ticks=128, episode_ticks=EPISODE, torch_threads=1, anneal_lr=False)
    env = TownTrainEnv(cfg, ppo.num_envs, args.seed, ppo.episode_ticks)
    deadline = time.perf_counter() + 60 * args.minutes
    t0 = time.perf_counter()
    bc: dict[str, float] | None = None
    policy = None
    if args.bc_days:
        policy, bc = behaviour_clone(cfg, env, days=args.bc_days, epochs=args.bc_epochs, seed=args.seed)
        bc["return"], _ = episode_return(cfg, greedy_of(policy), envs=args.num_envs, seed=10_000 + args.seed)
        if not args.json:
            print(
                f"bc: {bc['rows']:,} rows, held-out accuracy {bc['holdout_accuracy']:.3f}, "
                f"greedy return {bc['return']:.3f}, {bc['seconds']:.0f} s",
                flush=True,
            )
    trainer = Trainer(env, ppo, seed=args.seed, policy=policy)
    curve: list[tuple[int, float]] = []
    while time.perf_counter() < deadline:
        res = trainer.run(trainer.epoch + 1)  # one more epoch (run() trains to an epoch target)
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

    ppo_return, ppo_kpis = episode_return(
        cfg, greedy_of(trainer.policy.eval()), envs=args.num_envs, seed=10_000 + args.seed
    )
    out = {
        "bc": bc,
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
    print(f"trained {trainer.steps:,} agent-steps in {minutes:.1f} min" + (" (bc included)" if bc else ""))
    for name in ("self_sufficiency", "on_time_rate", "relationship_coverage", "faints"):
        print(f"  {name:24s} expert {expert_kpis[name]:8.3f}   ppo {ppo_kpis[name]:8.3f}")


if __name__ == "__main__":
    main()
