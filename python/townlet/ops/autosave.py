"""Autosave of a serving shard (`ops.snapshots`): every `autosave_every` ticks the shard is saved to
`<snapshot root>/<folder>/<tick>.json` (the shard snapshot format of `store.py`), and only the last `keep_last`
autosaves are kept. The world snapshots kept before each promotion live in their own folder
(`snapshots/release/`) and are never pruned here."""

from __future__ import annotations

from pathlib import Path

from townlet.ops.store import confine, save_shard_snapshot
from townlet.ops.world import ShardWorld, TickRecord
from townlet.sim.settings_ops import SnapshotSettings


class Autosave:
    def __init__(self, settings: SnapshotSettings) -> None:
        self.s = settings
        self.saved: list[Path] = []

    def __call__(self, world: ShardWorld, rec: TickRecord) -> None:
        every = self.s.autosave_every
        if every <= 0 or world.tick % every:
            return
        target = confine(world.snapshot_root, f"{self.s.folder}/{world.tick}.json")
        save_shard_snapshot(world, target)
        folder = target.parent
        kept = sorted((p for p in folder.glob("*.json") if p.stem.isdigit()), key=lambda p: int(p.stem))
        for old in kept[: -self.s.keep_last]:
            old.unlink(missing_ok=True)
        self.saved = kept[-self.s.keep_last :]
