"""What the trainer steps: Townlet's VecTown, or any PettingZoo ParallelEnv with discrete actions.

Both present the same batch interface (`TrainEnv`): every agent slot of every env is one row;
`step` returns observations, masks, rewards, terminations, truncations, final observations (for
truncated rows) and which rows hold a live agent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import gymnasium
import numpy as np
import numpy.typing as npt

from townlet.sim.config import PythonSections, TownConfig
from townlet.sim.env import VecTown

F32 = npt.NDArray[np.float32]
B = npt.NDArray[np.bool_]


#: The events whose values (not only their counts) a step reports, as `<name>_value`.
VALUED_EVENTS = ("queue_conflict", "chat_success")


@dataclass
class Batch:
    obs: F32
    masks: B
    rewards: F32
    terminated: B
    truncated: B
    final_obs: F32
    alive: B
    #: Event counters (name -> count) accumulated by the env for telemetry, when it has any.
    events: dict[str, float] = field(default_factory=dict)
    #: Or the same as one float64 vector over fixed names (`event_names`; Townlet towns), which a rollout sums as
    #: arrays (`RolloutStats.count`): building a dict of about 40 names every tick cost more than the towns' step.
    event_names: tuple[str, ...] = ()
    event_sums: npt.NDArray[np.float64] | None = None
    #: The KPIs of each town episode that ended in this step (Townlet towns only).
    episode_kpis: list[dict[str, float]] = field(default_factory=list)


class TrainEnv(Protocol):
    num_agents: int
    obs_dim: int
    n_actions: int

    def reset(self, seed: int | None) -> tuple[F32, B, B]: ...

    def step(self, actions: npt.NDArray[np.int64]) -> Batch: ...

    def metadata(self) -> dict[str, Any]: ...


#: Up to this many towns the trainer steps them on one thread: a town's tick takes about 8 us, less
#: than waking a thread pool costs, and the pool's idle workers spin on the core the policy needs
#: next (measured on 2 cores: 16 towns step in 0.16 ms on one thread, 0.19 ms on two). The results
#: do not depend on the thread count.
SEQUENTIAL_TOWNS = 16


class TownTrainEnv:
    """VecTown as a TrainEnv (towns reset themselves when an episode ends). `num_threads` as in
    VecTown (0: every core); by default one thread up to `SEQUENTIAL_TOWNS` towns, every core above."""

    def __init__(
        self,
        config: TownConfig,
        num_envs: int,
        seed: int,
        episode_ticks: int | None,
        num_threads: int | None = None,
    ):
        if num_threads is None:
            num_threads = 1 if num_envs <= SEQUENTIAL_TOWNS else 0
        self.vec = VecTown(config, num_envs, seed, episode_ticks=episode_ticks, num_threads=num_threads)
        self.num_threads = num_threads
        self.num_agents = self.vec.num_agents
        self.obs_dim = self.vec.obs_dim
        self.n_actions = self.vec.n_actions
        self._names = list(self.vec.native.event_names())
        # Every town's event counts and values of the last step, filled by one native call per step.
        self._counts = np.zeros((num_envs, len(self._names)), np.uint32)
        self._values = np.zeros((num_envs, len(self._names)), np.float32)
        #: The events' names, then the two whose values the telemetry reads (as `<name>_value`).
        self._valued = [self._names.index(name) for name in VALUED_EVENTS]
        self._event_names = (*self._names, *(f"{name}_value" for name in VALUED_EVENTS))

    def spec(self) -> dict[str, Any]:
        """What rebuilds these towns elsewhere (`from_spec`; the collector process's), as JSON-compatible data:
        the resolved world sections (all the core reads of a config), the town count, seed, episode length and
        stepping threads. The towns start as built: their state travels by `get_state`."""
        vec = self.vec
        return {
            "config_path": str(vec.config.path),
            "world": vec.config.world,
            "num_envs": vec.num_envs,
            "seed": vec.seed,
            "episode_ticks": vec.episode_ticks,
            "num_threads": self.num_threads,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> TownTrainEnv:
        config = TownConfig(path=Path(spec["config_path"]), raw={}, world=spec["world"], sections=PythonSections())
        return cls(config, spec["num_envs"], spec["seed"], spec["episode_ticks"], spec["num_threads"])

    def reset(self, seed: int | None) -> tuple[F32, B, B]:
        obs, info = self.vec.reset(seed)
        return obs, self.vec.action_masks(), info["alive"]

    def step(self, actions: npt.NDArray[np.int64]) -> Batch:
        obs, rew, term, trunc, info = self.vec.step(actions)
        self.vec.native.write_event_counts(self._counts, self._values)
        # Summed over towns in float64, town by town in index order (the telemetry's values depend on that order).
        counts = self._counts.sum(axis=0, dtype=np.float64)
        values = self._values[:, self._valued].astype(np.float64).sum(axis=0)
        ended = [kpis for _, kpis in self.vec.native.ended_kpis()]
        mask, final = self.vec.action_masks(), info["final_observation"]
        sums = np.concatenate([counts, values])
        return Batch(obs, mask, rew, term, trunc, final, info["alive"], episode_kpis=ended,
                     event_names=self._event_names, event_sums=sums)  # fmt: skip

    def metadata(self) -> dict[str, Any]:
        return self.vec.observation_metadata()

    def expert_actions(self) -> npt.NDArray[np.int64]:
        """The scripted expert's action for every slot in the current state (kickstarting's target)."""
        return self.vec.expert_actions()[0]

    def expert_motives(self) -> npt.NDArray[np.uint8]:
        """Why the expert chose each slot's action in the last `expert_actions` (`VecTown.expert_motives`)."""
        return self.vec.expert_motives()

    def get_state(self) -> dict[str, Any]:
        """The towns' state (JSON-compatible), for a checkpoint that resumes exactly."""
        return self.vec.get_state()

    def state_later(self) -> Callable[[], dict[str, Any]]:
        """`get_state()` as of now, built when called (`VecTown.state_later`)."""
        return self.vec.state_later()

    def set_state(self, state: dict[str, Any]) -> tuple[F32, B, B]:
        """Restore `get_state()` output; returns observations, masks and liveness as `reset` does."""
        obs = self.vec.set_state(state)
        return obs, self.vec.action_masks(), self.vec.alive


class ParallelTrainEnv:
    """K copies of a PettingZoo ParallelEnv with a fixed set of possible agents, one row per
    (copy, agent). Dict observations with `observation`/`action_mask` use the mask; others are
    flattened and every action is valid. A copy whose agents are all done is reset at once."""

    def __init__(self, make_env: Callable[[], Any], num_envs: int = 1) -> None:
        self.envs = [make_env() for _ in range(num_envs)]
        first = self.envs[0]
        self.agents = list(first.possible_agents)
        space = first.action_space(self.agents[0])
        if not isinstance(space, gymnasium.spaces.Discrete):
            raise TypeError(f"the trainer needs discrete actions, got {space}")
        self.n_actions = int(space.n)
        obs_space = first.observation_space(self.agents[0])
        self._dict = isinstance(obs_space, gymnasium.spaces.Dict) and "observation" in obs_space.spaces
        inner = obs_space["observation"] if self._dict else obs_space
        self.obs_dim = int(np.prod(inner.shape))
        self.num_agents = num_envs * len(self.agents)
        n = self.num_agents
        self._obs = np.zeros((n, self.obs_dim), np.float32)
        self._masks = np.ones((n, self.n_actions), np.bool_)
        self._alive = np.zeros(n, np.bool_)
        self._seed = 0

    def _write(self, k: int, observations: dict[str, Any]) -> None:
        m = len(self.agents)
        for j, agent in enumerate(self.agents):
            row = k * m + j
            if agent in observations:
                ob = observations[agent]
                vec = ob["observation"] if self._dict else ob
                self._obs[row] = np.asarray(vec, np.float32).reshape(-1)
                self._masks[row] = np.asarray(ob["action_mask"], bool) if self._dict else True
                self._alive[row] = True
            else:
                self._obs[row] = 0.0
                self._masks[row] = False
                self._masks[row, 0] = True
                self._alive[row] = False

    def reset(self, seed: int | None) -> tuple[F32, B, B]:
        self._seed = 0 if seed is None else seed
        for k, env in enumerate(self.envs):
            obs, _ = env.reset(seed=self._seed + k)
            self._write(k, obs)
        return self._obs, self._masks, self._alive

    def step(self, actions: npt.NDArray[np.int64]) -> Batch:
        n, m = self.num_agents, len(self.agents)
        rewards = np.zeros(n, np.float32)
        term = np.zeros(n, np.bool_)
        trunc = np.zeros(n, np.bool_)
        final = np.zeros((n, self.obs_dim), np.float32)
        for k, env in enumerate(self.envs):
            live = list(env.agents)
            acts = {a: int(actions[k * m + self.agents.index(a)]) for a in live}
            obs, rew, te, tr, _ = env.step(acts)
            for j, agent in enumerate(self.agents):
                row = k * m + j
                rewards[row] = float(rew.get(agent, 0.0))
                term[row] = bool(te.get(agent, False))
                trunc[row] = bool(tr.get(agent, False)) and not term[row]
                if trunc[row] and agent in obs:
                    ob = obs[agent]
                    final[row] = np.asarray(ob["observation"] if self._dict else ob, np.float32).reshape(-1)
            if not env.agents:
                self._seed += len(self.envs)
                obs, _ = env.reset(seed=self._seed + k)
            self._write(k, obs)
        return Batch(self._obs, self._masks, rewards, term, trunc, final, self._alive.copy())

    def metadata(self) -> dict[str, Any]:
        return {"obs_dim": self.obs_dim, "action_names": [str(i) for i in range(self.n_actions)]}


class GymAsParallel:
    """A single-agent Gymnasium env as a one-agent PettingZoo ParallelEnv (e.g. CartPole-v1)."""

    metadata: ClassVar[dict[str, Any]] = {"name": "gym_as_parallel", "render_modes": []}

    def __init__(self, env_id: str, **kwargs: Any) -> None:
        self.env = gymnasium.make(env_id, **kwargs)
        self.possible_agents = ["agent_0"]
        self.agents: list[str] = []

    def observation_space(self, agent: str) -> gymnasium.spaces.Space[Any]:
        return self.env.observation_space

    def action_space(self, agent: str) -> gymnasium.spaces.Space[Any]:
        return self.env.action_space

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        obs, info = self.env.reset(seed=seed)
        self.agents = list(self.possible_agents)
        return {"agent_0": obs}, {"agent_0": info}

    def step(
        self, actions: dict[str, int]
    ) -> tuple[dict[str, Any], dict[str, float], dict[str, bool], dict[str, bool], dict[str, Any]]:
        obs, rew, term, trunc, info = self.env.step(actions["agent_0"])
        if term or trunc:
            self.agents = []
        return (
            {"agent_0": obs},
            {"agent_0": float(rew)},
            {"agent_0": bool(term)},
            {"agent_0": bool(trunc)},
            {"agent_0": info},
        )
