"""`ppo.precision`: the bfloat16 path (the default) computes what the float32 path computes, within
bfloat16's rounding; it is deterministic; float32 is still the float32 computation; the convolution
as per-row products is the convolution; the collector's copies of live rows are the buffer's rows.
(Its speed lives in bench/train.py, its learning in the A/B figures of docs/training.md.)"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from conftest import REPO_ROOT
from townlet import _core, load_config
from townlet.sim.settings import PPOConfig
from townlet.training.envs import TownTrainEnv
from townlet.training.network import ConflictAwarePolicy, MLPPolicy, Scratch
from townlet.training.network_bf16 import (
    _FUSED_LINEAR_RELU,
    ConvAsRows,
    HiddenHeads,
    linear_relu,
    linear_relu_forward,
    relu_grad,
)
from townlet.training.ppo import RolloutCollector
from townlet.training.trainer import Trainer, make_policy

POC = REPO_ROOT / "configs/examples/poc_hybrid.yaml"


def town_like(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Observations shaped as the default town's (a sparse 0/1 map, then features) and masks."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.rand(n, 578, generator=g)
    obs[:, :484] = (torch.rand(n, 484, generator=g) < 0.3).float()
    mask = torch.rand(n, 16, generator=g) < 0.7
    mask[:, 0] = True
    return obs, mask


@pytest.mark.parametrize("shape", [(4, 11, 11), (3, 8, 10), (2, 3, 5), (1, 1, 4)])
def test_conv_as_rows_is_the_convolution(shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(shape[0], 8, 3, stride=2, padding=1)
    rows = ConvAsRows(shape, conv)
    assert conv.bias is not None
    n_features = 3
    obs = torch.randn(5, int(np.prod(shape)) + n_features)
    picked = np.array([4, 0, 2, 2, 1], np.int64)  # a minibatch's rows: any order, repeats allowed
    out = np.full((len(picked), rows.slab_len + n_features), 0xFFFF, np.uint16)  # NaN: every entry must be written
    _core.slab_rows(obs.numpy(), picked, shape, out)
    got = torch.from_numpy(out.view(np.int16)).view(torch.bfloat16)
    # Torch's own conversion, bit for bit, and the features after the slabs.
    exact = obs.to(torch.bfloat16)[picked]
    assert torch.equal(got[:, rows.slab_len :], exact[:, -n_features:])
    maps = exact[:, :-n_features].float()
    slabs = got[:, : rows.slab_len].float().reshape(-1, rows.slab_width)
    y = slabs @ rows.weight(conv.weight).T + conv.bias.repeat(rows.out_cols)
    ref = F.conv2d(maps.view(len(picked), *shape), conv.weight, conv.bias, 2, 1)  # (B, K, rows, cols)
    assert ref.shape[2:] == (rows.out_rows, rows.out_cols)
    # (row, column, channel) order; the next layer's permuted columns read it as the flattened convolution
    n = len(picked)
    torch.testing.assert_close(y.view(n, -1), ref.permute(0, 2, 3, 1).reshape(n, -1), rtol=1e-5, atol=1e-5)
    fc = torch.randn(7, ref[0].numel())
    torch.testing.assert_close(y.view(n, -1) @ rows.permuted_fc(fc).T, ref.flatten(1) @ fc.T, rtol=1e-4, atol=1e-4)
    # Blocks: the same values, every row's slabs first, then every row's features.
    blocks = np.full(out.size, 0xFFFF, np.uint16).reshape(out.shape)
    _core.slab_rows(obs.numpy(), picked, shape, blocks, True)
    flat = blocks.reshape(-1)
    assert np.array_equal(flat[: n * rows.slab_len].reshape(n, -1), out[:, : rows.slab_len])
    assert np.array_equal(flat[n * rows.slab_len :].reshape(n, -1), out[:, rows.slab_len :])


def test_slab_rows_refuses_what_it_cannot_read() -> None:
    obs, out = np.zeros((3, 20), np.float32), np.zeros((2, 2 * 2 * 3 * 3 + 2), np.uint16)  # 2 output rows, 2 features
    _core.slab_rows(obs, np.array([2, 0]), (2, 3, 3), out)
    with pytest.raises(ValueError, match=r"rows\[1\] = 3 is outside the 3 observations"):
        _core.slab_rows(obs, np.array([0, 3]), (2, 3, 3), out)
    with pytest.raises(ValueError, match="out has 37 columns, expected 38"):
        _core.slab_rows(obs, np.array([0, 1]), (2, 3, 3), out[:, :-1].copy())
    with pytest.raises(ValueError, match="fewer than the map's 18"):
        _core.slab_rows(obs[:, :10].copy(), np.array([0]), (2, 3, 3), out[:1])
    with pytest.raises(ValueError, match="C-ordered"):
        _core.slab_rows(np.asfortranarray(obs), np.array([0, 1]), (2, 3, 3), out)


def test_bf16_forward_and_gradients_follow_float32() -> None:
    torch.manual_seed(3)
    net = ConflictAwarePolicy((4, 11, 11), 94, 16, 128)
    obs, mask = town_like(256, 1)
    actions = torch.zeros(256, dtype=torch.long)

    def run(precision: str) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        net.zero_grad()
        with net.computing_in(precision):
            logp, ent, value = net.evaluate(obs, mask, actions)
            (logp.mean() + 0.01 * ent.mean() + (value**2).mean()).backward()  # type: ignore[no-untyped-call]
        return (
            logp.detach(),
            value.detach(),
            {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None},
        )

    logp32, v32, g32 = run("fp32")
    logp16, v16, g16 = run("bf16")
    assert net.precision == "fp32"  # the block restores it
    assert not torch.equal(v16, v32)  # a different computation, not a silent float32 one
    torch.testing.assert_close(logp16, logp32, rtol=0, atol=1e-3)
    torch.testing.assert_close(v16, v32, rtol=0.02, atol=0.02)
    assert set(g16) == set(g32) and all(g.dtype == torch.float32 for g in g16.values())  # float32 master gradients
    for name, g in g32.items():
        rel = float((g16[name] - g).norm() / (g.norm() + 1e-12))
        assert rel < 0.1, (name, rel)


def test_prepared_input_frozen_weights_and_scratch_give_the_same_outputs() -> None:
    torch.manual_seed(5)
    net = ConflictAwarePolicy((4, 11, 11), 94, 16, 64)
    obs, mask = town_like(40, 2)
    with torch.no_grad(), net.computing_in("bf16"):
        logits, value = net(obs, mask)
        scratch = Scratch()
        prepared = net.prepare(obs, scratch)
        assert prepared.dtype == torch.bfloat16
        assert all(torch.equal(a, b) for a, b in zip(net(prepared, mask), (logits, value), strict=True))
        assert torch.equal(net.value(obs), value)
    with torch.inference_mode(), net.computing_in("bf16", frozen=True):
        assert all(torch.equal(a, b) for a, b in zip(net(obs, mask), (logits, value), strict=True))
        with torch.no_grad():
            next(net.parameters()).add_(1.0)  # never inside a frozen block in training; shows the weights are kept
        assert torch.equal(net(obs, mask)[0], logits)
    with torch.no_grad(), net.computing_in("bf16"):
        assert not torch.equal(net(obs, mask)[0], logits)  # derived afresh outside the frozen block


def test_pass_input_blocks_are_the_minibatches_rows() -> None:
    torch.manual_seed(6)
    net = ConflictAwarePolicy((4, 11, 11), 94, 16, 64)
    obs, mask = town_like(40, 3)
    order = torch.tensor([7, 0, 39, 7, 12, 3, 3, 30])  # two minibatches of 4 rows, in a pass's order
    with torch.no_grad(), net.computing_in("bf16"):
        x = net.pass_input(obs, order, 4, Scratch())
        rows = net.prepare(obs, Scratch())
        for i in range(2):
            block, picked = net.block(x, i, 4), order[4 * i : 4 * (i + 1)]
            assert block.dim() == 1 and block.dtype == torch.bfloat16  # the core's blocks layout, flat
            outs, want = net(block, mask[picked]), net(rows[picked], mask[picked])
            assert all(torch.equal(a, b) for a, b in zip(outs, want, strict=True))
    with net.computing_in("fp32"):  # float32 elsewhere: the observations' rows
        x = net.pass_input(obs, order, 4, None)
        assert torch.equal(net.block(x, 1, 4), obs[order[4:]])
        assert torch.equal(net.pass_input(obs, order, 4, Scratch()), obs[order])


def bf16_layer(rows: int, ins: int, outs: int, seed: int) -> tuple[torch.Tensor, ...]:
    """A bfloat16 layer's input, weight and bias (leaves that need gradients) and an output gradient."""
    g = torch.Generator().manual_seed(seed)
    x, w = torch.randn(rows, ins, generator=g), torch.randn(outs, ins, generator=g) / ins**0.5
    b, grad = torch.randn(outs, generator=g), torch.randn(rows, outs, generator=g)
    return tuple(t.to(torch.bfloat16).requires_grad_(i in (0, 1, 2)) for i, t in enumerate((x, w, b, grad)))


@pytest.mark.parametrize("shape", [(13824, 132, 48), (2304, 288, 64), (300, 94, 64), (7, 5, 3)])
def test_linear_relu_is_relu_of_addmm_and_its_backward_autograds(shape: tuple[int, int, int]) -> None:
    x, w, b, grad = bf16_layer(*shape, seed=sum(shape))
    plain = F.relu(torch.addmm(b, x, w.t()))
    with torch.no_grad():
        assert torch.equal(linear_relu_forward(x, w, b), plain)  # the fused kernel (where torch has it), same bits
    out = linear_relu(x, w, b)
    assert torch.equal(out, plain) and out.grad_fn is not None
    # The masked gradient is threshold_backward's, bit for bit; the products and the bias's float32 sums
    # are autograd's up to bfloat16 rounding.
    masked, sums = relu_grad(grad.detach(), out.detach())
    assert torch.equal(masked, torch.ops.aten.threshold_backward(grad.detach(), out.detach(), 0))
    exact = masked.double().sum(0)  # float32 sums rounded to bfloat16: within bfloat16's step of the exact sum
    torch.testing.assert_close(sums.double(), exact, rtol=2**-7, atol=1e-2)
    got = torch.autograd.grad(out, (x, w, b), grad)
    ref = torch.autograd.grad(plain, (x, w, b), grad)
    for a, r in zip(got, ref, strict=True):
        torch.testing.assert_close(a.float(), r.float(), rtol=0.02, atol=0.02 * float(r.float().abs().max()))


def test_the_fused_kernel_is_what_runs_here() -> None:
    # On the x86-64 Linux wheels this project pins, torch has oneDNN's fused product; elsewhere
    # `linear_relu_forward` falls back to relu(addmm), the same bits.
    if torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        assert _FUSED_LINEAR_RELU is not None


def test_heads_are_autograds() -> None:
    # The core's heads: the same outputs as torch's products up to float32 rounding (each sum a fixed order of fused
    # multiply-adds), the gradients autograd's up to bfloat16 rounding.
    z, hidden, hidden_bias, _ = bf16_layer(600, 128, 256, seed=9)
    g = torch.Generator().manual_seed(10)
    policy, policy_bias = torch.randn(16, 128, generator=g) * 0.1, torch.randn(16, generator=g)
    value, value_bias = torch.randn(1, 128, generator=g) * 0.1, torch.randn(1, generator=g)
    params = (z, hidden, hidden_bias, policy.requires_grad_(), policy_bias.requires_grad_())
    params += (value.requires_grad_(), value_bias.requires_grad_())
    g_logits, g_values = torch.randn(600, 16, generator=g), torch.randn(600, generator=g)
    logits, values = HiddenHeads.apply(*params)
    h = F.relu(torch.addmm(hidden_bias, z, hidden.t())).float()
    ref_logits = torch.addmm(policy_bias, h[:, :128], policy.t())
    ref_values = torch.addmm(value_bias, h[:, 128:], value.t()).squeeze(-1)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(values, ref_values, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # the collector's path: the same function, the same bits
        again = HiddenHeads.outputs(*params)
    assert torch.equal(again[0], logits) and torch.equal(again[1], values)
    got = torch.autograd.grad((logits, values), params, (g_logits, g_values))
    ref = torch.autograd.grad((ref_logits, ref_values), params, (g_logits, g_values))
    for a, r in zip(got, ref, strict=True):
        assert a.dtype == r.dtype and a.shape == r.shape
        torch.testing.assert_close(a.float(), r.float(), rtol=0.02, atol=0.02 * float(r.float().abs().max()))
    # The heads' own weights' gradients are float32 sums of float32 products: close to autograd's.
    for a, r in zip(got[3:], ref[3:], strict=True):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-4)


def test_relu_backward_refuses_what_it_cannot_read() -> None:
    with pytest.raises(TypeError, match="bfloat16 words"):
        relu_grad(torch.ones(2, 3), torch.ones(2, 3))
    out, dst, sums = np.zeros((4, 3), np.uint16), np.zeros((4, 3), np.uint16), np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=r"grad has shape \[4, 2\], expected \[4, 3\]"):
        _core.relu_backward(np.zeros((4, 2), np.uint16), out, dst, sums)
    with pytest.raises(ValueError, match="col_sums has 2 elements, expected 3"):
        _core.relu_backward(out, out, dst, sums[:2].copy())
    with pytest.raises(ValueError, match="grad must be C-contiguous"):
        _core.relu_backward(np.asfortranarray(out), out, dst, sums)
    h, policy, value = np.zeros((4, 6), np.uint16), np.zeros((2, 3), np.float32), np.zeros((1, 3), np.float32)
    logits, values = np.zeros((4, 2), np.float32), np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=r"policy has shape \[2, 2\], expected \[2, 3\]"):
        _core.heads_forward(h, policy[:, :2].copy(), np.zeros(2, np.float32), value, np.zeros(1, np.float32),
                            logits, values)  # fmt: skip
    with pytest.raises(ValueError, match=r"policy has shape \[1, 6\], expected \[2, 3\]"):
        _core.heads_forward(h, policy.reshape(1, 6), np.zeros(2, np.float32), value, np.zeros(1, np.float32),
                            logits, values)  # fmt: skip
    with pytest.raises(ValueError, match=r"h has shape \[3, 6\], expected \[4, 6\]"):
        _core.heads_forward(h[:3], policy, np.zeros(2, np.float32), value, np.zeros(1, np.float32), logits, values)
    with pytest.raises(ValueError, match="h must be C-contiguous"):
        _core.heads_forward(np.asfortranarray(h), policy, np.zeros(2, np.float32), value, np.zeros(1, np.float32),
                            logits, values)  # fmt: skip
    with pytest.raises(ValueError, match="value_bias has 2 elements, expected 1"):
        _core.heads_forward(h, policy, np.zeros(2, np.float32), value, np.zeros(2, np.float32), logits, values)
    with pytest.raises(ValueError, match=r"g_logits has shape \[4, 3\], expected \[4, 2\]"):
        _core.heads_backward(
            np.zeros((4, 3), np.float32), values, h, policy, value, h.copy(), np.zeros(6, np.float32),
            policy.copy(), np.zeros(2, np.float32), value.copy(), np.zeros(1, np.float32),
        )  # fmt: skip


def test_precision_is_validated_and_the_mlp_stays_float32() -> None:
    with pytest.raises(ValidationError):
        PPOConfig(precision="fp16")
    net = MLPPolicy(4, 2, 16)
    obs, mask = torch.randn(3, 4), torch.ones(3, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match="unknown precision"), net.computing_in("half"):
        pass
    with net.computing_in("bf16"):
        got = net(obs, mask)
    assert all(torch.equal(a, b) for a, b in zip(got, net(obs, mask), strict=True))


def trained(precision: str, seed: int = 5) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor]]:
    cfg = load_config(POC)
    ppo = PPOConfig(num_envs=2, rollout_ticks=16, hidden=32, precision=precision)
    trainer = Trainer(TownTrainEnv(cfg, ppo.num_envs, seed, None), ppo, seed=seed)
    records = trainer.run(2).records
    untimed = [
        {k: v for k, v in r.items() if not k.startswith("time_") and k not in ("sps", "epoch_duration_sec")}
        for r in records
    ]
    return untimed, trainer.policy.state_dict()


def test_bf16_training_is_deterministic_and_not_float32() -> None:
    rec_a, w_a = trained("bf16")
    rec_b, w_b = trained("bf16")
    assert rec_a == rec_b and all(torch.equal(w_a[k], w_b[k]) for k in w_a)
    rec_f, w_f = trained("fp32")
    assert rec_f != rec_a and not all(torch.equal(w_a[k], w_f[k]) for k in w_a)
    # Close, though: the same initial weights, the same first rollout's actions almost everywhere.
    for k in w_a:
        assert float((w_a[k] - w_f[k]).abs().max()) < 0.05, k


def test_live_rows_are_copied_from_the_buffer_rows_of_live_agents() -> None:
    env = TownTrainEnv(load_config(POC), 1, 2, None)
    ppo = PPOConfig(num_envs=1, rollout_ticks=6, hidden=32)
    torch.manual_seed(0)
    collector = RolloutCollector(env, make_policy(env.metadata(), env.obs_dim, env.n_actions, 32), ppo, seed=2)
    collector.collect()
    valid = np.asarray(collector.buffer.valid)
    valid[1, 3] = valid[4, 0] = False  # as if those agents had been dead
    keep = valid.reshape(-1)
    for _ in range(2):  # the second time into the arrays kept from the first
        data = collector._live_rows()
        assert len(data) == 6 * 9 - 2
        buf_obs = np.asarray(collector.buffer.obs).reshape(6 * 9, -1)
        assert not np.shares_memory(data.obs, buf_obs)
        np.testing.assert_array_equal(data.obs, buf_obs[keep])
        np.testing.assert_array_equal(data.actions, np.asarray(collector.buffer.actions).reshape(-1)[keep])
        np.testing.assert_array_equal(data.advantages, np.asarray(collector.buffer.advantages).reshape(-1)[keep])
