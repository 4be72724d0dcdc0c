"""The three telemetry tools (`tools/validate_ppo_telemetry.py`, `tools/telemetry_watch.py`,
`tools/telemetry_summary.py`) run as a user runs them, on logs written by the real trainer: schema problems
named by FILE:LINE, drift thresholds, watcher thresholds, `--follow` across rotation, the summary formats,
the PNG chart, and the trainer's rotation and frequency thinning."""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.image
import pytest

from conftest import REPO_ROOT, CliResult, _cli_env, assert_one_line_error
from townlet.errors import UsageError
from townlet.telemetry.drift import load_baseline
from townlet.telemetry.follow import Follower
from townlet.telemetry.plots import expert_return, render_png
from townlet.telemetry.reader import LogLine, read_records_strict
from townlet.telemetry.records import V11_FIELDS
from townlet.telemetry.summary import render_text, summarise
from townlet.telemetry.thresholds import WATCH_SPECS, Thresholds, docs_table
from townlet.telemetry.validate import validate_log
from townlet.telemetry.watch import check_thresholds
from townlet.telemetry.writer import TelemetryWriter

TRAIN = [
    sys.executable,
    "tools/run_training.py",
    "configs/scenarios/queue_conflict.yaml",
    "--mode",
    "rollout",
    "--num-envs",
    "1",
    "--rollout-ticks",
    "20",
    "-q",
]


def tool(name: str, *args: str | Path, timeout: float = 60) -> CliResult:
    """`python tools/NAME.py ARGS` in the test's scratch working directory."""
    argv = [sys.executable, f"tools/{name}.py", *(str(a) for a in args)]
    proc = subprocess.run(argv, env=_cli_env(), capture_output=True, text=True, timeout=timeout, check=False)
    return CliResult(argv, proc.returncode, proc.stdout, proc.stderr)


def validate(*args: str | Path) -> CliResult:
    return tool("validate_ppo_telemetry", *args)


def watch(*args: str | Path) -> CliResult:
    return tool("telemetry_watch", *args)


def summary(*args: str | Path) -> CliResult:
    return tool("telemetry_summary", *args)


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_records(path: Path, recs: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    return path


@dataclass(frozen=True)
class Logs:
    plain: Path  # 3 epochs
    rotated: Path  # 5 epochs, --ppo-log-max-entries 2
    thinned: Path  # 5 epochs, --ppo-log-frequency 2


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Logs:
    """Three tiny real training runs, started together."""
    d = tmp_path_factory.mktemp("telemetry")
    runs = {
        "plain": ["--epochs", "3"],
        "rotated": ["--epochs", "5", "--ppo-log-max-entries", "2"],
        "thinned": ["--epochs", "5", "--ppo-log-frequency", "2"],
    }
    procs = {
        name: subprocess.Popen(
            [*TRAIN, *extra, "--ppo-log", str(d / f"{name}.jsonl"), "--checkpoint", str(d / f"{name}.safetensors")],
            env=_cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, extra in runs.items()
    }
    results = {}
    try:
        for name, proc in procs.items():
            results[name] = proc.communicate(timeout=180)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for name, proc in procs.items():
        out, err = results[name]
        assert proc.returncode == 0, f"training {name} failed:\n{out}\n{err}"
    return Logs(d / "plain.jsonl", d / "rotated.jsonl", d / "thinned.jsonl")


# -- validate ---------------------------------------------------------------------------------------------------


def test_validate_passes_on_a_real_log(logs: Logs) -> None:
    res = validate(logs.plain)
    assert res.returncode == 0, str(res)
    assert res.stdout.startswith(f"ok: {logs.plain}: 3 records valid"), str(res)
    assert "1.1" in res.stdout and res.stderr.strip() == "", str(res)
    recs = records(logs.plain)
    assert [r["epoch"] for r in recs] == [1, 2, 3]
    assert all(r["telemetry_version"] == "1.1" and r["data_mode"] == "rollout" for r in recs)


def test_relative_without_baseline_reports_drift_from_the_first_record(logs: Logs) -> None:
    """Seed 000 runs `validate_ppo_telemetry.py LOG --relative` as written (issue 13): alone, `--relative` reports
    each epoch's drift from the log's own first record (issue 12 had made it an error, after it printed nothing)."""
    res = validate(logs.plain, "--relative")
    assert res.returncode == 0, str(res)
    lines = res.stdout.splitlines()
    assert lines[0] == f"baseline drift (log - baseline) against {logs.plain}:1 (fixed baseline):", str(res)
    recs = records(logs.plain)
    delta = recs[2]["loss_total"] - recs[0]["loss_total"]
    epoch_3 = next(line for line in lines if line.startswith("  epoch 3: "))
    assert f"loss_total {delta:+.6g} (" in epoch_3, str(res)
    assert "  epoch 1: " in res.stdout and "loss_total +0 (+0.00%)" in res.stdout
    assert res.stdout.splitlines()[-1].startswith(f"ok: {logs.plain}: 3 records valid")


def test_validate_via_the_townlet_cli_group(logs: Logs) -> None:
    argv = [sys.executable, "-m", "townlet", "telemetry", "validate", str(logs.plain)]
    proc = subprocess.run(argv, env=_cli_env(), capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stdout.startswith("ok:"), proc.stdout + proc.stderr


def test_malformed_line_is_reported_with_file_and_line(logs: Logs, tmp_path: Path) -> None:
    lines = logs.plain.read_text(encoding="utf-8").splitlines(keepends=True)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(lines[0] + '{"epoch": 2, "loss_total": \n' + "".join(lines[1:]) + "[1, 2, 3]\n", encoding="utf-8")
    res = validate(bad)
    assert res.returncode == 1, str(res)
    assert "Traceback" not in res.stderr
    # One line per problem; the well-formed records around them are fine.
    assert len(res.stderr_lines) == 2, str(res)
    assert res.stderr_lines[0].startswith(f"error: {bad}:2: malformed JSON (Expecting value at column "), str(res)
    assert res.stderr_lines[1] == f"error: {bad}:5: expected a JSON object, got list", str(res)
    assert res.stdout == ""


def test_missing_field_and_nan_value_are_named(logs: Logs, tmp_path: Path) -> None:
    recs = records(logs.plain)
    del recs[0]["kl_divergence"]
    recs[1]["loss_total"] = math.nan
    recs[2]["conflict.rivalry_max_mean_avg"] = "high"
    path = write_records(tmp_path / "fields.jsonl", recs)
    assert "NaN" in path.read_text(encoding="utf-8")
    res = validate(path)
    assert res.returncode == 1, str(res)
    assert len(res.stderr_lines) == 3, str(res)
    assert f"{path}:1:" in res.stderr_lines[0] and "'kl_divergence'" in res.stderr_lines[0], str(res)
    assert f"{path}:2:" in res.stderr_lines[1] and "'loss_total'" in res.stderr_lines[1], str(res)
    assert "nan" in res.stderr_lines[1], str(res)
    assert f"{path}:3:" in res.stderr_lines[2] and "conflict.rivalry_max_mean_avg" in res.stderr_lines[2]


def test_v10_records_carrying_v11_fields_are_flagged(logs: Logs, tmp_path: Path) -> None:
    v10_dirty = [dict(r, telemetry_version="1.0") for r in records(logs.plain)]
    path = write_records(tmp_path / "v10_dirty.jsonl", v10_dirty)
    res = validate(path)
    assert res.returncode == 1, str(res)
    assert len(res.stderr_lines) == 3 and all("1.1 fields" in line for line in res.stderr_lines), str(res)
    assert f"{path}:1: version 1.0 record carries 1.1 fields" in res.stderr_lines[0], str(res)
    # Without them a 1.0 record is valid.
    v10_clean = [{k: v for k, v in r.items() if k not in (*V11_FIELDS, "data_mode")} for r in v10_dirty]
    assert validate_log(write_records(tmp_path / "v10_clean.jsonl", v10_clean)).ok


def test_v11_needs_data_mode_and_every_v11_number(logs: Logs, tmp_path: Path) -> None:
    recs = records(logs.plain)
    broken = [dict(recs[0], data_mode=3), {k: v for k, v in recs[1].items() if k != "reward_advantage_corr"}]
    path = write_records(tmp_path / "v11_broken.jsonl", broken)
    problems = validate_log(path).problems
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"{path}:1: data_mode must be one of"), problems
    assert problems[1] == f"{path}:2: missing field 'reward_advantage_corr'", problems


def test_baseline_fields_must_be_finite_when_present(logs: Logs, tmp_path: Path) -> None:
    recs = records(logs.plain)
    recs[1]["baseline_reward_sum"] = None
    problems = validate_log(write_records(tmp_path / "base.jsonl", recs)).problems
    assert len(problems) == 1 and ":2: field 'baseline_reward_sum' must be a finite number" in problems[0], problems


def test_offsets_must_increase(logs: Logs, tmp_path: Path) -> None:
    recs = records(logs.plain)
    path = write_records(tmp_path / "twice.jsonl", recs + recs)
    problems = validate_log(path).problems
    assert problems == [f"{path}:4: log_stream_offset 0 does not increase (previous 2 at {path}:3)"], problems


def test_missing_or_unreadable_file_exits_2(tmp_path: Path) -> None:
    assert_one_line_error(validate(tmp_path / "nope.jsonl"), "nope.jsonl", "no such telemetry log")
    assert_one_line_error(watch(tmp_path / "nope.jsonl"), "nope.jsonl")
    assert_one_line_error(summary(tmp_path / "nope.jsonl"), "nope.jsonl")
    with pytest.raises(UsageError, match="is a directory"):
        validate_log(tmp_path)


def test_empty_log_is_a_problem(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    assert validate_log(empty).problems == [f"{empty}: no telemetry records"]


def test_drift_report_and_threshold(logs: Logs, tmp_path: Path) -> None:
    recs = records(logs.plain)
    same = validate_log(logs.plain, baseline=logs.plain, relative=True, drift_threshold=0.0)
    assert same.ok and not same.drift_failures
    assert any("baseline_reward_mean +0 (+0.00%)" in line for line in same.drift_lines), same.drift_lines

    shifted = [dict(r, baseline_reward_mean=r["baseline_reward_mean"] + 1.0) for r in recs]
    base = write_records(tmp_path / "baseline.jsonl", shifted)
    report = validate(logs.plain, "--baseline", base, "--relative")
    assert report.returncode == 0, str(report)  # no threshold: a report only
    assert report.stdout.startswith(f"baseline drift (log - baseline) against {base} (matched by epoch):")
    assert "epoch 3:" in report.stdout and "aggregate" in report.stdout, str(report)
    assert "baseline_reward_mean -1 (" in report.stdout and "%)" in report.stdout, str(report)
    assert report.stdout.splitlines()[-1].startswith("ok:")

    res = validate(logs.plain, "--baseline", base, "--drift-threshold", "0.1")
    assert res.returncode == 1, str(res)
    assert len(res.stderr_lines) == 3, str(res)
    for k, line in enumerate(res.stderr_lines, 1):
        assert f"epoch {k}: baseline_reward_mean drift" in line and "--drift-threshold 0.1" in line, line
        assert line.startswith(f"error: {logs.plain}:{k}:")


def test_drift_against_one_baseline_object(logs: Logs, tmp_path: Path) -> None:
    last = records(logs.plain)[-1]
    obj = tmp_path / "baseline.json"
    obj.write_text(json.dumps({"baseline_reward_sum": last["baseline_reward_sum"], "loss_total": 123.0}, indent=2))
    report = validate_log(logs.plain, baseline=obj, relative=True, drift_threshold=0.5)
    assert "fixed baseline" in report.drift_lines[0]
    # The one object applies to every epoch: loss_total is far off in each; the reward sum, taken from the
    # last epoch, matches there.
    loss = [f for f in report.drift_failures if "loss_total drift -100.0" in f]
    assert [f.split(": ")[1] for f in loss] == ["epoch 1", "epoch 2", "epoch 3"], report.drift_failures
    assert not any("epoch 3: baseline_reward_sum" in f for f in report.drift_failures), report.drift_failures


def test_drift_usage_errors(logs: Logs, tmp_path: Path) -> None:
    assert_one_line_error(validate(logs.plain, "--drift-threshold", "0.1"), "--drift-threshold needs --baseline")
    with pytest.raises(UsageError, match="--baseline"):
        validate_log(logs.plain, baseline=tmp_path / "none.jsonl")
    junk = tmp_path / "junk.jsonl"
    junk.write_text("{not json\n", encoding="utf-8")
    with pytest.raises(UsageError, match=f"{junk}:1"):
        load_baseline(junk)


# -- watch ------------------------------------------------------------------------------------------------------

PERMISSIVE = [
    "--kl-threshold", "10", "--loss-threshold", "100", "--grad-threshold", "1000", "--entropy-threshold", "-10",
    "--reward-corr-threshold", "-2", "--queue-events-min", "0", "--queue-intensity-min", "0",
    "--shared-meal-min", "0", "--late-help-min", "0", "--shift-takeover-max", "1000", "--chat-quality-min", "0",
    "--utility-outage-max", "1000", "--shower-complete-min", "0", "--sleep-complete-min", "0",
    "--anneal-bc-min", "0.9", "--anneal-loss-max", "0.1", "--anneal-queue-min", "0", "--anneal-intensity-min", "0",
]  # fmt: skip


def test_threshold_table_in_the_docs_matches_the_model() -> None:
    doc = (REPO_ROOT / "docs" / "TELEMETRY.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(doc) if line.strip().startswith("| flag | field | breach when |"))
    table = []
    for line in doc[start:]:
        if not line.strip().startswith("|"):
            break
        table.append(line.strip())
    assert "\n".join(table) + "\n" == docs_table()


def test_every_threshold_flag_exists_and_permissive_thresholds_pass(logs: Logs) -> None:
    flags = set(PERMISSIVE[::2])
    assert {spec.flag for spec in WATCH_SPECS} <= flags
    res = watch(logs.plain, *PERMISSIVE)
    assert res.returncode == 0, str(res)
    out = res.stdout.splitlines()
    assert len(out) == 4 and out[0].startswith("epoch 1") and out[2].startswith("epoch 3"), str(res)
    assert out[-1].startswith(f"ok: {logs.plain}: 3 records, epochs 1-3, no breaches of 18 thresholds"), str(res)


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--kl-threshold", "0"], "--kl-threshold 0 breached: kl_divergence"),
        (["--queue-events-min", "1e9"], "--queue-events-min 1000000000 breached: queue_conflict_events 0 <"),
    ],
)
def test_strict_threshold_breaches_with_exit_1(logs: Logs, flags: list[str], named: str) -> None:
    res = watch(logs.plain, *flags)
    assert res.returncode == 1, str(res)
    assert len(res.stdout.splitlines()) == 1, str(res)  # stops at the first breaching record
    assert len(res.stderr_lines) == 1, str(res)
    line = res.stderr_lines[0]
    assert line.startswith("breach: ") and named in line, line
    assert f"at epoch 1 ({logs.plain}:1)" in line, line


def breaches(rec: dict[str, Any], **limits: float) -> list[str]:
    return [b.message for b in check_thresholds(rec, Thresholds(**limits), "LOG:1")]


def test_rollout_thresholds_skip_replay_records(logs: Logs) -> None:
    rec = records(logs.plain)[0]
    strict = {"queue_events_min": 1e9, "shower_complete_min": 5.0, "shift_takeover_max": -1.0}
    assert len(breaches(rec, **strict)) == 3
    assert breaches(dict(rec, data_mode="replay"), **strict) == []
    assert len(breaches(dict(rec, data_mode="mixed"), **strict)) == 3
    # The always-on thresholds apply to every mode.
    assert len(breaches(dict(rec, data_mode="replay"), grad_threshold=0.0, entropy_threshold=100.0)) == 2


def test_missing_or_nan_watched_value_breaches(logs: Logs) -> None:
    rec = records(logs.plain)[0]
    (msg,) = breaches(dict(rec, kl_divergence=math.nan), kl_threshold=10.0)
    assert "kl_divergence is not a finite number (nan)" in msg and "(LOG:1)" in msg
    (msg,) = breaches({k: v for k, v in rec.items() if k != "sleep_complete_events"}, sleep_complete_min=0.0)
    assert msg == "--sleep-complete-min 0 breached: sleep_complete_events is missing at epoch 1 (LOG:1)"


ANNEAL = {
    "anneal_stage": "ppo",
    "anneal_cycle": 1,
    "anneal_dataset": "idle_v1",
    "anneal_bc_accuracy": 0.95,
    "anneal_bc_threshold": 0.9,
    "anneal_bc_passed": True,
    "anneal_queue_baseline": 0.0,
    "anneal_intensity_baseline": 0.0,
    "anneal_loss_flag": False,
    "anneal_queue_flag": False,
    "anneal_intensity_flag": False,
}


def test_anneal_thresholds(logs: Logs, tmp_path: Path) -> None:
    recs = records(logs.plain)
    rec = {**recs[-1], **ANNEAL, "anneal_loss_baseline": recs[-1]["loss_total"]}
    assert breaches(rec) == []  # defaults: bc >= 0.9, loss within 10%, queue/intensity >= 0.85 x baseline
    assert breaches({**rec, "anneal_loss_baseline": rec["loss_total"] * 1.05}) == []
    (msg,) = breaches({**rec, "anneal_loss_baseline": rec["loss_total"] * 2})
    assert msg.startswith("--anneal-loss-max 0.1 breached: anneal_loss_drift 0.5 > 0.1")
    (msg,) = breaches({**rec, "anneal_queue_baseline": 10.0})
    assert msg.startswith("--anneal-queue-min 8.5 breached: queue_conflict_events 0 < 8.5")
    assert breaches({**rec, "anneal_queue_baseline": 10.0}, anneal_queue_min=0.0) == []
    (msg,) = breaches({**rec, "anneal_intensity_baseline": 4.0})
    assert msg.startswith("--anneal-intensity-min 3.4 breached")
    # The real tool, default --anneal-bc-min 0.9:
    path = write_records(tmp_path / "anneal.jsonl", [*recs[:-1], {**rec, "anneal_bc_accuracy": 0.5}])
    res = watch(path)
    assert res.returncode == 4, str(res)  # an anneal FAIL (BC accuracy), distinct from HOLD (3) and other breaches (1)
    assert res.stderr_lines == [
        f"breach: --anneal-bc-min 0.9 breached: anneal_bc_accuracy 0.5 < 0.9 at epoch 3 ({path}:3) (anneal FAIL)"
    ], str(res)
    assert "anneal ppo bc 0.5" in res.stdout.splitlines()[-1]


def test_watch_json_lines_parse(logs: Logs) -> None:
    res = watch(logs.plain, "--json", "--kl-threshold", "10")
    assert res.returncode == 0, str(res)
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    recs = records(logs.plain)
    for row, rec in zip(rows, recs, strict=True):
        assert row["breaches"] == []
        assert row["kl_divergence"] == rec["kl_divergence"] and row["line"] == rec["epoch"]
        assert {spec.key for spec in WATCH_SPECS} <= row.keys()
    breach = watch(logs.plain, "--json", "--grad-threshold", "0")
    assert breach.returncode == 1
    (row,) = [json.loads(line) for line in breach.stdout.splitlines()]
    assert row["breaches"][0]["flag"] == "--grad-threshold" and row["breaches"][0]["value"] > 0


def test_watch_malformed_line_names_it(logs: Logs, tmp_path: Path) -> None:
    path = write_records(tmp_path / "w.jsonl", records(logs.plain))
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("garbage\n")
    res = watch(path)
    assert res.returncode == 1 and f"{path}:4: malformed JSON" in res.stderr, str(res)


def _next_row(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """The watcher's next JSON line; blocks until it prints one."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, "the watcher stopped before printing the expected line"
    row: dict[str, Any] = json.loads(line)
    return row


def test_follow_picks_up_appended_lines_across_rotation_and_stops(logs: Logs, tmp_path: Path) -> None:
    base = records(logs.plain)
    recs = [dict(base[k % 3], epoch=k + 1) for k in range(5)]
    path = tmp_path / "live.jsonl"
    # The trainer is ahead of the watcher: it rotated (LOG.1 holds epochs 1-2) before the watcher opens the log.
    writer = TelemetryWriter(path, max_entries=2)
    for rec in recs[:3]:
        writer.write(rec)
    argv = [sys.executable, "tools/telemetry_watch.py", str(path), "--follow", "--json"]
    argv += ["--interval", "0.05", "--max-wait", "2", "--kl-threshold", "10"]
    proc = subprocess.Popen(argv, env=_cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Each write waits for the line the previous one must produce: no timing assumptions.
        rows = [_next_row(proc) for _ in range(3)]
        writer.write(recs[3])
        rows.append(_next_row(proc))
        writer.write(recs[4])  # rotates again: LOG.2 epochs 1-2, LOG.1 epochs 3-4, LOG epoch 5
        rows.append(_next_row(proc))
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0 and rest == "", rest + err
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5], rows
    assert [r["log_stream_offset"] for r in rows] == [0, 1, 2, 3, 4]
    assert [Path(r["file"]).name for r in rows[:3]] == ["live.jsonl.1", "live.jsonl.1", "live.jsonl"], rows
    assert Path(f"{path}.2").exists() and Path(f"{path}.1").exists()
    assert "no new data for 2s" in err


def test_follower_reads_rotations_it_did_not_see_partial_lines_and_truncation(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    follower = Follower(path)
    assert follower.poll() == [] and not follower.opened  # waits for the log
    writer = TelemetryWriter(path, max_entries=2)
    for epoch in (1, 2, 3):  # rotates before the follower opens the log
        writer.write({"epoch": epoch})

    def epochs(lines: list[Any]) -> list[int]:
        return [json.loads(ln.data)["epoch"] for ln in lines]

    first = follower.poll()
    assert epochs(first) == [1, 2, 3]
    assert [(Path(ln.file).name, ln.line) for ln in first] == [("log.jsonl.1", 1), ("log.jsonl.1", 2), ("log.jsonl", 1)]
    for epoch in (4, 5, 6, 7):  # two rotations between polls
        writer.write({"epoch": epoch})
    assert epochs(follower.poll()) == [4, 5, 6, 7]
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"epoch": 8')  # a line still being written is not a line yet
        fh.flush()
        assert follower.poll() == []
        fh.write("}\n")
    assert epochs(follower.poll()) == [8]
    path.write_text('{"epoch": 100}\n', encoding="utf-8")  # truncated and rewritten in place
    assert epochs(follower.poll()) == [100]
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"epoch": 101}')
    assert follower.poll() == [] and epochs(follower.finish()) == [101]  # stopping: the last partial line counts


def test_a_tail_follower_skips_rotated_files_already_there(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    writer = TelemetryWriter(path, max_entries=1)
    for epoch in (1, 2):
        writer.write({"epoch": epoch})
    notes: list[str] = []
    with Follower(path, offset=path.stat().st_size, note=notes.append) as follower:
        assert follower.poll() == []
        writer.write({"epoch": 3})  # rotates; LOG.2 (epoch 1) was there before the tail started
        assert [json.loads(ln.data)["epoch"] for ln in follower.poll()] == [3]
    assert notes == [f"{path}: replaced (rotated); reading the new file from its start"]


def test_follow_stops_on_a_breach_in_new_lines(logs: Logs, tmp_path: Path) -> None:
    recs = records(logs.plain)
    path = write_records(tmp_path / "live.jsonl", recs[:1])
    argv = [sys.executable, "tools/telemetry_watch.py", str(path), "--follow", "--interval", "0.1"]
    argv += ["--max-wait", "20", "--loss-threshold", "5"]
    proc = subprocess.Popen(argv, env=_cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().startswith("epoch 1 ")  # the watcher has read the log: now append
        with open(path, "a", encoding="utf-8") as fh:
            line = json.dumps(dict(recs[1], loss_total=9.5))
            fh.write(line[:40])  # a partial line is not read until its newline arrives
            fh.flush()
            fh.write(line[40:] + "\n")
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, out + err
    assert time.monotonic() - t0 < 10
    assert f"--loss-threshold 5 breached: loss_total 9.5 > 5 at epoch 2 ({path}:2)" in err


def test_follow_gives_up_on_a_log_that_never_appears(tmp_path: Path) -> None:
    res = watch(tmp_path / "never.jsonl", "--follow", "--interval", "0.1", "--max-wait", "0.5")
    assert_one_line_error(res, "never.jsonl", "waited 0.5s")


# -- summary ----------------------------------------------------------------------------------------------------


def test_summary_text(logs: Logs) -> None:
    res = summary(logs.plain)
    assert res.returncode == 0, str(res)
    last = records(logs.plain)[-1]
    out = res.stdout
    for section in ("PPO telemetry summary", "latest (epoch 3):", "extremes (min .. max):"):
        assert section in out, out
    for key in ("log_stream_offset", "cycle_id", "data_mode", "sps", "explained_variance", "episode_return_mean"):
        assert key in out
    assert f"{last['loss_total']:.6g}" in out
    assert "anneal" not in out and "baseline_drift" not in out


def test_summary_markdown_with_baseline(logs: Logs) -> None:
    res = summary(logs.plain, "--format", "markdown", "--baseline", logs.plain)
    assert res.returncode == 0, str(res)
    out = res.stdout
    for section in ("# PPO telemetry summary", "## Latest (epoch 3)", "## Extremes", "## Baseline drift"):
        assert section in out, out
    assert "| loss_total |" in out and "| key | log | baseline | delta | percent |" in out
    assert "| baseline_reward_mean |" in out and "+0.00%" in out


def test_summary_json_last(logs: Logs) -> None:
    recs = records(logs.plain)
    res = summary(logs.plain, "--format", "json", "--last", "2")
    assert res.returncode == 0, str(res)
    s = json.loads(res.stdout)
    assert s["records"] == 2 and s["epochs"] == {"count": 2, "first": 2, "last": 3}
    assert s["data_mode"] == "rollout" and s["log_stream_offset"] == 2 and s["cycle_id"] == recs[-1]["cycle_id"]
    assert s["latest"]["loss_total"] == recs[-1]["loss_total"]
    assert s["latest"]["rollout_ticks"] == 20
    assert s["extremes"]["grad_norm"] == {
        "min": min(r["grad_norm"] for r in recs[1:]),
        "max": max(r["grad_norm"] for r in recs[1:]),
    }
    assert s["anneal"] is None and s["baseline_drift"] is None


def test_summary_anneal_block(logs: Logs, tmp_path: Path) -> None:
    recs = records(logs.plain)
    path = write_records(tmp_path / "anneal.jsonl", [*recs[:-1], {**recs[-1], **ANNEAL}])
    s = summarise(read_records_strict(path), log=path)
    assert s["anneal"]["epoch"] == 3 and s["anneal"]["anneal_stage"] == "ppo"
    assert s["anneal"]["anneal_bc_accuracy"] == 0.95 and s["anneal"]["anneal_loss_baseline"] is None
    text = render_text(s)
    assert "anneal (epoch 3):" in text and "anneal_loss_flag" in text and "anneal_dataset" in text


def test_summary_errors(logs: Logs, tmp_path: Path) -> None:
    assert_one_line_error(summary(logs.plain, "--format", "html"), "--format must be text, markdown or json")
    with pytest.raises(UsageError, match="--last"):
        summarise([LogLine("x", 1, {})], log=tmp_path, last=0)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(logs.plain.read_text(encoding="utf-8") + "oops\n", encoding="utf-8")
    with pytest.raises(Exception, match=f"{bad}:4: malformed JSON"):
        read_records_strict(bad)


def test_summary_plot_writes_a_real_png(logs: Logs, tmp_path: Path) -> None:
    png = tmp_path / "plots" / "run.png"
    res = summary(logs.plain, "--plot", png)
    assert res.returncode == 0, str(res)
    assert f"plot written to {png}" in res.stdout
    assert [p.name for p in png.parent.iterdir()] == ["run.png"]  # atomic: no temp files left
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    w, h = struct.unpack(">II", data[16:24])
    assert (w, h) == (1000, 700)
    img = matplotlib.image.imread(png)
    assert img.shape[:2] == (h, w)
    # Ink (lines, axes, labels) in each of the four panels.
    ink = (img[:, :, :3] < 0.9).any(axis=2)
    for rows in (slice(0, h // 2), slice(h // 2, h)):
        for cols in (slice(0, w // 2), slice(w // 2, w)):
            assert ink[rows, cols].sum() > 2000, (rows, cols)


def test_plot_draws_the_experts_return_when_known(logs: Logs) -> None:
    recs = records(logs.plain)
    assert expert_return(recs) is None  # rollout mode: the baseline block is the learner's own
    replay = [dict(r, data_mode="replay", baseline_reward_sum_mean=0.75) for r in recs]
    assert expert_return(replay) == 0.75
    plain = render_png(recs)
    assert plain == render_png(recs)  # the same records give the same bytes
    assert render_png(recs, expert=0.75) != plain


# -- the trainer's rotation and thinning ------------------------------------------------------------------------


def test_rotation_writes_suffixed_files_with_increasing_offsets(logs: Logs) -> None:
    log = logs.rotated
    assert log.exists() and Path(f"{log}.1").exists() and Path(f"{log}.2").exists()
    assert not Path(f"{log}.3").exists()
    chain = [Path(f"{log}.2"), Path(f"{log}.1"), log]
    per_file = [[r["epoch"] for r in records(p)] for p in chain]
    assert per_file == [[1, 2], [3, 4], [5]]
    offsets = [r["log_stream_offset"] for p in chain for r in records(p)]
    assert offsets == sorted(offsets) and len(set(offsets)) == 5 and offsets[0] == 0
    res = validate(log, "--include-rotated")
    assert res.returncode == 0 and "5 records valid" in res.stdout, str(res)
    s = json.loads(summary(log, "--format", "json", "--include-rotated").stdout)
    assert s["records"] == 5 and s["epochs"]["first"] == 1 and s["log_stream_offset"] == 4
    res = watch(log, "--include-rotated", "--json")
    assert [json.loads(line)["epoch"] for line in res.stdout.splitlines()] == [1, 2, 3, 4, 5], str(res)


def test_frequency_thinning_keeps_every_kth_and_the_final_epoch(logs: Logs) -> None:
    recs = records(logs.thinned)
    assert [r["epoch"] for r in recs] == [2, 4, 5]
    assert [r["log_stream_offset"] for r in recs] == [0, 1, 2]
    assert validate(logs.thinned).returncode == 0


def test_a_new_run_drops_a_previous_runs_rotated_files(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    Path(f"{path}.1").write_text('{"stale": true}\n', encoding="utf-8")
    Path(f"{path}.2").write_text('{"stale": true}\n', encoding="utf-8")
    writer = TelemetryWriter(path, max_entries=1)
    for epoch in (1, 2):
        writer.write({"epoch": epoch})
    assert records(Path(f"{path}.1")) == [{"epoch": 1, "log_stream_offset": 0}]
    assert not Path(f"{path}.2").exists()
