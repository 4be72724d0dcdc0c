"""Helpers for the env, observation, reward and rollout tests: config variants written to a temporary
directory, feature lookup in the flat observation vector, and random valid actions."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs/examples/poc_hybrid.yaml"
SCENARIO_CONFIGS = sorted((REPO_ROOT / "configs/scenarios").glob("*.yaml"))
ALL_CONFIGS = [DEFAULT_CONFIG, *SCENARIO_CONFIGS]

#: Keys whose string value names another YAML file, resolved relative to the including file.
_INCLUDE_KEYS = ("affordances", "perturbations")


def config_data(base: Path = DEFAULT_CONFIG) -> dict[str, Any]:
    """A config as a dict, with included file names made absolute so a copy loads from anywhere."""
    data = yaml.safe_load(base.read_text(encoding="utf-8"))
    for key in _INCLUDE_KEYS:
        value = data.get(key)
        if isinstance(value, str):
            for root in [base.parent, *base.parents]:
                if (root / value).is_file():
                    data[key] = str((root / value).resolve())
                    break
    return data


def write_variant(
    directory: Path,
    mutate: Callable[[dict[str, Any]], None],
    *,
    base: Path = DEFAULT_CONFIG,
    name: str = "variant.yaml",
) -> Path:
    """Write a modified copy of `base` into `directory` and return its path."""
    data = copy.deepcopy(config_data(base))
    mutate(data)
    path = directory / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def make_fainting(data: dict[str, Any]) -> None:
    """Agents starve within ~20 ticks unless they eat, faint after 3 hungry ticks, respawn 2 ticks later."""
    data["needs"]["decay"]["hunger"] = 0.05
    data["needs"]["faint_window_ticks"] = 3
    data.setdefault("lifecycle", {})["respawn_delay_ticks"] = 2


def fainting_config(directory: Path, **extra: Any) -> Path:
    def mutate(data: dict[str, Any]) -> None:
        make_fainting(data)
        for key, value in extra.items():
            data[key] = value

    return write_variant(directory, mutate, name="fainting.yaml")


def feature_column(meta: dict[str, Any], name: str) -> int:
    """Column of feature `name` in the flat observation vector (map first, then features)."""
    c, h, w = meta["map_shape"]
    names = meta["feature_names"]
    assert name in names, f"{name!r} not among the published feature names"
    return int(c * h * w + names.index(name))


def map_planes(obs_row: npt.NDArray[np.float32], meta: dict[str, Any]) -> npt.NDArray[np.float32]:
    c, h, w = meta["map_shape"]
    return obs_row[: c * h * w].reshape(c, h, w)


def random_valid_actions(rng: np.random.Generator, masks: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """One action per row, uniform over the row's valid actions."""
    scores = rng.random(masks.shape) * masks
    scores[:, 0] += 1e-12  # wait (always valid) wins an all-zero row
    return np.argmax(scores, axis=1).astype(np.int64)
