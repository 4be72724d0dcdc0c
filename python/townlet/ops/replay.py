"""Replay a shard's journal: a fresh town from the config, each recorded command applied at its tick before that
tick runs. The result hashes like the shard that wrote the journal (the journal is what makes a shard
reproducible)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from townlet.errors import UsageError
from townlet.ops.registry import lookup
from townlet.ops.world import ShardWorld
from townlet.sim.config import TownConfig


def replay_journal(
    config: TownConfig, journal: list[dict[str, Any]], until_tick: int, *, policy: str | None = None
) -> ShardWorld:
    """A world at `until_tick` that went through `journal` (entries in order, ticks not decreasing)."""
    w = ShardWorld(config, snapshot_root=Path("."), policy=policy)
    k = 0
    while True:
        while k < len(journal) and int(journal[k]["tick"]) == w.tick:
            entry = journal[k]
            cmd = lookup(str(entry["name"]))
            cmd.handler(w, cmd.model.model_validate(entry["args"]))
            w.journal.append(entry)
            k += 1
        if k < len(journal) and int(journal[k]["tick"]) < w.tick:
            raise UsageError(f"journal entry {k}: tick {journal[k]['tick']} is out of order")
        if w.tick >= until_tick:
            break
        w.step()
    return w
