"""Shard snapshot files: the town's own snapshot (versioned, checksummed by the core) plus the shard's records
(journal, cmd_id history, possession, toggles) and the memory of each memory policy it runs (ops/policy_memory.py),
under one root that commands cannot leave."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from townlet import _core
from townlet.errors import UsageError
from townlet.jsonio import canonical_json, loads_strict, read_bytes, write_json
from townlet.ops import policy_memory
from townlet.ops.envelope import CommandError, ErrorCode
from townlet.sim.config import TownConfig

if TYPE_CHECKING:
    from townlet.ops.world import ShardWorld

FORMAT = "townlet-shard-snapshot"
#: The version this build writes. 2 adds `reward_clip_events` to the shard records, 3 `policy_memory` (the memory of
#: the acting and shadow memory policies); version 1 and 2 files migrate (their policies start from fresh memories).
VERSION = 3
OLDEST = 1
SHARD_KEYS = {
    "policy_memory",
    "reward_clip_events",
    "possessed",
    "narration_enabled",
    "narration_throttle",
    "privacy_mode",
    "narrations",
    "events",
    "last_narration_tick",
    "journal",
    "history",
}


def confine(root: Path, path: str) -> Path:
    """`path` (relative to the snapshot root) resolved; forbidden when it leaves the root."""
    if not path or "\x00" in path:
        raise CommandError(ErrorCode.invalid_args, "path: give a file name under the snapshot root")
    base = root.resolve()
    target = (base / path).resolve()
    if not target.is_relative_to(base) or target == base:
        raise CommandError(ErrorCode.forbidden, f"path {path!r} is outside the snapshot root")
    return target


def _digest(shard: dict[str, Any], town_text: str) -> str:
    h = hashlib.sha256(town_text.encode("utf-8"))
    h.update(canonical_json(shard, indent=None).encode("utf-8"))
    return h.hexdigest()


def save_shard_snapshot(w: ShardWorld, target: Path) -> dict[str, Any]:
    town_text = w.town.snapshot()
    shard = w.state()
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "config_id": w.config.config_id,
        "config_hash": w.town.config_hash,
        "tick": w.tick,
        "world_hash": w.town.world_hash(),
        "town": town_text,
        "shard": shard,
        "checksum": _digest(shard, town_text),
    }
    write_json(target, doc, indent=None)
    return {k: doc[k] for k in ("config_id", "tick", "world_hash")} | {"bytes": target.stat().st_size}


def read_shard_snapshot(path: Path) -> dict[str, Any]:
    """The document, its form checked (format, version, keys, checksum): UsageError naming the file otherwise."""
    raw = read_bytes(path, "shard snapshot")
    try:
        doc = loads_strict(raw)
    except ValueError as exc:
        raise UsageError(f"{path}: not a shard snapshot (invalid JSON: {exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UsageError(f"{path}: not a shard snapshot (format is not {FORMAT!r})")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise UsageError(f"{path}: version: expected an integer, got {version!r}")
    if version > VERSION:
        raise UsageError(
            f"{path}: version: shard snapshot version {version} is newer than this build reads ({OLDEST}-{VERSION}); "
            "load it with a newer townlet"
        )
    if version < OLDEST:
        raise UsageError(
            f"{path}: version: shard snapshot version {version} is older than this build migrates ({OLDEST}-{VERSION})"
        )
    for key, kind in (("town", str), ("shard", dict), ("checksum", str), ("tick", int), ("world_hash", str)):
        if not isinstance(doc.get(key), kind):
            raise UsageError(f"{path}: {key}: missing or not a {kind.__name__}")
    if _digest(doc["shard"], doc["town"]) != doc["checksum"]:
        raise UsageError(f"{path}: checksum: the content does not match its checksum")
    doc = _migrate(doc)
    missing = SHARD_KEYS - set(doc["shard"])
    if missing:
        raise UsageError(f"{path}: shard: missing {', '.join(sorted(missing))} (version {version})")
    policy_memory.check(path, doc["shard"]["policy_memory"])
    return doc


def _migrate(doc: dict[str, Any]) -> dict[str, Any]:
    """A checked document of an older version as the current version (in memory; the file is left alone)."""
    first = doc["version"]
    if doc["version"] == 1:
        # 1 -> 2: the reward clip counter did not exist; it starts at zero.
        doc = {**doc, "version": 2, "shard": {**doc["shard"], "reward_clip_events": 0}}
    if doc["version"] == 2:
        # 2 -> 3: no policy memory was kept; every memory policy starts from fresh memories.
        doc = {**doc, "version": 3, "shard": {**doc["shard"], "policy_memory": policy_memory.NOT_KEPT}}
    return doc if first == VERSION else {**doc, "migrated_from": first}


def load_shard_snapshot(path: Path, config: TownConfig) -> tuple[_core.Town, dict[str, Any]]:
    doc = read_shard_snapshot(path)
    try:
        town = _core.Town.from_snapshot(doc["town"], config.world_json(), True)
    except _core.SnapshotError as exc:
        raise UsageError(f"{path}: town: {exc}") from None
    if town.world_hash() != doc["world_hash"]:
        raise UsageError(f"{path}: world_hash: the restored town does not hash as recorded")
    return town, doc["shard"]


def inspect(path: Path) -> dict[str, Any]:
    doc = read_shard_snapshot(path)
    return {
        "config_id": doc.get("config_id"),
        "config_hash": doc.get("config_hash"),
        "tick": doc["tick"],
        "world_hash": doc["world_hash"],
        "journal": len(doc["shard"]["journal"]),
        "journal_dropped": int(doc["shard"].get("journal_dropped", 0)),
        "history": len(doc["shard"]["history"]),
        "policy_memory": _memory_summary(doc["shard"]["policy_memory"]),
        "version": doc["version"],
        "migrated_from": doc.get("migrated_from"),
        "bytes": path.stat().st_size,
    }


def _memory_summary(kept: dict[str, Any] | None) -> dict[str, Any] | None:
    """role -> the policy (digest prefix), architecture and rows of the memory kept; None: not kept (older file)."""
    if kept is policy_memory.NOT_KEPT:
        return None
    return {
        role: {"policy": str(doc["policy"])[:12], "architecture": doc.get("architecture"), "rows": doc["rows"]}
        for role, doc in kept.items()
    }
