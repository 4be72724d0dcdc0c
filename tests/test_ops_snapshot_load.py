"""`snapshot_load PATH` (#14): a shard snapshot restored into the running shard between ticks: the town, its
journal and cmd_id history come back, the world hashes as saved, and it goes on like a replay of that journal; only
an admin may, paths stay under the snapshot root."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import DEFAULT_CONFIG
from test_ops_bus import VIEWER, err, make_shard
from test_ops_world import Admin
from townlet.ops.replay import replay_journal
from townlet.sim.config import load_config


def test_snapshot_load_restores_the_saved_world_into_the_running_shard(tmp_path: Path) -> None:
    shard = make_shard(tmp_path)
    admin = Admin(shard)
    for _ in range(5):
        shard.step()
    admin.ok("setneed", "bob", "hunger", 0.5)
    saved = admin.ok("snapshot_save", "s5.json")
    for _ in range(10):
        shard.step()
    admin.ok("setneed", "alice", "hunger", 0.2)
    shard.step()
    assert shard.world.tick == 16 and len(shard.world.journal) == 2

    got = admin.ok("snapshot_load", "s5.json")
    assert got == {"path": "s5.json", "tick": 5, "from_tick": 16, "world_hash": saved["world_hash"]}
    assert shard.world_hash() == saved["world_hash"] and shard.snapshot()["tick"] == 5
    assert [e["name"] for e in shard.world.journal] == ["setneed"]  # the saved world's own history
    for _ in range(5):
        shard.step()
    again = replay_journal(load_config(DEFAULT_CONFIG), list(shard.world.journal), 10)
    assert again.town.world_hash() == shard.world_hash()

    r = shard.submit({"name": "snapshot_load", "args": ["s5.json"], "cmd_id": "v1"}, VIEWER)
    assert err(r).code == "forbidden"
    assert err(admin("snapshot_load", "../out.json")).code == "forbidden"
    (tmp_path / "snapshots/bad.json").write_text(json.dumps({"format": "x"}), encoding="utf-8")
    r = admin("snapshot_load", "bad.json")
    assert err(r).code == "invalid_args" and "not a shard snapshot" in err(r).message
    assert err(admin("snapshot_load", "missing.json")).code == "invalid_args"
    assert shard.world.tick == 10  # refusals change nothing
    shard.close()
