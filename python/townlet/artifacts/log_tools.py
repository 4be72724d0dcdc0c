"""`log tail` and `log validate` for JSONL logs, over the telemetry reader, follower and record models:
PPO telemetry (records with `telemetry_version`, `records.PpoRecord`), behaviour-cloning logs (`phase` "bc"
and an `epoch`, `records.BcRecord`) and per-episode logs (an `episode` key, `records.EpisodeRecord`).

Lines are read strictly: NaN and Infinity literals are malformed JSON. An unterminated final line that does
not parse is a warning (the writer may still be writing it), not a problem.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from townlet.errors import UsageError
from townlet.telemetry.follow import Follower, follow_lines
from townlet.telemetry.follow import last_lines as last_lines
from townlet.telemetry.reader import ANY_LOG, LogLine, read_file
from townlet.telemetry.records import check_bc_record, check_episode, check_record


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
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> FollowResult:
    """Emit each complete line appended after `offset`, following truncation (the file shrank) and
    rotation (a new file under the name); stop after `max_wait` seconds without a new line (0: never)."""
    if interval <= 0:
        raise UsageError(f"--interval must be > 0, got {interval}")
    if max_wait < 0:
        raise UsageError(f"--max-wait must be >= 0, got {max_wait}")
    count = 0
    with Follower(path, offset=offset, note=note, kind=ANY_LOG) as follower:
        for batch in follow_lines(follower, interval=interval, max_wait=max_wait, sleep=sleep, clock=clock):
            for line in batch:
                emit(line.data.decode("utf-8", "replace"))
                count += 1
    return FollowResult(count, f"no new lines for {max_wait:g}s")


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


def validate_log(path: Path) -> LogReport:
    """Check every line; problems are `FILE:LINE: message`."""
    report = LogReport(path)
    last_episode: dict[tuple[Any, Any], tuple[int, int]] = {}
    for ln in read_file(path, finite=True, kind=ANY_LOG):
        _check_line(report, last_episode, ln)
    return report


def _check_line(report: LogReport, last_episode: dict[tuple[Any, Any], tuple[int, int]], ln: LogLine) -> None:
    where = ln.where
    if ln.error is not None:
        if not ln.terminated:  # the last line, cut short
            report.warnings.append(f"{where}: incomplete final line (the writer is running or was killed)")
        else:
            report.problems.append(f"{where}: malformed JSON ({ln.error})")
        return
    record = ln.record
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
            last_episode[stream] = (ep, ln.line)
    else:
        report.problems.append(
            f"{where}: neither a telemetry record (no 'telemetry_version'), a bc record (phase 'bc' with 'epoch') "
            "nor an episode record (no 'episode')"
        )
