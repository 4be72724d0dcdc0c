"""Snapshot subscriptions: a bounded queue per subscriber; a subscriber that falls behind is dropped (with a
reason), never waited for."""

from __future__ import annotations

import contextlib
import queue
import threading
from typing import Any


class SubscriptionClosed(Exception):
    """The subscription ended: closed by its owner, dropped for falling behind, or the shard closed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Subscription:
    def __init__(self, maxsize: int = 64) -> None:
        self.maxsize = maxsize
        self._q: queue.Queue[tuple[int, dict[str, Any]] | None] = queue.Queue(maxsize + 1)
        self._lock = threading.Lock()
        self.dropped: str | None = None
        self.closed = False

    def offer(self, tick: int, snapshot: dict[str, Any]) -> bool:
        """Queue a snapshot; False (and the subscription is dropped) when the subscriber is `maxsize` behind."""
        with self._lock:
            if self.closed:
                return False
            if self._q.qsize() >= self.maxsize:
                self.dropped = f"slow consumer: {self.maxsize} snapshots not read"
                self.closed = True
                self._q.put_nowait(None)  # the one extra slot: wakes a reader
                return False
            self._q.put_nowait((tick, snapshot))
            return True

    def get(self, timeout: float | None = None) -> tuple[int, dict[str, Any]]:
        """The next (tick, snapshot) (shared: do not modify it); `queue.Empty` on timeout,
        `SubscriptionClosed` once dropped or closed."""
        if self.closed and self._q.empty():
            raise SubscriptionClosed(self.dropped or "closed")
        item = self._q.get(timeout=timeout)
        if item is None:
            raise SubscriptionClosed(self.dropped or "closed")
        return item

    def close(self, reason: str = "closed") -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            if self.dropped is None and reason != "closed":
                self.dropped = reason
            with contextlib.suppress(queue.Full):
                self._q.put_nowait(None)
