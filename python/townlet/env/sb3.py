"""Stable-Baselines3 over `VecTown`: `make_vec_env(CONFIG, num_towns, seed)` is an SB3 `VecEnv` with one index per
(town, agent slot), for SB3's PPO and sb3-contrib's `MaskablePPO` (docs/ecosystem.md has the recipe).

Needs the `bench` extra (`pip install -e '.[bench]'`: stable-baselines3 and sb3-contrib); Townlet itself never
imports this module.

The contract, index `i = town * agents_per_env + slot` (fixed slots: an index is always the same slot):

* `action_masks()` returns the valid actions of the current observations, `bool` of shape (num_envs, n_actions),
  what MaskablePPO reads (through `env_method("action_masks")` as well).
* The end of the day is a time limit: every index of that town is done with `infos[i]["TimeLimit.truncated"] =
  True` and `infos[i]["terminal_observation"]` (the day's last observation), so SB3 bootstraps it; the returned
  observation already starts the next day (the towns reset themselves).
* An agent that faints or is evicted ends its slot's episode: done, `TimeLimit.truncated = False`,
  `terminal_observation` set. The slot then reads dead (the "black death" convention: zero observation, only
  `wait` valid, reward 0) until its successor respawns in the same slot and the slot's next episode goes on.
* `seed(s)` seeds the next `reset()` (every town is seeded from `s`, as `VecTown.reset(s)`); without it the towns
  are seeded from `seed` given here, then from a generator seeded by it (reproducible).
* An action the mask forbids is applied as `wait` and flagged `infos[i]["masked_action"] = True`.
  `infos[i]["invalid_action"] = True` flags it too, and also an action the mask allowed that failed in the world
  (two agents reaching for the same object on one tick, say): those the towns count in their `invalid_actions` KPI.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from townlet.sim.env import ConfigLike, VecTown

try:
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
    from stable_baselines3.common.vec_env import VecEnv
    from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "townlet.env.sb3 needs Stable-Baselines3, which Townlet does not install by default: "
        "pip install -e '.[bench]' (or: pip install stable-baselines3 sb3-contrib)"
    ) from exc

__all__ = ["TownFeatures", "TownVecEnv", "make_vec_env", "policy_kwargs"]


class TownVecEnv(VecEnv):
    """`VecTown` as an SB3 `VecEnv`: one index per (town, agent slot). See the module's docstring."""

    def __init__(
        self,
        config: ConfigLike,
        num_towns: int = 1,
        seed: int | None = None,
        *,
        episode_ticks: int | None = None,
        num_threads: int = 0,
    ) -> None:
        self.vec = VecTown(config, num_towns, seed, episode_ticks=episode_ticks, num_threads=num_threads)
        self.render_mode = None  # read by VecEnv.__init__
        super().__init__(self.vec.num_agents, self.vec.single_observation_space, self.vec.single_action_space)
        self.num_towns = num_towns
        self.agents_per_env = self.vec.agents_per_env
        n = self.vec.num_agents
        self._actions = np.zeros(n, np.int64)
        self._rows = np.arange(n)
        self._obs = np.zeros((n, self.vec.obs_dim), np.float32)
        self._masks = np.zeros((n, self.vec.n_actions), np.bool_)
        self._episodes = np.zeros(num_towns, np.int64)
        self._next_seed: int | None = None

    # -- the VecEnv API ----------------------------------------------------------------------------------

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Seed the next `reset()`: every town from `seed` (SB3's way: `None` draws one from numpy's global RNG)."""
        if seed is None:
            seed = int(np.random.randint(0, np.iinfo(np.uint32).max, dtype=np.uint32))
        self._next_seed = int(seed)
        return [self._next_seed] * self.num_envs

    def reset(self) -> VecEnvObs:
        seed, self._next_seed = self._next_seed, None
        obs, info = self.vec.reset(seed)
        self._publish(obs, info["alive"])
        self._episodes[:] = [self.vec.native.episode(t) for t in range(self.num_towns)]
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return self._obs.copy()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions[:] = np.asarray(actions).reshape(-1)

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, terminated, truncated, info = self.vec.step(self._actions)
        final = info["final_observation"]
        dones = terminated.copy()
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(terminated):  # fainted or evicted: the slot's episode ends, not bootstrapped
            infos[i]["TimeLimit.truncated"] = False
            infos[i]["terminal_observation"] = final[i].copy()  # its real last observation
        m = self.agents_per_env
        for town in range(self.num_towns):
            episode = self.vec.native.episode(town)
            if episode == self._episodes[town]:
                continue
            self._episodes[town] = episode  # the day ended: a time limit for every slot of the town
            for row in range(town * m, (town + 1) * m):
                if terminated[row]:
                    continue
                dones[row] = True
                # A slot that was already empty ends the day with the dead slot's zero observation.
                last = final[row] if truncated[row] else np.zeros_like(final[row])
                infos[row]["TimeLimit.truncated"] = True
                infos[row]["terminal_observation"] = last.copy()
        for i in np.flatnonzero(info["invalid_action"]):
            infos[i]["invalid_action"] = True
        # Still the masks of the observations the actions answered (`_publish` below replaces them).
        for i in np.flatnonzero(~self._masks[self._rows, self._actions]):
            infos[i]["masked_action"] = True
        self._publish(obs, info["alive"])
        return self._obs.copy(), rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self.vec.close()

    def action_masks(self) -> npt.NDArray[np.bool_]:
        """The valid actions of the current observations, (num_envs, n_actions) bool (a copy)."""
        return self._masks.copy()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The attribute of this VecEnv, once per index (the indices share one set of towns)."""
        value = getattr(self, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **kw: Any) -> list[Any]:
        """`action_masks` gives each index its own row; any other method of this VecEnv is called once and its
        result given to every index."""
        rows = list(self._get_indices(indices))
        if method_name == "action_masks":
            return [self._masks[i].copy() for i in rows]
        result = getattr(self, method_name)(*method_args, **kw)
        return [result for _ in rows]

    def env_is_wrapped(self, wrapper_class: type[Any], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    # -- helpers -----------------------------------------------------------------------------------------

    def _publish(self, obs: npt.NDArray[np.float32], alive: npt.NDArray[np.bool_]) -> None:
        """Copy the towns' observations and masks out; an empty slot reads dead (zeros, only `wait`)."""
        self._obs[:] = obs
        self._masks[:] = self.vec.action_masks()
        dead = ~alive
        if dead.any():
            self._obs[dead] = 0.0
            self._masks[dead] = False
            self._masks[dead, 0] = True


def make_vec_env(
    config: ConfigLike,
    num_towns: int = 1,
    seed: int | None = None,
    *,
    episode_ticks: int | None = None,
    num_threads: int = 0,
) -> TownVecEnv:
    """`num_towns` towns of `config` as one SB3 `VecEnv` (`num_towns * agents_per_env` indices), seeded `seed`
    (the config's seed by default). `episode_ticks` overrides the episode length (a day by default)."""
    return TownVecEnv(config, num_towns, seed, episode_ticks=episode_ticks, num_threads=num_threads)


class TownFeatures(BaseFeaturesExtractor):
    """The encoder of Townlet's own network (`training.network.ConflictAwarePolicy`), shared by the actor and the
    critic: a strided 3x3 convolution (8 channels) over the egocentric map and a linear layer over the named
    features, `hidden // 2` units each, ReLU, concatenated (`hidden` features)."""

    def __init__(
        self, observation_space: Any, map_shape: tuple[int, int, int], n_features: int, hidden: int = 128
    ) -> None:
        super().__init__(observation_space, features_dim=hidden)
        c, h, w = map_shape
        self.map_shape = (c, h, w)
        self.map_len = c * h * w
        self.map_encoder = nn.Sequential(nn.Conv2d(c, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten())
        with torch.no_grad():
            flat = int(self.map_encoder(torch.zeros(1, c, h, w)).shape[1])
        self.map_fc = nn.Sequential(nn.Linear(flat, hidden // 2), nn.ReLU())
        self.feature_encoder = nn.Sequential(nn.Linear(n_features, hidden // 2), nn.ReLU())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        maps = observations[:, : self.map_len].reshape(-1, *self.map_shape)
        feats = observations[:, self.map_len :]
        return torch.cat([self.map_fc(self.map_encoder(maps)), self.feature_encoder(feats)], dim=-1)


def policy_kwargs(venv: TownVecEnv, hidden: int = 128) -> dict[str, Any]:
    """`policy_kwargs` for SB3's (or MaskablePPO's) `"MlpPolicy"` that build Townlet's own network: the map and
    feature encoder (`TownFeatures`), then one `hidden` ReLU layer each for the actor and the critic."""
    meta = venv.vec.observation_metadata()
    return {
        "features_extractor_class": TownFeatures,
        "features_extractor_kwargs": {
            "map_shape": tuple(int(x) for x in meta["map_shape"]),
            "n_features": int(meta["n_features"]),
            "hidden": hidden,
        },
        "net_arch": {"pi": [hidden], "vf": [hidden]},
        "activation_fn": nn.ReLU,
    }
