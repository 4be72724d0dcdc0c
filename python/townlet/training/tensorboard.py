"""`townlet train --tensorboard DIR`: every epoch's telemetry scalars also as TensorBoard event files, for users who
live there. The same record the JSONL telemetry gets (`epoch_record`), each number a scalar at step `epoch`: top
level keys by name (`loss_total`, `sps`), nested ones joined with `/` (`kpis/on_time_rate`); booleans, strings,
lists and nulls are left out. Written by TensorBoard's own writer (`torch.utils.tensorboard.SummaryWriter`, which
needs the `tensorboard` package: the `tensorboard` extra)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from townlet.errors import UsageError


def scalars(record: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """The record's finite numbers as (tag, value), nested keys joined with '/'."""
    for key, value in record.items():
        tag = f"{prefix}{key}"
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, float)):
            if math.isfinite(float(value)):
                yield tag, float(value)
        elif isinstance(value, dict):
            yield from scalars(value, tag + "/")


class TensorBoardLog:
    """An event file under `folder`; `write(record)` adds the record's scalars at its epoch."""

    def __init__(self, folder: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch raises this when the tensorboard package is missing
            raise UsageError(
                "--tensorboard: the tensorboard package is not installed (pip install 'townlet[tensorboard]')"
            ) from None
        self.folder = folder
        self._writer = SummaryWriter(log_dir=str(folder))

    def write(self, record: dict[str, Any]) -> None:
        step = int(record.get("epoch", 0))
        for tag, value in scalars(record):
            if tag != "epoch":
                self._writer.add_scalar(tag, value, global_step=step)

    def close(self) -> None:
        self._writer.flush()
        self._writer.close()
