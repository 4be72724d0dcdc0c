"""Admin commands that change the town (queued, applied between ticks, journalled). Each validates everything
before it changes anything, so a refused command leaves the town as it was."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, field_validator

from townlet.ops.envelope import CommandError, ErrorCode
from townlet.ops.registry import Args, command
from townlet.ops.world import NEED_NAMES, ShardWorld

Unit = float


class SetNeedArgs(Args):
    agent_id: str
    needs: dict[str, float] = Field(min_length=1)

    @field_validator("needs")
    @classmethod
    def _check(cls, v: dict[str, float]) -> dict[str, float]:
        for k, x in v.items():
            if k not in NEED_NAMES:
                raise ValueError(f"unknown need {k!r} (needs: {', '.join(NEED_NAMES)})")
            if not (math.isfinite(x) and 0.0 <= x <= 1.0):
                raise ValueError(f"{k} must be in [0, 1], got {x}")
        return v


def _setneed_args(args: list[Any]) -> dict[str, Any]:
    if len(args) != 3:
        raise CommandError(
            ErrorCode.invalid_args, "setneed takes AGENT NEED VALUE positionally (or kwargs agent_id, needs)"
        )
    return {"agent_id": args[0], "needs": {str(args[1]): args[2]}}


@command("setneed", "admin", SetNeedArgs, "set an agent's needs (each in [0, 1])", from_args=_setneed_args)
def _setneed(w: ShardWorld, a: SetNeedArgs) -> dict[str, Any]:
    i = w.alive_agent(a.agent_id)
    for name, value in a.needs.items():
        w.town.set_need(i, NEED_NAMES.index(name), value)
    return {"agent_id": w.agent_ids()[i], "needs": dict(a.needs)}


class TeleportArgs(Args):
    agent_id: str
    x: int
    y: int


@command("teleport", "admin", TeleportArgs, "move an agent to a walkable tile", positional=("agent_id", "x", "y"))
def _teleport(w: ShardWorld, a: TeleportArgs) -> dict[str, Any]:
    i = w.alive_agent(a.agent_id)
    h, wd = w.town.grid_shape
    if not (0 <= a.x < wd and 0 <= a.y < h):
        raise CommandError(ErrorCode.invalid_args, f"teleport: [{a.x}, {a.y}] is outside the {wd}x{h} grid")
    w.town.teleport(i, a.x, a.y)
    return {"agent_id": w.agent_ids()[i], "position": [a.x, a.y]}


class PriceArgs(Args):
    key: str
    value: float = Field(ge=0.0, allow_inf_nan=False)


@command("price", "admin", PriceArgs, "set a price", positional=("key", "value"))
def _price(w: ShardWorld, a: PriceArgs) -> dict[str, Any]:
    keys = list(w.town.price_keys())
    if a.key not in keys:
        raise CommandError(ErrorCode.not_found, f"unknown price {a.key!r} (prices: {', '.join(keys)})")
    w.town.set_price(a.key, a.value)
    return {"key": a.key, "value": a.value}


class SetRelArgs(Args):
    agent_a: str
    agent_b: str
    trust: float = Field(default=0.0, ge=-1.0, le=1.0)
    familiarity: float = Field(default=0.0, ge=-1.0, le=1.0)
    rivalry: float = Field(default=0.0, ge=0.0, le=1.0)


@command(
    "set_rel", "admin", SetRelArgs, "set the tie between two agents (both ways)", positional=("agent_a", "agent_b")
)
def _set_rel(w: ShardWorld, a: SetRelArgs) -> dict[str, Any]:
    i, j = w.agent(a.agent_a), w.agent(a.agent_b)
    if i == j:
        raise CommandError(ErrorCode.invalid_args, "set_rel: an agent has no relationship with itself")
    w.town.set_relationship(i, j, a.trust, a.familiarity, a.rivalry)
    return a.model_dump()


class KillArgs(Args):
    agent_id: str
    reason: str | None = Field(default=None, max_length=200)


@command("kill", "admin", KillArgs, "remove an agent at the end of the next tick", positional=("agent_id", "reason"))
def _kill(w: ShardWorld, a: KillArgs) -> dict[str, Any]:
    i = w.alive_agent(a.agent_id)
    w.town.kill(i)
    w.possessed.pop(i, None)
    return {"agent_id": w.agent_ids()[i], "reason": a.reason}


class MortalityArgs(Args):
    enabled: bool


@command("toggle_mortality", "admin", MortalityArgs, "turn fainting from hunger on or off", positional=("enabled",))
def _toggle_mortality(w: ShardWorld, a: MortalityArgs) -> dict[str, Any]:
    w.town.set_mortality(a.enabled)
    return {"enabled": a.enabled}


class ExitArgs(Args):
    action: Literal["review", "approve", "defer"]
    agent_id: str | None = None


@command(
    "employment_exit",
    "admin",
    ExitArgs,
    "employment_exit review | approve AGENT (exits next tick) | defer AGENT (clears its queue entry)",
    positional=("action", "agent_id"),
)
def _employment_exit(w: ShardWorld, a: ExitArgs) -> dict[str, Any]:
    ids = w.agent_ids()
    if a.action == "review":
        pending, exits_today = w.town.employment_exit_review()
        return {
            "action": "review",
            "pending": [{"agent_id": ids[int(i)], "enqueued_tick": int(t)} for i, t in pending],
            "exits_today": int(exits_today),
        }
    if a.agent_id is None:
        raise CommandError(ErrorCode.invalid_args, f"employment_exit {a.action} needs an agent_id")
    i = w.agent(a.agent_id)
    if a.action == "approve":
        if not w.town.employment_exit_approve(i):
            raise CommandError(ErrorCode.conflict, f"{ids[i]} is not an employed, alive agent")
        return {"action": "approve", "agent_id": ids[i], "exits_at_tick": w.tick + 1}
    if not w.town.employment_exit_defer(i):
        raise CommandError(ErrorCode.conflict, f"{ids[i]} is not in the exit queue")
    return {"action": "defer", "agent_id": ids[i]}


class PerturbArgs(Args):
    spec: str
    starts_in: int = Field(default=0, ge=0, le=1_000_000)
    duration: int | None = Field(default=None, ge=1, le=1_000_000)
    magnitude: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)


@command(
    "perturbation_trigger",
    "admin",
    PerturbArgs,
    "schedule a perturbation from the config's specs",
    positional=("spec",),
)
def _perturbation_trigger(w: ShardWorld, a: PerturbArgs) -> dict[str, Any]:
    specs = sorted((w.config.world.get("perturbations") or {}).get("events") or {})
    if a.spec not in specs:
        raise CommandError(ErrorCode.not_found, f"unknown perturbation {a.spec!r} (specs: {', '.join(specs)})")
    event_id = w.town.perturbation_trigger(a.spec, a.starts_in, a.duration, a.magnitude)
    return {"event_id": int(event_id), "spec": a.spec, "starts_at": w.tick + a.starts_in}


class CancelArgs(Args):
    event_id: int = Field(ge=0)


@command(
    "perturbation_cancel", "admin", CancelArgs, "cancel a pending or active perturbation", positional=("event_id",)
)
def _perturbation_cancel(w: ShardWorld, a: CancelArgs) -> dict[str, Any]:
    if not w.town.perturbation_cancel(a.event_id):
        raise CommandError(ErrorCode.not_found, f"no pending or active perturbation {a.event_id}")
    return {"event_id": a.event_id, "cancelled": True}


class NarrationArgs(Args):
    enabled: bool | None = None
    throttle: int | None = Field(default=None, ge=0, le=100_000)


@command(
    "narration",
    "admin",
    NarrationArgs,
    "narration on/off and its throttle (minimum ticks between lines)",
    positional=("enabled", "throttle"),
)
def _narration(w: ShardWorld, a: NarrationArgs) -> dict[str, Any]:
    if a.enabled is not None:
        w.narration_enabled = a.enabled
    if a.throttle is not None:
        w.narration_throttle = a.throttle
    return {"enabled": w.narration_enabled, "throttle": w.narration_throttle}


class PrivacyArgs(Args):
    enabled: bool


@command(
    "privacy_mode",
    "admin",
    PrivacyArgs,
    "hide wallets and agent names in snapshots and narration",
    positional=("enabled",),
)
def _privacy(w: ShardWorld, a: PrivacyArgs) -> dict[str, Any]:
    w.privacy_mode = a.enabled
    return {"enabled": a.enabled}
