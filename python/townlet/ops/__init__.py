"""The operator console's core: the command bus (envelope, result, error codes), tokens and roles, the audit
log, the command registry, telemetry snapshots and the `Shard` that runs a live town (docs/console.md)."""

from __future__ import annotations

from townlet.ops.auth import Principal, TokenStore
from townlet.ops.envelope import CommandEnvelope, CommandError, CommandResult, ErrorCode, ErrorInfo
from townlet.ops.shard import Shard
from townlet.ops.snapshot import SCHEMA_VERSION, telemetry_snapshot
from townlet.ops.subscribe import Subscription, SubscriptionClosed

__all__ = [
    "SCHEMA_VERSION",
    "CommandEnvelope",
    "CommandError",
    "CommandResult",
    "ErrorCode",
    "ErrorInfo",
    "Principal",
    "Shard",
    "Subscription",
    "SubscriptionClosed",
    "TokenStore",
    "telemetry_snapshot",
]
