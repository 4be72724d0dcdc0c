"""The env API under its public name: `townlet.env.TownEnv` and `townlet.env.VecTown` (defined in `townlet.sim.env`).

`townlet.env.sb3` (imported on its own, it needs the `bench` extra) adapts `VecTown` to Stable-Baselines3:
`make_vec_env(CONFIG, num_towns, seed)`. docs/ecosystem.md has the recipes for SB3, PufferLib-style and RLlib users.
"""

from townlet.sim.env import TownEnv, VecTown

__all__ = ["TownEnv", "VecTown"]
