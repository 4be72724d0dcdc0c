#!/usr/bin/env python3
"""Does PPO learn the town, and does it do the job? PPO on the default town for a fixed wall-clock
budget per seed, from scratch and warm-started by behaviour cloning, scored against the scripted
expert on return and on every charter KPI.

`python bench/learn_town.py [--json] [--minutes M] [--bc-minutes M] [--seeds S ...] [--no-bc]`

For each seed: PPO trains from scratch for `--minutes` (default 10); then, unless `--no-bc`, the
expert is captured for `--bc-days` days (one town, its own seed), cloned (the `bc` phase's trainer),
and PPO continues from those weights until `--bc-minutes` (default 5) have passed, BC included.
Every trained policy is scored greedily by `townlet.training.evaluate` (one day, the evaluation
seeds, the same towns for every policy), as are the expert and a random masked policy.

Goals (per run): return >= the expert's (`ratio >= 1`), on-time rate >= 0.95, self-sufficiency and
relationship coverage >= the expert's. `--json` prints `{"expert": {"return", "kpis"}, "random":
{...}, "runs": [{"seed", "minutes", "return", "ratio", "kpis", "steps", "curve", "met"}], "bc_runs":
[... and "bc": {...}], "goals": {...}}`. An acceptance script, not a CI test.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from townlet import load_config
from townlet.capture.rollout import capture_rollout
from townlet.sim.config import TownConfig
from townlet.sim.settings import BCConfig, PPOConfig
from townlet.training.bc import BCTrainer, split_rows
from townlet.training.data import load_replay
from townlet.training.envs import TownTrainEnv
from townlet.training.evaluate import PolicyScore, evaluate, expert_actor, greedy_actor, random_actor
from townlet.training.network import ActorCritic
from townlet.training.trainer import Trainer, make_policy

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs/examples/poc_hybrid.yaml"
EPISODE = 1440
ON_TIME_GOAL = 0.95


def behaviour_clone(
    cfg: TownConfig, env: TownTrainEnv, *, days: int, epochs: int, seed: int
) -> tuple[ActorCritic, dict[str, float]]:
    """Capture `days` days of the expert in one town (seed 20_000 + seed) and clone it."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        capture_rollout(cfg.with_seed(20_000 + seed), Path(tmp), ticks=EPISODE * days)
        data = load_replay(None, Path(tmp))
    bc_cfg = BCConfig(epochs=epochs, batch_size=256)
    split = split_rows(data.samples, bc_cfg, seed=seed)  # held out: whole trajectories
    train, holdout = split.train, split.holdout
    torch.manual_seed(seed)
    policy = make_policy(env.metadata(), env.obs_dim, env.n_actions, bc_cfg.hidden)
    recs = BCTrainer(policy, bc_cfg, train, holdout, seed=seed).run(epochs)
    return policy, {
        "rows": float(len(train)),
        "holdout_accuracy": float(recs[-1]["holdout_accuracy"]),
        "seconds": time.perf_counter() - t0,
    }


def train(
    cfg: TownConfig, *, seed: int, minutes: float, num_envs: int, bc: tuple[int, int] | None, quiet: bool
) -> tuple[ActorCritic, dict[str, Any]]:
    """PPO until `minutes` of wall clock have passed (BC first when `bc` = (days, epochs))."""
    ppo = PPOConfig(num_envs=num_envs, rollout_ticks=128, episode_ticks=EPISODE, torch_threads=1, anneal_lr=False)
    env = TownTrainEnv(cfg, ppo.num_envs, seed, ppo.episode_ticks)
    t0 = time.perf_counter()
    deadline = t0 + 60 * minutes
    policy, bc_info = None, None
    if bc is not None:
        policy, bc_info = behaviour_clone(cfg, env, days=bc[0], epochs=bc[1], seed=seed)
    trainer = Trainer(env, ppo, seed=seed, policy=policy)
    curve: list[tuple[int, float]] = []
    while time.perf_counter() < deadline:
        rec = trainer.run(trainer.epoch + 1).records[-1]  # one more epoch (run() trains to an epoch target)
        if rec["episodes"]:
            curve.append((int(rec["steps"]), float(rec["episode_return_mean"])))
        if not quiet and trainer.epoch % 25 == 0:
            last = f"{curve[-1][1]:8.2f}" if curve else "     n/a"
            print(f"  seed {seed} epoch {trainer.epoch:5d}  steps {trainer.steps:>10,}  return {last}", flush=True)
    info: dict[str, Any] = {"minutes": (time.perf_counter() - t0) / 60, "steps": trainer.steps, "curve": curve}
    if bc_info is not None:
        info["bc"] = bc_info
    return trainer.policy.eval(), info


def score_run(seed: int, score: PolicyScore, expert: PolicyScore, info: dict[str, Any]) -> dict[str, Any]:
    kpis = score.kpis
    met = {
        "return": score.return_ >= expert.return_,
        "on_time_rate": kpis.on_time_rate >= ON_TIME_GOAL,
        "self_sufficiency": kpis.self_sufficiency >= expert.kpis.self_sufficiency,
        "relationship_coverage": kpis.relationship_coverage >= expert.kpis.relationship_coverage,
    }
    ratio = score.return_ / expert.return_ if expert.return_ else float("nan")
    return {"seed": seed, "return": score.return_, "ratio": ratio, "kpis": kpis.model_dump(), "met": met, **info}


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--minutes", type=float, default=10.0, help="wall-clock budget of a run from scratch")
    p.add_argument("--bc-minutes", type=float, default=5.0, help="wall-clock budget of a BC -> PPO run")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--no-bc", action="store_true", help="skip the BC -> PPO runs")
    p.add_argument("--bc-days", type=int, default=2)
    p.add_argument("--bc-epochs", type=int, default=5)
    p.add_argument("--eval-seeds", type=int, default=3)
    p.add_argument("--config", type=Path, default=CONFIG, help="the town (e.g. a reward ablation)")
    args = p.parse_args()
    cfg = load_config(args.config)
    quiet = args.json

    base = evaluate(cfg, {"expert": expert_actor(), "random": random_actor(0)}, seeds=args.eval_seeds)
    expert = base.policies["expert"]
    runs, bc_runs = [], []
    for seed in args.seeds:
        policy, info = train(cfg, seed=seed, minutes=args.minutes, num_envs=args.num_envs, bc=None, quiet=quiet)
        score = evaluate(cfg, {"ppo": greedy_actor(policy)}, seeds=args.eval_seeds).policies["ppo"]
        runs.append(score_run(seed, score, expert, info))
        if not args.no_bc:
            bc = (args.bc_days, args.bc_epochs)
            policy, info = train(cfg, seed=seed, minutes=args.bc_minutes, num_envs=args.num_envs, bc=bc, quiet=quiet)
            score = evaluate(cfg, {"bc_ppo": greedy_actor(policy)}, seeds=args.eval_seeds).policies["bc_ppo"]
            bc_runs.append(score_run(seed, score, expert, info))
    goals = {
        "ratio": {"value": 1.0, "op": ">="},
        "on_time_rate": {"value": ON_TIME_GOAL, "op": ">="},
        "self_sufficiency": {"value": expert.kpis.self_sufficiency, "op": ">="},
        "relationship_coverage": {"value": expert.kpis.relationship_coverage, "op": ">="},
    }
    out = {
        "benchmark": "learn_town",
        "config": str(args.config),
        "expert": expert.model_dump(exclude={"per_seed"}),
        "random": base.policies["random"].model_dump(exclude={"per_seed"}),
        "runs": runs,
        "bc_runs": bc_runs,
        "goals": goals,
        "budget_minutes": {"scratch": args.minutes, "bc": args.bc_minutes},
    }
    if args.json:
        print(json.dumps(out, sort_keys=True))
        return
    k = expert.kpis
    print(f"\nexpert: return {expert.return_:.2f}  on-time {k.on_time_rate:.2f}  self-sufficiency "
          f"{k.self_sufficiency:.2f}  coverage {k.relationship_coverage:.2f}  faints {k.faints:.2f}")  # fmt: skip
    print(f"random: return {base.policies['random'].return_:.2f}")
    header = "run       seed  min   steps       return  ratio  on-time  self-suff  coverage  faints  all goals"
    print(header)
    for name, group in (("scratch", runs), ("bc->ppo", bc_runs)):
        for r in group:
            kp = r["kpis"]
            missed = [m for m, ok in r["met"].items() if not ok]
            print(
                f"{name:9s} {r['seed']:4d} {r['minutes']:4.1f} {r['steps']:>11,} {r['return']:8.2f} {r['ratio']:6.2f} "
                f"{kp['on_time_rate']:8.2f} {kp['self_sufficiency']:10.2f} {kp['relationship_coverage']:9.2f} "
                f"{kp['faints']:7.2f}  {'no: ' + ', '.join(missed) if missed else 'yes'}"
            )


if __name__ == "__main__":
    main()
