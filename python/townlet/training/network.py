"""Policy networks with parameter sharing across agents.

`ConflictAwarePolicy` reads Townlet observations (a flattened egocentric map followed by named
features): a small conv encoder for the map, an MLP for the features, a shared trunk, and a
policy head (masked logits) and a value head. `MLPPolicy` serves any flat observation (e.g. a
PettingZoo env that is not Townlet). Both take `(obs (B, D), mask (B, A) bool)`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: Logit given to masked actions: effectively zero probability without producing NaNs.
MASKED_LOGIT = -1e8


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
        logits, value = self(obs, mask)
        action = logits.argmax(-1) if deterministic else sample(torch.softmax(logits, -1), generator)
        logp = torch.log_softmax(logits, -1).gather(-1, action.unsqueeze(-1)).squeeze(-1)
        return action, logp, value

    def evaluate(
        self, obs: torch.Tensor, mask: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probs of `actions`, entropies and values under the current parameters."""
        logits, value = self(obs, mask)
        logp_all = torch.log_softmax(logits, -1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        return logp_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1), entropy, value


def sample(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One action per row drawn from `probs` (B, A): `torch.multinomial(probs, 1)` as torch computes
    it (argmax of p / q with q ~ Exp(1), from the same generator draws, so the same actions), without
    its argument checks, which at the collector's batch cost more than the draw."""
    q = torch.empty_like(probs).exponential_(1, generator=generator)
    return torch.div(probs, q).argmax(-1)


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
        z = self.encode(obs)  # encode once for both heads
        ph, vh = self.policy_head, self.value_head
        assert isinstance(ph, nn.Linear) and isinstance(vh, nn.Linear)
        logits = F.linear(self._hidden(z, self.actor), ph.weight, ph.bias).masked_fill(~mask, MASKED_LOGIT)
        return logits, F.linear(self._hidden(z, self.critic), vh.weight, vh.bias).squeeze(-1)


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
