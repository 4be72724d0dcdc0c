"""`VecTown`: Gymnasium vector naming, shapes and dtypes, determinism across thread counts, the same-step
autoreset and `final_observation` contract, dead slots and respawns, invalid and bad actions, zero-copy
buffers, and the scripted expert."""

from __future__ import annotations

import json
import math
from pathlib import Path

import gymnasium
import numpy as np
import numpy.typing as npt
import pytest

from envtools import DEFAULT_CONFIG, fainting_config, feature_column, random_valid_actions, write_variant
from townlet.errors import ConfigError
from townlet.sim.config import TownConfig, load_config
from townlet.sim.env import VecTown

N_AGENTS = 9  # the default town
N_ACTIONS = len(load_config(DEFAULT_CONFIG).action_names())  # 16 with the core manifest
N = 2 * N_AGENTS  # the bad-action tests step two towns


@pytest.fixture(scope="module")
def cfg() -> TownConfig:
    return load_config(DEFAULT_CONFIG)


def step_outputs(vec: VecTown, actions: npt.NDArray[np.int64]) -> dict[str, np.ndarray]:
    obs, rew, term, trunc, info = vec.step(actions)
    return {
        "obs": obs.copy(),
        "rewards": rew.copy(),
        "terminated": term.copy(),
        "truncated": trunc.copy(),
        "masks": vec.action_masks().copy(),
        "alive": info["alive"].copy(),
        "invalid": info["invalid_action"].copy(),
        "final": info["final_observation"].copy(),
    }


# -- naming, shapes and dtypes --------------------------------------------------------------------------------


def test_gymnasium_vector_naming_shapes_and_dtypes(cfg: TownConfig) -> None:
    vec = VecTown(cfg, num_envs=3, seed=1, num_threads=1)
    assert vec.num_envs == 3
    assert vec.agents_per_env == N_AGENTS
    assert vec.num_agents == 3 * N_AGENTS
    meta = vec.observation_metadata()
    c, h, w = meta["map_shape"]
    assert vec.obs_dim == c * h * w + len(meta["feature_names"]) == meta["obs_dim"]
    assert vec.n_actions == N_ACTIONS == len(meta["action_names"])

    space = vec.single_observation_space
    assert isinstance(space, gymnasium.spaces.Box)
    assert space.shape == (vec.obs_dim,) and space.dtype == np.float32
    assert space.low.min() == -1.0 and space.high.max() == 1.0
    assert isinstance(vec.single_action_space, gymnasium.spaces.Discrete)
    assert vec.single_action_space.n == N_ACTIONS
    assert vec.observation_space.shape == (vec.num_agents, vec.obs_dim)
    assert isinstance(vec.action_space, gymnasium.spaces.MultiDiscrete)
    assert vec.action_space.shape == (vec.num_agents,)

    with pytest.raises(RuntimeError, match="reset"):
        vec.step(np.zeros(vec.num_agents, np.int64))

    result = vec.reset(seed=7)
    assert isinstance(result, tuple) and len(result) == 2
    obs, infos = result
    assert isinstance(infos, dict)
    assert obs.shape == (vec.num_agents, vec.obs_dim) and obs.dtype == np.float32
    assert space.contains(obs[0])
    assert infos["alive"].shape == (vec.num_agents,) and infos["alive"].all()
    masks = vec.action_masks()
    assert masks.shape == (vec.num_agents, N_ACTIONS) and masks.dtype == np.bool_
    assert infos["action_mask"] is masks
    assert masks[:, 0].all()

    obs, rew, term, trunc, info = vec.step(np.zeros(vec.num_agents, np.int64))
    assert obs.shape == (vec.num_agents, vec.obs_dim) and obs.dtype == np.float32
    for arr, dtype in ((rew, np.float32), (term, np.bool_), (trunc, np.bool_)):
        assert arr.shape == (vec.num_agents,) and arr.dtype == dtype
    assert set(info) >= {"alive", "invalid_action", "final_observation", "action_mask"}
    assert info["final_observation"].shape == obs.shape and info["final_observation"].dtype == np.float32
    assert info["invalid_action"].dtype == np.bool_
    assert np.abs(obs).max() <= 1.0


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [({"num_envs": 0}, "num_envs"), ({"num_threads": -1}, "num_threads"), ({"episode_ticks": -5}, "episode_ticks")],
)
def test_constructor_rejects_bad_arguments(cfg: TownConfig, kwargs: dict[str, int], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        VecTown(cfg, **kwargs)


def test_unknown_observation_variant_is_a_config_error(tmp_path: Path) -> None:
    path = write_variant(tmp_path, lambda d: d.update(observations={"variant": "fancy"}))
    with pytest.raises(ConfigError, match=r"observations\.variant") as err:
        VecTown(path)
    assert err.value.key == "observations.variant"
    assert "fancy" in str(err.value)
    assert str(path) in str(err.value)


# -- determinism ----------------------------------------------------------------------------------------------


def run_random(cfg: TownConfig, seed: int, threads: int, steps: int = 200) -> list[dict[str, np.ndarray]]:
    vec = VecTown(cfg, num_envs=3, num_threads=threads, episode_ticks=150)
    obs, _ = vec.reset(seed=seed)
    out = [{"obs": obs.copy(), "masks": vec.action_masks().copy()}]
    rng = np.random.default_rng(99)
    for _ in range(steps):
        out.append(step_outputs(vec, random_valid_actions(rng, vec.action_masks())))
    return out


def test_same_seed_is_byte_identical_across_thread_counts(cfg: TownConfig) -> None:
    runs = {threads: run_random(cfg, 1234, threads) for threads in (1, 2, 0)}
    base = runs[1]
    assert any(s["truncated"].any() for s in base[1:]), "the run should cross an autoreset"
    for threads in (2, 0):
        other = runs[threads]
        assert len(other) == len(base)
        for t, (a, b) in enumerate(zip(base, other, strict=True)):
            assert a.keys() == b.keys()
            for key in a:
                assert a[key].tobytes() == b[key].tobytes(), f"threads={threads} step {t}: {key} differs"


def test_different_seeds_differ(cfg: TownConfig) -> None:
    a = run_random(cfg, 1, 1, steps=60)
    b = run_random(cfg, 2, 1, steps=60)
    differing = [t for t in range(len(a)) if a[t]["obs"].tobytes() != b[t]["obs"].tobytes()]
    assert differing, "two seeds gave the same 60-step trajectory"


def test_reset_without_seed_continues_the_run_reproducibly(cfg: TownConfig) -> None:
    def two_episodes() -> list[bytes]:
        vec = VecTown(cfg, num_envs=2, seed=5, num_threads=1)
        rng = np.random.default_rng(0)
        out = []
        for _ in range(2):
            obs, _ = vec.reset()
            out.append(obs.tobytes())
            for _ in range(30):
                obs, *_ = vec.step(random_valid_actions(rng, vec.action_masks()))
            out.append(obs.tobytes())
        return out

    assert two_episodes() == two_episodes()


# -- autoreset ------------------------------------------------------------------------------------------------


def test_autoreset_truncates_and_keeps_the_final_observation(cfg: TownConfig) -> None:
    k = 50
    tpd = int(cfg.world["world"]["ticks_per_day"])
    vec = VecTown(cfg, num_envs=2, seed=3, episode_ticks=k, num_threads=1)
    # The same towns without the episode limit show what the town looked like at tick k.
    ref = VecTown(cfg, num_envs=2, seed=3, episode_ticks=10 * k, num_threads=1)
    vec.reset(seed=3)
    ref.reset(seed=3)
    meta = vec.observation_metadata()
    col = {name: feature_column(meta, name) for name in ("episode_progress", "time_sin", "time_cos", "need_hunger")}
    rng = np.random.default_rng(5)
    for t in range(1, k + 1):
        actions = random_valid_actions(rng, vec.action_masks())
        assert np.array_equal(vec.action_masks(), ref.action_masks())
        obs, rew, term, trunc, info = vec.step(actions)
        r_obs, r_rew, r_term, r_trunc, _ = ref.step(actions)
        assert not r_trunc.any()
        assert np.array_equal(term, r_term)
        if t < k:
            assert not trunc.any(), f"truncated early at step {t}"
            assert np.array_equal(obs, r_obs)
            continue
        assert trunc.all(), "every live agent is truncated at episode_ticks"
        assert not term.any()
        final = info["final_observation"]
        # The final observations are the old episode's last ones; the returned ones start a new episode.
        assert np.array_equal(final, r_obs)
        assert np.array_equal(rew, r_rew)
        assert not np.array_equal(final, obs)
        assert (np.abs(final - obs).sum(axis=1) > 0).all(), "each truncated row differs from its new observation"
        np.testing.assert_allclose(final[:, col["episode_progress"]], k / tpd, atol=1e-6)
        np.testing.assert_allclose(final[:, col["time_sin"]], math.sin(2 * math.pi * k / tpd), atol=1e-5)
        np.testing.assert_allclose(final[:, col["time_cos"]], math.cos(2 * math.pi * k / tpd), atol=1e-5)
        assert np.all(obs[:, col["episode_progress"]] <= 1e-6), "the new episode starts at progress 0"
        np.testing.assert_allclose(obs[:, col["time_sin"]], 0.0, atol=1e-6)
        np.testing.assert_allclose(obs[:, col["time_cos"]], 1.0, atol=1e-6)
        initial_hunger = float(cfg.world["needs"]["initial"]["hunger"])
        np.testing.assert_allclose(obs[:, col["need_hunger"]], initial_hunger, atol=1e-6)
        assert info["alive"].all()
        assert vec.action_masks()[:, 0].all()
        assert [vec.native.town_tick(e) for e in range(2)] == [0, 0]
        assert [vec.native.episode(e) for e in range(2)] == [1, 1]
    # The next episode runs on: no truncation for another k - 1 steps.
    for _ in range(k - 1):
        _, _, _, trunc, _ = vec.step(np.zeros(vec.num_agents, np.int64))
        assert not trunc.any()
    _, _, _, trunc, _ = vec.step(np.zeros(vec.num_agents, np.int64))
    assert trunc.all()
    assert [vec.native.episode(e) for e in range(2)] == [2, 2]


def test_autoreset_episodes_differ_from_each_other(cfg: TownConfig) -> None:
    """Each episode of a town gets its own random streams (the expert acts on them)."""
    vec = VecTown(cfg, num_envs=1, seed=3, episode_ticks=400, num_threads=1)
    vec.reset()
    hashes = []
    for _ in range(2):
        for _ in range(399):
            vec.step(vec.expert_actions()[0].copy())
        hashes.append(vec.native.world_hash(0))
        vec.step(vec.expert_actions()[0].copy())
    assert hashes[0] != hashes[1]


# -- terminations, dead slots, respawn --------------------------------------------------------------------------


def test_terminations_dead_slots_and_respawn_in_the_same_slot(tmp_path: Path) -> None:
    vec = VecTown(fainting_config(tmp_path), num_envs=2, seed=8, episode_ticks=200, num_threads=1)
    vec.reset()
    meta = vec.observation_metadata()
    ctx = feature_column(meta, "ctx_reset")
    ids0 = [vec.agent_ids(e) for e in range(2)]
    m = vec.agents_per_env
    generation = np.ones(vec.num_agents, int)
    rng = np.random.default_rng(2)
    dead_since: dict[int, int] = {}
    terminations = respawns = dead_ticks = 0
    prev_alive = np.ones(vec.num_agents, bool)
    for t in range(1, 120):
        # Dead slots get arbitrary actions: they are ignored and not flagged.
        actions = np.where(prev_alive, 0, rng.integers(0, vec.n_actions, vec.num_agents))
        obs, rew, term, trunc, info = vec.step(actions)
        alive = info["alive"]
        assert not info["invalid_action"][~prev_alive].any()
        masks = vec.action_masks()
        assert not trunc.any()
        for i in np.flatnonzero(term):
            terminations += 1
            assert prev_alive[i], "only a live agent terminates"
            assert not alive[i], "a terminated agent's slot reads as dead"
            assert rew[i] < 0, "fainting costs the faint penalty"
            dead_since[int(i)] = t
        for i in np.flatnonzero(~alive & ~term):
            dead_ticks += 1
            assert not obs[i].any(), "a dead slot's observation is all zeros"
            assert masks[i, 0] and not masks[i, 1:].any(), "only wait is valid in a dead slot"
            assert rew[i] == 0.0
        for i in np.flatnonzero(alive & ~prev_alive):
            respawns += 1
            assert obs[i, ctx] == 1.0, "ctx_reset is set on the respawn step"
            env, slot = divmod(int(i), m)
            name = vec.agent_ids(env)[slot]
            generation[i] += 1
            assert name == f"{ids0[env][slot]}#{generation[i]}", "the slot is reused under the next lineage id"
            assert t > dead_since.pop(int(i))
        for i in np.flatnonzero(alive & prev_alive):
            assert obs[i, ctx] == 0.0
        assert np.array_equal(vec.native.ctx_reset(0), obs[:m, ctx] == 1.0)
        prev_alive = alive.copy()
    assert terminations >= vec.num_agents and respawns >= vec.num_agents and dead_ticks > 0
    assert (generation >= 3).all(), generation


def test_terminated_agent_is_not_truncated_at_the_episode_end(tmp_path: Path) -> None:
    # Most agents faint on tick 17, the stoic ones a tick later: the last tick holds both kinds.
    vec = VecTown(fainting_config(tmp_path), num_envs=1, seed=8, episode_ticks=17, num_threads=1)
    vec.reset()
    for _ in range(17):
        _, _, term, trunc, info = vec.step(np.zeros(vec.num_agents, np.int64))
    final = info["final_observation"]
    assert term.any() and trunc.any()
    assert not (term & trunc).any(), "an agent is terminated or truncated, never both"
    assert np.array_equal(trunc, ~term), "exactly the agents not fainting on the last tick are truncated"
    assert (np.abs(final).sum(axis=1) > 0).all(), "terminated and truncated rows both hold their last observation"
    assert info["alive"].all(), "the new episode starts with everyone alive"


# -- invalid and bad actions ------------------------------------------------------------------------------------


def test_masked_actions_are_applied_as_wait_and_flagged(cfg: TownConfig) -> None:
    a = VecTown(cfg, num_envs=2, seed=21, num_threads=1)
    b = VecTown(cfg, num_envs=2, seed=21, num_threads=1)
    a.reset()
    b.reset()
    meta = a.observation_metadata()
    skip = [feature_column(meta, "last_action"), feature_column(meta, "last_action_ok")]
    keep = np.ones(a.obs_dim, bool)
    keep[skip] = False
    rng = np.random.default_rng(4)
    flagged = 0
    for _ in range(60):
        masks = a.action_masks()
        assert np.array_equal(masks, b.action_masks())
        acts = random_valid_actions(rng, masks)
        bad = acts.copy()
        chosen = rng.random(a.num_agents) < 0.3
        for i in np.flatnonzero(chosen):
            invalid = np.flatnonzero(~masks[i])
            if invalid.size:
                bad[i] = rng.choice(invalid)
                acts[i] = 0  # the twin waits instead
        sent = bad != acts
        oa, ra, _, _, ia = a.step(bad)
        ob, rb, _, _, ib = b.step(acts)
        assert ia["invalid_action"][sent].all(), "a masked action is flagged"
        assert not ib["invalid_action"][sent].any()
        flagged += int(sent.sum())
        # Apart from which action was recorded, the masked action did exactly what wait does.
        assert np.array_equal(oa[:, keep], ob[:, keep])
        assert np.array_equal(ra, rb)
        assert np.array_equal(a.action_masks(), b.action_masks())
    assert flagged > 30


@pytest.mark.parametrize(
    ("actions", "error", "fragment"),
    [
        (np.zeros(3, np.int64), ValueError, rf"actions must have shape \({N},\), got \(3,\)"),
        (np.zeros((2, N_AGENTS), np.int64), ValueError, rf"actions must have shape \({N},\), got \(2, {N_AGENTS}\)"),
        (np.zeros(N, np.float32), TypeError, "actions must be integers, got dtype float32"),
        (np.zeros(N, np.float64), TypeError, "actions must be integers"),
        (np.zeros(N, np.bool_), TypeError, "actions must be integers"),
        (np.full(N, N_ACTIONS, np.int64), ValueError, rf"action {N_ACTIONS} is outside \[0, {N_ACTIONS}\)"),
        (np.full(N, -1, np.int64), ValueError, rf"action -1 is outside \[0, {N_ACTIONS}\)"),
    ],
)
def test_bad_actions_are_clear_errors(
    cfg: TownConfig, actions: np.ndarray, error: type[Exception], fragment: str
) -> None:
    vec = VecTown(cfg, num_envs=2, seed=1, num_threads=1)
    obs, _ = vec.reset()
    before = obs.copy()
    with pytest.raises(error, match=fragment):
        vec.step(actions)
    assert np.array_equal(vec._obs, before), "a rejected step changes nothing"
    assert [vec.native.town_tick(e) for e in range(2)] == [0, 0]


def test_other_integer_dtypes_are_accepted(cfg: TownConfig) -> None:
    vec = VecTown(cfg, num_envs=1, seed=1, num_threads=1)
    vec.reset()
    for dtype in (np.int32, np.uint8, np.int16):
        vec.step(np.zeros(vec.num_agents, dtype))
    vec.step([0] * vec.num_agents)
    assert vec.native.town_tick(0) == 4


# -- zero copies ---------------------------------------------------------------------------------------------------


def test_returned_arrays_are_the_same_objects_every_step(cfg: TownConfig) -> None:
    vec = VecTown(cfg, num_envs=2, seed=1, num_threads=2)
    obs0, info0 = vec.reset()
    masks0 = vec.action_masks()
    first = vec.step(np.zeros(vec.num_agents, np.int64))
    acts0, logp0 = vec.expert_actions()
    for _ in range(5):
        obs, rew, term, trunc, info = vec.step(np.zeros(vec.num_agents, np.int64))
        assert obs is obs0 is first[0]
        assert rew is first[1] and term is first[2] and trunc is first[3]
        for key in ("alive", "invalid_action", "final_observation", "action_mask"):
            assert info[key] is first[4][key], key
        assert info["action_mask"] is masks0 is vec.action_masks()
        assert info["alive"] is info0["alive"]
        acts, logp = vec.expert_actions()
        assert acts is acts0 and logp is logp0
    # A kept reference sees the next step's data (so callers must copy what they keep).
    snapshot = obs0.copy()
    vec.step(np.full(vec.num_agents, 3, np.int64) * vec.action_masks()[:, 3])
    assert not np.array_equal(snapshot, obs0)


# -- the scripted expert -------------------------------------------------------------------------------------------


def test_expert_actions_are_valid_with_finite_log_probs(tmp_path: Path, cfg: TownConfig) -> None:
    # The default town sleeps until 06:00 (tick 360), so run well into the day.
    for vec in (
        VecTown(cfg, num_envs=2, seed=2, episode_ticks=1440, num_threads=1),
        VecTown(fainting_config(tmp_path), num_envs=1, seed=2, episode_ticks=300, num_threads=1),
    ):
        vec.reset()
        chosen = set()
        for _ in range(600):
            acts, logp = vec.expert_actions()
            masks = vec.action_masks()
            assert acts.shape == (vec.num_agents,) and acts.dtype == np.int64
            assert logp.shape == (vec.num_agents,) and logp.dtype == np.float32
            assert masks[np.arange(vec.num_agents), acts].all(), "the expert picked a masked action"
            assert np.isfinite(logp).all() and (logp <= 0).all()
            _, _, _, _, info = vec.step(acts.copy())
            chosen.update(acts.tolist())
            dead = ~info["alive"]
            assert not info["invalid_action"][dead].any()
        assert len(chosen) >= 4, "the expert does more than stand still"


def test_expert_actions_do_not_advance_the_world(cfg: TownConfig) -> None:
    vec = VecTown(cfg, num_envs=1, seed=2, num_threads=1)
    vec.reset()
    vec.step(np.zeros(vec.num_agents, np.int64))
    tick = vec.native.town_tick(0)
    obs = vec._obs.copy()
    vec.expert_actions()
    assert vec.native.town_tick(0) == tick
    assert np.array_equal(vec._obs, obs)
    # Only the policy's own random stream may move; asking twice gives valid actions both times.
    acts, _ = vec.expert_actions()
    assert vec.action_masks()[np.arange(vec.num_agents), acts].all()


def test_fortran_ordered_arrays_are_refused_not_misread() -> None:
    """The native calls take 2-D arrays as flat slices: a Fortran-ordered array is contiguous but
    its rows are elsewhere, so it is refused with the array's name."""
    from townlet import _core

    vec = VecTown(DEFAULT_CONFIG, 2, 1)
    n, d, a = vec.num_agents, vec.obs_dim, vec.n_actions
    masks = np.zeros((n, a), np.bool_)
    with pytest.raises(ValueError, match="obs must be a C-ordered"):
        vec.native.reset(np.asfortranarray(np.zeros((n, d), np.float32)), masks, 1)
    vec.reset(1)
    state = vec.get_state()
    with pytest.raises(ValueError, match="masks must be a C-ordered"):
        vec.native.load_state(
            json.dumps(state["towns"]), np.zeros((n, d), np.float32), np.asfortranarray(masks), np.ones(n, np.bool_)
        )
    buf = _core.RolloutBuffer(4, n, d, a)
    ones = np.ones(n, np.float32)
    with pytest.raises(ValueError, match="obs must be a C-ordered"):
        buf.add(np.asfortranarray(np.zeros((n, d), np.float32)), np.ones((n, a), np.bool_), np.zeros(n, np.int64),
                ones, ones, ones, np.zeros(n, np.bool_), np.zeros(n, np.bool_), np.ones(n, np.bool_), ones)  # fmt: skip
    f = np.asfortranarray(np.zeros((4, 3), np.float32))
    b = np.zeros((4, 3), np.bool_)
    with pytest.raises(ValueError, match="rewards must be a C-ordered"):
        _core.compute_gae(f, f, b, b, ~b, f, np.zeros(3, np.float32), 0.9, 0.9)


def test_an_ending_episode_reports_its_kpis_in_that_step(cfg: TownConfig) -> None:
    ending = VecTown(cfg, num_envs=2, seed=4, episode_ticks=30, num_threads=1)
    longer = VecTown(cfg, num_envs=2, seed=4, episode_ticks=60, num_threads=1)
    ending.reset()
    longer.reset()
    for tick in range(1, 32):
        acts = ending.expert_actions()[0].copy()
        ending.step(acts)
        longer.step(acts)
        ended = ending.native.ended_kpis()
        if tick == 30:
            assert [k for k, _ in ended] == [0, 1]
            for k, kpis in ended:
                assert kpis == longer.native.kpis(k), "the ending episode's KPIs, read before the reset"
                assert kpis != ending.native.kpis(k)
        else:
            assert ended == [], tick


def test_a_state_taken_for_later_is_the_state_then_and_resumes_from_there(cfg: TownConfig) -> None:
    """`state_later` keeps the towns' state as of the call and builds `get_state`'s dict only when called: the
    towns stepping on in between change nothing in it, and a VecTown restored from it steps as the original did."""
    vec = VecTown(cfg, num_envs=2, seed=3, episode_ticks=40, num_threads=1)
    vec.reset()
    for _ in range(25):
        vec.step(vec.expert_actions()[0].copy())
    later, now = vec.state_later(), vec.get_state()
    actions, observations = [], []
    for _ in range(20):  # past the episode's end (40 ticks): a reset draws from the reset-seed generator
        acts = vec.expert_actions()[0].copy()
        actions.append(acts)
        observations.append(vec.step(acts)[0].copy())
    state = later()
    assert state == now
    assert state != vec.get_state()
    state["reset_seeds"]["state"]["state"] = 0
    state["towns"].clear()
    assert later() == now, "each call builds its own dicts"
    restored = VecTown(cfg, num_envs=2, seed=99, episode_ticks=40, num_threads=1)
    restored.reset()
    restored.set_state(later())
    for acts, obs in zip(actions, observations, strict=True):
        assert np.array_equal(restored.step(acts)[0], obs)
