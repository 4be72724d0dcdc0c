"""The training phases by name: a phase is one module here (see `base.Phase`) and a line below."""

from __future__ import annotations

from townlet.errors import UsageError
from townlet.training.phases.base import Phase
from townlet.training.phases.bc import BC
from townlet.training.phases.bc_memory import BC_MEMORY
from townlet.training.phases.memory import MEMORY
from townlet.training.phases.ppo import PPO

#: In the order `--mode` lists their modes.
PHASES: dict[str, Phase] = {phase.name: phase for phase in (PPO, BC, MEMORY, BC_MEMORY)}


def all_modes() -> tuple[str, ...]:
    return tuple(mode for phase in PHASES.values() for mode in phase.modes)


def phase_for_mode(mode: str) -> Phase:
    """The phase a `--mode` value selects."""
    for phase in PHASES.values():
        if mode in phase.modes:
            return phase
    raise UsageError(f"--mode must be one of {', '.join(all_modes())}, got {mode!r}")


__all__ = ["PHASES", "Phase", "all_modes", "phase_for_mode"]
