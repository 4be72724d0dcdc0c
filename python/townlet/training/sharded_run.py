"""A `--mode rollout` PPO run whose rollouts come from shards (`--backend local|ray --shards N`).

The learner is the usual `Trainer` (the same update, annealing, telemetry, best and latest checkpoints); only
its collector differs: `ShardedCollector` sends the current weights to the shards, takes their blocks in shard
order and joins them (`shards.gather`). The checkpoint's collector state is one entry per town, so a run saved
with one backend or shard count resumes with any other, and local, ray with 1 shard and ray with N shards
write the same bytes for the same seed, towns and SOURCE_DATE_EPOCH.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch

from townlet.sim.settings import PPOConfig
from townlet.training.ppo import Dataset, RolloutCollector, RolloutStats
from townlet.training.request import Backend, EpochCallback, RunOutputs, TrainPlan
from townlet.training.saver import phase_saver, run_saving
from townlet.training.shards import LocalShards, Shards, gather
from townlet.training.trainer import Trainer, make_policy
from townlet.training.warm_start import Notify, load_weights, start_epoch


def open_shards(plan: TrainPlan, backend: Backend) -> Shards:
    ppo = plan.section
    assert isinstance(ppo, PPOConfig)
    if backend.kind == "ray":
        from townlet.training.ray_shards import RayShards  # Ray is an optional extra

        return RayShards(plan.config, ppo, plan.meta, plan.seed, ppo.num_envs, backend.shards,
                         address=backend.address, max_restarts=backend.max_restarts)  # fmt: skip
    return LocalShards(plan.config, ppo, plan.meta, plan.seed, ppo.num_envs, backend.shards)


class ShardedCollector:
    """What the trainer calls to collect (`collect`, `get_state`, `set_state`), backed by shards."""

    def __init__(self, shards: Shards, policy: torch.nn.Module) -> None:
        self.shards, self.policy = shards, policy
        self.actor = None  # the blend hook of mixed mode: not used by a sharded run

    def collect(self) -> tuple[Dataset, RolloutStats]:
        return gather(self.shards.collect(self.policy.state_dict()))

    def get_state(self) -> dict[str, Any]:
        return {"towns": self.shards.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        towns = state.get("towns")
        if not isinstance(towns, list):
            raise ValueError("the checkpoint was saved by a run without --backend; resume it without --backend")
        expected = sum(len(r) for r in self.shards.towns)
        if len(towns) != expected:
            raise ValueError(f"the checkpoint holds {len(towns)} towns, this run has {expected}")
        self.shards.set_state(towns)


def _empty_rows(meta: dict[str, Any]) -> Dataset:
    obs_dim, n_actions = int(meta["obs_dim"]), len(meta["action_names"])
    f32 = np.zeros(0, np.float32)
    return Dataset(np.zeros((0, obs_dim), np.float32), np.zeros((0, n_actions), bool), np.zeros(0, np.int64),
                   f32, f32, f32, f32, f32)  # fmt: skip


def run_sharded(
    plan: TrainPlan,
    backend: Backend,
    *,
    on_epoch: EpochCallback | None,
    notify: Notify,
    shards: Shards | None = None,
) -> RunOutputs:
    """Train `plan` (ppo, rollout mode) on `backend`'s shards (`shards`: already opened, e.g. by a test that
    kills one); closes them at the end."""
    ppo, meta = plan.section, plan.meta
    assert isinstance(ppo, PPOConfig)
    torch.manual_seed(plan.seed)
    policy = make_policy(meta, int(meta["obs_dim"]), len(meta["action_names"]), ppo.hidden)
    load_weights(policy, plan.warm, notify)
    shards = shards or open_shards(plan, backend)
    try:
        # The trainer's own collector needs an env; this one is the shards (replay is a placeholder, unused).
        trainer = Trainer(None, ppo, seed=plan.seed, policy=policy, replay=_empty_rows(meta), obs_meta=meta)
        trainer.replay = None
        trainer.collector = cast(RolloutCollector, ShardedCollector(shards, policy))
        start = start_epoch(trainer, plan.warm, "ppo", plan.epochs, notify)
        writer = plan.log.open(start) if plan.log is not None else None
        saver = phase_saver(plan, "ppo", mode=True)
        return run_saving(trainer, plan, saver, writer, on_epoch, start, data_mode="rollout")
    finally:
        shards.close()
