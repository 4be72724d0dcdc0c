"""`telemetry watch`: thresholds (`thresholds.Thresholds`) on each record, read once or followed (`--follow`)
across rotation, stopping at the first breach."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from townlet.errors import UsageError
from townlet.telemetry.follow import Follower, follow_lines
from townlet.telemetry.reader import LogLine, MalformedLine, parse_lines, read_lines
from townlet.telemetry.records import ANNEAL_FIELDS, is_anneal_record
from townlet.telemetry.thresholds import ANNEAL_TOLERANCE, ROLLOUT_MODES, SPECS, WATCH_SPECS, Thresholds
from townlet.telemetry.values import fmt_num, number

#: What an anneal breach means for promotion (seed 000: HOLD freezes it, FAIL requires rollback): BC accuracy
#: below its floor fails; loss or queue-conflict drift holds. Any other breach is plain `EXIT_BREACH`.
ANNEAL_VERDICTS = {
    "--anneal-bc-min": "FAIL",
    "--anneal-loss-max": "HOLD",
    "--anneal-queue-min": "HOLD",
    "--anneal-intensity-min": "HOLD",
}
#: Exit status of `telemetry watch` at a breach: per anneal verdict (the anneal's own codes), else 1.
EXIT_BREACH = 1
VERDICT_EXIT = {"HOLD": 3, "FAIL": 4}


@dataclass(frozen=True)
class Breach:
    flag: str
    key: str
    kind: str
    threshold: float
    value: Any
    epoch: Any
    where: str

    @property
    def message(self) -> str:
        if number(self.value) is None:
            shown = "missing" if self.value is None else f"not a finite number ({self.value!r})"
            what = f"{self.key} is {shown}"
        else:
            op = ">" if self.kind == "max" else "<"
            what = f"{self.key} {fmt_num(self.value)} {op} {fmt_num(self.threshold)}"
        return f"{self.flag} {fmt_num(self.threshold)} breached: {what} at epoch {fmt_num(self.epoch)} ({self.where})"

    @property
    def verdict(self) -> str | None:
        """HOLD or FAIL for an anneal breach, else None."""
        return ANNEAL_VERDICTS.get(self.flag)

    @property
    def exit_code(self) -> int:
        return VERDICT_EXIT[self.verdict] if self.verdict is not None else EXIT_BREACH

    def as_json(self) -> dict[str, Any]:
        value = number(self.value)
        return {
            "flag": self.flag,
            "key": self.key,
            "kind": self.kind,
            "threshold": self.threshold,
            "value": value,
            "message": self.message,
            "verdict": self.verdict,
        }


def check_thresholds(record: dict[str, Any], th: Thresholds, where: str) -> list[Breach]:
    """Every breach in one record (missing or non-finite watched values breach too)."""
    breaches: list[Breach] = []
    epoch = record.get("epoch")
    rollout = record.get("data_mode") in ROLLOUT_MODES
    anneal = is_anneal_record(record)

    def check(flag: str, key: str, kind: str, threshold: float, value: Any) -> None:
        v = number(value)
        if v is None or (kind == "max" and v > threshold) or (kind == "min" and v < threshold):
            breaches.append(Breach(flag, key, kind, threshold, value, epoch, where))

    for spec in SPECS:
        limit = getattr(th, spec.attr)
        if (spec.scope == "rollout" and not rollout) or (spec.scope == "anneal" and not anneal):
            continue
        if spec.baseline is None:
            # Anneal values are checked where the record carries them; the others must be there.
            if limit is not None and (spec.scope != "anneal" or spec.key in record):
                check(spec.flag, spec.key, spec.kind, limit, record.get(spec.key))
            continue
        base = number(record.get(spec.baseline))
        if spec.measured is not None:  # relative drift of a value from the baseline
            if limit is not None and base is not None and base != 0:
                value = number(record.get(spec.measured))
                drift = abs(value - base) / abs(base) if value is not None else None
                check(spec.flag, spec.key, spec.kind, limit, drift)
            continue
        if limit is None and base is not None:
            limit = ANNEAL_TOLERANCE * base
        if limit is not None:
            check(spec.flag, spec.key, spec.kind, limit, record.get(spec.key))
    return breaches


def normalise(ln: LogLine, breaches: list[Breach]) -> dict[str, Any]:
    """The watcher's JSON line: identity, every watched value (null when absent), anneal fields, breaches."""
    rec = ln.record
    out: dict[str, Any] = {
        "file": ln.file,
        "line": ln.line,
        "epoch": rec.get("epoch"),
        "data_mode": rec.get("data_mode"),
        "cycle_id": rec.get("cycle_id"),
        "log_stream_offset": rec.get("log_stream_offset"),
        "telemetry_version": rec.get("telemetry_version"),
    }
    for spec in WATCH_SPECS:
        out[spec.key] = number(rec.get(spec.key))
    for key in ANNEAL_FIELDS:
        if key in rec:
            value = rec[key]
            out[key] = value if isinstance(value, str | bool) else number(value)
    out["breaches"] = [b.as_json() for b in breaches]
    return out


def text_line(ln: LogLine, breaches: list[Breach]) -> str:
    rec = ln.record
    parts = [
        f"epoch {fmt_num(rec.get('epoch'))}",
        f"[{rec.get('data_mode', '?')}]",
        f"loss {fmt_num(rec.get('loss_total'), 4)}",
        f"kl {fmt_num(rec.get('kl_divergence'), 3)}",
        f"grad {fmt_num(rec.get('grad_norm'), 4)}",
        f"entropy {fmt_num(rec.get('batch_entropy_mean'), 4)}",
        f"corr {fmt_num(rec.get('reward_advantage_corr'), 3)}",
        f"queue {fmt_num(rec.get('queue_conflict_events'))}/{fmt_num(rec.get('queue_conflict_intensity_sum'), 4)}",
    ]
    if is_anneal_record(rec):
        parts.append(f"anneal {rec.get('anneal_stage', '?')} bc {fmt_num(rec.get('anneal_bc_accuracy'), 4)}")
    if breaches:
        parts.append(f"BREACH {', '.join(b.flag for b in breaches)}")
    return "  ".join(parts)


@dataclass
class WatchResult:
    records: int = 0
    breach: Breach | None = None
    first_epoch: Any = None
    last_epoch: Any = None
    stopped: str = "end of log"


def watch_log(
    path: Path,
    thresholds: Thresholds,
    *,
    emit: Callable[[LogLine, list[Breach]], None],
    follow: bool = False,
    interval: float = 2.0,
    max_wait: float = 30.0,
    include_rotated: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> WatchResult:
    """Check every record (and, with `follow`, new ones until `max_wait` s pass without data); stop at a breach.
    Following reads the whole stream, rotated files first, so `include_rotated` is implied.

    Raises UsageError for a missing file (after `max_wait` with `follow`), MalformedLine for a bad line.
    """
    thresholds.check_values()
    if interval <= 0 or not math.isfinite(interval):
        raise UsageError(f"--interval must be > 0 seconds, got {interval}")
    if max_wait <= 0 or not math.isfinite(max_wait):
        raise UsageError(f"--max-wait must be > 0 seconds, got {max_wait}")
    if path.is_dir():
        raise UsageError(f"{path}: is a directory, not a telemetry log")
    if not follow and not path.exists():
        raise UsageError(f"{path}: no such telemetry log")
    result = WatchResult()

    def handle(lines: Iterable[LogLine]) -> bool:
        """Check and emit each line; True at a breach."""
        for ln in lines:
            bad = ln.problem or ln.not_an_object
            if bad is not None:
                raise MalformedLine(bad)
            breaches = check_thresholds(ln.record, thresholds, ln.where)
            result.records += 1
            if result.first_epoch is None:
                result.first_epoch = ln.record.get("epoch")
            result.last_epoch = ln.record.get("epoch")
            emit(ln, breaches)
            if breaches:
                result.breach = breaches[0]
                result.stopped = "breach"
                return True
        return False

    if not follow:
        handle(read_lines(path, include_rotated=include_rotated))
        return result
    with Follower(path) as follower:
        for batch in follow_lines(follower, interval=interval, max_wait=max_wait, sleep=sleep):
            if handle(parse_lines(batch)):
                return result
        result.stopped = f"no new data for {fmt_num(max_wait)}s"
        if not follower.opened and not path.exists():
            raise UsageError(f"{path}: no such telemetry log (waited {fmt_num(max_wait)}s)")
        handle(parse_lines(follower.finish()))
    return result
