"""`bench/console_load.py` runs (small): a real shard, clients sending commands with retries while it ticks; every
command applied exactly once. Latency is printed by the bench, never asserted here."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO_ROOT, _cli_env


def test_the_load_bench_applies_every_command_once() -> None:
    argv = [sys.executable, str(REPO_ROOT / "bench/console_load.py"), "--clients", "2", "--commands", "15"]
    proc = subprocess.run([*argv, "--json"], env=_cli_env(), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["sent"] == 30 and out["retries"] == 4, out
    assert out["lost"] == out["applied_twice"] == out["failed"] == out["retry_mismatch"] == 0, out
    assert out["applied_per_metrics"] == 30
    assert set(out["latency_ms"]) == {"p50", "p95", "p99", "max"}
    assert set(out["goals"]) == {"lost", "applied_twice", "failed", "retry_mismatch"}
