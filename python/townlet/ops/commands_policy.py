"""Policy commands (docs/promotion.md): promote_policy, rollback_policy, policy_swap, shadow_policy (admin, applied
between ticks) and promotion_status (viewer)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from townlet.ops.envelope import CommandError, ErrorCode
from townlet.ops.promotion import manager_for
from townlet.ops.registry import Args, NoArgs, command
from townlet.ops.world import ShardWorld


class CheckpointArgs(Args):
    checkpoint: str = Field(min_length=1, max_length=1024)

    @model_validator(mode="after")
    def _torch_ready(self) -> CheckpointArgs:
        # Arguments are parsed when the command arrives, outside the world lock: the first torch import (seconds)
        # happens here instead of in the handler, where the shard stops ticking while it runs.
        import townlet.training.evaluate  # noqa: F401

        return self


class RollbackArgs(Args):
    to: str | None = Field(None, min_length=1, max_length=512, description="a kept snapshot under the snapshot root")
    reason: str | None = Field(None, max_length=500)


def _rollback_args(args: list[Any]) -> dict[str, Any]:
    """`rollback_policy [SNAPSHOT] [--to SNAPSHOT] [--reason R]` as typed at a console."""
    out: dict[str, Any] = {}
    it = iter(args)
    for a in it:
        if a in ("--to", "--reason"):
            value = next(it, None)
            if value is None:
                raise CommandError(ErrorCode.invalid_args, f"rollback_policy: {a} needs a value")
            out[str(a)[2:]] = value
        elif "to" not in out:
            out["to"] = a
        else:
            raise CommandError(ErrorCode.invalid_args, f"rollback_policy: unexpected argument {a!r}")
    return out


@command(
    "promote_policy",
    "admin",
    CheckpointArgs,
    "pre-flight + readiness, keep a world snapshot, make the checkpoint the acting policy at the next tick",
    positional=("checkpoint",),
)
def _promote(w: ShardWorld, a: CheckpointArgs) -> dict[str, Any]:
    return manager_for(w).promote(a.checkpoint)


@command(
    "policy_swap",
    "admin",
    CheckpointArgs,
    "pre-flight only (no readiness check, no canary): swap the acting policy at the next tick (drills)",
    positional=("checkpoint",),
)
def _swap(w: ShardWorld, a: CheckpointArgs) -> dict[str, Any]:
    return manager_for(w).promote(a.checkpoint, check_ready=False)


@command(
    "rollback_policy",
    "admin",
    RollbackArgs,
    "back to the previous release (--to SNAPSHOT: that kept snapshot's world and release); --reason R",
    from_args=_rollback_args,
)
def _rollback(w: ShardWorld, a: RollbackArgs) -> dict[str, Any]:
    return manager_for(w).rollback(to=a.to, reason=a.reason)


@command(
    "shadow_policy",
    "admin",
    CheckpointArgs,
    "evaluate a candidate beside the release on the same observations (actions logged, not applied)",
    positional=("checkpoint",),
)
def _shadow(w: ShardWorld, a: CheckpointArgs) -> dict[str, Any]:
    return manager_for(w).load_shadow(a.checkpoint)


@command(
    "promotion_status",
    "viewer",
    NoArgs,
    "release, shadow, monitor windows and pass streak, canary, last promotion event",
    mutates=False,
)
def _status(w: ShardWorld, a: NoArgs) -> dict[str, Any]:
    return manager_for(w).status()
