"""`townlet.env.sb3.make_vec_env`: an SB3 `VecEnv` over VecTown that sb3-contrib's MaskablePPO trains through, with
bool masks, seeding, the day's end as a time limit (bootstrapped) and fixed slots."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecMonitor

from envtools import DEFAULT_CONFIG, fainting_config
from townlet.env.sb3 import TownVecEnv, make_vec_env, policy_kwargs
from townlet.sim.env import VecTown


class Watch(BaseCallback):
    """Counts what the env reported during training: invalid actions, time limits and terminations."""

    def __init__(self) -> None:
        super().__init__()
        self.steps = self.masked = self.time_limits = self.terminations = 0

    def _on_step(self) -> bool:
        infos: list[dict[str, Any]] = self.locals["infos"]
        dones, actions, masks = self.locals["dones"], self.locals["actions"], self.locals["action_masks"]
        self.steps += 1
        # The actions MaskablePPO took are valid by the masks it was given...
        assert masks.dtype == np.bool_ and masks[np.arange(len(actions)), actions].all()
        for done, info in zip(dones, infos, strict=True):
            # ... and by the masks the towns checked them against.
            self.masked += bool(info.get("masked_action"))
            if done:
                assert "terminal_observation" in info and "TimeLimit.truncated" in info
                self.time_limits += info["TimeLimit.truncated"]
                self.terminations += not info["TimeLimit.truncated"]
        return True


def test_maskable_ppo_trains_through_make_vec_env_respecting_the_masks() -> None:
    torch.set_num_threads(1)
    venv = make_vec_env(DEFAULT_CONFIG, num_towns=2, seed=3, episode_ticks=24)
    assert isinstance(venv, VecEnv) and venv.num_envs == 2 * venv.agents_per_env
    model = MaskablePPO(
        "MlpPolicy", venv, n_steps=16, batch_size=72, n_epochs=2, seed=3, policy_kwargs=policy_kwargs(venv)
    )
    before = [p.detach().clone() for p in model.policy.parameters()]
    watch = Watch()
    model.learn(total_timesteps=3 * 16 * venv.num_envs, callback=watch)
    assert model.num_timesteps == 3 * 16 * venv.num_envs
    assert any(not torch.equal(a, b) for a, b in zip(before, model.policy.parameters(), strict=True)), "it learned"
    # Masks respected: no masked action in 48 ticks (the towns flag those as invalid too; what else they flag is an
    # action that failed in the world, which their `invalid_actions` KPI counts), and the day's end (ticks 24 and 48)
    # reached every index as a time limit.
    assert watch.steps == 48
    assert watch.masked == 0
    assert watch.time_limits == 2 * venv.num_envs - watch.terminations
    # The greedy policy with masks predicts valid actions only.
    obs = venv.reset()
    masks = venv.action_masks()
    actions, _ = model.predict(obs, deterministic=True, action_masks=masks)
    assert masks[np.arange(venv.num_envs), actions].all()


def test_masks_are_bool_rows_per_index_and_a_masked_action_is_counted() -> None:
    venv = make_vec_env(DEFAULT_CONFIG, num_towns=2, seed=1)
    venv.reset()
    masks = venv.action_masks()
    assert masks.dtype == np.bool_ and masks.shape == (venv.num_envs, venv.action_space.n)
    np.testing.assert_array_equal(np.stack(venv.env_method("action_masks")), masks)
    assert venv.has_attr("action_masks")
    # An action the mask forbids is applied as wait, flagged, and counted by the towns' KPI.
    bad = np.argmin(masks, axis=1)
    assert not masks[np.arange(venv.num_envs), bad].all()
    _, _, _, infos = venv.step(bad)
    masked = [i for i, info in enumerate(infos) if info.get("masked_action")]
    assert masked == np.flatnonzero(~masks[np.arange(venv.num_envs), bad]).tolist() != []
    assert all(infos[i]["invalid_action"] for i in masked)
    # Applied as wait: the towns' KPI (actions that failed in the world) does not count them.
    assert sum(venv.vec.native.kpis(t)["invalid_actions"] for t in range(2)) == 0


def test_the_days_end_is_a_time_limit_with_the_last_observation() -> None:
    ticks = 10
    venv = make_vec_env(DEFAULT_CONFIG, num_towns=2, seed=2, episode_ticks=ticks)
    ref = VecTown(DEFAULT_CONFIG, 2, 2, episode_ticks=ticks + 1)
    obs = venv.reset()
    ref_obs, _ = ref.reset()
    np.testing.assert_array_equal(obs, ref_obs)
    wait = np.zeros(venv.num_envs, np.int64)
    for tick in range(1, ticks + 1):
        obs, rewards, dones, infos = venv.step(wait)
        ref_obs, ref_rewards, *_ = ref.step(wait)
        assert obs.dtype == np.float32 and rewards.dtype == np.float32 and dones.dtype == np.bool_
        if tick < ticks:
            assert not dones.any()
            np.testing.assert_array_equal(obs, ref_obs)
    assert dones.all()
    for i, info in enumerate(infos):
        assert info["TimeLimit.truncated"] is True
        np.testing.assert_array_equal(info["terminal_observation"], ref_obs[i])
    np.testing.assert_array_equal(rewards, ref_rewards)
    assert not np.array_equal(obs, ref_obs), "the returned observations start the next day"


def test_a_faint_ends_the_slots_episode_and_the_slot_reads_dead_until_it_respawns(tmp_path: Path) -> None:
    venv = make_vec_env(fainting_config(tmp_path), num_towns=1, seed=4, episode_ticks=200)
    venv.reset()
    wait = np.zeros(venv.num_envs, np.int64)
    down: set[int] = set()
    respawned = 0
    for _ in range(120):
        obs, rewards, dones, infos = venv.step(wait)
        masks = venv.action_masks()
        assert obs.shape == (venv.num_envs, venv.observation_space.shape[0]), "fixed slots: the indices never change"
        for i in np.flatnonzero(dones):
            assert infos[i]["TimeLimit.truncated"] is False, "a faint is not a time limit"
            assert infos[i]["terminal_observation"].any(), "the agent's real last observation"
            assert not obs[i].any(), "the slot's next episode starts dead"
            down.add(int(i))
        for i in sorted(down):
            if obs[i].any():
                down.discard(i)
                respawned += 1
                continue
            assert masks[i].tolist() == [True] + [False] * (venv.action_space.n - 1)
            if not dones[i]:
                assert rewards[i] == 0.0
    assert respawned > 0


def trace(venv: TownVecEnv, ticks: int = 60) -> list[bytes]:
    """Observations and rewards over `ticks` ticks of random valid actions (the same draws for every env)."""
    rng = np.random.default_rng(7)
    out = [venv.reset().tobytes()]
    for _ in range(ticks):
        masks = venv.action_masks()
        obs, rewards, _, _ = venv.step((rng.random(masks.shape) * masks).argmax(axis=1))
        out.append(obs.tobytes() + rewards.tobytes())
    return out


def test_seed_seeds_the_next_reset() -> None:
    venv = make_vec_env(DEFAULT_CONFIG, num_towns=2, seed=1)
    assert list(venv.seed(9)) == [9] * venv.num_envs
    np.testing.assert_array_equal(venv.reset(), VecTown(DEFAULT_CONFIG, 2, 9).reset()[0])
    seeded = []
    for seed in (9, 9, None):
        venv = make_vec_env(DEFAULT_CONFIG, num_towns=2, seed=1)
        if seed is not None:
            venv.seed(seed)
        seeded.append(trace(venv))
    assert seeded[0] == seeded[1], "the same seed, the same towns"
    assert seeded[0] != seeded[2], "another seed, other towns"
    assert trace(make_vec_env(DEFAULT_CONFIG, num_towns=2, seed=9)) == seeded[0], "seed() is make_vec_env's seed"


def test_without_sb3_the_import_error_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['stable_baselines3'] = None\n"
        "try:\n    import townlet.env.sb3\nexcept ImportError as e:\n    print(e)\n"
        "import townlet.env; print(townlet.env.TownEnv.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install -e '.[bench]'" in out
    assert out.strip().endswith("TownEnv"), "townlet.env itself needs no SB3"


def test_townvecenv_is_what_make_vec_env_returns() -> None:
    venv = make_vec_env(DEFAULT_CONFIG)
    assert type(venv) is TownVecEnv
    assert venv.num_envs == venv.vec.agents_per_env
    assert venv.get_attr("render_mode") == [None] * venv.num_envs
    assert venv.env_is_wrapped(object) == [False] * venv.num_envs


def test_vec_monitor_passes_the_masks_through_and_logs_days() -> None:
    torch.set_num_threads(1)
    venv = VecMonitor(make_vec_env(DEFAULT_CONFIG, num_towns=1, seed=2, episode_ticks=8))
    model = MaskablePPO("MlpPolicy", venv, n_steps=8, batch_size=36, n_epochs=1, seed=2)
    model.learn(total_timesteps=8 * venv.num_envs)
    assert len(model.ep_info_buffer) == venv.num_envs, "one finished day per slot"
    assert all(info["l"] <= 8 for info in model.ep_info_buffer)
