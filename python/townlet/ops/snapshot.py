"""`telemetry_snapshot`: the shard's state as one JSON-ready dict, versioned by `SCHEMA_VERSION`.

Top level: schema_version, tick, day, config_id, agents (id -> position, needs, wallet, shift_state, job, alive,
activity, possessed), jobs (id -> the employment record, with every key of the prior 0.2.0 sample's job entries;
basket_cost is the price of a meal at home, `meal_cost`), economy (stock per object, prices, utilities),
employment (exit queue metrics), kpis, perturbations, events (the latest 100), narrations, toggles, possessed.
1.1.0 adds each agent's action (the last tick's, by name) and action_prob (its probability under the acting
policy; null for an operator's action), reward_clip_events (agent-ticks whose reward a clip changed, since the
shard started) and promotion (status, release, shadow, pass_streak, required_passes, candidate_ready, canary_until,
last_event; null without a promotion manager).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from townlet.ops.promotion import current
from townlet.ops.world import NEED_NAMES

if TYPE_CHECKING:
    from townlet.ops.world import ShardWorld

SCHEMA_VERSION = "1.1.0"


def _r(x: float) -> float:
    return round(float(x), 6)


def _prob(p: float | None) -> float | None:
    return None if p is None else _r(p)


def telemetry_snapshot(w: ShardWorld) -> dict[str, Any]:
    town = w.town
    ids = w.agent_ids()
    pos = town.positions()
    needs = town.needs()
    wallets = town.wallets()
    alive = town.alive()
    shifts = town.shift_states()
    acts = town.activities()
    emp = town.employment()
    counters = town.job_counters()
    prices = dict(zip(town.price_keys(), town.prices(), strict=True))
    basket = _r(prices.get("meal_cost", 0.0))
    pending, exits_today = town.employment_exit_review()
    employment_cfg = w.config.world.get("employment") or {}
    names = w.action_names
    agents: dict[str, Any] = {}
    jobs: dict[str, Any] = {}
    for i, aid in enumerate(ids):
        job, state, late, attendance, earned, withheld = emp[i]
        cooked, eaten, late_today, absent_7d, exit_pending = counters[i]
        agents[aid] = {
            "position": [int(pos[i][0]), int(pos[i][1])],
            "needs": {n: _r(needs[i][k]) for k, n in enumerate(NEED_NAMES)},
            "wallet": None if w.privacy_mode else _r(wallets[i]),
            "shift_state": shifts[i],
            "job": job or None,
            "alive": bool(alive[i]),
            "activity": {"affordance": acts[i][0] or None, "phase": acts[i][1]},
            "possessed": i in w.possessed,
            "action": names[w.last_actions[i]] if i < len(w.last_actions) else None,
            "action_prob": _prob(w.last_probs[i]) if i < len(w.last_probs) else None,
        }
        jobs[aid] = {
            "job_id": job or None,
            "shift_state": state,
            "on_shift": state in ("on_time", "late"),
            "wallet": None if w.privacy_mode else _r(wallets[i]),
            "lateness_counter": int(late),
            "attendance_ratio": _r(attendance),
            "wages_earned": _r(earned),
            "wages_withheld": _r(withheld),
            "meals_cooked": int(cooked),
            "meals_consumed": int(eaten),
            "basket_cost": basket,
            "late_ticks_today": int(late_today),
            "absent_shifts_7d": int(absent_7d),
            "exit_pending": bool(exit_pending) or any(int(a) == i for a, _ in pending),
        }
    stock = town.object_stock()
    keys = town.stock_keys()
    power, water = town.utilities()
    economy = {
        "stock": {oid: {k: int(stock[o][j]) for j, k in enumerate(keys)} for o, oid in enumerate(town.object_ids())},
        "prices": {k: _r(v) for k, v in prices.items()},
        "utilities": {"power": bool(power), "water": bool(water)},
    }
    employment = {
        "pending": [ids[int(a)] for a, _ in pending],
        "pending_count": len(pending),
        "exits_today": int(exits_today),
        "daily_exit_cap": int(employment_cfg.get("daily_exit_cap", 0)),
        "queue_limit": int(employment_cfg.get("exit_queue_limit", 0)),
        "review_window": int(employment_cfg.get("exit_review_window", 0)),
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "tick": w.tick,
        "day": w.tick // int(town.ticks_per_day),
        "config_id": w.config.config_id,
        "agents": agents,
        "jobs": jobs,
        "economy": economy,
        "employment": employment,
        "kpis": {k: _r(v) for k, v in town.kpis().items()},
        "perturbations": [
            {"event_id": int(e), "name": n, "kind": k, "started": int(s), "ends": int(t), "magnitude": _r(m)}
            for e, n, k, s, t, m in town.perturbations_active()
        ],
        "narrations": list(w.narrations),
        "events": [
            e | {"agent": "an agent" if e["agent"] else None, "other": "another agent" if e["other"] else None}
            for e in w.events
        ]
        if w.privacy_mode
        else list(w.events),
        "toggles": {
            "narration": w.narration_enabled,
            "narration_throttle": w.narration_throttle,
            "privacy_mode": w.privacy_mode,
        },
        "possessed": sorted(ids[i] for i in w.possessed),
        "reward_clip_events": w.reward_clip_events,
        "promotion": _promotion(w),
    }


def _promotion(w: ShardWorld) -> dict[str, Any] | None:
    manager = current(w)
    return None if manager is None else manager.summary()
