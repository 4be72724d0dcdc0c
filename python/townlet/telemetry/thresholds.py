"""The `telemetry watch` thresholds: ONE model. The watcher's checks, the command's options (flag, default,
help) and the table in docs/TELEMETRY.md all come from `Thresholds` (a test compares the doc with
`docs_table()`).

Each field is one threshold: its flag, the record key it watches, whether a value above (`max`) or below
(`min`) the limit breaches, and which records it applies to (`all`; `rollout`: rollout and mixed records;
`anneal`: anneal records). Anneal thresholds may compare with a baseline the record carries: a limit of
`ANNEAL_TOLERANCE` x the baseline when unset, or (with `measured`) the relative drift of a value from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from townlet.errors import UsageError
from townlet.telemetry.values import fmt_num

Direction = Literal["max", "min"]
Scope = Literal["all", "rollout", "anneal"]
#: data_mode values the rollout-only thresholds apply to.
ROLLOUT_MODES = ("rollout", "mixed")
#: Fraction of the anneal queue/intensity baselines used when --anneal-queue-min/--anneal-intensity-min are unset.
ANNEAL_TOLERANCE = 0.85


def _threshold(
    flag: str,
    key: str,
    direction: Direction,
    scope: Scope,
    help: str,
    default: float | None = None,
    *,
    baseline: str | None = None,
    measured: str | None = None,
) -> Any:
    extra = {"flag": flag, "key": key, "direction": direction, "scope": scope, "baseline": baseline}
    return Field(default, description=help, json_schema_extra={**extra, "measured": measured})


class Thresholds(BaseModel):
    """Limits for `telemetry watch`; None turns a threshold off."""

    model_config = ConfigDict(frozen=True)

    kl_threshold: float | None = _threshold("--kl-threshold", "kl_divergence", "max", "all", "Max kl_divergence.")
    loss_threshold: float | None = _threshold("--loss-threshold", "loss_total", "max", "all", "Max loss_total.")
    grad_threshold: float | None = _threshold("--grad-threshold", "grad_norm", "max", "all", "Max grad_norm.")
    entropy_threshold: float | None = _threshold(
        "--entropy-threshold", "batch_entropy_mean", "min", "all", "Min batch_entropy_mean."
    )
    reward_corr_threshold: float | None = _threshold(
        "--reward-corr-threshold", "reward_advantage_corr", "min", "all", "Min reward_advantage_corr."
    )
    queue_events_min: float | None = _threshold(
        "--queue-events-min",
        "queue_conflict_events",
        "min",
        "rollout",
        "Min queue_conflict_events (rollout/mixed records).",
    )
    queue_intensity_min: float | None = _threshold(
        "--queue-intensity-min",
        "queue_conflict_intensity_sum",
        "min",
        "rollout",
        "Min queue_conflict_intensity_sum (rollout/mixed records).",
    )
    shared_meal_min: float | None = _threshold(
        "--shared-meal-min", "shared_meal_events", "min", "rollout", "Min shared_meal_events (rollout/mixed)."
    )
    late_help_min: float | None = _threshold(
        "--late-help-min", "late_help_events", "min", "rollout", "Min late_help_events (rollout/mixed)."
    )
    shift_takeover_max: float | None = _threshold(
        "--shift-takeover-max", "shift_takeover_events", "max", "rollout", "Max shift_takeover_events (rollout/mixed)."
    )
    chat_quality_min: float | None = _threshold(
        "--chat-quality-min", "chat_quality_mean", "min", "rollout", "Min chat_quality_mean (rollout/mixed)."
    )
    utility_outage_max: float | None = _threshold(
        "--utility-outage-max", "utility_outage_events", "max", "rollout", "Max utility_outage_events (rollout/mixed)."
    )
    shower_complete_min: float | None = _threshold(
        "--shower-complete-min",
        "shower_complete_events",
        "min",
        "rollout",
        "Min shower_complete_events (rollout/mixed).",
    )
    sleep_complete_min: float | None = _threshold(
        "--sleep-complete-min", "sleep_complete_events", "min", "rollout", "Min sleep_complete_events (rollout/mixed)."
    )
    anneal_bc_min: float | None = _threshold(
        "--anneal-bc-min", "anneal_bc_accuracy", "min", "anneal", "Min anneal_bc_accuracy on anneal records.", 0.9
    )
    anneal_loss_max: float | None = _threshold(
        "--anneal-loss-max",
        "anneal_loss_drift",
        "max",
        "anneal",
        "Max |loss_total - anneal_loss_baseline| / baseline on anneal records.",
        0.1,
        baseline="anneal_loss_baseline",
        measured="loss_total",
    )
    anneal_queue_min: float | None = _threshold(
        "--anneal-queue-min",
        "queue_conflict_events",
        "min",
        "anneal",
        f"Min queue_conflict_events on anneal records (default {ANNEAL_TOLERANCE:g} x baseline).",
        baseline="anneal_queue_baseline",
    )
    anneal_intensity_min: float | None = _threshold(
        "--anneal-intensity-min",
        "queue_conflict_intensity_sum",
        "min",
        "anneal",
        f"Min queue_conflict_intensity_sum on anneal records (default {ANNEAL_TOLERANCE:g} x baseline).",
        baseline="anneal_intensity_baseline",
    )

    def active(self) -> dict[str, float]:
        """flag -> value for every threshold that is set."""
        return {s.flag: v for s in SPECS if (v := getattr(self, s.attr)) is not None}

    def check_values(self) -> None:
        for flag, v in self.active().items():
            if not math.isfinite(v):
                raise UsageError(f"{flag} must be a finite number, got {v}")


@dataclass(frozen=True)
class WatchSpec:
    """One threshold as the watcher and the CLI use it (read off a `Thresholds` field)."""

    attr: str
    flag: str
    key: str
    kind: Direction
    scope: Scope
    help: str
    default: float | None
    #: The record key of the baseline an anneal threshold compares with.
    baseline: str | None
    #: With `baseline`: the record key whose relative drift from the baseline is limited.
    measured: str | None


def _spec(attr: str) -> WatchSpec:
    info = Thresholds.model_fields[attr]
    extra = info.json_schema_extra
    assert isinstance(extra, dict) and info.description is not None
    return WatchSpec(
        attr=attr,
        flag=str(extra["flag"]),
        key=str(extra["key"]),
        kind="max" if extra["direction"] == "max" else "min",
        scope="all" if extra["scope"] == "all" else "rollout" if extra["scope"] == "rollout" else "anneal",
        help=info.description,
        default=info.default,
        baseline=None if extra["baseline"] is None else str(extra["baseline"]),
        measured=None if extra["measured"] is None else str(extra["measured"]),
    )


#: Every threshold, in the model's order.
SPECS = tuple(_spec(attr) for attr in Thresholds.model_fields)
#: The thresholds on plain record values (every record, or rollout/mixed ones); the watcher's JSON lines
#: carry each of their keys.
WATCH_SPECS = tuple(s for s in SPECS if s.scope != "anneal")


def docs_table() -> str:
    """The threshold table of docs/TELEMETRY.md (markdown, no indentation)."""
    records = {"all": "all", "rollout": ", ".join(ROLLOUT_MODES), "anneal": "anneal"}
    rows = ["| flag | field | breach when | records |", "|---|---|---|---|"]
    for s in SPECS:
        flag = f"`{s.flag}`"
        if s.default is not None:
            flag += f" (default {fmt_num(s.default)})"
        elif s.baseline is not None:
            flag += f" (default {ANNEAL_TOLERANCE:g} x `{s.baseline}`)"
        field = s.key if s.measured is None else f"abs({s.measured} - {s.baseline}) / {s.baseline}"
        when = "above" if s.kind == "max" else "below"
        rows.append(f"| {flag} | `{field}` | {when} | {records[s.scope]} |")
    return "\n".join(rows) + "\n"
