"""Admin commands of seed 003's demo checklist that act on agents: spawn, force_chat, arrange_meet, possess."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import Field

from townlet.ops.envelope import CommandError, ErrorCode
from townlet.ops.registry import Args, command
from townlet.ops.world import NEED_NAMES, ShardWorld


class SpawnArgs(Args):
    agent_id: str
    position: tuple[int, int]
    needs: dict[str, float] | None = None
    wallet: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    #: The prior system's spawn fields. Here a slot's home and personality are part of the config (the core's
    #: per-slot statics: distance maps to the home, the profile's biases), so spawn checks them instead of
    #: silently ignoring them: the slot's own values are accepted, any other is refused naming the slot's.
    home_position: tuple[int, int] | None = None
    profile: str | None = Field(default=None, min_length=1, max_length=64)


def _slot_profile(w: ShardWorld, base: str) -> str | None:
    """The slot's personality as the config fixes it (agents[].personality, personalities.overrides, or a
    one-profile distribution); None when the core draws it from a distribution."""
    agent: dict[str, Any] = next((a for a in w.config.world["agents"] if a["id"] == base), {})
    persona = w.config.world.get("personalities") or {}
    named = agent.get("personality") or (persona.get("overrides") or {}).get(base)
    if named:
        return str(named)
    drawn = [n for n, weight in (persona.get("distribution") or {"balanced": 1.0}).items() if weight > 0]
    return str(drawn[0]) if len(drawn) == 1 else None


def _check_slot(w: ShardWorld, i: int, a: SpawnArgs) -> dict[str, Any]:
    base = w.agent_ids()[i].split("#", 1)[0]
    agent: dict[str, Any] = next((x for x in w.config.world["agents"] if x["id"] == base), {})
    home = tuple(agent.get("home", ()))
    if a.home_position is not None and tuple(a.home_position) != home:
        raise CommandError(
            ErrorCode.invalid_args,
            f"spawn: {base}'s home is {list(home)} (homes are per slot, set in the config's agents); "
            f"home_position {list(a.home_position)} cannot be given",
        )
    profile = _slot_profile(w, base)
    if a.profile is not None and a.profile != profile:
        fixed = f"is {profile!r}" if profile else "is drawn from personalities.distribution at config load"
        raise CommandError(
            ErrorCode.invalid_args,
            f"spawn: {base}'s profile {fixed} (profiles are per slot, set in the config); profile {a.profile!r} "
            "cannot be given",
        )
    return {"home_position": list(home), "profile": profile}


def _xy_args(names: tuple[str, ...]) -> Callable[[list[Any]], dict[str, Any]]:
    """Positional args where a trailing position may be given as two numbers: `spawn bob 3 3`."""

    def parse(args: list[Any]) -> dict[str, Any]:
        if len(args) == len(names) + 1:
            args = [*args[:-2], [args[-2], args[-1]]]
        if len(args) > len(names):
            raise CommandError(ErrorCode.invalid_args, f"expected at most {' '.join(names)} (position as X Y)")
        return dict(zip(names, args, strict=False))

    return parse


@command(
    "spawn",
    "admin",
    SpawnArgs,
    "bring a removed agent's slot back now at a position (the next generation of its id)",
    positional=("agent_id", "position"),
    from_args=_xy_args(("agent_id", "position")),
)
def _spawn(w: ShardWorld, a: SpawnArgs) -> dict[str, Any]:
    i = w.agent(a.agent_id)
    if bool(w.town.alive()[i]):
        raise CommandError(ErrorCode.conflict, f"agent {w.agent_ids()[i]!r} is alive: kill it first, or teleport it")
    slot = _check_slot(w, i, a)
    needs = None
    if a.needs is not None:
        unknown = sorted(set(a.needs) - set(NEED_NAMES))
        if unknown:
            raise CommandError(ErrorCode.invalid_args, f"spawn: unknown need {unknown[0]!r}")
        current = {n: float(v) for n, v in zip(NEED_NAMES, w.town.needs()[i], strict=True)}
        merged = {**{n: 1.0 for n in NEED_NAMES}, **current, **a.needs}
        needs = (merged["hunger"], merged["hygiene"], merged["energy"])
    w.town.spawn(i, a.position[0], a.position[1], needs, a.wallet)
    given = {k: v for k, v in slot.items() if getattr(a, k) is not None}  # echoed when given
    return {"agent_id": w.agent_ids()[i], "position": list(a.position), **given}


class ChatArgs(Args):
    speaker: str
    listener: str
    quality: float = Field(default=0.5, ge=0.1, le=1.0)


@command(
    "force_chat",
    "admin",
    ChatArgs,
    "a successful chat between two agents (trust and familiarity grow both ways)",
    positional=("speaker", "listener", "quality"),
)
def _force_chat(w: ShardWorld, a: ChatArgs) -> dict[str, Any]:
    i, j = w.alive_agent(a.speaker), w.alive_agent(a.listener)
    if i == j:
        raise CommandError(ErrorCode.invalid_args, "force_chat: an agent cannot chat with itself")
    q = w.town.force_chat(i, j, a.quality)
    trust, familiarity, _ = w.town.relationships()
    ids = w.agent_ids()
    return {
        "speaker": ids[i],
        "listener": ids[j],
        "quality": round(float(q), 6),
        "trust": round(float(trust[i][j]), 6),
        "familiarity": round(float(familiarity[i][j]), 6),
    }


class MeetArgs(Args):
    agent_a: str
    agent_b: str
    position: tuple[int, int] | None = None


@command(
    "arrange_meet",
    "admin",
    MeetArgs,
    "bring two agents together: agent_a to position (default: where it is), agent_b next to it",
    positional=("agent_a", "agent_b", "position"),
    from_args=_xy_args(("agent_a", "agent_b", "position")),
)
def _arrange_meet(w: ShardWorld, a: MeetArgs) -> dict[str, Any]:
    i, j = w.alive_agent(a.agent_a), w.alive_agent(a.agent_b)
    if i == j:
        raise CommandError(ErrorCode.invalid_args, "arrange_meet: an agent cannot meet itself")
    pa, pb = w.town.arrange_meet(i, j, a.position)
    ids = w.agent_ids()
    return {"positions": {ids[i]: list(pa), ids[j]: list(pb)}}


class PossessArgs(Args):
    agent_id: str
    action: str = Field(default="acquire", min_length=1, max_length=64)


@command(
    "possess",
    "admin",
    PossessArgs,
    "possess AGENT [acquire|release|ACTION]: a possessed agent waits unless given an action for its next tick",
    positional=("agent_id", "action"),
)
def _possess(w: ShardWorld, a: PossessArgs) -> dict[str, Any]:
    i = w.agent(a.agent_id)
    ids = w.agent_ids()
    if a.action == "release":
        if i not in w.possessed:
            raise CommandError(ErrorCode.conflict, f"{ids[i]} is not possessed")
        del w.possessed[i]
        return {"agent_id": ids[i], "possessed": False}
    w.alive_agent(a.agent_id)
    if a.action == "acquire":
        w.possessed.setdefault(i, None)
        return {"agent_id": ids[i], "possessed": True, "next_action": None}
    w.possessed[i] = w.action_index(a.action)
    return {"agent_id": ids[i], "possessed": True, "next_action": a.action}
