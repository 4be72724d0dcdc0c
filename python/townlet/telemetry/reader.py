"""The one JSONL reader. Every tool that reads a log (telemetry validate, watch and summary, the log tool, the
writer's resume path, the follower) splits and parses lines here, so a line means the same to all of them and
every problem is named `FILE:LINE`.

Lines are split on `\\n`; blank lines are skipped; a final line without its newline is still a line (marked
`terminated=False`: the writer may be writing it). Rotated files are `LOG.1` (newest) ... `LOG.N` (oldest).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from townlet.errors import TownletError, UsageError
from townlet.jsonio import DuplicateKey, loads_strict


class MalformedLine(TownletError):
    """A line that is not JSON, or not a JSON object where one is needed (exit 1)."""


@dataclass(frozen=True)
class LogKind:
    """How a missing or unreadable file is named in errors."""

    missing: str
    directory: str


#: The telemetry tools' wording.
TELEMETRY_LOG = LogKind("no such telemetry log", "is a directory, not a telemetry log")
#: The log tool's wording (any JSONL log).
ANY_LOG = LogKind("log not found", "is a directory, not a log")


def open_error(path: Path, exc: OSError, kind: LogKind = TELEMETRY_LOG) -> UsageError:
    if isinstance(exc, FileNotFoundError):
        return UsageError(f"{path}: {kind.missing}")
    if isinstance(exc, IsADirectoryError):
        return UsageError(f"{path}: {kind.directory}")
    return UsageError(f"{path}: cannot read ({exc.strerror or exc})")


@dataclass(frozen=True)
class LogLine:
    """One parsed line: where it came from and what it holds (any JSON value)."""

    file: str
    line: int
    record: Any
    #: Why the line is not JSON, in the decoder's words (`record` is then None).
    error: str | None = None
    #: Column of a JSON syntax error.
    column: int | None = None
    #: False when the bytes are not UTF-8.
    utf8: bool = True
    #: False for a final line without its newline.
    terminated: bool = True

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def problem(self) -> str | None:
        """`FILE:LINE: malformed ...` for a line that is not JSON, else None."""
        if self.error is None:
            return None
        if not self.utf8:
            return f"{self.where}: malformed line (not UTF-8)"
        if self.column is not None:
            return f"{self.where}: malformed JSON ({self.error} at column {self.column})"
        return f"{self.where}: malformed JSON ({self.error})"

    @property
    def not_an_object(self) -> str | None:
        """`FILE:LINE: expected a JSON object, ...` for a parsed line that is not an object, else None."""
        if self.error is not None or isinstance(self.record, dict):
            return None
        return f"{self.where}: expected a JSON object, got {type(self.record).__name__}"


@dataclass(frozen=True)
class RawLine:
    """One line's bytes (without the newline) and where it came from."""

    file: str
    line: int
    data: bytes
    terminated: bool = True

    def parse(self, *, finite: bool = False) -> LogLine | None:
        """The parsed line (`error` set when it is not JSON or an object names a key twice), or None for a
        blank one. `finite` rejects the NaN and Infinity literals Python's json accepts (they are not JSON)."""
        where = (self.file, self.line)
        try:
            text = self.data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return LogLine(*where, None, error=str(exc), utf8=False, terminated=self.terminated)
        if not text.strip():
            return None
        try:
            record = loads_strict(text, finite=finite)
        except json.JSONDecodeError as exc:
            return LogLine(*where, None, error=exc.msg, column=exc.colno, terminated=self.terminated)
        except DuplicateKey as exc:
            return LogLine(*where, None, error=f"duplicate key {exc.key!r}", terminated=self.terminated)
        except (ValueError, RecursionError) as exc:  # a NaN or Infinity literal with `finite`
            return LogLine(*where, None, error=str(exc), terminated=self.terminated)
        return LogLine(*where, record, terminated=self.terminated)


def split_lines(data: bytes, file: str, first: int = 1) -> list[RawLine]:
    """`data` cut at each newline; a trailing piece without one is an unterminated last line."""
    pieces = data.split(b"\n")
    tail = pieces.pop()
    lines = [RawLine(file, n, raw) for n, raw in enumerate(pieces, first)]
    if tail:
        lines.append(RawLine(file, first + len(pieces), tail, terminated=False))
    return lines


def parse_lines(raw: list[RawLine], *, finite: bool = False) -> list[LogLine]:
    """The non-blank lines of `raw`, parsed."""
    return [ln for r in raw if (ln := r.parse(finite=finite)) is not None]


def rotated_chain(path: Path) -> list[Path]:
    """The rotated files of `path` oldest first (`LOG.N`, ..., `LOG.1`), then `path` itself when it exists.

    The folder is scanned rather than probing `LOG.1`, `LOG.2`, ... in turn: while the writer rotates, a
    number can be missing for a moment, and a follower must not lose the older files behind the gap."""
    pattern = re.compile(re.escape(path.name) + r"\.([1-9][0-9]*)")
    try:
        names = os.listdir(path.parent)
    except OSError:
        names = []
    numbered = sorted(
        ((int(m.group(1)), path.parent / name) for name in names if (m := pattern.fullmatch(name))), reverse=True
    )
    chain = [p for _, p in numbered]
    if path.exists():
        chain.append(path)
    return chain


def read_file(path: Path, *, finite: bool = False, kind: LogKind = TELEMETRY_LOG) -> list[LogLine]:
    """Every non-blank line of one file in order, malformed ones with `error` set. Unreadable: UsageError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise open_error(path, exc, kind) from None
    return parse_lines(split_lines(data, str(path)), finite=finite)


def read_lines(path: Path, *, include_rotated: bool = False, finite: bool = False) -> list[LogLine]:
    """`path` alone, or (include_rotated) its rotated files oldest first and then `path`; in order, malformed
    lines included (with `error` set)."""
    files = rotated_chain(path) if include_rotated else [path]
    if not files:
        raise UsageError(f"{path}: no such telemetry log (nor rotated files {path}.1 ...)")
    return [ln for f in files for ln in read_file(f, finite=finite)]


def read_log(path: Path) -> tuple[list[LogLine], list[str]]:
    """Every well-formed line of one file, and one problem per malformed line."""
    lines = read_file(path)
    return [ln for ln in lines if ln.error is None], [p for ln in lines if (p := ln.problem) is not None]


def read_records_strict(path: Path, *, include_rotated: bool = False) -> list[LogLine]:
    """Lines that must all be JSON objects: the first bad one raises `MalformedLine` naming FILE:LINE."""
    lines = read_lines(path, include_rotated=include_rotated)
    for ln in lines:
        bad = ln.problem or ln.not_an_object
        if bad is not None:
            raise MalformedLine(bad)
    return lines
