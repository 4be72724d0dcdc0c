"""Capture metrics: per-sample statistics over the ticks an agent was alive, and the town's event totals."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from townlet import _core

#: Scenario-level event counters: output key -> event names summed.
EVENT_COUNTERS = {
    "queue_conflict_events": ("queue_conflict",),
    "shared_meal_events": ("shared_meal",),
    "late_help_events": ("employment_helped_when_late",),
    "shift_takeover_events": ("employment_took_my_shift",),
    "chat_success_events": ("chat_success",),
    "chat_failure_events": ("chat_failure",),
    "utility_outage_events": ("perturbation_blackout", "perturbation_outage"),
    "shower_complete_events": ("shower_complete",),
    "sleep_complete_events": ("sleep_complete",),
}


def _entropy(counts: npt.NDArray[np.int64]) -> float:
    total = counts.sum()
    if total == 0:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * np.log(p)).sum())


def sample_metrics(
    arrays: dict[str, npt.NDArray[Any]], feature_names: list[str], action_names: list[str]
) -> dict[str, float]:
    """Per-sample metrics over the ticks the agent was alive."""
    alive = arrays["alive"]
    feats = arrays["features"][alive]
    rewards = arrays["rewards"]
    col = {n: i for i, n in enumerate(feature_names)}

    def stat(name: str, fn: Callable[[npt.NDArray[Any]], Any]) -> float:
        values = feats[:, col[name]]
        return float(fn(values)) if values.size else 0.0

    counts = np.bincount(arrays["actions"][alive], minlength=len(action_names))
    out: dict[str, float] = {
        "timesteps": float(len(rewards)),
        "alive_ticks": float(alive.sum()),
        "reward_sum": float(rewards.sum(dtype=np.float64)),
        "reward_mean": float(rewards.mean(dtype=np.float64)) if len(rewards) else 0.0,
        "log_prob_mean": float(arrays["old_log_probs"][alive].mean(dtype=np.float64)) if alive.any() else 0.0,
        "value_pred_last": float(arrays["value_preds"][-1]),
        "done_count": float(arrays["dones"].sum()),
        "rivalry_max_mean": stat("rivalry_max", np.mean),
        "rivalry_max_max": stat("rivalry_max", np.max),
        "rivalry_avoid_count_mean": stat("rivalry_avoid_count", np.mean),
        "rivalry_avoid_count_max": stat("rivalry_avoid_count", np.max),
        "lateness_mean": stat("lateness", np.mean),
        "need_hunger_mean": stat("need_hunger", np.mean),
        "need_hygiene_mean": stat("need_hygiene", np.mean),
        "need_energy_mean": stat("need_energy", np.mean),
        "action_entropy": _entropy(counts),
    }
    for name, c in zip(action_names, counts, strict=True):
        out[f"action_{name}_count"] = float(c)
    return out


def event_metrics(native: _core.VecTown) -> dict[str, float]:
    """Event totals of town 0: the EVENT_COUNTERS sums, queue-conflict intensity and chat quality."""
    names = list(native.event_names())
    totals = dict(zip(names, (int(x) for x in native.event_totals(0)), strict=True))
    values = dict(zip(names, (float(x) for x in native.event_value_totals(0)), strict=True))
    out = {key: float(sum(totals[e] for e in events)) for key, events in EVENT_COUNTERS.items()}
    out["queue_conflict_intensity_sum"] = values["queue_conflict"]
    out["chat_quality_mean"] = values["chat_success"] / totals["chat_success"] if totals["chat_success"] else 0.0
    return out
