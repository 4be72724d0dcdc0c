"""`TownEnv` as a PettingZoo ParallelEnv: the official API and seed tests on every shipped config, the
agent removal / respawn rules, observation and mask dicts, bad input, and the end of an episode."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test

from envtools import ALL_CONFIGS, DEFAULT_CONFIG, REPO_ROOT, fainting_config, feature_column, write_variant
from townlet.sim.config import load_config
from townlet.sim.env import TownEnv

CONFIG_IDS = [str(p.relative_to(REPO_ROOT)) for p in ALL_CONFIGS]


def sample_actions(env: TownEnv, obs: dict[str, dict[str, Any]], rng: np.random.Generator) -> dict[str, int]:
    """A uniformly random valid action for every live agent."""
    out = {}
    for agent in env.agents:
        valid = np.flatnonzero(obs[agent]["action_mask"])
        out[agent] = int(rng.choice(valid))
    return out


def check_agent_obs(env: TownEnv, agent: str, entry: dict[str, Any]) -> None:
    assert set(entry) == {"observation", "action_mask"}
    vec, mask = entry["observation"], entry["action_mask"]
    assert isinstance(vec, np.ndarray)
    assert vec.dtype == np.float32
    assert vec.shape == (env._vec.obs_dim,)
    assert np.isfinite(vec).all()
    assert vec.min() >= -1.0 and vec.max() <= 1.0, (agent, vec.min(), vec.max())
    assert mask.dtype == np.int8
    assert mask.shape == (env._vec.n_actions,)
    assert set(np.unique(mask)) <= {0, 1}
    assert mask[0] == 1, f"wait must always be valid ({agent})"
    assert env.observation_space(agent).contains(entry), agent


# -- the official PettingZoo tests, on every shipped config ----------------------------------------------


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=CONFIG_IDS)
def test_pettingzoo_parallel_api_test(path: Path) -> None:
    cfg = load_config(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parallel_api_test(TownEnv(cfg), num_cycles=1000)


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=CONFIG_IDS)
def test_pettingzoo_parallel_seed_test(path: Path) -> None:
    cfg = load_config(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parallel_seed_test(lambda: TownEnv(cfg))


def test_pettingzoo_api_test_with_fainting_and_respawns(tmp_path: Path) -> None:
    """The API test also holds while agents keep fainting and respawning under new ids."""
    env = TownEnv(fainting_config(tmp_path), episode_ticks=300)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parallel_api_test(env, num_cycles=1000)
    # The test really saw lineage ids join (possible_agents lists every id of the last episode).
    assert any("#" in a for a in env.possible_agents), env.possible_agents


# PettingZoo's parallel_seed_test stops after one step (it tests `any()` over the dict's keys), so check
# multi-step determinism here as well.
@pytest.mark.parametrize("path", [DEFAULT_CONFIG, REPO_ROOT / "configs/scenarios/queue_conflict.yaml"])
def test_same_seed_same_episode_over_many_steps(path: Path) -> None:
    cfg = load_config(path)
    runs = []
    for _ in range(2):
        env = TownEnv(cfg, episode_ticks=120)
        rng = np.random.default_rng(7)
        obs, _ = env.reset(seed=123)
        trace: list[Any] = [obs]
        while env.agents:
            step = env.step(sample_actions(env, obs, rng))
            obs = step[0]
            trace.append(step)
        runs.append(trace)
    assert len(runs[0]) == len(runs[1]) > 50
    for a, b in zip(runs[0], runs[1], strict=True):
        assert repr_tree(a) == repr_tree(b)


def test_different_seeds_give_different_episodes() -> None:
    cfg = load_config(DEFAULT_CONFIG)
    finals = []
    for seed in (1, 2):
        env = TownEnv(cfg, episode_ticks=100)
        rng = np.random.default_rng(7)
        obs, _ = env.reset(seed=seed)
        digest = []
        while env.agents:
            obs, rew, *_ = env.step(sample_actions(env, obs, rng))
            digest.append(repr_tree((obs, rew)))
        finals.append(digest)
    assert finals[0] != finals[1]


def repr_tree(x: Any) -> Any:
    """Nested dicts / tuples of arrays as comparable plain data (bytes for arrays)."""
    if isinstance(x, dict):
        return {k: repr_tree(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [repr_tree(v) for v in x]
    if isinstance(x, np.ndarray):
        return (x.dtype.str, x.shape, x.tobytes())
    return x


# -- spaces and observation dicts -------------------------------------------------------------------------


def test_spaces_are_the_same_objects_and_describe_the_observations() -> None:
    env = TownEnv(load_config(DEFAULT_CONFIG))
    obs, infos = env.reset(seed=0)
    assert env.agents == env.possible_agents
    assert set(obs) == set(infos) == set(env.agents)
    for agent in env.possible_agents:
        assert env.observation_space(agent) is env.observation_space(agent)
        assert env.action_space(agent) is env.action_space(agent)
        assert env.observation_spaces[agent] is env.observation_space(agent)
        assert env.action_spaces[agent] is env.action_space(agent)
    space = env.observation_space("alice")
    assert space["observation"].shape == (env._vec.obs_dim,)
    assert space["observation"].dtype == np.float32
    assert space["action_mask"].dtype == np.int8
    assert env.action_space("alice").n == len(env.observation_metadata()["action_names"])
    for agent, entry in obs.items():
        check_agent_obs(env, agent, entry)


@pytest.mark.parametrize("variant", ["hybrid", "full", "compact"])
def test_observation_dicts_stay_in_range_with_masks_over_a_random_run(variant: str, tmp_path: Path) -> None:
    path = write_variant(tmp_path, lambda d: d.update(observations={"variant": variant}))
    env = TownEnv(path, episode_ticks=150)
    rng = np.random.default_rng(3)
    obs, _ = env.reset(seed=11)
    checked = 0
    while env.agents:
        actions = sample_actions(env, obs, rng)
        obs, rew, term, trunc, info = env.step(actions)
        assert set(obs) == set(rew) == set(term) == set(trunc) == set(info)
        for agent, entry in obs.items():
            check_agent_obs(env, agent, entry)
            assert isinstance(rew[agent], float)
            checked += 1
        # The observation is a copy, not a view of the env's buffers.
        some = next(iter(obs.values()))["observation"]
        assert some.base is None or not np.shares_memory(some, env._vec._obs)
    assert checked >= 150 * 9 * 0.9


# -- removal and respawn ------------------------------------------------------------------------------------


def test_terminated_agents_never_return_and_respawns_join_under_lineage_ids(tmp_path: Path) -> None:
    env = TownEnv(fainting_config(tmp_path), episode_ticks=120)
    originals = list(env.possible_agents)
    meta = env.observation_metadata()
    ctx = feature_column(meta, "ctx_reset")
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=4)
    finished: set[str] = set()
    respawned: list[str] = []
    steps = 0
    while env.agents:
        before = set(env.agents)
        obs, rew, term, trunc, info = env.step(sample_actions(env, obs, rng))
        steps += 1
        # Every agent live before the step reports, and so does every newcomer; nobody else.
        newcomers = set(env.agents) - before
        assert set(obs) == before | newcomers
        assert set(rew) == set(term) == set(trunc) == set(info) == set(obs)
        for agent in before:
            if term[agent] or trunc[agent]:
                finished.add(agent)
                assert agent not in env.agents
        assert not finished & set(env.agents), "a terminated or truncated id came back"
        for agent in newcomers:
            base, _, gen = agent.partition("#")
            assert base in originals and gen.isdigit() and int(gen) >= 2, agent
            assert agent in env.possible_agents
            assert term[agent] is False and trunc[agent] is False
            assert rew[agent] == 0.0
            assert info[agent].get("respawned") is True
            check_agent_obs(env, agent, obs[agent])
            assert obs[agent]["observation"][ctx] == 1.0, "a respawned agent sees ctx_reset"
            assert env.observation_space(agent) is env.observation_space(agent)
            respawned.append(agent)
        for agent in env.agents:
            if agent not in newcomers:
                assert obs[agent]["observation"][ctx] == 0.0
    assert "alice#2" in respawned, respawned
    # Every agent of the original population terminated at least once (they all starve here).
    assert set(originals) <= finished
    assert len(set(respawned)) == len(respawned)
    # The whole episode ran (to its truncation), not stopping early when everyone was down at once.
    assert env._vec.native.episode(0) == 1
    assert 0 < steps <= 120


def test_everyone_down_at_once_does_not_end_the_episode(tmp_path: Path) -> None:
    """All agents faint on (nearly) the same tick; the episode goes on with the respawned ids."""
    env = TownEnv(fainting_config(tmp_path), episode_ticks=60)
    env.reset(seed=1)
    saw_all_down = False
    while env.agents:
        before = list(env.agents)
        _, _, term, trunc, _ = env.step(dict.fromkeys(env.agents, 0))
        if all(term[a] for a in before):
            saw_all_down = True
            assert env.agents, "everyone fainted, but respawns are due before the episode ends"
        if any(trunc.values()):
            assert all(trunc.values())
    assert saw_all_down
    assert any(re.fullmatch(r"\w+#[3-9]", a) for a in env.possible_agents), env.possible_agents
    assert env._vec.native.episode(0) == 1, "the episode ended before episode_ticks"


def test_reset_restores_the_original_population(tmp_path: Path) -> None:
    env = TownEnv(fainting_config(tmp_path), episode_ticks=50)
    originals = list(env.possible_agents)
    env.reset(seed=0)
    while env.agents:
        env.step(dict.fromkeys(env.agents, 0))
    assert len(env.possible_agents) > len(originals)
    obs, _ = env.reset(seed=0)
    assert env.agents == originals == env.possible_agents
    assert set(obs) == set(originals)


# -- bad input -------------------------------------------------------------------------------------------------


def test_unknown_agent_id_is_a_clear_error() -> None:
    env = TownEnv(load_config(DEFAULT_CONFIG))
    env.reset(seed=0)
    with pytest.raises(KeyError, match="'zed' is not a live agent"):
        env.step({"zed": 0})
    with pytest.raises(KeyError, match="alice#2"):
        env.step({"alice#2": 0})


@pytest.mark.parametrize("offset", [-1, 0, 10_000])
def test_out_of_range_action_is_a_clear_error(offset: int) -> None:
    env = TownEnv(load_config(DEFAULT_CONFIG))
    env.reset(seed=0)
    n = int(env.action_space("alice").n)
    assert n == len(env.observation_metadata()["action_names"])
    action = -1 if offset < 0 else n + offset
    with pytest.raises(ValueError, match=rf"action {action} for 'alice' is outside \[0, {n}\)"):
        env.step({"alice": action})


@pytest.mark.parametrize("action", [1.5, 2.0, "3", True, np.array([1, 2])])
def test_non_integer_action_is_a_clear_error(action: Any) -> None:
    env = TownEnv(load_config(DEFAULT_CONFIG))
    env.reset(seed=0)
    with pytest.raises(TypeError, match="'alice' must be an integer"):
        env.step({"alice": action})


def test_numpy_integer_actions_are_accepted() -> None:
    env = TownEnv(load_config(DEFAULT_CONFIG))
    env.reset(seed=0)
    obs, *_ = env.step({"alice": np.int64(0), "bob": np.array(0, dtype=np.int32), "cara": 0})
    assert set(obs) == set(env.possible_agents)


def test_step_without_live_agents_asks_for_reset() -> None:
    env = TownEnv(load_config(DEFAULT_CONFIG))
    with pytest.raises(RuntimeError, match="reset"):
        env.step({})


# -- the end of an episode -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [DEFAULT_CONFIG, REPO_ROOT / "configs/scenarios/kitchen_breakfast.yaml"])
def test_last_tick_truncates_every_agent_and_empties_agents(path: Path) -> None:
    cfg = load_config(path)
    ticks = 40
    env = TownEnv(cfg, episode_ticks=ticks)
    rng = np.random.default_rng(1)
    obs, _ = env.reset(seed=5)
    for step in range(1, ticks + 1):
        live = list(env.agents)
        obs, rew, term, trunc, info = env.step(sample_actions(env, obs, rng))
        assert set(rew) == set(info) == set(live)
        if step < ticks:
            assert not any(trunc.values())
            assert env.agents == live
        else:
            assert set(trunc) == set(live)
            assert all(trunc.values())
            assert not any(term.values())
            assert env.agents == []
            for agent in live:
                check_agent_obs(env, agent, obs[agent])
    # The truncation observation is the last one of the old episode (time and progress moved on).
    meta = env.observation_metadata()
    progress = feature_column(meta, "episode_progress")
    tpd = int(cfg.world["world"].get("ticks_per_day", 1440))
    for entry in obs.values():
        assert entry["observation"][progress] == pytest.approx(ticks / tpd, abs=1e-6)
    with pytest.raises(RuntimeError, match="reset"):
        env.step({})


def test_render_ansi_and_state() -> None:
    env = TownEnv(load_config(DEFAULT_CONFIG), render_mode="ansi")
    env.reset(seed=0)
    text = env.render()
    assert isinstance(text, str) and "alice" in text
    state = env.state()
    assert state.shape == (env._vec.num_agents * env._vec.obs_dim,)
    with pytest.raises(ValueError, match="render_mode"):
        TownEnv(load_config(DEFAULT_CONFIG), render_mode="human")
