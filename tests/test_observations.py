"""Observations: the golden files of each variant, map shapes and channels, the published feature names,
and the metadata that travels with captures and checkpoints."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from envtools import REPO_ROOT, feature_column, map_planes, write_variant
from townlet import _core
from townlet.sim.config import load_config
from townlet.sim.env import VecTown

GOLDEN_DIR = REPO_ROOT / "tests/data/observations"
VARIANTS = {
    "hybrid": ((4, 11, 11), ["walls", "agents", "objects", "reservations"]),
    "full": ((6, 11, 11), ["walls", "agents", "objects", "reservations", "path_dx", "path_dy"]),
    "compact": ((5, 7, 7), ["walls", "agents", "objects", "reservations", "rivals"]),
}

#: Names SPEC §4 and the design card list for the feature vector.
REQUIRED_FEATURES = [
    "need_hunger",
    "need_hygiene",
    "need_energy",
    "wallet",
    "has_job",
    "time_sin",
    "time_cos",
    "attendance_ratio",
    "lateness",
    "rivalry_max",
    "rivalry_avoid_count",
    "identity_slot",
    "ctx_reset",
    "last_action",
    "in_queue",
    "holding",
    "running",
    "episode_progress",
    "social_friend0_present",
    "social_friend0_trust",
    "social_friend0_familiarity",
    "social_friend0_rivalry",
    "social_rival0_present",
    "social_rival0_rivalry",
]
SHIFT_STATES = ["idle", "pre_shift", "on_time", "late", "absent", "departed", "post_shift"]


@cache
def golden_tool() -> ModuleType:
    path = REPO_ROOT / "tools/make_observation_goldens.py"
    spec = importlib.util.spec_from_file_location("make_observation_goldens", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def variant_town(variant: str, tmp_path: Path, **kwargs: Any) -> VecTown:
    path = write_variant(tmp_path, lambda d: d.update(observations={"variant": variant}), name=f"{variant}.yaml")
    return VecTown(load_config(path), num_threads=1, **kwargs)


# -- goldens ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_observations_match_the_golden_file(variant: str) -> None:
    fresh = golden_tool().golden(variant)
    with np.load(GOLDEN_DIR / f"{variant}.npz") as stored:
        assert sorted(stored.files) == sorted(fresh)
        for key in ("observations", "masks", "feature_names", "map_channels", "action_names", "map_shape"):
            assert stored[key].dtype == fresh[key].dtype, key
            assert np.array_equal(stored[key], fresh[key]), f"{variant}: {key} differs from the golden file"
        assert str(stored["schema_version"]) == _core.OBSERVATION_SCHEMA_VERSION == str(fresh["schema_version"])
        assert int(stored["tick"]) == int(fresh["tick"])
        obs = stored["observations"]
        shape, channels = VARIANTS[variant]
        assert tuple(stored["map_shape"]) == shape
        assert list(stored["map_channels"]) == channels
        assert obs.dtype == np.float32
        assert obs.shape[1] == int(np.prod(shape)) + len(stored["feature_names"])
        assert np.abs(obs).max() <= 1.0
        # The goldens are not trivial: both agents see something, and they see different things.
        assert np.count_nonzero(obs[0]) > 20 and not np.array_equal(obs[0], obs[1])


def test_golden_tool_is_deterministic() -> None:
    a = golden_tool().golden("compact")
    b = golden_tool().golden("compact")
    for key in a:
        assert np.array_equal(a[key], b[key]), key


# -- shapes, channels and feature names ---------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_map_shape_channels_and_feature_names(variant: str, tmp_path: Path) -> None:
    vec = variant_town(variant, tmp_path)
    obs, _ = vec.reset(seed=0)
    meta = vec.observation_metadata()
    shape, channels = VARIANTS[variant]
    assert meta["variant"] == variant
    assert tuple(meta["map_shape"]) == shape == tuple(vec.native.map_shape)
    assert meta["map_channels"] == channels
    names = meta["feature_names"]
    assert len(names) == len(set(names)) == meta["n_features"], "feature names are unique"
    missing = [n for n in REQUIRED_FEATURES if n not in names]
    assert not missing, missing
    assert [n for n in names if n.startswith("shift_") and n[6:] in SHIFT_STATES] == [
        f"shift_{s}" for s in SHIFT_STATES
    ]
    # Social slots: two friends and two rivals, each with the same fields.
    for slot in ("friend0", "friend1", "rival0", "rival1"):
        fields = [n.split("_", 2)[2] for n in names if n.startswith(f"social_{slot}_")]
        assert fields == ["present", "trust", "familiarity", "rivalry", "dx", "dy", "in_range"], slot
    # One block of features per affordance.
    for action in meta["action_names"]:
        if action.startswith("use:"):
            aff = action[4:]
            for field in ("usable", "dx", "dy", "dist", "current"):
                assert f"aff_{aff}_{field}" in names
    assert obs.shape == (vec.num_agents, int(np.prod(shape)) + len(names))
    # The features are the tail of each observation row.
    hunger = feature_column(meta, "need_hunger")
    assert hunger == int(np.prod(shape))
    np.testing.assert_allclose(obs[:, hunger], 0.8, atol=1e-6)


def test_feature_names_are_the_same_for_every_variant(tmp_path: Path) -> None:
    names = {v: variant_town(v, tmp_path).observation_metadata()["feature_names"] for v in VARIANTS}
    assert names["hybrid"] == names["full"] == names["compact"]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_metadata_carries_versions_and_layout(variant: str, tmp_path: Path) -> None:
    vec = variant_town(variant, tmp_path)
    meta = vec.observation_metadata()
    for key in (
        "variant",
        "map_shape",
        "map_channels",
        "feature_names",
        "action_names",
        "observation_schema_version",
        "action_space_version",
    ):
        assert key in meta, key
    assert meta["observation_schema_version"] == _core.OBSERVATION_SCHEMA_VERSION
    assert meta["action_space_version"] == _core.ACTION_SPACE_VERSION
    assert isinstance(meta["observation_schema_version"], str) and meta["observation_schema_version"]
    assert meta["action_names"][0] == "wait"
    assert meta["action_names"][1:5] == ["move_n", "move_e", "move_s", "move_w"]
    assert meta["action_names"][-1] == "release"
    assert meta["obs_dim"] == vec.obs_dim
    assert meta["config_id"] == "poc_hybrid_v1"


# -- map channels are real --------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_walls_objects_and_agents_channels_follow_the_town(variant: str, tmp_path: Path) -> None:
    def mutate(data: dict[str, Any]) -> None:
        data["observations"] = {"variant": variant}
        data["agents"][0]["home"] = [1, 1]  # alice starts in the top-left corner of the map

    path = write_variant(tmp_path, mutate)
    cfg = load_config(path)
    vec = VecTown(cfg, num_threads=1)
    obs, _ = vec.reset(seed=0)
    meta = vec.observation_metadata()
    town = _core.Town(cfg.world_json())
    walls = town.walls()
    h_grid, w_grid = walls.shape
    positions = town.positions().tolist()
    assert positions[0] == [1, 1]
    objects = {tuple(p) for p in town.object_positions().tolist()}
    _, h, w = meta["map_shape"]
    half = w // 2
    channels = meta["map_channels"]
    for i, (px, py) in enumerate(positions):
        planes = map_planes(obs[i], meta)
        expected_walls = np.ones((h, w), np.float32)  # outside the map reads as wall
        expected_objects = np.zeros((h, w), bool)
        expected_agents = np.zeros((h, w), bool)
        for wy in range(h):
            for wx in range(w):
                x, y = px - half + wx, py - half + wy
                if 0 <= x < w_grid and 0 <= y < h_grid:
                    expected_walls[wy, wx] = float(walls[y, x])
                    expected_objects[wy, wx] = (x, y) in objects
                    expected_agents[wy, wx] = any([x, y] == q for j, q in enumerate(positions) if j != i)
        assert np.array_equal(planes[channels.index("walls")], expected_walls), f"agent {i}"
        assert np.array_equal(planes[channels.index("objects")] > 0, expected_objects), f"agent {i}"
        assert np.array_equal(planes[channels.index("agents")] > 0, expected_agents), f"agent {i}"
    # alice's window reaches past the left and top edges (x < 0, y < 0), and there it is all wall; the
    # map's own border wall (x = 0, y = 0) follows.
    alice = map_planes(obs[0], meta)[channels.index("walls")]
    assert (alice[:, :half] == 1.0).all() and (alice[:half, :] == 1.0).all()
    assert alice[half, half] == 0.0, "alice's own tile is floor"


def test_full_variant_path_hints_point_toward_the_current_target(tmp_path: Path) -> None:
    vec = variant_town("full", tmp_path, seed=0)
    vec.reset()
    meta = vec.observation_metadata()
    channels = meta["map_channels"]
    walking = 0
    # Send everyone toward the cafe: their path hints light up along the way.
    use_cafe = meta["action_names"].index("use:eat_cafe")
    for _ in range(3):
        acts = np.where(vec.action_masks()[:, use_cafe], use_cafe, 0)
        obs, *_ = vec.step(acts)
    for i in range(vec.num_agents):
        planes = map_planes(obs[i], meta)
        dx, dy = planes[channels.index("path_dx")], planes[channels.index("path_dy")]
        assert set(np.unique(dx)) <= {-1.0, 0.0, 1.0} and set(np.unique(dy)) <= {-1.0, 0.0, 1.0}
        # A hint is a unit step along one axis.
        assert not ((dx != 0) & (dy != 0)).any()
        if np.any(dx != 0) or np.any(dy != 0):
            walking += 1
    assert walking >= 1


def test_compact_observations_stay_finite_and_in_range_under_the_expert(tmp_path: Path) -> None:
    vec = variant_town("compact", tmp_path, num_envs=2, seed=4, episode_ticks=500)
    vec.reset()
    for _ in range(400):
        obs, *_ = vec.step(vec.expert_actions()[0].copy())
        assert obs.dtype == np.float32
        assert np.isfinite(obs).all()
        assert obs.min() >= -1.0 and obs.max() <= 1.0
