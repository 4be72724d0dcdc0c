"""`TrainingHarness.run_bc_memory_training` (issue 17): behaviour cloning of a memory policy from Python is the
bc_memory phase of `townlet train --mode bc_memory --arch A` (the same data, checkpoint path, weights and gate), its
result a `BCResult` like feed-forward BC's, with the architecture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import run_cli
from test_harness_bc import IDLE
from townlet import load_config
from townlet.artifacts.checkpoint import load_checkpoint
from townlet.errors import UsageError
from townlet.training import BCResult, TrainingHarness

IDLE_CONFIG = "configs/datasets/idle.yaml"


def test_recurrent_bc_through_the_harness_is_the_bc_memory_phase(scratch_cwd: Path) -> None:
    harness = TrainingHarness(load_config(IDLE_CONFIG), root=scratch_cwd)
    result = harness.run_bc_memory_training("gru", manifest=str(IDLE), epochs=1, log_path="logs/bc.jsonl")
    assert isinstance(result, BCResult) and result.arch == "gru" and result.epochs == 1
    latest = scratch_cwd / "logs/dataset_idle/bc_memory/checkpoints/gru_agent_latest.json"
    assert Path(result.checkpoint) == latest
    header = json.loads(latest.read_text(encoding="utf-8"))
    assert header["architecture"]["architecture"] == "gru" and header["metadata"]["phase"] == "bc_memory"
    # Judged by the honest gate: on the idle set one action is always right, so it fails whatever the accuracy.
    assert (result.train_trajectories, result.heldout_trajectories) == (1, 1)
    assert result.accuracy == result.baseline_accuracy == 1.0 and not result.passed
    assert result.reason is not None and "does not beat the majority-action baseline" in result.reason
    gate = json.loads(header["metadata"]["bc_gate"])
    assert gate["holdout_accuracy"] == result.accuracy and gate["gate_passed"] is False
    rec = json.loads((scratch_cwd / "logs/bc.jsonl").read_text(encoding="utf-8").splitlines()[-1])
    assert rec["phase"] == "bc_memory" and rec["arch"] == "gru" and rec["gate_threshold"] == result.threshold
    assert result.dataset_sha256 is not None and result.dataset is not None and result.dataset.endswith("idle_v1.json")

    # The command line trains the same weights from the same data and seed, and judges them the same.
    res = run_cli("train", IDLE_CONFIG, "--mode", "bc_memory", "--arch", "gru", "--bc-manifest", IDLE,
                  "--epochs", "1", "--warm-start-save", "cli/gru.json", "--json")  # fmt: skip
    assert res.returncode == 0, res
    assert res.json()["gate"]["holdout_accuracy"] == result.accuracy
    mine, theirs = load_checkpoint(latest), load_checkpoint(Path("cli/gru.json"))
    assert mine.state.keys() == theirs.state.keys()
    assert all(torch.equal(mine.state[k], theirs.state[k]) for k in mine.state)

    # The architecture defaults to the config's training.memory.arch; its threshold and checkpoint can be given.
    other = harness.run_bc_memory_training(manifest=str(IDLE), epochs=1, threshold=0.9, save_path="out/m.json")
    assert other.arch == "lstm" and other.threshold == 0.9 and Path(other.checkpoint) == scratch_cwd / "out/m.json"
    assert load_checkpoint(Path(other.checkpoint)).header["architecture"]["architecture"] == "lstm"
    with pytest.raises(UsageError, match="arch: String should match pattern"):
        harness.run_bc_memory_training("transformer", manifest=str(IDLE), epochs=1)
