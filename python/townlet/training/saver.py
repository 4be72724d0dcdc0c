"""`PhaseSaver`: where a phase's checkpoints go, the latest and the best-known."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from townlet.artifacts.checkpoint import TrainingState, config_yaml_of, save_checkpoint
from townlet.sim.config import TownConfig
from townlet.telemetry.writer import TelemetryWriter
from townlet.training.network import ActorCritic
from townlet.training.request import EpochCallback, RunOutputs, TrainPlan
from townlet.training.trainer import TrainResult
from townlet.training.warm_start import WarmStartPlan, run_config


class PhaseSaver:
    """Writes a phase's checkpoints: the latest (with the training state a resume restores) at
    `path`, and the best-known agent (weights only) at `best_path`. A new best is held in memory
    and written with the next save (just before the latest), so a run pays one write per checkpoint rather than
    one per improving epoch."""

    def __init__(
        self,
        path: Path | None,
        best_path: Path,
        *,
        obs_meta: dict[str, Any],
        config: dict[str, Any],
        seed: int,
        metadata: dict[str, Any],
        plan: WarmStartPlan,
        town: TownConfig | None = None,
    ) -> None:
        self.path, self.best_path = path, best_path
        #: The exact YAML the run's config was read from, embedded in every checkpoint.
        self.config_yaml = config_yaml_of(town) if town is not None else None
        self.obs_meta, self.config, self.seed, self.metadata, self.plan = obs_meta, config, seed, metadata, plan
        self.pending: tuple[ActorCritic, dict[str, Any], int] | None = None
        self.pending_metadata: dict[str, Any] = {}
        self.best_written: Path | None = None
        #: More lineage fields of every checkpoint written (the memory phase's warm-start mapping).
        self.lineage: dict[str, Any] = {}

    def latest(self, policy: ActorCritic, *, epoch: int, steps: int, training: TrainingState | None) -> None:
        if self.path is None:
            return
        # The best first: a run killed between the two writes then resumes from the checkpoint before, replays the
        # same epochs and writes the same best again; written after, a kill between them left a best file behind the
        # best score the latest checkpoint restores, which the resumed run never rewrote.
        self._flush_best()
        save_checkpoint(
            self.path,
            policy,
            obs_meta=self.obs_meta,
            config=self.config,
            seed=self.seed,
            counters={"epochs": epoch, "steps": steps},
            metadata=self.metadata,
            parent=self.plan.parent,
            lineage_note=self.plan.note,
            resumed_from=self.plan.resumed_from,
            training=training,
            config_yaml=self.config_yaml,
            lineage_extra=self.lineage,
        )

    def offer_best(
        self, policy: ActorCritic, best: dict[str, Any] | None, steps: int, metadata: dict[str, Any] | None = None
    ) -> None:
        """A new best-known agent (`metadata`: added to the run's for this agent alone)."""
        if self.path is not None and best is not None:
            self.pending = (copy.deepcopy(policy), dict(best), steps)
            self.pending_metadata = dict(metadata or {})

    def _flush_best(self) -> None:
        if self.pending is None:
            return
        policy, best, steps = self.pending
        save_checkpoint(
            self.best_path,
            policy,
            obs_meta=self.obs_meta,
            config=self.config,
            seed=self.seed,
            counters={"epochs": int(best["policy_epoch"]), "steps": steps},
            metadata={**self.metadata, **self.pending_metadata, "best": json.dumps(best, sort_keys=True)},
            parent=self.plan.parent,
            lineage_note=self.plan.note,
            config_yaml=self.config_yaml,
            lineage_extra=self.lineage,
        )
        self.pending, self.best_written = None, self.best_path

    def best(self) -> Path | None:
        """The run's best-known checkpoint: written now, or, for a resumed run that did not beat
        it, written before the interruption."""
        if self.best_written is None and self.plan.resume and self.path is not None and self.best_path.is_file():
            return self.best_path
        return self.best_written


def phase_saver(
    plan: TrainPlan,
    phase: str,
    *,
    mode: bool = False,
    arch: str | None = None,
    dataset: str | None = None,
    lineage: dict[str, Any] | None = None,
) -> PhaseSaver:
    """The saver of `phase`'s run as planned: the plan's checkpoint and the section's best path, the phase's effective
    config (`run_config`), and the metadata every checkpoint carries: the warm start's, then the plan's mode (when
    `mode`), the phase, the architecture (when given), the config's id and path, the dataset's manifest (when given).
    `lineage`: more lineage fields (the memory phases' warm-start mapping)."""
    section = plan.section
    warm = section.warm_start
    metadata = {
        **warm.metadata,
        **({"mode": plan.mode} if mode else {}),
        "phase": phase,
        **({"arch": arch} if arch is not None else {}),
        "config_id": plan.config.config_id,
        "config_path": str(plan.config.path),
        **({"dataset": dataset} if dataset is not None else {}),
    }
    saver = PhaseSaver(
        plan.checkpoint,
        Path(warm.best()),
        obs_meta=plan.meta,
        config=run_config(plan.config, section, phase),
        seed=plan.seed,
        metadata=metadata,
        plan=plan.warm,
        town=plan.config,
    )
    if lineage is not None:
        saver.lineage = lineage
    return saver


class SavedTrainer(Protocol):
    """What `run_saving` needs of a PPO trainer (`Trainer`, or the memory phase's `MemoryTrainer`)."""

    policy: Any
    epoch: int
    steps: int
    best: dict[str, Any] | None

    @property
    def behaviour(self) -> Any: ...

    @property
    def run(self) -> Callable[..., TrainResult]: ...

    def training_state(self, total_epochs: int) -> TrainingState: ...


def run_saving(
    trainer: SavedTrainer,
    plan: TrainPlan,
    saver: PhaseSaver,
    writer: TelemetryWriter | None,
    on_epoch: EpochCallback | None,
    start: int,
    **run_args: Any,
) -> RunOutputs:
    """Run a PPO trainer to `plan.epochs` (`run_args`: more of its `run` arguments), its telemetry to `writer` and
    each epoch's record to `on_epoch`: the latest checkpoint every `plan.checkpoint_every` epochs and at the end, each
    new best offered to `saver`."""

    def save(t: SavedTrainer) -> None:
        saver.latest(t.policy, epoch=t.epoch, steps=t.steps, training=t.training_state(plan.epochs))

    result = trainer.run(
        plan.epochs,
        **run_args,
        telemetry=writer,
        on_epoch=on_epoch,
        checkpoint_every=plan.checkpoint_every or None,
        save=save,
        on_best=lambda t: saver.offer_best(t.behaviour, t.best, t.steps),
    )
    save(trainer)
    return RunOutputs(result, plan.checkpoint, writer.path if writer else None, saver.best(), start)
