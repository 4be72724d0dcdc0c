"""`TownEnv` as other libraries need it: it pickles (plain data, rebuilt from its config, seed, options and state) and
it has a fixed-slot mode (stable names, the "black death" convention), both under PettingZoo's own tests."""

from __future__ import annotations

import copy
import multiprocessing
import pickle
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test

from envtools import DEFAULT_CONFIG, fainting_config
from townlet.env import TownEnv
from townlet.sim.config import load_config


def random_actions(obs: dict[str, dict[str, Any]], agents: list[str], rng: np.random.Generator) -> dict[str, int]:
    return {a: int(rng.choice(np.flatnonzero(obs[a]["action_mask"]))) for a in agents}


def run(env: TownEnv, obs: dict[str, dict[str, Any]], steps: int, seed: int) -> list[Any]:
    """`steps` ticks of random valid actions (or until the episode ends): everything the env returned."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        if not env.agents:
            break
        obs, rew, term, trunc, info = env.step(random_actions(obs, env.agents, rng))
        out.append(
            (
                {a: (o["observation"].tobytes(), o["action_mask"].tobytes()) for a, o in obs.items()},
                rew,
                term,
                trunc,
                {
                    a: sorted((k, v.tobytes() if isinstance(v, np.ndarray) else v) for k, v in i.items())
                    for a, i in info.items()
                },
                list(env.agents),
            )
        )
    return out


# -- pickling ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixed", [False, True], ids=["lineage", "fixed_slots"])
def test_an_unpickled_env_steps_like_the_original_from_reset(fixed: bool, tmp_path: Path) -> None:
    cfg = load_config(fainting_config(tmp_path))
    env = TownEnv(cfg, seed=3, episode_ticks=80, fixed_slots=fixed)
    twin = pickle.loads(pickle.dumps(env))
    assert isinstance(twin, TownEnv) and twin.fixed_slots is fixed
    assert twin.possible_agents == env.possible_agents
    a_obs, _ = env.reset(seed=7)
    b_obs, _ = twin.reset(seed=7)
    assert a_obs.keys() == b_obs.keys()
    first, second = run(env, a_obs, 80, seed=1), run(twin, b_obs, 80, seed=1)
    assert len(first) > 40  # (with lineage ids, ticks when everyone is down run inside one step)
    assert first == second


@pytest.mark.parametrize("fixed", [False, True], ids=["lineage", "fixed_slots"])
def test_a_pickled_env_mid_episode_continues_exactly(fixed: bool, tmp_path: Path) -> None:
    """Once reset, the town's state travels too: the copy goes on from the same tick, with the same agents
    (lineage ids included), and so does `copy.deepcopy`."""
    env = TownEnv(fainting_config(tmp_path), seed=5, episode_ticks=120, fixed_slots=fixed)
    obs, _ = env.reset(seed=5)
    run(env, obs, 40, seed=2)
    twin, clone = pickle.loads(pickle.dumps(env)), copy.deepcopy(env)
    assert twin.agents == clone.agents == env.agents
    assert twin.possible_agents == env.possible_agents
    if not fixed:
        assert any("#" in a for a in env.possible_agents), "respawns before the copy (the state carries them)"
    # The same actions for the same live agents: every copy returns the same ticks.
    dummy = {a: {"action_mask": np.ones(env._vec.n_actions, np.int8)} for a in env.possible_agents}
    acts = [run(e, dict(dummy), 60, seed=3) for e in (env, twin, clone)]
    assert acts[0] == acts[1] == acts[2]


def continue_run(data: bytes) -> list[Any]:
    """Unpickle an env and run it on (in a child process)."""
    env = pickle.loads(data)
    dummy = {a: {"action_mask": np.ones(env._vec.n_actions, np.int8)} for a in env.possible_agents}
    return run(env, dummy, 40, seed=3)


def test_a_pickled_env_continues_the_same_in_another_process(tmp_path: Path) -> None:
    """What multiprocessing vector envs do: the env travels to a fresh (spawned) process and steps there exactly as
    it does here."""
    env = TownEnv(fainting_config(tmp_path), seed=6, episode_ticks=100, fixed_slots=True)
    obs, _ = env.reset(seed=6)
    run(env, obs, 25, seed=4)
    data = pickle.dumps(env)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        there = pool.submit(continue_run, data).result(timeout=120)
    assert there == continue_run(data) == continue_run(pickle.dumps(env))


def test_the_pickle_holds_plain_data_only() -> None:
    env = TownEnv(DEFAULT_CONFIG, seed=1, fixed_slots=True)
    env.reset(seed=1)
    data = pickle.dumps(env)
    assert b"townlet._core" not in data, "no native handle in the pickle"
    assert b"_rebuild_town_env" in data


# -- fixed slots ---------------------------------------------------------------------------------------------------


def test_fixed_slots_keep_names_and_read_dead_while_an_agent_is_down(tmp_path: Path) -> None:
    env = TownEnv(fainting_config(tmp_path), episode_ticks=120, fixed_slots=True)
    names = list(env.possible_agents)
    obs, infos = env.reset(seed=4)
    assert env.agents == names and set(obs) == set(names)
    assert all(infos[a]["alive"] for a in names)
    rng = np.random.default_rng(0)
    downs = dead_ticks = respawns = 0
    was_dead: set[str] = set()
    trunc: dict[str, bool] = {}
    for tick in range(1, 121):
        obs, rew, term, trunc, info = env.step(random_actions(obs, env.agents, rng))
        assert env.possible_agents == names, "the agent list never grows"
        assert set(obs) == set(rew) == set(term) == set(trunc) == set(info) == set(names)
        assert not any(term.values()), "nobody terminates with fixed slots"
        if tick < 120:
            assert env.agents == names and not any(trunc.values())
        for a in names:
            assert info[a]["slot"] == names.index(a)
            downs += info[a]["down"]
            if info[a]["down"]:
                assert not info[a]["alive"]
                last = info[a]["final_observation"]
                assert last.shape == (env._vec.obs_dim,) and last.any(), "the real last observation, as it went down"
            else:
                assert "final_observation" not in info[a]
            if not info[a]["alive"] and not trunc[a]:
                assert not obs[a]["observation"].any(), "an empty slot sees zeros"
                assert obs[a]["action_mask"].tolist() == [1] + [0] * (env._vec.n_actions - 1), "only wait"
                if not info[a]["down"]:
                    dead_ticks += 1
                    assert rew[a] == 0.0
                was_dead.add(a)
            elif info[a]["alive"] and a in was_dead:
                was_dead.discard(a)
                respawns += 1
                assert info[a]["agent_id"].startswith(a + "#"), info[a]["agent_id"]
                assert obs[a]["observation"].any()
    assert all(trunc.values()) and env.agents == [], "the day's end truncates every slot"
    assert downs > 0 and dead_ticks > 0 and respawns > 0, (downs, dead_ticks, respawns)


@pytest.mark.parametrize("fainting", [False, True], ids=["default", "fainting"])
def test_pettingzoo_api_tests_pass_with_fixed_slots(fainting: bool, tmp_path: Path) -> None:
    path = fainting_config(tmp_path) if fainting else DEFAULT_CONFIG
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parallel_api_test(TownEnv(path, episode_ticks=300, fixed_slots=True), num_cycles=1000)
        parallel_seed_test(lambda: TownEnv(path, fixed_slots=True))
