"""`telemetry validate`: the schema of every line (`records.check_record`), the `log_stream_offset` order, and
drift against a baseline (`--baseline`, `--relative`, `--drift-threshold`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from townlet.errors import UsageError
from townlet.telemetry.drift import Baseline, Drift, compute_drift, load_baseline
from townlet.telemetry.reader import LogLine, read_lines
from townlet.telemetry.records import check_record
from townlet.telemetry.values import fmt_num, fmt_pct, number


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
    parsed = read_lines(path, include_rotated=include_rotated)
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
        offset = number(ln.record.get("log_stream_offset"))
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
    first = next((ln for ln in lines if isinstance(ln.record, dict)), None)
    if base is None and relative and first is not None:
        # Seed 000's `--relative` alone: each epoch's drift from the log's own first record.
        base = Baseline(Path(first.where), [first.record])
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
