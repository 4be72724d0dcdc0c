"""`townlet console` as an operator types it, against a real shard process on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import _cli_env, assert_one_line_error, run_cli
from ops_shard import ADMIN, TOKENS, VIEWER, Served, no_proxy, start_shard
from townlet.ops.client import build_envelope, schema_gate

no_proxy()


@pytest.fixture(scope="module")
def shard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    served = start_shard(tmp_path_factory.mktemp("console"), tick_rate=50)
    yield served
    code, err = served.stop()
    assert code == 0, err


@pytest.fixture
def tokens(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "admin.token").write_text(ADMIN + "\n", encoding="utf-8")
    (tmp_path / "viewer.token").write_text(VIEWER + "\n", encoding="utf-8")
    (tmp_path / "tokens.json").write_text(json.dumps(TOKENS), encoding="utf-8")
    return {"admin": tmp_path / "admin.token", "viewer": tmp_path / "viewer.token", "list": tmp_path / "tokens.json"}


def test_one_command_as_json(shard: Served, tokens: dict[str, Path]) -> None:
    res = run_cli("console", shard.url, "--token-file", tokens["viewer"], "telemetry_snapshot", "--json")
    assert res.returncode == 0, str(res)
    result = res.json()
    assert result["status"] == "ok" and result["issuer"] == "vera"
    assert result["result"]["schema_version"] == "1.1.0"


def test_setneed_through_the_console_changes_the_town(shard: Served, tokens: dict[str, Path]) -> None:
    res = run_cli(
        "console", shard.url, "--token-file", tokens["admin"], "setneed", "hugo", "hunger", "0.06", "--cmd-id", "con-1"
    )
    assert res.returncode == 0, str(res)
    assert "ok setneed (cmd_id con-1)" in res.stdout
    applied = [r for r in shard.audit() if r["cmd_id"] == "con-1"]
    assert [(r["name"], r["status"], r["issuer"]) for r in applied] == [("setneed", "ok", "ada")]
    # the kwargs form, from a tokens-list file with a label
    res = run_cli(
        "console",
        shard.url,
        "--token-file",
        tokens["list"],
        "--label",
        "ada",
        "setneed",
        "--kwargs",
        '{"agent_id": "iris", "needs": {"energy": 0.08}}',
        "--cmd-id",
        "con-2",
        "--json",
    )
    assert res.returncode == 0, str(res)
    assert res.json()["status"] == "ok"


def test_error_results_exit_non_zero_with_one_line(shard: Served, tokens: dict[str, Path]) -> None:
    res = run_cli("console", shard.url, "--token-file", tokens["viewer"], "setneed", "hugo", "hunger", "0.5")
    assert_one_line_error(res, "forbidden", "admin", exit_code=1)
    res = run_cli("console", shard.url, "--token-file", tokens["admin"], "setneed", "hugo", "hunger", "0.5")
    assert_one_line_error(res, "usage", "cmd_id", exit_code=2)
    res = run_cli("console", shard.url, "--token", "nope-nope-nope", "help")
    assert_one_line_error(res, "unauthorized", exit_code=1)
    res = run_cli("console", shard.url, "--token-file", tokens["list"], "help")
    assert_one_line_error(res, "expected one token", "--label", exit_code=2)


def test_an_unreachable_shard_is_one_line(tokens: dict[str, Path]) -> None:
    res = run_cli("console", "http://127.0.0.1:9", "--token-file", tokens["viewer"], "help", timeout=60)
    assert_one_line_error(res, "cannot reach the shard", exit_code=1)


def test_a_newer_major_schema_refuses_mutating_commands(shard: Served, tokens: dict[str, Path]) -> None:
    old = ("--client-schema", "0.9.0")
    res = run_cli("console", shard.url, "--token-file", tokens["admin"], *old, "setneed", "a", "hunger", "0.1")
    assert res.returncode == 2, str(res)
    assert res.stderr_lines[0].startswith("warning:") and "newer major" in res.stderr_lines[0]
    assert "refused" in res.stderr_lines[1] and "upgrade the client" in res.stderr_lines[1]
    res = run_cli("console", shard.url, "--token-file", tokens["viewer"], *old, "employment_status")
    assert res.returncode == 0, str(res)  # reads still work, with the warning
    assert "warning:" in res.stderr


def test_the_schema_gate() -> None:
    assert schema_gate("1.0.0", "1.0.0").warning is None
    minor = schema_gate("1.1.0", "1.0.0")
    assert minor.warning and "newer" in minor.warning and not minor.refuse_mutating
    major = schema_gate("2.0.0", "1.3.0")
    assert major.refuse_mutating
    assert schema_gate("1.0.5", "1.0.0").warning is None  # patch releases are compatible
    assert build_envelope("teleport", ["finn", "3", "4"], cmd_id="t") == {
        "name": "teleport",
        "args": ["finn", 3, 4],
        "kwargs": {},
        "cmd_id": "t",
    }


def test_interactive_session(shard: Served, tokens: dict[str, Path]) -> None:
    lines = "help\nemployment_status\nsetneed finn hunger 0.09\nno_such_command\nexit\n"
    argv = [sys.executable, "-m", "townlet", "console", shard.url, "--token-file", str(tokens["admin"])]
    proc = subprocess.run(argv, input=lines, env=_cli_env(), capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1, proc.stderr  # one command failed
    assert "connected to" in proc.stdout
    assert "ok setneed (cmd_id console-" in proc.stdout  # a fresh cmd_id for a mutating command
    assert "ok employment_status" in proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "unknown command" in errors[0], proc.stderr
    applied = [r for r in shard.audit() if r["name"] == "setneed" and (r["cmd_id"] or "").startswith("console-")]
    assert len(applied) == 1 and applied[0]["status"] == "ok", applied
