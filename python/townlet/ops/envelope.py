"""The command bus's envelope and result: one shape for in-process calls, the CLI and HTTP."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from townlet.errors import TownletError


class ErrorCode(StrEnum):
    usage = "usage"
    invalid_args = "invalid_args"
    not_found = "not_found"
    forbidden = "forbidden"
    conflict = "conflict"
    unauthorized = "unauthorized"
    internal = "internal"


class CommandError(TownletError):
    """A command refused or failed: an error code and one clear message."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class CommandEnvelope(BaseModel):
    """What a client sends: the command's name, positional args, keyword args, an idempotency token."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    args: list[Any] = Field(default_factory=list, max_length=64)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    cmd_id: str | None = Field(default=None, min_length=1, max_length=128)
    issuer: str | None = Field(default=None, max_length=128)
    mode: Literal["viewer", "admin"] | None = None


class ErrorInfo(BaseModel):
    code: ErrorCode
    message: str


class CommandResult(BaseModel):
    """What the bus answers: status ok with a result, or error with {code, message}."""

    cmd_id: str | None
    name: str
    status: Literal["ok", "error"]
    result: Any = None
    error: ErrorInfo | None = None
    issuer: str | None = None
    tick: int
    latency_ms: float = 0.0

    @classmethod
    def failure(
        cls, name: str, code: ErrorCode, message: str, *, cmd_id: str | None, issuer: str | None, tick: int
    ) -> CommandResult:
        return cls(
            cmd_id=cmd_id,
            name=name,
            status="error",
            error=ErrorInfo(code=code, message=message),
            issuer=issuer,
            tick=tick,
        )
