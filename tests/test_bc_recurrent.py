"""Behaviour cloning of memory policies on whole sequences (issue 17): where the memory resets, that the
held-out judgement acts exactly as the policy acts tick by tick, the bc_memory phase from the command line
(the honest gate, per-architecture checkpoints, exact resume) and the memory phase carrying its core."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import WriteConfig, assert_one_line_error, run_cli
from townlet.artifacts.checkpoint import load_checkpoint
from townlet.capture.rollout import capture_rollout
from townlet.sim.config import load_config
from townlet.sim.env import observation_spec
from townlet.sim.settings import BCConfig
from townlet.training.bc import holdout_trajectories, split_rows
from townlet.training.bc_recurrent import MemoryBCConfig, replay, split_sequences, trajectories
from townlet.training.data import load_replay
from townlet.training.network_memory import make_memory_policy
from townlet.training.run import RunOutputs, TrainRequest, plan, run


def small(data: dict[str, Any]) -> None:
    data.setdefault("ppo", {}).update(
        num_envs=1, rollout_ticks=12, num_minibatches=2, update_epochs=1, hidden=16, episode_ticks=24
    )
    data.setdefault("bc", {}).update(hidden=16, batch_size=32)
    data.setdefault("training", {})["memory"] = {"seq_len": 4, "context": 4}


@pytest.fixture
def config_path(write_config: WriteConfig) -> Path:
    return write_config(small)


def sample(
    t: int, *, dead: tuple[int, int] | None = None, done: int | None = None, ctx: tuple[int, ...] = ()
) -> dict[str, np.ndarray]:
    """A trajectory of `t` ticks whose observation's first column is the tick and last column `ctx_reset`."""
    obs = np.zeros((t, 3), np.float32)
    obs[:, 0] = np.arange(t)
    obs[list(ctx), 2] = 1.0
    alive = np.ones(t, bool)
    if dead:
        alive[dead[0] : dead[1]] = False
    dones = np.zeros(t, bool)
    if done is not None:
        dones[done] = True
    return {"obs": obs, "action_masks": np.ones((t, 4), bool), "actions": np.arange(t) % 4,
            "rewards": np.ones(t, np.float32), "dones": dones, "alive": alive}  # fmt: skip


def test_trajectories_stay_whole_and_the_memory_resets_at_episode_end_respawn_and_ctx_reset() -> None:
    samples = [sample(10, dead=(3, 5), done=7, ctx=(0, 9)), sample(5)]
    tr = trajectories(samples, [0, 1], seq_len=4, gamma=0.5, ctx_col=2)
    assert tr.obs.shape == (2, 8, 3)  # the longest has 8 live ticks: padded to a multiple of seq_len
    live0 = tr.obs[0, tr.valid[0], 0].tolist()
    assert live0 == [0, 1, 2, 5, 6, 7, 8, 9]  # the dead ticks 3-4 are left out, the order kept
    assert tr.starts[0, tr.valid[0]].tolist() == [True, False, False, True, False, False, True, True]
    # tick 5: first after the dead stretch (a respawn); tick 8: after the episode ended at 7; tick 9: ctx_reset
    assert tr.starts[1].tolist()[:5] == [True, False, False, False, False] and tr.valid[1].sum() == 5
    assert tr.live_actions().tolist() == [0, 1, 2, 1, 2, 3, 0, 1, 0, 1, 2, 3, 0]
    # The held-out trajectories are feed-forward BC's for the same seed.
    many = [sample(6) for _ in range(10)]
    cfg = MemoryBCConfig(holdout_fraction=0.3, seq_len=4)
    split = split_sequences(many, cfg, seed=7, ctx_col=None)
    assert (
        split.holdout.ids
        == holdout_trajectories(10, 0.3, 7)
        == split_rows(many, BCConfig(holdout_fraction=0.3), seed=7).holdout_ids
    )
    assert sorted(split.train.ids + split.holdout.ids) == list(range(10))


@pytest.mark.parametrize("arch", ["lstm", "attention"])
def test_the_judged_sequences_act_exactly_as_the_policy_acts_tick_by_tick(config_path: Path, arch: str) -> None:
    """The held-out accuracy is measured by acting through each trajectory chunk by chunk with the memory carried:
    the same logits as `forward` acting one tick at a time (as `sim run --policy`, capture and the shard act)."""
    config = load_config(config_path)
    capture_rollout(config, Path("cap"), ticks=30)
    data = load_replay(None, Path("cap"))
    meta = observation_spec(config)
    torch.manual_seed(1)
    policy = make_memory_policy(arch, meta, len(meta["action_names"]), 16, 4)
    with torch.no_grad():
        for p in policy.core.parameters():
            p.add_(0.3 * torch.randn_like(p))
    short = [{k: (v[:30] if k != "next_obs" else v) for k, v in data.samples[i].items()} for i in (0, 4)]
    short[1]["obs"][17, policy.ctx_reset_col] = 1.0  # a respawn on the way: the memory is forgotten there
    tr = trajectories(short, [0, 1], seq_len=4, gamma=0.99, ctx_col=policy.ctx_reset_col)
    assert bool(tr.valid[:, :30].all())  # these agents live through these ticks
    logits, _, _ = replay(policy, tr, 4)
    policy.reset_memory()
    remembered = 0
    with torch.no_grad():
        for t in range(30):
            step, value = policy(tr.obs[:, t], tr.masks[:, t])
            assert torch.allclose(step, logits[:, t], atol=1e-5), t
            fresh = policy.step(tr.obs[:, t], tr.masks[:, t], policy.initial_state(2))[1]
            remembered += int(not torch.allclose(fresh, value, atol=1e-6))
    assert remembered >= 25  # all but the first tick and the respawn acted on a memory


def bc_memory(config: Path, arch: str, epochs: int, **kw: Any) -> RunOutputs:
    """A bc_memory run in this process on the capture in `cap/`."""
    req = TrainRequest(config=config, mode="bc_memory", epochs=epochs, overrides={"arch": arch},
                       capture_dir=Path("cap"), **kw)  # fmt: skip
    return run(plan(req))


def test_bc_memory_from_the_command_line_gate_checkpoint_resume_and_the_memory_phase(config_path: Path) -> None:
    config = load_config(config_path)
    capture_rollout(config, Path("cap"), ticks=40)  # the expert, 40 ticks: a small BC set
    res = run_cli("train", config_path, "--mode", "bc_memory", "--arch", "gru", "--capture-dir", "cap",
                  "--epochs", "1", "--bc-log", "bc.jsonl")  # fmt: skip
    assert res.returncode == 0, res
    latest = Path("logs/poc_hybrid_v1/bc_memory/checkpoints/gru_agent_latest.json")
    assert "bc_memory: trained 1 epochs" in res.stdout and f"checkpoint {latest}" in res.stdout
    assert "bc gate: " in res.stdout and "majority baseline" in res.stdout
    header = json.loads(latest.read_text())
    assert header["architecture"]["architecture"] == "gru" and header["metadata"]["phase"] == "bc_memory"
    gate = json.loads(header["metadata"]["bc_gate"])
    assert gate["holdout_baseline_accuracy"] is not None and gate["heldout_trajectories"] >= 1
    rec = json.loads(Path("bc.jsonl").read_text().splitlines()[0])
    assert rec["phase"] == "bc_memory" and rec["arch"] == "gru" and rec["seq_len"] == 4
    # Resumed to epoch 2: the same weights and optimizer moments as two epochs straight.
    assert bc_memory(config_path, "gru", 2, warm_start_load=latest).start_epoch == 1
    bc_memory(config_path, "gru", 2, fresh=True, checkpoint=Path("straight.json"))
    a, b = load_checkpoint(latest), load_checkpoint(Path("straight.json"))
    assert a.training is not None and b.training is not None
    for x, y in ((a.state, b.state), (a.training.tensors, b.training.tensors)):
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    # Another architecture saves beside it.
    out = bc_memory(config_path, "attention", 1)
    assert out.checkpoint == Path("logs/poc_hybrid_v1/bc_memory/checkpoints/attention_agent_latest.json")
    # The memory phase warm-starts from the cloned gru agent with its core carried over (the lineage says so).
    mem = run(plan(TrainRequest(config=config_path, mode="memory", epochs=1, overrides={"arch": "gru"},
                                warm_start_load=latest)))  # fmt: skip
    assert any("warm start: weights from" in line for line in mem.notices)
    assert any(line.endswith("fresh: none") for line in mem.notices)
    mapping = json.loads(Path(str(mem.checkpoint)).read_text())["lineage"]["warm_start"]
    assert mapping["source_architecture"] == "gru" and mapping["fresh"] == []
    assert "core.cell.weight_hh" in mapping["carried"] and mapping["source_sha256"] == a.sha256


def test_bc_memory_maps_a_feed_forward_warm_start_and_refuses_a_shape_mismatch_in_one_line(
    config_path: Path, write_config: WriteConfig
) -> None:
    config = load_config(config_path)
    capture_rollout(config, Path("cap"), ticks=16)
    ff = run(plan(TrainRequest(config=config_path, mode="bc", epochs=1, capture_dir=Path("cap")))).checkpoint
    assert ff is not None
    ok = bc_memory(config_path, "lstm", 1, warm_start_load=ff)
    assert any(line.startswith("bc_memory: carried ") and line.endswith("fresh: core") for line in ok.notices)
    mapping = json.loads(Path(str(ok.checkpoint)).read_text())["lineage"]["warm_start"]
    assert "map_encoder.0.weight" in mapping["carried"] and mapping["source_architecture"] == "conflict_aware"

    def wide(data: dict[str, Any]) -> None:
        small(data)
        data["bc"]["hidden"] = 32

    wide_cfg = write_config(wide, name="wide.yaml")
    run(plan(TrainRequest(config=wide_cfg, mode="bc", epochs=1, capture_dir=Path("cap"), checkpoint=Path("w.json"))))
    bad = run_cli("train", config_path, "--mode", "bc_memory", "--arch", "lstm", "--capture-dir", "cap",
                  "--epochs", "1", "--warm-start-load", "w.json", "--dry-run")  # fmt: skip
    assert_one_line_error(bad, "w.json", "cannot warm start the lstm policy", "map_fc.0.weight", "--allow-mismatch")
    # --arch with the feed-forward bc mode: one line saying which mode clones a memory policy.
    wrong = run_cli("train", config_path, "--mode", "bc", "--arch", "gru", "--capture-dir", "cap", "--dry-run")
    assert_one_line_error(wrong, "--arch: PPO options, not used by --mode bc", "--mode bc_memory --arch A")
    forced = bc_memory(config_path, "lstm", 1, warm_start_load=Path("w.json"), allow_mismatch=True)
    mismatched = json.loads(Path(str(forced.checkpoint)).read_text())["lineage"]["warm_start"]["mismatched"]
    assert any(m.startswith("map_fc.0.weight [16, 288] != [8, ") for m in mismatched), mismatched
