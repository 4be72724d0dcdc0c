"""World commands verified in the world: exit approval, spawn, force_chat, arrange_meet, possess, debug queues,
snapshots that restore and replay identically, paths confined to the snapshot root."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import DEFAULT_CONFIG
from test_ops_bus import ADMIN, VIEWER, err, make_shard
from townlet.ops import CommandResult, Shard
from townlet.ops.replay import replay_journal
from townlet.sim.config import load_config


@pytest.fixture
def shard(tmp_path: Path) -> Iterator[Shard]:
    s = make_shard(tmp_path)
    yield s
    s.close()


class Admin:
    """Admin commands with fresh cmd_ids."""

    def __init__(self, shard: Shard) -> None:
        self.shard = shard
        self.n = 0

    def __call__(self, name: str, *args: Any, **kwargs: Any) -> CommandResult:
        self.n += 1
        return self.shard.submit({"name": name, "args": list(args), "kwargs": kwargs, "cmd_id": f"a{self.n}"}, ADMIN)

    def ok(self, name: str, *args: Any, **kwargs: Any) -> Any:
        r = self(name, *args, **kwargs)
        assert r.status == "ok", r
        return r.result


def events(shard: Shard, name: str) -> list[dict[str, Any]]:
    return [e for e in shard.snapshot()["events"] if e["event"] == name]


def test_exit_approval_emits_the_manual_request_and_removes_the_agent_next_tick(shard: Shard) -> None:
    admin = Admin(shard)
    assert admin.ok("employment_exit", "review") == {"action": "review", "pending": [], "exits_today": 0}
    out = admin.ok("employment_exit", "approve", "alice")
    assert out == {"action": "approve", "agent_id": "alice", "exits_at_tick": 1}
    assert shard.snapshot()["agents"]["alice"]["alive"]
    shard.step()
    snap = shard.snapshot()
    assert not snap["agents"]["alice"]["alive"] and snap["employment"]["exits_today"] == 1
    assert [e["agent"] for e in events(shard, "employment_exit_manual_request")] == ["alice"]
    assert [e["tick"] for e in events(shard, "employment_exit_processed")] == [0]
    assert err(admin("employment_exit", "approve", "finn")).code == "conflict"  # finn has no job
    assert err(admin("employment_exit", "approve")).code == "invalid_args"
    status = shard.submit({"name": "employment_status"}, VIEWER).result
    assert status["exits_today"] == 1 and status["queue_limit"] == 8


def test_spawn_force_chat_and_arrange_meet_show_in_the_world(shard: Shard) -> None:
    admin = Admin(shard)
    home = shard.snapshot()["agents"]["bob"]["position"]
    assert err(admin("spawn", "bob", home)).code == "conflict"  # alive
    admin.ok("kill", "bob")
    shard.step()
    assert not shard.snapshot()["agents"]["bob"]["alive"]
    assert err(admin("spawn", "bob", [0, 0])).code == "invalid_args"  # a wall
    assert err(admin("spawn", "bob", [3, 3], needs={"joy": 1.0})).code == "invalid_args"
    assert err(admin("spawn", "bob", 3, 3, 3)).code == "invalid_args"
    assert admin.ok("spawn", "bob", "3", "3", wallet=7.5) == {"agent_id": "bob#2", "position": [3, 3]}
    bob = shard.snapshot()["agents"]["bob#2"]
    assert bob["alive"] and bob["position"] == [3, 3] and bob["wallet"] == 7.5
    shard.step()
    assert [e["agent"] for e in events(shard, "agent_spawned")] == ["bob#2"]

    before = shard.snapshot()["kpis"]["chat_success"]
    chat = admin.ok("force_chat", "cara", "dan", 0.9)
    assert chat["quality"] == 0.9 and chat["trust"] > 0 and chat["familiarity"] > 0
    assert shard.snapshot()["kpis"]["chat_success"] == before + 1
    assert err(admin("force_chat", "cara", "cara")).code == "invalid_args"
    assert err(admin("force_chat", "cara", "nobody")).code == "not_found"

    meet = admin.ok("arrange_meet", "eve", "gina", [3, 3])["positions"]
    agents = shard.snapshot()["agents"]
    assert agents["eve"]["position"] == meet["eve"] == [3, 3]
    assert agents["gina"]["position"] == meet["gina"]
    assert max(abs(a - b) for a, b in zip(meet["eve"], meet["gina"], strict=True)) == 1
    assert err(admin("arrange_meet", "eve", "gina", [0, 0])).code == "invalid_args"


def test_possess_drives_one_agent_and_release_gives_it_back(shard: Shard) -> None:
    admin = Admin(shard)
    assert err(admin("possess", "hugo", "fly")).code == "invalid_args"
    admin.ok("possess", "hugo")
    start = shard.snapshot()["agents"]["hugo"]["position"]
    for _ in range(3):
        shard.step()  # possessed without an action: waits
    assert shard.snapshot()["agents"]["hugo"]["position"] == start
    assert shard.snapshot()["possessed"] == ["hugo"]
    x, y = start
    moved = None
    for action, (dx, dy) in (("move_e", (1, 0)), ("move_w", (-1, 0)), ("move_s", (0, 1)), ("move_n", (0, -1))):
        admin.ok("possess", "hugo", action)
        shard.step()
        if shard.snapshot()["agents"]["hugo"]["position"] == [x + dx, y + dy]:
            moved = action
            break
    assert moved is not None, "the operator's move was taken"
    admin.ok("possess", "hugo", "release")
    assert shard.snapshot()["possessed"] == []
    assert err(admin("possess", "hugo", "release")).code == "conflict"


def test_debug_queues_lists_every_object(shard: Shard) -> None:
    for _ in range(30):
        shard.step()
    out = shard.submit({"name": "debug", "args": ["queues"]}, VIEWER).result
    assert set(out["objects"]) == set(shard.world.town.object_ids())
    fields = {"type", "holders", "reservations", "waiting", "cooldowns", "cooldown_remaining", "stall_count"}
    assert all(set(o) == fields for o in out["objects"].values())
    assert err(shard.submit({"name": "debug", "args": ["nothing"]}, VIEWER)).code == "invalid_args"


def test_narration_and_privacy_toggles_apply_at_once(shard: Shard) -> None:
    admin = Admin(shard)
    admin.ok("privacy_mode", True)
    snap = shard.snapshot()
    assert snap["toggles"]["privacy_mode"] and snap["agents"]["alice"]["wallet"] is None
    admin.ok("force_chat", "alice", "bob")
    shard.step()
    assert all("alice" not in n["text"] for n in shard.snapshot()["narrations"])
    admin.ok("narration", enabled=False, throttle=10)
    assert shard.snapshot()["toggles"] | {} == {"narration": False, "narration_throttle": 10, "privacy_mode": True}


def drive(shard: Shard, admin: Admin, ticks: int, k: int) -> None:
    """A fixed script of commands between ticks (the same for every shard given the same k)."""
    for t in range(ticks):
        if t % 7 == 0:
            admin.ok("setneed", agent_id="iris", needs={"energy": round(0.2 + 0.01 * (t + k), 3)})
        if t % 11 == 3:
            admin.ok("force_chat", "alice", "cara", 0.7)
        if t == 5:
            admin.ok("possess", "dan", "move_e")
        shard.step()


def test_snapshot_restore_continues_and_the_journal_replays_identically(tmp_path: Path) -> None:
    config = load_config(DEFAULT_CONFIG)
    a = make_shard(tmp_path / "a")
    admin = Admin(a)
    drive(a, admin, 20, 0)
    saved = admin.ok("snapshot_save", "run/t20.json")
    assert saved["tick"] == 20 and saved["world_hash"] == a.world_hash()
    info = a.submit({"name": "snapshot_inspect", "args": ["run/t20.json"]}, VIEWER).result
    assert info["tick"] == 20 and info["journal"] == len(a.world.journal)
    assert a.submit({"name": "snapshot_validate", "args": ["run/t20.json"]}, VIEWER).result["valid"] is True
    history = dict(a.world.history)
    history.pop(f"a{admin.n}")  # the save itself is remembered once it has finished, after the file was written
    ids_at_save = admin.n
    drive(a, admin, 15, 20)
    assert err(a.submit({"name": "teleport", "args": ["bob", 1, 1], "cmd_id": "a1"}, ADMIN)).code == "conflict"

    b = Shard.from_snapshot(
        tmp_path / "a/snapshots/run/t20.json",
        config,
        tokens=a.tokens,
        audit_path=tmp_path / "b/commands.jsonl",
        snapshot_root=tmp_path / "b",
    )
    assert b.tick == 20 and dict(b.world.history) == history
    replayed = b.submit({"name": "setneed", "args": ["bob", "hunger", 0.1], "cmd_id": "a1"}, ADMIN)
    assert replayed.result == history["a1"]["result"] and replayed.tick == 0  # the stored result: not run again
    b_admin = Admin(b)
    b_admin.n = ids_at_save  # the same cmd_ids as `a` used after its save
    drive(b, b_admin, 15, 20)
    assert b.tick == a.tick == 35 and b.world_hash() == a.world_hash()

    w = replay_journal(config, a.world.journal, 35)
    assert w.town.world_hash() == a.world_hash()
    a.close()
    b.close()


@pytest.mark.parametrize("path", ["../outside.json", "/etc/passwd", "run/../../x.json", ".", ""])
def test_snapshot_paths_outside_the_root_are_refused(shard: Shard, path: str) -> None:
    r = shard.submit({"name": "snapshot_save", "args": [path], "cmd_id": "s"}, ADMIN)
    assert err(r).code in ("forbidden", "invalid_args"), r
    r = shard.submit({"name": "snapshot_inspect", "args": [path]}, VIEWER)
    assert err(r).code in ("forbidden", "invalid_args"), r
    assert not (shard.world.snapshot_root.parent / "outside.json").exists()


def test_a_bad_snapshot_is_refused_with_one_line(shard: Shard) -> None:
    root = shard.world.snapshot_root
    root.mkdir(parents=True)
    (root / "bad.json").write_text('{"format": "something else"}')
    r = shard.submit({"name": "snapshot_validate", "args": ["bad.json"]}, VIEWER)
    assert err(r).code == "invalid_args" and "not a shard snapshot" in err(r).message
    assert str(root) not in err(r).message
    r = shard.submit({"name": "snapshot_inspect", "args": ["missing.json"]}, VIEWER)
    assert err(r).code == "invalid_args" and "not found" in err(r).message


def test_a_symlink_out_of_the_snapshot_root_is_refused(shard: Shard, tmp_path: Path) -> None:
    root = shard.world.snapshot_root
    root.mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "link").symlink_to(tmp_path / "elsewhere")
    r = shard.submit({"name": "snapshot_save", "args": ["link/x.json"], "cmd_id": "s"}, ADMIN)
    assert err(r).code == "forbidden"
    assert not (tmp_path / "elsewhere/x.json").exists()
