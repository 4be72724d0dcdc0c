"""Admin commands on the shard itself: snapshots, perturbation queue (the policy commands: commands_policy)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from townlet.errors import UsageError
from townlet.ops.envelope import CommandError, ErrorCode
from townlet.ops.registry import Args, NoArgs, command
from townlet.ops.store import confine, inspect, load_shard_snapshot, save_shard_snapshot
from townlet.ops.world import ShardWorld


class PathArgs(Args):
    path: str = Field(min_length=1, max_length=512)


@command(
    "snapshot_save",
    "admin",
    PathArgs,
    "save the shard (town, journal, cmd_id history) under the snapshot root",
    mutates=False,
    positional=("path",),
)
def _snapshot_save(w: ShardWorld, a: PathArgs) -> dict[str, Any]:
    target = confine(w.snapshot_root, a.path)
    try:
        out = save_shard_snapshot(w, target)
    except (OSError, UsageError) as exc:
        raise CommandError(ErrorCode.invalid_args, f"snapshot_save: {a.path}: cannot write ({exc})") from None
    return {"path": a.path, **out}


@command(
    "snapshot_inspect",
    "viewer",
    PathArgs,
    "a shard snapshot's tick, config, hash and sizes",
    mutates=False,
    positional=("path",),
)
def _snapshot_inspect(w: ShardWorld, a: PathArgs) -> dict[str, Any]:
    target = confine(w.snapshot_root, a.path)
    try:
        return {"path": a.path, **inspect(target)}
    except UsageError as exc:
        raise CommandError(ErrorCode.invalid_args, _relative(str(exc), target, a.path)) from None


@command(
    "snapshot_validate",
    "viewer",
    PathArgs,
    "whether a shard snapshot restores into this shard's config",
    mutates=False,
    positional=("path",),
)
def _snapshot_validate(w: ShardWorld, a: PathArgs) -> dict[str, Any]:
    target = confine(w.snapshot_root, a.path)
    try:
        town, state = load_shard_snapshot(target, w.config)
    except UsageError as exc:
        raise CommandError(ErrorCode.invalid_args, _relative(str(exc), target, a.path)) from None
    return {"path": a.path, "valid": True, "tick": int(town.tick), "journal": len(state["journal"])}


@command(
    "snapshot_load",
    "admin",
    PathArgs,
    "restore a shard snapshot into the running shard at the next tick boundary (town, journal, cmd_id history, "
    "toggles, the memory of memory policies); the acting policy stays",
    positional=("path",),
)
def _snapshot_load(w: ShardWorld, a: PathArgs) -> dict[str, Any]:
    from townlet.ops.promotion import current

    target = confine(w.snapshot_root, a.path)
    try:
        town, state = load_shard_snapshot(target, w.config)
    except UsageError as exc:
        raise CommandError(ErrorCode.invalid_args, _relative(str(exc), target, a.path)) from None
    before = w.tick
    w.load_state(town, state)  # its journal is the history of the world now running: this command is not added
    manager = current(w)
    if manager is not None:
        manager.monitor.reset_streak()  # the windows judged another world
    out = {"path": a.path, "tick": w.tick, "from_tick": before, "world_hash": town.world_hash()}
    if w.memory_restored:  # a memory policy acts (or shadows): its memory as kept, or fresh and why
        out["policy_memory"] = w.memory_restored
    return out


def _relative(message: str, target: Any, shown: str) -> str:
    """Errors name the path as the client gave it, not where the root lives on the server."""
    return message.replace(str(target), shown)


@command("perturbation_queue", "viewer", NoArgs, "active perturbations", mutates=False)
def _perturbation_queue(w: ShardWorld, a: NoArgs) -> dict[str, Any]:
    return {
        "active": [
            {"event_id": int(e), "name": n, "kind": k, "started": int(s), "ends": int(t), "magnitude": float(m)}
            for e, n, k, s, t, m in w.town.perturbations_active()
        ]
    }
