"""The env API under its public name: `townlet.env.TownEnv` and `townlet.env.VecTown` (defined in `townlet.sim.env`)."""

from townlet.sim.env import TownEnv, VecTown

__all__ = ["TownEnv", "VecTown"]
