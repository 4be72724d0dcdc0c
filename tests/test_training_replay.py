"""Seeds 000 and 002 through the real command line: capture a scenario with tools/capture_rollout.py,
train PPO on the capture (replay), on the capture plus fresh rollouts (mixed), capture through
run_training's --rollout-save-dir, and refuse bad replay data with a one-line error.

Capture-driven tests carry "capture" in their names (the seed runs `pytest ... -k capture`)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import REPO_ROOT, CliResult, _cli_env, assert_one_line_error
from townlet.artifacts.checkpoint import fingerprint, load_checkpoint
from townlet.sim.config import load_config
from townlet.sim.env import VecTown
from townlet.telemetry.records import BASELINE_FIELDS, CONFLICT_FIELDS, check_record

QUEUE_CONFLICT = "configs/scenarios/queue_conflict.yaml"
OBSERVATION_BASELINE = "configs/scenarios/observation_baseline.yaml"
MANIFEST = "rollout_sample_manifest.json"
METRICS = "rollout_sample_metrics.json"


def run_tool(script: str, *args: str | Path, timeout: float = 240) -> CliResult:
    """`python tools/SCRIPT ARGS` in the test's scratch working directory."""
    argv = [sys.executable, f"tools/{script}", *(str(a) for a in args)]
    proc = subprocess.run(argv, env=_cli_env(), capture_output=True, text=True, timeout=timeout, check=False)
    return CliResult(argv, proc.returncode, proc.stdout, proc.stderr)


def read_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def assert_valid_records(records: list[dict[str, Any]], log: Path) -> None:
    assert records, f"{log} holds no records"
    for k, rec in enumerate(records, 1):
        assert check_record(rec, where=f"{log}:{k}") == []
        assert rec["telemetry_version"] == "1.1"
        kl = rec["kl_divergence"]
        assert isinstance(kl, float) and math.isfinite(kl)
        for key in CONFLICT_FIELDS:
            assert key.startswith("conflict.rivalry_") and isinstance(rec[key], float)


@pytest.fixture(scope="module")
def qc_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """queue_conflict captured by the seed's command (scripted policy, the scenario's 80 ticks)."""
    out = tmp_path_factory.mktemp("capture") / "queue_conflict"
    res = run_tool("capture_rollout.py", QUEUE_CONFLICT, "--output", out)
    assert res.returncode == 0, str(res)
    assert "captured 3 samples" in res.stdout
    return out


@pytest.fixture(scope="module")
def qc_metrics(qc_capture: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((qc_capture / METRICS).read_text(encoding="utf-8"))
    return data


def test_capture_replay_training_seed000(qc_capture: Path, qc_metrics: dict[str, Any], tmp_path: Path) -> None:
    log = tmp_path / "logs" / "queue_conflict_ppo.jsonl"
    ckpt = tmp_path / "ppo.safetensors"
    res = run_tool(
        "run_training.py", QUEUE_CONFLICT, "--mode", "replay", "--train-ppo", "--capture-dir", qc_capture,
        "--epochs", "2", "--ppo-log", log, "--checkpoint", ckpt,
    )  # fmt: skip
    assert res.returncode == 0, str(res)
    assert "trained 2 epochs" in res.stdout
    records = read_log(log)
    assert_valid_records(records, log)
    assert [r["epoch"] for r in records] == [1, 2]
    assert [r["log_stream_offset"] for r in records] == [0, 1]

    samples = qc_metrics["samples"]
    sums = [m["reward_sum"] for m in samples.values()]
    means = [m["reward_mean"] for m in samples.values()]
    alive = sum(m["alive_ticks"] for m in samples.values())
    events = qc_metrics["events"]
    assert events["queue_conflict_events"] > 0, "the scenario should produce queue conflicts"
    for rec in records:
        assert rec["data_mode"] == "replay"
        assert rec["cycle_id"] == 0 and rec["rollout_ticks"] == 0
        assert all(key in rec for key in BASELINE_FIELDS)
        # baseline_* is what the captured metrics imply.
        assert rec["baseline_sample_count"] == len(samples) == 3
        assert rec["baseline_reward_sum"] == pytest.approx(sum(sums), rel=1e-5, abs=1e-6)
        assert rec["baseline_reward_sum_mean"] == pytest.approx(sum(sums) / len(sums), rel=1e-5, abs=1e-6)
        assert rec["baseline_reward_mean"] == pytest.approx(sum(means) / len(means), rel=1e-5, abs=1e-6)
        # One row per tick an agent was alive, every epoch over the same data.
        assert rec["transitions"] == alive
        assert rec["updates"] > 0
        # The replayed dataset's conflict telemetry: its rivalry features and its event totals.
        assert rec["conflict.rivalry_max_max_avg"] > 0.0
        assert rec["conflict.rivalry_avoid_count_max_avg"] >= 1.0
        assert rec["queue_conflict_events"] == events["queue_conflict_events"]
        assert rec["queue_conflict_intensity_sum"] == pytest.approx(events["queue_conflict_intensity_sum"])
    assert records[1]["steps"] == 2 * records[0]["steps"]
    assert records[1]["lr"] < records[0]["lr"]  # linear annealing

    # The checkpoint carries the config's observation spec, so it drives that config's towns.
    header = load_checkpoint(ckpt).header
    meta = VecTown(load_config(REPO_ROOT / QUEUE_CONFLICT), 1, num_threads=1).observation_metadata()
    assert header["fingerprint"] == fingerprint(header["architecture"], meta)
    assert header["metadata"]["mode"] == "replay"
    assert header["counters"] == {"epochs": 2, "steps": records[-1]["steps"]}


def test_capture_mixed_training_seed002(qc_capture: Path, qc_metrics: dict[str, Any], tmp_path: Path) -> None:
    log = tmp_path / "ppo_mixed.jsonl"
    res = run_tool(
        "run_training.py", QUEUE_CONFLICT, "--mode", "mixed", "--replay-manifest", qc_capture / MANIFEST,
        "--rollout-ticks", "40", "--epochs", "1", "--ppo-log", log, "--checkpoint", tmp_path / "mixed.safetensors",
    )  # fmt: skip
    assert res.returncode == 0, str(res)
    records = read_log(log)
    assert_valid_records(records, log)
    assert len(records) == 1
    rec = records[0]
    assert rec["data_mode"] == "mixed"
    assert rec["rollout_ticks"] == 40 and rec["cycle_id"] == 1
    replay_rows = sum(m["alive_ticks"] for m in qc_metrics["samples"].values())
    assert rec["transitions"] > replay_rows  # rollout rows on top of the replayed ones
    # The dataset's queue conflicts: at least the replayed capture's, plus any the rollout produced.
    events = qc_metrics["events"]
    assert isinstance(rec["queue_conflict_events"], float)
    assert rec["queue_conflict_events"] >= events["queue_conflict_events"] > 0
    assert rec["queue_conflict_intensity_sum"] >= events["queue_conflict_intensity_sum"] > 0
    # Mixed-mode baselines come from the fresh rollout: one sample per agent slot (8 towns x 3).
    assert rec["baseline_sample_count"] == 24


def test_capture_via_rollout_save_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--rollout-ticks N --rollout-save-dir DIR` alone captures (no training) the same files as the capture tool."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # compared byte for byte: pin the capture date
    via_training = tmp_path / "via_training"
    via_tool = tmp_path / "via_tool"
    log = tmp_path / "never.jsonl"
    res = run_tool(
        "run_training.py", QUEUE_CONFLICT, "--rollout-ticks", "20", "--rollout-save-dir", via_training,
        "--ppo-log", log,
    )  # fmt: skip
    assert res.returncode == 0, str(res)
    assert "captured 3 samples" in res.stdout and "trained" not in res.stdout
    assert not log.exists()
    res = run_tool("capture_rollout.py", QUEUE_CONFLICT, "--output", via_tool, "--ticks", "20")
    assert res.returncode == 0, str(res)
    names = sorted(p.name for p in via_training.iterdir())
    assert names == sorted(p.name for p in via_tool.iterdir())
    assert MANIFEST in names and METRICS in names
    assert sum(n.endswith(".npz") for n in names) == 3
    for name in names:
        assert (via_training / name).read_bytes() == (via_tool / name).read_bytes(), name
    manifest = json.loads((via_training / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["metadata"]["ticks"] == 20
    assert all(s["frame_count"] == 20 for s in manifest["samples"])


def replay(capture: Path | str, tmp_path: Path, *extra: str) -> CliResult:
    return run_tool(
        "run_training.py", QUEUE_CONFLICT, "--mode", "replay", "--train-ppo", "--capture-dir", capture,
        "--epochs", "1", "--checkpoint", tmp_path / "ckpt.safetensors", *extra,
    )  # fmt: skip


def test_replay_missing_capture_dir(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_capture"
    line = assert_one_line_error(replay(missing, tmp_path), str(missing), "not found")
    assert "capture directory" in line
    assert not (tmp_path / "ckpt.safetensors").exists()


def test_capture_replay_empty_manifest(qc_capture: Path, tmp_path: Path) -> None:
    capture = tmp_path / "empty"
    shutil.copytree(qc_capture, capture)
    (capture / MANIFEST).write_text(json.dumps({"metadata": {}, "samples": []}), encoding="utf-8")
    assert_one_line_error(replay(capture, tmp_path), str(capture / MANIFEST), "empty")


def test_capture_replay_corrupt_npz(qc_capture: Path, tmp_path: Path) -> None:
    capture = tmp_path / "corrupt"
    shutil.copytree(qc_capture, capture)
    victim = capture / json.loads((capture / MANIFEST).read_text(encoding="utf-8"))["samples"][1]["sample"]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])  # truncated mid-archive
    assert_one_line_error(replay(capture, tmp_path), str(victim), "not a readable .npz")


@pytest.mark.parametrize("mode", ["replay", "mixed"])
def test_capture_replay_observation_spec_mismatch(mode: str, tmp_path: Path) -> None:
    """Data captured on observation_baseline (same sizes, other affordance features and actions)
    must not train a queue_conflict policy."""
    capture = tmp_path / "observation_baseline"
    res = run_tool("capture_rollout.py", OBSERVATION_BASELINE, "--output", capture)
    assert res.returncode == 0, str(res)
    res = run_tool(
        "run_training.py", QUEUE_CONFLICT, "--mode", mode, "--replay-manifest", capture / MANIFEST,
        "--epochs", "1", "--rollout-ticks", "20", "--num-envs", "1", "--checkpoint", tmp_path / "c.safetensors",
    )  # fmt: skip
    line = assert_one_line_error(res, str(capture / MANIFEST), QUEUE_CONFLICT, "different observation/action spec")
    assert "feature_names" in line and "action_names" in line
    assert not (tmp_path / "c.safetensors").exists()


def test_training_harness_rollout_queue_conflict_metrics(
    qc_capture: Path, qc_metrics: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seed 002's named check: a mixed run through the training harness (`training.run`: request -> plan -> run,
    what run_training.py runs) reports, every epoch, queue-conflict events and intensity equal to what the world
    counted: the towns' own event totals over the epoch's rollout, plus the replayed capture's totals."""
    import townlet.training.phases.ppo as ppo_phase
    from townlet.training.run import TrainRequest, plan, run

    towns: list[ppo_phase.TownTrainEnv] = []

    class Probe(ppo_phase.TownTrainEnv):  # the harness's towns, kept so the test can ask the world
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            towns.append(self)

    monkeypatch.setattr(ppo_phase, "TownTrainEnv", Probe)
    world: list[tuple[float, float]] = []

    def count(rec: dict[str, Any]) -> None:
        native = towns[0].vec.native
        k = list(native.event_names()).index("queue_conflict")
        n = towns[0].vec.num_envs
        world.append(
            (
                float(sum(int(native.event_totals(t)[k]) for t in range(n))),
                float(sum(float(native.event_value_totals(t)[k]) for t in range(n))),
            )
        )

    # A mostly scripted blend (anneal ratio 0.25) so the towns queue and conflict like the scenario's agents;
    # 2 x 30 ticks stay inside the scenario's 80-tick episode, so the world's totals never reset.
    raw = yaml.safe_load((REPO_ROOT / QUEUE_CONFLICT).read_text(encoding="utf-8"))
    raw["training"] = {"anneal_ratio": 0.25}
    config = tmp_path / "queue_conflict.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    log = tmp_path / "mixed.jsonl"
    request = TrainRequest(
        config=config, mode="mixed", epochs=2, overrides={"rollout_ticks": 30, "num_envs": 2},
        replay_manifest=qc_capture / MANIFEST, ppo_log=log, checkpoint=tmp_path / "mixed.json",
    )  # fmt: skip
    out = run(plan(request), on_epoch=count)
    records = read_log(log)
    assert_valid_records(records, log)
    assert len(towns) == 1 and [r["epoch"] for r in records] == [1, 2] and len(world) == 2
    assert [r["epoch"] for r in out.result.records] == [1, 2]
    captured = qc_metrics["events"]
    (events_1, intensity_1), (events_2, intensity_2) = world
    assert events_2 > 0 and intensity_2 > 0, "the scripted share should make the towns conflict"
    per_epoch = [(events_1, intensity_1), (events_2 - events_1, intensity_2 - intensity_1)]
    for rec, (events, intensity) in zip(records, per_epoch, strict=True):
        assert rec["data_mode"] == "mixed" and rec["rollout_ticks"] == 30 and rec["anneal_ratio"] == 0.25
        assert rec["queue_conflict_events"] == events + captured["queue_conflict_events"]
        assert rec["queue_conflict_intensity_sum"] == pytest.approx(
            intensity + captured["queue_conflict_intensity_sum"], rel=1e-5
        )
