"""The stability monitor: per-tick alerts over windows, and promotion windows (docs/promotion.md).

`StabilityMonitor.track(sample)` takes one `TickSample` a tick (`sample_of(world, record)` builds it from a live
shard) and returns the alerts that fired in that tick. Every alert's threshold is in `ops.stability`
(`StabilitySettings`):

* `starvation_spike`: starvation incidents in the window > `max_starvation_incidents`; an incident is an agent
  whose hunger stays <= `starvation_hunger` for `starvation_ticks` ticks in a row (counted once per spell).
* `lateness_spike`: late shift starts (late or absent) in the window > `lateness_factor` x the baseline
  (`lateness_baseline`, else the mean of the finished windows; at least `lateness_floor`).
* `option_thrashing`: activity changes per living agent-tick over the last `option_window_ticks` ticks >
  `max_option_switch_rate` (once `option_min_samples` ticks are in).
* `reward_variance_spike`: variance of the per-agent rewards over the last `reward_window_ticks` ticks >
  `max_reward_variance` (once `reward_min_samples` ticks are in).
* `queue_fairness_pressure`: ghost steps + rotations (queue cooldowns) in one tick >= `max_queue_events_per_tick`.
* `rivalry_spike`: agent pairs whose rivalry crossed `rivalry_threshold` in one tick >= `max_rivalry_events_per_tick`.
* `employment_exit_backlog`: pending employment exits > `max_exit_backlog`; `employment_exit_queue_overflow`:
  the core reported an overflow this tick.
* charter KPIs (seed 003): `charter_self_sufficiency` (< `min_self_sufficiency`) and
  `charter_relationship_coverage` (< `min_relationship_coverage`), judged from world tick
  `charter_after_ticks` on (they are cumulative); `charter_tenure`: an agent left (exit, removal, kill) before
  `min_tenure_days` days in town.

A promotion window is `window_ticks` ticks; it passes when no alert outside `allowed_alerts` fired in it. A pass
adds one to the pass streak, a failure resets it; `candidate_ready` once the streak reaches `required_passes`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from townlet.sim.settings_ops import StabilitySettings

if TYPE_CHECKING:
    from townlet.ops.world import ShardWorld, TickRecord

ALERTS = (
    "starvation_spike",
    "lateness_spike",
    "option_thrashing",
    "reward_variance_spike",
    "queue_fairness_pressure",
    "rivalry_spike",
    "employment_exit_backlog",
    "employment_exit_queue_overflow",
    "charter_self_sufficiency",
    "charter_relationship_coverage",
    "charter_tenure",
)
LATE_EVENTS = ("shift_late_start", "shift_absent")
QUEUE_EVENTS = ("queue_ghost_step", "queue_cooldown")
LEAVE_EVENTS = ("employment_exit_processed", "agent_removed", "agent_killed")
ARRIVE_EVENTS = ("agent_spawned", "agent_respawn")


@dataclass
class TickSample:
    """What the monitor reads of one tick."""

    tick: int
    hunger: npt.NDArray[np.float32]
    alive: npt.NDArray[np.bool_]
    activities: list[str]
    rewards: npt.NDArray[np.float32]
    rivalry: npt.NDArray[np.float32]
    kpis: dict[str, float]
    exit_backlog: int = 0
    #: Event name -> count in this tick (only the nonzero ones).
    events: dict[str, int] = field(default_factory=dict)
    #: (event name, agent slot) of this tick's arrivals and departures.
    agent_events: list[tuple[str, int]] = field(default_factory=list)
    ticks_per_day: int = 1440


@dataclass(frozen=True)
class Alert:
    name: str
    tick: int
    value: float
    threshold: float
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "alert": self.name,
            "tick": self.tick,
            "value": self.value,
            "threshold": self.threshold,
            "message": self.message,
        }


@dataclass
class WindowResult:
    start: int
    end: int
    passed: bool
    alerts: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "passed": self.passed, "alerts": self.alerts}


class StabilityMonitor:
    def __init__(self, settings: StabilitySettings | None = None) -> None:
        self.s = settings or StabilitySettings()
        self.window_start: int | None = None
        self.pass_streak = 0
        self.windows: list[WindowResult] = []
        self.last_alerts: list[Alert] = []
        self.alert_counts: dict[str, int] = {}
        self._window_alerts: dict[str, Alert] = {}
        self._starving: npt.NDArray[np.int64] = np.zeros(0, np.int64)
        self._window_starvation = 0
        self._window_late = 0
        self._late_history: list[int] = []
        self._prev_activities: list[str] | None = None
        self._switches: deque[tuple[int, int]] = deque()  # (switches, agents) per tick
        self._rewards: deque[npt.NDArray[np.float32]] = deque()
        self._prev_rival: npt.NDArray[np.bool_] | None = None
        self._arrived: dict[int, int] = {}
        self.last_tick: int | None = None
        self.last_values: dict[str, float] = {}

    # -- state -------------------------------------------------------------------------------------

    @property
    def candidate_ready(self) -> bool:
        return self.pass_streak >= self.s.required_passes

    def reset_streak(self) -> None:
        """A new candidate (or a new release) starts its windows again from the next tick."""
        self.pass_streak = 0
        self.window_start = None
        self._window_alerts = {}
        self._window_starvation = self._window_late = 0

    def status(self) -> dict[str, Any]:
        start = self.window_start
        return {
            "window_start": start,
            "window_end": None if start is None else start + self.s.window_ticks,
            "window_ticks": self.s.window_ticks,
            "pass_streak": self.pass_streak,
            "required_passes": self.s.required_passes,
            "candidate_ready": self.candidate_ready,
            "last_result": self.windows[-1].to_json() if self.windows else None,
            "window_alerts": sorted(self._window_alerts),
            "alert_counts": dict(sorted(self.alert_counts.items())),
            "metrics": dict(sorted(self.last_values.items())),
        }

    def disallowed(self, alerts: list[Alert]) -> list[Alert]:
        allowed = set(self.s.allowed_alerts)
        return [a for a in alerts if a.name not in allowed]

    # -- tracking ----------------------------------------------------------------------------------

    def track(self, x: TickSample) -> list[Alert]:
        """One tick: the alerts it raised (all of them; the window fails on the disallowed ones)."""
        s = self.s
        if self.window_start is None:
            self.window_start = x.tick
        alerts: list[Alert] = []
        alerts += self._starvation(x)
        alerts += self._lateness(x)
        alerts += self._options(x)
        alerts += self._reward(x)
        queue = sum(x.events.get(e, 0) for e in QUEUE_EVENTS)
        self.last_values["queue_events"] = float(queue)
        if queue >= s.max_queue_events_per_tick:
            alerts.append(
                self._alert(
                    "queue_fairness_pressure",
                    x,
                    queue,
                    s.max_queue_events_per_tick,
                    f"{queue} ghost steps/rotations in one tick",
                )
            )
        alerts += self._rivalry(x)
        self.last_values["exit_backlog"] = float(x.exit_backlog)
        if x.exit_backlog > s.max_exit_backlog:
            alerts.append(
                self._alert(
                    "employment_exit_backlog",
                    x,
                    x.exit_backlog,
                    s.max_exit_backlog,
                    f"{x.exit_backlog} employment exits pending",
                )
            )
        if x.events.get("employment_exit_queue_overflow", 0):
            alerts.append(
                self._alert(
                    "employment_exit_queue_overflow",
                    x,
                    x.events["employment_exit_queue_overflow"],
                    0,
                    "the employment exit queue overflowed",
                )
            )
        alerts += self._charter(x)
        for a in alerts:
            self.alert_counts[a.name] = self.alert_counts.get(a.name, 0) + 1
        for a in self.disallowed(alerts):
            self._window_alerts.setdefault(a.name, a)
        self.last_alerts = alerts
        self.last_tick = x.tick
        if x.tick + 1 - self.window_start >= s.window_ticks:
            self._close_window(x.tick + 1)
        return alerts

    def _alert(self, name: str, x: TickSample, value: float, threshold: float, message: str) -> Alert:
        return Alert(name, x.tick, float(value), float(threshold), message)

    def _close_window(self, end: int) -> None:
        assert self.window_start is not None
        passed = not self._window_alerts
        self.windows.append(WindowResult(self.window_start, end, passed, sorted(self._window_alerts)))
        self.windows = self.windows[-64:]
        self.pass_streak = self.pass_streak + 1 if passed else 0
        self._late_history.append(self._window_late)
        self.window_start = end
        self._window_alerts = {}
        self._window_starvation = self._window_late = 0

    def _starvation(self, x: TickSample) -> list[Alert]:
        s = self.s
        n = len(x.hunger)
        if len(self._starving) != n:
            self._starving = np.zeros(n, np.int64)
        low = (x.hunger <= s.starvation_hunger) & x.alive
        self._starving = np.where(low, self._starving + 1, 0)
        self._window_starvation += int((self._starving == s.starvation_ticks).sum())
        self.last_values["starvation_incidents"] = float(self._window_starvation)
        if self._window_starvation > s.max_starvation_incidents:
            return [
                self._alert(
                    "starvation_spike",
                    x,
                    self._window_starvation,
                    s.max_starvation_incidents,
                    f"{self._window_starvation} starvation incidents in the window",
                )
            ]
        return []

    def _lateness(self, x: TickSample) -> list[Alert]:
        s = self.s
        self._window_late += sum(x.events.get(e, 0) for e in LATE_EVENTS)
        if s.lateness_baseline is not None:
            baseline = s.lateness_baseline
        else:
            baseline = float(np.mean(self._late_history)) if self._late_history else 0.0
        limit = max(baseline, s.lateness_floor) * s.lateness_factor
        self.last_values["late_starts"] = float(self._window_late)
        if self._window_late > limit:
            return [
                self._alert(
                    "lateness_spike",
                    x,
                    self._window_late,
                    limit,
                    f"{self._window_late} late shift starts in the window (baseline {baseline:g})",
                )
            ]
        return []

    def _options(self, x: TickSample) -> list[Alert]:
        s = self.s
        prev = self._prev_activities
        if prev is not None and len(prev) == len(x.activities):
            switched = sum(1 for i, (p, q) in enumerate(zip(prev, x.activities, strict=True)) if p != q and x.alive[i])
            self._switches.append((switched, int(x.alive.sum())))
            while len(self._switches) > s.option_window_ticks:
                self._switches.popleft()
        self._prev_activities = list(x.activities)
        agents = sum(a for _, a in self._switches)
        rate = sum(k for k, _ in self._switches) / agents if agents else 0.0
        self.last_values["option_switch_rate"] = rate
        if len(self._switches) >= s.option_min_samples and rate > s.max_option_switch_rate:
            return [
                self._alert(
                    "option_thrashing",
                    x,
                    rate,
                    s.max_option_switch_rate,
                    f"option-switch rate {rate:.3f} over {len(self._switches)} ticks",
                )
            ]
        return []

    def _reward(self, x: TickSample) -> list[Alert]:
        s = self.s
        self._rewards.append(np.asarray(x.rewards, np.float32)[x.alive])
        while len(self._rewards) > s.reward_window_ticks:
            self._rewards.popleft()
        values = np.concatenate(list(self._rewards)) if self._rewards else np.zeros(0, np.float32)
        var = float(values.var()) if values.size else 0.0
        self.last_values["reward_variance"] = var
        if len(self._rewards) >= s.reward_min_samples and var > s.max_reward_variance:
            return [
                self._alert(
                    "reward_variance_spike",
                    x,
                    var,
                    s.max_reward_variance,
                    f"reward variance {var:.3f} over {len(self._rewards)} ticks",
                )
            ]
        return []

    def _rivalry(self, x: TickSample) -> list[Alert]:
        s = self.s
        rival = np.triu(np.asarray(x.rivalry) >= s.rivalry_threshold, 1)
        prev = self._prev_rival
        crossed = int((rival & ~prev).sum()) if prev is not None and prev.shape == rival.shape else 0
        self._prev_rival = rival
        self.last_values["rivalry_events"] = float(crossed)
        if crossed >= s.max_rivalry_events_per_tick:
            return [
                self._alert(
                    "rivalry_spike",
                    x,
                    crossed,
                    s.max_rivalry_events_per_tick,
                    f"{crossed} pairs became rivals in one tick",
                )
            ]
        return []

    def _charter(self, x: TickSample) -> list[Alert]:
        s = self.s
        out: list[Alert] = []
        # Agents already in town when the monitor started count from tick 0 (never a false short tenure).
        min_ticks = s.min_tenure_days * x.ticks_per_day
        for name, slot in x.agent_events:
            if name in ARRIVE_EVENTS:
                self._arrived[slot] = x.tick
            elif name in LEAVE_EVENTS:
                tenure = x.tick - self._arrived.get(slot, 0)
                self._arrived[slot] = x.tick
                if tenure < min_ticks:
                    out.append(
                        self._alert(
                            "charter_tenure",
                            x,
                            tenure / x.ticks_per_day,
                            s.min_tenure_days,
                            f"agent {slot} left after {tenure / x.ticks_per_day:.2f} days ({name})",
                        )
                    )
        ss = float(x.kpis.get("self_sufficiency", 1.0))
        rc = float(x.kpis.get("relationship_coverage", 1.0))
        self.last_values["self_sufficiency"] = ss
        self.last_values["relationship_coverage"] = rc
        if x.tick >= s.charter_after_ticks:
            if ss < s.min_self_sufficiency:
                out.append(
                    self._alert(
                        "charter_self_sufficiency",
                        x,
                        ss,
                        s.min_self_sufficiency,
                        f"self-sufficiency {ss:.2f} below the charter's {s.min_self_sufficiency:.2f}",
                    )
                )
            if rc < s.min_relationship_coverage:
                out.append(
                    self._alert(
                        "charter_relationship_coverage",
                        x,
                        rc,
                        s.min_relationship_coverage,
                        f"relationship coverage {rc:.2f} below the charter's {s.min_relationship_coverage:.2f}",
                    )
                )
        return out


def sample_of(world: ShardWorld, record: TickRecord) -> TickSample:
    """The monitor's view of the tick the shard just ran."""
    town = world.town
    names = world.event_names
    counts = town.event_counts()
    events = {names[i]: int(c) for i, c in enumerate(counts) if c}
    agent_events: list[tuple[str, int]] = []
    cols = record.events
    if any(e in events for e in LEAVE_EVENTS + ARRIVE_EVENTS):
        for k, a in zip(cols["kind"], cols["agent"], strict=True):
            name = names[int(k)]
            if name in LEAVE_EVENTS + ARRIVE_EVENTS and int(a) >= 0:
                agent_events.append((name, int(a)))
    return TickSample(
        tick=record.tick,
        hunger=town.needs()[:, 0].copy(),
        alive=town.alive().copy(),
        activities=[a for a, _ in town.activities()],
        rewards=town.rewards().copy(),
        rivalry=town.relationships()[2],
        kpis={k: float(v) for k, v in town.kpis().items()},
        exit_backlog=len(town.employment_exit_review()[0]),
        events=events,
        agent_events=agent_events,
        ticks_per_day=int(town.ticks_per_day),
    )
