"""The promotion history, durably: `logs/promotion_history.jsonl` (one JSON object a line, for machines) and
`ops/rollouts.md` (for people). Each entry is appended and fsynced before the command answers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from townlet.clock import utc_stamp

ROLLOUTS_HEADER = "# Rollouts\n\nPromotions, rollbacks and policy swaps of the serving shard, newest last.\n\n"


def _append(path: Path, text: str, header: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", encoding="utf-8") as fh:
        if new and header:
            fh.write(header)
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def record(history: Path, rollouts: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """Append `entry` (with `event` and `tick`) to both logs; returns it with its time."""
    entry = {"time": utc_stamp(), **entry}
    _append(history, json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n")
    _append(rollouts, _line(entry), ROLLOUTS_HEADER)
    return entry


def _line(e: dict[str, Any]) -> str:
    parts = [f"- {e['time']} tick {e['tick']}: **{e['event']}** {e.get('to', '?')} (was {e.get('from', '?')})"]
    if e.get("reason"):
        parts.append(f"reason: {e['reason']}")
    if e.get("alert"):
        a = e["alert"]
        parts.append(f"alert {a.get('alert')} ({a.get('message')})")
    if e.get("snapshot"):
        parts.append(f"snapshot {e['snapshot']}")
    if e.get("windows") is not None:
        parts.append(f"pass streak {e['windows']}")
    return "; ".join(parts) + "\n"


def read_history(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
