"""The data of one training run, from what was asked to what came out.

`TrainRequest` (what the user asked: the config and the flags as given) -> `TrainPlan` (everything
resolved and validated; nothing trained, nothing written) -> `RunOutputs` (what the run produced).
The functions between them live in `training.run`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from townlet.sim.config import TownConfig
from townlet.sim.settings import BCConfig, PPOConfig
from townlet.telemetry.writer import TelemetryWriter
from townlet.training.data import ReplayData
from townlet.training.trainer import TrainResult
from townlet.training.warm_start import WarmStartPlan

#: A phase's config section (`ppo:`, `bc:`).
PhaseSection = PPOConfig | BCConfig

#: Where `--backend` collects a rollout run's epochs (`Backend.kind`).
BACKENDS = ("local", "ray")

#: Called with each epoch's record as the run goes.
EpochCallback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class TrainRequest:
    """What `townlet train` was asked for, before anything is resolved. `None`: not given (the
    config decides)."""

    config: Path
    seed: int | None = None
    #: rollout | replay | mixed (the ppo phase) or bc.
    mode: str | None = None
    epochs: int | None = None
    #: Section values given as flags (`--gamma 0.9` -> {"gamma": 0.9}), in the CLI's order;
    #: validated like the config's section.
    overrides: dict[str, Any] = field(default_factory=dict)
    capture_dir: Path | None = None
    replay_manifest: Path | None = None
    bc_manifest: Path | None = None
    #: A capture made just before training (`--rollout-save-dir`): bc learns from it when given
    #: no other data, and `rollout_ticks` is its length rather than a PPO override.
    rollout_save_dir: Path | None = None
    ppo_log: Path | None = None
    bc_log: Path | None = None
    log_frequency: int = 1
    log_max_entries: int | None = None
    checkpoint: Path | None = None
    checkpoint_every: int | None = None
    warm_start_load: Path | None = None
    fresh: bool = False
    allow_mismatch: bool = False
    #: `--backend local|ray`: collect a rollout run's epochs on shards (None: the one in-process collector).
    backend: str | None = None
    #: `--shards N`: how many shards the towns are split over (needs --backend).
    shards: int | None = None
    #: `--ray-address HOST:PORT`: the Ray cluster to join (--backend ray; None: a private one in this process).
    ray_address: str | None = None


@dataclass(frozen=True)
class Backend:
    """Where a sharded rollout run collects (`training.sharded_run`): `local` (the shards in this process) or
    `ray` (one actor per shard on the cluster at `address`, or on a private one started in this process)."""

    kind: str = "local"
    shards: int = 1
    address: str | None = None
    #: How often Ray may restart one shard's actor before the run stops.
    max_restarts: int = 2

    def describe(self) -> str:
        where = f" at {self.address}" if self.address else ""
        return f"backend {self.kind}{where}, {self.shards} shard{'s' if self.shards != 1 else ''}"


@dataclass(frozen=True)
class LogOptions:
    """The telemetry log of a run (one record per epoch)."""

    path: Path
    frequency: int = 1
    max_entries: int | None = None

    def open(self, start: int, *, extra: dict[str, Any] | None = None) -> TelemetryWriter:
        """The writer for a run that starts after epoch `start` (a resumed run continues its log); `extra`:
        fields every record gets before it is written (mixed mode's `anneal_ratio`)."""
        resume = start if start else None
        if extra:
            return _ExtraFieldsWriter(
                self.path, extra, frequency=self.frequency, max_entries=self.max_entries, resume_after=resume
            )
        return TelemetryWriter(self.path, frequency=self.frequency, max_entries=self.max_entries, resume_after=resume)


class _ExtraFieldsWriter(TelemetryWriter):
    """Adds fixed fields to each record (in place, so the epoch callbacks see them too) before writing it."""

    def __init__(self, path: Path, extra: dict[str, Any], **options: Any) -> None:
        super().__init__(path, **options)
        self.extra = dict(extra)

    def write(self, record: dict[str, Any], *, force: bool = False) -> bool:
        record.update(self.extra)
        return super().write(record, force=force)


@dataclass(frozen=True)
class TrainPlan:
    """A run, fully resolved: the phase's effective section (overrides and warm-start paths
    applied), its data, and where its weights come from and go."""

    config: TownConfig
    #: The phase's name (`training.phases.PHASES`).
    phase: str
    mode: str
    section: PhaseSection
    #: Train until this epoch (a resumed run continues to it).
    epochs: int
    seed: int
    #: Captured samples: PPO's replay data, or what bc clones.
    data: ReplayData | None
    checkpoint: Path | None
    checkpoint_every: int
    log: LogOptions | None
    #: The config's observation/action spec (checked against the data and the warm start).
    meta: dict[str, Any]
    warm: WarmStartPlan
    #: Mixed mode's learned/scripted blend for this run (None: `training.anneal_ratio`); an anneal stage sets it.
    anneal_ratio: float | None = None
    #: Sharded collection (`--backend`); None: the phase's own collector.
    backend: Backend | None = None


@dataclass
class RunOutputs:
    result: TrainResult
    checkpoint: Path | None
    telemetry: Path | None
    best: Path | None = None
    #: The epoch the run started from (0 unless it resumed).
    start_epoch: int = 0
    #: What the run told its `on_notice` callback, in order.
    notices: list[str] = field(default_factory=list)
