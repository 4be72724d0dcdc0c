"""The BC -> PPO anneal through the real command line (issue 13, seed 001): every verdict and its exit code (PASS 0,
HOLD 3, FAIL 4), the rollback drill (raise the threshold, rerun: the BC checkpoint is restored byte for byte and
the lineage says why), the anneal records in the PPO telemetry log that `telemetry_watch --anneal-bc-min
--anneal-loss-max` checks (HOLD 3 / FAIL 4), and the promotion gate over anneal_results.json.

Real BC on the shipped default-town dataset (one epoch) and real PPO (one town, 16 ticks), in scratch folders."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import REPO_ROOT, CliResult, _cli_env, assert_one_line_error, default_config_data, dump_yaml
from townlet.sim.config import load_config
from townlet.telemetry.records import ANNEAL_FIELDS, check_record, is_anneal_record
from townlet.training import TrainingHarness
from townlet.training.anneal_results import read_results

EXPERT_SET = REPO_ROOT / "data/bc_datasets/manifests/poc_hybrid_expert_v1.json"


def tool(script: str, *args: str | Path, timeout: float = 300) -> CliResult:
    argv = [sys.executable, f"tools/{script}", *(str(a) for a in args)]
    proc = subprocess.run(argv, env=_cli_env(), capture_output=True, text=True, timeout=timeout, check=False)
    return CliResult(argv, proc.returncode, proc.stdout, proc.stderr)


def anneal_config(path: Path, *, threshold: float | None = None, **anneal: Any) -> Path:
    """The default town, BC on the expert set for one epoch, PPO on one town for 16 ticks a stage."""
    data = default_config_data()
    data["bc"] = {"epochs": 1, "manifest": str(EXPERT_SET)}
    data["ppo"] = {"num_envs": 1, "rollout_ticks": 16}
    training: dict[str, Any] = {"epochs": 1}
    if threshold is not None:
        training["anneal_accuracy_threshold"] = threshold
    if anneal:
        training["anneal"] = anneal
    data["training"] = training
    path.write_text(dump_yaml(data), encoding="utf-8")
    return path


def sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_anneal_pass_then_the_drill_rolls_back(tmp_path: Path) -> None:
    # PASS: BC beats its threshold and the majority baseline, PPO trains from it; exit 0.
    cfg = anneal_config(tmp_path / "config_idle_v1.yaml", threshold=0.8)
    res = tool("run_training.py", cfg, "--mode", "anneal", "--anneal-log-dir", "logs/pass")
    assert res.returncode == 0, str(res)
    assert res.stdout.startswith("anneal PASS on poc_hybrid_v1: 2 stage(s) ran"), str(res)
    results = json.loads(Path("logs/pass/anneal_results.json").read_text(encoding="utf-8"))
    assert results["status"] == "PASS" and results["rolled_back"] is False and results["reasons"] == []
    bc, ppo = results["stages"]
    assert bc["mode"] == "bc" and bc["passed"] is True and bc["threshold"] == 0.8
    assert bc["accuracy"] >= 0.8 and bc["accuracy"] > bc["baseline_accuracy"] + 0.3, bc
    assert ppo["mode"] == "ppo" and ppo["passed"] is True and ppo["flags"] == [] and ppo["anneal_ratio"] == 1.0
    assert isinstance(ppo["loss_total"], float) and isinstance(ppo["kl"], float)
    assert ppo["checkpoint_sha256"] == sha(ppo["checkpoint"])
    # The anneal's records in the PPO telemetry log: valid PPO records carrying the anneal fields.
    log = Path(results["telemetry"])
    (rec,) = lines(log)
    assert check_record(rec, where=str(log)) == [] and is_anneal_record(rec)
    assert rec["anneal_stage"] == "ppo" and rec["anneal_cycle"] == 2 and rec["anneal_ratio"] == 1.0
    assert rec["anneal_bc_accuracy"] == bc["accuracy"] and rec["anneal_bc_passed"] is True
    assert set(k for k in rec if k.startswith("anneal_")) <= set(ANNEAL_FIELDS)
    # The watcher is quiet on it at 0.9 and fires, as an anneal FAIL (exit 4), when BC must reach above it.
    quiet = tool("telemetry_watch.py", log, "--anneal-bc-min", "0.9", "--anneal-loss-max", "0.1")
    assert quiet.returncode == 0, str(quiet)
    loud = tool("telemetry_watch.py", log, "--anneal-bc-min", f"{bc['accuracy'] + 0.001:.4f}")
    assert loud.returncode == 4 and loud.stderr_lines[-1].endswith("(anneal FAIL)"), str(loud)
    promote = tool("promotion_evaluate.py", "--input", "logs/pass/anneal_results.json")
    assert promote.returncode == 0 and promote.stdout.startswith("PROMOTE: "), str(promote)

    # The drill (seed 001 step 4): raise the threshold above what BC reaches and rerun.
    kept = {bc["checkpoint"]: sha(bc["checkpoint"])}
    drill = anneal_config(tmp_path / "config_idle_v1.yaml", threshold=0.99)
    res = tool("run_training.py", drill, "--mode", "anneal", "--anneal-log-dir", "logs/drill")
    assert res.returncode == 4, str(res)
    assert "anneal FAIL" in res.stdout and "rolled back:" in res.stdout, str(res)
    failed = read_results(Path("logs/drill/anneal_results.json"))
    assert failed.status == "FAIL" and failed.rolled_back is True
    assert [s.mode for s in failed.stages] == ["bc"]  # the harness stops after the BC stage
    assert failed.stages[0].passed is False and failed.stages[0].threshold == 0.99
    assert failed.reasons[0].startswith("bc_stage_failed_stage_1: held-out accuracy")
    latest = next(r for r in failed.rollbacks if r.path == bc["checkpoint"])
    # The restored file is the kept one, byte for byte; the rejected one was different and is kept aside.
    assert latest.kept_sha256 == latest.restored_sha256 == kept[bc["checkpoint"]] == sha(bc["checkpoint"])
    assert latest.rejected_sha256 is not None and latest.rejected_sha256 != latest.kept_sha256
    assert latest.rejected_copy is not None and sha(latest.rejected_copy) == latest.rejected_sha256
    # The lineage says why, beside the checkpoint.
    (lineage,) = failed.lineage
    entries = [e for e in lines(Path(lineage)) if e["path"] == bc["checkpoint"]]
    assert entries[-1]["event"] == "rollback" and "below the threshold 0.990" in entries[-1]["reason"]
    assert not Path("logs/drill/ppo_anneal.jsonl").exists()  # no PPO stage ran
    verdict = tool("promotion_evaluate.py", "--input", "logs/drill/anneal_results.json", "--format", "json")
    assert verdict.returncode == 4, str(verdict)
    decision = verdict.json()
    assert decision["decision"] == "FAIL" and decision["rolled_back"] is True and decision["candidate"] is None


def test_anneal_hold_on_loss_drift_and_the_python_api(tmp_path: Path) -> None:
    # A PPO-only schedule whose loss is compared with a configured baseline it cannot be near: HOLD, exit 3.
    cfg = anneal_config(tmp_path / "hold.yaml", schedule=[{"mode": "ppo", "epochs": 1}], loss_baseline=1000.0)
    res = tool("run_training.py", cfg, "--mode", "anneal", "--anneal-log-dir", "logs/hold", "--json")
    assert res.returncode == 3, str(res)
    assert res.json() == json.loads(Path("logs/hold/anneal_results.json").read_text(encoding="utf-8"))
    results = read_results(Path("logs/hold/anneal_results.json"))
    assert results.status == "HOLD" and results.rolled_back is False and results.rollbacks == []
    (ppo,) = results.stages
    assert ppo.mode == "ppo" and ppo.passed is False and ppo.flags == ["loss_drift"]
    assert results.reasons[0].startswith("loss_drift_stage_1: ")
    # HOLD keeps the checkpoint it trained (promotion is frozen, nothing is rolled back).
    assert ppo.checkpoint is not None and sha(ppo.checkpoint) == ppo.checkpoint_sha256
    log = Path("logs/hold/ppo_anneal.jsonl")
    (rec,) = lines(log)
    assert rec["anneal_loss_flag"] is True and rec["anneal_loss_baseline"] == 1000.0
    watch = tool("telemetry_watch.py", log, "--anneal-bc-min", "0.9", "--anneal-loss-max", "0.1")
    assert watch.returncode == 3 and watch.stderr_lines[-1].endswith("(anneal HOLD)"), str(watch)
    hold = tool("promotion_evaluate.py", "--input", "logs/hold/anneal_results.json")
    assert hold.returncode == 3 and hold.stdout.startswith("HOLD: "), str(hold)

    # The same from Python returns the parsed anneal_results.json (and is deterministic).
    out = TrainingHarness(load_config(cfg)).run_anneal(log_dir="logs/api")
    assert out == json.loads(Path("logs/api/anneal_results.json").read_text(encoding="utf-8"))
    assert out["stages"][0]["loss_total"] == ppo.loss_total and out["status"] == "HOLD"


def test_anneal_usage_errors(tmp_path: Path) -> None:
    cfg = anneal_config(tmp_path / "c.yaml")
    assert_one_line_error(
        tool("run_training.py", cfg, "--mode", "anneal", "--epochs", "2"), "--epochs: not used by --mode anneal"
    )
    assert_one_line_error(tool("run_training.py", cfg, "--anneal-log-dir", "x"), "--anneal-log-dir")
    blend = anneal_config(tmp_path / "b.yaml", schedule=[{"mode": "ppo", "anneal_ratio": 0.5}])
    assert_one_line_error(
        tool("run_training.py", blend, "--mode", "anneal"), "training.anneal.schedule[0].anneal_ratio: only a ppo"
    )
    assert not Path("logs").exists()  # nothing written
    bad = tmp_path / "bad.json"
    bad.write_text('{"status": "PASS"}', encoding="utf-8")
    assert_one_line_error(tool("promotion_evaluate.py", "--input", bad), str(bad))
    assert_one_line_error(tool("promotion_evaluate.py", "--input", bad, "--format", "xml"), "--format")
