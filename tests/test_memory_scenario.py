"""The memory scenario and the memory agents' bfloat16 (issue 17): the scenario's agents see their
observation one tick in four (zeros but `ctx_reset` between glimpses, the whole mask always, no
request cooldown in it);
`ppo.precision: bf16` computes what fp32 computes within bfloat16's rounding, fp32 is the float32
module computation, and recurrent PPO trains deterministically in either. Real torch, real towns."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT
from townlet import load_config
from townlet.sim.settings import MemoryConfig, MemorySection, PPOConfig
from townlet.training.envs import TownTrainEnv
from townlet.training.network import MASKED_LOGIT
from townlet.training.network_memory import MemoryPolicy, make_memory_policy
from townlet.training.ppo_recurrent_trainer import MemoryTrainer

SCENARIO = REPO_ROOT / "configs/scenarios/memory_glimpse.yaml"
POC = REPO_ROOT / "configs/examples/poc_hybrid.yaml"
ARCHS = ("lstm", "gru", "attention")


def test_the_scenario_shows_a_glimpse_one_tick_in_four_and_the_whole_mask_always() -> None:
    config = load_config(SCENARIO)
    env = TownTrainEnv(config, 2, 0, 360)
    meta = env.metadata()
    assert list(meta["map_shape"]) == [4, 5, 5]
    ctx = int(np.prod(meta["map_shape"])) + list(meta["feature_names"]).index("ctx_reset")
    obs, masks, _ = env.reset(0)
    rng = np.random.default_rng(0)
    for tick in range(12):
        if tick % 4:
            assert not np.delete(obs, ctx, axis=1).any(), f"tick {tick} shows more than ctx_reset"
        else:
            assert (np.abs(obs).sum(axis=1) > 1).all(), f"tick {tick} is a glimpse"
        assert masks[:, 0].all() and (masks.sum(axis=1) > 1).all()  # the mask is whole: moves, uses
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in masks], np.int64)
        b = env.step(actions)
        obs, masks = b.obs, b.masks


def eat_mask_over_time(path: Path) -> list[bool]:
    """Whether `use:eat_meal` is allowed to every agent, tick after tick, while every agent keeps choosing it."""
    env = TownTrainEnv(load_config(path), 1, 0, 360)
    eat = list(env.metadata()["action_names"]).index("use:eat_meal")
    _, masks, _ = env.reset(0)
    allowed = []
    for _ in range(60):
        allowed.append(bool(masks[:, eat].all()))
        masks = env.step(np.full(len(masks), eat, np.int64)).masks
    return allowed


def test_the_scenario_mask_keeps_no_history_of_a_meal(tmp_path: Path) -> None:
    """No request cooldown in the scenario: after a meal the fridge's `use:` stays allowed, so the mask
    says nothing about what an agent did (with the default 60-tick cooldown it is masked after the meal)."""
    assert all(eat_mask_over_time(SCENARIO))
    with_cooldown = tmp_path / "cooldown.yaml"
    with_cooldown.write_text(SCENARIO.read_text().replace("{cooldown_ticks: 0}", "{cooldown_ticks: 60}"))
    assert not all(eat_mask_over_time(with_cooldown))


def policy(arch: str, seed: int = 0) -> MemoryPolicy:
    """A memory policy for the default town with every zero-initialised output made non-zero (so the
    core's path counts)."""
    env = TownTrainEnv(load_config(POC), 1, 0, 1440)
    torch.manual_seed(seed)
    net = make_memory_policy(arch, env.metadata(), env.n_actions, 64, 4)
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():
                p.normal_(0.0, 0.05)
    return net


def batch(net: MemoryPolicy, b: int, length: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(1)
    obs = torch.rand(b, length, net.obs_dim, generator=g)
    obs[..., : net.map_len] = (obs[..., : net.map_len] < 0.3).float()
    mask = torch.rand(b, length, net.n_actions, generator=g) < 0.7
    mask[..., 0] = True
    starts = torch.zeros(b, length, dtype=torch.bool)
    starts[0, 2] = True
    actions = torch.zeros(b, length, dtype=torch.long)
    return obs, mask, net.initial_state(b), starts, actions


@pytest.mark.parametrize("arch", ARCHS)
def test_bf16_memory_follows_fp32_and_fp32_is_the_module_computation(arch: str) -> None:
    net = policy(arch)
    obs, mask, state, starts, actions = batch(net, 6, 5)

    def run(precision: str) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        net.zero_grad()
        with net.computing_in(precision):
            logp, ent, value = net.evaluate_sequence(obs, mask, actions, state, starts)
            (logp.mean() + 0.01 * ent.mean() + (value**2).mean()).backward()  # type: ignore[no-untyped-call]
        grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
        return logp.detach(), value.detach(), grads

    logp32, v32, g32 = run("fp32")
    logp16, v16, g16 = run("bf16")
    assert net.precision == "fp32"
    assert not torch.equal(v16, v32)  # a different computation, not a silent float32 one
    torch.testing.assert_close(logp16, logp32, rtol=0.05, atol=0.05)
    torch.testing.assert_close(v16, v32, rtol=0.05, atol=0.05)
    assert g16.keys() == g32.keys()
    for name, g in g32.items():
        cos = torch.nn.functional.cosine_similarity(g16[name].flatten(), g.flatten(), dim=0)
        assert cos > 0.95 or g.abs().max() < 1e-6, (name, float(cos))
    # fp32: the modules as they are (the encoder, the core, then the actor/critic layers and heads).
    with torch.no_grad():
        z = net.encode(obs.reshape(-1, net.obs_dim)).view(6, 5, -1)
        h, _ = net.core(z, state, starts)
        logits = net.policy_head(net.actor(h)).masked_fill(~mask, MASKED_LOGIT)
        ref = torch.log_softmax(logits, -1).gather(-1, actions[..., None]).squeeze(-1)
        assert torch.equal(logp32, ref) and torch.equal(v32, net.value_head(net.critic(h)).squeeze(-1))


def train_hash(arch: str, precision: str) -> str:
    config = load_config(SCENARIO)
    ppo = PPOConfig(num_envs=1, rollout_ticks=16, episode_ticks=20, num_minibatches=2, precision=precision)
    env = TownTrainEnv(config, 1, 5, 20)
    mem = MemoryConfig.of(ppo, MemorySection(arch=arch, seq_len=4, context=4))
    torch.manual_seed(5)
    net = make_memory_policy(arch, env.metadata(), env.n_actions, 32, 4)
    MemoryTrainer(env, mem, seed=5, policy=net).run(2)
    digest = hashlib.sha256()
    for tensor in net.state_dict().values():
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("arch", ["lstm", "attention"])
def test_recurrent_ppo_in_bf16_is_deterministic_and_differs_from_fp32(arch: str) -> None:
    first = train_hash(arch, "bf16")
    assert train_hash(arch, "bf16") == first
    assert train_hash(arch, "fp32") != first
