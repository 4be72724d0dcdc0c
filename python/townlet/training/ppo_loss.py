"""PPO's objective (docs/training.md, "PPO details"), shared by the feed-forward update (training/ppo.py) and the
recurrent one (training/ppo_recurrent.py): the clipped surrogate, the clipped value loss, advantage normalisation,
the entropy bonus, kickstarting's cross-entropy and the KL estimate over a minibatch, with the gradient, in one pass
of the core (`_core.ppo_loss`), where the same terms as torch expressions ran some forty small passes forward and
as many backward under autograd: about a millisecond a minibatch of the default town's 2,304 rows, 0.2 ms in the
core (tests/test_ppo_objective.py holds the two to the same values)."""

from __future__ import annotations

from typing import Any

import torch

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
