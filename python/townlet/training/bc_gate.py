"""When behaviour cloning passes: judged on held-out trajectories, against the majority-action baseline.

A classifier that always answers the most frequent held-out action scores that action's share: that is the
baseline, and a held-out set where one action is always right makes it 1.0, which no model can beat. The gate
passes only when the held-out accuracy reaches the threshold (`training.bc.accuracy_threshold`, else
`training.anneal_accuracy_threshold`, else `DEFAULT_THRESHOLD`) *and* beats the baseline; `reason` says why not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from townlet.sim.config import TownConfig

#: The threshold when the config names none (seed 001's acceptance overlay uses 0.8).
DEFAULT_THRESHOLD = 0.8


def accuracy_threshold(config: TownConfig, *, anneal: bool = False) -> float:
    """The config's BC threshold: `training.bc.accuracy_threshold` for a BC run, and
    `training.anneal_accuracy_threshold` (seed 001's name) for an anneal's BC stage; each falls back on the
    other, then on `DEFAULT_THRESHOLD`."""
    training = config.sections.training
    order = [training.bc.accuracy_threshold, training.anneal_accuracy_threshold]
    for value in reversed(order) if anneal else order:
        if value is not None:
            return float(value)
    return DEFAULT_THRESHOLD


@dataclass(frozen=True)
class Gate:
    """What judges each epoch: the held-out actions, the action names, the threshold, the split's sizes."""

    actions: npt.NDArray[np.int64]
    action_names: Sequence[str]
    threshold: float
    train_trajectories: int
    heldout_trajectories: int

    def judge(self, predicted: npt.NDArray[np.int64] | None) -> dict[str, Any]:
        """The record fields of one judgement (`predicted`: the argmax action of every held-out row)."""
        out: dict[str, Any] = {
            "gate_threshold": self.threshold,
            "train_trajectories": self.train_trajectories,
            "heldout_trajectories": self.heldout_trajectories,
        }
        if predicted is None or len(self.actions) == 0:
            n = self.train_trajectories + self.heldout_trajectories
            return {
                **out,
                "holdout_baseline_accuracy": None,
                "holdout_majority_action": None,
                "holdout_recall": {},
                "gate_passed": False,
                "gate_reason": f"nothing held out ({n} trajectories; a held-out set needs two or more and "
                "bc.holdout_fraction > 0), so accuracy cannot be judged",
            }
        counts = np.bincount(self.actions, minlength=len(self.action_names))
        majority = int(counts.argmax())
        baseline = float(counts[majority] / len(self.actions))
        hits = self.actions == predicted
        accuracy = float(hits.mean())
        recall = {self.action_names[a]: float(hits[self.actions == a].mean()) for a in range(len(counts)) if counts[a]}
        reasons = []
        if accuracy < self.threshold:
            reasons.append(f"held-out accuracy {accuracy:.3f} is below the threshold {self.threshold:.3f}")
        if accuracy <= baseline:
            name = self.action_names[majority]
            why = (
                f"one action is always right on the held-out set ('{name}'), so accuracy shows no learning"
                if baseline >= 1.0
                else f"always answering '{name}' scores {baseline:.3f}"
            )
            reasons.append(f"held-out accuracy {accuracy:.3f} does not beat the majority-action baseline: {why}")
        return {
            **out,
            "holdout_baseline_accuracy": baseline,
            "holdout_majority_action": self.action_names[majority],
            "holdout_recall": recall,
            "gate_passed": not reasons,
            "gate_reason": "; ".join(reasons) or None,
        }


#: The record fields the checkpoint metadata keeps (`bc_gate`), beside the epoch.
GATE_FIELDS = (
    "epoch",
    "holdout_accuracy",
    "holdout_baseline_accuracy",
    "holdout_majority_action",
    "holdout_recall",
    "gate_threshold",
    "gate_passed",
    "gate_reason",
    "train_trajectories",
    "heldout_trajectories",
)
