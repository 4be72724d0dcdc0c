"""Shard snapshot versions on a real shard: a current snapshot loads; a version 1 file (before the reward clip
counter) and a version 2 file (before policy memory) migrate and continue identically; a forged older or newer version
is refused with one line naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import DEFAULT_CONFIG
from test_ops_bus import ADMIN, VIEWER, err, make_shard
from townlet.errors import UsageError
from townlet.ops import Shard
from townlet.ops.auth import TokenStore
from townlet.ops.store import VERSION, _digest
from townlet.sim.config import load_config


def _saved(tmp_path: Path) -> tuple[Shard, Path]:
    shard = make_shard(tmp_path / "a")
    for _ in range(12):
        shard.step()
    r = shard.submit({"name": "snapshot_save", "args": ["t12.json"], "cmd_id": "s1"}, ADMIN)
    assert r.status == "ok", r
    return shard, shard.world.snapshot_root / "t12.json"


def _load(path: Path, tmp_path: Path) -> Shard:
    return Shard.from_snapshot(
        path, load_config(DEFAULT_CONFIG), tokens=TokenStore([(VIEWER, "viewer", "vera"), (ADMIN, "admin", "ada")]),
        audit_path=tmp_path / "b/audit.jsonl", snapshot_root=tmp_path / "b",
    )  # fmt: skip


def test_a_current_snapshot_loads_and_a_version_1_file_migrates(tmp_path: Path) -> None:
    a, path = _saved(tmp_path)
    a.world.reward_clip_events = 7  # what the file holds is what comes back
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["version"] == VERSION == 3 and "reward_clip_events" in doc["shard"]
    assert doc["shard"]["policy_memory"] == {}  # the scripted expert keeps no memory
    b = _load(path, tmp_path)
    assert b.tick == 12 and b.world_hash() == a.world_hash()
    assert b.world.reward_clip_events == doc["shard"]["reward_clip_events"]

    old = {**doc, "version": 1, "shard": {k: v for k, v in doc["shard"].items()
                                          if k not in ("reward_clip_events", "policy_memory")}}  # fmt: skip
    old["checksum"] = _digest(old["shard"], old["town"])
    (a.world.snapshot_root / "v1.json").write_text(json.dumps(old), encoding="utf-8")
    info = a.submit({"name": "snapshot_inspect", "args": ["v1.json"]}, VIEWER)
    assert info.status == "ok", info
    assert info.result["version"] == VERSION and info.result["migrated_from"] == 1
    assert info.result["policy_memory"] is None  # not kept by that version
    c = _load(a.world.snapshot_root / "v1.json", tmp_path / "c")
    assert c.tick == 12 and c.world_hash() == a.world_hash() and c.world.reward_clip_events == 0
    for s in (a, b, c):
        s.step()
    assert b.world_hash() == c.world_hash() == a.world_hash()
    two = {**doc, "version": 2, "shard": {k: v for k, v in doc["shard"].items() if k != "policy_memory"}}
    two["checksum"] = _digest(two["shard"], two["town"])
    (a.world.snapshot_root / "v2.json").write_text(json.dumps(two), encoding="utf-8")
    info = a.submit({"name": "snapshot_inspect", "args": ["v2.json"]}, VIEWER)
    assert info.status == "ok" and info.result["migrated_from"] == 2 and info.result["policy_memory"] is None, info
    d = _load(a.world.snapshot_root / "v2.json", tmp_path / "d")
    assert d.tick == 12 and d.world.memory_restored == {}  # no memory policy acts: nothing to say
    d.step()
    assert d.world_hash() == a.world_hash()
    for s in (a, b, c, d):
        s.close()


@pytest.mark.parametrize(("version", "words"), [(0, "older than this build migrates"), (4, "is newer than this build")])
def test_a_forged_version_is_refused_naming_it(tmp_path: Path, version: int, words: str) -> None:
    a, path = _saved(tmp_path)
    doc = json.loads(path.read_text(encoding="utf-8"))
    forged = a.world.snapshot_root / "forged.json"
    forged.write_text(json.dumps({**doc, "version": version}), encoding="utf-8")
    with pytest.raises(UsageError) as exc:
        _load(forged, tmp_path)
    message = str(exc.value)
    assert f"shard snapshot version {version} " in message and words in message and "\n" not in message
    assert str(forged) in message
    r = a.submit({"name": "snapshot_validate", "args": ["forged.json"]}, VIEWER)
    assert err(r).code == "invalid_args" and f"version {version} " in err(r).message
    a.close()
