"""Memory policies (issue 17): recurrent PPO's memory resets and sequences, the warm-start mapping
from the ppo checkpoint, the memory phase's checkpoints, resume and determinism. Real torch on a
small town (one town of the default config, a few ticks)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, WriteConfig, assert_one_line_error, run_cli
from townlet.artifacts.checkpoint import save_checkpoint
from townlet.sim.config import load_config
from townlet.sim.settings import MemoryConfig
from townlet.training.envs import Batch, TownTrainEnv
from townlet.training.network_memory import ENCODER_PREFIXES, MemoryPolicy, make_memory_policy
from townlet.training.phases.memory import MEMORY
from townlet.training.policy import CheckpointPolicy
from townlet.training.ppo_recurrent import RecurrentCollector
from townlet.training.ppo_recurrent_trainer import MemoryTrainer
from townlet.training.run import TrainRequest, plan, run

ARCHS = ("lstm", "gru", "attention")
SMALL = {"num_envs": 1, "rollout_ticks": 12, "num_minibatches": 2, "update_epochs": 2, "hidden": 16, "episode_ticks": 5}


def small(data: dict[str, Any]) -> None:
    data.setdefault("ppo", {}).update(SMALL)
    data.setdefault("training", {})["memory"] = {"seq_len": 4, "context": 4}


@pytest.fixture
def config_path(write_config: WriteConfig) -> Path:
    return write_config(small)


def setup(config_path: Path, arch: str, seed: int = 3) -> tuple[MemoryConfig, TownTrainEnv, MemoryPolicy]:
    config = load_config(config_path)
    cfg = MemoryConfig.model_validate({**MEMORY.section(config).model_dump(), "arch": arch})
    env = TownTrainEnv(config, cfg.num_envs, seed, cfg.episode_ticks)
    torch.manual_seed(seed)
    meta = env.metadata()
    return cfg, env, make_memory_policy(arch, meta, env.n_actions, cfg.hidden, cfg.context)


def recording(policy: MemoryPolicy) -> list[torch.Tensor]:
    """Record the memory every tick acts on."""
    seen: list[torch.Tensor] = []
    act = policy.act_step

    def wrapped(obs: torch.Tensor, mask: torch.Tensor, state: torch.Tensor, gen: Any = None) -> Any:
        seen.append(state.clone())
        return act(obs, mask, state, gen)

    policy.act_step = wrapped  # type: ignore[method-assign,assignment]
    return seen


@pytest.mark.parametrize("arch", ["lstm", "attention"])
def test_memory_resets_at_episode_end_and_sequences_replay_from_their_initial_state(
    config_path: Path, arch: str
) -> None:
    cfg, env, policy = setup(config_path, arch)
    with torch.no_grad():  # a core that remembers (a fresh one adds nothing to the encoding)
        for p in policy.core.parameters():
            p.add_(0.3 * torch.randn_like(p))
    collector = RecurrentCollector(env, policy, cfg, seed=3)
    seen = recording(policy)
    rows, seqs, _ = collector.collect()
    t_len, n, seq_len = cfg.rollout_ticks, env.num_agents, cfg.seq_len
    starts = seqs.starts.view(-1, n, seq_len).transpose(1, 2).reshape(-1, n)[:t_len]  # back to (T, N)
    # Episodes of 5 ticks: the memory starts afresh at ticks 0, 5 and 10, and only there (no agent dies here).
    assert [t for t in range(t_len) if starts[t].all()] == [0, 5, 10]
    assert not starts[[t for t in range(t_len) if t not in (0, 5, 10)]].any()
    for t in range(t_len):
        assert bool((seen[t][starts[t]] == 0).all()), t  # a reset memory is the initial one
        if t and not starts[t].any():
            assert bool((seen[t] != 0).any()), t  # a remembering memory otherwise
    # Each sequence (chunk c, slot i) starts from the memory tick c * L acted on.
    for c in range(-(-t_len // seq_len)):
        for i in range(n):
            assert torch.equal(seqs.initial_state[c * n + i], seen[c * seq_len][i])
    # Replaying every sequence from its initial state gives the rollout's log-probabilities and values
    # (computing in the rollout's precision, as the update does).
    with torch.no_grad(), policy.computing_in(cfg.precision):
        logp, _, value = policy.evaluate_sequence(seqs.obs, seqs.masks, seqs.actions, seqs.initial_state, seqs.starts)
    live = seqs.valid
    assert int(live.sum()) == len(rows)
    torch.testing.assert_close(logp[live], seqs.log_probs[live], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(value[live], seqs.values[live], atol=1e-5, rtol=1e-5)
    # ... in any order and grouping (the update's shuffled minibatches).
    idx = torch.tensor([5, 0, 3])
    with torch.no_grad(), policy.computing_in(cfg.precision):
        sub = policy.evaluate_sequence(seqs.obs[idx], seqs.masks[idx], seqs.actions[idx], seqs.initial_state[idx],
                                       seqs.starts[idx])[0]  # fmt: skip
    torch.testing.assert_close(sub, logp[idx], atol=1e-6, rtol=1e-6)


def test_memory_resets_on_respawn_and_ctx_reset(config_path: Path) -> None:
    cfg, env, policy = setup(config_path, "gru")
    collector = RecurrentCollector(env, policy, cfg, seed=3)
    n = env.num_agents
    assert collector.ctx_col is not None
    obs = np.zeros((n, env.obs_dim), np.float32)
    no = np.zeros(n, np.bool_)
    alive = np.ones(n, np.bool_)
    collector.alive = alive.copy()
    collector.alive[2] = False  # slot 2 was dead
    obs[4, collector.ctx_col] = 1.0  # the core flags a new context in slot 4
    b = Batch(obs, np.ones((n, env.n_actions), np.bool_), np.zeros(n, np.float32), no, no, obs, alive)
    assert np.flatnonzero(collector.resets(b)).tolist() == [2, 4]


def test_each_arch_trains_with_finite_losses(config_path: Path) -> None:
    for arch in ARCHS:
        cfg, env, policy = setup(config_path, arch)
        result = MemoryTrainer(env, cfg, seed=3, policy=policy).run(2)
        assert [r["arch"] for r in result.records] == [arch, arch]
        for rec in result.records:
            assert rec["updates"] > 0 and math.isfinite(rec["loss_total"]), (arch, rec)
            assert math.isfinite(rec["loss_value"]) and math.isfinite(rec["loss_policy"]), (arch, rec)


def request(config: Path, arch: str, epochs: int, **kw: Any) -> TrainRequest:
    return TrainRequest(config=config, mode="memory", epochs=epochs, overrides={"arch": arch}, **kw)


def weights(path: Path) -> tuple[Any, Any, Any]:
    header = json.loads(path.read_text())
    data = dict(header["training"]["data"])
    return header["weights"], header.get("training_weights"), data


def test_warm_start_maps_exactly_the_ppo_tensors_and_records_them(config_path: Path) -> None:
    ppo_plan = plan(TrainRequest(config=config_path, mode="rollout", epochs=1))
    run(ppo_plan)
    the_plan = plan(request(config_path, "lstm", 1))
    assert the_plan.warm.inherited_from == "ppo" and not the_plan.warm.resume
    assert the_plan.checkpoint == Path("logs/poc_hybrid_v1/memory/checkpoints/lstm_agent_latest.json")
    source = the_plan.warm.check.checkpoint.state  # type: ignore[union-attr]
    policy, lineage = MEMORY.build(the_plan)
    mapping = lineage["warm_start"]
    own = policy.state_dict()
    expected = sorted(k for k in own if not k.startswith("core."))
    assert sorted(mapping["carried"]) == expected and mapping["mismatched"] == []
    assert {k for k in own if k.startswith(ENCODER_PREFIXES)} <= set(mapping["carried"])
    assert sorted(mapping["fresh"]) == sorted(k for k in own if k.startswith("core."))
    for name in mapping["carried"]:
        assert own[name].numpy().tobytes() == source[name].numpy().tobytes(), name
    torch.manual_seed(the_plan.seed)  # the fresh tensors are those of a fresh policy
    fresh = make_memory_policy("lstm", the_plan.meta, len(the_plan.meta["action_names"]), 16, 4).state_dict()
    for name in mapping["fresh"]:
        assert torch.equal(own[name], fresh[name]), name
    # The memory agent starts as the agent it inherits (a fresh core adds nothing).
    obs = torch.rand(4, policy.obs_dim)
    mask = torch.ones(4, policy.n_actions, dtype=torch.bool)
    ff = the_plan.warm.check.checkpoint.policy()  # type: ignore[union-attr]
    torch.testing.assert_close(policy(obs, mask)[0], ff(obs, mask)[0])
    out = run(the_plan)
    header = json.loads(Path(str(out.checkpoint)).read_text())
    assert header["lineage"]["warm_start"]["carried"] == mapping["carried"]
    assert header["lineage"]["warm_start"]["source_sha256"] == the_plan.warm.check.checkpoint.sha256  # type: ignore[union-attr]
    assert header["architecture"]["architecture"] == "lstm" and header["metadata"]["arch"] == "lstm"


def test_resume_is_identical_and_the_same_seed_gives_the_same_checkpoint(config_path: Path, tmp_path: Path) -> None:
    a, c = tmp_path / "a.json", tmp_path / "c.json"
    run(plan(request(config_path, "attention", 3, checkpoint=a, fresh=True)))
    # Determinism: the same config and seed give the same weights and training state, byte for byte.
    s1, s2 = tmp_path / "s1.safetensors", tmp_path / "s2.safetensors"
    for path in (s1, s2):
        run(plan(request(config_path, "attention", 3, checkpoint=path, fresh=True)))
    assert s1.read_bytes() == s2.read_bytes()
    assert json.loads(s1.with_suffix(".json").read_text())["training"]["tensors"]["memory/state"] == [9, 4 * 16 + 4]

    def interrupt(rec: dict[str, Any]) -> None:
        if rec["epoch"] == 3:  # killed after epoch 2's checkpoint
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(
            plan(request(config_path, "attention", 3, checkpoint=c, fresh=True, checkpoint_every=2)), on_epoch=interrupt
        )
    assert json.loads(c.read_text())["counters"]["epochs"] == 2
    resumed = plan(request(config_path, "attention", 3, checkpoint=c, warm_start_load=c))
    assert resumed.warm.resume
    out = run(resumed)
    assert out.start_epoch == 2
    w_a, t_a, d_a = weights(a)
    w_c, t_c, d_c = weights(c)
    assert w_a == w_c and t_a == t_c
    assert d_a == d_c


def test_make_train_writes_the_named_checkpoint_and_a_shape_mismatch_is_refused(config_path: Path) -> None:
    # The repository's Makefile run in this scratch directory (its virtual environment as built).
    venv = REPO_ROOT / ".venv"
    res = subprocess.run(
        ["make", "-s", "-f", str(REPO_ROOT / "Makefile"), "-o", str(venv / ".ext-stamp"), "train", f"VENV={venv}",
         "PHASE=memory", "ARCH=gru", f"CONFIG={config_path}", "EPOCHS=1", "TRAIN_LOG=train.jsonl"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    latest = Path("logs/poc_hybrid_v1/memory/checkpoints/gru_agent_latest.json")
    assert f"checkpoint {latest}" in res.stdout
    header = json.loads(latest.read_text())
    assert header["architecture"]["architecture"] == "gru" and header["metadata"]["phase"] == "memory"
    assert json.loads(Path("train.jsonl").read_text().splitlines()[0])["arch"] == "gru"
    # A ppo checkpoint whose encoders have other shapes: refused in one line, before anything is trained.
    run(plan(TrainRequest(config=config_path, mode="rollout", epochs=1, overrides={"hidden": 32})))
    ppo_ck = Path("logs/poc_hybrid_v1/ppo/checkpoints/ppo_latest.json")
    res2 = run_cli("train", config_path, "--mode", "memory", "--arch", "gru", "--epochs", "1", "--dry-run")
    assert_one_line_error(res2, str(ppo_ck), "cannot warm start the gru policy", "map_fc.0.weight", "allow_mismatch")
    # Overridden: those tensors start fresh, and the lineage says which.
    out = run(plan(request(config_path, "gru", 1, allow_mismatch=True, checkpoint=Path("forced.json"))))
    mapping = json.loads(Path(str(out.checkpoint)).read_text())["lineage"]["warm_start"]
    assert "map_fc.0.weight" in mapping["fresh"] and "map_encoder.0.weight" in mapping["carried"]
    assert any(m.startswith("map_fc.0.weight [16, ") for m in mapping["mismatched"])


def test_training_mode_memory_selects_the_memory_phase_and_its_arch(write_config: WriteConfig) -> None:
    def mode_memory(data: dict[str, Any]) -> None:
        small(data)
        data["training"].update(mode="memory", memory={"arch": "attention", "context": 3})

    the_plan = plan(TrainRequest(config=write_config(mode_memory)))
    assert the_plan.phase == "memory" and isinstance(the_plan.section, MemoryConfig)
    assert the_plan.section.arch == "attention" and the_plan.section.context == 3
    assert the_plan.checkpoint == Path("logs/poc_hybrid_v1/memory/checkpoints/attention_agent_latest.json")
    assert the_plan.section.warm_start.best() == "logs/poc_hybrid_v1/memory/checkpoints/attention_agent_best.json"


def test_a_memory_checkpoint_acts_with_its_memory_tick_by_tick(config_path: Path, tmp_path: Path) -> None:
    """`sim run --policy`, capture and evaluation act through `CheckpointPolicy`/`forward`: the policy keeps
    each slot's memory from tick to tick and forgets it where `ctx_reset` is set (here: each new episode)."""
    _, env, policy = setup(config_path, "gru")
    with torch.no_grad():
        for p in policy.core.parameters():
            p.add_(0.3 * torch.randn_like(p))
    path = save_checkpoint(tmp_path / "gru.json", policy, obs_meta=env.metadata(), config=None, seed=0, counters={})
    acting = CheckpointPolicy(path, deterministic=True)
    assert isinstance(acting.net, MemoryPolicy) and acting.net.ctx_reset_col == policy.ctx_reset_col
    col = policy.ctx_reset_col
    assert col is not None
    obs, masks, _ = env.reset(0)
    state = policy.initial_state(env.num_agents)
    remembered = 0
    with torch.no_grad():
        for _ in range(8):  # episodes of 5 ticks: one reset on the way
            actions, _, values = acting(obs, masks)
            o, m = torch.from_numpy(obs.copy()), torch.from_numpy(masks.copy())
            state = state * (o[:, col] <= 0.5).float()[:, None]
            logits, value, state = policy.step(o, m, state)
            assert np.array_equal(actions, logits.argmax(-1).numpy()) and np.allclose(values, value.numpy(), atol=1e-6)
            memoryless = policy.step(o, m, policy.initial_state(env.num_agents))[1]
            remembered += int(not torch.allclose(memoryless, value, atol=1e-6))
            b = env.step(actions)
            obs, masks = b.obs.copy(), b.masks.copy()
    assert remembered >= 5  # every tick but the two that start an episode acted on a memory


def test_learn_memory_bench_prints_the_issue_keys() -> None:
    """The interface the checks read (the figures themselves are the bench's, not a test's)."""
    argv = [sys.executable, str(REPO_ROOT / "bench/learn_memory.py"), "--json", "--epochs", "1", "--seeds", "0", "3",
            "--num-envs", "1", "--rollout-ticks", "8"]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["scenario"].endswith("configs/scenarios/memory_glimpse.yaml")
    assert out["budget"]["kind"] == "epochs" and out["budget"]["amount"] == 1  # equal epochs: equal agent-steps
    for block in ("default_town", "memory_scenario"):
        for agent in ("mlp", "lstm", "gru", "attention"):
            returns = out[block][agent]
            assert len(returns) == 2 and all(math.isfinite(r) for r in returns), (block, agent)
            assert out[block]["agent_steps_per_s"][agent] > 0
            assert out[block]["epochs"][agent] == [1, 1]
    assert set(out["goals"]) == {"memory_scenario.margin", "default_town.margin"}
    # Every scenario agent starts from its seed's feed-forward agent trained on the fully observed control.
    first = out["memory_scenario"]["warm_start"]
    assert first["scenario"].endswith("configs/scenarios/memory_glimpse_control.yaml") and len(first["mlp"]) == 2
    assert out["budget"]["control"] == {"kind": "epochs", "amount": 1} and out["default_town"]["warm_start"] is None
