"""Viewer commands: reads of the shard's state (run at once, between ticks, never journalled)."""

from __future__ import annotations

from typing import Any, Literal

from townlet.ops.registry import Args, NoArgs, command, help_table
from townlet.ops.snapshot import telemetry_snapshot
from townlet.ops.world import ShardWorld


@command("telemetry_snapshot", "viewer", NoArgs, "the town now: agents, jobs, economy, employment, KPIs", mutates=False)
def _telemetry_snapshot(w: ShardWorld, a: NoArgs) -> dict[str, Any]:
    return telemetry_snapshot(w)


class HelpArgs(Args):
    command: str | None = None


@command(
    "help", "viewer", HelpArgs, "the commands with their role and arguments", mutates=False, positional=("command",)
)
def _help(w: ShardWorld, a: HelpArgs) -> dict[str, Any]:
    from townlet.ops.registry import lookup

    if a.command is not None:
        return {"commands": [lookup(a.command).describe()]}
    return {"commands": help_table()}


@command("employment_status", "viewer", NoArgs, "employment KPIs, exit queue metrics and its contents", mutates=False)
def _employment_status(w: ShardWorld, a: NoArgs) -> dict[str, Any]:
    snap = telemetry_snapshot(w)
    ids = w.agent_ids()
    pending, _ = w.town.employment_exit_review()
    emp = snap["employment"]
    return {
        **emp,
        "queue": [{"agent_id": ids[int(i)], "enqueued_tick": int(t)} for i, t in pending],
        "over_limit": emp["pending_count"] > emp["queue_limit"],
        "exit_cap_remaining": max(emp["daily_exit_cap"] - emp["exits_today"], 0) if emp["daily_exit_cap"] else None,
        "kpis": {k: snap["kpis"][k] for k in ("on_time_rate", "shifts_scheduled", "shifts_on_time", "evictions")},
        "jobs": snap["jobs"],
    }


class DebugArgs(Args):
    what: Literal["queues"]


@command(
    "debug",
    "viewer",
    DebugArgs,
    "debug queues: per object its holders (since, stalled ticks), waiting queue, request cooldowns",
    mutates=False,
    positional=("what",),
)
def _debug(w: ShardWorld, a: DebugArgs) -> dict[str, Any]:
    town = w.town
    ids = w.agent_ids()
    objects: dict[str, Any] = {}
    for (oid, otype), (holders, waiting, cooldowns) in zip(
        zip(town.object_ids(), town.object_types(), strict=True), town.queue_view(), strict=True
    ):
        objects[oid] = {
            "type": otype,
            "holders": [{"agent_id": ids[i], "since": int(t), "stalled": int(s)} for i, t, s in holders],
            "waiting": [{"agent_id": ids[i], "joined": int(t), "conflicted": bool(c)} for i, t, c in waiting],
            "cooldowns": {ids[i]: int(t) for i, t in cooldowns},
            "stall_count": sum(int(s) for _, _, s in holders),
        }
    return {"tick": w.tick, "objects": objects}
