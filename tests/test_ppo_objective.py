"""PPO's objective in one pass of the core (`ppo_loss.objective`, `_core.ppo_loss`) against the same objective as
torch expressions under autograd (`reference`, as the updates computed it before): the loss, each term and the
gradient with respect to the logits and the values, over random minibatches with and without value clipping,
advantage normalisation, collecting ahead (proximal log-probabilities) and kickstarting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from townlet import _core
from townlet.sim.settings import PPOConfig
from townlet.training.network import MASKED_LOGIT, entropy_of, pick
from townlet.training.ppo_loss import objective


def minibatch(
    seed: int, m: int, width: int, actions: int
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    masks = torch.rand(m, actions, generator=g) > 0.4
    masks[:, 0] = True  # `wait` is always allowed
    logits = 3 * torch.randn(width, actions, generator=g)
    values = torch.randn(width, generator=g)
    taken = torch.multinomial(masks.float(), 1, generator=g).squeeze(-1)
    logp = torch.log_softmax(logits[:m].masked_fill(~masks, MASKED_LOGIT), -1)
    log_probs = pick(logp, taken) + 0.3 * torch.randn(m, generator=g)
    expert = torch.multinomial(masks.float(), 1, generator=g).squeeze(-1)
    rows = {
        "masks": masks,
        "actions": taken,
        "log_probs": log_probs,
        "proximal": log_probs + 0.1 * torch.randn(m, generator=g),
        "advantages": 2 * torch.randn(m, generator=g) + 0.5,
        "returns": values[:m] + torch.randn(m, generator=g),
        "values": values[:m] + 0.3 * torch.randn(m, generator=g),
        "expert": expert,
        "expert_ok": (torch.rand(m, generator=g) > 0.3).float(),
    }
    return logits, values, rows


def approx_kl(ratio: torch.Tensor, logratio: torch.Tensor) -> torch.Tensor:
    return ((ratio - 1) - logratio).mean()


def normalize(adv: torch.Tensor) -> torch.Tensor:
    return (adv - adv.mean()) / (adv.std() + 1e-8)


def clipped_surrogate(
    adv: torch.Tensor, ratio: torch.Tensor, clip_coef: float, weight: torch.Tensor | None
) -> torch.Tensor:
    bound = torch.max(-adv * ratio, -adv * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef))
    return (bound if weight is None else bound * weight).mean()


def value_loss(new: torch.Tensor, old: torch.Tensor, ret: torch.Tensor, clip_coef: float | None) -> torch.Tensor:
    if clip_coef is not None:
        clipped = old + torch.clamp(new - old, -clip_coef, clip_coef)
        return 0.5 * torch.max((new - ret) ** 2, (clipped - ret) ** 2).mean()
    return 0.5 * ((new - ret) ** 2).mean()


def reference(
    logits: torch.Tensor, values: torch.Tensor, rows: dict[str, torch.Tensor], cfg: PPOConfig, kickstart: bool
) -> tuple[torch.Tensor, dict[str, float]]:
    """The objective as torch expressions under autograd, as the updates computed it before the core did."""
    m = len(rows["actions"])
    logp_all = torch.log_softmax(logits[:m].masked_fill(~rows["masks"], MASKED_LOGIT), -1)
    new_value = values[:m]
    new_logp, entropy = pick(logp_all, rows["actions"]), entropy_of(logp_all)
    old_logp, weight = rows["log_probs"], None
    if "proximal" in rows:
        old_logp, weight = rows["proximal"], (rows["proximal"] - rows["log_probs"]).exp()
    logratio = new_logp - old_logp
    ratio = logratio.exp()
    adv = rows["advantages"]
    with torch.no_grad():
        terms = {
            "approx_kl": float(approx_kl(ratio, logratio)),
            "clipfrac": float(((ratio - 1.0).abs() > cfg.clip_coef).float().mean()),
            "adv_mean": float(adv.mean()),
            "adv_std": float(adv.std()) if m > 1 else 0.0,
        }
    if cfg.norm_adv and m > 1:
        adv = normalize(adv)
    pg_loss = clipped_surrogate(adv, ratio, cfg.clip_coef, weight)
    v_loss = value_loss(new_value, rows["values"], rows["returns"], cfg.clip_coef if cfg.clip_vloss else None)
    ent = entropy.mean()
    loss = pg_loss - cfg.ent_coef * ent + cfg.vf_coef * v_loss
    terms.update(pg_loss=float(pg_loss.detach()), v_loss=float(v_loss.detach()), entropy=float(ent.detach()))
    if kickstart:
        ok = rows["expert_ok"]
        imitation = -(pick(logp_all, rows["expert"]) * ok).sum() / ok.sum().clamp(min=1.0)
        loss = loss + cfg.kickstart_coef * imitation
        terms["imitation"] = float(imitation.detach())
    terms["loss"] = float(loss.detach())
    return loss, terms


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    m=st.integers(1, 300),
    pad=st.integers(0, 40),
    clip_vloss=st.booleans(),
    norm_adv=st.booleans(),
    proximal=st.booleans(),
    kickstart=st.booleans(),
)
def test_the_core_objective_is_torchs(
    seed: int, m: int, pad: int, clip_vloss: bool, norm_adv: bool, proximal: bool, kickstart: bool
) -> None:
    cfg = PPOConfig(clip_vloss=clip_vloss, norm_adv=norm_adv, kickstart_coef=0.4 if kickstart else 0.0)
    logits, values, rows = minibatch(seed, m, m + pad, 16)
    if not proximal:
        del rows["proximal"]
    got_logits, got_values = logits.clone().requires_grad_(), values.clone().requires_grad_()
    loss, terms = objective(got_logits, got_values, rows, cfg, kickstart)
    loss.backward()  # type: ignore[no-untyped-call]
    ref_logits, ref_values = logits.clone().requires_grad_(), values.clone().requires_grad_()
    ref_loss, ref_terms = reference(ref_logits, ref_values, rows, cfg, kickstart)
    ref_loss.backward()  # type: ignore[no-untyped-call]
    assert float(loss.detach()) == pytest.approx(terms["loss"])
    for k, v in ref_terms.items():
        assert terms[k] == pytest.approx(v, rel=1e-4, abs=1e-5), k
    assert got_logits.grad is not None and ref_logits.grad is not None
    assert got_values.grad is not None and ref_values.grad is not None
    torch.testing.assert_close(got_logits.grad, ref_logits.grad, rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(got_values.grad, ref_values.grad, rtol=1e-3, atol=1e-6)
    # The padding rows and the masked actions take no gradient.
    assert not got_logits.grad[m:].any() and not got_values.grad[m:].any()
    assert not got_logits.grad[:m][~rows["masks"]].any()


def test_a_scaled_backward_scales_the_gradient() -> None:
    logits, values, rows = minibatch(1, 50, 64, 16)
    grads = []
    for scale in (1.0, 3.0):
        x, v = logits.clone().requires_grad_(), values.clone().requires_grad_()
        loss, _ = objective(x, v, rows, PPOConfig())
        (scale * loss).backward()  # type: ignore[no-untyped-call]
        assert x.grad is not None and v.grad is not None
        grads.append((x.grad, v.grad))
    torch.testing.assert_close(grads[1][0], 3 * grads[0][0])
    torch.testing.assert_close(grads[1][1], 3 * grads[0][1])


def test_bad_rows_are_refused_by_name() -> None:
    logits, values, rows = minibatch(2, 8, 8, 16)
    rows["masks"][3] = False
    with pytest.raises(ValueError, match="row 3: its mask allows no action"):
        objective(logits, values, rows, PPOConfig())
    logits, values, rows = minibatch(2, 8, 8, 16)
    rows["masks"][5, rows["actions"][5]] = False
    with pytest.raises(ValueError, match=r"row 5: action \d+ is not one its mask allows"):
        objective(logits, values, rows, PPOConfig())
    with pytest.raises(ValueError, match="masks has shape"):
        grad = np.zeros((8, 16), np.float32)
        _core.ppo_loss(
            logits.numpy(), values.numpy(), rows["masks"][:, :8].numpy(), rows["actions"].numpy(),
            rows["log_probs"].numpy(), None, rows["advantages"].numpy(), rows["returns"].numpy(),
            rows["values"].numpy(), None, None, clip_coef=0.2, value_clip=0.2, norm_adv=True, ent_coef=0.01,
            vf_coef=0.5, kickstart_coef=0.0, grad_logits=grad, grad_values=np.zeros(8, np.float32),
        )  # fmt: skip
