"""Reading numbers out of records and printing them the same way in every tool."""

from __future__ import annotations

import math
from typing import Any


def number(value: Any) -> float | None:
    """A finite float, or None for anything else (missing, bool, string, NaN, inf)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


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
