"""Timestamps for artefacts: `SOURCE_DATE_EPOCH` (reproducible builds) when set, else the clock."""

from __future__ import annotations

import datetime as dt
import os

from townlet.errors import UsageError


def source_date_epoch() -> int | None:
    """`SOURCE_DATE_EPOCH` (reproducible builds) as an int, None when unset; a bad value is an error."""
    raw = os.environ.get("SOURCE_DATE_EPOCH")
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise UsageError(f"SOURCE_DATE_EPOCH must be a non-negative integer (seconds), got {raw!r}")
    return int(raw)


def utc_stamp(epoch: int | None = None) -> str:
    """RFC 3339 UTC with `Z`: `epoch`, else `SOURCE_DATE_EPOCH`, else the clock."""
    if epoch is None:
        epoch = source_date_epoch()
    try:
        when = dt.datetime.fromtimestamp(epoch, tz=dt.UTC) if epoch is not None else dt.datetime.now(dt.UTC)
    except (OverflowError, OSError, ValueError):
        raise UsageError(f"SOURCE_DATE_EPOCH {epoch} is out of range") from None
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")
