"""Training: PPO and behaviour cloning (and the env adapters and networks they use); `TrainingHarness`
runs them from Python (imported on first use: torch takes a second to import)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from townlet.training.harness import BCResult, TrainingHarness

__all__ = ["BCResult", "TrainingHarness"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from townlet.training import harness

        return getattr(harness, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
