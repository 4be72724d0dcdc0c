"""Bearer tokens -> roles. Tokens are compared in constant time and never logged or echoed."""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from townlet.errors import UsageError
from townlet.jsonio import loads_strict, read_json
from townlet.ops.envelope import CommandError, ErrorCode

Role = Literal["viewer", "admin"]
ROLE_RANK: dict[str, int] = {"viewer": 0, "admin": 1}


@dataclass(frozen=True)
class Principal:
    role: Role
    label: str


class _TokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=8)
    role: Role
    label: str = Field(min_length=1, max_length=128)
    #: When the token stops working (ISO 8601 with a timezone); none: never.
    expires: AwareDatetime | None = None

    def __repr__(self) -> str:  # never show the token
        return f"_TokenEntry(role={self.role!r}, label={self.label!r})"


class TokenStore:
    """token -> (role, label). `authenticate` checks every entry with `hmac.compare_digest`."""

    def __init__(
        self,
        entries: list[tuple[str, Role, str]],
        *,
        allow_anonymous_viewer: bool = False,
        expires: list[datetime | None] | None = None,
    ) -> None:
        ends = expires if expires is not None else [None] * len(entries)
        if len(ends) != len(entries):
            raise ValueError("one expiry (or None) per token")
        self._entries = [
            (tok.encode("utf-8"), Principal(role, label), end)
            for (tok, role, label), end in zip(entries, ends, strict=True)
        ]
        self.allow_anonymous_viewer = allow_anonymous_viewer

    def has_role(self, role: str) -> bool:
        """Whether some token has `role`."""
        return any(p.role == role for _, p, _ in self._entries)

    def __repr__(self) -> str:
        return f"TokenStore({len(self._entries)} tokens)"

    @classmethod
    def from_records(cls, records: Any, where: str, *, allow_anonymous_viewer: bool = False) -> TokenStore:
        if not isinstance(records, list):
            raise UsageError(f"{where}: expected a JSON list of {{token, role, label}}")
        entries: list[tuple[str, Role, str]] = []
        ends: list[datetime | None] = []
        seen: set[str] = set()
        for k, rec in enumerate(records):
            try:
                e = _TokenEntry.model_validate(rec)
            except ValidationError as exc:
                err = exc.errors()[0]
                key = ".".join(str(p) for p in err["loc"])
                # The message never quotes the input (it may be a token).
                raise UsageError(f"{where}: [{k}].{key}: {err['msg']}") from None
            if e.token.strip() != e.token:
                raise UsageError(f"{where}: [{k}].token: surrounding whitespace")
            if e.token in seen:
                raise UsageError(f"{where}: [{k}].token: duplicate token")
            seen.add(e.token)
            entries.append((e.token, e.role, e.label))
            ends.append(e.expires)
        return cls(entries, allow_anonymous_viewer=allow_anonymous_viewer, expires=ends)

    @classmethod
    def from_file(cls, path: str | Path, *, allow_anonymous_viewer: bool = False) -> TokenStore:
        path = Path(path)
        return cls.from_records(
            read_json(path, "tokens file"), str(path), allow_anonymous_viewer=allow_anonymous_viewer
        )

    @classmethod
    def from_env(cls, var: str, *, allow_anonymous_viewer: bool = False) -> TokenStore:
        text = os.environ.get(var)
        if text is None:
            raise UsageError(f"environment variable {var} is not set")
        try:
            records = loads_strict(text)
        except ValueError:
            raise UsageError(f"environment variable {var}: not valid JSON") from None
        return cls.from_records(records, f"${var}", allow_anonymous_viewer=allow_anonymous_viewer)

    def authenticate(self, token: str | None) -> Principal:
        """The principal for `token`; no token -> viewer when anonymous viewers are allowed; else unauthorized."""
        if token is None or token == "":
            if self.allow_anonymous_viewer:
                return Principal("viewer", "anonymous")
            raise CommandError(ErrorCode.unauthorized, "a bearer token is required")
        given = token.strip().encode("utf-8")
        found: Principal | None = None
        end: datetime | None = None
        for tok, principal, expires in self._entries:  # check all: time does not depend on which matched
            if hmac.compare_digest(tok, given):
                found, end = principal, expires
        if found is None:
            raise CommandError(ErrorCode.unauthorized, "unknown token")
        if end is not None and datetime.now(UTC) >= end:
            raise CommandError(ErrorCode.unauthorized, f"token expired (label {found.label!r})")
        return found
