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
    "debug queues: per object its reservations (holder, held and stalled ticks, ghost step due), waiting queue, "
    "request cooldowns (until, remaining); the fairness settings and totals (ghost steps, cooldown refusals)",
    mutates=False,
    positional=("what",),
)
def _debug(w: ShardWorld, a: DebugArgs) -> dict[str, Any]:
    town = w.town
    ids = w.agent_ids()
    tick = w.tick
    fairness_cfg = w.config.world.get("queue_fairness") or {}
    ghost_after = int(fairness_cfg.get("ghost_step_after", 0))
    objects: dict[str, Any] = {}
    cooling = 0
    for (oid, otype), (holders, waiting, cooldowns) in zip(
        zip(town.object_ids(), town.object_types(), strict=True), town.queue_view(), strict=True
    ):
        cooling += len(cooldowns)
        objects[oid] = {
            "type": otype,
            "holders": [{"agent_id": ids[i], "since": int(t), "stalled": int(s)} for i, t, s in holders],
            # The holder reserves the object; a stalled holder with waiters behind it is ghost-stepped back.
            "reservations": [
                {
                    "agent_id": ids[i],
                    "since": int(t),
                    "held_ticks": max(tick - int(t), 0),
                    "stalled": int(s),
                    "ghost_step_in": max(ghost_after - int(s), 0) if waiting and ghost_after else None,
                }
                for i, t, s in holders
            ],
            "waiting": [{"agent_id": ids[i], "joined": int(t), "conflicted": bool(c)} for i, t, c in waiting],
            "cooldowns": {ids[i]: int(t) for i, t in cooldowns},
            "cooldown_remaining": {ids[i]: max(int(t) - tick, 0) for i, t in cooldowns},
            "stall_count": sum(int(s) for _, _, s in holders),
        }
    totals = dict(zip(w.event_names, (int(x) for x in town.event_totals()), strict=True))
    fairness = {
        "cooldown_ticks": int(fairness_cfg.get("cooldown_ticks", 0)),
        "ghost_step_after": ghost_after,
        "age_priority_weight": float(fairness_cfg.get("age_priority_weight", 0.0)),
        "patience_ticks": int(fairness_cfg.get("patience_ticks", 0)),
        "agents_cooling_down": cooling,
        "ghost_steps": totals.get("queue_ghost_step", 0),
        "cooldown_refusals": totals.get("queue_cooldown", 0),
        "conflicts": totals.get("queue_conflict", 0),
    }
    return {"tick": tick, "fairness": fairness, "objects": objects}
