"""Baselines and drift: `validate --baseline` and `summary --baseline` compare a log with a baseline log (matched
by epoch) or one fixed object."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from townlet.errors import UsageError
from townlet.jsonio import DuplicateKey, loads_strict
from townlet.telemetry.reader import LogLine, open_error, read_log
from townlet.telemetry.records import BASELINE_FIELDS
from townlet.telemetry.values import number

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
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"--baseline {path}: {open_error(path, exc)}") from None
    records: list[dict[str, Any]] = []
    try:
        whole = loads_strict(raw)
    except DuplicateKey as exc:
        raise UsageError(f"--baseline {path}:{exc.line}: invalid JSON: duplicate key {exc.key!r}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--baseline {path}: not UTF-8 text") from None
    except json.JSONDecodeError:
        whole = None  # perhaps a JSONL log
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
    if not any(number(rec.get(k)) is not None for rec in records for k in DRIFT_KEYS):
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
            v, b = number(rec.get(key)), number(base.get(key))
            if v is not None and b is not None:
                drifts.append(Drift(rec.get("epoch"), key, v, b, ln.where))
    return drifts, unmatched
