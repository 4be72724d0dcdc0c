#!/usr/bin/env python3
"""Regenerate the golden observation files checked by tests/test_observations.py.

For each variant (hybrid, full, compact) it steps the kitchen_breakfast scenario under the
scripted policy to a fixed tick and writes tests/data/observations/<variant>.npz holding the
observations, masks, feature and channel names and the observation-schema version. Run it only
when an observation change is intended, and say so in the commit.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "python"))

from townlet.sim.config import load_config  # noqa: E402
from townlet.sim.env import VecTown  # noqa: E402

SCENARIO = REPO / "configs/scenarios/kitchen_breakfast.yaml"
TICK = 20
OUT = REPO / "tests/data/observations"


def golden(variant: str) -> dict[str, np.ndarray]:
    """Observations of every agent after TICK expert-driven ticks, for one variant."""
    cfg = load_config(SCENARIO)
    world = dict(cfg.world)
    world["observations"] = {"variant": variant}
    cfg = type(cfg)(cfg.path, cfg.raw, world, cfg.sections, cfg.includes)
    vec = VecTown(cfg, 1, seed=cfg.seed, episode_ticks=1000, num_threads=1)
    obs, _ = vec.reset()
    for _ in range(TICK):
        actions, _ = vec.expert_actions()
        obs, *_ = vec.step(actions.copy())
    meta = vec.observation_metadata()
    return {
        "observations": obs.copy(),
        "masks": vec.action_masks().copy(),
        "map_shape": np.array(meta["map_shape"]),
        "feature_names": np.array(meta["feature_names"]),
        "map_channels": np.array(meta["map_channels"]),
        "action_names": np.array(meta["action_names"]),
        "schema_version": np.array(meta["observation_schema_version"]),
        "tick": np.array(TICK),
    }


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for variant in ("hybrid", "full", "compact"):
        path = OUT / f"{variant}.npz"
        np.savez_compressed(path, **golden(variant))
        print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
