#!/usr/bin/env python3
"""Ray scale: agent-steps/s of rollout collection and of end-to-end PPO training with the rollouts on 1, 2 and 4
Ray shard actors, next to the local backend, and what one gathered block costs (ms and bytes).

`python bench/ray_scale.py [--json] [--epochs E] [--towns T] [--rollout-ticks R] [--shards 1,2,4]
[--ray-address ADDR] [--quick]`

Every figure is measured in this one process on the default town, the runs taking turns epoch by epoch (after a
warm-up epoch each), each figure the median epoch's:
- `trainer`: `townlet train` without `--backend` (the batched collector of bench/train.py); its `learn`
  figure is the learner's consumption rate, agent-steps per second of the PPO update alone;
- `local`: `--backend local --shards 1` (the shard code in this process, town by town);
- `shards`: `--backend ray --shards N`, rollout collection (the learner's wait for the N blocks), N -> agent-steps/s;
  `train_shards`: the same runs end to end (collection and update);
- `block`: one gathered block's size (pickled, as Ray ships it) and its cost in transport alone: N echo actors
  that hand back a block of the same shape for the weights, timed per gather (`transport`), and the 1-shard Ray
  run's extra collection time over the local backend's, per block (`ray1_minus_local_ms`).
Without `--ray-address` a private Ray instance with sum(N) CPUs starts in this process (every run's shards live
at once, one CPU each; a cluster given with `--ray-address` needs that many). The figures are for the
machine they ran on (print `cores`); docs/scale.md projects them to 10 and 100 nodes.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from townlet import load_config
from townlet.sim.config import TownConfig
from townlet.sim.env import observation_spec
from townlet.sim.settings import PPOConfig
from townlet.training.envs import TownTrainEnv
from townlet.training.ppo import Dataset, RolloutCollector, RolloutStats
from townlet.training.ray_cluster import connect
from townlet.training.sharded_run import ShardedCollector
from townlet.training.shards import Block, LocalShards, Shards
from townlet.training.trainer import Trainer, make_policy

REPO = Path(__file__).resolve().parent.parent
SEED = 1


class TimedCollector:
    """The trainer's collector, with the wall time of every `collect` kept (the learner's wait for rollouts)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.actor = getattr(inner, "actor", None)
        self.seconds: list[float] = []

    def collect(self) -> tuple[Dataset, RolloutStats]:
        t0 = time.perf_counter()
        out: tuple[Dataset, RolloutStats] = self.inner.collect()
        self.seconds.append(time.perf_counter() - t0)
        return out

    def get_state(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.inner.get_state())

    def set_state(self, state: dict[str, Any]) -> None:
        self.inner.set_state(state)


class Timed:
    """A trainer whose epochs are timed one at a time (rollout wait, whole epoch, update), so that the runs
    can take turns epoch by epoch: on a shared machine each run then sees the same load, on average."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.timer = TimedCollector(trainer.collector)
        trainer.collector = cast(RolloutCollector, self.timer)
        self.epochs: list[dict[str, float]] = []

    def epoch(self, *, keep: bool = True) -> None:
        rec = self.trainer.run(self.trainer.epoch + 1).records[-1]
        steps = rec["transitions"]
        if keep:
            self.epochs.append({
                "rollout": steps / self.timer.seconds[-1],
                "train": steps / rec["epoch_duration_sec"],
                "learn": steps / rec["time_learn_sec"],
                "collect_ms": 1000 * self.timer.seconds[-1],
                "agent_steps": steps,
            })  # fmt: skip

    def figures(self) -> dict[str, float]:
        """The median epoch's figures (agent-steps/s; collect_ms)."""
        return {k: statistics.median(e[k] for e in self.epochs) for k in self.epochs[0]}


def sharded_trainer(shards: Shards, ppo: PPOConfig, meta: dict[str, Any]) -> Trainer:
    """A trainer whose rollouts come from `shards`, as `townlet train --backend` builds it."""
    torch.manual_seed(SEED)
    policy = make_policy(meta, int(meta["obs_dim"]), len(meta["action_names"]), ppo.hidden)
    obs_dim, n_actions = int(meta["obs_dim"]), len(meta["action_names"])
    f32 = np.zeros(0, np.float32)
    empty = Dataset(np.zeros((0, obs_dim), np.float32), np.zeros((0, n_actions), bool), np.zeros(0, np.int64),
                    f32, f32, f32, f32, f32)  # fmt: skip
    trainer = Trainer(None, ppo, seed=SEED, policy=policy, replay=empty, obs_meta=meta)
    trainer.replay = None
    trainer.collector = cast(RolloutCollector, ShardedCollector(shards, policy))
    return trainer


class EchoShard:
    """A shard that only hands back a block of the real shape: what gathering costs without any collecting."""

    def __init__(self, block: Block) -> None:
        self.block = block

    def collect(self, weights: dict[str, torch.Tensor]) -> Block:
        return self.block


def transport(ray: Any, block: Block, weights: dict[str, torch.Tensor], shards: int, repeats: int) -> dict[str, float]:
    """N echo actors, each holding a 1/N slice of `block`: the median wall time of a gather (weights put once,
    N blocks back in shard order), and per block."""
    rows = np.array_split(np.arange(block.valid.shape[1]), shards)
    parts = [
        Block(
            {k: np.ascontiguousarray(v[:, r]) for k, v in block.columns.items()},
            block.valid[:, r].copy(),
            block.towns,
            state=block.state,
        )
        for r in rows
    ]
    echo = ray.remote(num_cpus=0)(EchoShard)
    actors = [echo.remote(p) for p in parts]
    ray.get([a.collect.remote({}) for a in actors])  # started, blocks in place
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ref = ray.put({k: v.detach().clone() for k, v in weights.items()})
        got = ray.get([a.collect.remote(ref) for a in actors])
        walls.append(time.perf_counter() - t0)
        assert len(got) == shards
    for a in actors:
        ray.kill(a)
    wall = statistics.median(walls)
    return {"gather_ms": 1000 * wall, "ms_per_block": 1000 * wall / shards,
            "bytes_per_block": statistics.mean(len(pickle.dumps(p, protocol=5)) for p in parts)}  # fmt: skip


def local_weights(meta: dict[str, Any], ppo: PPOConfig) -> dict[str, torch.Tensor]:
    return make_policy(meta, int(meta["obs_dim"]), len(meta["action_names"]), ppo.hidden).state_dict()


def measure(
    cfg: TownConfig, towns: int, ticks: int, epochs: int, shard_counts: list[int], address: str | None, repeats: int
) -> dict[str, Any]:
    ppo = PPOConfig(num_envs=towns, rollout_ticks=ticks, torch_threads=1)
    meta = observation_spec(cfg)
    from townlet.training.ray_shards import RayShards  # the ray extra

    # Every shard actor of every run at once (one CPU each); a private instance gets that many CPUs.
    ray = connect(address, num_cpus=sum(shard_counts))
    local = LocalShards(cfg, ppo, meta, SEED, towns, 1)
    ray_shards = {n: RayShards(cfg, ppo, meta, SEED, towns, n, address=address) for n in shard_counts}
    runs = {
        "trainer": Timed(Trainer(TownTrainEnv(cfg, towns, 1, None), ppo, seed=SEED)),
        "local": Timed(sharded_trainer(local, ppo, meta)),
        **{str(n): Timed(sharded_trainer(sh, ppo, meta)) for n, sh in ray_shards.items()},
    }
    try:
        for run in runs.values():
            run.epoch(keep=False)  # warm-up
        for _ in range(epochs):  # the runs take turns, epoch by epoch
            for run in runs.values():
                run.epoch()
    finally:
        for sh in ray_shards.values():
            sh.close()
    figures = {name: run.figures() for name, run in runs.items()}
    block = local.shards[0].collect(local_weights(meta, ppo))
    weights = runs["trainer"].trainer.policy.state_dict()
    echo = {str(n): transport(ray, block, weights, n, repeats) for n in shard_counts}
    ray_runs = {str(n): figures[str(n)] for n in shard_counts}
    extra_ms = ray_runs["1"]["collect_ms"] - figures["local"]["collect_ms"] if "1" in ray_runs else None
    return {
        "trainer": figures["trainer"],
        "local": figures["local"],
        "ray": ray_runs,
        "shards": {n: r["rollout"] for n, r in ray_runs.items()},
        "train_shards": {n: r["train"] for n, r in ray_runs.items()},
        "block": {
            "bytes_per_epoch": len(pickle.dumps(block, protocol=5)),
            "bytes_per_agent_step": len(pickle.dumps(block, protocol=5)) / block.valid.size,
            "weights_bytes": sum(v.numel() * v.element_size() for v in weights.values()),
            "transport": echo,
            "ray1_minus_local_ms": extra_ms,
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--epochs", type=int, default=5, help="timed epochs per run (after one warm-up), taken in turns")
    p.add_argument("--towns", type=int, default=8, help="towns in total, split over the shards")
    p.add_argument("--rollout-ticks", type=int, default=128)
    p.add_argument("--shards", default="1,2,4", help="comma-separated shard counts")
    p.add_argument("--ray-address", default=None, help="a running Ray cluster (default: a private one here)")
    p.add_argument("--repeats", type=int, default=10, help="gathers timed per shard count (transport)")
    p.add_argument("--quick", action="store_true", help="1 epoch of 32 ticks, shards 1,2: a check that it runs")
    args = p.parse_args()
    if args.quick:
        args.epochs, args.rollout_ticks, args.shards, args.repeats = 1, 32, "1,2", 3
    counts = sorted({int(x) for x in args.shards.split(",") if x.strip()})
    if not counts or min(counts) < 1 or max(counts) > args.towns:
        p.error(f"--shards {args.shards}: each between 1 and --towns ({args.towns})")
    cfg = load_config(REPO / "configs/examples/poc_hybrid.yaml")
    res = measure(cfg, args.towns, args.rollout_ticks, args.epochs, counts, args.ray_address, args.repeats)
    out = {
        "benchmark": "ray_scale",
        "cores": os.cpu_count(),
        "towns": args.towns,
        "rollout_ticks": args.rollout_ticks,
        "epochs": args.epochs,
        **res,
        "figures": [
            "trainer.train",
            "trainer.learn",
            "local.rollout",
            "local.train",
            *(f"shards.{n}" for n in res["shards"]),
            *(f"train_shards.{n}" for n in res["train_shards"]),
            "block.bytes_per_epoch",
            *(f"block.transport.{n}.ms_per_block" for n in res["shards"]),
        ],
    }
    if args.json:
        print(json.dumps(out, sort_keys=True))
        return
    print(f"ray_scale: {args.towns} towns x {args.rollout_ticks} ticks, {args.epochs} epochs, {os.cpu_count()} cores")
    for name in ("trainer", "local"):
        r = res[name]
        rates = f"rollout {r['rollout']:>9,.0f}  train {r['train']:>9,.0f}  learn {r['learn']:>9,.0f}"
        print(f"  {name:8s} {rates} agent-steps/s")
    for n, r in res["ray"].items():
        t = res["block"]["transport"][n]
        print(f"  ray x{n:<3s} rollout {r['rollout']:>9,.0f}  train {r['train']:>9,.0f}  "
              f"block {t['ms_per_block']:.1f} ms, {t['bytes_per_block'] / 1e6:.1f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
