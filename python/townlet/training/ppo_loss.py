"""PPO's objective (docs/training.md, "PPO details"), shared by the feed-forward update (training/ppo.py) and the
recurrent one (training/ppo_recurrent.py): the clipped surrogate, the clipped value loss, advantage normalisation,
the entropy bonus, kickstarting's cross-entropy and the KL estimate over a minibatch, with the gradient, in one pass
of the core (`_core.ppo_loss`), where the same terms as torch expressions ran some forty small passes forward and
as many backward under autograd: about a millisecond a minibatch of the default town's 2,304 rows, 0.2 ms in the
core (tests/test_ppo_objective.py holds the two to the same values). `UpdateStats` takes each minibatch's optimizer
step on that loss and records its terms, for both updates."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from townlet import _core
from townlet.sim.settings import PPOConfig


class _Attached(torch.autograd.Function):
    """A loss computed with its gradient with respect to the logits and the values (`objective`): backward hands
    that gradient on, scaled by the loss's own."""

    @staticmethod
    def forward(
        ctx: Any,
        logits: torch.Tensor,
        values: torch.Tensor,
        grad_logits: torch.Tensor,
        grad_values: torch.Tensor,
        loss: torch.Tensor,
    ) -> torch.Tensor:
        ctx.save_for_backward(grad_logits, grad_values)
        return loss.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_logits, grad_values = ctx.saved_tensors
        if float(grad) != 1.0:  # `loss.backward()` passes 1: the gradient as it was computed
            grad_logits, grad_values = grad_logits * grad, grad_values * grad
        return grad_logits, grad_values, None, None, None


def objective(
    logits: torch.Tensor,
    values: torch.Tensor,
    rows: dict[str, torch.Tensor],
    cfg: PPOConfig,
    kickstart: bool = False,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO's loss over a minibatch (a scalar whose backward reaches `logits` and `values`) and its terms (`loss`,
    `pg_loss`, `v_loss`, `entropy`, `imitation`, `approx_kl`, `clipfrac`, `adv_mean`, `adv_std`), from the
    network's `logits` (W, A) float32 (before or after the mask) and `values` (W,) over W >= m rows, of which the
    first m are the minibatch's `rows` (each (m,): `masks` (m, A), `actions`, `log_probs`, `advantages`, `returns`,
    `values`; `proximal` collecting ahead; `expert` and `expert_ok` with `kickstart`); the rest are padding (no
    gradient). The loss is `pg_loss - ent_coef * entropy + vf_coef * v_loss (+ kickstart_coef * imitation)`."""
    m = len(rows["actions"])
    grad_logits, grad_values = torch.zeros_like(logits, dtype=torch.float32), torch.zeros(len(values))
    proximal = rows.get("proximal")
    terms = _core.ppo_loss(
        logits.detach()[:m].numpy(),
        values.detach()[:m].numpy(),
        rows["masks"].numpy(),
        rows["actions"].numpy(),
        rows["log_probs"].numpy(),
        None if proximal is None else proximal.numpy(),
        rows["advantages"].numpy(),
        rows["returns"].numpy(),
        rows["values"].numpy(),
        rows["expert"].numpy() if kickstart else None,
        rows["expert_ok"].numpy() if kickstart else None,
        clip_coef=cfg.clip_coef,
        value_clip=cfg.clip_coef if cfg.clip_vloss else None,
        norm_adv=cfg.norm_adv,
        ent_coef=cfg.ent_coef,
        vf_coef=cfg.vf_coef,
        kickstart_coef=cfg.kickstart_coef if kickstart else 0.0,
        grad_logits=grad_logits[:m].numpy(),
        grad_values=grad_values[:m].numpy(),
    )
    loss: torch.Tensor = _Attached.apply(logits, values, grad_logits, grad_values, torch.tensor(terms["loss"]))
    return loss, terms


@dataclass
class UpdateStats:
    updates: int = 0
    pg_losses: list[float] = field(default_factory=list)
    v_losses: list[float] = field(default_factory=list)
    entropies: list[float] = field(default_factory=list)
    kls: list[float] = field(default_factory=list)
    clipfracs: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    #: The kickstarting term's cross-entropy to the expert's actions, per minibatch (empty when off).
    imitation_losses: list[float] = field(default_factory=list)
    adv_means: list[float] = field(default_factory=list)
    adv_stds: list[float] = field(default_factory=list)
    feature_stats: list[tuple[float, float, float, float]] = field(default_factory=list)
    early_stop: bool = False
    seconds: float = 0.0

    def step(
        self,
        policy: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss: torch.Tensor,
        terms: dict[str, float],
        max_grad_norm: float,
    ) -> None:
        """One minibatch: the optimizer's step on `loss`, its gradient clipped to `max_grad_norm` (the norm before the
        clip recorded), and the objective's terms recorded."""
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        grad_norm = nn.utils.clip_grad_norm_(policy.parameters(), max_grad_norm)
        optimizer.step()
        self.updates += 1
        self.kls.append(terms["approx_kl"])
        self.clipfracs.append(terms["clipfrac"])
        self.adv_means.append(terms["adv_mean"])
        self.adv_stds.append(terms["adv_std"])
        self.pg_losses.append(terms["pg_loss"])
        self.v_losses.append(terms["v_loss"])
        self.entropies.append(terms["entropy"])
        self.grad_norms.append(float(grad_norm))
