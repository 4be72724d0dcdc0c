"""Rewards: the component breakdown adds up, the scripted expert is rarely at the clip, wages are rewarded as
paid and employment penalties as charged, fainting is penalised (and never rewarded), the post-death guard,
and the per-episode clip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from envtools import DEFAULT_CONFIG, feature_column, make_fainting, write_variant
from townlet import _core
from townlet.sim.config import load_config
from townlet.sim.env import VecTown

COMPONENTS = list(_core.REWARD_COMPONENTS)
TOTAL = COMPONENTS.index("total")
DAY = 1440


def col(name: str) -> int:
    assert name in COMPONENTS, (name, COMPONENTS)
    return COMPONENTS.index(name)


def breakdown(vec: VecTown) -> np.ndarray:
    """Last step's breakdown of every town, (num_agents, components)."""
    return np.concatenate([vec.native.reward_breakdown(e) for e in range(vec.num_envs)])


def test_component_names() -> None:
    vec = VecTown(load_config(DEFAULT_CONFIG), num_threads=1)
    assert list(vec.native.reward_components()) == COMPONENTS
    assert COMPONENTS[-1] == "total"
    for name in ("survival", "needs", "wage", "punctuality", "terminal", "clip_adjustment"):
        assert name in COMPONENTS
    assert any(name.startswith("social") for name in COMPONENTS)
    vec.reset()
    vec.step(np.zeros(vec.num_agents, np.int64))
    parts = vec.reward_breakdown(0)
    assert list(parts) == COMPONENTS
    assert all(v.shape == (vec.agents_per_env,) and v.dtype == np.float32 for v in parts.values())


@pytest.fixture(scope="module")
def expert_run() -> dict[str, Any]:
    """Three days of the default town under the scripted expert, stepped through VecTown."""
    cfg = load_config(DEFAULT_CONFIG)
    vec = VecTown(cfg, num_envs=1, seed=cfg.seed, episode_ticks=3 * DAY + 1, num_threads=1)
    vec.reset()
    parts, rewards, alive = [], [], []
    for _ in range(3 * DAY):
        actions, logp = vec.expert_actions()
        assert np.isfinite(logp).all()
        _, rew, _, trunc, info = vec.step(actions.copy())
        assert not trunc.any()
        parts.append(breakdown(vec))
        rewards.append(rew.copy())
        alive.append(info["alive"].copy())
    return {
        "parts": np.stack(parts),
        "rewards": np.stack(rewards),
        "alive": np.stack(alive),
        "clip": float(cfg.world.get("rewards", {}).get("clip_per_tick", 4.0)),
    }


def test_breakdown_components_sum_to_the_total(expert_run: dict[str, Any]) -> None:
    parts = expert_run["parts"]
    assert parts.shape == (3 * DAY, 9, len(COMPONENTS))
    assert parts.dtype == np.float32
    summed = np.delete(parts, TOTAL, axis=2).astype(np.float64).sum(axis=2)
    err = np.abs(summed - parts[:, :, TOTAL])
    assert err.max() <= 1e-6, f"worst mismatch {err.max()} at {np.unravel_index(err.argmax(), err.shape)}"
    # The total is what the step returned.
    assert np.array_equal(parts[:, :, TOTAL], expert_run["rewards"])
    # Dead slots carry no reward at all.
    dead = ~expert_run["alive"]
    assert not parts[dead].any()


def test_expert_rewards_are_rarely_at_the_clip_and_carry_signal(expert_run: dict[str, Any]) -> None:
    rewards = expert_run["rewards"][expert_run["alive"]]
    clip = expert_run["clip"]
    assert rewards.size >= 0.9 * 3 * DAY * 9
    assert np.abs(rewards).max() <= clip + 1e-6
    at_clip = np.isclose(np.abs(rewards), clip, rtol=0, atol=1e-6)
    assert at_clip.mean() < 0.05, f"{at_clip.mean():.1%} of live agent-ticks sit at the clip"
    # Not a constant (the prior system's expert always got -0.2).
    assert np.unique(rewards).size > 100
    assert rewards.std() > 1e-4
    parts = expert_run["parts"]
    for name in ("survival", "needs", "wage"):
        assert np.any(parts[:, :, col(name)] != 0), f"{name} never contributed"


def test_wage_component_is_the_weighted_wage_paid_this_tick(tmp_path: Path) -> None:
    weight = 0.5

    def mutate(data: dict[str, Any]) -> None:
        data["rewards"] = {"wage_weight": weight}

    cfg = load_config(write_variant(tmp_path, mutate))
    town = _core.Town(cfg.world_json())
    wage = col("wage")
    earned = np.array([e[4] for e in town.employment()])
    paid_total = town.money_flows()[0]
    paying_ticks = 0
    for _ in range(DAY):
        ids = town.agent_ids()
        town.step(1)
        now = np.array([e[4] for e in town.employment()])
        parts = town.reward_breakdown()
        same = np.array([a == b for a, b in zip(ids, town.agent_ids(), strict=True)]) & town.alive()
        paid = now - earned
        np.testing.assert_allclose(parts[same, wage], weight * paid[same], rtol=1e-5, atol=1e-7)
        paying_ticks += int((paid[same] > 0).any())
        # Globally too: the weighted sum of the wage components is the wages the town paid this tick.
        paid_now = town.money_flows()[0]
        assert parts[:, wage].astype(np.float64).sum() == pytest.approx(weight * (paid_now - paid_total), abs=1e-5)
        paid_total = paid_now
        earned = now
    assert paying_ticks > 300, "the day should include hours of paid work"


def test_work_penalty_is_the_weighted_employment_penalties_charged_this_tick(tmp_path: Path) -> None:
    """Agents that never go to work are charged lateness, late ticks and absence; each tick's `work_penalty` is
    minus `wage_weight` times what was charged (wallets large enough that every penalty is charged in full)."""
    weight = 3.0

    def mutate(data: dict[str, Any]) -> None:
        data["rewards"] = {"wage_weight": weight}
        data["economy"]["starting_wallet"] = 1000.0

    cfg = load_config(write_variant(tmp_path, mutate))
    town = _core.Town(cfg.world_json())
    waits = np.zeros(town.n_agents, np.int64)
    charged_before = town.money_flows()[2]
    charging_ticks = 0
    for _ in range(DAY):
        town.step(1, waits)
        charged = town.money_flows()[2] - charged_before
        charged_before += charged
        parts = town.reward_breakdown()
        assert parts[:, col("work_penalty")].astype(np.float64).sum() == pytest.approx(-weight * charged, abs=1e-5)
        assert (parts[:, col("work_penalty")] <= 0).all()
        charging_ticks += int(charged > 0)
    assert charging_ticks > 20, "absent workers are charged on many ticks"


def fainting_rewards(data: dict[str, Any]) -> None:
    make_fainting(data)
    data["rewards"] = {"faint_penalty": -0.75, "survival_tick": 0.2, "no_positive_within_death_ticks": 5}


def test_fainting_costs_the_penalty_and_earns_nothing_positive(tmp_path: Path) -> None:
    cfg = load_config(write_variant(tmp_path, fainting_rewards))
    vec = VecTown(cfg, num_envs=2, seed=6, episode_ticks=400, num_threads=1)
    vec.reset()
    terminal, total = col("terminal"), TOTAL
    faints = 0
    for _ in range(120):
        _, rew, term, _, _ = vec.step(np.zeros(vec.num_agents, np.int64))
        parts = breakdown(vec)
        faints += int(term.sum())
        assert np.all(parts[term, terminal] == np.float32(-0.75)), "the faint penalty on the termination tick"
        assert np.all(rew[term] <= 0.0), "no positive reward on the termination tick"
        assert np.all(parts[~term, terminal] == 0.0)
        np.testing.assert_array_equal(parts[:, total], rew)
    assert faints >= vec.num_agents


def test_faint_penalty_is_paid_in_full_beyond_the_per_tick_clip(tmp_path: Path) -> None:
    """The per-tick clip bounds the shaped sum; the terminal penalty comes after it, so a faint costs what the config
    says even when that is more than the clip."""

    def mutate(data: dict[str, Any]) -> None:
        make_fainting(data)
        data["rewards"] = {"faint_penalty": -5.0, "clip_per_tick": 2.0}

    vec = VecTown(load_config(write_variant(tmp_path, mutate)), num_envs=1, seed=6, episode_ticks=400, num_threads=1)
    vec.reset()
    faints = 0
    for _ in range(120):
        _, rew, term, _, _ = vec.step(np.zeros(vec.num_agents, np.int64))
        parts = breakdown(vec)
        shaped = parts[:, : col("terminal")].astype(np.float64).sum(axis=1)
        expect = np.minimum(np.clip(shaped, -2.0, 2.0) + parts[:, col("terminal")], 0.0)
        np.testing.assert_allclose(rew[term], expect[term], atol=1e-6)
        assert np.all(rew[term] < -2.0), "beyond the per-tick clip"
        assert np.all(np.abs(rew[~term]) <= 2.0 + 1e-6)
        faints += int(term.sum())
    assert faints > 0


def test_self_sufficiency_bonus_is_paid_exactly_when_every_need_is_above_the_kpi_line(tmp_path: Path) -> None:
    bonus = 0.25

    def mutate(data: dict[str, Any]) -> None:
        data["rewards"] = {"self_sufficiency_bonus": bonus}
        data["needs"]["decay"] = {"hunger": 0.002, "hygiene": 0.001, "energy": 0.0015}

    town = _core.Town(load_config(write_variant(tmp_path, mutate)).world_json())
    paid = unpaid = 0
    for _ in range(DAY // 2):
        town.step(1)
        needs, alive = town.needs(), town.alive()
        ok = alive & (needs > 0.3).all(axis=1)
        got = town.reward_breakdown()[:, col("self_sufficiency")]
        np.testing.assert_array_equal(got, np.where(ok, np.float32(bonus), np.float32(0.0)))
        paid += int(ok.sum())
        unpaid += int((alive & ~ok).sum())
    assert paid > 0 and unpaid > 0, "both cases occur"


def test_post_death_guard_withholds_positive_reward_after_a_respawn(tmp_path: Path) -> None:
    cfg = load_config(write_variant(tmp_path, fainting_rewards))
    vec = VecTown(cfg, num_envs=1, seed=6, episode_ticks=400, num_threads=1)
    vec.reset()
    ctx = feature_column(vec.observation_metadata(), "ctx_reset")
    since_spawn = np.full(vec.num_agents, 10_000)  # first-generation agents are not guarded
    guarded = unguarded_positive = 0
    for _ in range(150):
        obs, rew, _, _, info = vec.step(np.zeros(vec.num_agents, np.int64))
        since_spawn[obs[:, ctx] == 1.0] = 0
        parts = breakdown(vec)
        raw = np.delete(parts, [TOTAL, col("clip_adjustment")], axis=1).sum(axis=1)
        live = info["alive"]
        in_guard = live & (since_spawn < 5)
        assert np.all(rew[in_guard] <= 0.0), "no positive reward within 5 ticks of a respawn"
        guarded += int((in_guard & (raw > 0)).sum())
        unguarded_positive += int((live & (since_spawn >= 5) & (rew > 0)).sum())
        since_spawn += 1
    assert guarded > 0, "the guard actually withheld positive raw rewards"
    assert unguarded_positive > 0, "outside the guard, positive rewards are paid"


def test_per_episode_clip_holds(tmp_path: Path) -> None:
    clip = 0.05

    def mutate(data: dict[str, Any]) -> None:
        data["rewards"] = {"clip_per_tick": 0.02, "clip_per_episode": clip}

    cfg = load_config(write_variant(tmp_path, mutate))
    vec = VecTown(cfg, num_envs=2, seed=3, episode_ticks=250, num_threads=1)
    vec.reset()
    running = np.zeros(vec.num_agents)
    clipped_ticks = 0
    peak = 0.0
    for _ in range(400):
        actions, _ = vec.expert_actions()
        _, rew, _, trunc, info = vec.step(actions.copy())
        running += rew
        assert np.all(np.abs(running) <= clip + 1e-5), np.abs(running).max()
        peak = max(peak, float(np.abs(running).max()))
        clipped_ticks += int((breakdown(vec)[:, col("clip_adjustment")] != 0).sum())
        running[trunc | ~info["alive"]] = 0.0  # a new episode (or life) starts from zero
    assert clipped_ticks > 0, "the clip was reached"
    assert peak == pytest.approx(clip, abs=1e-5)
