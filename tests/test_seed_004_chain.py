"""Seed 004's chain from the Make targets, in one scratch checkout: bc -> ppo (inherits bc) -> memory for each
architecture (inherits ppo, through the explicit mapping) -> resume of each; then a memory policy cloned on
sequences (`PHASE=bc ARCH=lstm`) that the memory phase warm-starts from with its core. The checkpoint tools list
every checkpoint with its phase and architecture and show what each warm start carried over. A small town
(hidden 16, one town, a 40-tick expert capture to clone) and one or two epochs per step."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO_ROOT, WriteConfig, run_cli
from townlet.artifacts.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow  # about a minute on 2 cores: thirteen commands, each importing torch

ARCHS = ("lstm", "gru", "attention")
LOGS = Path("logs/poc_hybrid_v1")


def small(data: dict[str, Any]) -> None:
    data.setdefault("ppo", {}).update(
        num_envs=1, rollout_ticks=12, num_minibatches=2, update_epochs=1, hidden=16, episode_ticks=24
    )
    data.setdefault("bc", {}).update(hidden=16, batch_size=64)
    data.setdefault("training", {})["memory"] = {"seq_len": 4, "context": 4}


def make(*args: str) -> subprocess.CompletedProcess[str]:
    """`make train ...` of the repository's Makefile in this scratch directory (its virtual environment as built)."""
    venv = REPO_ROOT / ".venv"
    argv = ["make", "-s", "-f", str(REPO_ROOT / "Makefile"), "-o", str(venv / ".ext-stamp"), "train", f"VENV={venv}",
            *args]  # fmt: skip
    res = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, f"{' '.join(args)}\n{res.stdout}\n{res.stderr}"
    assert "Traceback" not in res.stderr, res.stderr
    return res


def header(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def test_seed_004_chain_bc_ppo_memory_each_arch_and_resume_from_make(write_config: WriteConfig) -> None:
    config = write_config(small)
    cfg = f"CONFIG={config}"
    assert run_cli("capture", "rollout", config, "-o", "cap", "--ticks", "40").returncode == 0
    bc = make("PHASE=bc", cfg, "CAPTURE_DIR=cap", "EPOCHS=1", "TRAIN_LOG=bc.jsonl")
    assert "bc gate: " in bc.stdout
    bc_ck = LOGS / "bc/checkpoints/bc_latest.json"
    ppo = make("PHASE=ppo", cfg, "EPOCHS=1", "TRAIN_LOG=ppo.jsonl")
    assert "inherited from the bc phase" in ppo.stderr
    ppo_ck = LOGS / "ppo/checkpoints/ppo_latest.json"
    assert header(ppo_ck)["lineage"]["parent_sha256"] == load_checkpoint(bc_ck).sha256
    ppo_sha = load_checkpoint(ppo_ck).sha256
    for arch in ARCHS:
        first = make("PHASE=memory", f"ARCH={arch}", cfg, "EPOCHS=1", f"TRAIN_LOG={arch}.jsonl")
        assert "inherited from the ppo phase" in first.stderr and "fresh: core" in first.stderr
        latest = LOGS / f"memory/checkpoints/{arch}_agent_latest.json"
        mapping = header(latest)["lineage"]["warm_start"]
        assert mapping["source_sha256"] == ppo_sha and mapping["source_architecture"] == "conflict_aware"
        assert {n.split(".")[0] for n in mapping["fresh"]} == {"core"} and mapping["mismatched"] == []
        again = make("PHASE=memory", f"ARCH={arch}", cfg, "EPOCHS=2", f"WARM_LOAD={latest}", f"TRAIN_LOG={arch}.jsonl")
        assert f"resuming {latest} at epoch 1" in again.stderr and "resumed after epoch 1" in again.stdout
        resumed = header(latest)
        assert resumed["counters"]["epochs"] == 2 and resumed["lineage"]["warm_start"] == mapping  # kept on resume
        assert [json.loads(line)["epoch"] for line in Path(f"{arch}.jsonl").read_text().splitlines()] == [1, 2]
    # A memory policy cloned on sequences, then trained by recurrent PPO from it with its core.
    cloned = make("PHASE=bc", "ARCH=lstm", cfg, "CAPTURE_DIR=cap", "EPOCHS=1", "TRAIN_LOG=bc_lstm.jsonl")
    assert "bc_memory: trained 1 epochs" in cloned.stdout and "bc gate: " in cloned.stdout
    bc_lstm = LOGS / "bc_memory/checkpoints/lstm_agent_latest.json"
    make("PHASE=memory", "ARCH=lstm", cfg, "EPOCHS=1", f"WARM_LOAD={bc_lstm}", "WARM_SAVE=from_bc.json",
         "TRAIN_LOG=from_bc.jsonl")  # fmt: skip
    assert header(Path("from_bc.json"))["lineage"]["warm_start"]["fresh"] == []
    # The checkpoint tools: every checkpoint with its phase (and architecture), and what a warm start carried.
    listed = run_cli("checkpoint", "list", "logs")
    assert listed.returncode == 0, listed
    for phase in ("bc", "ppo", *(f"memory ({arch})" for arch in ARCHS), "bc_memory (lstm)"):
        assert f" {phase} " in listed.stdout, phase
    rows: list[dict[str, Any]] = json.loads(run_cli("checkpoint", "list", "logs", "--json").stdout)
    archs = {r["metadata"].get("arch") for r in rows if r.get("metadata", {}).get("phase") == "memory"}
    assert archs == set(ARCHS)
    shown = run_cli("checkpoint", "info", LOGS / "memory/checkpoints/gru_agent_latest.json")
    assert "MemoryPolicy (gru, " in shown.stdout
    line = next(ln for ln in shown.stdout.splitlines() if ln.startswith("warm start:"))
    assert f"from {ppo_sha[:12]} (conflict_aware): carried " in line and "map_encoder" in line
    assert line.endswith("fresh 6 (core)")
