"""What a training run writes beside its checkpoint (#15, #16): `python tools/run_training.py --config C` publishes
the trained policy as a promotion candidate in the shadow folder (`snapshots/shadow/<config_id>/`, configurable;
the per-config `logs/<config_id>/<phase>/checkpoints/` stays where it is), never in the release folder; and with
`--tensorboard DIR` the epoch telemetry's scalars go to TensorBoard event files with the JSONL's values."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import DEFAULT_CONFIG, CliResult, WriteConfig, _cli_env, assert_one_line_error, run_cli

FAST = ["--mode", "rollout", "--epochs", "2", "--rollout-ticks", "16", "--num-envs", "1", "--fresh", "--quiet"]
CANDIDATE = Path("snapshots/shadow/poc_hybrid_v1/ppo_latest.json")
LATEST = Path("logs/poc_hybrid_v1/ppo/checkpoints/ppo_latest.json")


def train(*args: str) -> CliResult:
    argv = [sys.executable, "tools/run_training.py", "--config", str(DEFAULT_CONFIG), *args]
    proc = subprocess.run(argv, env=_cli_env(), capture_output=True, text=True, timeout=300, check=False)
    return CliResult(argv, proc.returncode, proc.stdout, proc.stderr)


def test_training_publishes_the_candidate_to_shadow_and_tensorboard_gets_the_jsonl_scalars() -> None:
    res = train(*FAST, "--ppo-log", "run.jsonl", "--tensorboard", "tb", "--json")
    assert res.returncode == 0, res
    summary = res.json()
    assert summary["candidate"] == str(CANDIDATE) and summary["checkpoint"] == str(LATEST)
    assert CANDIDATE.read_bytes() == LATEST.read_bytes()  # the trained policy, byte for byte
    assert not Path("snapshots/rel").exists()  # training never writes the release folder
    assert not list(CANDIDATE.parent.glob("*.tmp*"))

    records = [json.loads(line) for line in Path("run.jsonl").read_text(encoding="utf-8").splitlines()]
    board = EventAccumulator("tb")
    board.Reload()
    tags = board.Tags()["scalars"]
    assert "loss_total" in tags and "episode_return_mean" in tags
    for tag in ("loss_total", "approx_kl", "loss_entropy", "episodes"):
        events = board.Scalars(tag)
        assert [e.step for e in events] == [r["epoch"] for r in records]
        assert [e.value for e in events] == [np.float32(r[tag]) for r in records], tag
    assert "early_stop" not in tags and "data_mode" not in tags  # booleans and strings are not scalars

    # Another run to its own --shadow-dir; --no-shadow publishes nothing.
    res = train(*FAST, "--shadow-dir", "cands")
    assert res.returncode == 0 and "candidate cands/poc_hybrid_v1/ppo_latest.json" in res.stdout, res
    res = train(*FAST, "--no-shadow", "--checkpoint", "elsewhere/x.json", "--json")
    assert res.returncode == 0 and res.json()["candidate"] is None, res
    assert not Path("snapshots/shadow/poc_hybrid_v1/x.json").exists()


def test_a_checkpoint_in_the_shadow_folder_is_the_candidate_and_the_release_folder_is_refused() -> None:
    res = train(*FAST, "--checkpoint", "snapshots/shadow/cand.json", "--json")
    assert res.returncode == 0, res
    assert res.json()["candidate"] == "snapshots/shadow/cand.json"
    assert sorted(p.name for p in Path("snapshots/shadow").iterdir()) == ["cand.json", "cand_best.json"]
    res = train(*FAST, "--checkpoint", "snapshots/rel/cand.json")
    assert_one_line_error(res, "--warm-start-save snapshots/rel/cand.json", "release folder", "shadow folder only")
    res = train(*FAST, "--shadow-dir", "snapshots/rel")
    assert_one_line_error(res, "--shadow-dir snapshots/rel", "release folder")
    assert not Path("snapshots/rel").exists()


def test_the_configs_shadow_dir_is_where_candidates_go(write_config: WriteConfig) -> None:
    config = write_config(lambda d: d.update(ops={"promotion": {"shadow_dir": "cands_from_config"}}))
    argv = [sys.executable, "tools/run_training.py", "--config", str(config), *FAST, "--json"]
    proc = subprocess.run(argv, env=_cli_env(), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["candidate"] == "cands_from_config/poc_hybrid_v1/ppo_latest.json"
    assert Path("cands_from_config/poc_hybrid_v1/ppo_latest.json").is_file() and not Path("snapshots").exists()


def test_tensorboard_is_not_an_anneal_option() -> None:
    res = run_cli("train", str(DEFAULT_CONFIG), "--mode", "anneal", "--tensorboard", "tb")
    assert_one_line_error(res, "--tensorboard", "not used by --mode anneal")
