"""Epoch records carry the KPIs of the town episodes that ended during the epoch (`kpi_*`), read from the towns
just before they reset, so progress displays and telemetry show whether the agents do the job."""

from __future__ import annotations

import numpy as np

from envtools import DEFAULT_CONFIG
from townlet.sim.config import load_config
from townlet.sim.env import VecTown
from townlet.sim.settings import PPOConfig
from townlet.telemetry.records import PpoRecord
from townlet.training.envs import TownTrainEnv
from townlet.training.ppo import EPISODE_KPIS
from townlet.training.trainer import Trainer

EPISODE = 48


def test_epochs_that_end_town_episodes_report_their_kpis() -> None:
    cfg = load_config(DEFAULT_CONFIG)
    ppo = PPOConfig(num_envs=2, rollout_ticks=32, episode_ticks=EPISODE, torch_threads=1, hidden=16)
    res = Trainer(TownTrainEnv(cfg, 2, 5, EPISODE, num_threads=1), ppo, seed=5).run(6)
    ended_at = [r["epoch"] for r in res.records if "kpi_on_time_rate" in r]
    # 32 ticks an epoch, episodes of 48: towns end episodes in epochs 2, 3, 5 and 6 (ticks 48, 96, 144, 192).
    assert ended_at == [2, 3, 5, 6]
    for rec in res.records:
        PpoRecord.model_validate({**rec, "log_stream_offset": 1})  # the writer adds the offset
        if "kpi_on_time_rate" in rec:
            assert set(EPISODE_KPIS) == {k.removeprefix("kpi_") for k in rec if k.startswith("kpi_")}
            for k in ("self_sufficiency", "on_time_rate", "relationship_coverage"):
                assert 0.0 <= rec[f"kpi_{k}"] <= 1.0
            assert rec["kpi_faints"] >= 0.0


def test_the_reported_kpis_are_the_towns_own_at_the_episode_end() -> None:
    """The same actions in a town whose episode is longer: its KPIs at tick 48 are what the epoch reported."""
    cfg = load_config(DEFAULT_CONFIG)
    env = TownTrainEnv(cfg, 2, 7, EPISODE, num_threads=1)
    longer = VecTown(cfg, 2, 7, episode_ticks=EPISODE * 2, num_threads=1)
    env.reset(7)
    longer.reset(7)
    for tick in range(1, EPISODE + 1):
        acts = longer.expert_actions()[0].copy()
        batch = env.step(acts)
        longer.step(acts)
        if tick < EPISODE:
            assert batch.episode_kpis == []
    assert batch.episode_kpis == [longer.native.kpis(0), longer.native.kpis(1)]
    assert np.isfinite([v for k in batch.episode_kpis for v in k.values()]).all()
