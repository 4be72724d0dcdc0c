"""Issue 13, "phases must not leak across configs": the commands of seeds 000, 001 and 002, in that order, in one
checkout (a scratch copy), without `--fresh`. Epochs are the seeds' own (1-2); the default town's BC is shortened.

Before per-config checkpoint paths, the BC checkpoint seed 001 leaves (trained on the default town) sat at the one
default path every PPO run inherits from, so seed 002's queue_conflict run, and seed 000's replay run the next time
round, failed with an observation/action spec error until `--fresh` was added. Now each config id has its own
`logs/<config_id>/<phase>/checkpoints/`: PPO inherits BC of its own config only, and the checkpoint tool lists the
layout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, CliResult, _cli_env

pytestmark = pytest.mark.slow  # about two minutes on 2 cores: seed 001's rehearsal is in the middle

QC = "configs/scenarios/queue_conflict.yaml"
TOWN = "configs/examples/poc_hybrid.yaml"
SCENARIOS = ("kitchen_breakfast", "queue_conflict", "employment_punctuality", "rivalry_decay", "observation_baseline")
WATCH = [
    *("--kl-threshold", "0.2", "--grad-threshold", "5.0", "--entropy-threshold", "-0.2"),
    *("--reward-corr-threshold", "-0.5", "--queue-events-min", "25", "--queue-intensity-min", "45"),
    *("--late-help-min", "1", "--shift-takeover-max", "1", "--shared-meal-min", "0", "--chat-quality-min", "0.0"),
    *("--utility-outage-max", "0", "--shower-complete-min", "1", "--sleep-complete-min", "1"),
]
#: The default town's BC, shortened for the test (one epoch over the expert days).
SHORT_BC = "\nbc:\n  manifest: data/bc_datasets/manifests/poc_hybrid_expert_v1.json\n  epochs: 1\n  batch_size: 256\n"
HARNESS_BC = """\
from townlet import load_config
from townlet.training import TrainingHarness

result = TrainingHarness(load_config("configs/examples/poc_hybrid.yaml")).run_bc_training()
print(result.accuracy, result.baseline_accuracy, result.threshold, result.passed, result.checkpoint)
"""


def python(*args: str, stdin: str | None = None, timeout: float = 600) -> CliResult:
    argv = [sys.executable, *args]
    proc = subprocess.run(argv, env=_cli_env(), input=stdin, capture_output=True, text=True, timeout=timeout)
    return CliResult(argv, proc.returncode, proc.stdout, proc.stderr)


def tool(name: str, *args: str) -> CliResult:
    return python(f"tools/{name}", *args)


def ok(res: CliResult) -> CliResult:
    assert res.returncode == 0, str(res)
    assert "Traceback" not in res.stderr, str(res)
    return res


def test_seeds_000_001_002_in_order_in_one_checkout_without_fresh() -> None:
    Path("data").symlink_to(REPO_ROOT / "data", target_is_directory=True)
    with Path(TOWN).open("a", encoding="utf-8") as fh:  # the scratch copy of the default town
        fh.write(SHORT_BC)
    log = "logs/queue_conflict_ppo.jsonl"
    replay = ("run_training.py", QC, "--mode", "replay", "--train-ppo", "--capture-dir", "captures/queue_conflict",
              "--epochs", "2", "--ppo-log", log)  # fmt: skip

    # Seed 000: capture, train PPO on the capture, check and summarise the telemetry, merge the goldens.
    ok(tool("capture_rollout_suite.py", *(f"configs/scenarios/{s}.yaml" for s in SCENARIOS),
            "--output-root", "tmp/rollout_refresh", "--compress"))  # fmt: skip
    for scenario in SCENARIOS:
        assert Path(f"tmp/rollout_refresh/{scenario}/rollout_sample_manifest.json").is_file()
    ok(tool("capture_rollout.py", QC, "--output", "captures/queue_conflict", "--compress"))
    ok(tool("run_training.py", QC, "--rollout-ticks", "20", "--rollout-save-dir", "tmp/queue_conflict"))
    first = ok(tool(*replay))
    assert "inherited" not in first.stderr
    ok(tool("validate_ppo_telemetry.py", log, "--relative"))
    watch = tool("telemetry_watch.py", log, "--follow", "--max-wait", "1", *WATCH, "--json")
    assert watch.returncode in (0, 1) and watch.stdout.strip(), str(watch)  # 1: a threshold breached, by design
    ok(tool("telemetry_summary.py", log, "--format", "markdown"))
    ok(
        tool(
            "telemetry_summary.py",
            log,
            "--format",
            "markdown",
            "--baseline",
            "docs/samples/ppo_conflict_telemetry.jsonl",
        )
    )
    ok(tool("merge_rollout_metrics.py", "tmp/rollout_refresh", "--dry-run"))
    ok(tool("merge_rollout_metrics.py", "tmp/rollout_refresh"))
    # Seed 000's notes: the catalogue, BC through the harness on the default town, then an anneal.
    ok(tool("audit_bc_datasets.py", "--exit-on-failure"))
    bc = ok(python("-", stdin=HARNESS_BC))
    assert "logs/poc_hybrid_v1/bc/checkpoints/bc_latest.json" in bc.stdout, str(bc)

    # Seed 001: the whole rehearsal, in this same checkout (its overlay has its own config id).
    rehearsal = tool("ops_rehearsal.py", "--in-place")
    assert rehearsal.returncode == 0, str(rehearsal)
    assert "rehearsal PASS: 7/7 steps" in rehearsal.stdout

    # Seed 002's certificate commands: nothing above leaks into the queue_conflict runs.
    ok(tool("capture_rollout.py", QC, "--output", "tmp/ci_phase4"))
    mixed = ok(tool("run_training.py", QC, "--mode", "mixed", "--replay-manifest",
                    "tmp/ci_phase4/rollout_sample_manifest.json", "--rollout-ticks", "40", "--epochs", "1",
                    "--ppo-log", "tmp/ci_phase4/ppo_mixed.jsonl"))  # fmt: skip
    assert "inherited" not in mixed.stderr and "spec differs" not in mixed.stderr
    ok(tool("validate_ppo_telemetry.py", "tmp/ci_phase4/ppo_mixed.jsonl"))
    watched = tool("telemetry_watch.py", "tmp/ci_phase4/ppo_mixed.jsonl", "--json")
    assert watched.returncode in (0, 1) and watched.stdout.strip(), str(watched)
    ok(tool("telemetry_summary.py", "tmp/ci_phase4/ppo_mixed.jsonl", "--format", "markdown"))
    # And seed 000's replay once more, the next time round: still no --fresh needed.
    again = ok(tool(*replay))
    assert "inherited" not in again.stderr

    # Each config's checkpoints in its own folder; the checkpoint tool finds them all from logs/.
    listed = json.loads(ok(tool("checkpoint_tool.py", "list", "logs", "--json")).stdout)
    where = {(row["config_id"], row["metadata"]["phase"]) for row in listed}
    assert {("scenario_queue_conflict", "ppo"), ("poc_hybrid_v1", "bc")} <= where, where
    assert {("poc_hybrid_acceptance_idle_v1", "bc"), ("poc_hybrid_acceptance_idle_v1", "ppo")} <= where, where
    for row in listed:
        config_id, phase = row["config_id"], row["metadata"]["phase"]
        assert row["file"].startswith(f"{config_id}/{phase}/checkpoints/"), row["file"]
    assert not Path("logs/bc").exists() and not Path("logs/ppo").exists()
