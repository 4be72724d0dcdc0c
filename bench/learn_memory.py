#!/usr/bin/env python3
"""Does memory pay? The feed-forward agent (`mlp`: the conflict-aware network) and each memory agent
(`lstm`, `gru`, `attention`) trained by PPO (recurrent PPO for memory) from scratch for the same
wall-clock budget per seed (so the slower memory agents see fewer agent-steps), side by side, on
the default town and on the memory scenario.

`python bench/learn_memory.py [--json] [--minutes M] [--seeds S ...] [--scenario PATH] [--config PATH]`

Each (agent, seed) trains `--minutes` (default 2) in 8 towns (128-tick rollouts, day-long
episodes, no learning-rate annealing). Its score ("return") is the mean reward per live
agent-step over the last half of its epochs times the episode length (a day's return at that
rate: short budgets end few episodes, and fewer for the slower agents); beside it, the KPIs of the
town episodes that ended then and the throughput in agent-steps/s.

Goal (issue 17): on the memory scenario the best memory agent beats `mlp` by a clear margin across
seeds; on the default town it is no worse. This first version has no memory scenario yet: unless
`--scenario` names one, the default town stands in (and `"scenario"` says so). `--json` prints
`{"scenario": PATH, "default_town": {...}, "memory_scenario": {"mlp": [return per seed], "lstm":
[...], "gru": [...], "attention": [...]}}`; each block also holds `"agent_steps_per_s"` and
`"kpis"` per agent. An acceptance script, not a CI test (the box is shared: throughput varies).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from townlet import load_config
from townlet.sim.config import TownConfig
from townlet.sim.settings import MemoryConfig, MemorySection, PPOConfig
from townlet.training.envs import TownTrainEnv
from townlet.training.network_memory import make_memory_policy
from townlet.training.ppo_recurrent_trainer import MemoryTrainer
from townlet.training.trainer import Trainer, make_policy

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs/examples/poc_hybrid.yaml"
AGENTS = ("mlp", "lstm", "gru", "attention")
EPISODE = 1440
KPIS = ("kpi_self_sufficiency", "kpi_on_time_rate", "kpi_relationship_coverage", "kpi_faints", "kpi_evictions")


def train_one(cfg: TownConfig, agent: str, seed: int, minutes: float, size: tuple[int, int]) -> dict[str, Any]:
    """Train `agent` for `minutes` (at least one epoch); its score, KPIs and throughput."""
    ppo = PPOConfig(num_envs=size[0], rollout_ticks=size[1], episode_ticks=EPISODE, torch_threads=1, anneal_lr=False)
    env = TownTrainEnv(cfg, ppo.num_envs, seed, ppo.episode_ticks)
    torch.manual_seed(seed)
    trainer: Trainer | MemoryTrainer
    if agent == "mlp":
        trainer = Trainer(env, ppo, seed=seed, policy=make_policy(env.metadata(), env.obs_dim, env.n_actions, 128))
    else:
        mem = MemoryConfig.of(ppo, MemorySection(arch=agent))
        policy = make_memory_policy(agent, env.metadata(), env.n_actions, mem.hidden, mem.context)
        trainer = MemoryTrainer(env, mem, seed=seed, policy=policy)
    records: list[dict[str, Any]] = []
    returns: list[list[float]] = []
    deadline = time.perf_counter() + minutes * 60
    t0 = time.perf_counter()
    while time.perf_counter() < deadline or not records:
        result = trainer.run(trainer.epoch + 1)  # one more epoch (run() trains to an epoch target)
        records.append(result.records[-1])
        returns.append(result.episode_returns)
    seconds = time.perf_counter() - t0
    late = slice(len(records) // 2, None)
    ended = [r for per_epoch in returns[late] for r in per_epoch]
    per_step = float(np.mean([r["reward_mean"] for r in records[late]]))
    kpis = {
        k: float(np.mean([r[k] for r in records[late] if k in r])) for k in KPIS if any(k in r for r in records[late])
    }
    return {
        "return": per_step * EPISODE,
        "episode_return_mean": float(np.mean(ended)) if ended else None,
        "episodes": len(ended),
        "epochs": len(records),
        "agent_steps_per_s": sum(r["transitions"] for r in records) / seconds,
        "kpis": kpis,
    }


def block(cfg: TownConfig, seeds: list[int], minutes: float, size: tuple[int, int]) -> dict[str, Any]:
    """Every agent on every seed: returns per seed, throughput and KPIs (means over seeds)."""
    out: dict[str, Any] = {agent: [] for agent in AGENTS}
    out["agent_steps_per_s"], out["kpis"], out["epochs"] = {}, {}, {}
    for agent in AGENTS:
        runs = [train_one(cfg.with_seed(seed), agent, seed, minutes, size) for seed in seeds]
        out[agent] = [round(r["return"], 4) for r in runs]
        out["agent_steps_per_s"][agent] = round(float(np.mean([r["agent_steps_per_s"] for r in runs])), 1)
        out["epochs"][agent] = [r["epochs"] for r in runs]
        names = sorted({k for r in runs for k in r["kpis"]})
        out["kpis"][agent] = {
            k: round(float(np.mean([r["kpis"][k] for r in runs if k in r["kpis"]])), 4) for k in names
        }
    return out


#: The issue's goal: the best memory agent beats mlp by a clear margin on the memory scenario, and is
#: no worse on the default town (`margin`: (best memory - mlp) / max(|mlp|, 1), means over seeds).
GOALS = {"memory_scenario.margin": {"value": 0.1, "op": ">="}, "default_town.margin": {"value": -0.05, "op": ">="}}


def margin(res: dict[str, Any]) -> float:
    mlp = float(np.mean(res["mlp"]))
    best = max(float(np.mean(res[a])) for a in AGENTS[1:])
    return round((best - mlp) / max(abs(mlp), 1.0), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--minutes", type=float, default=2.0, help="training budget per agent and seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--config", type=Path, default=CONFIG, help="the default town")
    parser.add_argument("--num-envs", type=int, default=8, help="towns per run")
    parser.add_argument("--rollout-ticks", type=int, default=128, help="ticks per epoch")
    parser.add_argument("--scenario", type=Path, default=None, help="the memory scenario (default: none yet)")
    args = parser.parse_args()
    size = (args.num_envs, args.rollout_ticks)
    default = block(load_config(args.config), args.seeds, args.minutes, size)
    if args.scenario is None:
        scenario, memory = f"{args.config} (no memory scenario yet: the default town stands in)", default
    else:
        scenario, memory = str(args.scenario), block(load_config(args.scenario), args.seeds, args.minutes, size)
    for res in (default, memory):
        res["margin"] = margin(res)
    out = {"benchmark": "learn_memory", "scenario": scenario, "minutes": args.minutes, "seeds": args.seeds,
           "default_town": default, "memory_scenario": memory, "goals": GOALS,
           "figures": [f"{b}.agent_steps_per_s.{a}" for b in ("default_town",) for a in AGENTS]}  # fmt: skip
    if args.json:
        print(json.dumps(out, sort_keys=True))
        return
    print(f"learn_memory: {args.minutes} min per agent and seed, seeds {args.seeds}; scenario {scenario}")
    for name, key, res in (("default town", "default_town", default), ("memory scenario", "memory_scenario", memory)):
        print(f"{name}:")
        for agent in AGENTS:
            print(f"  {agent:9s} return {res[agent]}  agent-steps/s {res['agent_steps_per_s'][agent]}"
                  f"  epochs {res['epochs'][agent]}  kpis {res['kpis'][agent]}")  # fmt: skip
        best = max(AGENTS[1:], key=lambda a: float(np.mean(res[a])))
        goal = GOALS[f"{key}.margin"]["value"]
        print(f"  best memory agent {best}: {np.mean(res[best]):.3f} vs mlp {np.mean(res['mlp']):.3f} "
              f"(margin {res['margin']}, goal >= {goal})")  # fmt: skip


if __name__ == "__main__":
    main()
