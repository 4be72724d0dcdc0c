"""The remaining world commands, each checked in the world: teleport, price, set_rel, kill, toggle_mortality,
perturbations, exit defer, narration throttle, the bounded cmd_id history."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from test_ops_bus import ADMIN, VIEWER, err, make_shard
from test_ops_world import Admin, events
from townlet.ops import Shard


@pytest.fixture
def shard(tmp_path: Path) -> Iterator[Shard]:
    s = make_shard(tmp_path)
    yield s
    s.close()


def test_teleport_price_set_rel(shard: Shard) -> None:
    admin = Admin(shard)
    admin.ok("teleport", "alice", 3, 3)
    assert shard.snapshot()["agents"]["alice"]["position"] == [3, 3]
    assert err(admin("teleport", "alice", 0, 0)).code == "invalid_args"  # a wall
    admin.ok("price", "meal_cost", 2.5)
    assert shard.snapshot()["economy"]["prices"]["meal_cost"] == 2.5
    assert err(admin("price", "caviar", 1.0)).code == "not_found"
    assert err(admin("price", "meal_cost", -1)).code == "invalid_args"
    admin.ok("set_rel", "alice", "bob", trust=0.7, familiarity=0.4, rivalry=0.1)
    trust, familiarity, rivalry = shard.world.town.relationships()
    assert round(float(trust[1][0]), 3) == 0.7 and round(float(rivalry[0][1]), 3) == 0.1
    assert round(float(familiarity[0][1]), 3) == 0.4
    assert err(admin("set_rel", "alice", "alice")).code == "invalid_args"
    assert err(admin("set_rel", "alice", "bob", trust=3)).code == "invalid_args"


def test_kill_and_toggle_mortality(shard: Shard) -> None:
    admin = Admin(shard)
    admin.ok("toggle_mortality", False)
    admin.ok("setneed", "cara", "hunger", 0.0)
    for _ in range(40):
        shard.step()
    assert shard.snapshot()["agents"]["cara"]["alive"], "no fainting without mortality"
    admin.ok("kill", "cara", "demo")
    shard.step()
    assert not shard.snapshot()["agents"]["cara"]["alive"]
    assert [e["agent"] for e in events(shard, "agent_killed")] == ["cara"]
    assert err(admin("kill", "cara")).code == "conflict"  # already gone


def test_perturbation_trigger_queue_cancel(shard: Shard) -> None:
    admin = Admin(shard)
    out = admin.ok("perturbation_trigger", "blackout", duration=30)
    assert err(admin("perturbation_trigger", "meteor")).code == "not_found"
    shard.step()
    active = shard.submit({"name": "perturbation_queue"}, VIEWER).result["active"]
    assert [(p["event_id"], p["name"]) for p in active] == [(out["event_id"], "blackout")]
    assert shard.snapshot()["economy"]["utilities"]["power"] is False
    admin.ok("perturbation_cancel", out["event_id"])
    assert err(admin("perturbation_cancel", out["event_id"])).code == "not_found"
    shard.step()
    assert shard.snapshot()["perturbations"] == [] and shard.snapshot()["economy"]["utilities"]["power"] is True


def test_exit_defer_clears_the_queue_entry(shard: Shard) -> None:
    admin = Admin(shard)
    admin.ok("employment_exit", "approve", "dan")
    assert admin.ok("employment_exit", "defer", "dan") == {"action": "defer", "agent_id": "dan"}
    shard.step()
    assert shard.snapshot()["agents"]["dan"]["alive"]
    assert err(admin("employment_exit", "defer", "dan")).code == "conflict"


def test_narration_throttle_limits_lines(shard: Shard) -> None:
    admin = Admin(shard)
    admin.ok("narration", throttle=1000)
    for _ in range(3):
        admin.ok("force_chat", "alice", "bob")
        shard.step()
    assert len(shard.snapshot()["narrations"]) == 1
    admin.ok("narration", throttle=0)
    admin.ok("force_chat", "eve", "gina")
    shard.step()
    assert shard.snapshot()["narrations"][-1]["text"] == "eve and gina had a good chat"


def test_the_cmd_id_history_is_bounded(shard: Shard, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("townlet.ops.world.HISTORY_LIMIT", 20)
    limit = 20

    def cmd(n: int) -> dict[str, object]:
        return {"name": "setneed", "args": ["iris", "hygiene", 0.5], "cmd_id": f"h{n}"}

    for n in range(limit + 10):
        assert shard.submit(cmd(n), ADMIN).status == "ok"
    assert len(shard.world.history) == limit
    shard.submit(cmd(0), ADMIN)  # forgotten: runs again
    shard.submit(cmd(limit + 9), ADMIN)  # remembered: does not
    assert len(shard.world.journal) == limit + 11
