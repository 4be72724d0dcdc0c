"""Rollout shards (issue 18): `townlet train --backend local|ray --shards N`.

The checkpoint does not depend on the backend or the shard count (per-town SeedSequence seeds, town-by-town
acting, blocks joined in shard order); a killed shard actor is restarted and its epoch recollected from its saved
state, or, past its restarts, the run stops with one line and resumes from its last checkpoint exactly. The Ray
tests use the session's loopback cluster (`ray_cluster` in conftest: a head and a second node, one CPU each).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import DEFAULT_CONFIG, DEFAULT_CONFIG_REL, REPO_ROOT, run_cli
from townlet.artifacts.checkpoint import load_checkpoint
from townlet.errors import UsageError
from townlet.sim.config import load_config
from townlet.sim.env import observation_spec
from townlet.training.ray_cluster import RayClusterError, free_port
from townlet.training.run import TrainRequest, plan, run
from townlet.training.shards import LocalShards, gather, split_towns, town_seeds
from townlet.training.trainer import make_policy

SMALL = ("--num-envs", "2", "--rollout-ticks", "16")
EPOCH = "1700000000"  # SOURCE_DATE_EPOCH: the checkpoints' timestamps


def test_town_seeds_are_a_seed_sequence_split_independent_of_the_shard_count() -> None:
    s0, s1 = town_seeds(0, 4), town_seeds(1, 4)
    assert s0[1] != s1[0] and s0[1].env != s1[0].env  # not seed + town
    every = [x for s in (s0, s1) for t in s for x in (t.env, t.sample)]
    assert len(set(every)) == len(every)
    assert town_seeds(0, 2) == s0[:2]
    assert split_towns(5, 2) == [range(0, 3), range(3, 5)]
    assert split_towns(3, 3) == [range(0, 1), range(1, 2), range(2, 3)]
    with pytest.raises(ValueError, match="--shards 3: between 1 and the number of towns"):
        split_towns(2, 3)


def test_one_two_and_three_local_shards_give_the_same_rows_and_states() -> None:
    config = load_config(DEFAULT_CONFIG)
    # Episodes of 5 ticks: truncations (and their critic bootstraps) and town resets inside the rollout.
    ppo = config.sections.ppo.model_copy(update={"num_envs": 3, "rollout_ticks": 8, "episode_ticks": 5})
    meta = observation_spec(config)
    weights = make_policy(meta, int(meta["obs_dim"]), len(meta["action_names"]), ppo.hidden).state_dict()
    runs = []
    for shards in (1, 2, 3):
        backend = LocalShards(config, ppo, meta, 5, 3, shards)
        epochs = [gather(backend.collect(weights)) for _ in range(2)]
        runs.append((epochs, backend.get_state()))
    (ref, ref_state), others = runs[0], runs[1:]
    assert len(ref[0][0]) > 0
    assert ref[0][1].episode_kpis and ref[1][1].episode_returns  # episodes ended within the epochs
    for epochs, state in others:
        assert state == ref_state
        for (data, stats), (ref_data, ref_stats) in zip(epochs, ref, strict=True):
            for name in ("obs", "masks", "actions", "log_probs", "values", "advantages", "returns", "rewards"):
                assert np.array_equal(getattr(data, name), getattr(ref_data, name)), name
            assert stats.events == ref_stats.events and stats.sample_rewards == ref_stats.sample_rewards
    # A state saved with one shard restores into three: the next epoch is the same.
    one, three = LocalShards(config, ppo, meta, 5, 3, 1), LocalShards(config, ppo, meta, 5, 3, 3)
    one.set_state(ref_state)
    three.set_state(ref_state)
    a, b = gather(one.collect(weights))[0], gather(three.collect(weights))[0]
    assert np.array_equal(a.actions, b.actions) and np.array_equal(a.returns, b.returns)


def test_backend_flags_are_checked_before_training(tmp_path: Path) -> None:
    def planned(**flags: object) -> None:
        plan(TrainRequest(config=DEFAULT_CONFIG, epochs=1, checkpoint=tmp_path / "ck.json", **flags))  # type: ignore[arg-type]

    with pytest.raises(UsageError, match=r"^--shards: needs --backend local\|ray$"):
        planned(shards=2)
    with pytest.raises(UsageError, match=r"^--ray-address: needs --backend ray$"):
        planned(mode="rollout", backend="local", ray_address="127.0.0.1:1")
    with pytest.raises(UsageError, match=r"^--shards 3: between 1 and the run's towns \(ppo.num_envs 2\)$"):
        planned(mode="rollout", backend="local", shards=3, overrides={"num_envs": 2})
    with pytest.raises(UsageError, match=r"^--backend: shards collect PPO rollouts \(--mode rollout\), not --mode bc$"):
        planned(mode="bc", backend="ray")
    with pytest.raises(UsageError, match=r"^--backend: shards collect without the expert's actions; ppo.kickstart_"):
        planned(mode="rollout", backend="local", overrides={"kickstart_coef": 1.0})
    with pytest.raises(
        UsageError,
        match=r"^ppo.kickstart_coef: kickstarting labels rollout states \(--mode rollout\), not --mode mixed$",
    ):
        planned(mode="mixed", overrides={"kickstart_coef": 1.0})
    with pytest.raises(UsageError, match=r"^--ray-address nohost: expected HOST:PORT"):
        planned(mode="rollout", backend="ray", ray_address="nohost")
    nobody = f"127.0.0.1:{free_port()}"
    with pytest.raises(RayClusterError, match=f"^--ray-address {nobody}: no Ray cluster answers there"):
        planned(mode="rollout", backend="ray", ray_address=nobody)
    assert not list(tmp_path.iterdir())


def test_a_checkpoint_resumes_only_with_the_collector_that_saved_it(tmp_path: Path) -> None:
    """A sharded run's collector state is one entry per town; the in-process collector's is one VecTown's.
    Resuming one with the other is one clear line, and nothing is trained or written."""
    small = {"num_envs": 2, "rollout_ticks": 4}
    for name, backend in (("plain", None), ("sharded", "local")):
        run(plan(TrainRequest(config=DEFAULT_CONFIG, mode="rollout", epochs=1, overrides=small, fresh=True,
                              checkpoint=tmp_path / f"{name}.json", backend=backend)))  # fmt: skip
    for saved, backend, says in (
        ("plain", "local", "saved by a run without --backend; resume it without --backend"),
        ("sharded", None, "the training state lacks 'env'"),
    ):
        ck = tmp_path / f"{saved}.json"
        before = ck.read_bytes()
        again = TrainRequest(config=DEFAULT_CONFIG, mode="rollout", epochs=2, overrides=small, checkpoint=ck,
                             warm_start_load=ck, backend=backend)  # fmt: skip
        with pytest.raises(UsageError, match=f"{ck}: cannot resume: .*{re.escape(says)}"):
            run(plan(again))
        assert ck.read_bytes() == before


def checkpoint_bytes(folder: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(folder.iterdir())}


def test_on_a_two_node_loopback_cluster_any_shard_count_writes_the_same_checkpoint_and_killed_shards_recover(
    ray_cluster: object, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """One test for the session's cluster, so that test workers in parallel do not each start one."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    address = ray_cluster.address  # type: ignore[attr-defined]
    same_checkpoint_whatever_the_backend(address)
    killed_shards_recover(address, tmp_path)


def same_checkpoint_whatever_the_backend(address: str) -> None:
    """`townlet train` with --backend local, ray --shards 1 and ray --shards 2: the same checkpoint bytes."""
    runs = {
        "local": ("--backend", "local"),
        "ray1": ("--backend", "ray", "--shards", "1", "--ray-address", address),
        "ray2": ("--backend", "ray", "--shards", "2", "--ray-address", address),
    }
    for name, flags in runs.items():
        res = run_cli("train", DEFAULT_CONFIG_REL, "--mode", "rollout", *flags, "--epochs", "2", "--fresh",
                      "--checkpoint", f"{name}/ppo.json", *SMALL, "--json", timeout=600)  # fmt: skip
        assert res.returncode == 0, str(res)
        assert res.json()["steps"] > 0
    local = checkpoint_bytes(Path("local"))
    assert set(local) == {"ppo.json", "ppo_best.json"}
    assert checkpoint_bytes(Path("ray1")) == local
    assert checkpoint_bytes(Path("ray2")) == local


def killed_shards_recover(address: str, tmp_path: Path) -> None:
    """tests/ray_fault_run.py: a killed shard actor restarted and its epoch recollected; with no restarts left,
    the run stops with one line and resumes from its last checkpoint exactly."""
    result, out_dir = tmp_path / "result.json", tmp_path / "run"
    out_dir.mkdir()
    argv = [sys.executable, str(REPO_ROOT / "tests/ray_fault_run.py"), "--address", address,
            "--config", DEFAULT_CONFIG_REL, "--out", str(out_dir), "--result", str(result)]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(result.read_text())

    # Shard 1 was killed after epoch 1 and restarted; the run wrote what the local run wrote.
    assert out["restarts"] == 1
    assert out["pids_after"][0] == out["pids_before"][0] and out["pids_after"][1] != out["pids_before"][1]
    assert (out_dir / "restart.json").read_bytes() == (out_dir / "local.json").read_bytes()

    # With no restarts allowed the run stopped at epoch 3 with one line, its epoch-2 checkpoint whole ...
    assert out["error"] == (
        "shard 0 (towns 0-0) died and Ray could not restart it (max restarts 0); the run stopped "
        "(resume from its last checkpoint)"
    )
    assert out["stopped_at"] == 2
    assert out["files"] == ["local.json", "local_best.json", "restart.json", "restart_best.json", "stopped.json",
                            "stopped_best.json"]  # fmt: skip
    # ... and resumed from it (here on the local backend), it ends where the uninterrupted run ended.
    assert out["resumed_from"] == 2
    done, again = load_checkpoint(out_dir / "local.json"), load_checkpoint(out_dir / "stopped.json")
    assert again.header["counters"] == done.header["counters"]
    assert all(again.state[k].equal(v) for k, v in done.state.items())
    assert done.training is not None and again.training is not None
    assert again.training.data == done.training.data  # towns, RNG streams, counters, best so far
    assert all(again.training.tensors[k].equal(v) for k, v in done.training.tensors.items())
