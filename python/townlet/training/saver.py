"""`PhaseSaver`: where a phase's checkpoints go, the latest and the best-known."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from townlet.artifacts.checkpoint import TrainingState, config_yaml_of, save_checkpoint
from townlet.sim.config import TownConfig
from townlet.training.network import ActorCritic
from townlet.training.request import TrainPlan
from townlet.training.warm_start import WarmStartPlan, run_config


class PhaseSaver:
    """Writes a phase's checkpoints: the latest (with the training state a resume restores) at
    `path`, and the best-known agent (weights only) at `best_path`. A new best is held in memory
    and written with the next save, so a run pays one write per checkpoint rather than one per
    improving epoch, and the best file never runs ahead of the checkpoint a resume starts from
    (which restores the best score)."""

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
        self._flush_best()

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
