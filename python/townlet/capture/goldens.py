"""Golden rollout metrics: merge captured metrics into the golden JSON, and the drift check.

The golden file (`docs/samples/rollout_scenario_stats.json`) maps each scenario to the metrics
its capture produced: `{scenario: {"events": {...}, "samples": {npz_name: {...}}}}`. The drift
check compares every numeric leaf: a value drifts when it differs from the golden by more than
2 % relative (to max(|golden|, 1)) and more than 1e-6 absolute; missing or extra scenarios,
samples and keys are reported too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from townlet.capture.records import read_golden_metrics
from townlet.capture.rollout import DEFAULT_PREFIX
from townlet.errors import UsageError
from townlet.jsonio import read_json

DEFAULT_GOLDEN = Path("docs/samples/rollout_scenario_stats.json")
REL_TOL = 0.02
ABS_TOL = 1e-6


def read_capture_metrics(folder: Path, prefix: str = DEFAULT_PREFIX) -> dict[str, Any]:
    """One scenario's golden entry from its capture folder (`<prefix>_metrics.json`)."""
    return read_golden_metrics(folder / f"{prefix}_metrics.json")


def capture_folders(root: Path, prefix: str = DEFAULT_PREFIX) -> dict[str, Path]:
    """Scenario name -> capture folder, for `root` itself or each of its sub-folders."""
    if not root.is_dir():
        raise UsageError(f"{root}: not a directory")
    if (root / f"{prefix}_metrics.json").is_file():
        return {root.name: root}
    found = {
        p.name: p
        for p in sorted(root.iterdir())
        if p.is_dir() and not p.name.startswith((".", "_")) and (p / f"{prefix}_metrics.json").is_file()
    }
    if not found:
        raise UsageError(f"{root}: no capture folders (none holds {prefix}_metrics.json)")
    return found


def read_captures(root: Path, prefix: str = DEFAULT_PREFIX) -> dict[str, dict[str, Any]]:
    """Scenario name -> its captured metrics, for a capture folder or a suite's output root."""
    return {name: read_capture_metrics(folder, prefix) for name, folder in capture_folders(root, prefix).items()}


def load_golden(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    data = read_json(path)
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping of scenario -> metrics")
    return data


@dataclass(frozen=True)
class Drift:
    key: str
    golden: Any
    captured: Any
    reason: str

    def __str__(self) -> str:
        return f"{self.key}: {self.reason} (golden {self.golden!r}, captured {self.captured!r})"


def _close(a: float, b: float) -> bool:
    diff = abs(a - b)
    return diff <= ABS_TOL or diff <= REL_TOL * max(abs(a), 1.0)


def compare(golden: Any, captured: Any, key: str = "") -> list[Drift]:
    """Every leaf of `golden` against `captured`, and every key present on one side only."""
    if isinstance(golden, dict) and isinstance(captured, dict):
        out: list[Drift] = []
        for k in sorted(set(golden) | set(captured)):
            sub = f"{key}.{k}" if key else str(k)
            if k not in captured:
                out.append(Drift(sub, golden[k], None, "missing from the capture"))
            elif k not in golden:
                out.append(Drift(sub, None, captured[k], "not in the golden"))
            else:
                out.extend(compare(golden[k], captured[k], sub))
        return out
    numeric = (int, float)
    if isinstance(golden, numeric) and isinstance(captured, numeric) and not isinstance(golden, bool):
        if math.isnan(float(golden)) or math.isnan(float(captured)) or not _close(float(golden), float(captured)):
            return [Drift(key, golden, captured, "drifted beyond 2% / 1e-6")]
        return []
    if golden != captured:
        return [Drift(key, golden, captured, "differs")]
    return []


def merge(golden: dict[str, Any], captured: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """Replace the captured scenarios' entries; return the new golden and a list of changes."""
    new = dict(golden)
    changes: list[str] = []
    for scenario, entry in sorted(captured.items()):
        if scenario not in golden:
            changes.append(f"+ {scenario} (new scenario, {len(entry['samples'])} samples)")
        else:
            for d in compare(golden[scenario], entry, scenario):
                changes.append(f"~ {d.key}: {d.golden!r} -> {d.captured!r}")
        new[scenario] = entry
    return new, changes
