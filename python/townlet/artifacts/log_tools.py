"""`log tail` and `log validate` for JSONL logs: PPO telemetry (records with `telemetry_version`,
checked by `telemetry.check_record`), behaviour-cloning logs (records with `phase` "bc" and an
`epoch`, checked by `telemetry.check_bc_record`) and per-episode logs (records with an `episode` key).

An episode record is a JSON object whose `episode` is an integer >= 0 that increases strictly within
a run (records sharing `run_id` and `phase`); every number in it is finite (NaN, Infinity and
overflowing literals such as 1e999 are rejected); the known fields, when present, have their types:
`run_id` and `phase` strings, `schema_version` an integer >= 1, `return` and `wall_time` numbers,
`length` and `env_steps` integers >= 0.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from townlet.errors import UsageError
from townlet.telemetry.records import check_bc_record, check_record

BLOCK = 64 * 1024


def _open(path: Path) -> Any:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise UsageError(f"{path}: log not found") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not a log") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror or exc})") from None


def last_lines(path: Path, n: int, *, complete: bool = False) -> tuple[list[str], int]:
    """The last `n` lines of `path`, read backwards from the end (not the whole file), and the offset
    after them. With `complete`, an unterminated final line (still being written) is left for later."""
    if n < 0:
        raise UsageError(f"-n must be >= 0, got {n}")
    with _open(path) as fh:
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


@dataclass
class FollowResult:
    lines: int
    stopped: str


def follow(
    path: Path,
    emit: Callable[[str], None],
    *,
    offset: int,
    interval: float = 0.5,
    max_wait: float = 300.0,
    note: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FollowResult:
    """Emit each complete line appended after `offset`, following truncation (the file shrank) and
    rotation (a new file under the name); stop after `max_wait` seconds without a new line (0: never)."""
    if interval <= 0:
        raise UsageError(f"--interval must be > 0, got {interval}")
    if max_wait < 0:
        raise UsageError(f"--max-wait must be >= 0, got {max_wait}")
    try:
        ident: tuple[int, int] | None = (os.stat(path).st_ino, os.stat(path).st_dev)
    except FileNotFoundError:
        ident = None
    pos = offset
    pending = b""
    count = 0
    last_new = clock()
    while True:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        if st is not None:
            now_ident = (st.st_ino, st.st_dev)
            if ident is not None and now_ident != ident:
                if note:
                    note(f"{path}: replaced (rotated); reading the new file from its start")
                pos, pending = 0, b""
            elif st.st_size < pos:
                if note:
                    note(f"{path}: truncated; reading from its start")
                pos, pending = 0, b""
            ident = now_ident
            if st.st_size > pos:
                with open(path, "rb") as fh:
                    fh.seek(pos)
                    chunk = fh.read()
                pos += len(chunk)
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    emit(line.decode("utf-8", "replace"))
                    count += 1
                if complete:
                    last_new = clock()
        if max_wait and clock() - last_new >= max_wait:
            return FollowResult(count, f"no new lines for {max_wait:g}s")
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# Validation


@dataclass
class LogReport:
    path: Path
    telemetry: int = 0
    episodes: int = 0
    bc: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def records(self) -> int:
        return self.telemetry + self.episodes + self.bc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a finite number (not valid JSON)")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _non_finite(value: Any, path: str) -> list[str]:
    """Key paths of the non-finite numbers in `value`."""
    if isinstance(value, float) and not math.isfinite(value):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _non_finite(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _non_finite(v, f"{path}[{i}]")]
    return []


EPISODE_TYPES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "run_id": ("a string", lambda v: isinstance(v, str)),
    "phase": ("a string", lambda v: isinstance(v, str)),
    "schema_version": ("an integer >= 1", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1),
    "return": ("a number", _is_number),
    "wall_time": ("a number", _is_number),
    "length": ("an integer >= 0", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0),
    "env_steps": ("an integer >= 0", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0),
}


def check_episode(record: dict[str, Any], *, where: str) -> list[str]:
    """Schema problems of one per-episode record (empty when valid)."""
    problems: list[str] = []
    ep = record.get("episode")
    if not isinstance(ep, int) or isinstance(ep, bool) or ep < 0:
        problems.append(f"{where}: field 'episode' must be an integer >= 0, got {ep!r}")
    for key, (what, ok) in EPISODE_TYPES.items():
        if key in record and not ok(record[key]):
            problems.append(f"{where}: field {key!r} must be {what}, got {record[key]!r}")
    problems += [f"{where}: field {p!r} must be a finite number" for p in _non_finite(record, "")]
    return problems


def validate_log(path: Path) -> LogReport:
    """Check every line; problems are `FILE:LINE: message`."""
    report = LogReport(path)
    last_episode: dict[tuple[Any, Any], tuple[int, int]] = {}
    with _open(path) as fh:
        for lineno, raw in enumerate(fh, 1):
            _check_line(report, last_episode, raw, f"{path}:{lineno}", lineno)
    return report


def _check_line(
    report: LogReport, last_episode: dict[tuple[Any, Any], tuple[int, int]], raw: bytes, where: str, lineno: int
) -> None:
    if not raw.strip():
        return
    try:
        record = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        if not raw.endswith(b"\n"):  # the last line, cut short
            report.warnings.append(f"{where}: incomplete final line (the writer is running or was killed)")
            return
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        report.problems.append(f"{where}: malformed JSON ({msg})")
        return
    if not isinstance(record, dict):
        report.problems.append(f"{where}: expected a JSON object, got {type(record).__name__}")
        return
    if "telemetry_version" in record:
        report.telemetry += 1
        report.problems += check_record(record, where=where)
    elif record.get("phase") == "bc" and "epoch" in record and "episode" not in record:
        report.bc += 1
        report.problems += check_bc_record(record, where=where)
    elif "episode" in record:
        report.episodes += 1
        problems = check_episode(record, where=where)
        report.problems += problems
        ep = record.get("episode")
        if not problems and isinstance(ep, int):
            stream = (record.get("run_id"), record.get("phase"))
            prev = last_episode.get(stream)
            if prev is not None and ep <= prev[0]:
                label = f" (run_id {stream[0]!r}, phase {stream[1]!r})" if stream != (None, None) else ""
                report.problems.append(
                    f"{where}: episode {ep} after episode {prev[0]} at line {prev[1]}{label}: "
                    "episodes must increase within a run"
                )
            last_episode[stream] = (ep, lineno)
    else:
        report.problems.append(
            f"{where}: neither a telemetry record (no 'telemetry_version'), a bc record (phase 'bc' with 'epoch') "
            "nor an episode record (no 'episode')"
        )
