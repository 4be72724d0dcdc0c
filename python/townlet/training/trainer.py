"""The training loop: build the env and policy, run epochs (collect and/or replay, then PPO),
log telemetry, save checkpoints."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from townlet.artifacts.checkpoint import TrainingState
from townlet.sim.settings import PPOConfig
from townlet.telemetry.writer import TelemetryWriter
from townlet.training.collect_process import CollectorProcess, Pending
from townlet.training.envs import TownTrainEnv, TrainEnv
from townlet.training.malloc import keep_freed_memory, long_lived_frozen
from townlet.training.network import ActorCritic, ConflictAwarePolicy, MLPPolicy, Scratch
from townlet.training.optim import adam
from townlet.training.ppo import (
    Dataset,
    RolloutCollector,
    RolloutStats,
    baseline_from_samples,
    epoch_record,
    ppo_update,
)
from townlet.training.state import loop_state, restore_loop
from townlet.training.threads import Threads, one_torch_thread

#: What picks the best-known PPO checkpoint: the mean reward per live agent-step of an epoch's
#: rollout, which the policy held before that epoch's update earned.
BEST_METRIC = "rollout_reward_mean"
#: The prefix of the collector's weights among a checkpoint's training tensors (`ppo.overlap`).
ACTING = "acting."


def make_policy(meta: dict[str, Any], obs_dim: int, n_actions: int, hidden: int) -> ActorCritic:
    """The conflict-aware network for Townlet observations, an MLP otherwise. Built on one
    thread: the orthogonal initialisation (a QR decomposition) may round differently with more,
    and a run's first weights must not depend on the machine's core count."""
    with one_torch_thread():
        if "map_shape" in meta and "n_features" in meta:
            return ConflictAwarePolicy(tuple(meta["map_shape"]), int(meta["n_features"]), n_actions, hidden)
        return MLPPolicy(obs_dim, n_actions, hidden)


@dataclass
class TrainResult:
    epochs: int
    steps: int
    records: list[dict[str, Any]] = field(default_factory=list)
    episode_returns: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def add(
        self,
        rec: dict[str, Any],
        telemetry: TelemetryWriter | None,
        on_epoch: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        """An epoch's record: kept, written to the telemetry and handed to `on_epoch`."""
        self.records.append(rec)
        if telemetry is not None:
            telemetry.write(rec)
        if on_epoch is not None:
            on_epoch(rec)

    def close(self, steps: int, t_start: float, telemetry: TelemetryWriter | None) -> TrainResult:
        """The run's end: the telemetry closed, the steps and seconds (since `t_start`, perf_counter) set."""
        if telemetry is not None:
            telemetry.close()
        self.steps = steps
        self.seconds = time.perf_counter() - t_start
        return self


def anneal_lr(optimizer: torch.optim.Optimizer, cfg: PPOConfig, spent: float) -> float:
    """Set the learning rate for the share `spent` of the run (`PPOConfig.lr_at`) when `cfg.anneal_lr`; returns
    the rate the optimizer holds (unannealed: its own, which a resumed run restored)."""
    if cfg.anneal_lr:
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr_at(spent)
    return float(optimizer.param_groups[0]["lr"])


class Trainer:
    def __init__(
        self,
        env: TrainEnv | None,
        cfg: PPOConfig,
        *,
        seed: int,
        policy: ActorCritic | None = None,
        replay: Dataset | Callable[[ActorCritic], Dataset] | None = None,
        replay_baseline: dict[str, float] | None = None,
        replay_events: dict[str, float] | None = None,
        obs_meta: dict[str, Any] | None = None,
    ) -> None:
        if env is None and replay is None:
            raise ValueError("nothing to train on: give an env (rollout) or replay data")
        #: Torch threads per phase (`ppo.torch_threads`: a count, or `auto` by measurement).
        self.threads = Threads(cfg.torch_threads, cfg.precision)
        if self.threads.fixed is not None:
            torch.set_num_threads(self.threads.fixed)
        keep_freed_memory()  # every minibatch's tensors reuse the last one's memory
        torch.manual_seed(seed)
        self.cfg = cfg
        self.seed = seed
        self.env = env
        meta = env.metadata() if env is not None else (obs_meta or {})
        if policy is None:
            if env is None:
                raise ValueError("replay-only training needs a policy built from the data's shapes")
            policy = make_policy(meta, env.obs_dim, env.n_actions, cfg.hidden)
        self.policy = policy
        self.optimizer = adam(policy.parameters(), cfg.learning_rate, eps=1e-5)
        # Collecting ahead, the collector lives in its own process (`_process`, below) and this one has none.
        self.collector = RolloutCollector(env, policy, cfg, seed) if env is not None and not cfg.overlap else None
        self.replay = replay
        self.replay_baseline = replay_baseline or {}
        self.replay_events = replay_events or {}
        names = list(meta.get("feature_names", []))
        map_len = int(np.prod(meta["map_shape"])) if "map_shape" in meta else 0
        self.rivalry_cols = (
            (map_len + names.index("rivalry_max"), map_len + names.index("rivalry_avoid_count"))
            if "rivalry_max" in names and "rivalry_avoid_count" in names
            else None
        )
        self.rng = np.random.default_rng(seed)
        self.scratch = Scratch()  # the update's buffers, reused every epoch
        self.steps = 0
        self.epoch = 0
        #: The best epoch so far by `BEST_METRIC` (rollout modes): metric, value, epoch, policy_epoch.
        self.best: dict[str, Any] | None = None
        #: `ppo.overlap`: the collector acts with its own copy of the weights (`acting`, from epoch `acting_epoch`),
        #: in a process of its own (`_process`, over the same towns rebuilt there), one epoch ahead of the update
        #: (`_ahead`: the next epoch's rows, with the collector's state from before them).
        self.acting: ActorCritic | None = None
        self.acting_epoch = 0
        self._acting_restored = False
        self._ahead: Pending | None = None
        self._process: CollectorProcess | None = None
        if cfg.overlap:
            if env is None:
                raise ValueError(
                    "ppo.overlap: the trainer collects ahead from its own env only (not in replay-only training or "
                    "on rollout shards)"
                )
            if not isinstance(env, TownTrainEnv):
                raise ValueError(
                    f"ppo.overlap: collects ahead in a process that rebuilds the towns (TownTrainEnv), not from "
                    f"{type(env).__name__}"
                )
            self.acting = copy.deepcopy(policy)
            self._process = CollectorProcess(env, self.acting, cfg, seed)

    @property
    def behaviour(self) -> ActorCritic:
        """The weights that collected the epoch just offered as the best (`on_best`): the policy, or with
        `ppo.overlap` the collector's copy (one update behind)."""
        return self.acting if self.acting is not None else self.policy

    # -- resume ------------------------------------------------------------------------------------

    def training_state(self, total_epochs: int) -> TrainingState:
        """Everything besides the weights that `restore` needs to continue exactly here. With
        `ppo.overlap` the next epoch's rows are already collected: the state is the collector's from
        before them, with the weights that collected them (a resumed run collects them again)."""
        collector = None
        if self._ahead is not None:
            collector = self._ahead.result()[2]()
        elif self._process is not None:
            collector = self._process.get_state()
        elif self.collector is not None:
            collector = self.collector.get_state()
        extra: dict[str, Any] = {}
        # Once a collection has been made with the collector's copy of the weights, they are the next
        # collection's (before that the policy's, which the first epoch copies).
        acting = self.acting if self._ahead is not None or self._acting_restored else None
        if acting is not None:
            extra["acting_epoch"] = self.acting_epoch
        state = loop_state(
            "ppo", epoch=self.epoch, steps=self.steps, total_epochs=total_epochs, optimizer=self.optimizer,
            rng=self.rng, best=self.best, collector=collector, **extra,
        )  # fmt: skip
        if acting is not None:
            state.tensors.update({ACTING + k: v.detach().clone() for k, v in acting.state_dict().items()})
        return state

    def restore(self, training: TrainingState) -> None:
        """Continue from a `training_state` taken by a run of the same config."""
        self.epoch, self.steps, self.rng, self.best = restore_loop(training, self.optimizer)
        collector = self._process or self.collector
        if collector is not None:
            if training.data.get("collector") is None:
                raise ValueError("the checkpoint was saved by a run without rollouts; resume it in the same mode")
            collector.set_state(training.data["collector"])
        self._ahead = None
        if self.acting is not None and "acting_epoch" in training.data:
            # The weights the next epoch's rows were collected with (one update behind the checkpoint's).
            acting = {k[len(ACTING) :]: v for k, v in training.tensors.items() if k.startswith(ACTING)}
            self.acting.load_state_dict(acting)
            self.acting_epoch = int(training.data["acting_epoch"])
            self._acting_restored = True

    # -- the loop ----------------------------------------------------------------------------------

    @long_lived_frozen
    def run(
        self,
        epochs: int,
        *,
        data_mode: str = "rollout",
        telemetry: TelemetryWriter | None = None,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        checkpoint_every: int | None = None,
        save: Callable[[Trainer], None] | None = None,
        on_best: Callable[[Trainer], None] | None = None,
        spent: Callable[[int], float] | None = None,
    ) -> TrainResult:
        """Train until epoch `epochs` (a resumed trainer continues from its epoch). The learning
        rate (and, with `ent_coef_final`, the entropy coefficient) anneals over epochs 1..`epochs`,
        or by `spent(epoch)`, the share of the run spent before that epoch, when given (a
        wall-clock budget's share: bench/learn_town.py); `save` runs every `checkpoint_every` epochs (not
        after the last: the caller saves then); `on_best` runs, before the update, whenever an
        epoch's rollout scores better than every earlier one (`self.best`), so the policy it
        sees is the one that earned the score."""
        result = TrainResult(epochs=epochs, steps=0)
        t_start = time.perf_counter()
        for epoch in range(self.epoch + 1, epochs + 1):
            t0 = time.perf_counter()
            self.epoch = epoch
            share = spent(epoch) if spent is not None else PPOConfig.spent(epoch, epochs)
            lr = anneal_lr(self.optimizer, self.cfg, share)
            # The epoch's entropy coefficient (`ppo.ent_coef_final`) and kickstarting weight, annealed like the
            # learning rate.
            cfg, annealed = self.cfg, {}
            if cfg.ent_coef_final is not None:
                annealed["ent_coef"] = cfg.ent_coef_at(share)
            if cfg.kickstart_coef > 0:
                annealed["kickstart_coef"] = cfg.kickstart_at(share)
            if annealed:
                cfg = cfg.model_copy(update=annealed)
            if self.acting is not None:
                data, roll, baseline, events = self._gather_ahead(data_mode, result, on_best)
            else:
                self.threads.use("collect")
                t_gather = time.perf_counter()
                data, roll, baseline, events = self._gather(data_mode, result, on_best)
                self.threads.done("collect", time.perf_counter() - t_gather, len(data))
                self.threads.use("learn")
            self.steps += len(data)
            t_learn = time.perf_counter()
            try:
                upd = ppo_update(
                    self.policy,
                    self.optimizer,
                    data,
                    cfg,
                    self.rng,
                    rivalry_cols=self.rivalry_cols,
                    scratch=self.scratch,
                )
            except BaseException:
                if self._ahead is not None:  # no collection outlives the run (its rows stay ahead)
                    self._ahead.exception()
                raise
            if self._ahead is not None:
                self._ahead.result()  # the next epoch's rows, collected by the epoch's end (or the error they met)
            if self.acting is None:
                self.threads.done("learn", time.perf_counter() - t_learn, len(data))
            duration = time.perf_counter() - t0
            rec = epoch_record(
                epoch=self.epoch,
                steps=self.steps,
                lr=lr,
                data=data,
                upd=upd,
                roll=roll,
                data_mode=data_mode,
                cycle_id=self.epoch if data_mode != "replay" else 0,
                rollout_ticks=roll.ticks if roll else 0,
                duration=duration,
                baseline=baseline,
                cfg=cfg,
                events=events,
            )
            result.add(rec, telemetry, on_epoch)
            if save is not None and checkpoint_every and epoch % checkpoint_every == 0 and epoch != epochs:
                save(self)
        return result.close(self.steps, t_start, telemetry)

    def _gather(
        self, data_mode: str, result: TrainResult, on_best: Callable[[Trainer], None] | None
    ) -> tuple[Dataset, RolloutStats | None, dict[str, float], dict[str, float]]:
        """The epoch's rows: a fresh rollout and/or the replayed samples; with the rollout stats,
        the baseline fields and the event totals of the record."""
        parts: list[Dataset] = []
        roll: RolloutStats | None = None
        baseline: dict[str, float] = {}
        events: dict[str, float] = {}
        if data_mode in ("rollout", "mixed"):
            assert self.collector is not None
            data, roll = self.collector.collect()
            parts.append(data)
            result.episode_returns.extend(roll.episode_returns)
            baseline = baseline_from_samples(roll.sample_rewards)
            events = dict(roll.events)
            self._offer_best(data, on_best)
        if data_mode in ("replay", "mixed"):
            assert self.replay is not None
            # Fixed rows, or rows whose values and advantages the current critic recomputes.
            parts.append(self.replay(self.policy) if callable(self.replay) else self.replay)
            baseline = dict(self.replay_baseline) if data_mode == "replay" else baseline
            for name, count in self.replay_events.items():
                events[name] = events.get(name, 0.0) + count
        return Dataset.concat(parts), roll, baseline, events

    def _gather_ahead(
        self, data_mode: str, result: TrainResult, on_best: Callable[[Trainer], None] | None
    ) -> tuple[Dataset, RolloutStats | None, dict[str, float], dict[str, float]]:
        """`ppo.overlap`'s `_gather`: the epoch's rows, collected during the last epoch's update (or now, on
        the first epoch and after a restore), then the next epoch's collection started on the collector's
        thread with the weights from before this epoch's update."""
        assert self.acting is not None
        if data_mode != "rollout":
            raise ValueError(f"ppo.overlap: collects ahead in rollout mode only, not {data_mode}")
        if self._process is None:
            raise ValueError("ppo.overlap: collects ahead with the trainer's own collector only")
        process = self._process
        if self._ahead is None:
            if not self._acting_restored:
                self.acting.load_state_dict(self.policy.state_dict())
                self.acting_epoch = self.epoch - 1
            self._acting_restored = False
            data, roll = process.collect()
        else:
            data, roll, _ = self._ahead.result()
            self._ahead = None
        result.episode_returns.extend(roll.episode_returns)
        self._offer_best(data, on_best, policy_epoch=self.acting_epoch)
        self.acting.load_state_dict(self.policy.state_dict())
        self.acting_epoch = self.epoch - 1
        # The next epoch's rows, collected while this one's are learned; the state from before them is asked of
        # the process only if a checkpoint is taken.
        self._ahead = process.start()
        return data, roll, baseline_from_samples(roll.sample_rewards), dict(roll.events)

    def _offer_best(
        self, rollout: Dataset, on_best: Callable[[Trainer], None] | None, policy_epoch: int | None = None
    ) -> None:
        """Keep the epoch as the best so far when its rollout scores higher by `BEST_METRIC` (the
        policy that earned it, `behaviour`, has not been updated yet)."""
        score = float(rollout.rewards.mean()) if len(rollout) else None  # None: every agent was dead
        if score is not None and (self.best is None or score > float(self.best["value"])):
            earned_by = self.epoch - 1 if policy_epoch is None else policy_epoch
            self.best = {"metric": BEST_METRIC, "value": score, "epoch": self.epoch, "policy_epoch": earned_by}
            if on_best is not None:
                on_best(self)
