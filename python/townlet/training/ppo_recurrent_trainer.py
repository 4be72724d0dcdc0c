"""The memory phase's training loop: collect with memory, recurrent PPO on whole sequences, log
telemetry (the PPO record), save checkpoints; its state resumes exactly (the memory of every agent
slot included)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from townlet.artifacts.checkpoint import TrainingState
from townlet.sim.settings import MemoryConfig
from townlet.telemetry.writer import TelemetryWriter
from townlet.training.envs import TrainEnv
from townlet.training.malloc import long_lived_frozen
from townlet.training.network_memory import MemoryPolicy
from townlet.training.optim import adam
from townlet.training.ppo import Dataset, baseline_from_samples, epoch_record
from townlet.training.ppo_recurrent import RecurrentCollector, recurrent_update
from townlet.training.state import loop_state, restore_loop
from townlet.training.trainer import BEST_METRIC, TrainResult, anneal_lr

PHASE = "memory"


class MemoryTrainer:
    """Recurrent PPO of a `MemoryPolicy` on a TrainEnv (rollouts only)."""

    def __init__(self, env: TrainEnv, cfg: MemoryConfig, *, seed: int, policy: MemoryPolicy) -> None:
        torch.set_num_threads(cfg.torch_threads)
        torch.manual_seed(seed)
        self.cfg, self.seed, self.env, self.policy = cfg, seed, env, policy
        self.optimizer = adam(policy.parameters(), cfg.learning_rate, eps=1e-5)
        self.collector = RecurrentCollector(env, policy, cfg, seed)
        self.rng = np.random.default_rng(seed)
        self.steps = 0
        self.epoch = 0
        self.best: dict[str, Any] | None = None

    @property
    def behaviour(self) -> MemoryPolicy:
        """The weights that collected the epoch offered as the best: the policy (collection is not ahead here)."""
        return self.policy

    def training_state(self, total_epochs: int) -> TrainingState:
        data, tensors = self.collector.get_state()
        state = loop_state(
            PHASE, epoch=self.epoch, steps=self.steps, total_epochs=total_epochs, optimizer=self.optimizer,
            rng=self.rng, best=self.best, collector=data, arch=self.policy.architecture,
        )  # fmt: skip
        state.tensors.update(tensors)
        return state

    def restore(self, training: TrainingState) -> None:
        if training.data.get("arch") != self.policy.architecture:
            raise ValueError(
                f"the training state is of a {training.data.get('arch')} policy, not {self.policy.architecture}"
            )
        self.epoch, self.steps, self.rng, self.best = restore_loop(training, self.optimizer)
        self.collector.set_state(training.data["collector"], training.tensors)

    @long_lived_frozen
    def run(
        self,
        epochs: int,
        *,
        telemetry: TelemetryWriter | None = None,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        checkpoint_every: int | None = None,
        save: Callable[[MemoryTrainer], None] | None = None,
        on_best: Callable[[MemoryTrainer], None] | None = None,
    ) -> TrainResult:
        """Train until epoch `epochs` (as `Trainer.run` in rollout mode)."""
        result = TrainResult(epochs=epochs, steps=0)
        t_start = time.perf_counter()
        for epoch in range(self.epoch + 1, epochs + 1):
            t0 = time.perf_counter()
            self.epoch = epoch
            lr = anneal_lr(self.optimizer, self.cfg, MemoryConfig.spent(epoch, epochs))
            rows, seqs, roll = self.collector.collect()
            result.episode_returns.extend(roll.episode_returns)
            self._offer_best(rows, on_best)
            self.steps += len(rows)
            upd = recurrent_update(self.policy, self.optimizer, seqs, self.cfg, self.rng)
            duration = time.perf_counter() - t0
            rec = epoch_record(
                epoch=epoch, steps=self.steps, lr=lr, data=rows, upd=upd, roll=roll, data_mode="rollout",
                cycle_id=epoch, rollout_ticks=roll.ticks, duration=duration,
                baseline=baseline_from_samples(roll.sample_rewards), cfg=self.cfg, events=dict(roll.events),
            )  # fmt: skip
            rec["arch"] = self.policy.architecture
            result.add(rec, telemetry, on_epoch)
            if save is not None and checkpoint_every and epoch % checkpoint_every == 0 and epoch != epochs:
                save(self)
        return result.close(self.steps, t_start, telemetry)

    def _offer_best(self, rollout: Dataset, on_best: Callable[[MemoryTrainer], None] | None) -> None:
        score = float(rollout.rewards.mean()) if len(rollout) else None
        if score is not None and (self.best is None or score > float(self.best["value"])):
            self.best = {"metric": BEST_METRIC, "value": score, "epoch": self.epoch, "policy_epoch": self.epoch - 1}
            if on_best is not None:
                on_best(self)
