"""Policy networks with parameter sharing across agents.

`ConflictAwarePolicy` reads Townlet observations (a flattened egocentric map followed by named
features): a small conv encoder for the map, an MLP for the features, a shared trunk, and a
policy head (masked logits) and a value head. `MLPPolicy` serves any flat observation (e.g. a
PettingZoo env that is not Townlet). Both take `(obs (B, D), mask (B, A) bool)`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from townlet import _core
from townlet.training.network_bf16 import ConvAsRows, HiddenHeads, linear_relu, linear_relu_forward

#: Logit given to masked actions: effectively zero probability without producing NaNs.
MASKED_LOGIT = -1e8

#: The precisions a policy computes in: `fp32` (float32 throughout), `bf16` (the conflict-aware
#: network's hidden-layer products in bfloat16 with float32 accumulation; float32 weights, heads,
#: losses and optimizer; the MLP stays float32, too small to gain).
PRECISIONS = ("fp32", "bf16")
BF16 = torch.bfloat16


class Scratch:
    """Named buffers reused from call to call (a large tensor allocated afresh costs its page
    faults every time): `take` returns a view of the requested shape, growing the buffer when
    it is too small. A view is valid until the next `take` of the same name."""

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def take(self, name: str, shape: tuple[int, ...] | torch.Size, dtype: torch.dtype) -> torch.Tensor:
        size = math.prod(shape)
        buf = self._buffers.get(name)
        if buf is None or buf.dtype != dtype or buf.numel() < size:
            buf = self._buffers[name] = torch.empty(size, dtype=dtype)
        return buf[:size].view(shape)


def layer_init(layer: nn.Module, std: float = math.sqrt(2), bias: float = 0.0) -> nn.Module:
    """Orthogonal weights and constant bias (the reference PPO initialisation)."""
    if isinstance(layer, nn.Linear | nn.Conv2d):
        nn.init.orthogonal_(layer.weight, std)
        if layer.bias is not None:
            nn.init.constant_(layer.bias, bias)
    return layer


class ActorCritic(nn.Module):
    """Base: subclasses define `trunk(obs)` (policy features) and `critic_trunk(obs)` (value
    features), each (B, hidden). Separate critic layers keep the value loss, which can be large,
    from swamping the policy's share of the clipped gradient."""

    architecture: str = "actor_critic"

    def __init__(self, obs_dim: int, n_actions: int, hidden: int) -> None:
        super().__init__()
        self.obs_dim = obs_dim
        self.n_actions = n_actions
        self.hidden = hidden
        self.policy_head = layer_init(nn.Linear(hidden, n_actions), std=0.01)
        self.value_head = layer_init(nn.Linear(hidden, 1), std=1.0)
        #: How `forward` computes (one of `PRECISIONS`); set for a while with `computing_in`.
        self.precision = "fp32"
        #: Weights derived for the current precision, kept while they cannot change (`frozen`),
        #: and the buffers of `prepare` there (its result is read at once by the forward).
        self._frozen: dict[str, Any] | None = None
        self._scratch: Scratch | None = None

    @contextmanager
    def computing_in(self, precision: str, *, frozen: bool = False) -> Iterator[None]:
        """Compute in `precision` inside the block (the trainer's collection and update), then
        as before: a policy evaluated or saved afterwards computes in float32. `frozen`: the
        weights do not change inside the block (collection), so what the precision derives
        from them (bfloat16 copies) is derived once."""
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r} (one of {', '.join(PRECISIONS)})")
        before = self.precision, self._frozen, self._scratch
        self.precision, self._frozen = precision, ({} if frozen else None)
        self._scratch = Scratch() if frozen else None
        try:
            yield
        finally:
            self.precision, self._frozen, self._scratch = before

    def prepare(self, obs: torch.Tensor, scratch: Scratch | None = None) -> torch.Tensor:
        """Observations as the network reads them in the current precision; `forward` accepts
        either. Here the observations themselves; a network with a bfloat16 path returns its own
        input. With `scratch`, the result may live in its buffers (valid until the next call with
        it)."""
        return obs

    def pass_input(self, obs: torch.Tensor, order: torch.Tensor, width: int, scratch: Scratch | None) -> torch.Tensor:
        """One pass of the update's input, made once per pass: the rows `order` (int64) of the epoch's observations
        `obs`, a whole number of minibatches of `width` rows each, in the pass's order (`block` gives the `i`th),
        so that no minibatch gathers its rows. Here those rows of the observations."""
        if scratch is None:
            return obs.index_select(0, order)
        return torch.index_select(obs, 0, order, out=scratch.take("pass", (len(order), *obs.shape[1:]), obs.dtype))

    def block(self, x: torch.Tensor, i: int, width: int) -> torch.Tensor:
        """The `i`th minibatch of a `pass_input` `x`: what `forward` (and `unmasked`) reads, a view."""
        return x[i * width : (i + 1) * width]

    def trunk(self, obs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def critic_trunk(self, obs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        """Architecture description stored in checkpoints (enough to rebuild the module)."""
        return {
            "architecture": self.architecture,
            "obs_dim": self.obs_dim,
            "n_actions": self.n_actions,
            "hidden": self.hidden,
        }

    def forward(self, obs: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.policy_head(self.trunk(obs)).masked_fill(~mask, MASKED_LOGIT)
        return logits, self.value(obs)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.value_head(self.critic_trunk(obs)).squeeze(-1)
        return out

    def act(
        self,
        obs: torch.Tensor,
        mask: torch.Tensor,
        *,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample (or take the argmax of) masked actions: (actions, log-probs, values)."""
        raw = None if deterministic else self.unmasked(obs)
        if raw is not None:  # the draw skips what the mask does not allow (the same draws)
            return (*draw(raw[0], generator, mask), raw[1])
        logits, value = self(obs, mask)
        if deterministic:
            action = logits.argmax(-1)
            return action, pick(torch.log_softmax(logits, -1), action), value
        return (*draw(logits, generator), value)

    def unmasked(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The logits before the mask is applied and the values, where `forward` computes them apart from the
        mask (`act` then hands the mask to the draw, one pass fewer); None here."""
        return None

    def evaluate(
        self, obs: torch.Tensor, mask: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probs of `actions`, entropies and values under the current parameters."""
        logp_all, value = self.log_softmax(obs, mask)
        return pick(logp_all, actions), entropy_of(logp_all), value

    def log_softmax(self, obs: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every action's masked log-probability (B, A) and the values (B,)."""
        logits, value = self(obs, mask)
        return torch.log_softmax(logits, -1), value


def pick(logp_all: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """The log-probabilities (B,) of `actions` (B,) in `logp_all` (B, A)."""
    return logp_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)


#: The entropy's probabilities are exp(max(log p, this)): exp of anything below about -87 (a masked
#: action's log-probability is near `MASKED_LOGIT`) leaves float32's normal range, where the CPU's
#: exp takes a path about 60x slower, while exp(-80) (2e-35) adds nothing a float32 entropy can hold.
ENTROPY_LOG_FLOOR = -80.0


def entropy_of(logp_all: torch.Tensor) -> torch.Tensor:
    """Each row's entropy (B,) from its log-probabilities (B, A)."""
    return -(logp_all.clamp(min=ENTROPY_LOG_FLOOR).exp() * logp_all).sum(-1)


def draw(
    logits: torch.Tensor, generator: torch.Generator | None = None, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One action per row of masked `logits` (B, A) drawn from its softmax, and its log-probability: (actions
    (B,) int64, log-probs (B,) float32). One key is taken from `generator` (the global one when None); the
    core draws every row by inverse CDF from a uniform of (key, row) (`_core.draw_actions`), one pass where
    softmax, exponential draws, argmax, log-softmax and gather were seven torch calls, together about as
    long as the collector's forward's largest product. A masked action is never drawn: one whose logit is
    `MASKED_LOGIT`, or with `mask` (B, A), one it does not allow (the same draws as its logits masked)."""
    key = int(torch.randint(1 << 62, (), generator=generator))
    rows = logits.shape[0]
    actions, log_probs = torch.empty(rows, dtype=torch.int64), torch.empty(rows)
    allowed = None if mask is None else mask.contiguous().numpy()
    src = logits.detach().to(torch.float32).contiguous().numpy()
    _core.draw_actions(src, key, actions.numpy(), log_probs.numpy(), allowed)
    return actions, log_probs


class MLPPolicy(ActorCritic):
    architecture = "mlp"

    def __init__(self, obs_dim: int, n_actions: int, hidden: int = 64) -> None:
        super().__init__(obs_dim, n_actions, hidden)

        def body() -> nn.Sequential:
            return nn.Sequential(
                layer_init(nn.Linear(obs_dim, hidden)), nn.Tanh(), layer_init(nn.Linear(hidden, hidden)), nn.Tanh()
            )

        self.actor = body()
        self.critic = body()

    def trunk(self, obs: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.actor(obs)
        return out

    def critic_trunk(self, obs: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.critic(obs)
        return out


class ConflictAwarePolicy(ActorCritic):
    """Map encoder + feature encoder + shared trunk, as the prior system's network (plus masking)."""

    architecture = "conflict_aware"

    def __init__(self, map_shape: tuple[int, int, int], n_features: int, n_actions: int, hidden: int = 128) -> None:
        c, h, w = map_shape
        super().__init__(c * h * w + n_features, n_actions, hidden)
        self.map_shape = (c, h, w)
        self.n_features = n_features
        self.map_len = c * h * w
        # Small on purpose: on a CPU the learner's cost is dominated by this network.
        self.map_encoder = nn.Sequential(
            layer_init(nn.Conv2d(c, 8, 3, stride=2, padding=1)),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.map_encoder(torch.zeros(1, c, h, w)).shape[1]
        self.map_fc = nn.Sequential(layer_init(nn.Linear(flat, hidden // 2)), nn.ReLU())
        self.feature_encoder = nn.Sequential(layer_init(nn.Linear(n_features, hidden // 2)), nn.ReLU())
        self.actor = nn.Sequential(layer_init(nn.Linear(hidden, hidden)), nn.ReLU())
        self.critic = nn.Sequential(layer_init(nn.Linear(hidden, hidden)), nn.ReLU())
        self._rows = ConvAsRows(self.map_shape, self.map_encoder[0])  # type: ignore[arg-type]

    def spec(self) -> dict[str, Any]:
        out = super().spec()
        out.update({"map_shape": list(self.map_shape), "n_features": self.n_features})
        return out

    # The layers are applied through torch.nn.functional with the modules' own parameters: the
    # same operations as calling the modules (bit for bit), without the per-module call overhead,
    # which at the collector's batch of one row per agent cost as much as the arithmetic.

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        conv: nn.Conv2d = self.map_encoder[0]  # type: ignore[assignment]
        map_fc: nn.Linear = self.map_fc[0]  # type: ignore[assignment]
        feat: nn.Linear = self.feature_encoder[0]  # type: ignore[assignment]
        # Contiguous once here: the convolution would copy the strided slice in its forward and
        # again in its backward.
        maps = obs[:, : self.map_len].reshape(-1, *self.map_shape).contiguous()
        m = F.relu(F.conv2d(maps, conv.weight, conv.bias, conv.stride, conv.padding)).flatten(1)
        m = F.relu(F.linear(m, map_fc.weight, map_fc.bias))
        f = F.relu(F.linear(obs[:, self.map_len :], feat.weight, feat.bias))
        return torch.cat([m, f], dim=-1)

    def _hidden(self, z: torch.Tensor, layers: nn.Sequential) -> torch.Tensor:
        lin: nn.Linear = layers[0]  # type: ignore[assignment]
        return F.relu(F.linear(z, lin.weight, lin.bias))

    def trunk(self, obs: torch.Tensor) -> torch.Tensor:
        return self._hidden(self.encode(obs), self.actor)

    def critic_trunk(self, obs: torch.Tensor) -> torch.Tensor:
        return self._hidden(self.encode(obs), self.critic)

    def forward(self, obs: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.precision == "bf16":
            logits, value = self._bf16_outputs(obs)
            return logits.masked_fill(~mask, MASKED_LOGIT), value
        z = self.encode(obs)  # encode once for both heads
        ph, vh = self.policy_head, self.value_head
        assert isinstance(ph, nn.Linear) and isinstance(vh, nn.Linear)
        logits = F.linear(self._hidden(z, self.actor), ph.weight, ph.bias).masked_fill(~mask, MASKED_LOGIT)
        return logits, F.linear(self._hidden(z, self.critic), vh.weight, vh.bias).squeeze(-1)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        if self.precision == "bf16":
            return self._bf16_outputs(obs)[1]
        return super().value(obs)

    def unmasked(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        return self._bf16_outputs(obs) if self.precision == "bf16" else None

    # bfloat16: the convolution as one matrix product per output row of the map (`ConvAsRows`),
    # the actor's and critic's hidden layers as one product, each head a float32 product of its half.

    def prepare(self, obs: torch.Tensor, scratch: Scratch | None = None) -> torch.Tensor:
        """In bfloat16: each output row's slab of map rows (`ConvAsRows`), then the features, as
        one bfloat16 row per observation, written by the core's `slab_rows` in one pass from the
        float32 observations."""
        if self.precision != "bf16" or obs.dtype == BF16:
            return super().prepare(obs, scratch)
        return self._slab_rows(obs, scratch or self._scratch or Scratch(), blocks=False)

    def pass_input(self, obs: torch.Tensor, order: torch.Tensor, width: int, scratch: Scratch | None) -> torch.Tensor:
        """In bfloat16, every minibatch's slabs and features in the core's `blocks` layout (the block's slabs, then its
        features), one block after another, written by the core from the float32 observations once per pass: each
        minibatch (`block`) is then a view where the products read it. Minibatches gathered their rows from one
        input per update before, at 0.9 ms each inside the update on the Zen 4 box (0.1-0.25 ms alone), where writing
        the pass costs 0.6-1.0 ms a minibatch (2.3-3.9 ms for 9,216 rows in a shuffled order)."""
        if self.precision != "bf16":
            return super().pass_input(obs, order, width, scratch)
        src = obs.detach().to(torch.float32).contiguous().numpy()
        picked = order.numpy()
        out = (scratch or Scratch()).take("pass", (len(picked), self._rows.slab_len + self.n_features), BF16)
        words = out.view(torch.int16).numpy().view(np.uint16)
        for start in range(0, len(picked), width):
            _core.slab_rows(src, picked[start : start + width], self.map_shape, words[start : start + width], True)
        return out

    def block(self, x: torch.Tensor, i: int, width: int) -> torch.Tensor:
        """In bfloat16 the `i`th block of a `pass_input`, flat (what `_bf16_inputs` reads as a minibatch)."""
        if self.precision != "bf16":
            return super().block(x, i, width)
        return x[i * width : (i + 1) * width].view(-1)

    def _slab_rows(self, obs: torch.Tensor, scratch: Scratch, *, blocks: bool) -> torch.Tensor:
        """`_core.slab_rows` of float32 `obs` into a (rows, slab_len + n_features) bfloat16 buffer of `scratch`
        (with `blocks`, laid out as every row's slabs, then every row's features)."""
        src = obs.detach().to(torch.float32).contiguous().numpy()
        out = scratch.take("blocks" if blocks else "input", (len(src), self._rows.slab_len + self.n_features), BF16)
        rows = np.arange(len(src), dtype=np.int64)
        _core.slab_rows(src, rows, self.map_shape, out.view(torch.int16).numpy().view(np.uint16), blocks)
        return out

    def _bf16_weights(self) -> dict[str, torch.Tensor]:
        """The products' operands, derived from the float32 parameters (gradients flow back
        through the derivation); derived once while `frozen`."""
        if self._frozen is not None and self._frozen:
            return self._frozen
        conv: nn.Conv2d = self.map_encoder[0]  # type: ignore[assignment]
        map_fc: nn.Linear = self.map_fc[0]  # type: ignore[assignment]
        feat: nn.Linear = self.feature_encoder[0]  # type: ignore[assignment]
        actor: nn.Linear = self.actor[0]  # type: ignore[assignment]
        critic: nn.Linear = self.critic[0]  # type: ignore[assignment]
        ph: nn.Linear = self.policy_head  # type: ignore[assignment]
        vh: nn.Linear = self.value_head  # type: ignore[assignment]
        assert conv.bias is not None
        w = {
            "conv": self._rows.weight(conv.weight).to(BF16),
            "conv_bias": conv.bias.repeat(self._rows.out_cols).to(BF16),
            "map_fc": self._rows.permuted_fc(map_fc.weight).to(BF16),
            "map_fc_bias": map_fc.bias.to(BF16),
            "feat": feat.weight.to(BF16),
            "feat_bias": feat.bias.to(BF16),
            "hidden": torch.cat([actor.weight, critic.weight]).to(BF16),
            "hidden_bias": torch.cat([actor.bias, critic.bias]).to(BF16),
            "policy_head": ph.weight,
            "policy_head_bias": ph.bias,
            "value_head": vh.weight,
            "value_head_bias": vh.bias,
        }
        if self._frozen is not None:
            # Frozen (no gradient), the map's second layer and the features' layer are one product: their weights
            # as the two blocks of a block-diagonal one over [map | features], whose output is [map | features]
            # itself (the zeros add exact zeros: the same values). One oneDNN call and no join instead of two
            # calls and a join: the collector's forward 69 -> 58 us (the update keeps two products, whose rows
            # would double the work).
            w["encoder"] = torch.block_diag(w["map_fc"], w["feat"])  # type: ignore[no-untyped-call]
            w["encoder_bias"] = torch.cat([w["map_fc_bias"], w["feat_bias"]])
            # Copies, the heads' parameters too: what is frozen never changes with the parameters.
            self._frozen.update(
                {k: v.detach().clone() if isinstance(v, nn.Parameter) else v.detach() for k, v in w.items()}
            )
        return w

    def _bf16_outputs(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The unmasked logits (B, n_actions) and the values (B,)."""
        (slabs, features), w = self._bf16_inputs(obs), self._bf16_weights()
        return self._bf16_heads(self._bf16_encode(slabs, features, w), w)

    def _bf16_encode(self, slabs: torch.Tensor, features: torch.Tensor, w: dict[str, torch.Tensor]) -> torch.Tensor:
        """The map and feature encoders in bfloat16 (`w`: `_bf16_weights`): [map | features] (B, hidden)."""
        m = linear_relu(slabs, w["conv"], w["conv_bias"]).view(features.shape[0], -1)
        if "encoder" in w:  # frozen: both layers as one block-diagonal product (`_bf16_weights`)
            return linear_relu_forward(torch.cat([m, features], dim=-1), w["encoder"], w["encoder_bias"])
        m = linear_relu(m, w["map_fc"], w["map_fc_bias"])
        f = linear_relu(features, w["feat"], w["feat_bias"])
        return torch.cat([m, f], dim=-1)

    def _bf16_heads(self, z: torch.Tensor, w: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The actor's and critic's hidden layers over `z` (B, hidden) bfloat16, as one product, then
        each float32 head over its half: the unmasked logits (B, n_actions) and the values (B,)."""
        args = (
            z,
            w["hidden"],
            w["hidden_bias"],
            w["policy_head"],
            w["policy_head_bias"],
            w["value_head"],
            w["value_head_bias"],
        )
        if torch.is_grad_enabled():
            logits, value = HiddenHeads.apply(*args)
        else:
            logits, value = HiddenHeads.outputs(*args)[:2]
        return logits, value

    def _bf16_inputs(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The convolution's slabs as (B * out_rows, slab_width) rows and the features (B,
        n_features), in bfloat16, from observations, their `prepare` or a `block` of a `pass_input` (flat).
        From observations (the collector's ticks) the core writes the slabs as one block, where the
        product reads them, as `pass_input` does."""
        rows = self._rows
        if obs.dtype == BF16 and obs.dim() == 2:  # prepared: each row holds its features after its slabs
            b = obs.shape[0]
            return obs[:, : rows.slab_len].reshape(b * rows.out_rows, rows.slab_width), obs[:, rows.slab_len :]
        if obs.dtype == BF16:  # a minibatch: the blocks layout, flat
            flat, b = obs, obs.numel() // (rows.slab_len + self.n_features)
        else:
            flat, b = self._slab_rows(obs, self._scratch or Scratch(), blocks=True).view(-1), obs.shape[0]
        slabs, features = flat[: b * rows.slab_len], flat[b * rows.slab_len :]
        return slabs.view(b * rows.out_rows, rows.slab_width), features.view(b, self.n_features)


def build_policy(spec: dict[str, Any]) -> ActorCritic:
    """Rebuild a policy module from its `spec()`."""
    arch = spec.get("architecture")
    if arch == "conflict_aware":
        return ConflictAwarePolicy(
            tuple(spec["map_shape"]), int(spec["n_features"]), int(spec["n_actions"]), int(spec["hidden"])
        )
    if arch == "mlp":
        return MLPPolicy(int(spec["obs_dim"]), int(spec["n_actions"]), int(spec["hidden"]))
    if arch in ("lstm", "gru", "attention"):  # policies with memory (training/network_memory.py)
        from townlet.training.network_memory import build_memory_policy

        return build_memory_policy(spec)
    raise ValueError(f"unknown policy architecture {arch!r}")
