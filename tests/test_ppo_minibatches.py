"""How the PPO update cuts an epoch's rows (`training.ppo.minibatches`): `num_minibatches` minibatches of
near-equal size whatever the row count, the network computing on a whole number of `ROW_QUANTUM` rows, and the
rows it computes past a minibatch's own leaving the update as it was."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from conftest import REPO_ROOT
from townlet.sim.config import load_config
from townlet.sim.settings import PPOConfig
from townlet.training import ppo
from townlet.training.envs import TownTrainEnv
from townlet.training.network import Scratch
from townlet.training.optim import adam
from townlet.training.ppo import Dataset, minibatches, ppo_update
from townlet.training.ppo_loss import UpdateStats
from townlet.training.ppo_rows import block_logits, pass_order, proximal_outputs
from townlet.training.trainer import Trainer

POC = "configs/examples/poc_hybrid.yaml"


@given(st.integers(1, 20_000), st.integers(1, 64))
def test_minibatches_cover_the_rows_in_near_equal_parts(n: int, count: int) -> None:
    sizes, width = minibatches(n, count)
    assert sum(sizes) == n and len(sizes) == min(n, count)
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
    assert width % ppo.ROW_QUANTUM == 0 and max(sizes) <= width < max(sizes) + ppo.ROW_QUANTUM


def rows_and_trainer(precision: str) -> tuple[Dataset, Trainer]:
    cfg = PPOConfig(num_envs=2, rollout_ticks=64, hidden=32, precision=precision)
    trainer = Trainer(TownTrainEnv(load_config(REPO_ROOT / POC), 2, 3, None), cfg, seed=3)
    assert trainer.collector is not None
    data, _ = trainer.collector.collect()
    # 1,001 rows: 4 minibatches of 250 or 251, each computed on 256 rows (5 or 6 beyond its own).
    keep = slice(0, 1001)
    fields = {f.name: getattr(data, f.name) for f in dataclasses.fields(data)}
    cut = {k: (v[keep].copy() if v is not None else None) for k, v in fields.items()}
    return Dataset(**cut), trainer


def update(trainer: Trainer, data: Dataset) -> tuple[dict[str, torch.Tensor], UpdateStats]:
    policy = copy.deepcopy(trainer.policy)
    optimizer = adam(policy.parameters(), trainer.cfg.learning_rate, eps=1e-5)
    stats = ppo_update(policy, optimizer, data, trainer.cfg, np.random.default_rng(7))
    return policy.state_dict(), stats


def figures(stats: UpdateStats) -> dict[str, Any]:
    return {k: getattr(stats, k) for k in ("pg_losses", "v_losses", "entropies", "kls", "grad_norms")}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_rows_computed_past_a_minibatch_change_nothing(precision: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same update, to rounding, as the network computing on each minibatch's own rows only; with every
    minibatch a whole step (no remainder minibatch of a row or two)."""
    data, trainer = rows_and_trainer(precision)
    assert len(data) == 1001
    padded, padded_stats = update(trainer, data)
    monkeypatch.setattr(ppo, "ROW_QUANTUM", 1)
    own, own_stats = update(trainer, data)
    assert padded_stats.updates == own_stats.updates == trainer.cfg.update_epochs * trainer.cfg.num_minibatches
    tol = 1e-4 if precision == "fp32" else 2e-2
    for name, values in figures(own_stats).items():
        np.testing.assert_allclose(figures(padded_stats)[name], values, rtol=tol, atol=tol * 1e-2, err_msg=name)
    for k in own:
        torch.testing.assert_close(padded[k], own[k], rtol=tol, atol=tol * 1e-2, msg=k)
    # The update moved the weights (so the equality above is not of two untouched policies).
    assert not all(torch.equal(own[k], trainer.policy.state_dict()[k]) for k in own)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_proximal_pass_hands_the_first_minibatch_its_own_forward(precision: str) -> None:
    """Collecting ahead, the proximal pass computes the first pass's minibatches under the update's starting
    weights, the first with gradients recorded, which the first pass then takes instead of computing it again: those
    outputs are the first minibatch's own forward to the bit, and every row's log-probability and value are those of
    the pass without gradients."""
    data, trainer = rows_and_trainer(precision)
    policy, n = trainer.policy, len(data)
    sizes, width = minibatches(n, trainer.cfg.num_minibatches)
    obs, masks, actions = (torch.from_numpy(np.ascontiguousarray(a)) for a in (data.obs, data.masks, data.actions))
    order = torch.from_numpy(pass_order(np.random.default_rng(7).permutation(n), sizes, width))
    assert len(order) == len(sizes) * width > n  # padded minibatches (1,001 rows, 4 of 256)
    with policy.computing_in(precision):
        x = policy.pass_input(obs, order, width, Scratch())
        logp, values, first = proximal_outputs(policy, x, masks, actions, order, sizes, width)
        assert first[0].requires_grad and first[1].requires_grad
        again = block_logits(policy, x, masks, order, 0, width)
        assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
        with torch.no_grad():
            plain_logp, plain_values, _ = proximal_outputs(policy, x, masks, actions, order, sizes, width)
    assert torch.equal(logp, plain_logp) and torch.equal(values, plain_values)
    assert torch.isfinite(logp).all() and (logp <= 0).all()
