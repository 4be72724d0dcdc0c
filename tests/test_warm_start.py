"""Warm start in the trainer: load (validated before anything changes), save with lineage,
mismatch errors and the explicit override, --dry-run, and `make train` with the seed's variables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from conftest import REPO_ROOT, CliResult, _cli_env, assert_one_line_error
from townlet.artifacts.checkpoint import load_checkpoint

QUEUE = "configs/scenarios/queue_conflict.yaml"
TOWN = "configs/examples/poc_hybrid.yaml"
TINY = ("--epochs", "1", "--num-envs", "1", "--rollout-ticks", "20", "-q")


def train(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> CliResult:
    """`python -m townlet train ARGS` (in `cwd`, default the test's scratch working directory), with extra
    environment variables.
    `--fresh` keeps a bc checkpoint left in the working tree from being inherited."""
    argv = [sys.executable, "-m", "townlet", "train", *args]
    if cwd is None and "--warm-start-load" not in args:
        argv.append("--fresh")
    proc = subprocess.run(argv, cwd=cwd, env={**_cli_env(), **(env or {})}, capture_output=True, text=True, timeout=300)
    return CliResult(argv, proc.returncode, proc.stdout, proc.stderr)


def test_a_same_phase_checkpoint_of_the_same_config_resumes(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.safetensors"
    assert train(QUEUE, *TINY, "--warm-start-save", str(a)).returncode == 0
    parent = load_checkpoint(a)
    assert parent.training is not None and parent.training.data["epoch"] == 1
    # Resuming to the epoch it already reached has nothing to do: a clear error, nothing written.
    res = train(QUEUE, *TINY, "--warm-start-load", str(a), "--warm-start-save", str(b))
    assert_one_line_error(res, str(a), "already trained 1 epochs", "raise --epochs")
    assert not b.exists()
    res = train(QUEUE, *TINY[2:], "--epochs", "2", "--warm-start-load", str(a), "--warm-start-save", str(b))
    assert res.returncode == 0, str(res)
    assert f"resuming {a} at epoch 1" in res.stderr and "trained 1 epochs, resumed after epoch 1" in res.stdout
    child = load_checkpoint(b)
    # A resumed run is the same run: the lineage stays, the resume is recorded beside it.
    assert child.header["lineage"]["parent_sha256"] is None
    assert child.header["lineage"]["resumed_from_sha256"] == parent.sha256
    assert child.header["counters"]["epochs"] == 2 and child.header["metadata"]["phase"] == "ppo"
    assert child.header["config_sha256"] == parent.header["config_sha256"]
    assert parent.state.keys() == child.state.keys()
    assert any(not torch.equal(parent.state[k], child.state[k]) for k in parent.state)


def test_a_config_hash_mismatch_is_an_error_unless_overridden(tmp_path: Path) -> None:
    a, c = tmp_path / "a.json", tmp_path / "c.json"
    assert train(QUEUE, *TINY, "--warm-start-save", str(a)).returncode == 0
    before = a.read_bytes()
    res = train(QUEUE, *TINY, "--learning-rate", "0.001", "--warm-start-load", str(a), "--warm-start-save", str(c))
    assert_one_line_error(res, str(a), "config hash differs", "ALLOW_MISMATCH=1")
    assert not c.exists() and a.read_bytes() == before
    res = train(
        QUEUE, *TINY, "--learning-rate", "0.001", "--warm-start-load", str(a), "--warm-start-save", str(c),
        env={"ALLOW_MISMATCH": "1"},
    )  # fmt: skip
    assert res.returncode == 0, str(res)
    assert "WARNING: warm start despite: config hash differs" in res.stderr
    child = load_checkpoint(c)
    note = child.header["lineage"]["note"]
    assert note.startswith("allow_mismatch: config hash differs")
    # Overridden, the load is a warm start (weights only), not a resume: counters start afresh.
    assert child.header["lineage"]["parent_sha256"] == load_checkpoint(a).sha256
    assert child.header["counters"]["epochs"] == 1 and "resumed_from_sha256" not in child.header["lineage"]


def test_a_spec_mismatch_names_what_differs_and_cannot_be_forced_across_shapes(tmp_path: Path) -> None:
    a = tmp_path / "a.json"
    assert train(QUEUE, *TINY, "--warm-start-save", str(a)).returncode == 0
    res = train(TOWN, *TINY, "--warm-start-load", str(a), "--warm-start-save", str(tmp_path / "x.json"))
    assert_one_line_error(res, "observation/action spec differs", "feature_names")
    res = train(
        TOWN, *TINY, "--warm-start-load", str(a), "--allow-mismatch", "--warm-start-save", str(tmp_path / "x.json")
    )
    assert res.returncode == 2 and "cannot be loaded" in res.stderr, str(res)
    assert not (tmp_path / "x.json").exists()


def test_dry_run_validates_paths_and_writes_nothing(tmp_path: Path) -> None:
    a = tmp_path / "a.json"
    assert train(QUEUE, *TINY, "--warm-start-save", str(a)).returncode == 0
    out = tmp_path / "out" / "b.json"
    res = train(QUEUE, *TINY, "--warm-start-load", str(a), "--warm-start-save", str(out), "--dry-run")
    assert res.returncode == 0, str(res)
    assert "warm start ok" in res.stdout and "dry run: nothing trained" in res.stdout
    assert not out.parent.exists()
    res = train(QUEUE, *TINY, "--warm-start-load", str(tmp_path / "missing.json"), "--dry-run")
    assert_one_line_error(res, "missing.json", "not found")
    res = train(QUEUE, *TINY, "--dry-run", env={"ALLOW_MISMATCH": "maybe"})
    assert_one_line_error(res, "ALLOW_MISMATCH='maybe'")


def test_make_train_takes_the_seed_variables(tmp_path: Path) -> None:
    save = tmp_path / "m.json"

    def make(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", "-s", "train", f"CONFIG={QUEUE}", "EPOCHS=1", f"RUN_DIR={tmp_path}",
             *([] if any(a.startswith(("WARM_LOAD=", "FRESH=")) for a in args) else ["FRESH=1"]), *args],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    res = make(f"WARM_SAVE={save}")
    assert res.returncode == 0, res.stderr
    assert json.loads(save.read_text())["metadata"]["phase"] == "ppo"
    res = make(f"WARM_LOAD={save}", f"WARM_SAVE={tmp_path / 'n.json'}", "DRY_RUN=1")
    assert res.returncode == 0 and "dry run" in res.stdout, res.stderr
    assert not (tmp_path / "n.json").exists()
    assert make("DRY_RUN=0", f"WARM_SAVE={tmp_path / 'o.json'}").returncode == 0
    assert (tmp_path / "o.json").exists()
    bad = make("DRY_RUN=maybe")
    assert bad.returncode != 0 and "DRY_RUN=maybe is not a boolean" in bad.stderr
    bc = make("PHASE=bc")  # behaviour cloning needs data
    assert bc.returncode != 0 and "--capture-dir" in bc.stderr, bc.stderr
    cap = tmp_path / "cap"
    assert train(QUEUE, "--rollout-save-dir", str(cap), "--rollout-ticks", "40").returncode == 0
    bc = make("PHASE=bc", f"CAPTURE_DIR={cap}", f"WARM_SAVE={tmp_path / 'bc.json'}")
    assert bc.returncode == 0, bc.stderr
    assert json.loads((tmp_path / "bc.json").read_text())["metadata"]["phase"] == "bc"
    assert (tmp_path / "bc_best.json").is_file() and (tmp_path / "train.jsonl").is_file()
    # Capture and clone in one command: bc learns from the capture --rollout-save-dir just made.
    res = train(QUEUE, "--mode", "bc", "--rollout-save-dir", str(tmp_path / "cap2"), "--rollout-ticks", "40",
                "--epochs", "1", "--warm-start-save", str(tmp_path / "bc2.json"), "-q")  # fmt: skip
    assert res.returncode == 0 and "captured 3 samples" in res.stdout, str(res)
    assert load_checkpoint(tmp_path / "bc2.json").header["metadata"]["dataset"].startswith(str(tmp_path / "cap2"))
    assert make("PHASE=anneal").returncode != 0
    bad = make("FRESH=maybe")
    assert bad.returncode != 0 and "FRESH=maybe is not a boolean" in bad.stderr
