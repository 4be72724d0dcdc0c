"""The speed work's promises that are not speed: the epoch's time split adds up and reaches the
telemetry, `bench/train.py --json` prints the figures the issue names, the collector hands the
learner the buffer's rows without copying them, and the network's functional forward is the
modules' forward bit for bit. (Speed itself lives in bench/train.py, never in a test.)"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, _cli_env
from townlet import load_config
from townlet.sim.settings import PPOConfig
from townlet.telemetry.records import PpoRecord
from townlet.training.envs import TownTrainEnv
from townlet.training.network import MASKED_LOGIT, ConflictAwarePolicy, draw, pick
from townlet.training.ppo import RolloutCollector
from townlet.training.trainer import Trainer, make_policy

POC = REPO_ROOT / "configs/examples/poc_hybrid.yaml"
SPLIT = ("time_env_sec", "time_inference_sec", "time_learn_sec", "time_other_sec")


def test_the_time_split_adds_up_to_the_epoch_and_validates() -> None:
    ppo = PPOConfig(num_envs=1, rollout_ticks=16, hidden=32)
    trainer = Trainer(TownTrainEnv(load_config(POC), 1, 1, None), ppo, seed=1)
    for rec in trainer.run(2).records:
        parts = [rec[k] for k in SPLIT]
        assert all(p >= 0.0 for p in parts), rec
        assert abs(sum(parts) - rec["epoch_duration_sec"]) < 1e-9, rec
        assert rec["time_inference_sec"] <= rec["time_policy_sec"]  # the policy time holds the bookkeeping too
        model = PpoRecord.model_validate({**rec, "log_stream_offset": 0})  # the writer adds the offset
        assert model.time_inference_sec == rec["time_inference_sec"]
        assert model.time_other_sec == rec["time_other_sec"]


@pytest.mark.parametrize("overlap", [False, True])
def test_bench_train_json_prints_the_speed_and_the_split(overlap: bool) -> None:
    argv = [sys.executable, str(REPO_ROOT / "bench/train.py"), "--json", "--epochs", "2", "--num-envs", "1"]
    argv += ["--rollout-ticks", "8", *(["--overlap"] if overlap else [])]
    proc = subprocess.run(argv, env=_cli_env(), capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["agent_steps_per_sec"] > 0 and out["agent_steps"] == 2 * 8 * 9
    assert out["overlap"] is overlap
    assert set(out["time_split"]) == {"env", "inference", "learn", "other"}
    assert abs(sum(out["time_split"].values()) - 1.0) < 1e-6
    assert out["goal_agent_steps_per_sec"] == 2 * out["baseline_agent_steps_per_sec"]
    assert out["goals"] == {"agent_steps_per_sec": {"value": out["goal_agent_steps_per_sec"], "op": ">="}}


def test_collected_rows_are_the_buffer_itself_when_every_agent_lived() -> None:
    env = TownTrainEnv(load_config(POC), 1, 2, None)
    ppo = PPOConfig(num_envs=1, rollout_ticks=8, hidden=32)
    torch.manual_seed(0)
    policy = make_policy(env.metadata(), env.obs_dim, env.n_actions, ppo.hidden)
    collector = RolloutCollector(env, policy, ppo, seed=2)
    data, _ = collector.collect()
    buf_obs = np.asarray(collector.buffer.obs)
    assert np.asarray(collector.buffer.valid).all() and len(data) == 8 * 9
    assert np.shares_memory(data.obs, buf_obs)
    np.testing.assert_array_equal(data.obs, buf_obs.reshape(len(data), -1))


def test_functional_forward_is_the_modules_forward_bit_for_bit() -> None:
    torch.manual_seed(4)
    net = ConflictAwarePolicy((4, 11, 11), 94, 16, 64)
    obs = torch.rand(37, 578)
    mask = torch.rand(37, 16) > 0.3
    maps = obs[:, :484].reshape(-1, 4, 11, 11)
    z = torch.cat([net.map_fc(net.map_encoder(maps)), net.feature_encoder(obs[:, 484:])], dim=-1)
    logits = net.policy_head(net.actor(z)).masked_fill(~mask, -1e8)
    value = net.value_head(net.critic(z)).squeeze(-1)
    got_logits, got_value = net(obs, mask)
    assert torch.equal(got_logits, logits) and torch.equal(got_value, value)
    assert torch.equal(net.trunk(obs), net.actor(z)) and torch.equal(net.critic_trunk(obs), net.critic(z))


def test_draw_follows_the_masked_softmax_and_its_generator() -> None:
    logits = torch.randn(144, 16, generator=torch.Generator().manual_seed(1))
    logits[:, 3] = MASKED_LOGIT  # a masked action: never drawn
    logp_all = torch.log_softmax(logits, -1)
    gen = torch.Generator().manual_seed(7)
    counts = torch.zeros(144, 16)
    draws = 400
    for _ in range(draws):
        actions, logp = draw(logits, gen)
        assert torch.allclose(logp, pick(logp_all, actions), atol=1e-5)
        counts[torch.arange(144), actions] += 1
    assert counts[:, 3].sum() == 0
    # Every row's frequencies against its probabilities: 144 x 400 draws, pooled per action.
    want = logp_all.exp().sum(0) * draws
    assert torch.all((counts.sum(0) - want).abs() <= 5 * want.sqrt() + 1)
    # The same generator state, the same draw; the generator moves on by one key per draw.
    a, b = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(draw(logits, a)[0], draw(logits, b)[0])
    assert torch.equal(a.get_state(), b.get_state())
    assert not torch.equal(draw(logits, a)[0], draw(logits, torch.Generator().manual_seed(9))[0])


def test_acting_with_the_mask_in_the_draw_is_drawing_from_the_masked_logits() -> None:
    """In bfloat16 `act` hands the mask to the draw instead of writing the masked logits (`unmasked`): the same
    actions, log-probabilities and values as drawing from `forward`'s masked logits with the same generator."""
    torch.manual_seed(5)
    net = ConflictAwarePolicy((4, 11, 11), 94, 16, 64)
    obs = torch.rand(72, 578)
    mask = torch.rand(72, 16) > 0.5
    mask[:, 0] = True
    with net.computing_in("bf16", frozen=True):
        assert net.unmasked(obs) is not None
        acted = net.act(obs, mask, generator=torch.Generator().manual_seed(3))
        logits, value = net(obs, mask)
        drawn = draw(logits, torch.Generator().manual_seed(3))
    assert torch.equal(acted[0], drawn[0]) and torch.equal(acted[1], drawn[1]) and torch.equal(acted[2], value)
    assert mask[torch.arange(72), acted[0]].all()
    assert net.unmasked(obs) is None  # float32: `forward` masks as it computes


def test_collected_rows_skip_the_dead_agents_in_order() -> None:
    env = TownTrainEnv(load_config(POC), 1, 3, None)
    ppo = PPOConfig(num_envs=1, rollout_ticks=4, hidden=32)
    collector = RolloutCollector(env, make_policy(env.metadata(), env.obs_dim, env.n_actions, 32), ppo, seed=3)
    rng = np.random.default_rng(0)
    n, d, a = env.num_agents, env.obs_dim, env.n_actions
    valid = rng.random((4, n)) < 0.6  # some agents dead at some ticks: the rows are copied, not viewed
    for t in range(4):
        collector.buffer.add(
            rng.random((n, d), dtype=np.float32), rng.random((n, a)) < 0.5, rng.integers(0, a, n),
            rng.random(n, dtype=np.float32), rng.random(n, dtype=np.float32), rng.random(n, dtype=np.float32),
            np.zeros(n, bool), np.zeros(n, bool), valid[t], np.zeros(n, np.float32),
        )  # fmt: skip
    data = collector._live_rows()
    keep = valid.reshape(-1)
    assert len(data) == int(keep.sum()) < 4 * n
    for name in ("obs", "masks", "actions", "log_probs", "values", "rewards"):
        full = np.asarray(getattr(collector.buffer, name))
        np.testing.assert_array_equal(getattr(data, name), full.reshape(4 * n, *full.shape[2:])[keep])


def test_bench_train_vs_compares_this_tree_with_a_revision_pair_by_pair() -> None:
    argv = [sys.executable, str(REPO_ROOT / "bench/train.py"), "--json", "--vs", "HEAD", "--pairs", "1"]
    argv += ["--epochs", "1", "--num-envs", "1", "--rollout-ticks", "4"]
    proc = subprocess.run(argv, env=_cli_env(), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["ref"] == "HEAD" and len(out["pairs"]) == 1
    pair = out["pairs"][0]
    assert pair["ref"]["agent_steps_per_sec"] > 0 and pair["this"]["agent_steps_per_sec"] > 0
    assert out["median_ratio"] == pair["ratio_agent_steps_per_sec"]
    assert (
        abs(
            pair["ratio_agent_steps_per_sec"] * pair["ref"]["agent_steps_per_sec"] - pair["this"]["agent_steps_per_sec"]
        )
        < 1e-6 * pair["this"]["agent_steps_per_sec"]
    )
    bad = subprocess.run([*argv[:3], "--vs", "no-such-revision"], env=_cli_env(), capture_output=True, text=True,
                         timeout=300, check=False)  # fmt: skip
    assert bad.returncode == 2 and bad.stdout == "" and "no-such-revision" in bad.stderr
