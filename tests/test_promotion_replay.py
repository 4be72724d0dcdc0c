"""The journal of a shard whose policies changed (#15): an automatic rollback is journalled like an operator's
`rollback_policy`, and replaying the journal from the config reaches the same world hash under the same policies
while writing no history files (no promotion_history line, no rollouts line, no release snapshot, no release
install). The journal is bounded (#14): past its limit the oldest entries are dropped and counted."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import DEFAULT_CONFIG
from test_ops_bus import make_shard
from test_promotion import WINDOW, checkpoint, cmd, history, setup
from townlet.ops import world as world_mod
from townlet.ops.replay import replay_journal
from townlet.sim.config import load_config


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_auto_rollback_is_journalled_and_the_replay_writes_no_history(tmp_path: Path) -> None:
    a = checkpoint(tmp_path / "cand/a.json", seed=1)
    b = checkpoint(tmp_path / "cand/b.json", seed=2)
    shard, manager, _ = setup(tmp_path)
    assert cmd(shard, "policy_swap", "cand/a.json").status == "ok"  # relative to the manager's root
    assert cmd(shard, "shadow_policy", "cand/b.json").status == "ok"
    for _ in range(2 * WINDOW):
        shard.step()
    assert cmd(shard, "promote_policy", "cand/b.json").status == "ok"
    for _ in range(3):
        shard.step()
    assert cmd(shard, "setneed", "alice", "hunger", 0.0).status == "ok"
    shard.step()  # the canary fires: back to A, by itself
    assert manager.release.name.startswith("checkpoint:a.json")
    for _ in range(6):
        shard.step()
    journal = list(shard.world.journal)
    auto = [e for e in journal if e.get("auto")]
    assert auto == [
        {"tick": auto[0]["tick"], "name": "rollback_policy", "args": {"to": None, "reason": "canary breach: "
         "starvation_spike"}, "cmd_id": None, "auto": True}
    ]  # fmt: skip
    assert auto[0]["tick"] == history(tmp_path)[-1]["tick"]  # the tick before which the rollback happened
    assert [e["event"] for e in history(tmp_path)] == ["policy_swap", "promoted", "rollback"]
    tick, live = shard.world.tick, shard.world_hash()
    shard.close()
    manager.close()
    before = files(tmp_path)

    config = load_config(DEFAULT_CONFIG)
    w = replay_journal(config, journal, tick, root=tmp_path)
    assert w.town.world_hash() == live and w.actor is not None
    assert files(tmp_path) == before  # nothing written: no history line, no snapshot, no install, no shadow log

    # The journalled rollback is what makes the replay right: without it B would act on.
    cut = [e for e in journal if not e.get("auto")]
    assert replay_journal(config, cut, tick, root=tmp_path).town.world_hash() != live
    # Training republishes a candidate's path; the promotion's entry names the installed copy, so the replay holds.
    promoted = next(e for e in journal if e["name"] == "promote_policy")
    assert promoted["release"]["path"] == str(tmp_path / "snapshots/rel/b.json")
    checkpoint(b, seed=9)
    checkpoint(a, seed=8)
    assert replay_journal(config, journal, tick, root=tmp_path).town.world_hash() == live


def test_an_installed_release_is_never_overwritten_by_other_content(tmp_path: Path) -> None:
    first = checkpoint(tmp_path / "one/cand.json", seed=1)
    second = checkpoint(tmp_path / "two/cand.json", seed=2)
    shard, manager, _ = setup(tmp_path)
    assert cmd(shard, "policy_swap", "one/cand.json").status == "ok"
    shard.step()
    assert cmd(shard, "policy_swap", "two/cand.json").status == "ok"
    rel = tmp_path / "snapshots/rel"
    assert (rel / "cand.json").read_bytes() == first.read_bytes()  # the first release, as kept snapshots name it
    (moved,) = [p for p in rel.glob("*/cand.json")]
    assert moved.read_bytes() == second.read_bytes() and moved.parent.name == manager.release.sha256[:12]
    assert manager.release.path == str(moved)
    assert cmd(shard, "policy_swap", "one/cand.json").status == "ok"  # the same content again: the same copy
    assert manager.release.path == str(rel / "cand.json") and len(list(rel.rglob("cand.json"))) == 2
    shard.close()
    manager.close()


def test_a_rollback_to_a_snapshot_keeps_that_worlds_journal(tmp_path: Path) -> None:
    checkpoint(tmp_path / "a.json", seed=1)
    shard, manager, _ = setup(tmp_path)
    for _ in range(5):
        shard.step()
    assert cmd(shard, "setneed", "bob", "hunger", 0.5).status == "ok"
    shard.step()
    assert cmd(shard, "policy_swap", "a.json").status == "ok"  # keeps release/6.json, whose journal has setneed
    for _ in range(4):
        shard.step()
    assert cmd(shard, "rollback_policy", "--to", "release/6.json").status == "ok"
    assert shard.world.tick == 6 and [e["name"] for e in shard.world.journal] == ["setneed"]
    for _ in range(4):
        shard.step()
    w = replay_journal(load_config(DEFAULT_CONFIG), list(shard.world.journal), 10, root=tmp_path)
    assert w.town.world_hash() == shard.world_hash()
    shard.close()
    manager.close()


def test_the_journal_keeps_the_last_entries_and_counts_the_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(world_mod, "JOURNAL_LIMIT", 3)
    shard = make_shard(tmp_path)
    for i in range(5):
        assert cmd(shard, "setneed", "bob", "hunger", 0.1 * (i + 1)).status == "ok"
    assert [e["args"]["needs"]["hunger"] for e in shard.world.journal] == pytest.approx([0.3, 0.4, 0.5])
    assert shard.world.journal_dropped == 2
    assert cmd(shard, "snapshot_save", "s.json").status == "ok"
    info = cmd(shard, "snapshot_inspect", "s.json").result
    assert info["journal"] == 3 and info["journal_dropped"] == 2
    shard.close()
