"""`capture_rollout_suite.py --backend ray`: the golden scenarios spread over Ray shard actors on the two-node
loopback cluster (`ray_cluster` fixture) give the same files, byte for byte, and the same lines, in the same order,
as the local suite."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO_ROOT, CliResult, assert_one_line_error
from townlet.capture.remote import CaptureJob, capture_files
from townlet.sim.config import load_config

SCENARIOS = ("kitchen_breakfast", "queue_conflict", "employment_punctuality", "rivalry_decay", "observation_baseline")
SUITE = "tools/capture_rollout_suite.py"
STAMP = "1970-01-01T00:00:00Z"


def run_suite(*args: str | Path) -> CliResult:
    from test_rollout_capture import tool_env  # SOURCE_DATE_EPOCH=0, plain output

    argv = [sys.executable, SUITE, *(str(a) for a in args)]
    proc = subprocess.run(argv, env=tool_env(), capture_output=True, text=True, timeout=300, check=False)
    return CliResult(argv, proc.returncode, proc.stdout, proc.stderr)


def digests(root: Path) -> dict[str, str]:
    """Every file under `root` (relative path -> sha256); folders and hidden staging leftovers included."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "<dir>"
        for p in sorted(root.rglob("*"))
    }


@pytest.mark.ray_cluster
def test_ray_suite_is_byte_identical_to_the_local_suite(tmp_path: Path, ray_cluster: Any) -> None:
    configs = [f"configs/scenarios/{s}.yaml" for s in SCENARIOS]
    local = run_suite(*configs, "--output-root", tmp_path / "local", "--compress")
    assert local.returncode == 0, str(local)
    spread = run_suite(
        *configs, "--output-root", tmp_path / "ray", "--compress",
        "--backend", "ray", "--shards", "2", "--ray-address", ray_cluster.address,
    )  # fmt: skip
    assert spread.returncode == 0, str(spread)
    # The same lines in scenario order (never arrival order), naming the ray root instead of the local one.
    assert spread.stdout == local.stdout.replace(str(tmp_path / "local"), str(tmp_path / "ray")), str(spread)
    assert [ln.split(":")[0] for ln in spread.stdout.splitlines()] == list(SCENARIOS)
    want = digests(tmp_path / "local")
    assert len(want) > 3 * len(SCENARIOS)
    assert digests(tmp_path / "ray") == want


@pytest.mark.ray_cluster
def test_shards_spread_over_both_nodes_and_results_come_in_job_order(tmp_path: Path, ray_cluster: Any) -> None:
    from townlet.training import ray_capture
    from townlet.training.ray_cluster import connect

    ray = connect(ray_cluster.address)
    try:
        # The second node has started; until the head has its resources, placement there falls back to the head.
        deadline = time.monotonic() + 120
        while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        jobs = [
            CaptureJob(load_config(Path(f"configs/scenarios/{s}.yaml")), tmp_path / s, "1970-01-01T00:00:00Z", ticks=5)
            for s in SCENARIOS[:3]
        ]
        actors, refs = ray_capture.spread(ray, jobs, shards=2)
        assert len(actors) == 2 and len(refs) == 3
        assert len(set(ray.get([a.node_id.remote() for a in actors], timeout=60))) == 2  # one shard per node
        ray.get(refs)
        for actor in actors:
            ray.kill(actor)
        done = list(ray_capture.capture_suite(jobs, shards=5, address=ray_cluster.address))
        assert [d.job for d in done] == jobs  # job order; 5 shards asked, 3 jobs: 3 actors
        for d in done:
            assert (d.job.folder / "rollout_sample_manifest.json").read_bytes() == d.captured.files[d.captured.last]
    finally:
        ray.shutdown()


@pytest.mark.ray_cluster
def test_a_shards_usage_error_is_one_line_and_nothing_is_written(tmp_path: Path, ray_cluster: Any) -> None:
    res = run_suite(
        "configs/scenarios/queue_conflict.yaml", "--output-root", tmp_path / "out", "--agent-filter", "nobody",
        "--backend", "ray", "--ray-address", ray_cluster.address,
    )  # fmt: skip
    assert_one_line_error(res, "--agent-id 'nobody'", "no such agent")
    assert not (tmp_path / "out" / "queue_conflict").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "spark"], "--backend 'spark'"),
        (["--shards", "2"], "--shards needs --backend ray"),
        (["--ray-address", "127.0.0.1:1"], "--ray-address needs --backend ray"),
    ],
)
def test_backend_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    res = run_suite("configs/scenarios/queue_conflict.yaml", "--output-root", tmp_path / "out", *args)
    assert_one_line_error(res, message)
    assert not (tmp_path / "out").exists()


def test_make_capture_passes_the_backend_on() -> None:
    argv = ["make", "-n", "-C", str(REPO_ROOT), "capture", "BACKEND=ray", "SHARDS=3", "RAY_ADDRESS=127.0.0.1:6379"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if "capture_rollout_suite.py" in ln)
    assert "--backend ray --shards '3' --ray-address '127.0.0.1:6379'" in line
    plain = subprocess.run(argv[:5], capture_output=True, text=True, timeout=60, check=False)
    assert "--backend" not in plain.stdout


@pytest.mark.ray_cluster
def test_a_killed_capture_shard_is_restarted_once_then_the_suite_stops_with_one_line(
    tmp_path: Path, ray_cluster: Any
) -> None:
    from townlet.errors import TownletError
    from townlet.training import ray_capture
    from townlet.training.ray_cluster import connect

    ray = connect(ray_cluster.address)
    try:
        job = CaptureJob(load_config(Path("configs/scenarios/queue_conflict.yaml")), tmp_path / "q", STAMP, ticks=5)
        (actor,) = ray_capture.start_shards(ray, 1)
        first = ray.get(actor.pid.remote(), timeout=120)
        os.kill(first, signal.SIGKILL)
        # Ray restarts the shard (a new process) and the scenario is captured there, with the same bytes.
        captured = ray_capture.fetch(ray, actor.capture.remote(job))
        assert captured.files == capture_files(job).files
        second = ray.get(actor.pid.remote(), timeout=120)
        assert second != first
        os.kill(second, signal.SIGKILL)  # past RESTARTS: one clear line, nothing published
        with pytest.raises(TownletError, match=r"a capture shard died more than 1 time\(s\)"):
            ray_capture.fetch(ray, actor.capture.remote(job))
        assert not job.folder.exists()
    finally:
        ray.shutdown()
