"""PPO's objective terms, shared by the feed-forward update (training/ppo.py) and the recurrent one
(training/ppo_recurrent.py): the clipped surrogate, the clipped value loss, advantage normalisation and the KL
estimate (docs/training.md, "PPO details")."""

from __future__ import annotations

import torch


def approx_kl(ratio: torch.Tensor, logratio: torch.Tensor) -> torch.Tensor:
    """KL(old || new) estimated as mean((r - 1) - log r): unbiased and never negative."""
    return ((ratio - 1) - logratio).mean()


def normalize(adv: torch.Tensor) -> torch.Tensor:
    """Advantages to zero mean and unit spread within the minibatch."""
    return (adv - adv.mean()) / (adv.std() + 1e-8)


def clipped_surrogate(
    adv: torch.Tensor, ratio: torch.Tensor, clip_coef: float, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """The clipped surrogate objective (as a loss): the pessimistic bound of the ratio-weighted
    advantage and its ratio-clipped counterpart; `weight` (per row, no gradient) scales each row's."""
    bound = torch.max(-adv * ratio, -adv * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef))
    return (bound if weight is None else bound * weight).mean()


def value_loss(new: torch.Tensor, old: torch.Tensor, ret: torch.Tensor, clip_coef: float | None) -> torch.Tensor:
    """Half the squared error to the returns; with `clip_coef`, the worse of the new value and
    the value clipped to +-clip_coef around the rollout's estimate."""
    if clip_coef is not None:
        clipped = old + torch.clamp(new - old, -clip_coef, clip_coef)
        return 0.5 * torch.max((new - ret) ** 2, (clipped - ret) ** 2).mean()
    return 0.5 * ((new - ret) ** 2).mean()
