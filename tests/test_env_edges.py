"""The env contract at episode edges (docs/env.md): on truncation the final observation and its action mask both
belong to the ending episode, for `VecTown` (`infos["final_observation"]`, `infos["final_action_mask"]`) and for
`TownEnv` (the truncated agent's `observation` and `action_mask`).

The reference is the same town run with a longer episode: up to the truncation tick both runs are the same, so what
the longer run observes at that tick is what the ending episode's final observation and mask must be.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from conftest import DEFAULT_CONFIG
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
