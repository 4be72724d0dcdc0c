"""The audit log: one JSON line per command, accepted or refused, appended durably (flush + fsync)."""

from __future__ import annotations

import json
import math
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from townlet.errors import UsageError

DEFAULT_AUDIT_PATH = Path("logs/console/commands.jsonl")


def audit_record(
    *,
    cmd_id: str | None,
    issuer: str | None,
    role: str | None,
    name: str,
    args: list[Any],
    kwargs: dict[str, Any],
    status: str,
    code: str | None,
    tick: int,
    replayed: bool = False,
) -> dict[str, Any]:
    return {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "tick": tick,
        "cmd_id": cmd_id,
        "issuer": issuer,
        "role": role,
        "name": name,
        "args": args,
        "kwargs": kwargs,
        "status": status,
        "code": code,
        "replayed": replayed,
    }


def _finite(x: Any) -> Any:
    """`x` with non-finite floats as strings (a client may send NaN; the log stays standard JSON)."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


def _line(record: dict[str, Any]) -> str:
    try:
        return json.dumps(record, sort_keys=True, default=str, allow_nan=False) + "\n"
    except ValueError:
        return json.dumps(_finite(record), sort_keys=True, default=str, allow_nan=False) + "\n"


class AuditLog:
    """Appends records to a JSONL file; each batch is flushed and fsynced before `write` returns."""

    def __init__(self, path: str | Path = DEFAULT_AUDIT_PATH) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held open for the shard's life
        except OSError as exc:
            raise UsageError(f"{self.path}: cannot open the audit log: {exc.strerror or exc}") from None

    def write(self, *records: dict[str, Any]) -> None:
        if not records:
            return
        text = "".join(_line(r) for r in records)
        with self._lock:
            self._fh.write(text)
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.close()
