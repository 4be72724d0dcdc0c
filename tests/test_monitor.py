"""The stability monitor: every alert fires past its threshold and stays quiet under it; promotion windows, the
pass streak and candidate_ready; on a live shard, starving agents (setneed) fire starvation_spike."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import WriteConfig
from test_ops_bus import ADMIN, make_shard
from townlet.errors import ConfigError
from townlet.ops.monitor import ALERTS, StabilityMonitor, TickSample, sample_of
from townlet.ops.world import ShardWorld, TickRecord
from townlet.sim.config import load_config
from townlet.sim.settings_ops import StabilitySettings

N = 4


def base(tick: int, **kw: Any) -> TickSample:
    sample = TickSample(
        tick=tick,
        hunger=np.full(N, 0.8, np.float32),
        alive=np.ones(N, bool),
        activities=["idle"] * N,
        rewards=np.full(N, 0.02, np.float32),
        rivalry=np.zeros((N, N), np.float32),
        kpis={"self_sufficiency": 1.0, "relationship_coverage": 1.0},
        ticks_per_day=100,
    )
    return replace(sample, **kw)


def names(alerts: list[Any]) -> set[str]:
    return {a.name for a in alerts}


def run(monitor: StabilityMonitor, samples: list[TickSample]) -> set[str]:
    fired: set[str] = set()
    for s in samples:
        fired |= names(monitor.track(s))
    return fired


def quiet(n: int = 30, start: int = 0) -> list[TickSample]:
    return [base(start + t) for t in range(n)]


# name -> (settings, samples that fire it, samples that stay just under it)
def cases() -> dict[str, tuple[StabilitySettings, list[TickSample], list[TickSample]]]:
    s = StabilitySettings
    starving = np.array([0.8, 0.04, 0.8, 0.8], np.float32)
    almost = np.array([0.8, 0.06, 0.8, 0.8], np.float32)
    flip = [base(t, activities=["walk" if (t + i) % 2 else "idle" for i in range(N)]) for t in range(12)]
    slow = [base(t, activities=["walk" if t >= 6 and i == 0 else "idle" for i in range(N)]) for t in range(12)]
    wild = [base(t, rewards=np.array([2.0, -2.0, 1.0, -1.0], np.float32)) for t in range(25)]
    calm = [base(t, rewards=np.array([0.3, -0.3, 0.2, -0.2], np.float32)) for t in range(25)]
    rivals = np.zeros((N, N), np.float32)
    rivals[0, 1:] = rivals[1, 2:] = 0.9  # five pairs
    four = rivals.copy()
    four[2, 3] = 0.0
    four[1, 3] = 0.0
    leave = [base(0), base(50, agent_events=[("agent_killed", 2)])]
    stay = [base(0), base(300, agent_events=[("agent_killed", 2)])]  # three days of 100 ticks
    return {
        "starvation_spike": (
            s(starvation_ticks=3),
            [base(t, hunger=starving) for t in range(3)],
            [base(t, hunger=starving) for t in range(2)] + [base(t, hunger=almost) for t in range(2, 10)],
        ),
        "lateness_spike": (
            s(lateness_baseline=1.0, lateness_factor=2.0),
            [base(t, events={"shift_late_start": 1}) for t in range(3)],
            [base(0, events={"shift_late_start": 1}), base(1, events={"shift_absent": 1}), base(2)],
        ),
        "option_thrashing": (s(max_option_switch_rate=0.25, option_min_samples=10), flip, slow),
        "reward_variance_spike": (s(max_reward_variance=0.25, reward_min_samples=20), wild, calm),
        "queue_fairness_pressure": (
            s(max_queue_events_per_tick=5),
            [base(0, events={"queue_ghost_step": 3, "queue_cooldown": 2})],
            [base(0, events={"queue_ghost_step": 2, "queue_cooldown": 2})],
        ),
        "rivalry_spike": (
            s(max_rivalry_events_per_tick=5),
            [base(0), base(1, rivalry=rivals)],
            [base(0), base(1, rivalry=four)],
        ),
        "employment_exit_backlog": (s(max_exit_backlog=2), [base(0, exit_backlog=3)], [base(0, exit_backlog=2)]),
        "employment_exit_queue_overflow": (
            s(),
            [base(0, events={"employment_exit_queue_overflow": 1})],
            [base(0, events={"employment_exit_pending": 1})],
        ),
        "charter_self_sufficiency": (
            s(charter_after_ticks=5),
            [base(5, kpis={"self_sufficiency": 0.69, "relationship_coverage": 1.0})],
            [base(4, kpis={"self_sufficiency": 0.1, "relationship_coverage": 1.0}), base(5)],
        ),
        "charter_relationship_coverage": (
            s(charter_after_ticks=5),
            [base(5, kpis={"self_sufficiency": 1.0, "relationship_coverage": 0.59})],
            [base(5, kpis={"self_sufficiency": 1.0, "relationship_coverage": 0.60})],
        ),
        "charter_tenure": (s(min_tenure_days=3.0), leave, stay),
    }


def test_every_alert_has_a_case() -> None:
    assert set(cases()) == set(ALERTS)


@pytest.mark.parametrize("alert", ALERTS)
def test_alert_fires_past_its_threshold(alert: str) -> None:
    settings, firing, _ = cases()[alert]
    assert alert in run(StabilityMonitor(settings), firing)


@pytest.mark.parametrize("alert", ALERTS)
def test_alert_stays_quiet_under_its_threshold(alert: str) -> None:
    settings, _, under = cases()[alert]
    assert run(StabilityMonitor(settings), under) == set()


def test_lateness_baseline_defaults_to_the_windows_so_far() -> None:
    m = StabilityMonitor(StabilitySettings(window_ticks=10, lateness_factor=2.0, lateness_floor=1.0))
    late = {"shift_late_start": 1}
    # first window: 4 late starts against the floor (limit 2): fires
    assert "lateness_spike" in run(m, [base(t, events=late if t < 4 else {}) for t in range(10)])
    # its 4 become the baseline: 6 late starts (limit 8) stay quiet
    assert run(m, [base(t, events=late if t < 16 else {}) for t in range(10, 20)]) == set()


def test_windows_pass_streak_and_candidate_ready() -> None:
    m = StabilityMonitor(StabilitySettings(window_ticks=10, required_passes=2))
    run(m, quiet(10))
    assert m.pass_streak == 1 and not m.candidate_ready
    run(m, quiet(10, 10))
    assert m.pass_streak == 2 and m.candidate_ready
    assert [w.passed for w in m.windows] == [True, True]
    # a starving agent in the third window fails it and resets the streak
    run(m, [base(20, hunger=np.array([0.8, 0.0, 0.8, 0.8], np.float32)), *quiet(9, 21)])
    assert m.windows[-1].passed is False and m.windows[-1].alerts == ["starvation_spike"]
    assert m.pass_streak == 0 and not m.candidate_ready
    assert m.status()["last_result"] == {"start": 20, "end": 30, "passed": False, "alerts": ["starvation_spike"]}


def test_an_allowed_alert_does_not_fail_a_window() -> None:
    m = StabilityMonitor(StabilitySettings(window_ticks=5, allowed_alerts=["employment_exit_backlog"]))
    fired = run(m, [base(t, exit_backlog=9) for t in range(5)])
    assert fired == {"employment_exit_backlog"} and m.windows[-1].passed and m.pass_streak == 1


def test_a_live_shard_fires_starvation_when_agents_starve_and_not_before(tmp_path: Path) -> None:
    shard = make_shard(tmp_path)
    monitor = StabilityMonitor(StabilitySettings(window_ticks=50))
    fired: list[set[str]] = []

    def listen(world: ShardWorld, record: TickRecord) -> None:
        fired.append(names(monitor.track(sample_of(world, record))))

    shard.world.tick_listeners.append(listen)
    for _ in range(50):
        shard.step()
    assert set().union(*fired) == set() and monitor.windows[-1].passed
    for i, agent in enumerate(("alice", "bob")):
        r = shard.submit({"name": "setneed", "args": [agent, "hunger", 0.0], "cmd_id": f"starve{i}"}, ADMIN)
        assert r.status == "ok", r
    shard.step()
    assert "starvation_spike" in fired[-1]
    assert monitor.status()["metrics"]["starvation_incidents"] == 2.0
    shard.close()


def test_tenure_counts_from_an_arrival_or_the_town_start_never_from_when_the_monitor_started() -> None:
    m = StabilityMonitor(StabilitySettings(min_tenure_days=3.0))
    assert run(m, [base(5000), base(5010, agent_events=[("agent_killed", 1)])]) == set()
    # the slot's next agent arrives at 5100 and leaves at 5150: a short tenure
    assert run(m, [base(5100, agent_events=[("agent_spawned", 1)])]) == set()
    assert run(m, [base(5150, agent_events=[("employment_exit_processed", 1)])]) == {"charter_tenure"}


def test_thresholds_come_from_the_config_and_a_bad_one_names_its_key(write_config: WriteConfig) -> None:
    path = write_config(lambda d: d.update(ops={"stability": {"window_ticks": 250, "max_exit_backlog": 4}}))
    ops = load_config(path).sections.ops
    assert ops.stability.window_ticks == 250 and ops.stability.max_exit_backlog == 4
    assert ops.stability.required_passes == 2 and ops.promotion.release_dir == "snapshots/rel"
    bad = write_config(lambda d: d.update(ops={"stability": {"window_ticks": 0}}), name="bad.yaml")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: ops.stability.window_ticks: Input should be greater"):
        load_config(bad)
