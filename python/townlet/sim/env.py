"""The env API: `VecTown` (N towns x M agents per call, Gymnasium vector naming) and `TownEnv`
(a PettingZoo `ParallelEnv`).

Observations are one float32 vector per agent: the egocentric map (C, H, W) flattened, then the
named features (`observation_metadata()` gives the layout). Every value lies in [-1, 1].

`VecTown` contract
------------------
* `step(actions)` takes an int array of shape (num_envs * agents_per_env,) and returns
  `(observations, rewards, terminations, truncations, infos)`. The arrays are preallocated and
  reused by every call (no copies): copy what you keep.
* Same-step autoreset: when a town reaches `episode_ticks`, its live agents are truncated, their
  last observations are in `infos["final_observation"]` and the action masks of those observations
  in `infos["final_action_mask"]` (rows where truncated; both belong to the ending episode), and the
  town is reset at once, so the returned observations and `infos["action_mask"]` already start the
  next episode. Rows neither truncated nor terminated this step hold stale values.
* An agent that faints or is evicted has `terminations = True` and `infos["alive"] = False` on that
  tick, and its real last observation (the world as the tick ends, before it is removed) with that
  observation's mask: in the returned observations and `infos["action_mask"]` (unless its town resets
  this tick), and in `infos["final_observation"]`/`infos["final_action_mask"]`. From the next tick
  its slot reads as dead (zero observation, only `wait` valid, reward 0) until the agent respawns in
  the same slot under a new lineage id, with the `ctx_reset` feature set.
* A masked (invalid) action is applied as `wait` and flagged in `infos["invalid_action"]`.
* Action 0 is `wait` and is always valid.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import gymnasium
import numpy as np
import numpy.typing as npt
from pettingzoo import ParallelEnv

from townlet import _core
from townlet.sim.config import TownConfig, load_config
from townlet.sim.fixed_slots import Step, step_fixed

#: `VecTown.expert_motives`: why the scripted expert chose an action (the core's `expert::MOTIVE_*`).
MOTIVE_LEISURE, MOTIVE_DUTY, MOTIVE_SHIFT = _core.MOTIVE_LEISURE, _core.MOTIVE_DUTY, _core.MOTIVE_SHIFT

ConfigLike = TownConfig | str | Path


def _load(config: ConfigLike) -> TownConfig:
    return config if isinstance(config, TownConfig) else load_config(config)


def _seed_from(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**63 - 1))


class VecTown:
    """N towns x M agents stepped in one call, in parallel across towns (GIL released)."""

    def __init__(
        self,
        config: ConfigLike,
        num_envs: int = 1,
        seed: int | None = None,
        *,
        episode_ticks: int | None = None,
        num_threads: int = 0,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if num_threads < 0:
            raise ValueError(f"num_threads must be >= 0 (0 = every core), got {num_threads}")
        self.config = _load(config)
        ticks = (
            episode_ticks or self.config.scenario_ticks or int(self.config.world["world"].get("ticks_per_day", 1440))
        )
        if ticks < 1:
            raise ValueError(f"episode_ticks must be >= 1, got {ticks}")
        self.seed = self.config.seed if seed is None else seed
        self._seeds = np.random.default_rng(self.seed)
        self.native = _core.VecTown(self.config.world_json(), num_envs, self.seed, ticks, num_threads)
        self.num_envs = num_envs
        self.agents_per_env = int(self.native.agents_per_env)
        self.num_agents = self.num_envs * self.agents_per_env
        self.episode_ticks = ticks
        self.obs_dim = int(self.native.obs_dim)
        self.n_actions = int(self.native.n_actions)
        self.single_observation_space = gymnasium.spaces.Box(-1.0, 1.0, shape=(self.obs_dim,), dtype=np.float32)
        self.single_action_space = gymnasium.spaces.Discrete(self.n_actions)
        self.observation_space = gymnasium.spaces.Box(
            -1.0, 1.0, shape=(self.num_agents, self.obs_dim), dtype=np.float32
        )
        self.action_space = gymnasium.spaces.MultiDiscrete(np.full(self.num_agents, self.n_actions))
        n, d = self.num_agents, self.obs_dim
        self._obs = np.zeros((n, d), np.float32)
        self._masks = np.zeros((n, self.n_actions), np.bool_)
        self._rewards = np.zeros(n, np.float32)
        self._terminated = np.zeros(n, np.bool_)
        self._truncated = np.zeros(n, np.bool_)
        self._final_obs = np.zeros((n, d), np.float32)
        self._final_masks = np.zeros((n, self.n_actions), np.bool_)
        self._alive = np.ones(n, np.bool_)
        self._invalid = np.zeros(n, np.bool_)
        self._expert_actions = np.zeros(n, np.int64)
        self._expert_logp = np.zeros(n, np.float32)
        self._expert_motives = np.zeros(n, np.uint8)
        self._needs_reset = True

    # -- Gymnasium-style API --------------------------------------------------------------------------

    def reset(self, seed: int | None = None) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
        """Reset every town. With a seed, episodes are reproducible; without one, the next seed is
        drawn from a generator seeded by the constructor's (so a whole run stays reproducible)."""
        if seed is not None:
            self.seed = seed
            self._seeds = np.random.default_rng(seed)
            run_seed = seed
        else:
            run_seed = self.seed if self._needs_reset else _seed_from(self._seeds)
        self.native.reset(self._obs, self._masks, run_seed)
        self._alive[:] = True
        self._needs_reset = False
        return self._obs, {"alive": self._alive, "action_mask": self._masks}

    def step(
        self, actions: npt.ArrayLike
    ) -> tuple[
        npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.bool_], npt.NDArray[np.bool_], dict[str, Any]
    ]:
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        acts = np.asarray(actions)
        if acts.shape != (self.num_agents,):
            raise ValueError(f"actions must have shape ({self.num_agents},), got {acts.shape}")
        if acts.dtype.kind not in "iu":  # np.issubdtype(dtype, np.integer), at a tenth of the cost
            raise TypeError(f"actions must be integers, got dtype {acts.dtype}")
        # The native step range-checks the actions, applies masked ones (by the masks the agents saw)
        # as `wait` and flags them in `invalid`; it says whether any slot ended.
        ended = self.native.step(
            np.ascontiguousarray(acts, dtype=np.int64),
            self._obs,
            self._masks,
            self._rewards,
            self._terminated,
            self._truncated,
            self._final_obs,
            self._alive,
            self._invalid,
        )
        if ended:
            self.native.final_masks(self._final_masks)
        infos = {
            "alive": self._alive,
            "invalid_action": self._invalid,
            "final_observation": self._final_obs,
            "final_action_mask": self._final_masks,
            "action_mask": self._masks,
        }
        return self._obs, self._rewards, self._terminated, self._truncated, infos

    def get_state(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly: every town's state (RNG streams
        included), the episode counters and the reset-seed generator. JSON-compatible."""
        return self.state_later()()

    def state_later(self) -> Callable[[], dict[str, Any]]:
        """`get_state()` as of now, built when called: the core writes the towns' JSON text now
        (without the GIL, well under a millisecond for 8 towns) and the call parses it (a few
        milliseconds under the GIL), so a caller that keeps a state in case a checkpoint follows
        (the trainer collecting ahead, every epoch) pays for the parse only when one does."""
        if self._needs_reset:
            raise RuntimeError("call reset() before get_state()")
        text, seed, seeds = self.native.state_json(), self.seed, self._seeds.bit_generator.state
        return lambda: {"towns": json.loads(text), "seed": seed, "reset_seeds": copy.deepcopy(seeds)}

    def set_state(self, state: dict[str, Any]) -> npt.NDArray[np.float32]:
        """Restore `get_state()` output taken with the same config, number of towns and episode
        length (SnapshotError otherwise); returns the current observations (masks and liveness
        are in `action_masks()` and `alive`)."""
        try:
            towns, seed, seeds = state["towns"], int(state["seed"]), state["reset_seeds"]
        except (KeyError, TypeError, ValueError) as exc:
            raise _core.SnapshotError(f"not a VecTown state ({exc})") from None
        self.native.load_state(json.dumps(towns), self._obs, self._masks, self._alive)
        rng = np.random.default_rng()
        try:
            rng.bit_generator.state = seeds
        except (TypeError, ValueError, KeyError) as exc:
            raise _core.SnapshotError(f"VecTown state: bad reset_seeds ({exc})") from None
        self.seed, self._seeds, self._needs_reset = seed, rng, False
        return self._obs

    @property
    def alive(self) -> npt.NDArray[np.bool_]:
        """Which agent slots hold a live agent now."""
        return self._alive

    def action_masks(self) -> npt.NDArray[np.bool_]:
        """Valid actions per agent slot, shape (num_envs * agents_per_env, n_actions)."""
        return self._masks

    def expert_actions(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The scripted expert's actions for the current state, and their log-probabilities."""
        self.native.expert_actions(self._expert_actions, self._expert_logp)
        return self._expert_actions, self._expert_logp

    def expert_motives(self) -> npt.NDArray[np.uint8]:
        """Why the expert chose each slot's action in the last `expert_actions`: `MOTIVE_LEISURE` (a chat, or going
        home with nothing due), `MOTIVE_DUTY` (a need, sleep, an activity under way) or `MOTIVE_SHIFT` (setting off
        for work, queueing there, working)."""
        self.native.expert_motives(self._expert_motives)
        return self._expert_motives

    def reward_breakdown(self, env: int = 0) -> dict[str, npt.NDArray[np.float32]]:
        """Last step's reward components for town `env`, one array (agents_per_env,) each."""
        table = self.native.reward_breakdown(env)
        return {name: table[:, k] for k, name in enumerate(self.native.reward_components())}

    def agent_ids(self, env: int = 0) -> list[str]:
        return list(self.native.agent_ids(env))

    def observation_metadata(self) -> dict[str, Any]:
        return self.native.obs_spec()

    def close(self) -> None:
        """Nothing to release: towns live in this process."""


def observation_spec(config: TownConfig) -> dict[str, Any]:
    """The observation and action layout of a config's towns (what `VecTown.observation_metadata()` gives), computed
    by the core from the config alone: no town is built."""
    return _core.obs_spec(config.world_json())


# pettingzoo ships no type information, so its base class is Any to mypy.
class TownEnv(ParallelEnv[str, dict[str, Any], int]):  # type: ignore[misc]
    """One town as a PettingZoo `ParallelEnv`.

    Observations are dicts with `observation` (float32 vector) and `action_mask` (int8). An agent
    that faints or is evicted terminates and never returns; when its slot respawns, a new agent id
    (`alice#2`) joins `agents` and `possible_agents` (which therefore lists every id that has
    existed this episode). At `episode_ticks` every agent is truncated and `agents` empties.

    `fixed_slots=True` (the "black death" convention, for libraries that need a fixed agent set):
    `agents` is `possible_agents`, one name per slot, for the whole episode. An agent that faints or
    is evicted is not terminated; while its slot is empty it gets a zero observation, a wait-only
    mask and reward 0, and its respawned successor comes back under the slot's name (infos carry
    `alive`, `down` on the tick it went down, with its real last observation in `final_observation`,
    and `agent_id`, the lineage id). Only the end of the episode ends an agent: every slot is
    truncated then.

    Pickling (and `copy.deepcopy`) carries plain data only: the config, the seed, the options and,
    once reset, the town's state (`VecTown.get_state()`, a JSON-compatible dict) with the agent
    bookkeeping, so the copy continues exactly where the original is. No native handle is pickled.
    """

    metadata: ClassVar[dict[str, Any]] = {"name": "townlet_v1", "render_modes": ["ansi"], "is_parallelizable": True}

    def __init__(
        self,
        config: ConfigLike,
        seed: int | None = None,
        *,
        episode_ticks: int | None = None,
        render_mode: str | None = None,
        fixed_slots: bool = False,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        self.fixed_slots = bool(fixed_slots)
        self._vec = VecTown(config, 1, seed, episode_ticks=episode_ticks, num_threads=1)
        self._slots: list[str] = self._vec.agent_ids(0)
        self._originals = list(self._slots)
        self.possible_agents = list(self._originals)
        self.agents: list[str] = []
        obs_space = gymnasium.spaces.Dict(
            {
                "observation": self._vec.single_observation_space,
                "action_mask": gymnasium.spaces.Box(0, 1, shape=(self._vec.n_actions,), dtype=np.int8),
            }
        )
        self._obs_space = obs_space
        self._act_space = self._vec.single_action_space
        self.observation_spaces = {a: obs_space for a in self.possible_agents}
        self.action_spaces = {a: self._act_space for a in self.possible_agents}

    def observation_space(self, agent: str) -> gymnasium.spaces.Space[Any]:
        return self._obs_space

    def action_space(self, agent: str) -> gymnasium.spaces.Space[Any]:
        return self._act_space

    def _agent_obs(self, row: npt.NDArray[np.float32], mask: npt.NDArray[np.bool_]) -> dict[str, Any]:
        return {"observation": row.copy(), "action_mask": mask.astype(np.int8)}

    def _register(self, agent: str) -> None:
        if agent not in self.observation_spaces:
            self.possible_agents.append(agent)
            self.observation_spaces[agent] = self._obs_space
            self.action_spaces[agent] = self._act_space

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        obs, _ = self._vec.reset(seed)
        masks = self._vec.action_masks()
        self._slots = self._vec.agent_ids(0)
        self.possible_agents = list(self._originals)
        self.observation_spaces = {a: self._obs_space for a in self.possible_agents}
        self.action_spaces = {a: self._act_space for a in self.possible_agents}
        names = self._originals if self.fixed_slots else self._slots
        self.agents = list(names)
        observations = {a: self._agent_obs(obs[i], masks[i]) for i, a in enumerate(names)}
        infos: dict[str, dict[str, Any]] = {a: {"slot": i} for i, a in enumerate(names)}
        if self.fixed_slots:
            for i, a in enumerate(names):
                infos[a].update(alive=True, down=False, agent_id=self._slots[i])
        return observations, infos

    def step(self, actions: dict[str, int]) -> Step:
        if not self.agents:
            raise RuntimeError("no live agents: call reset() to start a new episode")
        if self.fixed_slots:
            return step_fixed(self, actions)
        live = set(self.agents)
        slot_of = {a: i for i, a in enumerate(self._slots)}
        batch = self._batch(actions, live, slot_of)
        episode = self._vec.native.episode(0)
        obs, rewards, terminated, truncated, info = self._vec.step(batch)
        masks = self._vec.action_masks()
        final, final_masks = info["final_observation"], info["final_action_mask"]
        new_slots = self._vec.agent_ids(0)
        episode_over = self._vec.native.episode(0) != episode
        out_obs: dict[str, dict[str, Any]] = {}
        out_rew: dict[str, float] = {}
        out_term: dict[str, bool] = {}
        out_trunc: dict[str, bool] = {}
        out_info: dict[str, dict[str, Any]] = {}
        next_agents: list[str] = []
        for i, agent in enumerate(self._slots):
            if agent not in live:
                continue
            # A truncated agent's last observation and its mask both belong to the ending episode.
            row, mask = (final[i], final_masks[i]) if truncated[i] else (obs[i], masks[i])
            out_obs[agent] = self._agent_obs(row, mask)
            out_rew[agent] = float(rewards[i])
            out_term[agent] = bool(terminated[i])
            out_trunc[agent] = bool(truncated[i])
            out_info[agent] = {"slot": i, "invalid_action": bool(info["invalid_action"][i])}
            if not (terminated[i] or truncated[i]):
                next_agents.append(agent)
        while not episode_over and not next_agents and not info["alive"].any():
            # Every agent is down at once: run the empty ticks until a slot respawns or the episode ends.
            obs, _, _, _, info = self._vec.step(np.zeros(self._vec.num_agents, np.int64))
            episode_over = self._vec.native.episode(0) != episode
            new_slots = self._vec.agent_ids(0)
        if not episode_over:
            # Respawned slots join under their new lineage ids.
            for i, agent in enumerate(new_slots):
                if info["alive"][i] and agent not in live and agent not in out_obs:
                    self._register(agent)
                    next_agents.append(agent)
                    out_obs[agent] = self._agent_obs(obs[i], masks[i])
                    out_rew[agent] = 0.0
                    out_term[agent] = False
                    out_trunc[agent] = False
                    out_info[agent] = {"slot": i, "invalid_action": False, "respawned": True}
        self._slots = new_slots
        self.agents = [a for a in new_slots if a in next_agents] if not episode_over else []
        return out_obs, out_rew, out_term, out_trunc, out_info

    def _batch(self, actions: dict[str, int], live: set[str], slot_of: dict[str, int]) -> npt.NDArray[np.int64]:
        """The actions as one row per slot (`wait` for slots not named), each checked."""
        batch = np.zeros(self._vec.num_agents, np.int64)
        for agent, action in actions.items():
            if agent not in live:
                raise KeyError(f"{agent!r} is not a live agent (live: {sorted(live)})")
            arr = np.asarray(action)
            if arr.shape != () or not np.issubdtype(arr.dtype, np.integer):
                raise TypeError(f"action for {agent!r} must be an integer, got {action!r}")
            a = int(arr)
            if not 0 <= a < self._vec.n_actions:
                raise ValueError(f"action {a} for {agent!r} is outside [0, {self._vec.n_actions})")
            batch[slot_of[agent]] = a
        return batch

    # -- pickling: plain data only, rebuilt from the config, seed and options (and the state once reset) --

    def __reduce__(self) -> tuple[Any, ...]:
        vec = self._vec
        options = {"episode_ticks": vec.episode_ticks, "render_mode": self.render_mode, "fixed_slots": self.fixed_slots}
        state = None
        if not vec._needs_reset:
            state = {
                "vec": vec.get_state(),
                "agents": list(self.agents),
                "possible_agents": list(self.possible_agents),
                "slots": list(self._slots),
            }
        return (_rebuild_town_env, (vec.config, vec.seed, options, state))

    def observation_metadata(self) -> dict[str, Any]:
        return self._vec.observation_metadata()

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        return render_ansi(self._vec.native.agent_ids(0), self._vec.config)

    def close(self) -> None:
        self._vec.close()

    def state(self) -> npt.NDArray[np.float32]:
        """The global state: every slot's observation, concatenated."""
        return self._vec._obs.reshape(-1).copy()


def _rebuild_town_env(config: TownConfig, seed: int, options: dict[str, Any], state: dict[str, Any] | None) -> TownEnv:
    """Unpickle a `TownEnv`: a new town from the config, seed and options, then its saved state."""
    env = TownEnv(config, seed, **options)
    if state is not None:
        env._vec.set_state(state["vec"])
        env.possible_agents = list(state["possible_agents"])
        env.observation_spaces = {a: env._obs_space for a in env.possible_agents}
        env.action_spaces = {a: env._act_space for a in env.possible_agents}
        env.agents = list(state["agents"])
        env._slots = list(state["slots"])
    return env


def render_ansi(agent_ids: list[str], config: TownConfig) -> str:
    return f"{config.config_id}: " + ", ".join(agent_ids)
