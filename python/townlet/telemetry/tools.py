"""The three PPO telemetry tools behind `townlet telemetry validate|watch|summary`.

* **validate**: the schema of every line (`telemetry.check_record`), the `log_stream_offset` order, and drift
  against a baseline log or object (`--baseline`, `--relative`, `--drift-threshold`).
* **watch**: thresholds on each record, read once or tailed (`--follow`) across rotation, stopping at the first
  breach.
* **summary**: latest values, extremes, the anneal block and baseline drift, as text, markdown or JSON, and a PNG
  line chart drawn with numpy and encoded with zlib (no plotting library).

Errors: a missing or unreadable file is a `UsageError` (exit 2); a malformed line or a bad record is reported as
`FILE:LINE: ...` (exit 1).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from townlet.errors import TownletError, UsageError
from townlet.telemetry.records import BASELINE_FIELDS, HYGIENE_FIELDS, SOCIAL_FIELDS, check_record

# -- reading logs ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogLine:
    """One parsed line: where it came from and what it holds (any JSON value)."""

    file: str
    line: int
    record: Any
    #: Set (and `record` None) for a line that is not JSON.
    problem: str | None = None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


class MalformedLine(TownletError):
    """A line that is not JSON (exit 1)."""


def rotated_chain(path: Path) -> list[Path]:
    """The rotated files of `path` oldest first (`LOG.N`, ..., `LOG.1`), then `path` itself when it exists."""
    rotated: list[Path] = []
    k = 1
    while Path(f"{path}.{k}").exists():
        rotated.append(Path(f"{path}.{k}"))
        k += 1
    chain = list(reversed(rotated))
    if path.exists():
        chain.append(path)
    return chain


def _parse_line(raw: bytes, file: str, lineno: int) -> LogLine | None:
    """The parsed line (with `problem` set when it is not JSON), or None for a blank one."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return LogLine(file, lineno, None, f"{file}:{lineno}: malformed line (not UTF-8)")
    if not text.strip():
        return None
    try:
        return LogLine(file, lineno, json.loads(text))
    except json.JSONDecodeError as exc:
        return LogLine(file, lineno, None, f"{file}:{lineno}: malformed JSON ({exc.msg} at column {exc.colno})")


def split_problems(parsed: list[LogLine]) -> tuple[list[LogLine], list[str]]:
    """(well-formed lines, problems of the malformed ones)."""
    return [ln for ln in parsed if ln.problem is None], [ln.problem for ln in parsed if ln.problem is not None]


def _open_error(path: Path, exc: OSError) -> UsageError:
    if isinstance(exc, FileNotFoundError):
        return UsageError(f"{path}: no such telemetry log")
    if isinstance(exc, IsADirectoryError):
        return UsageError(f"{path}: is a directory, not a telemetry log")
    return UsageError(f"{path}: cannot read ({exc.strerror or exc})")


def _parse_file(path: Path) -> list[LogLine]:
    """Every non-blank line of one file in order, malformed ones with `problem` set. Missing: UsageError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _open_error(path, exc) from None
    return [ln for lineno, raw in enumerate(data.splitlines(), 1) if (ln := _parse_line(raw, str(path), lineno))]


def read_log(path: Path) -> tuple[list[LogLine], list[str]]:
    """Every non-blank line of one file, and one problem per malformed line. Missing/unreadable: UsageError."""
    return split_problems(_parse_file(path))


def read_log_lines(path: Path, *, include_rotated: bool = False) -> list[LogLine]:
    """`path` alone, or (include_rotated) its rotated files oldest first and then `path`; in order, malformed
    lines included (with `problem` set)."""
    files = rotated_chain(path) if include_rotated else [path]
    if not files:
        raise UsageError(f"{path}: no such telemetry log (nor rotated files {path}.1 ...)")
    return [ln for f in files for ln in _parse_file(f)]


def read_records_strict(path: Path, *, include_rotated: bool = False) -> list[LogLine]:
    """Lines that must all be JSON objects: the first bad one raises `MalformedLine` naming FILE:LINE."""
    lines = read_log_lines(path, include_rotated=include_rotated)
    for ln in lines:
        if ln.problem is not None:
            raise MalformedLine(ln.problem)
        if not isinstance(ln.record, dict):
            raise MalformedLine(f"{ln.where}: expected a JSON object, got {type(ln.record).__name__}")
    return lines


def _number(value: Any) -> float | None:
    """A finite float, or None for anything else (missing, bool, string, NaN, inf)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


# -- baselines and drift --------------------------------------------------------------------------------------

#: Keys compared against a baseline by `validate --baseline`.
DRIFT_KEYS = (*BASELINE_FIELDS, "baseline_log_prob_mean", "loss_total", "kl_divergence")
#: `summary --baseline` also compares the queue-conflict counters.
SUMMARY_DRIFT_KEYS = (*DRIFT_KEYS, "queue_conflict_events", "queue_conflict_intensity_sum")


@dataclass
class Baseline:
    """A baseline: one fixed object (applies to every epoch) or a telemetry log matched by epoch."""

    path: Path
    records: list[dict[str, Any]]

    @property
    def fixed(self) -> bool:
        return len(self.records) == 1

    def for_epoch(self, epoch: Any, *, fallback_last: bool = False) -> dict[str, Any] | None:
        if self.fixed:
            return self.records[0]
        for rec in self.records:
            if rec.get("epoch") == epoch:
                return rec
        return self.records[-1] if fallback_last else None


def load_baseline(path: Path) -> Baseline:
    """A baseline file: a JSON object (possibly indented) or a JSONL telemetry log. Any problem: UsageError."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        if isinstance(exc, OSError):
            raise UsageError(f"--baseline {path}: {_open_error(path, exc)}") from None
        raise UsageError(f"--baseline {path}: not UTF-8 text") from None
    records: list[dict[str, Any]] = []
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, dict):
        records = [whole]
    else:
        lines, problems = read_log(path)
        if problems:
            raise UsageError(f"--baseline {problems[0]}")
        for ln in lines:
            if not isinstance(ln.record, dict):
                raise UsageError(f"--baseline {ln.where}: expected a JSON object, got {type(ln.record).__name__}")
            records.append(ln.record)
    if not records:
        raise UsageError(f"--baseline {path}: no baseline records")
    if not any(_number(rec.get(k)) is not None for rec in records for k in DRIFT_KEYS):
        raise UsageError(f"--baseline {path}: no numeric baseline keys ({', '.join(DRIFT_KEYS)})")
    return Baseline(path, records)


@dataclass(frozen=True)
class Drift:
    epoch: Any
    key: str
    value: float
    baseline: float
    where: str

    @property
    def delta(self) -> float:
        return self.value - self.baseline

    @property
    def relative(self) -> float | None:
        """delta / |baseline|, None when the baseline is 0."""
        return None if self.baseline == 0 else self.delta / abs(self.baseline)

    def exceeds(self, threshold: float) -> bool:
        """|relative drift| > threshold; a zero baseline compares the absolute delta instead."""
        rel = self.relative
        return abs(self.delta) > threshold if rel is None else abs(rel) > threshold


def compute_drift(
    lines: list[LogLine], baseline: Baseline, keys: tuple[str, ...] = DRIFT_KEYS
) -> tuple[list[Drift], list[Any]]:
    """Per-epoch drift for each key numeric in both; and the epochs the baseline lacks."""
    drifts: list[Drift] = []
    unmatched: list[Any] = []
    for ln in lines:
        rec = ln.record
        if not isinstance(rec, dict):
            continue
        base = baseline.for_epoch(rec.get("epoch"))
        if base is None:
            unmatched.append(rec.get("epoch"))
            continue
        for key in keys:
            v, b = _number(rec.get(key)), _number(base.get(key))
            if v is not None and b is not None:
                drifts.append(Drift(rec.get("epoch"), key, v, b, ln.where))
    return drifts, unmatched


def fmt_num(value: Any, digits: int = 6) -> str:
    """Compact, stable formatting: integers without a point, floats with `digits` significant figures."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.{digits}g}"
    return str(value)


def fmt_pct(rel: float | None) -> str:
    return "n/a" if rel is None else f"{rel * 100:+.2f}%"


# -- validate -------------------------------------------------------------------------------------------------


@dataclass
class ValidateReport:
    records: int = 0
    problems: list[str] = field(default_factory=list)
    drift_lines: list[str] = field(default_factory=list)
    drift_failures: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    epochs: list[Any] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.drift_failures


def validate_log(
    path: Path,
    *,
    baseline: Path | None = None,
    relative: bool = False,
    drift_threshold: float | None = None,
    include_rotated: bool = False,
) -> ValidateReport:
    """Schema-check every line, then (with a baseline) report drift and apply the drift threshold."""
    if drift_threshold is not None and baseline is None:
        raise UsageError("--drift-threshold needs --baseline FILE")
    if drift_threshold is not None and not (math.isfinite(drift_threshold) and drift_threshold >= 0):
        raise UsageError(f"--drift-threshold must be a finite number >= 0, got {drift_threshold}")
    base = load_baseline(baseline) if baseline is not None else None
    parsed = read_log_lines(path, include_rotated=include_rotated)
    report = ValidateReport()
    prev_offset: tuple[float, str] | None = None
    for ln in parsed:
        if ln.problem is not None:
            report.problems.append(ln.problem)
            continue
        report.problems.extend(check_record(ln.record, where=ln.where))
        if not isinstance(ln.record, dict):
            continue
        report.records += 1
        version = str(ln.record.get("telemetry_version"))
        if version not in report.versions:
            report.versions.append(version)
        report.epochs.append(ln.record.get("epoch"))
        offset = _number(ln.record.get("log_stream_offset"))
        if offset is not None:
            if prev_offset is not None and offset <= prev_offset[0]:
                report.problems.append(
                    f"{ln.where}: log_stream_offset {fmt_num(offset)} does not increase "
                    f"(previous {fmt_num(prev_offset[0])} at {prev_offset[1]})"
                )
            prev_offset = (offset, ln.where)
    if not parsed:
        report.problems.append(f"{path}: no telemetry records")
    lines = [ln for ln in parsed if ln.problem is None]
    if base is not None:
        _drift_report(report, lines, base, relative=relative, threshold=drift_threshold)
    return report


def _drift_report(
    report: ValidateReport, lines: list[LogLine], base: Baseline, *, relative: bool, threshold: float | None
) -> None:
    drifts, unmatched = compute_drift(lines, base)
    out = report.drift_lines
    kind = "fixed baseline" if base.fixed else "matched by epoch"
    out.append(f"baseline drift (log - baseline) against {base.path} ({kind}):")
    if not drifts:
        out.append("  no overlapping epochs or keys; nothing to compare")
    by_epoch: dict[str, list[Drift]] = {}
    for d in drifts:
        by_epoch.setdefault(fmt_num(d.epoch), []).append(d)
    for epoch, ds in by_epoch.items():
        cells = []
        for d in ds:
            cell = f"{d.key} {d.delta:+.6g}"
            if relative:
                cell += f" ({fmt_pct(d.relative)})"
            cells.append(cell)
        out.append(f"  epoch {epoch}: " + ", ".join(cells))
    if drifts:
        out.append("  aggregate over epochs (mean delta, worst delta):")
        for key in dict.fromkeys(d.key for d in drifts):
            ds = [d for d in drifts if d.key == key]
            mean = sum(d.delta for d in ds) / len(ds)
            worst = max(ds, key=lambda d: abs(d.delta))
            cell = f"    {key}: mean {mean:+.6g}, worst {worst.delta:+.6g} at epoch {fmt_num(worst.epoch)}"
            if relative:
                cell += f" ({fmt_pct(worst.relative)})"
            out.append(cell)
    if unmatched:
        out.append(f"  epochs not in the baseline (skipped): {', '.join(fmt_num(e) for e in unmatched)}")
    if threshold is not None:
        for d in drifts:
            if d.exceeds(threshold):
                rel = fmt_pct(d.relative) if d.relative is not None else f"absolute {d.delta:+.6g} (baseline 0)"
                report.drift_failures.append(
                    f"{d.where}: epoch {fmt_num(d.epoch)}: {d.key} drift {rel} exceeds --drift-threshold "
                    f"{fmt_num(threshold)} (log {fmt_num(d.value)}, baseline {fmt_num(d.baseline)})"
                )


# -- watch ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WatchSpec:
    flag: str
    attr: str
    key: str
    kind: str  # "max" | "min"
    scope: str  # "all" | "rollout"


WATCH_SPECS = (
    WatchSpec("--kl-threshold", "kl_threshold", "kl_divergence", "max", "all"),
    WatchSpec("--loss-threshold", "loss_threshold", "loss_total", "max", "all"),
    WatchSpec("--grad-threshold", "grad_threshold", "grad_norm", "max", "all"),
    WatchSpec("--entropy-threshold", "entropy_threshold", "batch_entropy_mean", "min", "all"),
    WatchSpec("--reward-corr-threshold", "reward_corr_threshold", "reward_advantage_corr", "min", "all"),
    WatchSpec("--queue-events-min", "queue_events_min", "queue_conflict_events", "min", "rollout"),
    WatchSpec("--queue-intensity-min", "queue_intensity_min", "queue_conflict_intensity_sum", "min", "rollout"),
    WatchSpec("--shared-meal-min", "shared_meal_min", "shared_meal_events", "min", "rollout"),
    WatchSpec("--late-help-min", "late_help_min", "late_help_events", "min", "rollout"),
    WatchSpec("--shift-takeover-max", "shift_takeover_max", "shift_takeover_events", "max", "rollout"),
    WatchSpec("--chat-quality-min", "chat_quality_min", "chat_quality_mean", "min", "rollout"),
    WatchSpec("--utility-outage-max", "utility_outage_max", "utility_outage_events", "max", "rollout"),
    WatchSpec("--shower-complete-min", "shower_complete_min", "shower_complete_events", "min", "rollout"),
    WatchSpec("--sleep-complete-min", "sleep_complete_min", "sleep_complete_events", "min", "rollout"),
)
#: data_mode values the rollout-only thresholds apply to.
ROLLOUT_MODES = ("rollout", "mixed")
#: Fraction of the anneal queue/intensity baselines used when --anneal-queue-min/--anneal-intensity-min are unset.
ANNEAL_TOLERANCE = 0.85
ANNEAL_FIELDS = (
    "anneal_stage",
    "anneal_cycle",
    "anneal_dataset",
    "anneal_bc_accuracy",
    "anneal_bc_threshold",
    "anneal_bc_passed",
    "anneal_loss_baseline",
    "anneal_queue_baseline",
    "anneal_intensity_baseline",
    "anneal_loss_flag",
    "anneal_queue_flag",
    "anneal_intensity_flag",
)


@dataclass
class Thresholds:
    kl_threshold: float | None = None
    loss_threshold: float | None = None
    grad_threshold: float | None = None
    entropy_threshold: float | None = None
    reward_corr_threshold: float | None = None
    queue_events_min: float | None = None
    queue_intensity_min: float | None = None
    shared_meal_min: float | None = None
    late_help_min: float | None = None
    shift_takeover_max: float | None = None
    chat_quality_min: float | None = None
    utility_outage_max: float | None = None
    shower_complete_min: float | None = None
    sleep_complete_min: float | None = None
    anneal_bc_min: float | None = 0.9
    anneal_loss_max: float | None = 0.1
    anneal_queue_min: float | None = None
    anneal_intensity_min: float | None = None

    def active(self) -> dict[str, float]:
        """flag -> value for every threshold that is set."""
        out: dict[str, float] = {}
        for spec in WATCH_SPECS:
            v = getattr(self, spec.attr)
            if v is not None:
                out[spec.flag] = v
        for flag, v in (
            ("--anneal-bc-min", self.anneal_bc_min),
            ("--anneal-loss-max", self.anneal_loss_max),
            ("--anneal-queue-min", self.anneal_queue_min),
            ("--anneal-intensity-min", self.anneal_intensity_min),
        ):
            if v is not None:
                out[flag] = v
        return out

    def check_values(self) -> None:
        for flag, v in self.active().items():
            if not math.isfinite(v):
                raise UsageError(f"{flag} must be a finite number, got {v}")


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
        if _number(self.value) is None:
            shown = "missing" if self.value is None else f"not a finite number ({self.value!r})"
            what = f"{self.key} is {shown}"
        else:
            op = ">" if self.kind == "max" else "<"
            what = f"{self.key} {fmt_num(self.value)} {op} {fmt_num(self.threshold)}"
        return f"{self.flag} {fmt_num(self.threshold)} breached: {what} at epoch {fmt_num(self.epoch)} ({self.where})"

    def as_json(self) -> dict[str, Any]:
        value = _number(self.value)
        return {
            "flag": self.flag,
            "key": self.key,
            "kind": self.kind,
            "threshold": self.threshold,
            "value": value,
            "message": self.message,
        }


def is_anneal_record(record: dict[str, Any]) -> bool:
    return any(key.startswith("anneal_") for key in record)


def check_thresholds(record: dict[str, Any], th: Thresholds, where: str) -> list[Breach]:
    """Every breach in one record (missing or non-finite watched values breach too)."""
    breaches: list[Breach] = []
    epoch = record.get("epoch")
    rollout = record.get("data_mode") in ROLLOUT_MODES

    def check(flag: str, key: str, kind: str, threshold: float, value: Any) -> None:
        v = _number(value)
        if v is None or (kind == "max" and v > threshold) or (kind == "min" and v < threshold):
            breaches.append(Breach(flag, key, kind, threshold, value, epoch, where))

    for spec in WATCH_SPECS:
        limit = getattr(th, spec.attr)
        if limit is None or (spec.scope == "rollout" and not rollout):
            continue
        check(spec.flag, spec.key, spec.kind, limit, record.get(spec.key))
    if is_anneal_record(record):
        if th.anneal_bc_min is not None and "anneal_bc_accuracy" in record:
            check("--anneal-bc-min", "anneal_bc_accuracy", "min", th.anneal_bc_min, record["anneal_bc_accuracy"])
        loss_base = _number(record.get("anneal_loss_baseline"))
        if th.anneal_loss_max is not None and loss_base is not None and loss_base != 0:
            loss = _number(record.get("loss_total"))
            rel = abs(loss - loss_base) / abs(loss_base) if loss is not None else None
            check("--anneal-loss-max", "anneal_loss_drift", "max", th.anneal_loss_max, rel)
        for flag, explicit, key, base_key in (
            ("--anneal-queue-min", th.anneal_queue_min, "queue_conflict_events", "anneal_queue_baseline"),
            (
                "--anneal-intensity-min",
                th.anneal_intensity_min,
                "queue_conflict_intensity_sum",
                "anneal_intensity_baseline",
            ),
        ):
            base = _number(record.get(base_key))
            limit = explicit if explicit is not None else (ANNEAL_TOLERANCE * base if base is not None else None)
            if limit is not None:
                check(flag, key, "min", limit, record.get(key))
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
        out[spec.key] = _number(rec.get(spec.key))
    for key in ANNEAL_FIELDS:
        if key in rec:
            value = rec[key]
            out[key] = value if isinstance(value, str | bool) else _number(value)
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


class LogTailer:
    """Reads complete lines of a log as it grows; follows rotation (`LOG` -> `LOG.1`) and truncation."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: Any = None
        self._ino: int | None = None
        self._label = str(path)
        self._lineno = 0
        self._buf = b""
        #: inodes never to read on rotation: what existed at the start and what has been read to the end.
        self._seen: set[int] = set()
        for p in rotated_chain(path)[:-1] if path.exists() else rotated_chain(path):
            with contextlib.suppress(OSError):
                self._seen.add(os.stat(p).st_ino)

    @property
    def opened(self) -> bool:
        return self._fh is not None

    def _open(self) -> bool:
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - kept open across polls
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise _open_error(self.path, exc) from None
        self._fh, self._ino, self._label, self._lineno, self._buf = (
            fh,
            os.fstat(fh.fileno()).st_ino,
            str(self.path),
            0,
            b"",
        )
        return True

    def _emit(self, raw: bytes) -> LogLine | None:
        self._lineno += 1
        return _parse_line(raw, self._label, self._lineno)

    def _drain(self, *, final: bool = False) -> list[LogLine]:
        chunk = self._fh.read()
        self._buf += chunk
        out: list[LogLine] = []
        *complete, self._buf = self._buf.split(b"\n")
        if final and self._buf:
            complete.append(self._buf)
            self._buf = b""
        for raw in complete:
            ln = self._emit(raw)
            if ln is not None:
                out.append(ln)
        return out

    def _read_whole(self, p: Path) -> list[LogLine]:
        try:
            data = p.read_bytes()
        except OSError:
            return []
        saved = (self._label, self._lineno)
        self._label, self._lineno = str(p), 0
        out = [ln for raw in data.splitlines() if (ln := self._emit(raw)) is not None]
        self._label, self._lineno = saved
        return out

    def poll(self) -> list[LogLine]:
        """New complete lines since the last poll (across a rotation or truncation, in order)."""
        if self._fh is None and not self._open():
            return []
        out = self._drain()
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return out  # mid-rotation: the new file appears on a later poll
        if st.st_ino != self._ino:
            out.extend(self._drain(final=True))
            assert self._ino is not None
            self._seen.add(self._ino)
            self._fh.close()
            self._fh = None
            # Files rotated in between two polls: oldest first, those not read yet.
            for p in rotated_chain(self.path)[:-1]:
                try:
                    ino = os.stat(p).st_ino
                except OSError:
                    continue
                if ino not in self._seen:
                    self._seen.add(ino)
                    out.extend(self._read_whole(p))
            if self._open():
                out.extend(self._drain())
        elif st.st_size < self._fh.tell():
            # Truncated in place (a new run reusing the path): start again from the top.
            self._fh.seek(0)
            self._lineno, self._buf = 0, b""
            out.extend(self._drain())
        return out

    def finish(self) -> list[LogLine]:
        """A last partial line (no newline) counts as a line once reading stops."""
        if self._fh is None:
            return []
        out = self._drain(final=True)
        self._fh.close()
        self._fh = None
        return out


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

    def handle(lines: list[LogLine]) -> bool:
        for ln in lines:
            if ln.problem is not None:
                raise MalformedLine(ln.problem)
            if not isinstance(ln.record, dict):
                raise MalformedLine(f"{ln.where}: expected a JSON object, got {type(ln.record).__name__}")
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

    tailer = LogTailer(path)
    if include_rotated:
        for p in rotated_chain(path)[:-1] if path.exists() else rotated_chain(path):
            if handle(_parse_file(p)):
                return result
    last_data = time.monotonic()
    while True:
        lines = tailer.poll()
        if handle(lines):
            return result
        if lines:
            last_data = time.monotonic()
        if not follow:
            break
        idle = time.monotonic() - last_data
        if idle >= max_wait:
            result.stopped = f"no new data for {fmt_num(max_wait)}s"
            break
        sleep(min(interval, max_wait - idle))
    if not tailer.opened and not path.exists():
        raise UsageError(f"{path}: no such telemetry log (waited {fmt_num(max_wait)}s)")
    if handle(tailer.finish()):
        return result
    return result


# -- summary --------------------------------------------------------------------------------------------------

LATEST_KEYS = (
    "loss_total",
    "kl_divergence",
    "grad_norm",
    "batch_entropy_mean",
    "reward_advantage_corr",
    "epoch_duration_sec",
    "rollout_ticks",
    "queue_conflict_events",
    "queue_conflict_intensity_sum",
    *SOCIAL_FIELDS,
    *HYGIENE_FIELDS,
    "sps",
    "episode_return_mean",
    "explained_variance",
)
EXTREME_KEYS = (
    "loss_total",
    "kl_divergence",
    "grad_norm",
    "queue_conflict_events",
    "shared_meal_events",
    "chat_quality_mean",
    *HYGIENE_FIELDS,
)


def summarise(
    lines: list[LogLine], *, log: Path, last: int | None = None, baseline: Baseline | None = None
) -> dict[str, Any]:
    """The summary as a JSON-able dict (sections: run, latest, extremes, anneal, baseline_drift)."""
    if last is not None:
        if last < 1:
            raise UsageError(f"--last must be >= 1, got {last}")
        lines = lines[-last:]
    if not lines:
        raise TownletError(f"{log}: no telemetry records")
    records = [ln.record for ln in lines]
    latest = records[-1]
    epochs = [r.get("epoch") for r in records]
    modes = list(dict.fromkeys(str(r.get("data_mode")) for r in records if "data_mode" in r))
    out: dict[str, Any] = {
        "log": str(log),
        "records": len(records),
        "epochs": {"count": len(records), "first": epochs[0], "last": epochs[-1]},
        "data_mode": latest.get("data_mode"),
        "data_modes": modes,
        "cycle_id": latest.get("cycle_id"),
        "log_stream_offset": latest.get("log_stream_offset"),
        "telemetry_version": latest.get("telemetry_version"),
        "latest": {key: _number(latest.get(key)) for key in LATEST_KEYS},
        "extremes": {},
        "anneal": None,
        "baseline_drift": None,
    }
    for key in EXTREME_KEYS:
        values = [v for r in records if (v := _number(r.get(key))) is not None]
        out["extremes"][key] = {"min": min(values), "max": max(values)} if values else {"min": None, "max": None}
    anneal_recs = [r for r in records if is_anneal_record(r)]
    if anneal_recs:
        a = anneal_recs[-1]
        out["anneal"] = {"epoch": a.get("epoch"), **{key: a.get(key) for key in ANNEAL_FIELDS}}
    if baseline is not None:
        base = baseline.for_epoch(latest.get("epoch"), fallback_last=True)
        assert base is not None
        drift: dict[str, Any] = {"baseline": str(baseline.path), "baseline_epoch": base.get("epoch"), "keys": {}}
        for key in SUMMARY_DRIFT_KEYS:
            v, b = _number(latest.get(key)), _number(base.get(key))
            if v is None or b is None:
                continue
            d = Drift(latest.get("epoch"), key, v, b, "")
            rel = d.relative
            drift["keys"][key] = {
                "log": v,
                "baseline": b,
                "delta": d.delta,
                "percent": None if rel is None else rel * 100,
            }
        out["baseline_drift"] = drift
    return out


def _run_line(s: dict[str, Any]) -> list[tuple[str, str]]:
    e = s["epochs"]
    return [
        ("log", s["log"]),
        ("records", str(s["records"])),
        ("epochs", f"{fmt_num(e['first'])}-{fmt_num(e['last'])} ({e['count']} records)"),
        (
            "data_mode",
            str(s["data_mode"]) + (f" (seen: {', '.join(s['data_modes'])})" if len(s["data_modes"]) > 1 else ""),
        ),
        ("cycle_id", fmt_num(s["cycle_id"])),
        ("log_stream_offset", fmt_num(s["log_stream_offset"])),
        ("telemetry_version", str(s["telemetry_version"])),
    ]


def render_text(s: dict[str, Any]) -> str:
    lines = ["PPO telemetry summary"]
    width = max(len(k) for k in (*LATEST_KEYS, *ANNEAL_FIELDS, *SUMMARY_DRIFT_KEYS)) + 2
    lines += [f"  {k:<{width}}{v}" for k, v in _run_line(s)]
    lines.append(f"latest (epoch {fmt_num(s['epochs']['last'])}):")
    lines += [f"  {k:<{width}}{fmt_num(v)}" for k, v in s["latest"].items()]
    lines.append("extremes (min .. max):")
    lines += [f"  {k:<{width}}{fmt_num(v['min'])} .. {fmt_num(v['max'])}" for k, v in s["extremes"].items()]
    if s["anneal"] is not None:
        lines.append(f"anneal (epoch {fmt_num(s['anneal']['epoch'])}):")
        lines += [f"  {k:<{width}}{fmt_num(s['anneal'].get(k))}" for k in ANNEAL_FIELDS]
    if s["baseline_drift"] is not None:
        bd = s["baseline_drift"]
        lines.append(f"baseline_drift (latest - {bd['baseline']} epoch {fmt_num(bd['baseline_epoch'])}):")
        if not bd["keys"]:
            lines.append("  no overlapping keys")
        for k, v in bd["keys"].items():
            pct = "n/a" if v["percent"] is None else f"{v['percent']:+.2f}%"
            lines.append(
                f"  {k:<{width}}delta {v['delta']:+.6g} ({pct})  "
                f"log {fmt_num(v['log'])}  baseline {fmt_num(v['baseline'])}"
            )
    return "\n".join(lines) + "\n"


def _md(value: str) -> str:
    return value.replace("|", "\\|")


def render_markdown(s: dict[str, Any]) -> str:
    out = ["# PPO telemetry summary", ""]
    out += [f"- **{k}**: {_md(v)}" for k, v in _run_line(s)]
    out += ["", f"## Latest (epoch {fmt_num(s['epochs']['last'])})", "", "| metric | value |", "|---|---:|"]
    out += [f"| {k} | {fmt_num(v)} |" for k, v in s["latest"].items()]
    out += ["", "## Extremes", "", "| metric | min | max |", "|---|---:|---:|"]
    out += [f"| {k} | {fmt_num(v['min'])} | {fmt_num(v['max'])} |" for k, v in s["extremes"].items()]
    if s["anneal"] is not None:
        out += ["", f"## Anneal (epoch {fmt_num(s['anneal']['epoch'])})", "", "| field | value |", "|---|---|"]
        out += [f"| {k} | {_md(fmt_num(s['anneal'].get(k)))} |" for k in ANNEAL_FIELDS]
    if s["baseline_drift"] is not None:
        bd = s["baseline_drift"]
        out += [
            "",
            "## Baseline drift",
            "",
            f"Latest record minus `{_md(bd['baseline'])}` (epoch {fmt_num(bd['baseline_epoch'])}).",
            "",
            "| key | log | baseline | delta | percent |",
            "|---|---:|---:|---:|---:|",
        ]
        for k, v in bd["keys"].items():
            pct = "n/a" if v["percent"] is None else f"{v['percent']:+.2f}%"
            out.append(f"| {k} | {fmt_num(v['log'])} | {fmt_num(v['baseline'])} | {v['delta']:+.6g} | {pct} |")
    return "\n".join(out) + "\n"


# -- PNG plot -------------------------------------------------------------------------------------------------

RGB = npt.NDArray[np.uint8]

#: 3x5 glyphs (rows top to bottom), drawn at 2x. Text is upper-cased before drawing.
_FONT_ROWS = {
    "0": "111 101 101 101 111",
    "1": "010 110 010 010 111",
    "2": "111 001 111 100 111",
    "3": "111 001 111 001 111",
    "4": "101 101 111 001 001",
    "5": "111 100 111 001 111",
    "6": "111 100 111 101 111",
    "7": "111 001 001 010 010",
    "8": "111 101 111 101 111",
    "9": "111 101 111 001 111",
    "-": "000 000 111 000 000",
    "+": "000 010 111 010 000",
    ".": "000 000 000 000 010",
    ":": "000 010 000 010 000",
    "_": "000 000 000 000 111",
    "(": "010 100 100 100 010",
    ")": "010 001 001 001 010",
    "/": "001 001 010 100 100",
    "=": "000 111 000 111 000",
    " ": "000 000 000 000 000",
    "A": "010 101 111 101 101",
    "B": "110 101 110 101 110",
    "C": "011 100 100 100 011",
    "D": "110 101 101 101 110",
    "E": "111 100 110 100 111",
    "F": "111 100 110 100 100",
    "G": "011 100 101 101 011",
    "H": "101 101 111 101 101",
    "I": "111 010 010 010 111",
    "J": "001 001 001 101 010",
    "K": "101 101 110 101 101",
    "L": "100 100 100 100 111",
    "M": "101 111 111 101 101",
    "N": "110 101 101 101 101",
    "O": "010 101 101 101 010",
    "P": "110 101 110 100 100",
    "Q": "010 101 101 110 011",
    "R": "110 101 110 101 101",
    "S": "011 100 010 001 110",
    "T": "111 010 010 010 010",
    "U": "101 101 101 101 111",
    "V": "101 101 101 101 010",
    "W": "101 101 111 111 101",
    "X": "101 101 010 101 101",
    "Y": "101 101 010 010 010",
    "Z": "111 001 010 100 111",
}
FONT: dict[str, npt.NDArray[np.bool_]] = {
    ch: np.array([[c == "1" for c in row] for row in rows.split()], dtype=bool) for ch, rows in _FONT_ROWS.items()
}
SCALE = 2
GLYPH_W, GLYPH_H, ADVANCE = 3 * SCALE, 5 * SCALE, 4 * SCALE

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
GRID = (225, 225, 225)
AXIS_TEXT = (60, 60, 60)
PANEL_COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44))
#: (title, keys tried in order) per panel.
PLOT_PANELS = (
    ("loss_total", ("loss_total",)),
    ("approx_kl", ("approx_kl", "kl_divergence")),
    ("episode_return_mean", ("episode_return_mean",)),
)


def text_width(text: str) -> int:
    return len(text) * ADVANCE - (ADVANCE - GLYPH_W) if text else 0


def draw_text(img: RGB, x: int, y: int, text: str, colour: tuple[int, int, int] = BLACK) -> None:
    """Draw `text` with its top-left corner at (x, y); unknown characters draw as blanks."""
    h, w = img.shape[:2]
    for i, ch in enumerate(text.upper()):
        glyph = FONT.get(ch)
        if glyph is None:
            continue
        big = np.kron(glyph, np.ones((SCALE, SCALE), dtype=bool))
        gx = x + i * ADVANCE
        ys, xs = np.nonzero(big)
        ys, xs = ys + y, xs + gx
        keep = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
        img[ys[keep], xs[keep]] = colour


def draw_line(
    img: RGB, x0: float, y0: float, x1: float, y1: float, colour: tuple[int, int, int], width: int = 1
) -> None:
    """A straight segment, `width` pixels thick, clipped to the image."""
    h, w = img.shape[:2]
    n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
    xs = np.rint(np.linspace(x0, x1, n)).astype(np.int64)
    ys = np.rint(np.linspace(y0, y1, n)).astype(np.int64)
    lo = -(width // 2)
    for dx in range(lo, lo + width):
        for dy in range(lo, lo + width):
            px, py = xs + dx, ys + dy
            keep = (px >= 0) & (px < w) & (py >= 0) & (py < h)
            img[py[keep], px[keep]] = colour


def fill_rect(img: RGB, x0: int, y0: int, x1: int, y1: int, colour: tuple[int, int, int]) -> None:
    h, w = img.shape[:2]
    img[max(y0, 0) : min(y1, h), max(x0, 0) : min(x1, w)] = colour


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 5 x 10^k steps)."""
    raw = (hi - lo) / max(target - 1, 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1.0, 2.0, 5.0, 10.0) if m * mag >= raw)
    first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    return [k * step if k else 0.0 for k in range(first, last + 1)]


def tick_label(v: float) -> str:
    s = f"{v:.3g}"
    return s.replace("e-0", "e-").replace("e+0", "e").replace("e+", "e")


def _panel(
    img: RGB, top: int, height: int, title: str, xs: list[float], ys: list[float], colour: tuple[int, int, int]
) -> None:
    w = int(img.shape[1])
    left, right, ptop, pbottom = 84, 16, top + 26, top + height - 30
    pright = w - right
    draw_text(img, left, top + 8, title, BLACK)
    draw_text(img, left + text_width(title) + ADVANCE, top + 8, "PER EPOCH", AXIS_TEXT)
    pts = [(x, y) for x, y in zip(xs, ys, strict=True) if math.isfinite(y)]
    if not pts:
        draw_text(img, left + 10, (ptop + pbottom) // 2, "NO DATA", AXIS_TEXT)
        draw_line(img, left, pbottom, pright, pbottom, BLACK)
        draw_line(img, left, ptop, left, pbottom, BLACK)
        return
    xlo, xhi = min(xs), max(xs)
    if xhi == xlo:
        xlo, xhi = xlo - 1, xhi + 1
    ylo, yhi = min(p[1] for p in pts), max(p[1] for p in pts)
    if yhi == ylo:
        pad = abs(ylo) * 0.1 or 1.0
        ylo, yhi = ylo - pad, yhi + pad
    else:
        pad = (yhi - ylo) * 0.08
        ylo, yhi = ylo - pad, yhi + pad
    yticks = nice_ticks(ylo, yhi)
    ylo, yhi = min(ylo, yticks[0]), max(yhi, yticks[-1])

    def px(x: float) -> float:
        return left + 6 + (x - xlo) / (xhi - xlo) * (pright - left - 12)

    def py(y: float) -> float:
        return pbottom - (y - ylo) / (yhi - ylo) * (pbottom - ptop)

    for t in yticks:
        y = round(py(t))
        draw_line(img, left + 1, y, pright, y, GRID)
        draw_line(img, left - 4, y, left, y, BLACK)
        label = tick_label(t)
        draw_text(img, left - 8 - text_width(label), y - GLYPH_H // 2, label, AXIS_TEXT)
    epochs = sorted(set(xs))
    stride = max(1, math.ceil(len(epochs) / 10))
    shown = epochs[::stride]
    if epochs[-1] not in shown:
        shown.append(epochs[-1])
    for e in shown:
        x = round(px(e))
        draw_line(img, x, pbottom, x, pbottom + 4, BLACK)
        label = fmt_num(e)
        draw_text(img, x - text_width(label) // 2, pbottom + 8, label, AXIS_TEXT)
    draw_line(img, left, pbottom, pright, pbottom, BLACK)
    draw_line(img, left, ptop, left, pbottom, BLACK)
    prev: tuple[float, float] | None = None
    for xv, yv in pts:  # epochs without a value are bridged
        cur = (px(xv), py(yv))
        if prev is not None:
            draw_line(img, prev[0], prev[1], cur[0], cur[1], colour, width=2)
        fill_rect(img, round(cur[0]) - 2, round(cur[1]) - 2, round(cur[0]) + 3, round(cur[1]) + 3, colour)
        prev = cur


def render_plot(records: list[dict[str, Any]], *, width: int = 720, panel_height: int = 200) -> RGB:
    """The chart as an RGB array: one panel per metric in PLOT_PANELS, epochs on the x axis."""
    img: RGB = np.full((panel_height * len(PLOT_PANELS), width, 3), 255, dtype=np.uint8)
    xs: list[float] = []
    for i, r in enumerate(records):
        e = _number(r.get("epoch"))
        xs.append(e if e is not None else float(i + 1))
    for k, ((title, keys), colour) in enumerate(zip(PLOT_PANELS, PANEL_COLOURS, strict=True)):
        ys = []
        for r in records:
            v = next((n for key in keys if (n := _number(r.get(key))) is not None), None)
            if title == "episode_return_mean" and r.get("episodes") == 0:
                v = None  # no episode ended in this epoch: the 0.0 written is not a return
            ys.append(v if v is not None else math.nan)
        _panel(img, k * panel_height, panel_height, title, xs, ys, colour)
        if k:
            draw_line(img, 0, k * panel_height, width - 1, k * panel_height, GRID)
    return img


def encode_png(img: RGB) -> bytes:
    """An 8-bit RGB PNG (no filtering, zlib-deflated)."""
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError("encode_png needs an (H, W, 3) uint8 array")
    h, w = img.shape[:2]
    raw = np.concatenate([np.zeros((h, 1), np.uint8), img.reshape(h, w * 3)], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def decode_png(data: bytes) -> RGB:
    """Decode the PNGs `encode_png` writes (8-bit RGB, filter 0 rows); for checks and tests."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, size = 8, b"", (0, 0)
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            if (depth, ctype) != (8, 2):
                raise ValueError("only 8-bit RGB PNGs are supported")
            size = (h, w)
        elif kind == b"IDAT":
            idat += body
    h, w = size
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, w * 3 + 1)
    if rows[:, 0].any():
        raise ValueError("only unfiltered rows are supported")
    return rows[:, 1:].reshape(h, w, 3).copy()


def write_plot(records: list[dict[str, Any]], path: Path) -> None:
    from townlet.jsonio import atomic_write_bytes

    try:
        atomic_write_bytes(path, encode_png(render_plot(records)))
    except OSError as exc:
        raise UsageError(f"--plot {path}: cannot write ({exc.strerror or exc})") from None


def iter_records(lines: list[LogLine]) -> Iterator[dict[str, Any]]:
    for ln in lines:
        if isinstance(ln.record, dict):
            yield ln.record
