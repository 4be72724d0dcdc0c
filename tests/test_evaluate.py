"""The evaluation API (`townlet.training.evaluate`): same towns and seeds for every policy, deterministic, and
the scripted expert beats a random masked policy on the default town."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import DEFAULT_CONFIG
from townlet.errors import UsageError
from townlet.sim.config import TownConfig, load_config
from townlet.sim.env import VecTown
from townlet.training.evaluate import (
    EVAL_SEED_BASE,
    KPI_NAMES,
    evaluate,
    expert_actor,
    greedy_actor,
    random_actor,
)
from townlet.training.trainer import make_policy

#: Short episodes keep these tests at a second or two; long enough for shifts and meals to happen.
TICKS = 480


@pytest.fixture(scope="module")
def poc() -> TownConfig:
    return load_config(DEFAULT_CONFIG)


def test_report_shape_and_determinism(poc: TownConfig) -> None:
    policies = {"expert": expert_actor(), "random": random_actor(3)}
    first = evaluate(poc, policies, seeds=2, ticks=TICKS, num_towns=2)
    again = evaluate(poc, {"expert": expert_actor(), "random": random_actor(3)}, seeds=2, ticks=TICKS, num_towns=2)
    # The same actor objects a second time (the random one is reseeded per episode), and fresh ones: equal.
    assert evaluate(poc, policies, seeds=2, ticks=TICKS, num_towns=2) == first == again
    dump = first.model_dump()
    assert set(dump["policies"]) == {"expert", "random"}
    assert dump["seeds"] == [EVAL_SEED_BASE, EVAL_SEED_BASE + 1] and dump["ticks"] == TICKS
    for score in dump["policies"].values():
        assert set(score) == {"return", "kpis", "per_seed"}
        assert tuple(score["kpis"]) == KPI_NAMES
        assert [s["seed"] for s in score["per_seed"]] == dump["seeds"]
        assert score["return"] == pytest.approx(np.mean([s["return"] for s in score["per_seed"]]))
    assert first.policies_json() == {
        "policies": {n: {"return": s["return"], "kpis": s["kpis"]} for n, s in dump["policies"].items()}
    }
    # Another random seed acts differently.
    other = evaluate(poc, {"random": random_actor(4)}, seeds=2, ticks=TICKS, num_towns=2)
    assert other.policies["random"] != first.policies["random"]


def test_expert_beats_random_on_the_default_town(poc: TownConfig) -> None:
    report = evaluate(poc, {"expert": expert_actor(), "random": random_actor(0)}, seeds=1, num_towns=2)
    expert, rand = report.policies["expert"], report.policies["random"]
    assert expert.return_ > rand.return_ + 1.0
    assert expert.kpis.on_time_rate > rand.kpis.on_time_rate
    assert expert.kpis.faints <= rand.kpis.faints


def test_random_actor_only_picks_valid_actions(poc: TownConfig) -> None:
    vec = VecTown(poc, 2, 5)
    obs, _ = vec.reset(5)
    actor = random_actor(1)
    seen = set()
    for _ in range(200):
        actions = actor(vec, obs)
        assert vec.action_masks()[np.arange(vec.num_agents), actions].all()
        seen.update(actions.tolist())
        obs, *_ = vec.step(actions)
    assert len(seen) > 3


def test_greedy_actor_is_the_argmax_of_valid_actions(poc: TownConfig) -> None:
    vec = VecTown(poc, 1, 5)
    obs, _ = vec.reset(5)
    meta = vec.observation_metadata()
    policy = make_policy(meta, vec.obs_dim, vec.n_actions, 32)
    actions = greedy_actor(policy)(vec, obs)
    assert actions.dtype == np.int64 and actions.shape == (vec.num_agents,)
    assert vec.action_masks()[np.arange(vec.num_agents), actions].all()
    report = evaluate(poc, {"untrained": greedy_actor(policy)}, seeds=1, ticks=50, num_towns=1)
    assert report == evaluate(poc, {"untrained": greedy_actor(policy)}, seeds=1, ticks=50, num_towns=1)


@pytest.mark.parametrize("kwargs", [{"seeds": 0}, {"ticks": 0}, {"num_towns": 0}])
def test_bad_arguments(poc: TownConfig, kwargs: dict[str, int]) -> None:
    with pytest.raises(UsageError, match=next(iter(kwargs))):
        evaluate(poc, {"expert": expert_actor()}, **kwargs)


def test_learning_curve_is_the_trailing_day_and_the_progress_agrees() -> None:
    from townlet.cli.progress import DayReturn
    from townlet.telemetry.plots import day_returns

    # Half a day per epoch: the curve starts at the second epoch and averages the last two.
    recs = [
        {"steps": 100 * (k + 1), "rollout_ticks": 720, "data_mode": "rollout", "baseline_reward_mean": rate}
        for k, rate in enumerate([0.01, 0.03, 0.02])
    ]
    recs.insert(1, {"steps": 150, "data_mode": "replay", "baseline_reward_mean": 9.0, "rollout_ticks": 0})
    assert day_returns(recs, 1440) == [(200, pytest.approx(0.02 * 1440)), (300, pytest.approx(0.025 * 1440))]
    progress = DayReturn(1440)
    assert [progress.add(r) for r in recs] == [None, None, pytest.approx(0.02 * 1440), pytest.approx(0.025 * 1440)]
