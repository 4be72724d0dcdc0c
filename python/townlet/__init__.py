"""Townlet: a deterministic Rust town simulation for training agents, with a Python training and
operations layer."""

from townlet._core import ACTION_SPACE_VERSION, SNAPSHOT_VERSION
from townlet.errors import ConfigError, TownletError
from townlet.sim.config import TownConfig, load_config
from townlet.sim.simulation import Simulation
from townlet.training.threads import wait_passively

wait_passively()  # before torch loads (nothing above imports it): idle OpenMP threads sleep, not spin

__all__ = [
    "ACTION_SPACE_VERSION",
    "SNAPSHOT_VERSION",
    "ConfigError",
    "Simulation",
    "TownConfig",
    "TownletError",
    "load_config",
]
__version__ = "0.1.0"
