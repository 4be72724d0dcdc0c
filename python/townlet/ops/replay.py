"""Replay a shard's journal: a fresh town from the config, each recorded command applied at its tick before that
tick runs. The result hashes like the shard that wrote the journal (the journal is what makes a shard
reproducible).

Policy commands replay too (`policy_swap`, `promote_policy`, `rollback_policy`, the automatic rollbacks the canary
journalled): the checkpoints they name act again, so the same ticks run under the same policies. The replaying world
is marked `replaying`: its promotion manager loads and swaps policies but writes nothing (no history lines, no
release snapshots, no release install, no shadow log, no autosave), runs no shadow and triggers no rollback of its
own (the journal holds the ones that happened). A promotion's entry names the release copy it installed (`release`:
path, sha256; never overwritten by other content), which the replay loads rather than the candidate's path, which a
later training run may have republished."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from townlet.errors import UsageError
from townlet.ops.registry import lookup
from townlet.ops.world import ShardWorld
from townlet.sim.config import TownConfig


def replay_journal(
    config: TownConfig,
    journal: list[dict[str, Any]],
    until_tick: int,
    *,
    policy: str | None = None,
    root: Path | None = None,
) -> ShardWorld:
    """A world at `until_tick` that went through `journal` (entries in order, ticks not decreasing). `root`: the
    folder the journal's relative checkpoint paths are under (the shard's working folder; default the current one)."""
    w = ShardWorld(config, snapshot_root=Path(root or ".") / "snapshots", policy=policy)
    w.replaying = True
    k = 0
    while True:
        while k < len(journal) and int(journal[k]["tick"]) == w.tick:
            entry = journal[k]
            cmd = lookup(str(entry["name"]))
            args = dict(entry["args"])
            release = entry.get("release")
            if isinstance(release, dict) and (Path(root or ".") / str(release.get("path"))).is_file():
                args["checkpoint"] = str(release["path"])  # the installed copy: the weights that acted
            cmd.handler(w, cmd.model.model_validate(args))
            w.journal.append(entry)
            k += 1
        if k < len(journal) and int(journal[k]["tick"]) < w.tick:
            raise UsageError(f"journal entry {k}: tick {journal[k]['tick']} is out of order")
        if w.tick >= until_tick:
            break
        w.step()
    return w
