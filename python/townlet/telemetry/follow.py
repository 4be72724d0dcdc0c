"""The one follower: complete lines appended to a log as it grows, across rotation (`LOG` -> `LOG.1`) and
truncation, for `telemetry watch --follow` and `log tail --follow`; and `last_lines`, the end of a file read
backwards for `log tail`.

A follower started from the beginning of a stream reads the rotated files it has not seen before `LOG`, so a
follower started after the writer rotated loses no records. A follower started at an offset (a tail) counts
the rotated files already on disk as read, and still reads the ones that appear later.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from townlet.errors import UsageError
from townlet.telemetry.reader import ANY_LOG, TELEMETRY_LOG, LogKind, RawLine, open_error, rotated_chain, split_lines

#: Bytes read per step by `last_lines`.
BLOCK = 64 * 1024


class Follower:
    """Polls a log for new complete lines, in order, across rotation and truncation."""

    def __init__(
        self,
        path: Path,
        *,
        offset: int | None = None,
        note: Callable[[str], None] | None = None,
        kind: LogKind = TELEMETRY_LOG,
    ) -> None:
        """`offset` None: the whole stream, the rotated files first. `offset` N: `path` from byte N on.
        `note` hears of each rotation and truncation."""
        self.path = path
        self._note = note
        self._kind = kind
        self._fh: BinaryIO | None = None
        self._ino = 0
        self._label = str(path)
        self._lineno = 0
        self._buf = b""
        #: Inodes of files never to read again: read to their end, or skipped by a tail.
        self._seen: set[int] = set()
        #: Lines read when opening at an offset, handed out by the first poll.
        self._pending: list[RawLine] = []
        if offset is not None:
            for p in rotated_chain(path)[:-1] if path.exists() else rotated_chain(path):
                with contextlib.suppress(OSError):
                    self._seen.add(os.stat(p).st_ino)
            self._open(self._pending, offset)

    @property
    def opened(self) -> bool:
        return self._fh is not None

    def _say(self, text: str) -> None:
        if self._note is not None:
            self._note(text)

    def _take(self, data: bytes, *, final: bool) -> list[RawLine]:
        """Complete lines of the buffer plus `data` (and, when `final`, the unterminated rest)."""
        pieces = (self._buf + data).split(b"\n")
        self._buf = pieces.pop()
        out = []
        for raw in pieces:
            self._lineno += 1
            out.append(RawLine(self._label, self._lineno, raw))
        if final and self._buf:
            self._lineno += 1
            out.append(RawLine(self._label, self._lineno, self._buf, terminated=False))
            self._buf = b""
        return out

    def _drain(self, *, final: bool = False) -> list[RawLine]:
        assert self._fh is not None
        return self._take(self._fh.read(), final=final)

    def _open(self, out: list[RawLine], offset: int = 0) -> None:
        """Open `path` (when it exists): first read the rotated files not seen yet, oldest first (they hold
        older records), then `path` from `offset`. `path` is opened before the folder is listed, so a
        rotation in between leaves no file unread."""
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - kept open across polls
        except FileNotFoundError:
            return
        except OSError as exc:
            raise open_error(self.path, exc, self._kind) from None
        ino = os.fstat(fh.fileno()).st_ino
        for p in rotated_chain(self.path):
            try:
                rotated_ino = os.stat(p).st_ino
                if p == self.path or rotated_ino in self._seen or rotated_ino == ino:
                    continue
                data = p.read_bytes()
            except OSError:
                continue
            self._seen.add(rotated_ino)
            out.extend(split_lines(data, str(p)))
        fh.seek(offset)
        self._fh, self._ino, self._label, self._lineno, self._buf = fh, ino, str(self.path), 0, b""
        out.extend(self._drain())

    def poll(self) -> list[RawLine]:
        """New complete lines since the last poll (across a rotation or truncation, in order)."""
        out, self._pending = self._pending, []
        if self._fh is None:
            self._open(out)
            return out
        out.extend(self._drain())
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return out  # mid-rotation: the new file appears on a later poll
        if st.st_ino != self._ino:
            out.extend(self._drain(final=True))
            self._seen.add(self._ino)
            self._fh.close()
            self._fh = None
            self._say(f"{self.path}: replaced (rotated); reading the new file from its start")
            self._open(out)
        elif st.st_size < self._fh.tell():
            self._say(f"{self.path}: truncated; reading from its start")
            self._fh.seek(0)
            self._lineno, self._buf = 0, b""
            out.extend(self._drain())
        return out

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def finish(self) -> list[RawLine]:
        """Stop reading; a last partial line (no newline) counts as a line now."""
        if self._fh is None:
            return []
        out = self._drain(final=True)
        self.close()
        return out


def follow_lines(
    follower: Follower,
    *,
    interval: float,
    max_wait: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[list[RawLine]]:
    """Poll every `interval` seconds, yielding each batch of new lines, until `max_wait` seconds pass without
    one (0: never)."""
    last = clock()
    while True:
        lines = follower.poll()
        if lines:
            last = clock()
            yield lines
        idle = clock() - last
        if max_wait and idle >= max_wait:
            return
        sleep(min(interval, max_wait - idle) if max_wait else interval)


def last_lines(path: Path, n: int, *, complete: bool = False) -> tuple[list[str], int]:
    """The last `n` lines of `path`, read backwards from the end (not the whole file), and the offset
    after them. With `complete`, an unterminated final line (still being written) is left for later."""
    if n < 0:
        raise UsageError(f"-n must be >= 0, got {n}")
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise open_error(path, exc, ANY_LOG) from None
    with fh:
        end = fh.seek(0, os.SEEK_END)
        if n == 0 and not complete:
            return [], end
        data = b""
        pos = end
        while pos > 0 and data.count(b"\n") <= max(n, 1):
            step = min(BLOCK, pos)
            pos -= step
            fh.seek(pos)
            data = fh.read(step) + data
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif complete and lines:
        end -= len(lines.pop())
    return [ln.decode("utf-8", "replace") for ln in lines[-n:]] if n else [], end
