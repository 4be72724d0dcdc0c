"""The command registry: name -> role, argument model, handler. `help` is built from it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from townlet.ops.auth import ROLE_RANK, Principal, Role
from townlet.ops.envelope import CommandEnvelope, CommandError, ErrorCode

if TYPE_CHECKING:
    from townlet.ops.world import ShardWorld


class Args(BaseModel):
    """Base of every command's argument model: unknown keys are refused, types are strict-ish."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoArgs(Args):
    pass


Handler = Callable[["ShardWorld", Any], Any]


@dataclass(frozen=True)
class Command:
    name: str
    role: Role
    model: type[Args]
    handler: Handler
    summary: str
    #: Changes the world (queued, applied between ticks, recorded for replay); else a read, run at once.
    mutates: bool = True
    #: Positional `args` map onto these fields in order (unless `from_args` is given).
    positional: tuple[str, ...] = ()
    from_args: Callable[[list[Any]], dict[str, Any]] | None = None
    #: Names kept for a later issue: they answer a clear error.
    reserved: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        schema = self.model.model_json_schema()
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        return {
            "name": self.name,
            "role": self.role,
            "summary": self.summary,
            "mutates": self.mutates,
            "reserved": self.reserved,
            "positional": list(self.positional),
            "arguments": {
                k: {
                    "type": _type_name(v),
                    "required": k in required,
                    **({"default": v["default"]} if "default" in v else {}),
                }
                for k, v in props.items()
            },
        }


def _type_name(prop: dict[str, Any]) -> str:
    if "enum" in prop:
        return "|".join(str(v) for v in prop["enum"])
    if "const" in prop:
        return str(prop["const"])
    if prop.get("type") == "array" and "prefixItems" in prop:
        return "[" + ", ".join(_type_name(p) for p in prop["prefixItems"]) + "]"
    if "type" in prop:
        return str(prop["type"])
    if "anyOf" in prop:
        return " | ".join(_type_name(p) for p in prop["anyOf"])
    if "$ref" in prop:
        return str(prop["$ref"]).rsplit("/", 1)[-1]
    return "any"


REGISTRY: dict[str, Command] = {}


def register(cmd: Command) -> Command:
    if cmd.name in REGISTRY:
        raise ValueError(f"command {cmd.name} registered twice")
    REGISTRY[cmd.name] = cmd
    return cmd


def command(
    name: str,
    role: Role,
    model: type[Args],
    summary: str,
    *,
    mutates: bool = True,
    positional: tuple[str, ...] = (),
    from_args: Callable[[list[Any]], dict[str, Any]] | None = None,
) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        register(Command(name, role, model, fn, summary, mutates, positional, from_args))
        return fn

    return deco


def lookup(name: str) -> Command:
    cmd = REGISTRY.get(name)
    if cmd is None:
        raise CommandError(ErrorCode.usage, f"unknown command {name!r} (try 'help')")
    return cmd


def check_role(cmd: Command, principal: Principal) -> None:
    if ROLE_RANK[principal.role] < ROLE_RANK[cmd.role]:
        raise CommandError(ErrorCode.forbidden, f"{cmd.name} needs the {cmd.role} role; this token is {principal.role}")


def parse_args(cmd: Command, env: CommandEnvelope) -> Args:
    """The envelope's args and kwargs as the command's model; invalid_args names the first bad field."""
    data: dict[str, Any] = {}
    if env.args:
        if cmd.from_args is not None:
            data.update(cmd.from_args(list(env.args)))
        else:
            if len(env.args) > len(cmd.positional):
                raise CommandError(
                    ErrorCode.invalid_args,
                    f"{cmd.name} takes at most {len(cmd.positional)} positional arguments"
                    + (f" ({', '.join(cmd.positional)})" if cmd.positional else "")
                    + f", got {len(env.args)}",
                )
            data.update(zip(cmd.positional, env.args, strict=False))
    for k, v in env.kwargs.items():
        if k in data:
            raise CommandError(ErrorCode.invalid_args, f"{cmd.name}: {k} given both positionally and by name")
        data[k] = v
    try:
        return cmd.model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "arguments"
        raise CommandError(ErrorCode.invalid_args, f"{cmd.name}: {key}: {err['msg']}") from None


def help_table(role: Role | None = None) -> list[dict[str, Any]]:
    return [c.describe() for c in sorted(REGISTRY.values(), key=lambda c: c.name) if role is None or c.role == role]
