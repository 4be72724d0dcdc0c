"""Recurrent PPO (CleanRL `ppo_lstm` and the "37 implementation details" LSTM items) for the
policies of `network_memory`:

1. collect: `RecurrentCollector` steps the towns keeping one memory row per agent slot. The memory
   is reset (zeroed) when a slot's episode ends (terminated or truncated) and when it respawns or
   the core flags a new context (the `ctx_reset` feature, or a dead slot coming alive); `starts`
   marks the ticks that acted on a reset memory. The memory at the start of each `seq_len`-tick
   sequence is stored with the rollout; truncated episodes bootstrap from the critic's value of
   the final observation seen with the memory it ended with. GAE runs in Rust as for PPO.
2. optimise: `recurrent_update` makes `update_epochs` passes over shuffled minibatches of whole
   sequences (one agent slot's `seq_len` consecutive ticks each), each replayed from its stored
   initial memory with the resets inside it; the losses (ppo.py's clipped surrogate, clipped value
   loss, entropy, per-minibatch advantage normalisation, KL) over the live ticks only.

The loop around them is `ppo_recurrent_trainer.MemoryTrainer`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from townlet import _core
from townlet.sim.settings import MemoryConfig
from townlet.training.envs import Batch, TrainEnv
from townlet.training.network_memory import MemoryPolicy
from townlet.training.ppo import Dataset, RolloutStats, minibatches
from townlet.training.ppo_loss import UpdateStats, objective
from townlet.training.state import set_torch_generator_state, torch_generator_state


@dataclass
class Sequences:
    """The rollout cut into sequences of `seq_len` ticks per agent slot (the last padded with dead
    ticks): (S, L, ...) arrays, S = sequences, plus each sequence's initial memory (S, state_size)."""

    obs: torch.Tensor
    masks: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    valid: torch.Tensor
    starts: torch.Tensor
    initial_state: torch.Tensor

    def __len__(self) -> int:
        return int(self.actions.shape[0])


def cut_sequences(arrays: dict[str, npt.NDArray[Any]], states: npt.NDArray[np.float32], seq_len: int) -> Sequences:
    """(T, N, ...) rollout arrays -> (ceil(T / L) * N, L, ...) sequences, ordered by (chunk, slot);
    `states` (chunks, N, state_size): the memory each chunk started with."""
    t, n = arrays["actions"].shape
    chunks = -(-t // seq_len)
    pad = chunks * seq_len - t

    def seqs(a: npt.NDArray[Any], fill: Any) -> torch.Tensor:
        a = np.asarray(a)
        if pad:
            a = np.concatenate([a, np.full((pad, *a.shape[1:]), fill, a.dtype)])
        a = a.reshape(chunks, seq_len, n, *a.shape[2:]).swapaxes(1, 2)
        return torch.from_numpy(np.ascontiguousarray(a.reshape(chunks * n, seq_len, *a.shape[3:])))

    return Sequences(
        obs=seqs(arrays["obs"], 0.0),
        masks=seqs(arrays["masks"], True),
        actions=seqs(arrays["actions"], 0),
        log_probs=seqs(arrays["log_probs"], 0.0),
        values=seqs(arrays["values"], 0.0),
        advantages=seqs(arrays["advantages"], 0.0),
        returns=seqs(arrays["returns"], 0.0),
        valid=seqs(arrays["valid"], False),
        starts=seqs(arrays["starts"], False),
        initial_state=torch.from_numpy(states.reshape(chunks * n, -1).copy()),
    )


class RecurrentCollector:
    """Steps a TrainEnv with a memory policy into a Rust RolloutBuffer, keeping each slot's memory."""

    def __init__(self, env: TrainEnv, policy: MemoryPolicy, cfg: MemoryConfig, seed: int) -> None:
        self.env, self.policy, self.cfg = env, policy, cfg
        self.buffer = _core.RolloutBuffer(cfg.rollout_ticks, env.num_agents, env.obs_dim, env.n_actions)
        self.gen = torch.Generator().manual_seed(seed)
        obs, masks, alive = env.reset(seed)
        self.obs, self.masks, self.alive = obs.copy(), masks.copy(), alive.copy()
        self.ep_return = np.zeros(env.num_agents, np.float64)
        #: Each slot's memory, and which slots act next on a reset memory.
        self.state = policy.initial_state(env.num_agents)
        self.fresh = np.ones(env.num_agents, np.bool_)
        meta = env.metadata()
        names = list(meta.get("feature_names", []))
        map_len = int(np.prod(meta["map_shape"])) if "map_shape" in meta else 0
        self.ctx_col = map_len + names.index("ctx_reset") if "ctx_reset" in names else None

    # -- resume ------------------------------------------------------------------------------------

    def get_state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """Where collection stands (JSON data; the memory as a float32 tensor)."""
        get = getattr(self.env, "get_state", None)
        if get is None:
            raise TypeError(f"{type(self.env).__name__} cannot save its state, so this run cannot be resumed")
        data = {
            "env": get(),
            "generator": torch_generator_state(self.gen),
            "episode_returns": [float(x) for x in self.ep_return],
            "fresh": [bool(x) for x in self.fresh],
        }
        return data, {"memory/state": self.state.clone()}

    def set_state(self, data: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        put = getattr(self.env, "set_state", None)
        if put is None:
            raise TypeError(f"{type(self.env).__name__} cannot restore a saved state")
        state = tensors.get("memory/state")
        if state is None or tuple(state.shape) != tuple(self.state.shape):
            raise ValueError(f"the saved memory has shape {None if state is None else tuple(state.shape)}, "
                             f"this run's is {tuple(self.state.shape)}")  # fmt: skip
        obs, masks, alive = put(data["env"])
        self.obs, self.masks, self.alive = obs.copy(), masks.copy(), alive.copy()
        set_torch_generator_state(data["generator"], self.gen)
        self.ep_return = np.asarray(data["episode_returns"], np.float64)
        self.fresh = np.asarray(data["fresh"], np.bool_)
        self.state = state.clone()

    # -- collect -----------------------------------------------------------------------------------

    def resets(self, b: Batch) -> npt.NDArray[np.bool_]:
        """The slots whose memory starts afresh at the next tick: episode over, respawned (a dead
        slot alive again), or a new context flagged by the core (`ctx_reset`)."""
        reset = b.terminated | b.truncated | (b.alive & ~self.alive)
        if self.ctx_col is not None:
            reset |= b.obs[:, self.ctx_col] > 0.5
        return np.asarray(reset, np.bool_)

    def collect(self) -> tuple[Dataset, Sequences, RolloutStats]:
        """`rollout_ticks` ticks of every town with memory, then their advantages: the live rows
        (for the epoch's record) and the sequences the update trains on."""
        with self.policy.computing_in(self.cfg.precision, frozen=True):
            rows, arrays, states, stats = self._rollout()
        return rows, cut_sequences(arrays, states, self.cfg.seq_len), stats

    @torch.inference_mode()
    def _rollout(
        self,
    ) -> tuple[Dataset, dict[str, npt.NDArray[Any]], npt.NDArray[np.float32], RolloutStats]:
        cfg, env, buf, policy = self.cfg, self.env, self.buffer, self.policy
        buf.clear()
        stats = RolloutStats()
        t_len, n, seq_len = cfg.rollout_ticks, env.num_agents, cfg.seq_len
        starts = np.zeros((t_len, n), np.bool_)
        states = np.zeros((-(-t_len // seq_len), n, policy.state_size), np.float32)
        slot_rewards = np.zeros((t_len, n), np.float32)
        for t in range(t_len):
            t0 = time.perf_counter()
            if t % seq_len == 0:
                states[t // seq_len] = self.state.numpy()
            starts[t] = self.fresh
            obs_t, masks_t = torch.from_numpy(self.obs), torch.from_numpy(self.masks)
            action, logp, value, state = policy.act_step(obs_t, masks_t, self.state, self.gen)
            actions = action.numpy().astype(np.int64)
            t1 = time.perf_counter()
            b = env.step(actions)
            t2 = time.perf_counter()
            bootstrap = np.zeros(n, np.float32)
            if b.truncated.any():  # the final observation seen with the memory the episode ended with
                rows = np.flatnonzero(b.truncated)
                idx = torch.from_numpy(rows)
                final = torch.from_numpy(b.final_obs[rows])
                bootstrap[rows] = policy.state_value(final, state.index_select(0, idx)).numpy()
            t_boot = time.perf_counter() - t2
            valid = self.alive
            logp_np, value_np = logp.numpy().astype(np.float32), value.numpy().astype(np.float32)
            buf.add(self.obs, self.masks, actions, logp_np, value_np, b.rewards, b.terminated, b.truncated, valid,
                    bootstrap)  # fmt: skip
            slot_rewards[t] = np.where(valid, b.rewards, 0.0)
            stats.count(b, valid, self.ep_return)
            reset = self.resets(b)
            state[torch.from_numpy(reset)] = 0.0
            self.state, self.fresh = state, reset
            self.obs, self.masks, self.alive = b.obs.copy(), b.masks.copy(), b.alive.copy()
            t3 = time.perf_counter()
            stats.policy_seconds += (t1 - t0) + (t3 - t2)
            stats.inference_seconds += (t1 - t0) + t_boot
            stats.env_seconds += t2 - t1
        stats.ticks = t_len
        stats.close()
        next_values = policy.state_value(torch.from_numpy(self.obs), self.state).numpy().astype(np.float32)
        buf.compute_gae(next_values, cfg.gamma, cfg.gae_lambda)
        stats.sample_rewards = [(float(s), float(s) / t_len) for s in slot_rewards.sum(axis=0)]
        names = ("obs", "masks", "actions", "log_probs", "values", "advantages", "returns", "rewards", "valid")
        arrays: dict[str, npt.NDArray[Any]] = {k: np.asarray(getattr(buf, k)) for k in names}
        arrays["starts"] = starts
        arrays["valid"] = arrays["valid"].astype(np.bool_)
        keep = arrays["valid"].reshape(-1)
        live = Dataset(*(arrays[k].reshape(t_len * n, *arrays[k].shape[2:])[keep] for k in names[:-1]))
        return live, arrays, states, stats


def recurrent_update(
    policy: MemoryPolicy,
    optimizer: torch.optim.Optimizer,
    seqs: Sequences,
    cfg: MemoryConfig,
    rng: np.random.Generator,
) -> UpdateStats:
    """`update_epochs` passes of clipped PPO over minibatches of whole sequences (the order drawn
    from `rng`, one permutation per pass), each replayed from its stored initial memory; the policy
    computes in `cfg.precision`, as the collector does."""
    t0 = time.perf_counter()
    n = len(seqs)
    if n == 0 or not bool(seqs.valid.any()):
        return UpdateStats()
    with policy.computing_in(cfg.precision):
        st = _update(policy, optimizer, seqs, cfg, rng)
    st.seconds = time.perf_counter() - t0
    return st


def _update(
    policy: MemoryPolicy,
    optimizer: torch.optim.Optimizer,
    seqs: Sequences,
    cfg: MemoryConfig,
    rng: np.random.Generator,
) -> UpdateStats:
    st = UpdateStats()
    n, length = seqs.obs.shape[:2]
    # The network's input, prepared once for every pass (in bfloat16 a smaller copy to gather from).
    obs = policy.prepare(seqs.obs.reshape(n * length, -1))
    obs = obs.reshape(n, length, -1)
    # Sequences in `num_minibatches` near-equal parts, as the feed-forward update cuts rows (their count, and so the
    # products' shapes, is the same every epoch: every slot's sequences, the dead steps masked).
    sizes, _ = minibatches(n, cfg.num_minibatches)
    for _ in range(cfg.update_epochs):
        perm = rng.permutation(n)
        for rows in np.split(perm, np.cumsum(sizes[:-1])):
            idx = torch.from_numpy(rows)
            live = seqs.valid.index_select(0, idx)
            if not bool(live.any()):
                continue
            masks = seqs.masks.index_select(0, idx)
            logits, new_value, _ = policy.sequence(
                obs.index_select(0, idx),
                masks,
                seqs.initial_state.index_select(0, idx),
                seqs.starts.index_select(0, idx),
            )
            # The live steps' rows, as the feed-forward update's minibatch (`ppo_loss.objective`).
            picked = {
                k: getattr(seqs, k).index_select(0, idx)[live]
                for k in ("actions", "log_probs", "values", "advantages", "returns")
            }
            picked["masks"] = masks[live]
            loss, terms = objective(logits[live], new_value[live], picked, cfg)
            st.step(policy, optimizer, loss, terms, cfg.max_grad_norm)
        if cfg.target_kl is not None and np.mean(st.kls[-len(sizes) :]) > cfg.target_kl:
            st.early_stop = True
            break
    return st
