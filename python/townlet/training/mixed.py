"""Mixed mode's anneal ratio: rollouts blend the learned policy's actions with the scripted expert's.

With ratio r (`training.anneal_ratio`, or an anneal stage's `anneal_ratio`), each live agent-step takes the
learned policy's sampled action with probability r and the scripted expert's action otherwise, as the prior
system's anneal meant its ratio (it never installed the provider; this one is installed). PPO needs the
behaviour probability of the action taken: given the expert's action e, it is r * pi(a) + (1 - r) * [a == e],
which the blend stores as the log-probability, so the importance ratios PPO clips are those of the policy
that acted. r = 1 installs nothing (the collector is bit-identical to plain PPO); r = 0 is the expert alone.
The ratio goes into every mixed-mode telemetry record as `anneal_ratio`.
"""

from __future__ import annotations

from typing import Any

import torch

from townlet.errors import UsageError
from townlet.sim.env import VecTown
from townlet.training.envs import TownTrainEnv
from townlet.training.network import ActorCritic, draw
from townlet.training.trainer import Trainer

#: The data modes whose rollouts blend (replay has no rollout; rollout mode is plain PPO).
BLEND_MODES = ("mixed",)


class BlendActor:
    """Acts for `RolloutCollector.actor`: the learned action with probability `ratio`, else the expert's."""

    def __init__(self, policy: ActorCritic, vec: VecTown, ratio: float) -> None:
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"anneal ratio must lie in [0, 1], got {ratio}")
        self.policy, self.vec, self.ratio = policy, vec, ratio
        #: Agent slots acted for, and how many took the learned action (the realised ratio).
        self.acted = 0
        self.learned = 0

    def __call__(
        self, obs: torch.Tensor, masks: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, value = self.policy(obs, masks)
        probs = torch.softmax(logits, -1)
        learned_action = draw(logits, generator)[0]
        expert = torch.from_numpy(self.vec.expert_actions()[0].copy())
        take_learned = torch.rand(len(expert), generator=generator) < self.ratio
        action = torch.where(take_learned, learned_action, expert)
        p_learned = probs.gather(-1, action.unsqueeze(-1)).squeeze(-1)
        behaviour = self.ratio * p_learned + (1.0 - self.ratio) * (action == expert).to(probs.dtype)
        self.acted += len(action)
        self.learned += int(take_learned.sum())
        return action, torch.log(behaviour.clamp_min(1e-12)), value


def blend_ratio(mode: str, configured: float, override: float | None = None) -> float | None:
    """The ratio a run in `mode` blends at (None: the mode does not blend)."""
    if mode not in BLEND_MODES:
        return None
    return configured if override is None else override


def attach_blend(trainer: Trainer, ratio: float | None) -> dict[str, Any]:
    """Install the blend on the trainer's collector (ratio < 1) and return the telemetry fields every record
    of the run carries (`anneal_ratio`; none when `ratio` is None)."""
    if ratio is None:
        return {}
    if ratio < 1.0:
        collector, env = trainer.collector, trainer.env
        if collector is None or not isinstance(env, TownTrainEnv):
            raise UsageError("training.anneal_ratio < 1 blends in the scripted expert: it needs Townlet towns")
        collector.actor = BlendActor(trainer.policy, env.vec, ratio)
    return {"anneal_ratio": float(ratio)}
