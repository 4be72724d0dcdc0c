"""What a training phase provides to the entry point (`training.run`)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from townlet.sim.config import TownConfig
from townlet.training.data import ReplayData
from townlet.training.request import EpochCallback, PhaseSection, RunOutputs, TrainPlan, TrainRequest
from townlet.training.warm_start import Notify


class Phase(Protocol):
    #: The phase's name: its config section, checkpoint metadata and telemetry `phase`.
    name: str
    #: The `--mode` values that select this phase.
    modes: tuple[str, ...]
    #: The section fields `townlet train` flags may override in this phase.
    overrides: frozenset[str]

    def section(self, config: TownConfig) -> PhaseSection:
        """The config's section for this phase."""
        ...

    def default_epochs(self, config: TownConfig, section: PhaseSection) -> int:
        """How many epochs to train when `--epochs` is not given."""
        ...

    def log_path(self, request: TrainRequest) -> Path | None:
        """The telemetry log the request asks for."""
        ...

    def load_data(
        self, request: TrainRequest, config: TownConfig, section: PhaseSection, mode: str
    ) -> ReplayData | None:
        """The captured samples the run trains on (None: it needs none)."""
        ...

    def check_plan(self, plan: TrainPlan) -> TrainPlan:
        """Refuse (or annotate) a plan this phase cannot run; nothing is trained or written."""
        ...

    def run(self, plan: TrainPlan, *, on_epoch: EpochCallback | None, notify: Notify) -> RunOutputs:
        """Train as planned: build, load the warm start, run the epochs, save."""
        ...
