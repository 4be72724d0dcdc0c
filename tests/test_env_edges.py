"""The env contract at episode edges (docs/env.md): on truncation the final observation and its action mask both
belong to the ending episode, for `VecTown` (`infos["final_observation"]`, `infos["final_action_mask"]`) and for
`TownEnv` (the truncated agent's `observation` and `action_mask`).

The reference is the same town run with a longer episode: up to the truncation tick both runs are the same, so what
the longer run observes at that tick is what the ending episode's final observation and mask must be.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from conftest import DEFAULT_CONFIG
from envtools import fainting_config
from townlet.sim.env import TownEnv, VecTown

EPISODE = 30


def _choose(rng: np.random.Generator, masks: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """A random valid action per row."""
    return np.array([rng.choice(np.flatnonzero(row)) for row in masks], dtype=np.int64)


@pytest.mark.parametrize("num_envs", [1, 3])
def test_vectown_final_observation_and_mask_belong_to_the_ending_episode(num_envs: int) -> None:
    ending = VecTown(DEFAULT_CONFIG, num_envs=num_envs, seed=7, episode_ticks=EPISODE, num_threads=1)
    longer = VecTown(DEFAULT_CONFIG, num_envs=num_envs, seed=7, episode_ticks=EPISODE + 5, num_threads=1)
    ending.reset(seed=7)
    _, info_ref = longer.reset(seed=7)
    rng = np.random.default_rng(0)
    masks = info_ref["action_mask"].copy()
    for tick in range(1, EPISODE + 1):
        acts = _choose(rng, masks)
        obs, _, _, trunc, info = ending.step(acts)
        ref_obs, _, _, ref_trunc, ref_info = longer.step(acts)
        assert not ref_trunc.any()
        if tick < EPISODE:
            assert not trunc.any()
            np.testing.assert_array_equal(obs, ref_obs)
            np.testing.assert_array_equal(info["action_mask"], ref_info["action_mask"])
        masks = ref_info["action_mask"].copy()
    rows = np.flatnonzero(trunc)
    assert rows.size > 0, "live agents are truncated at episode_ticks"
    np.testing.assert_array_equal(info["final_observation"][rows], ref_obs[rows])
    np.testing.assert_array_equal(info["final_action_mask"][rows], ref_info["action_mask"][rows])
    # The returned observation and mask start the next episode (tick 0 of a fresh town).
    assert all(ending.native.episode(k) == 1 for k in range(num_envs))
    # ... and differs from the ending one here, so pairing the final observation with it would be wrong.
    assert (info["final_action_mask"][rows] != info["action_mask"][rows]).any()
    assert info["final_action_mask"].shape == info["action_mask"].shape
    assert info["final_action_mask"].dtype == np.bool_


def test_townenv_truncated_agents_get_the_ending_episodes_mask() -> None:
    env = TownEnv(DEFAULT_CONFIG, seed=11, episode_ticks=EPISODE)
    longer = VecTown(DEFAULT_CONFIG, num_envs=1, seed=11, episode_ticks=EPISODE + 5, num_threads=1)
    observations, _ = env.reset(seed=11)
    _, ref_info = longer.reset(seed=11)
    rng = np.random.default_rng(1)
    slots = longer.agent_ids(0)
    for _ in range(EPISODE):
        acts = _choose(rng, ref_info["action_mask"])
        live = set(env.agents)
        observations, _, _, truncations, _ = env.step({a: int(acts[i]) for i, a in enumerate(slots) if a in live})
        ref_obs, _, _, _, ref_info = longer.step(np.where([a in live for a in slots], acts, 0))
    truncated = [a for a, t in truncations.items() if t]
    assert truncated, "live agents are truncated at episode_ticks"
    for agent in truncated:
        i = slots.index(agent)
        np.testing.assert_array_equal(observations[agent]["observation"], ref_obs[i])
        np.testing.assert_array_equal(observations[agent]["action_mask"], ref_info["action_mask"][i].astype(np.int8))


# -- termination: the fainting tick ---------------------------------------------------------------------------------


def _fainting_pair(tmp_path: Path, **vec_args: Any) -> tuple[VecTown, VecTown]:
    """The same starving town twice: with mortality (agents faint) and without (they stay, so what the second run
    observes on the fainting tick is the world the fainting agent last saw)."""
    dying = VecTown(fainting_config(tmp_path), seed=3, num_threads=1, **vec_args)
    staying = VecTown(
        fainting_config(tmp_path / "no_mortality", lifecycle={"mortality": False, "respawn_delay_ticks": 2}),
        seed=3,
        num_threads=1,
        **vec_args,
    )
    return dying, staying


def test_vectown_fainting_agent_observes_its_last_tick_not_zeros(tmp_path: Path) -> None:
    (tmp_path / "no_mortality").mkdir()
    dying, staying = _fainting_pair(tmp_path, num_envs=2)
    dying.reset(seed=3)
    staying.reset(seed=3)
    waits = np.zeros(dying.num_agents, np.int64)
    for _ in range(40):
        obs, _, term, _, info = dying.step(waits)
        ref_obs, _, ref_term, _, ref_info = staying.step(waits)
        assert not ref_term.any()
        if term.any():
            break
        np.testing.assert_array_equal(obs, ref_obs)
    rows = np.flatnonzero(term)
    assert rows.size > 0, "agents faint within 40 ticks"
    assert not info["alive"][rows].any(), "a terminated row reads as not alive"
    np.testing.assert_array_equal(obs[rows], ref_obs[rows])
    np.testing.assert_array_equal(info["action_mask"][rows], ref_info["action_mask"][rows])
    np.testing.assert_array_equal(info["final_observation"][rows], ref_obs[rows])
    np.testing.assert_array_equal(info["final_action_mask"][rows], ref_info["action_mask"][rows])
    assert np.abs(obs[rows]).sum(axis=1).min() > 0
    # From the next tick the slot reads as dead: zeros, only `wait` valid.
    obs, _, _, _, info = dying.step(waits)
    assert not obs[rows].any()
    assert info["action_mask"][rows, 0].all() and info["action_mask"][rows].sum() == rows.size


def test_townenv_fainting_agent_gets_its_last_observation(tmp_path: Path) -> None:
    (tmp_path / "no_mortality").mkdir()
    env = TownEnv(fainting_config(tmp_path), seed=3)
    _, staying = _fainting_pair(tmp_path, num_envs=1)
    env.reset(seed=3)
    staying.reset(seed=3)
    slots = staying.agent_ids(0)
    for _ in range(40):
        observations, _, terminations, _, _ = env.step({a: 0 for a in env.agents})
        ref_obs, _, _, _, ref_info = staying.step(np.zeros(staying.num_agents, np.int64))
        fainted = [a for a, t in terminations.items() if t]
        if fainted:
            break
    assert fainted, "agents faint within 40 ticks"
    for agent in fainted:
        i = slots.index(agent)
        np.testing.assert_array_equal(observations[agent]["observation"], ref_obs[i])
        np.testing.assert_array_equal(observations[agent]["action_mask"], ref_info["action_mask"][i].astype(np.int8))
        assert agent not in env.agents
