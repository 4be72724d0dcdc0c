"""Seed 002's follow-up, the endurance soak: `tools/run_mixed_soak.py CONFIG --cycles N` trains one PPO
learner in alternating replay and rollout cycles and writes, per cycle, the queue-conflict events and
intensity against the golden baseline (docs/samples/rollout_scenario_stats.json)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import CliResult, _cli_env, assert_one_line_error

QUEUE_CONFLICT = "configs/scenarios/queue_conflict.yaml"
GOLDEN = Path("docs/samples/rollout_scenario_stats.json")


def soak(*args: str | Path) -> CliResult:
    argv = [sys.executable, "tools/run_mixed_soak.py", *map(str, args)]
    proc = subprocess.run(argv, env=_cli_env(), capture_output=True, text=True, timeout=300, check=False)
    return CliResult(argv, proc.returncode, proc.stdout, proc.stderr)


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_two_cycles_alternate_replay_and_rollout_with_drift_per_cycle() -> None:
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))["queue_conflict"]["events"]
    res = soak(QUEUE_CONFLICT, "--cycles", "2", "--num-envs", "2")
    assert res.returncode == 0, str(res)
    out = Path("logs/scenario_queue_conflict/soak")  # the default: next to the config's checkpoints
    lines = res.stdout.splitlines()
    assert lines[0].startswith("cycle 1 replay  epochs 1-1: queue events 11.00 (golden 11, 1.00x)"), str(res)
    assert lines[1].startswith("cycle 2 rollout epochs 2-2: queue events"), str(res)
    assert "capture of queue_conflict: matches the golden" in res.stdout
    cycles = jsonl(out / "soak_drift.jsonl")
    assert [(c["cycle"], c["mode"], c["epochs"]) for c in cycles] == [(1, "replay", [1]), (2, "rollout", [2])]
    telemetry = jsonl(out / "ppo_soak.jsonl")
    assert [(r["epoch"], r["data_mode"]) for r in telemetry] == [(1, "replay"), (2, "rollout")]
    replayed, rolled = cycles
    # The replay cycle carries the capture's own totals: the golden's, exactly (same scenario, scripted policy).
    assert replayed["queue_conflict_events"] == golden["queue_conflict_events"] == telemetry[0]["queue_conflict_events"]
    assert replayed["queue_conflict_intensity_sum"] == pytest.approx(golden["queue_conflict_intensity_sum"])
    assert replayed["events_ratio"] == 1.0 and replayed["drift"] == [] and replayed["verdict"] == "OK"
    # The rollout cycle: the learner's towns, per town (2 towns, one scenario-long episode each).
    assert rolled["queue_conflict_events"] == telemetry[1]["queue_conflict_events"] / 2
    assert rolled["queue_conflict_intensity_sum"] == pytest.approx(telemetry[1]["queue_conflict_intensity_sum"] / 2)
    assert telemetry[1]["rollout_ticks"] == 80  # the scenario's window
    assert rolled["golden_events"] == golden["queue_conflict_events"]
    within = abs(rolled["queue_conflict_events"] - golden["queue_conflict_events"]) <= 0.15 * 11
    assert (rolled["verdict"] == "OK") == (within and not [d for d in rolled["drift"] if "intensity" in d])
    summary = json.loads((out / "soak_summary.json").read_text(encoding="utf-8"))
    assert summary["status"] == ("PASS" if rolled["verdict"] == "OK" else "DRIFT")
    assert summary["per_cycle"] == cycles and summary["capture_drift"] == []


def test_a_golden_the_capture_does_not_match_drifts_and_can_fail_the_run(tmp_path: Path) -> None:
    doc = json.loads(GOLDEN.read_text(encoding="utf-8"))
    doc["queue_conflict"]["events"]["queue_conflict_events"] = 22.0  # twice what the scenario does
    golden = tmp_path / "golden.json"
    golden.write_text(json.dumps(doc), encoding="utf-8")
    res = soak(QUEUE_CONFLICT, "--cycles", "1", "--golden", golden, "--output", tmp_path / "s", "--exit-on-drift")
    assert res.returncode == 1, str(res)
    assert "queue events 11.00 (golden 22, 0.50x)" in res.stdout and ": DRIFT" in res.stdout
    summary = json.loads((tmp_path / "s/soak_summary.json").read_text(encoding="utf-8"))
    assert summary["status"] == "DRIFT" and summary["drifted_cycles"] == [1]
    assert summary["capture_drift"] == [
        "events.queue_conflict_events: drifted beyond 2% / 1e-6 (golden 22.0, captured 11.0)"
    ]


def test_a_config_without_a_golden_is_a_usage_error(tmp_path: Path) -> None:
    res = soak("configs/examples/poc_hybrid.yaml", "--cycles", "1", "--output", tmp_path / "x")
    assert_one_line_error(res, str(GOLDEN), "no golden for scenario 'poc_hybrid'")
    assert not (tmp_path / "x").exists()


def test_a_capture_as_the_baseline(tmp_path: Path) -> None:
    """Seed 002's follow-up: soak against an earlier capture (artifacts/phase4/...) instead of the golden file."""
    capture = tmp_path / "phase4" / "queue_conflict"
    made = subprocess.run([sys.executable, "tools/capture_rollout.py", QUEUE_CONFLICT, "--output", str(capture)],
                          env=_cli_env(), capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert made.returncode == 0, made.stderr
    events = json.loads((capture / "rollout_sample_metrics.json").read_text(encoding="utf-8"))["events"]
    res = soak(QUEUE_CONFLICT, "--cycles", "1", "--capture", capture, "--output", tmp_path / "s", "--json")
    assert res.returncode == 0, str(res)
    summary = res.json()
    assert summary["golden"] == str(capture) and summary["capture_drift"] == [] and summary["status"] == "PASS"
    (cycle,) = jsonl(tmp_path / "s/soak_drift.jsonl")
    assert cycle["mode"] == "replay" and cycle["golden_events"] == events["queue_conflict_events"]
    assert cycle["queue_conflict_events"] == events["queue_conflict_events"] and cycle["events_ratio"] == 1.0
    assert not (tmp_path / "s/capture").exists()  # nothing captured afresh
    # A capture of another town does not fit this one: refused before anything is written.
    other = soak("configs/scenarios/observation_baseline.yaml", "--cycles", "1", "--capture", capture,
                 "--output", tmp_path / "o")  # fmt: skip
    assert_one_line_error(other, "different observation/action spec")
    assert not (tmp_path / "o").exists()
