"""The progress display of `townlet train`, on stderr: a live Rich bar on a terminal, or (asked for with
`--progress` when stderr is not a terminal) a plain line every `LINE_EVERY` seconds and at the last epoch."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from townlet.telemetry.values import number

#: Seconds between plain progress lines (not a terminal).
LINE_EVERY = 10.0
#: KPIs shown when an epoch's record carries them (as `name` or `kpi_name`): (key, label, format).
KPI_FIELDS = (
    ("self_sufficiency", "self-suff", "{:.2f}"),
    ("on_time_rate", "on-time", "{:.2f}"),
    ("relationship_coverage", "rel", "{:.2f}"),
    ("faints", "faints", "{:g}"),
)


class DayReturn:
    """The sampled policy's return per agent-day so far: the mean reward per agent slot and tick
    (`baseline_reward_mean`) over the trailing day's worth of epochs, times a day's ticks (what
    `telemetry.plots.day_returns` draws); None until a day of rollouts is in."""

    def __init__(self, day_ticks: int) -> None:
        self.day_ticks = day_ticks
        self.window: list[float] = []

    def add(self, rec: dict[str, Any]) -> float | None:
        rate, ticks = number(rec.get("baseline_reward_mean")), number(rec.get("rollout_ticks"))
        if rec.get("data_mode") == "replay" or rate is None or not ticks:
            return None
        size = max(1, round(self.day_ticks / ticks))
        self.window = [*self.window[-(size - 1) :], rate] if size > 1 else [rate]
        return sum(self.window) / size * self.day_ticks if len(self.window) == size else None


def kpi_text(rec: dict[str, Any]) -> str:
    parts = []
    for key, label, fmt in KPI_FIELDS:
        value = number(rec.get(key, rec.get(f"kpi_{key}")))
        if value is not None:
            parts.append(f"{label} {fmt.format(value)}")
    return "  ".join(parts)


def ppo_describer(day_ticks: int) -> Callable[[dict[str, Any]], str]:
    """An epoch's progress text: agent-steps/s, the return per agent-day, the KPIs the record carries."""
    day = DayReturn(day_ticks)
    last_kpis = [""]  # the KPIs of the latest epoch that ended a town episode (not every epoch does)

    def describe(rec: dict[str, Any]) -> str:
        ret = day.add(rec)
        text = f"{(rec.get('sps') or 0) / 1000:.1f}k agent-steps/s  return/day " + (
            "…" if ret is None else f"{ret:.2f}"
        )
        last_kpis[0] = kpi_text(rec) or last_kpis[0]
        return f"{text}  {last_kpis[0]}" if last_kpis[0] else text

    return describe


class TrainProgress:
    """`with TrainProgress(...) as p: ... p.on_epoch(rec)`; `mode` is "live", "lines" or "off"."""

    def __init__(self, *, title: str, total: int, mode: str, describe: Callable[[dict[str, Any]], str]) -> None:
        self.title, self.total, self.mode, self.describe = title, total, mode, describe
        self.first: int | None = None  # the epoch before the first one seen (a resumed run starts late)
        self.console = Console(stderr=True)
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=12),
            TextColumn("epoch {task.completed}/{task.total}"),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(compact=True),
            TextColumn("left"),
            console=self.console,
            disable=mode != "live",
        )
        self.task = self.bar.add_task(title, total=total, info="")
        self.started = time.monotonic()
        self.last_line = self.started

    def __enter__(self) -> TrainProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.bar.__exit__(kind, exc, tb)

    def on_epoch(self, rec: dict[str, Any]) -> None:
        info = self.describe(rec)
        epoch = int(rec["epoch"])
        if self.first is None:
            self.first = epoch - 1
            self.bar.reset(self.task, total=self.total, completed=self.first, info=info)
        self.bar.update(self.task, completed=epoch, info=info)
        if self.mode != "lines":
            return
        now = time.monotonic()
        if now - self.last_line < LINE_EVERY and epoch < self.total:
            return
        self.last_line = now
        done = epoch - self.first
        left = (now - self.started) / done * (self.total - epoch) if done > 0 else 0.0
        self.console.print(
            f"{self.title}: epoch {epoch}/{self.total}  {info}  {now - self.started:.0f}s, {left:.0f}s left",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
