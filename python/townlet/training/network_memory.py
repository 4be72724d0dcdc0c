"""Policies with memory: `lstm`, `gru` and `attention` (a small causal transformer over the last
K steps), each a core between the feed-forward agent's encoders and its heads.

`MemoryPolicy` subclasses `ConflictAwarePolicy`, so its encoders, actor/critic layers and heads
have the feed-forward network's parameter names and shapes (a warm start copies them, see
`memory_warm_start`). The core is residual with a zero-initialised output projection: a fresh core
adds nothing, so a warm-started memory agent first acts exactly as the agent it inherits.

Every architecture keeps its memory as one float32 row per agent slot (`state_size` columns):
`lstm` (h, c), `gru` h, `attention` the last K encodings and which of them belong to the current
episode. A zero row is the start of an episode (`initial_state`; a reset zeroes the row).
`step` acts one tick and returns the next state; `sequence` replays (B, L) ticks from each
sequence's initial state, with `starts` marking the ticks whose state was reset before acting.
Both run the same code (`step` is a sequence of one tick).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from townlet.sim.settings import MEMORY_ARCHS
from townlet.training.network import (
    BF16,
    MASKED_LOGIT,
    ConflictAwarePolicy,
    draw,
    entropy_of,
    layer_init,
    pick,
)
from townlet.training.threads import one_torch_thread

#: Attention heads of the `attention` core (the hidden size must divide by it).
ATTENTION_HEADS = 4


class RecurrentCore(nn.Module):
    """An LSTM or GRU cell stepped tick by tick, its state zeroed where a tick starts an episode."""

    def __init__(self, kind: str, hidden: int) -> None:
        super().__init__()
        self.kind = kind
        self.cell: nn.LSTMCell | nn.GRUCell = (
            nn.LSTMCell(hidden, hidden) if kind == "lstm" else nn.GRUCell(hidden, hidden)
        )
        for name, param in self.cell.named_parameters():
            if name.startswith("weight"):
                nn.init.orthogonal_(param, 1.0)
            else:
                nn.init.constant_(param, 0.0)
        self.proj = layer_init(nn.Linear(hidden, hidden), std=0.0)
        self.hidden = hidden
        self.state_size = 2 * hidden if kind == "lstm" else hidden

    def forward(self, z: torch.Tensor, state: torch.Tensor, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keep = (~starts).to(z.dtype)
        outs = []
        for t in range(z.shape[1]):
            state = state * keep[:, t : t + 1]
            if isinstance(self.cell, nn.LSTMCell):
                h, c = self.cell(z[:, t], (state[:, : self.hidden], state[:, self.hidden :]))
                state = torch.cat([h, c], dim=-1)
            else:
                h = state = self.cell(z[:, t], state)
            outs.append(h)
        return z + self.proj(torch.stack(outs, dim=1)), state


class AttentionCore(nn.Module):
    """One pre-norm transformer block (multi-head attention with a learned bias per distance, then
    a feed-forward layer, both residual with zero-initialised outputs) in which each tick attends to
    itself and the K - 1 ticks before it in the same episode."""

    def __init__(self, hidden: int, context: int, heads: int = ATTENTION_HEADS) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"attention: hidden {hidden} must be a multiple of {heads} heads")
        self.hidden, self.context, self.heads = hidden, context, heads
        self.norm = nn.LayerNorm(hidden)
        self.qkv = layer_init(nn.Linear(hidden, 3 * hidden), std=1.0)
        self.out = layer_init(nn.Linear(hidden, hidden), std=0.0)
        self.distance_bias = nn.Parameter(torch.zeros(heads, context))
        self.ff_norm = nn.LayerNorm(hidden)
        self.ff1 = layer_init(nn.Linear(hidden, 2 * hidden))
        self.ff2 = layer_init(nn.Linear(2 * hidden, hidden), std=0.0)
        self.state_size = context * hidden + context

    def forward(self, z: torch.Tensor, state: torch.Tensor, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, length, hid = z.shape
        k = self.context
        if length == 1 and not bool(starts.any()):
            return self._one_tick(z, state)
        ctx = state[:, : k * hid].view(b, k, hid)
        valid = torch.cat([state[:, k * hid :] > 0.5, torch.ones(b, length, dtype=torch.bool)], dim=1)
        episode = torch.cat([torch.zeros(b, k, dtype=torch.long), starts.long().cumsum(1)], dim=1)
        x = torch.cat([ctx, z], dim=1)  # (B, K + L, H): keys; the last L are the queries
        q_pos = torch.arange(length) + k
        j = torch.arange(k + length)
        dist = q_pos[:, None] - j[None, :]  # (L, K + L)
        window = (dist >= 0) & (dist < k)
        allowed = (
            window[None]
            & valid[:, None, :]
            & (episode[:, None, :] == episode[:, q_pos][:, :, None])  # same episode as the query
        )  # (B, L, K + L)
        qkv = self.qkv(self.norm(x))
        dh = hid // self.heads
        q, key, v = (t.view(b, k + length, self.heads, dh).transpose(1, 2) for t in qkv.split(hid, dim=-1))
        scores = q[:, :, k:] @ key.transpose(-1, -2) / math.sqrt(dh)  # (B, heads, L, K + L)
        bias = self.distance_bias[:, dist.clamp(0, k - 1)]  # (heads, L, K + L)
        scores = (scores + bias[None]).masked_fill(~allowed[:, None], float("-inf"))
        att = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, length, hid)
        a = z + self.out(att)
        h = a + self.ff2(F.relu(self.ff1(self.ff_norm(a))))
        last = episode[:, -1:]
        keep = valid[:, length:] & (episode[:, length:] == last)  # the last K ticks of the current episode
        kept = x[:, length:] * keep[..., None].to(z.dtype)  # forgotten ticks read as zeros
        new_state = torch.cat([kept.reshape(b, k * hid), keep.to(z.dtype)], dim=1)
        return h, new_state

    def _one_tick(self, z: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`forward` for one tick (acting): the same arithmetic over the K keys in the window only."""
        b, _, hid = z.shape
        k = self.context
        keys = torch.cat([state[:, hid : k * hid].view(b, k - 1, hid), z], dim=1)  # the window: (B, K, H)
        valid = torch.cat([state[:, k * hid + 1 :] > 0.5, torch.ones(b, 1, dtype=torch.bool)], dim=1)
        qkv = self.qkv(self.norm(keys))
        dh = hid // self.heads
        q, key, v = (t.view(b, k, self.heads, dh).transpose(1, 2) for t in qkv.split(hid, dim=-1))
        scores = q[:, :, k - 1 :] @ key.transpose(-1, -2) / math.sqrt(dh)  # (B, heads, 1, K)
        bias = self.distance_bias.flip(-1)[:, None, :]  # key i is K - 1 - i ticks back
        scores = (scores + bias[None]).masked_fill(~valid[:, None, None, :], float("-inf"))
        att = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, 1, hid)
        a = z + self.out(att)
        h = a + self.ff2(F.relu(self.ff1(self.ff_norm(a))))
        kept = keys * valid[..., None].to(z.dtype)
        return h, torch.cat([kept.reshape(b, k * hid), valid.to(z.dtype)], dim=1)


class MemoryPolicy(ConflictAwarePolicy):
    """The feed-forward agent's encoders, a memory core (`arch`), then its actor/critic and heads."""

    def __init__(
        self,
        arch: str,
        map_shape: tuple[int, int, int],
        n_features: int,
        n_actions: int,
        hidden: int = 128,
        context: int = 16,
        ctx_reset_col: int | None = None,
    ) -> None:
        if arch not in MEMORY_ARCHS:
            raise ValueError(f"unknown memory architecture {arch!r} (one of {', '.join(MEMORY_ARCHS)})")
        super().__init__(map_shape, n_features, n_actions, hidden)
        self.architecture = arch
        self.context = context
        #: The observation column of the `ctx_reset` feature (a new episode or a respawn), if any.
        self.ctx_reset_col = ctx_reset_col
        #: The memory of the rows `forward` acts for, tick after tick (`reset_memory` forgets it).
        self.acting_state: torch.Tensor | None = None
        self.core: RecurrentCore | AttentionCore = (
            AttentionCore(hidden, context) if arch == "attention" else RecurrentCore(arch, hidden)
        )
        self.state_size = self.core.state_size

    def spec(self) -> dict[str, Any]:
        out = super().spec()
        out["context"] = self.context
        out["ctx_reset_col"] = self.ctx_reset_col
        return out

    def initial_state(self, n: int) -> torch.Tensor:
        """The memory of `n` agent slots at the start of an episode."""
        return torch.zeros(n, self.state_size)

    # bfloat16 (`ppo.precision`, inside `computing_in`): the encoders' and the actor/critic hidden
    # layers' products as the feed-forward network computes them in bfloat16 (the convolution as one
    # product per output row, actor and critic as one product), from the same derived weights; the
    # core, its memory, the heads and the losses stay float32. fp32 runs the modules as before.

    def _encode(self, obs: torch.Tensor) -> torch.Tensor:
        """(N, obs_dim) observations, or their bfloat16 `prepare`, -> (N, hidden) float32 encodings."""
        if self.precision != "bf16":
            return self.encode(obs)
        x, w = self.prepare(obs), self._bf16_weights()
        n, rows = x.shape[0], self._rows
        slabs = x[:, : rows.slab_len].reshape(n * rows.out_rows, rows.slab_width)
        return self._bf16_encode(slabs, x[:, rows.slab_len :], w).float()

    def _heads(self, h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.precision == "bf16":
            lead = h.shape[:-1]  # the feed-forward network's hidden layers and heads, over (N, hidden) rows
            logits, value = self._bf16_heads(h.reshape(-1, h.shape[-1]).to(BF16), self._bf16_weights())
            return logits.view(*lead, -1).masked_fill(~mask, MASKED_LOGIT), value.view(lead)
        logits = self.policy_head(self.actor(h)).masked_fill(~mask, MASKED_LOGIT)
        value = self.value_head(self.critic(h)).squeeze(-1)
        return logits, value

    def sequence(
        self, obs: torch.Tensor, mask: torch.Tensor, state: torch.Tensor, starts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, L) ticks from each row's initial `state` (B, state_size); `starts` (B, L): the tick's
        state was reset before it acted. Returns logits (B, L, A), values (B, L), the final state.
        `obs` may be the bfloat16 `prepare` of the observations (B, L, prepared width)."""
        b, length = obs.shape[:2]
        z = self._encode(obs.reshape(b * length, -1)).view(b, length, -1)
        h, state = self.core(z, state, starts)
        logits, value = self._heads(h, mask)
        return logits, value, state

    def step(
        self, obs: torch.Tensor, mask: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One tick of every row: logits (B, A), values (B,), the next state."""
        starts = torch.zeros(obs.shape[0], 1, dtype=torch.bool)
        logits, value, state = self.sequence(obs[:, None], mask[:, None], state, starts)
        return logits[:, 0], value[:, 0], state

    def act_step(
        self, obs: torch.Tensor, mask: torch.Tensor, state: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample masked actions with memory: (actions, log-probs, values, next state)."""
        logits, value, state = self.step(obs, mask, state)
        action, log_prob = draw(logits, generator)
        return action, log_prob, value, state

    def state_value(self, obs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """The critic's value of `obs` seen with memory `state` (the state is not advanced)."""
        mask = torch.ones(obs.shape[0], self.n_actions, dtype=torch.bool)
        return self.step(obs, mask, state)[1]

    def evaluate_sequence(
        self, obs: torch.Tensor, mask: torch.Tensor, actions: torch.Tensor, state: torch.Tensor, starts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probs of `actions` (B, L), entropies and values under the current parameters."""
        logits, value, _ = self.sequence(obs, mask, state, starts)
        logp_all = torch.log_softmax(logits, -1)
        return pick(logp_all, actions), entropy_of(logp_all), value

    # The ActorCritic interface (`forward`, `act`, `value`) is how the tools that step a town tick
    # by tick act (`sim run --policy`, capture, evaluation, the shard): there the policy keeps its
    # own memory, one row per agent slot, forgotten where the `ctx_reset` feature is set (a new
    # episode, a respawn) and entirely when the number of rows changes.

    def reset_memory(self) -> None:
        self.acting_state = None

    def _acting_memory(self, obs: torch.Tensor) -> torch.Tensor:
        n = obs.shape[0]
        state = self.acting_state
        if state is None or state.shape[0] != n:
            state = self.initial_state(n)
        elif self.ctx_reset_col is not None:
            state = state * (obs[:, self.ctx_reset_col] <= 0.5).to(state.dtype)[:, None]
        return state

    def forward(self, obs: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One tick of the rows this policy acts for, with their memory (which advances)."""
        logits, value, state = self.step(obs, mask, self._acting_memory(obs))
        self.acting_state = state.detach().clone()
        return logits, value

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """The critic's value of `obs` with the acting memory (which does not advance)."""
        return self.state_value(obs, self._acting_memory(obs))


def build_memory_policy(spec: dict[str, Any]) -> MemoryPolicy:
    """Rebuild a memory policy from its `spec()` (`network.build_policy` delegates here)."""
    return MemoryPolicy(
        str(spec["architecture"]),
        tuple(spec["map_shape"]),
        int(spec["n_features"]),
        int(spec["n_actions"]),
        int(spec["hidden"]),
        int(spec.get("context", 16)),
        None if spec.get("ctx_reset_col") is None else int(spec["ctx_reset_col"]),
    )


def make_memory_policy(arch: str, meta: dict[str, Any], n_actions: int, hidden: int, context: int) -> MemoryPolicy:
    """A fresh memory policy for Townlet observations (`meta`: the observation spec), built on one
    thread as `trainer.make_policy` builds the feed-forward one (the orthogonal initialisation must
    not depend on the core count)."""
    if "map_shape" not in meta or "n_features" not in meta:
        raise ValueError("memory policies read Townlet observations (a map and named features)")
    with one_torch_thread():
        names = list(meta.get("feature_names", []))
        col = int(np.prod(meta["map_shape"])) + names.index("ctx_reset") if "ctx_reset" in names else None
        return MemoryPolicy(arch, tuple(meta["map_shape"]), int(meta["n_features"]), n_actions, hidden, context, col)


#: The feed-forward agent's encoders: what a warm start must carry over.
ENCODER_PREFIXES = ("map_encoder.", "map_fc.", "feature_encoder.")


class MappingError(ValueError):
    """A warm start that cannot carry a tensor over (its shape differs)."""


def memory_warm_start(
    policy: MemoryPolicy, source: dict[str, torch.Tensor], source_arch: str, *, allow_mismatch: bool
) -> dict[str, Any]:
    """Copy a checkpoint's tensors into a fresh memory policy, explicitly: the encoders, actor and
    critic layers and heads where the names and shapes match, the core only from a checkpoint of the
    same architecture (another core, or none, leaves it fresh). A missing encoder tensor or a shape
    that differs is a `MappingError` unless `allow_mismatch` (then that tensor stays fresh).
    Returns the mapping the checkpoint's lineage records: carried and fresh tensor names."""
    own = policy.state_dict()
    carried: list[str] = []
    fresh: list[str] = []
    problems: list[str] = []
    for name, tensor in own.items():
        if name.startswith("core.") and source_arch != policy.architecture:
            fresh.append(name)
            continue
        src = source.get(name)
        if src is None:
            if name.startswith(ENCODER_PREFIXES):
                problems.append(f"{name} missing")
            fresh.append(name)
        elif tuple(src.shape) != tuple(tensor.shape):
            problems.append(f"{name} {list(src.shape)} != {list(tensor.shape)}")
            fresh.append(name)
        else:
            carried.append(name)
    if problems and not allow_mismatch:
        raise MappingError("; ".join(problems))
    with torch.no_grad():
        for name in carried:
            own[name].copy_(source[name])
    return {"source_architecture": source_arch, "carried": carried, "fresh": fresh, "mismatched": problems}
