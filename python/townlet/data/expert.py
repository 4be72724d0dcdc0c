"""The expert a dataset is captured from: the scripted expert at a sampling temperature.

With `behavior.temperature` τ > 0 the Rust expert samples (its choice weight 1, every other allowed action
`exp(-1/τ)`) and reports the log-probability of what it did, so a capture carries real behaviour log-probabilities
(docs/world.md). τ = 0 is the deterministic expert, whose log-probabilities are all 0.
"""

from __future__ import annotations

import dataclasses
import math

from townlet.errors import UsageError
from townlet.sim.config import TownConfig


def expert_temperature(config: TownConfig) -> float:
    return float((config.world.get("behavior") or {}).get("temperature", 0.0))


def with_temperature(config: TownConfig, temperature: float | None) -> TownConfig:
    """`config` with `behavior.temperature` set (None: unchanged)."""
    if temperature is None:
        return config
    if not math.isfinite(temperature) or temperature < 0:
        raise UsageError(f"--temperature must be a finite number >= 0, got {temperature}")
    behavior = {**(config.world.get("behavior") or {}), "temperature": temperature}
    return dataclasses.replace(config, world={**config.world, "behavior": behavior})


def expert_name(config: TownConfig) -> str:
    """The capture metadata's policy name: `scripted`, or `scripted@temperature=τ` for a sampling expert."""
    t = expert_temperature(config)
    return f"scripted@temperature={t:g}" if t > 0 else "scripted"
