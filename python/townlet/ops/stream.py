"""The live stream behind `WS /v1/stream`: one snapshot, then one diff per tick, to every connected client.

One pump thread reads the shard's snapshots (one `Subscription`), computes each tick's diff once and hands the
same text to every client's bounded queue on the event loop. A client whose queue is full (it stopped reading) is
dropped with a close reason; the shard and the other clients never wait for it.

Diffs are JSON Patch (RFC 6902) operations over objects: `add`, `remove`, `replace`; lists are replaced whole.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

#: Messages a client may be behind before it is dropped.
DEFAULT_CLIENT_QUEUE = 64
#: Snapshots the shard may queue for the hub before it drops the hub's subscription (the hub then resyncs).
SUBSCRIPTION_QUEUE = 256
#: Close code and reason for a dropped client (1008: policy violation; the reason fits a close frame).
SLOW_CLIENT_CODE = 1008
GOING_AWAY = 1001


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _unescape(part: str) -> str:
    return part.replace("~1", "/").replace("~0", "~")


def diff(old: Any, new: Any, path: str = "") -> list[dict[str, Any]]:
    """JSON Patch operations turning `old` into `new` (objects recursed into; anything else replaced whole)."""
    if isinstance(old, dict) and isinstance(new, dict):
        ops: list[dict[str, Any]] = []
        for key in old:
            if key not in new:
                ops.append({"op": "remove", "path": f"{path}/{_escape(str(key))}"})
        for key, value in new.items():
            sub = f"{path}/{_escape(str(key))}"
            if key not in old:
                ops.append({"op": "add", "path": sub, "value": value})
            elif old[key] != value or type(old[key]) is not type(value):
                ops.extend(diff(old[key], value, sub))
        return ops
    if old == new and type(old) is type(new):
        return []
    return [{"op": "replace", "path": path, "value": new}]


def apply_diff(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """`doc` with the operations of `diff` applied (a new object; `doc` is not changed)."""
    doc = json.loads(json.dumps(doc))
    for op in ops:
        parts = [_unescape(p) for p in op["path"].split("/")[1:]]
        if not parts:
            doc = op["value"]
            continue
        parent = doc
        for part in parts[:-1]:
            parent = parent[part]
        if op["op"] == "remove":
            del parent[parts[-1]]
        else:
            parent[parts[-1]] = op["value"]
    return doc


class SubscriptionLike(Protocol):
    dropped: str | None

    def get(self, timeout: float | None = None) -> tuple[int, dict[str, Any]]: ...

    def close(self) -> None: ...


class Publisher(Protocol):
    def subscribe(self, maxsize: int = 64) -> Any: ...

    def snapshot(self) -> dict[str, Any]: ...


@dataclass(eq=False)
class StreamClient:
    queue: asyncio.Queue[str]
    dropped: str | None = None
    close_code: int = SLOW_CLIENT_CODE
    gone: asyncio.Event = field(default_factory=asyncio.Event)


class StreamHub:
    """Fans the shard's per-tick snapshots out to WebSocket clients (see the module docstring)."""

    def __init__(self, shard: Publisher, *, client_queue: int = DEFAULT_CLIENT_QUEUE) -> None:
        self._shard = shard
        self.client_queue = client_queue
        self._lock = threading.Lock()
        self._clients: set[StreamClient] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last: tuple[int, dict[str, Any]] | None = None
        self._sub: SubscriptionLike | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped_total = 0
        self.messages_total = 0
        #: Messages a client never got because it was dropped: the one that did not fit and those still queued.
        self.payloads_dropped_total = 0
        #: Times the shard dropped the hub's own subscription (the pump fell behind) and the stream resynced.
        self.resyncs_total = 0
        #: Client handlers still running (their close included), and whether the server is stopping.
        self.serving = 0
        self.closing: str | None = None

    @property
    def clients(self) -> int:
        return len(self._clients)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._pump, name="townlet-stream", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def join(self) -> tuple[StreamClient, str]:
        """Register a client: its queue and the first message (the latest snapshot). The hub subscribes to the shard
        before it reads that snapshot, so the diffs that follow start from exactly it."""
        client = StreamClient(queue=asyncio.Queue(maxsize=self.client_queue))
        with self._lock:
            if self._sub is None:
                self._sub = self._shard.subscribe(maxsize=SUBSCRIPTION_QUEUE)
                self._last = None
            if self._last is None:
                snap = self._shard.snapshot()
                self._last = (int(snap.get("tick", 0)), snap)
            tick, snap = self._last
            self._clients.add(client)
        if self.closing is not None:
            client.dropped, client.close_code = self.closing, GOING_AWAY
            client.gone.set()
        return client, json.dumps({"type": "snapshot", "tick": tick, "data": snap})

    def close_all(self, reason: str) -> None:
        """Close every client (code 1001, `reason`): the server is stopping. Callable from any thread."""
        if self._loop is not None:
            self._call(self._drop_all, reason)

    async def wait_idle(self, timeout: float) -> None:
        """Until every client handler has finished (or `timeout` seconds)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.serving and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)

    def _drop_all(self, reason: str) -> None:
        self.closing = reason
        with self._lock:
            clients = list(self._clients)
            self._clients.clear()
        for client in clients:
            if client.dropped is None:
                client.dropped, client.close_code = reason, GOING_AWAY
            client.gone.set()

    def leave(self, client: StreamClient) -> None:
        with self._lock:
            self._clients.discard(client)

    def _pump(self) -> None:
        """While clients are connected: each tick's snapshot -> one message for all of them. Without clients the
        hub holds no subscription (the shard publishes to nobody on its behalf)."""
        while not self._stop.is_set():
            with self._lock:
                sub = self._sub
                if sub is not None and not self._clients:
                    sub.close()
                    self._sub = sub = None
                    self._last = None
            if sub is None:
                self._stop.wait(0.05)
                continue
            try:
                tick, snap = sub.get(timeout=0.25)
            except queue.Empty:
                continue
            except Exception:  # dropped by the shard (this pump fell behind) or closed: subscribe again, resync
                if sub.dropped is not None:
                    self.resyncs_total += 1
                with self._lock:
                    if self._sub is sub:
                        self._sub = self._shard.subscribe(maxsize=SUBSCRIPTION_QUEUE) if self._clients else None
                        self._last = None
                sub.close()
                continue
            with self._lock:
                if self._sub is not sub:
                    continue
                if self._last is not None and tick <= self._last[0]:
                    continue  # already in the snapshot a client joined with
                if self._last is None:
                    text = json.dumps({"type": "snapshot", "tick": tick, "data": snap})
                else:
                    ops = diff(self._last[1], snap)
                    text = json.dumps({"type": "diff", "tick": tick, "from": self._last[0], "ops": ops})
                self._last = (tick, snap)
                clients = list(self._clients)
            if clients and self._loop is not None:
                self._call(self._broadcast, clients, text)
        with self._lock:
            if self._sub is not None:
                self._sub.close()
                self._sub = None

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop closed during shutdown
            self._stop.set()

    def _broadcast(self, clients: list[StreamClient], text: str) -> None:
        for client in clients:
            if client.dropped is not None:
                continue
            try:
                client.queue.put_nowait(text)
                self.messages_total += 1
            except asyncio.QueueFull:
                client.dropped = f"slow consumer: {self.client_queue} messages behind, dropped"
                self.dropped_total += 1
                self.payloads_dropped_total += 1 + client.queue.qsize()
                client.gone.set()
                self.leave(client)
