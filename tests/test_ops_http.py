"""The HTTP API as an operator meets it: a real shard process on 127.0.0.1 (a free port), real requests."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import assert_one_line_error, run_cli
from ops_shard import ADMIN, TOKENS, VIEWER, Served, no_proxy, start_shard

no_proxy()


@pytest.fixture(scope="module")
def shard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    served = start_shard(tmp_path_factory.mktemp("shard"))
    yield served
    code, err = served.stop()
    assert code == 0, err
    assert "stopped at tick" in err, err
    assert "Traceback" not in err, err


def _setneed(agent: str, hunger: float, cmd_id: str | None) -> dict[str, object]:
    env: dict[str, object] = {"name": "setneed", "kwargs": {"agent_id": agent, "needs": {"hunger": hunger}}}
    if cmd_id is not None:
        env["cmd_id"] = cmd_id
    return env


def test_health_metrics_and_the_snapshot(shard: Served) -> None:
    health = shard.snapshot()
    assert health.status_code == 200, health.text
    snap = health.json()
    assert snap["schema_version"] == "1.1.0"
    for key in ("tick", "agents", "jobs", "economy", "employment"):
        assert key in snap, key
    agent = snap["agents"]["alice"]
    for key in ("position", "needs", "wallet", "shift_state"):
        assert key in agent, key
    metrics = shard.metrics()
    for name in ("townlet_tick", "townlet_ticks_per_sec", "townlet_agents", "townlet_kpi_self_sufficiency"):
        assert name in metrics, name
    assert metrics["townlet_agents"] == len(snap["agents"])
    spec = httpx.get(f"{shard.url}/openapi.json", timeout=60).json()
    assert {"/v1/commands", "/v1/snapshot", "/v1/health", "/metrics"} <= set(spec["paths"])
    assert httpx.get(f"{shard.url}/docs", timeout=60).status_code == 200


def test_a_viewer_is_refused_an_admin_command_and_it_is_audited(shard: Served) -> None:
    res = shard.post(_setneed("bob", 0.2, "viewer-try-1"), token=VIEWER)
    assert res.status_code == 403, res.text
    body = res.json()
    assert body["status"] == "error" and body["error"]["code"] == "forbidden"
    line = [r for r in shard.audit() if r["cmd_id"] == "viewer-try-1"]
    assert len(line) == 1, line
    assert line[0]["status"] == "error" and line[0]["code"] == "forbidden"
    assert line[0]["issuer"] == "vera" and line[0]["role"] == "viewer"
    assert VIEWER not in shard.audit_path.read_text(encoding="utf-8")  # tokens are never logged


def test_an_admin_command_without_a_cmd_id_is_refused(shard: Served) -> None:
    applied = shard.metrics()["townlet_commands_applied"]
    res = shard.post(_setneed("cara", 0.01, None))
    assert res.status_code == 400, res.text
    assert "cmd_id" in res.json()["error"]["message"]
    shard.wait_ticks(2)
    assert shard.metrics()["townlet_commands_applied"] == applied  # nothing applied
    refused = [r for r in shard.audit() if r["name"] == "setneed" and r["cmd_id"] is None]
    assert [(r["status"], r["code"], r["issuer"]) for r in refused] == [("error", "usage", "ada")]


def test_the_same_cmd_id_twice_runs_once(shard: Served) -> None:
    applied = shard.metrics()["townlet_commands_applied"]
    first = shard.post(_setneed("dan", 0.4, "once-1"))
    again = shard.post(_setneed("dan", 0.4, "once-1"))
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert first.json()["tick"] == again.json()["tick"]  # the stored result, not a second run
    assert shard.metrics()["townlet_commands_applied"] == applied + 1
    lines = [r for r in shard.audit() if r["cmd_id"] == "once-1"]
    assert [r.get("replayed", False) for r in lines] == [False, True], lines


def test_setneed_visibly_changes_the_next_snapshot(shard: Served) -> None:
    # Raise the least clean agent's hygiene to 1: afterwards it can only decay (0.0005 a tick in the default town)
    # until a shower, so the snapshot shows it whatever the ticks between (the machine may be loaded).
    agents = shard.snapshot().json()["agents"]
    who = min(agents, key=lambda a: agents[a]["needs"]["hygiene"])
    before = agents[who]["needs"]["hygiene"]
    assert before < 0.95
    env = {"name": "setneed", "cmd_id": "setneed-hygiene-1", "kwargs": {"agent_id": who, "needs": {"hygiene": 1.0}}}
    res = shard.post(env)
    assert res.status_code == 200, res.text
    applied_at = res.json()["tick"]
    snap = shard.snapshot().json()
    elapsed = snap["tick"] - applied_at
    assert elapsed >= 1  # the snapshot after the tick that applied it
    assert snap["agents"][who]["needs"]["hygiene"] >= 1.0 - 0.002 * elapsed > before, (before, elapsed, snap["tick"])


@pytest.mark.parametrize(
    ("body", "token", "status", "code", "words"),
    [
        (b'{"name": "help",', ADMIN, 400, "usage", "not valid JSON"),
        (b"[1, 2]", ADMIN, 400, "usage", "JSON object"),
        ({"name": "no_such_command"}, ADMIN, 400, "usage", "unknown command"),
        ({"name": "teleport", "cmd_id": "bad-types-1", "args": ["finn", "x", 3]}, ADMIN, 400, "invalid_args", "x"),
        (
            {"name": "setneed", "cmd_id": "ghost-1", "kwargs": {"agent_id": "ghost", "needs": {"hunger": 0.1}}},
            ADMIN,
            404,
            "not_found",
            "ghost",
        ),
        (b'{"name": "help", "kwargs": {"x": "' + b"a" * 70_000 + b'"}}', ADMIN, 413, "usage", "larger than"),
        ({"name": "snapshot_save", "cmd_id": "escape-1", "args": ["../outside.json"]}, ADMIN, 403, "forbidden", "root"),
        ({"name": "spawn", "cmd_id": "spawn-alive-1", "args": ["finn", 3, 3]}, ADMIN, 409, "conflict", "alive"),
        ({"name": "help"}, "not-a-real-token", 401, "unauthorized", "token"),
        ({"name": "help"}, None, 401, "unauthorized", "token"),
    ],
    ids=[
        "malformed",
        "not-object",
        "unknown-command",
        "wrong-types",
        "unknown-agent",
        "oversized",
        "path-outside-root",
        "conflict",
        "bad-token",
        "none",
    ],
)
def test_bad_input_gets_its_code_and_the_shard_keeps_ticking(
    shard: Served, body: object, token: str | None, status: int, code: str, words: str
) -> None:
    res = shard.post(body, token=token)
    assert res.status_code == status, res.text
    got = res.json()
    assert got["status"] == "error" and got["error"]["code"] == code, got
    assert words in got["error"]["message"], got
    assert "\n" not in got["error"]["message"]
    shard.wait_ticks(2)


def test_a_malformed_authorization_header_is_unauthorized(shard: Served) -> None:
    res = httpx.post(f"{shard.url}/v1/commands", json={"name": "help"}, headers={"Authorization": "Basic x"})
    assert res.status_code == 401 and "Bearer" in res.json()["error"]["message"]


def test_anonymous_viewers_and_sigint(tmp_path: Path) -> None:
    served = start_shard(tmp_path, "--allow-anonymous-viewer", tick_rate=20)
    assert served.snapshot(token=None).status_code == 200  # no token: a viewer
    res = served.post({"name": "kill", "cmd_id": "anon-1", "args": ["alice"]}, token=None)
    assert res.status_code == 403 and res.json()["issuer"] == "anonymous", res.text
    assert served.post({"name": "help"}, token="unknown-token-1").status_code == 401  # a bad token is not anonymous
    code, err = served.stop(signal.SIGINT)
    assert code == 0, err
    assert "stopped at tick" in err and "SIGINT" in err, err


def test_run_simulation_without_config_runs_the_default_town() -> None:
    res = run_cli("--tick-limit", "50", "--json", tool=True)
    assert res.returncode == 0, str(res)
    assert res.json()["world_hash"]


def test_sim_serve_stops_at_its_tick_limit(scratch_cwd: Path) -> None:
    (scratch_cwd / "tokens.json").write_text(json.dumps(TOKENS), encoding="utf-8")
    res = run_cli("sim", "serve", "--serve", "127.0.0.1:0", "--tokens", "tokens.json", "--tick-limit", "20")
    assert res.returncode == 0, str(res)
    assert re.match(r"serving poc_hybrid_v1 on http://127\.0\.0\.1:\d+ ", res.stdout), str(res)
    assert "stopped at tick 20 (tick limit reached)" in res.stderr, str(res)
    assert (scratch_cwd / "logs/console/commands.jsonl").exists()  # the audit log, under the working directory


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--serve", "localhost:http", "--tokens", "tokens.json"], "HOST:PORT"),
        (["--serve", "127.0.0.1:0"], "--tokens FILE"),
        (["--serve", "127.0.0.1:0", "--tokens", "missing.json"], "missing.json"),
        (["--serve", "127.0.0.1:0", "--tokens", "bad.json"], "bad.json: [0].role"),
    ],
    ids=["bad-listen", "no-tokens", "missing-tokens", "bad-tokens"],
)
def test_serve_usage_errors_are_one_line(scratch_cwd: Path, args: list[str], words: str) -> None:
    (scratch_cwd / "tokens.json").write_text(json.dumps(TOKENS), encoding="utf-8")
    (scratch_cwd / "bad.json").write_text('[{"token": "abcdefghij", "role": "root", "label": "x"}]', encoding="utf-8")
    assert_one_line_error(run_cli(*args, tool=True), words)
