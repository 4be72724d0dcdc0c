"""The command bus in process: roles, cmd_id, audit, queued application, snapshots."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import DEFAULT_CONFIG
from townlet.ops import CommandResult, ErrorInfo, Shard, SubscriptionClosed, TokenStore
from townlet.sim.config import load_config

VIEWER, ADMIN = "viewer-token-0001", "admin-token-0001"


def make_shard(tmp: Path, **kw: Any) -> Shard:
    tokens = TokenStore([(VIEWER, "viewer", "vera"), (ADMIN, "admin", "ada")])
    return Shard(
        load_config(DEFAULT_CONFIG),
        tokens=tokens,
        audit_path=tmp / "logs/console/commands.jsonl",
        snapshot_root=tmp / "snapshots",
        **kw,
    )


def err(r: CommandResult) -> ErrorInfo:
    assert r.status == "error" and r.error is not None, r
    return r.error


def audit_lines(shard: Shard) -> list[dict[str, Any]]:
    return [json.loads(line) for line in shard.audit.path.read_text().splitlines()]


@pytest.fixture
def shard(tmp_path: Path) -> Iterator[Shard]:
    s = make_shard(tmp_path)
    yield s
    s.close()


def setneed(agent: str, hunger: float, cmd_id: str | None = "c1") -> dict[str, Any]:
    return {"name": "setneed", "kwargs": {"agent_id": agent, "needs": {"hunger": hunger}}, "cmd_id": cmd_id}


def test_viewer_is_refused_an_admin_command_and_the_refusal_is_audited(shard: Shard) -> None:
    before = shard.world.town.needs()[0][0]
    r = shard.submit(setneed("alice", 0.05), VIEWER)
    assert err(r).code == "forbidden" and "admin role" in err(r).message
    assert shard.world.town.needs()[0][0] == before
    (line,) = audit_lines(shard)
    assert line | {"time": None} == {
        "time": None, "tick": 0, "cmd_id": "c1", "issuer": "vera", "role": "viewer", "name": "setneed",
        "args": [], "kwargs": {"agent_id": "alice", "needs": {"hunger": 0.05}}, "status": "error",
        "code": "forbidden", "replayed": False,
    }  # fmt: skip
    assert VIEWER not in shard.audit.path.read_text() and ADMIN not in shard.audit.path.read_text()


def test_tokens_anonymous_and_unknown(tmp_path: Path) -> None:
    s = make_shard(tmp_path)
    assert err(s.submit({"name": "help"}, None)).code == "unauthorized"
    assert err(s.submit({"name": "help"}, "not-a-token-at-all")).code == "unauthorized"
    s.close()
    anon = make_shard(tmp_path / "anon", allow_anonymous_viewer=True)
    assert anon.submit({"name": "help"}, None).status == "ok"
    assert err(anon.submit(setneed("alice", 0.1), None)).code == "forbidden"
    anon.close()


def test_admin_without_cmd_id_is_refused(shard: Shard) -> None:
    r = shard.submit(setneed("alice", 0.05, cmd_id=None), ADMIN)
    assert r.error is not None and r.error.code == "usage" and "cmd_id" in r.error.message
    assert shard.world.journal == []


def test_the_same_cmd_id_twice_runs_once(shard: Shard) -> None:
    first = shard.submit(setneed("alice", 0.05, "once"), ADMIN)
    shard.step()
    again = shard.submit(setneed("alice", 0.05, "once"), ADMIN)
    assert first.status == again.status == "ok" and again.tick == first.tick == 0
    assert [e["cmd_id"] for e in shard.world.journal] == ["once"]
    assert [line["replayed"] for line in audit_lines(shard)] == [False, True]
    other = shard.submit({"name": "teleport", "args": ["alice", 1, 1], "cmd_id": "once"}, ADMIN)
    assert other.error is not None and other.error.code == "conflict"


def test_setneed_changes_the_next_snapshot(shard: Shard) -> None:
    assert shard.snapshot()["agents"]["bob"]["needs"]["energy"] > 0.5
    r = shard.submit({"name": "setneed", "args": ["bob", "energy", 0.04], "cmd_id": "e"}, ADMIN)
    assert r.status == "ok", r
    shard.step()
    snap = shard.snapshot()
    assert snap["tick"] == 1 and snap["agents"]["bob"]["needs"]["energy"] < 0.05
    assert snap["schema_version"] == "1.1.0"
    prior_job_keys = {
        "job_id", "on_shift", "wallet", "lateness_counter", "wages_earned", "meals_cooked", "meals_consumed",
        "basket_cost", "shift_state", "attendance_ratio", "late_ticks_today", "absent_shifts_7d", "wages_withheld",
        "exit_pending",
    }  # fmt: skip
    assert all(prior_job_keys <= set(job) for job in snap["jobs"].values())
    prior_employment = {"pending", "pending_count", "exits_today", "daily_exit_cap", "queue_limit", "review_window"}
    assert prior_employment <= set(snap["employment"]) and {"economy", "events"} <= set(snap)


@pytest.mark.parametrize(
    ("envelope", "code"),
    [
        ({"name": "nope"}, "usage"),
        ({"name": "setneed", "kwargs": {"agent_id": "zed", "needs": {"hunger": 0.1}}, "cmd_id": "a"}, "not_found"),
        ({"name": "setneed", "kwargs": {"agent_id": "bob", "needs": {"hunger": "x"}}, "cmd_id": "b"}, "invalid_args"),
        ({"name": "setneed", "kwargs": {"agent_id": "bob", "needs": {"hunger": 0.1, "joy": 1}}, "cmd_id": "c"},
         "invalid_args"),
        ({"name": "setneed", "kwargs": {"agent_id": "bob", "needs": {"hunger": 0.1, "energy": 7}}, "cmd_id": "d"},
         "invalid_args"),
        ({"name": "teleport", "args": ["bob", 1, 2, 3], "cmd_id": "e"}, "invalid_args"),
        ({"name": "teleport", "args": ["bob", 999, 2], "cmd_id": "f"}, "invalid_args"),
        ({"name": "help", "bogus": 1}, "usage"),
        ({"name": 3}, "usage"),
        ({"name": "promote_policy", "cmd_id": "g"}, "invalid_args"),  # no checkpoint (#15: no longer reserved)
        ({"name": "force_chat", "args": ["alice", "bob", float("nan")], "cmd_id": "h"}, "invalid_args"),
    ],
)  # fmt: skip
def test_bad_input_gets_its_code_and_changes_nothing(shard: Shard, envelope: dict[str, Any], code: str) -> None:
    before = shard.world_hash()
    r = shard.submit(envelope, ADMIN)
    assert r.status == "error" and r.error is not None and r.error.code == code, r
    assert "\n" not in r.error.message and r.error.message
    assert shard.world_hash() == before and shard.world.journal == []
    assert audit_lines(shard)[-1]["code"] == code
    assert "NaN" not in shard.audit.path.read_text()  # standard JSON lines


def test_help_lists_commands_with_role_and_arguments(shard: Shard) -> None:
    r = shard.submit({"name": "help"}, VIEWER)
    table = {c["name"]: c for c in r.result["commands"]}
    assert table["setneed"]["role"] == "admin" and set(table["setneed"]["arguments"]) == {"agent_id", "needs"}
    assert table["telemetry_snapshot"]["role"] == "viewer"
    assert table["promote_policy"]["reserved"] is False and table["promote_policy"]["role"] == "admin"  # #15


def test_commands_from_threads_while_the_shard_runs_none_lost_none_twice(shard: Shard) -> None:
    stop = threading.Event()
    runner = threading.Thread(target=shard.run, kwargs={"stop": stop})
    runner.start()
    results: dict[str, list[Any]] = {}
    go = threading.Barrier(4)

    def client(k: int) -> None:
        go.wait()
        out = []
        for n in range(40):
            cmd_id = f"t{k}-{n % 30}"  # the last 10 repeat earlier ids: they must not run again
            value = round(0.2 + 0.01 * (n % 30), 3)
            out.append(shard.submit({"name": "setneed", "args": ["cara", "hygiene", value], "cmd_id": cmd_id}, ADMIN))
        results[str(k)] = out

    clients = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for c in clients:
        c.start()
    for c in clients:
        c.join()
    stop.set()
    runner.join()
    assert all(r.status == "ok" for rs in results.values() for r in rs)
    ids = [e["cmd_id"] for e in shard.world.journal]
    assert sorted(ids) == sorted(f"t{k}-{n}" for k in range(4) for n in range(30))  # each exactly once
    ticks = [e["tick"] for e in shard.world.journal]
    assert ticks == sorted(ticks)  # applied between ticks, in order
    applied = [line for line in audit_lines(shard) if not line["replayed"]]
    assert len(applied) == 120 and len(audit_lines(shard)) == 160


def test_a_subscriber_gets_each_tick_and_a_slow_one_is_dropped_without_stalling(shard: Shard) -> None:
    fast, slow = shard.subscribe(maxsize=8), shard.subscribe(maxsize=2)
    for _ in range(5):
        shard.step()
        tick, snap = fast.get(timeout=5)
        assert tick == snap["tick"] == shard.tick
    assert slow.dropped is not None and "2 snapshots not read" in slow.dropped
    for _ in range(2):
        slow.get(timeout=5)  # what it had queued is still delivered
    with pytest.raises(SubscriptionClosed):
        slow.get(timeout=5)
    assert shard.metrics()["subscribers"] == 1.0
    shard.close()
    with pytest.raises(SubscriptionClosed, match="the shard closed"):
        fast.get(timeout=5)


def test_a_broken_handler_is_an_internal_error_and_the_shard_ticks_on(
    shard: Shard, monkeypatch: pytest.MonkeyPatch
) -> None:
    from townlet.ops.registry import REGISTRY, Command, NoArgs

    def broken(w: object, a: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setitem(REGISTRY, "broken", Command("broken", "viewer", NoArgs, broken, "a bug", mutates=True))
    r = shard.submit({"name": "broken"}, VIEWER)
    assert err(r).code == "internal" and err(r).message == "broken: internal error (RuntimeError)"
    shard.step()
    assert shard.tick == 1 and shard.world.journal == []


def test_a_cmd_id_in_flight_for_another_command_is_a_conflict(shard: Shard) -> None:
    first: list[CommandResult] = []
    with shard._world_lock:  # the town is busy: the first command stays queued
        t = threading.Thread(target=lambda: first.append(shard.submit(setneed("alice", 0.3, "same"), ADMIN)))
        t.start()
        while "same" not in shard._inflight:  # wait for the condition (no sleep): queued and in flight
            assert t.is_alive()
        other = shard.submit({"name": "teleport", "args": ["bob", 3, 3], "cmd_id": "same"}, ADMIN)
        assert err(other).code == "conflict" and "in use by setneed" in err(other).message
    t.join()
    assert first[0].status == "ok" and [e["name"] for e in shard.world.journal] == ["setneed"]
