"""Rollout shards: the towns of a run split over N shards that collect with a copy of the policy, and one
learner that joins their blocks (`--backend local|ray --shards N`).

The result does not depend on how many shards there are, nor on where they run:
- every town `k` gets its own seeds from a SeedSequence split of (seed, k) (`town_seeds`), never seed + k:
  the town's world (a one-town VecTown) and the generator its agents' actions are sampled from;
- a shard steps and acts town by town (the policy's forward pass sees one town's agents at a time, so no
  result depends on how many rows were batched together), in one torch thread;
- the learner joins the blocks in shard order along the agent axis (`gather`), so the epoch's rows come out
  in the order one shard holding every town would give (tick-major, towns in index order).
`LocalShards` runs the shards in this process; `ray_shards.RayShards` runs each as a Ray actor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch

from townlet import _core
from townlet.sim.config import TownConfig
from townlet.sim.settings import PPOConfig
from townlet.training.envs import TownTrainEnv
from townlet.training.ppo import Dataset, RolloutStats
from townlet.training.state import set_torch_generator_state, torch_generator_state
from townlet.training.threads import one_torch_thread
from townlet.training.trainer import make_policy

#: The leaves of a town's SeedSequence split: its world, the sampling of its agents' actions.
ENV_STREAM, SAMPLE_STREAM = 0, 1


@dataclass(frozen=True)
class TownSeed:
    env: int
    sample: int


def _derive(seed: int, *key: int) -> int:
    state = np.random.SeedSequence(seed, spawn_key=key).generate_state(1, np.uint64)[0]
    return int(state) & (2**63 - 1)


def town_seeds(seed: int, towns: int) -> list[TownSeed]:
    """Town k's seeds: SeedSequence(seed, spawn_key=(k, stream)) for its world and its sampling; the same
    whatever the shard count, and distinct across (seed, k) pairs (seed 0 town 1 is not seed 1 town 0)."""
    return [TownSeed(_derive(seed, k, ENV_STREAM), _derive(seed, k, SAMPLE_STREAM)) for k in range(towns)]


def split_towns(towns: int, shards: int) -> list[range]:
    """Contiguous town ranges, one per shard; the first `towns % shards` shards hold one town more."""
    if not 1 <= shards <= towns:
        raise ValueError(f"--shards {shards}: between 1 and the number of towns ({towns})")
    base, extra = divmod(towns, shards)
    out, start = [], 0
    for s in range(shards):
        n = base + (1 if s < extra else 0)
        out.append(range(start, start + n))
        start += n
    return out


#: The buffer columns a block carries, each (ticks, agents of the shard, ...).
COLUMNS = ("obs", "masks", "actions", "log_probs", "values", "advantages", "returns", "rewards")


@dataclass
class Block:
    """One shard's epoch: the buffer's columns (ticks, agents, ...), which rows were live (`valid`), and the
    stats of each of its towns in town order."""

    columns: dict[str, npt.NDArray[Any]]
    valid: npt.NDArray[np.bool_]
    towns: list[RolloutStats] = field(default_factory=list)
    env_seconds: float = 0.0
    policy_seconds: float = 0.0
    #: The shard's state after this collection (per town), for a restart or a checkpoint.
    state: list[dict[str, Any]] = field(default_factory=list)


class TownShard:
    """Towns `towns` of a run (each a one-town VecTown with its `town_seeds`), a copy of the policy, and one
    rollout buffer for their agents."""

    def __init__(self, config: TownConfig, ppo: PPOConfig, meta: dict[str, Any], seed: int, towns: range) -> None:
        self.cfg, self.towns = ppo, towns
        seeds = town_seeds(seed, towns.stop)[towns.start :]
        self.envs = [TownTrainEnv(config, 1, s.env, ppo.episode_ticks, num_threads=1) for s in seeds]
        first = self.envs[0]
        self.per_town = first.num_agents
        self.num_agents = self.per_town * len(self.envs)
        with one_torch_thread():
            self.policy = make_policy(meta, first.obs_dim, first.n_actions, ppo.hidden)
        self.gens = [torch.Generator().manual_seed(s.sample) for s in seeds]
        self.buffer = _core.RolloutBuffer(ppo.rollout_ticks, self.num_agents, first.obs_dim, first.n_actions)
        n = self.num_agents
        self.obs = np.zeros((n, first.obs_dim), np.float32)
        self.masks = np.zeros((n, first.n_actions), np.bool_)
        self.alive = np.zeros(n, np.bool_)
        self.ep_return = np.zeros(n, np.float64)
        for j, (env, s) in enumerate(zip(self.envs, seeds, strict=True)):
            self._put(j, *env.reset(s.env))

    def _rows(self, j: int) -> slice:
        return slice(j * self.per_town, (j + 1) * self.per_town)

    def _put(self, j: int, obs: npt.NDArray[np.float32], masks: npt.NDArray[np.bool_], alive: Any) -> None:
        r = self._rows(j)
        self.obs[r], self.masks[r], self.alive[r] = obs, masks, alive

    def pid(self) -> int:
        return os.getpid()

    # -- state -----------------------------------------------------------------------------------------

    def get_state(self) -> list[dict[str, Any]]:
        """Per town: its world, its sampling generator and its agents' open episode returns."""
        return [
            {
                "env": env.get_state(),
                "generator": torch_generator_state(gen),
                "episode_returns": [float(x) for x in self.ep_return[self._rows(j)]],
            }
            for j, (env, gen) in enumerate(zip(self.envs, self.gens, strict=True))
        ]

    def set_state(self, states: list[dict[str, Any]]) -> None:
        if len(states) != len(self.envs):
            raise ValueError(f"{len(states)} town states for a shard of {len(self.envs)} towns")
        for j, st in enumerate(states):
            self._put(j, *self.envs[j].set_state(st["env"]))
            set_torch_generator_state(st["generator"], self.gens[j])
            ret = np.asarray(st["episode_returns"], np.float64)
            if ret.shape != (self.per_town,):
                raise ValueError(f"saved episode returns have shape {ret.shape}, a town has {self.per_town} agents")
            self.ep_return[self._rows(j)] = ret

    # -- collection ------------------------------------------------------------------------------------

    def collect(self, weights: dict[str, torch.Tensor]) -> Block:
        """`rollout_ticks` ticks of every town with `weights`, then GAE; the block and the state after it."""
        self.policy.load_state_dict(weights)
        with one_torch_thread(), torch.inference_mode(), self.policy.computing_in(self.cfg.precision, frozen=True):
            return self._collect()

    def _collect(self) -> Block:
        import time

        cfg, buf, m = self.cfg, self.buffer, self.per_town
        buf.clear()
        stats = [RolloutStats() for _ in self.envs]
        n = self.num_agents
        slot_rewards = np.zeros((cfg.rollout_ticks, n), np.float32)
        actions = np.zeros(n, np.int64)
        logp = np.zeros(n, np.float32)
        values = np.zeros(n, np.float32)
        rewards = np.zeros(n, np.float32)
        term = np.zeros(n, np.bool_)
        trunc = np.zeros(n, np.bool_)
        bootstrap = np.zeros(n, np.float32)
        env_s = pol_s = 0.0
        for t in range(cfg.rollout_ticks):
            t0 = time.perf_counter()
            for j, gen in enumerate(self.gens):
                r = self._rows(j)
                a, lp, v = self.policy.act(
                    torch.from_numpy(self.obs[r]), torch.from_numpy(self.masks[r]), generator=gen
                )
                actions[r], logp[r], values[r] = a.numpy(), lp.numpy(), v.numpy()
            t1 = time.perf_counter()
            batches = [env.step(actions[self._rows(j)]) for j, env in enumerate(self.envs)]
            t2 = time.perf_counter()
            bootstrap[:] = 0.0
            for j, b in enumerate(batches):
                r = self._rows(j)
                rewards[r], term[r], trunc[r] = b.rewards, b.terminated, b.truncated
                if b.truncated.any():
                    rows = np.flatnonzero(b.truncated)
                    bootstrap[j * m + rows] = self.policy.value(torch.from_numpy(b.final_obs[rows])).numpy()
            valid = self.alive.copy()
            buf.add(self.obs, self.masks, actions, logp, values, rewards, term, trunc, valid, bootstrap)
            slot_rewards[t] = np.where(valid, rewards, 0.0)
            for j, b in enumerate(batches):
                r = self._rows(j)
                stats[j].count(b, valid[r], self.ep_return[r])
                self._put(j, b.obs, b.masks, b.alive)
            env_s += t2 - t1
            pol_s += (t1 - t0) + (time.perf_counter() - t2)
        next_values = np.concatenate(
            [self.policy.value(torch.from_numpy(self.obs[self._rows(j)])).numpy() for j in range(len(self.envs))]
        )
        buf.compute_gae(next_values.astype(np.float32), cfg.gamma, cfg.gae_lambda)
        sums = slot_rewards.sum(axis=0)
        for j, st in enumerate(stats):
            st.ticks = cfg.rollout_ticks
            st.close()
            st.sample_rewards = [(float(s), float(s) / cfg.rollout_ticks) for s in sums[self._rows(j)]]
        columns = {name: np.array(getattr(buf, name)) for name in COLUMNS}
        valid_all = np.array(buf.valid, np.bool_)
        return Block(columns, valid_all, stats, env_s, pol_s, self.get_state())


def gather(blocks: list[Block]) -> tuple[Dataset, RolloutStats]:
    """The epoch's live rows and stats from the shards' blocks, given in shard order: columns joined along
    the agent axis, flattened tick-major, live rows kept; stats merged town by town."""
    valid = np.concatenate([b.valid for b in blocks], axis=1).reshape(-1)
    keep = None if valid.all() else np.flatnonzero(valid)

    def column(name: str) -> npt.NDArray[Any]:
        parts = [b.columns[name] for b in blocks]
        joined = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        rows = joined.reshape(-1, *joined.shape[2:])
        if keep is not None:
            return rows[keep]
        # A block from Ray's object store is read-only; the update makes tensors of these rows.
        return rows if rows.flags.writeable else rows.copy()

    data = Dataset(**{name: column(name) for name in COLUMNS})
    return data, merge_stats([st for b in blocks for st in b.towns], blocks)


def merge_stats(towns: list[RolloutStats], blocks: list[Block]) -> RolloutStats:
    """One epoch's stats from its towns' (in town order): the sums are taken town by town in that order."""
    out = RolloutStats(ticks=towns[0].ticks if towns else 0)
    for st in towns:
        out.transitions += st.transitions
        out.episode_returns.extend(st.episode_returns)
        out.episode_kpis.extend(st.episode_kpis)
        out.sample_rewards.extend(st.sample_rewards)
        for name, count in st.events.items():
            out.events[name] = out.events.get(name, 0.0) + count
    # The shards collect side by side: the epoch waited for the slowest.
    out.env_seconds = max((b.env_seconds for b in blocks), default=0.0)
    out.policy_seconds = max((b.policy_seconds for b in blocks), default=0.0)
    out.inference_seconds = out.policy_seconds
    return out


class Shards(Protocol):
    """N shards as the learner sees them (`LocalShards`, `ray_shards.RayShards`)."""

    towns: list[range]

    def collect(self, weights: dict[str, torch.Tensor]) -> list[Block]: ...

    def get_state(self) -> list[dict[str, Any]]: ...

    def set_state(self, states: list[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


class LocalShards:
    """The shards in this process, collected one after the other."""

    def __init__(
        self, config: TownConfig, ppo: PPOConfig, meta: dict[str, Any], seed: int, towns: int, shards: int
    ) -> None:
        self.towns = split_towns(towns, shards)
        self.shards = [TownShard(config, ppo, meta, seed, r) for r in self.towns]

    def collect(self, weights: dict[str, torch.Tensor]) -> list[Block]:
        return [s.collect(weights) for s in self.shards]

    def get_state(self) -> list[dict[str, Any]]:
        return [st for s in self.shards for st in s.get_state()]

    def set_state(self, states: list[dict[str, Any]]) -> None:
        for s, r in zip(self.shards, self.towns, strict=True):
            s.set_state(states[r.start : r.stop])

    def close(self) -> None:
        self.shards.clear()
