"""Where the observer's data comes from: a town run in-process (`LocalSource`, a `Shard` ticking in its own
thread) or a live shard over HTTP (`RemoteSource`). Both read snapshots and send commands through the command bus
with the operator's token; every command the observer sends carries a cmd_id, so the audit log names it."""

from __future__ import annotations

import secrets
import threading
import uuid
from pathlib import Path
from typing import Any, Protocol

from townlet.errors import UsageError
from townlet.ops.audit import DEFAULT_AUDIT_PATH
from townlet.ops.auth import TokenStore
from townlet.ops.client import ConsoleError, ShardClient
from townlet.ops.shard import Shard
from townlet.sim.config import TownConfig

OPERATOR = "observer"


def new_cmd_id() -> str:
    return f"{OPERATOR}-{uuid.uuid4().hex[:12]}"


class Source(Protocol):
    #: Shown in the header: where the town runs.
    label: str

    def snapshot(self) -> dict[str, Any]: ...

    def send(self, envelope: dict[str, Any]) -> dict[str, Any]:
        """The command result (status ok or error) as a dict; never raises for an error result."""
        ...

    def close(self) -> None: ...


def read(source: Source, name: str, *args: Any) -> dict[str, Any]:
    """A viewer read's result; UsageError naming the command when it fails."""
    result = source.send({"name": name, "args": list(args)})
    if result.get("status") != "ok":
        err = result.get("error") or {}
        raise UsageError(f"{name}: {err.get('code', 'error')}: {err.get('message', 'failed')}")
    value = result.get("result")
    return value if isinstance(value, dict) else {"value": value}


class LocalSource:
    """A town run in this process: a `Shard` with an operator token made for this session (role admin)."""

    def __init__(
        self,
        config: TownConfig,
        *,
        audit_path: Path = DEFAULT_AUDIT_PATH,
        snapshot_root: Path = Path("snapshots"),
        policy: str | None = None,
    ) -> None:
        self.token = secrets.token_urlsafe(24)
        tokens = TokenStore([(self.token, "admin", OPERATOR)])
        self.shard = Shard(config, tokens=tokens, policy=policy, audit_path=audit_path, snapshot_root=snapshot_root)
        self.label = "in-process"
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.failure: BaseException | None = None

    def start(self, *, tick_rate: float | None, tick_limit: int | None = None) -> None:
        """Tick in a background thread at `tick_rate` ticks/s until `tick_limit` ticks or `close()`."""

        def run() -> None:
            try:
                self.shard.run(tick_limit=tick_limit, tick_rate=tick_rate, stop=self._stop)
            except BaseException as exc:  # shown by the app
                self.failure = exc

        self._thread = threading.Thread(target=run, name="townlet-observer-shard", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def snapshot(self) -> dict[str, Any]:
        return self.shard.snapshot()

    def send(self, envelope: dict[str, Any]) -> dict[str, Any]:
        return self.shard.submit(envelope, self.token, timeout=30.0).model_dump(mode="json")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.shard.close()


class RemoteSource:
    """A live shard over HTTP (`townlet sim serve`), with the operator's token (a viewer token can only watch)."""

    def __init__(self, url: str, token: str | None) -> None:
        self.client = ShardClient(url, token=token, timeout=30.0)
        try:
            self.gate = self.client.gate()
        except ConsoleError as exc:
            self.client.close()
            raise UsageError(str(exc)) from None
        self.label = self.client.url

    def snapshot(self) -> dict[str, Any]:
        result = self.client.send({"name": "telemetry_snapshot"})
        if result.get("status") != "ok" or not isinstance(result.get("result"), dict):
            err = result.get("error") or {}
            raise UsageError(f"{self.label}: telemetry_snapshot: {err.get('code')}: {err.get('message')}")
        snap: dict[str, Any] = result["result"]
        return snap

    def send(self, envelope: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.client.send(envelope)
        except ConsoleError as exc:
            return {
                "name": envelope.get("name"),
                "cmd_id": envelope.get("cmd_id"),
                "status": "error",
                "error": {"code": exc.code, "message": str(exc)},
            }

    def close(self) -> None:
        self.client.close()
