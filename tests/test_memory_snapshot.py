"""Shard snapshots keep the memory of memory policies (issue 17): a shard restored from a snapshot acts exactly as
the shard that kept running (its actions, each action's probability, its world hash, its memory), in-process and
through `townlet sim serve --load-snapshot` from an autosave; a snapshot of an older version loads with fresh
memories and says so; after `snapshot_load` and `rollback_policy --to` the shadow policy's memory is the one the
snapshot kept for it, or fresh when it kept none."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import DEFAULT_CONFIG, WriteConfig, run_cli
from test_memory_e2e import memory_checkpoint
from test_ops_bus import ADMIN, VIEWER, make_shard
from test_promotion import cmd, settings
from townlet.ops import Shard, policy_memory
from townlet.ops.auth import TokenStore
from townlet.ops.promotion import attach
from townlet.ops.store import _digest
from townlet.ops.world import ShardWorld, TickRecord
from townlet.sim.config import load_config


class Trace:
    """After every tick (a listener added after the promotion manager's): the actions, each one's probability under
    the acting policy, and the acting and shadow memories as a snapshot would keep them."""

    def __init__(self, world: ShardWorld) -> None:
        self.ticks: dict[int, tuple[Any, ...]] = {}
        world.tick_listeners.append(self)

    def __call__(self, world: ShardWorld, rec: TickRecord) -> None:
        memories = {role: policy_memory.save(get()) for role, get in world.memories.items()}
        self.ticks[rec.tick] = (list(world.last_actions), list(world.last_probs), memories)


def old_version(path: Path) -> Path:
    """A copy of the snapshot as a version 2 file (written before snapshots kept policy memory)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    shard = {k: v for k, v in doc["shard"].items() if k != "policy_memory"}
    old = {**doc, "version": 2, "shard": shard, "checksum": _digest(shard, doc["town"])}
    target = path.with_name("v2_" + path.name)
    target.write_text(json.dumps(old), encoding="utf-8")
    return target


def restored(path: Path, tmp: Path, policy: Path) -> Shard:
    tokens = TokenStore([(VIEWER, "viewer", "vera"), (ADMIN, "admin", "ada")])
    return Shard.from_snapshot(path, load_config(DEFAULT_CONFIG), tokens=tokens, policy=str(policy),
                               audit_path=tmp / "audit.jsonl", snapshot_root=tmp / "snapshots")  # fmt: skip


def shadow_memory(shard: Shard) -> dict[str, Any]:
    doc = policy_memory.save(shard.world.memories["shadow"]())
    assert doc is not None  # the shadow is a memory policy
    return doc


def steps(shard: Shard, n: int) -> None:
    for _ in range(n):
        shard.step()


@pytest.mark.parametrize("arch", ["lstm", "gru", "attention"])
def test_a_shard_restored_from_a_snapshot_acts_as_the_shard_that_kept_running(tmp_path: Path, arch: str) -> None:
    ckpt = memory_checkpoint(tmp_path / f"{arch}.json", arch)
    a = make_shard(tmp_path / "a", policy=str(ckpt))
    kept = Trace(a.world)
    steps(a, 6)
    assert cmd(a, "snapshot_save", "t6.json").status == "ok"
    steps(a, 6)
    path = a.world.snapshot_root / "t6.json"
    memory = json.loads(path.read_text(encoding="utf-8"))["shard"]["policy_memory"]["acting"]
    assert memory["policy"] == a.world.actor.actor.checkpoint.sha256 and memory["architecture"] == arch
    assert memory["rows"] == 9 and memory["dtype"] == "float32" and memory["data"] == kept.ticks[5][2]["acting"]["data"]

    b = restored(path, tmp_path / "b", ckpt)
    assert b.world.memory_restored == {"acting": "restored"} and b.tick == 6
    again = Trace(b.world)
    steps(b, 6)
    assert b.world_hash() == a.world_hash()
    for tick in range(6, 12):
        assert again.ticks[tick] == kept.ticks[tick], tick  # actions, probabilities and memory, exactly

    # A snapshot of before memories were kept: the same world with fresh memories, said so; it acts otherwise.
    c = restored(old_version(path), tmp_path / "c", ckpt)
    assert c.world.memory_restored["acting"].startswith("fresh: the snapshot keeps no policy memory")
    fresh = Trace(c.world)
    steps(c, 6)
    assert fresh.ticks[6][1] != kept.ticks[6][1]  # the action probabilities of the first tick after the load
    for s in (a, b, c):
        s.close()


def test_sim_serve_from_an_autosave_continues_as_the_shard_that_kept_running(
    tmp_path: Path, write_config: WriteConfig
) -> None:
    ckpt = memory_checkpoint(tmp_path / "gru.json", "gru")
    cfg = write_config(lambda d: d.setdefault("ops", {}).update(snapshots={"autosave_every": 15}))

    def serve(root: str, ticks: int, *extra: str | Path) -> str:
        res = run_cli("sim", "serve", "--config", cfg, "--serve", "127.0.0.1:0", "--allow-anonymous-viewer",
                      "--policy", ckpt, "--snapshot-root", root, "--tick-limit", str(ticks), *extra)  # fmt: skip
        assert res.returncode == 0, res
        return res.stderr

    serve("a", 30)
    said = serve("b", 15, "--load-snapshot", "a/auto/15.json")
    assert "a/auto/15.json: acting policy memory restored" in said, said
    a, b = (json.loads(Path(f"{root}/auto/30.json").read_text(encoding="utf-8")) for root in ("a", "b"))
    assert a["tick"] == b["tick"] == 30 and a["world_hash"] == b["world_hash"]
    assert b["shard"]["policy_memory"] == a["shard"]["policy_memory"] != {}


def test_the_shadow_memory_after_snapshot_load_is_the_one_kept_or_fresh(tmp_path: Path) -> None:
    shadow, other = memory_checkpoint(tmp_path / "b.json", "gru", 1), memory_checkpoint(tmp_path / "d.json", "gru", 3)
    ref = make_shard(tmp_path / "ref")  # the expert acts; the gru shadows it from tick 0 on
    attach(ref.world, settings(), root=tmp_path / "ref")
    assert cmd(ref, "shadow_policy", str(shadow)).status == "ok"
    want = Trace(ref.world)
    steps(ref, 6)

    s = make_shard(tmp_path / "s")
    attach(s.world, settings(), root=tmp_path / "s")
    assert cmd(s, "shadow_policy", str(shadow)).status == "ok"
    got = Trace(s.world)
    steps(s, 3)
    assert cmd(s, "snapshot_save", "t3.json").status == "ok"
    steps(s, 3)
    loaded = cmd(s, "snapshot_load", "t3.json")
    assert loaded.status == "ok" and loaded.result["policy_memory"] == {"shadow": "restored"}, loaded
    assert shadow_memory(s) == want.ticks[2][2]["shadow"]
    steps(s, 3)
    for tick in (3, 4, 5):
        assert got.ticks[tick] == want.ticks[tick], tick

    # A shadow the snapshot kept no memory for starts from fresh memories at the load.
    assert cmd(s, "shadow_policy", str(other)).status == "ok"
    steps(s, 2)
    assert shadow_memory(s)["data"] is not None
    loaded = cmd(s, "snapshot_load", "t3.json")
    assert loaded.result["policy_memory"]["shadow"].startswith("fresh: the snapshot's shadow memory is another")
    assert shadow_memory(s)["data"] is None
    for shard in (ref, s):
        shard.close()


def test_rollback_to_a_kept_snapshot_restores_the_release_and_shadow_memories(tmp_path: Path) -> None:
    a, b, c = (memory_checkpoint(tmp_path / f"{n}.json", "gru", seed) for n, seed in (("a", 0), ("b", 1), ("c", 2)))
    ref = make_shard(tmp_path / "ref")  # a acts from tick 0, b shadows it
    attach(ref.world, settings(), root=tmp_path / "ref")
    assert cmd(ref, "policy_swap", str(a)).status == "ok" and cmd(ref, "shadow_policy", str(b)).status == "ok"
    want = Trace(ref.world)
    steps(ref, 7)

    s = make_shard(tmp_path / "s")
    attach(s.world, settings(), root=tmp_path / "s")
    assert cmd(s, "policy_swap", str(a)).status == "ok" and cmd(s, "shadow_policy", str(b)).status == "ok"
    got = Trace(s.world)
    steps(s, 4)
    swapped = cmd(s, "policy_swap", str(c))  # keeps snapshots/release/4.json: a's world with a's and b's memories
    assert swapped.status == "ok" and swapped.result["snapshot"] == "release/4.json", swapped
    steps(s, 3)
    back = cmd(s, "rollback_policy", "--to", "release/4.json")
    assert back.status == "ok" and back.result["policy_memory"] == {"acting": "restored", "shadow": "restored"}, back
    steps(s, 3)
    assert s.world_hash() == ref.world_hash()
    for tick in (4, 5, 6):
        assert got.ticks[tick] == want.ticks[tick], tick
    for shard in (ref, s):
        shard.close()


def test_inspect_shows_the_kept_memory_and_a_forged_one_is_refused_in_one_line(tmp_path: Path) -> None:
    ckpt = memory_checkpoint(tmp_path / "attention.json", "attention")
    a = make_shard(tmp_path / "a", policy=str(ckpt))
    steps(a, 2)
    assert cmd(a, "snapshot_save", "t2.json").status == "ok"
    info = cmd(a, "snapshot_inspect", "t2.json", token=VIEWER)
    sha = a.world.actor.actor.checkpoint.sha256
    assert info.result["policy_memory"] == {"acting": {"policy": sha[:12], "architecture": "attention", "rows": 9}}
    path = a.world.snapshot_root / "t2.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["shard"]["policy_memory"]["acting"]["data"] = doc["shard"]["policy_memory"]["acting"]["data"][:-8]
    doc["checksum"] = _digest(doc["shard"], doc["town"])  # well signed, badly formed
    (a.world.snapshot_root / "forged.json").write_text(json.dumps(doc), encoding="utf-8")
    r = cmd(a, "snapshot_validate", "forged.json", token=VIEWER)
    assert r.status == "error" and r.error is not None and r.error.code == "invalid_args"
    assert r.error.message.startswith("forged.json: shard.policy_memory.acting.data: ") and "float32" in r.error.message
    assert "\n" not in r.error.message
    a.close()
