"""`townlet eval` and `make run`'s pieces, as a user runs them: a checkpoint trained for two tiny epochs in the test,
then the evaluation (JSON, table, report with figures), its refusals, and the training progress display."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import REPO_ROOT, CliResult, assert_one_line_error, run_cli
from townlet.training.evaluate import KPI_NAMES

POC = "configs/examples/poc_hybrid.yaml"
QUEUE_CONFLICT = "configs/scenarios/queue_conflict.yaml"
TINY_TRAIN = ("--mode", "rollout", "--epochs", "2", "--num-envs", "2", "--rollout-ticks", "32")
#: A short evaluation: one seed, two towns, two simulated hours.
QUICK = ("--seeds", "1", "--towns", "2", "--ticks", "120")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, CliResult]:
    """(checkpoint, telemetry log, the train command's result) of a two-epoch run, with the progress lines asked
    for although stderr is not a terminal."""
    d = tmp_path_factory.mktemp("trained")
    ckpt, log = d / "checkpoints" / "ppo_latest.safetensors", d / "run.jsonl"
    res = run_cli("train", REPO_ROOT / POC, *TINY_TRAIN, "--checkpoint", ckpt, "--ppo-log", log, "--progress")
    assert res.returncode == 0, str(res)
    return ckpt, log, res


def test_eval_json(trained: tuple[Path, Path, CliResult]) -> None:
    ckpt, _, _ = trained
    res = run_cli("eval", POC, "--policy", ckpt, "--against", "expert,random", *QUICK, "--json")
    assert res.returncode == 0, str(res)
    out = res.json()
    assert list(out) == ["policies"]
    assert list(out["policies"]) == ["trained", "expert", "random"]
    for name, score in out["policies"].items():
        assert set(score) == {"return", "kpis"}, name
        assert tuple(score["kpis"]) == KPI_NAMES
        assert all(isinstance(v, float) for v in (score["return"], *score["kpis"].values()))
    # Deterministic: a second process prints the same bytes.
    again = run_cli("eval", POC, "--policy", ckpt, "--against", "expert,random", *QUICK, "--json")
    assert again.stdout == res.stdout
    only = run_cli("eval", POC, "--policy", ckpt, "--against", "random", *QUICK, "--json").json()
    assert list(only["policies"]) == ["trained", "random"]
    assert only["policies"]["random"] == out["policies"]["random"]


def test_eval_table_and_report(trained: tuple[Path, Path, CliResult], tmp_path: Path) -> None:
    ckpt, log, _ = trained
    folder = tmp_path / "report"
    res = run_cli("eval", POC, "--policy", ckpt, *QUICK, "--telemetry", log, "--report", folder)
    assert res.returncode == 0, str(res)
    for text in ("policy", "return", "on-time", "trained", "expert", "random", f"report: {folder / 'report.md'}"):
        assert text in res.stdout, text
    assert res.stderr == ""
    report = (folder / "report.md").read_text(encoding="utf-8")
    assert "| policy | return | self-sufficiency | on-time rate |" in report
    assert "![learning curve](learning_curve.png)" in report and "![KPIs](kpis.png)" in report
    for name in ("learning_curve.png", "kpis.png"):
        data = (folder / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000, name
    assert sorted(p.name for p in folder.iterdir()) == ["kpis.png", "learning_curve.png", "report.md"]  # no temp files


def test_train_progress_lines_on_request(trained: tuple[Path, Path, CliResult], tmp_path: Path) -> None:
    _, _, res = trained
    assert "PPO rollout: epoch 2/2" in res.stderr and "agent-steps/s" in res.stderr and "left" in res.stderr
    assert res.stdout.startswith("trained 2 epochs")
    # Not asked for and not a terminal: nothing on stderr.
    quiet = run_cli("train", POC, *TINY_TRAIN, "--checkpoint", tmp_path / "c.safetensors")
    assert quiet.returncode == 0 and quiet.stderr == "", str(quiet)


def test_train_progress_live_on_a_terminal(tmp_path: Path) -> None:
    """stderr a terminal: the live display draws there (the last epoch included); stdout keeps the plain summary."""
    import os
    import pty
    import sys

    from conftest import _cli_env

    master, slave = pty.openpty()
    argv = [sys.executable, "-m", "townlet", "train", POC, *TINY_TRAIN, "--checkpoint", str(tmp_path / "c.safetensors")]
    proc = subprocess.Popen(argv, env={**_cli_env(), "TERM": "xterm"}, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    drawn = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the terminal closed: the command has exited
            break
        if not chunk:
            break
        drawn += chunk
    out, _ = proc.communicate(timeout=120)
    os.close(master)
    assert proc.returncode == 0
    assert out.decode().startswith("trained 2 epochs") and "\x1b" not in out.decode()
    assert b"PPO rollout" in drawn and b"epoch 2/2" in drawn and b"agent-steps/s" in drawn


REFUSALS = {
    "missing checkpoint": ((POC, "--policy", "{tmp}/nope.safetensors", *QUICK), ("nope.json", "not found")),
    "checkpoint is a folder": ((POC, "--policy", "{tmp}", *QUICK), ("{tmp}", "is a directory, not a checkpoint")),
    "other spec": ((QUEUE_CONFLICT, "--policy", "{ckpt}", *QUICK), ("{header}", "different observation/action spec")),
    "unknown baseline": ((POC, "--policy", "{ckpt}", "--against", "expert,oracle"), ("--against", "oracle")),
    "no seeds": ((POC, "--policy", "{ckpt}", "--seeds", "0"), ("--seeds", ">= 1")),
    "no towns": ((POC, "--policy", "{ckpt}", "--towns", "0"), ("--towns", ">= 1")),
    "curve without report": ((POC, "--policy", "{ckpt}", "--telemetry", "{log}"), ("--telemetry", "--report")),
    "missing config": (("missing.yaml", "--policy", "{ckpt}"), ("missing.yaml",)),
    "report is a file": ((POC, "--policy", "{ckpt}", "--report", "{tmp}/file"), ("--report", "{tmp}/file")),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_eval_refusals(case: str, trained: tuple[Path, Path, CliResult], tmp_path: Path) -> None:
    ckpt, log, _ = trained
    (tmp_path / "file").write_text("x", encoding="utf-8")
    args, expected = REFUSALS[case]
    values = {"tmp": tmp_path, "ckpt": ckpt, "log": log, "header": ckpt.with_suffix(".json")}
    res = run_cli("eval", *(a.format(**values) for a in args))
    assert_one_line_error(res, *(e.format(**values) for e in expected))
    assert res.stdout == ""


def test_make_run_trains_then_evaluates_with_a_report() -> None:
    """`make run`'s recipe (printed, not run): train for EPOCHS, then `townlet eval` writing report.md beside the
    checkpoint."""
    out = subprocess.run(
        ["make", "-n", "-C", str(REPO_ROOT), "run", "EPOCHS=3", "RUN_DIR=scratch/run"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    out = " ".join(out.replace("\\\n", " ").split())  # the recipe's commands, their continued lines joined
    assert (
        "townlet train configs/examples/poc_hybrid.yaml --mode rollout --epochs 3 --overlap --learning-rate 6e-4 "
        "--kickstart-coef 1.0 --kickstart-final 1.0 --kickstart-on shift --ent-coef-final 0 --ppo-log" in out
    )
    assert (
        "townlet eval configs/examples/poc_hybrid.yaml --policy scratch/run/checkpoints/ppo_latest.safetensors "
        "--against expert,random" in out
    )
    assert "--telemetry scratch/run/run.jsonl --report scratch/run/checkpoints/" in out
