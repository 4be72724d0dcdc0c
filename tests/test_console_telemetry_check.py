"""`tools/telemetry_check.py`: a live shard's snapshot conforms to the published schema; broken payloads are named
key by key; versions are judged as the changelog says; the shipped JSON Schema is the model's."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import DEFAULT_CONFIG, REPO_ROOT, CliResult, _cli_env, assert_one_line_error
from townlet.ops.auth import TokenStore
from townlet.ops.shard import Shard
from townlet.ops.snapshot_schema import json_schema
from townlet.sim.config import load_config


@pytest.fixture(scope="module")
def live_snapshot(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("snap")
    shard = Shard(load_config(DEFAULT_CONFIG), tokens=TokenStore([]), audit_path=folder / "audit.jsonl")
    try:
        shard.run(tick_limit=30)
        return shard.snapshot()
    finally:
        shard.close()


def _write(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def run_tool(*args: str | Path) -> CliResult:
    """`python tools/telemetry_check.py ARGS` in the test's scratch working directory."""
    argv = [sys.executable, "tools/telemetry_check.py", *(str(a) for a in args)]
    proc = subprocess.run(argv, env=_cli_env(), capture_output=True, text=True, timeout=120, check=False)
    return CliResult(argv, proc.returncode, proc.stdout, proc.stderr)


def test_a_live_snapshot_conforms(live_snapshot: dict[str, Any], tmp_path: Path) -> None:
    res = run_tool(_write(tmp_path / "snap.json", live_snapshot))
    assert res.returncode == 0, str(res)
    assert "schema 1.1.0 (tick 30, 9 agents)" in res.stdout
    wrapped = {"cmd_id": None, "name": "telemetry_snapshot", "status": "ok", "result": live_snapshot, "tick": 30}
    message = {"type": "snapshot", "tick": 30, "data": live_snapshot}
    res = run_tool(_write(tmp_path / "result.json", wrapped), _write(tmp_path / "message.json", message), "--json")
    assert res.returncode == 0, str(res)
    assert [json.loads(line)["ok"] for line in res.stdout.splitlines()] == [True, True]


def test_a_broken_payload_is_named_key_by_key(live_snapshot: dict[str, Any], tmp_path: Path) -> None:
    bad = copy.deepcopy(live_snapshot)
    bad["agents"]["alice"]["needs"]["hunger"] = "full"
    del bad["employment"]["queue_limit"]
    bad["tick"] = -1
    res = run_tool(_write(tmp_path / "bad.json", bad))
    assert res.returncode == 1, str(res)
    lines = res.stderr_lines
    assert lines[-1] == "telemetry-check: 3 problems"
    assert any("agents.alice.needs.hunger" in x for x in lines)
    assert any("employment.queue_limit: Field required" in x for x in lines)
    assert any(x.startswith("error:") and "bad.json: tick:" in x for x in lines)


def test_versions(live_snapshot: dict[str, Any], tmp_path: Path) -> None:
    newer = copy.deepcopy(live_snapshot) | {"schema_version": "1.4.0", "a_later_key": {"x": 1}}
    res = run_tool(_write(tmp_path / "newer.json", newer))
    assert res.returncode == 0, str(res)
    assert res.stderr_lines[0].startswith("warning:") and "newer" in res.stderr_lines[0]
    major = copy.deepcopy(live_snapshot) | {"schema_version": "2.0.0"}
    res = run_tool(_write(tmp_path / "major.json", major))
    assert res.returncode == 1 and "major version differs" in res.stderr, str(res)
    res = run_tool(_write(tmp_path / "list.json", [1]))
    assert res.returncode == 1 and "expected a JSON object" in res.stderr, str(res)


def test_bad_files_are_usage_errors(tmp_path: Path) -> None:
    assert_one_line_error(run_tool(tmp_path / "missing.json"), "missing.json", "not found")
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    assert_one_line_error(run_tool(tmp_path / "broken.json"), "broken.json")


def test_the_shipped_json_schema_is_the_models() -> None:
    shipped = json.loads((REPO_ROOT / "docs/telemetry_snapshot.schema.json").read_text(encoding="utf-8"))
    assert shipped == json_schema(), "regenerate: python tools/telemetry_check.py --write-schema docs/..."
