"""PPO, CleanRL-style, in the order it runs each epoch:

1. collect: `RolloutCollector.collect` steps the towns with the current policy (masked logits,
   sampled actions) into the Rust `RolloutBuffer`, bootstrapping truncated episodes from the
   critic;
2. compute advantages: GAE in Rust (`RolloutBuffer.compute_gae`, with the truncation bootstrap);
   replayed samples get theirs from `ReplayData.dataset`; collecting ahead (`ppo.overlap`), the update
   recomputes them over the rows from its starting critic (`ppo_rows`);
3. optimise: `ppo_update` makes `update_epochs` passes over shuffled minibatches: per-minibatch
   advantage normalisation, clipped surrogate, clipped value loss, entropy bonus, global
   grad-norm clipping, approximate KL ((r - 1) - log r) with optional early stop;
4. log: `epoch_record` (in `ppo_log`) turns the epoch into one telemetry record (v1.1).

The loop around them (learning-rate annealing, replay, checkpoints) is `trainer.Trainer`; the
network and its orthogonal init, `network.py`. Parameters are shared by every agent: each live
agent slot is one row of the batch.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from townlet import _core
from townlet.sim.env import MOTIVE_LEISURE, MOTIVE_SHIFT
from townlet.sim.settings import PPOConfig
from townlet.training.envs import Batch, TrainEnv
from townlet.training.network import ActorCritic, Scratch

# Step 4, log, lives in ppo_log; re-exported here.
from townlet.training.ppo_log import EPISODE_KPIS as EPISODE_KPIS
from townlet.training.ppo_log import baseline_from_samples as baseline_from_samples
from townlet.training.ppo_log import episode_kpis as episode_kpis
from townlet.training.ppo_log import epoch_record as epoch_record
from townlet.training.ppo_log import explained_variance as explained_variance
from townlet.training.ppo_log import time_split as time_split
from townlet.training.ppo_loss import UpdateStats, objective
from townlet.training.ppo_rows import block_logits, pass_order, proximal_outputs, successors
from townlet.training.state import set_torch_generator_state, torch_generator_state


@dataclass
class Dataset:
    """Flat training rows, one per live agent-step: `obs` (N, obs_dim), `masks` (N, n_actions),
    the rest (N,). `log_probs` and `values` are the behaviour policy's, when it acted."""

    obs: npt.NDArray[np.float32]
    masks: npt.NDArray[np.bool_]
    actions: npt.NDArray[np.int64]
    log_probs: npt.NDArray[np.float32]
    values: npt.NDArray[np.float32]
    advantages: npt.NDArray[np.float32]
    returns: npt.NDArray[np.float32]
    rewards: npt.NDArray[np.float32]
    #: The scripted expert's action in each row's state, when the run kickstarts (`PPOConfig.kickstart_coef`); -1
    #: where there is nothing to imitate (a state outside `PPOConfig.kickstart_on`).
    expert_actions: npt.NDArray[np.int64] | None = None
    #: Where each row's return continues, so that its advantages can be recomputed from other values
    #: (`_core.gae_rows`): the row of the same slot one tick later in the same episode (-1: none), and where there is
    #: none, the value the return continues from. Set by a collector collecting ahead (`ppo.overlap`).
    next_row: npt.NDArray[np.int64] | None = None
    end_values: npt.NDArray[np.float32] | None = None

    def __len__(self) -> int:
        return len(self.actions)

    @staticmethod
    def concat(parts: list[Dataset]) -> Dataset:
        if len(parts) == 1:
            return parts[0]  # nothing to join: no copy of the epoch's rows

        def join(name: str) -> Any:
            columns = [getattr(p, name) for p in parts]
            return None if any(c is None for c in columns) else np.concatenate(columns)

        return Dataset(*(join(f) for f in Dataset.__dataclass_fields__))


# -- 1. collect and 2. compute advantages ------------------------------------------------------


@dataclass
class RolloutStats:
    ticks: int = 0
    transitions: int = 0
    episode_returns: list[float] = field(default_factory=list)
    events: dict[str, float] = field(default_factory=dict)
    sample_rewards: list[tuple[float, float]] = field(default_factory=list)  # (sum, mean) per agent slot
    episode_kpis: list[dict[str, float]] = field(default_factory=list)  # one per town episode ended
    env_seconds: float = 0.0
    #: Policy forward passes and sampling (`inference_seconds`) plus the buffer bookkeeping.
    policy_seconds: float = 0.0
    inference_seconds: float = 0.0  # acting and the truncation bootstraps' values

    def __post_init__(self) -> None:
        # Steps that report their events as a vector (`Batch.event_sums`) are summed here, tick by tick in float64,
        # and folded into `events` by `close` (not a field: the stats travel as their fields).
        self._sums: npt.NDArray[np.float64] | None = None
        self._sum_names: tuple[str, ...] = ()

    def close(self) -> None:
        """Fold the event sums counted as vectors into `events` (names whose total is not 0), once the rollout's
        steps are counted; the same values as counting them name by name."""
        if self._sums is not None:
            for name, total in zip(self._sum_names, self._sums.tolist(), strict=True):
                if total:
                    self.events[name] = self.events.get(name, 0.0) + total
            self._sums = None

    def count(self, b: Batch, valid: npt.NDArray[np.bool_], ep_return: npt.NDArray[np.float64]) -> None:
        """One tick's episode returns (`ep_return` per agent slot, closed and reset when an agent's
        episode ends), event totals, episode KPIs and transitions."""
        ep_return += np.where(valid, b.rewards, 0.0)
        done = (b.terminated | b.truncated) & valid
        for r in np.flatnonzero(done):
            self.episode_returns.append(float(ep_return[r]))
            ep_return[r] = 0.0
        for name, count in b.events.items():
            self.events[name] = self.events.get(name, 0.0) + count
        if b.event_sums is not None:
            if self._sums is None or self._sum_names != b.event_names:
                self.close()
                self._sums, self._sum_names = np.zeros_like(b.event_sums), b.event_names
            self._sums += b.event_sums
        self.episode_kpis.extend(b.episode_kpis)
        self.transitions += int(valid.sum())


#: Acts for the collector instead of the policy: (obs, masks, generator) -> (actions, behaviour
#: log-probabilities, values), as `ActorCritic.act` samples them (mixed mode's blend: training/mixed.py).
Actor = Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


class RolloutCollector:
    """Steps a TrainEnv with the current policy (or `actor`, when set) into a Rust RolloutBuffer."""

    def __init__(self, env: TrainEnv, policy: ActorCritic, cfg: PPOConfig, seed: int) -> None:
        self.env = env
        self.policy = policy
        self.cfg = cfg
        self.buffer = _core.RolloutBuffer(cfg.rollout_ticks, env.num_agents, env.obs_dim, env.n_actions)
        self.gen = torch.Generator().manual_seed(seed)
        obs, masks, alive = env.reset(seed)
        self.obs, self.masks, self.alive = obs.copy(), masks.copy(), alive.copy()
        self.ep_return = np.zeros(env.num_agents, np.float64)
        self._rows: dict[str, npt.NDArray[Any]] = {}  # the live rows' arrays (`_live_rows`)
        self.actor: Actor | None = None
        # Kickstarting: the expert's action in every slot's state, tick by tick (`PPOConfig.kickstart_coef`).
        self.expert: npt.NDArray[np.int64] | None = None
        if cfg.kickstart_coef > 0:
            if not callable(getattr(env, "expert_actions", None)):
                raise ValueError(
                    f"ppo.kickstart_coef: {type(env).__name__} has no scripted expert to kickstart from (the town's)"
                )
            if cfg.kickstart_on != "all" and not callable(getattr(env, "expert_motives", None)):
                raise ValueError(
                    f"ppo.kickstart_on: {type(env).__name__} does not say why its expert acts (expert_motives); use all"
                )
            self.expert = np.zeros((cfg.rollout_ticks, env.num_agents), np.int64)

    def get_state(self) -> dict[str, Any]:
        """Where collection stands: the env's state, the sampling RNG and open episode returns."""
        return self.state_later()()

    def state_later(self) -> Callable[[], dict[str, Any]]:
        """`get_state()` as of now, built when called: the env's part by its `state_later` where it has one (the
        town's: its JSON text is parsed by the call), so keeping a state in case a checkpoint follows costs little."""
        later = getattr(self.env, "state_later", None)
        if later is not None:
            env_state: Callable[[], Any] = later()
        else:
            get = getattr(self.env, "get_state", None)
            if get is None:
                raise TypeError(f"{type(self.env).__name__} cannot save its state, so this run cannot be resumed")
            taken = get()
            env_state = lambda: copy.deepcopy(taken)  # noqa: E731
        generator, returns = torch_generator_state(self.gen), [float(x) for x in self.ep_return]
        return lambda: {"env": env_state(), "generator": generator, "episode_returns": list(returns)}

    def set_state(self, state: dict[str, Any]) -> None:
        put = getattr(self.env, "set_state", None)
        if put is None:
            raise TypeError(f"{type(self.env).__name__} cannot restore a saved state")
        obs, masks, alive = put(state["env"])
        self.obs, self.masks, self.alive = obs.copy(), masks.copy(), alive.copy()
        set_torch_generator_state(state["generator"], self.gen)
        ret = np.asarray(state["episode_returns"], np.float64)
        if ret.shape != self.ep_return.shape:
            raise ValueError(f"saved episode returns have shape {ret.shape}, this run has {self.ep_return.shape}")
        self.ep_return = ret

    @torch.inference_mode()
    def collect(self, into: dict[str, npt.NDArray[Any]] | None = None) -> tuple[Dataset, RolloutStats]:
        """`rollout_ticks` ticks of every town with the current policy, then their advantages;
        returns the rows where the agent was alive (`Dataset`, one row per live agent-step; they hold
        until the next collection). The policy computes in
        `cfg.precision`, as the update does. `into`: arrays (by `Dataset` field, room for every slot-step) the rows
        are copied into and returned as views of (the collector process's shared memory)."""
        with self.policy.computing_in(self.cfg.precision, frozen=True):
            return self._collect(into)

    def _collect(self, into: dict[str, npt.NDArray[Any]] | None = None) -> tuple[Dataset, RolloutStats]:
        cfg, env, buf = self.cfg, self.env, self.buffer
        buf.clear()
        stats = RolloutStats()
        slot_rewards = np.zeros((cfg.rollout_ticks, env.num_agents), np.float32)
        for t in range(cfg.rollout_ticks):
            t0 = time.perf_counter()
            # Act: sample from the masked policy (the collector's own generator).
            obs_t, masks_t = torch.from_numpy(self.obs), torch.from_numpy(self.masks)
            if self.actor is not None:
                action, logp, value = self.actor(obs_t, masks_t, self.gen)
            else:
                action, logp, value = self.policy.act(obs_t, masks_t, generator=self.gen)
            actions = action.numpy().astype(np.int64, copy=False)
            if self.expert is not None:
                self.expert[t] = env.expert_actions()  # type: ignore[attr-defined]  # checked in __init__
                if cfg.kickstart_on != "all":
                    motives = env.expert_motives()  # type: ignore[attr-defined]  # checked in __init__
                    unlabelled = motives == MOTIVE_LEISURE if cfg.kickstart_on == "duties" else motives != MOTIVE_SHIFT
                    self.expert[t][unlabelled] = -1
            t1 = time.perf_counter()
            b = env.step(actions)
            t2 = time.perf_counter()
            bootstrap = self._truncation_bootstrap(b)
            t_boot = time.perf_counter() - t2
            # Store the transition of every slot; `valid` marks the agents alive when they acted.
            valid = self.alive
            buf.add(
                self.obs,
                self.masks,
                actions,
                logp.numpy().astype(np.float32, copy=False),
                value.numpy().astype(np.float32, copy=False),
                b.rewards,
                b.terminated,
                b.truncated,
                valid,
                bootstrap,
            )
            slot_rewards[t] = np.where(valid, b.rewards, 0.0)
            stats.count(b, valid, self.ep_return)
            # Into the collector's own arrays (the env rewrites its own at the next step).
            np.copyto(self.obs, b.obs)
            np.copyto(self.masks, b.masks)
            np.copyto(self.alive, b.alive)
            t3 = time.perf_counter()
            stats.policy_seconds += (t1 - t0) + (t3 - t2)
            stats.inference_seconds += (t1 - t0) + t_boot
            stats.env_seconds += t2 - t1
        stats.ticks = cfg.rollout_ticks
        stats.close()
        next_values = self._compute_advantages()
        stats.sample_rewards = [(float(s), float(s) / cfg.rollout_ticks) for s in slot_rewards.sum(axis=0)]
        return self._live_rows(into, successors(self.buffer, next_values) if cfg.overlap else None), stats

    def _truncation_bootstrap(self, b: Batch) -> npt.NDArray[np.float32]:
        """The critic's value of the final observation where an episode was cut off by its time
        limit (not ended): GAE continues the return from it. Zero elsewhere."""
        bootstrap = np.zeros(self.env.num_agents, np.float32)
        if b.truncated.any():
            rows = np.flatnonzero(b.truncated)
            bootstrap[rows] = self.policy.value(torch.from_numpy(b.final_obs[rows])).numpy()
        return bootstrap

    def _compute_advantages(self) -> npt.NDArray[np.float32]:
        """GAE (gamma, lambda) over the buffer in Rust, bootstrapped from the critic's value of the
        observations the rollout stopped at (returned)."""
        next_values = self.policy.value(torch.from_numpy(self.obs)).numpy().astype(np.float32)
        self.buffer.compute_gae(next_values, self.cfg.gamma, self.cfg.gae_lambda)
        return next_values

    def _live_rows(
        self,
        into: dict[str, npt.NDArray[Any]] | None = None,
        successors: tuple[npt.NDArray[np.int64], npt.NDArray[Any]] | None = None,
    ) -> Dataset:
        """The buffer's (T, agents, ...) arrays flattened to rows, keeping live agent-steps: views
        of the buffer when every agent was alive throughout (no copy of the epoch's
        observations), else copies into the collector's own arrays. Either way they hold until
        the next `collect`. With `into`, copies into those arrays in every case. `successors`: the grids of
        `Dataset.next_row` and `end_values` (`successors`)."""
        buf = self.buffer
        keep = np.asarray(buf.valid, bool).reshape(-1)
        live = None if keep.all() else np.flatnonzero(keep)

        def flat(name: str, a: npt.NDArray[Any]) -> npt.NDArray[Any]:
            arr = np.asarray(a)
            rows: npt.NDArray[Any] = arr.reshape(-1, *arr.shape[2:])
            if into is not None:
                out = into[name]
                if out.shape[1:] != rows.shape[1:] or out.dtype != rows.dtype or len(out) < len(rows):
                    raise ValueError(f"rows {name}: {rows.shape} {rows.dtype} do not fit {out.shape} {out.dtype}")
                if live is None:
                    np.copyto(out[: len(rows)], rows)
                    return out[: len(rows)]
            elif live is None:
                return rows
            else:
                # Into a buffer kept from epoch to epoch: a fresh array of the epoch's rows costs its page faults.
                kept = self._rows.get(name)
                if kept is None or kept.shape[1:] != rows.shape[1:] or kept.dtype != rows.dtype:
                    kept = self._rows[name] = np.empty_like(rows)
                out = kept
            # mode="clip": the default ("raise") buffers `out` in a temporary array of the epoch's rows and
            # copies it over, three times the work; the indices are in range, so clipping never applies.
            return np.take(rows, live, axis=0, out=out[: len(live)], mode="clip")

        return Dataset(
            obs=flat("obs", buf.obs),
            masks=flat("masks", buf.masks),
            actions=flat("actions", buf.actions),
            log_probs=flat("log_probs", buf.log_probs),
            values=flat("values", buf.values),
            advantages=flat("advantages", buf.advantages),
            returns=flat("returns", buf.returns),
            rewards=flat("rewards", buf.rewards),
            expert_actions=None if self.expert is None else flat("expert_actions", self.expert),
            next_row=None if successors is None else flat("next_row", successors[0]),
            end_values=None if successors is None else flat("end_values", successors[1]),
        )


# -- 3. optimise -------------------------------------------------------------------------------


#: The update's network computes on a whole number of these rows per minibatch (`minibatches`).
ROW_QUANTUM = 64


def minibatches(n: int, count: int) -> tuple[list[int], int]:
    """How `ppo_update` cuts `n` shuffled rows: `count` minibatches (fewer when there are fewer rows)
    whose sizes differ by at most one, and the number of rows the network computes on for each, the
    largest size rounded up to `ROW_QUANTUM`. The rows past a minibatch's own are copies of its first,
    whose outputs are dropped before any loss: the products then see a few shapes from epoch to epoch
    (oneDNN builds a kernel per shape, several milliseconds each, which made the update up to 1.8x
    slower wherever deaths changed the row count), and no minibatch is a remainder of a few rows
    taking a whole optimizer step."""
    k = max(1, min(count, n))
    sizes = [n // k + (1 if i < n % k else 0) for i in range(k)]
    return sizes, -(-sizes[0] // ROW_QUANTUM) * ROW_QUANTUM


def ppo_update(
    policy: ActorCritic,
    optimizer: torch.optim.Optimizer,
    data: Dataset,
    cfg: PPOConfig,
    rng: np.random.Generator,
    *,
    rivalry_cols: tuple[int, int] | None = None,
    scratch: Scratch | None = None,
) -> UpdateStats:
    """`update_epochs` passes of clipped PPO over `data` in `num_minibatches` minibatches (the
    row order drawn from `rng`, one permutation per pass; `minibatches`), the policy computing in
    `cfg.precision` (`scratch`: buffers kept from one update to the next)."""
    t0 = time.perf_counter()
    with policy.computing_in(cfg.precision):
        st = _update(policy, optimizer, data, cfg, rng, rivalry_cols, scratch)
    st.seconds = time.perf_counter() - t0
    return st


def _update(
    policy: ActorCritic,
    optimizer: torch.optim.Optimizer,
    data: Dataset,
    cfg: PPOConfig,
    rng: np.random.Generator,
    rivalry_cols: tuple[int, int] | None,
    scratch: Scratch | None,
) -> UpdateStats:
    st = UpdateStats()
    n = len(data)
    if n == 0:
        return st
    sizes, width = minibatches(n, cfg.num_minibatches)
    learned = ("actions", "log_probs", "values", "advantages", "returns")
    tensors = {k: torch.from_numpy(np.ascontiguousarray(getattr(data, k))) for k in learned}
    obs = torch.from_numpy(np.ascontiguousarray(data.obs))
    masks = torch.from_numpy(np.ascontiguousarray(data.masks))
    if rivalry_cols is not None:
        tensors["rivalry"] = obs[:, list(rivalry_cols)]
    kickstart = cfg.kickstart_coef > 0 and data.expert_actions is not None
    if kickstart:
        expert = torch.from_numpy(np.ascontiguousarray(data.expert_actions))
        # Only where there is an expert action (not -1) and the policy may take it (a masked one has no finite
        # log-probability).
        given = expert >= 0
        expert = expert.clamp(min=0)
        tensors["expert"] = expert
        tensors["expert_ok"] = (masks.gather(-1, expert.unsqueeze(-1)).squeeze(-1) & given).float()
    tensors["masks"] = masks
    # Each pass's rows in its order (one permutation per pass, drawn as the pass begins, the first before the
    # proximal pass, which draws nothing), each minibatch a block of the pass's input (`pass_order`).

    def next_pass() -> tuple[npt.NDArray[np.int64], torch.Tensor, torch.Tensor]:
        """The next pass's row order (`perm`), the rows its network computes on and its input."""
        perm = rng.permutation(n)
        order = torch.from_numpy(pass_order(perm, sizes, width))
        return perm, order, policy.pass_input(obs, order, width, scratch)

    perm, order, x = next_pass()
    first: tuple[torch.Tensor, torch.Tensor] | None = None  # the first minibatch's outputs, when computed ahead
    # Collecting ahead (`ppo.overlap`) the rows were acted by the policy of one update before: the clip is then taken
    # to the proximal policy, this update's starting one, whose log-probabilities one pass over the first pass's
    # input computes here (without gradients, but for the first minibatch, whose outputs the first pass takes), and
    # each row's objective weighted by its probability under that policy over the acting one's (decoupled PPO,
    # Hilton et al. 2021). The ratio to the acting policy would clip rows the last update already moved.
    if cfg.overlap:
        proximal, values, first = proximal_outputs(policy, x, masks, tensors["actions"], order, sizes, width)
        tensors["proximal"] = proximal
        # The advantages, returns and the values the value loss clips around are then those of that policy's
        # critic too, over the rows' same rewards and successors (`Dataset.next_row`), not the acting one's.
        if data.next_row is not None and data.end_values is not None:
            advantages, returns = _core.gae_rows(
                np.ascontiguousarray(data.rewards, np.float32),
                values.numpy(),
                np.ascontiguousarray(data.next_row),
                np.ascontiguousarray(data.end_values, np.float32),
                cfg.gamma,
                cfg.gae_lambda,
            )
            tensors.update(values=values, advantages=torch.from_numpy(advantages), returns=torch.from_numpy(returns))
    for epoch in range(cfg.update_epochs):
        if epoch > 0:
            perm, order, x = next_pass()
        for i, rows in enumerate(np.split(perm, np.cumsum(sizes[:-1]))):
            idx = torch.from_numpy(rows)
            mb = {k: t.index_select(0, idx) for k, t in tensors.items()}  # a gather, 5x faster than t[idx]
            if first is not None:
                (logits, new_value), first = first, None
            else:
                logits, new_value = block_logits(policy, x, masks, order, i, width)
            loss, terms = objective(logits, new_value, mb, cfg, kickstart)
            if kickstart:
                st.imitation_losses.append(terms["imitation"])
            st.step(policy, optimizer, loss, terms, cfg.max_grad_norm)
            if rivalry_cols is not None:
                st.feature_stats.append(rivalry_stats(mb["rivalry"], (0, 1)))
        # Early stop: the last pass moved the policy further than `target_kl` from the rollout's.
        if cfg.target_kl is not None and np.mean(st.kls[-len(sizes) :]) > cfg.target_kl:
            st.early_stop = True
            break
    return st


def rivalry_stats(obs: torch.Tensor, cols: tuple[int, int]) -> tuple[float, float, float, float]:
    """Mean and max of the rivalry features in a minibatch (the record's conflict block)."""
    r, a = obs[:, cols[0]], obs[:, cols[1]]
    return float(r.mean()), float(r.max()), float(a.mean()), float(a.max())
