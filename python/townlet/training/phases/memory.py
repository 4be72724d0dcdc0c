"""The memory phase (seed 004's Track H): an `lstm`, `gru` or `attention` agent
(`training.memory.arch`, `--arch`) trained by recurrent PPO in VecTown with the `ppo:`
hyper-parameters. Its warm start defaults to the ppo phase's checkpoint of the same config
(`training.memory.warm_start.inherit: ppo`) through an explicit mapping (`memory_warm_start`:
encoders, actor/critic layers and heads copied where the shapes match, the core fresh unless the
checkpoint has the same architecture), which the checkpoint's lineage records (`warm_start`:
the source's SHA-256 and architecture, the carried and fresh tensors). Each architecture saves to
its own `logs/<config_id>/memory/checkpoints/<arch>_agent_latest.json`; loading a checkpoint of
the same architecture and config resumes it exactly, as for ppo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from townlet.errors import UsageError
from townlet.sim.config import TownConfig
from townlet.sim.settings import MemoryConfig
from townlet.training.data import ReplayData
from townlet.training.envs import TownTrainEnv
from townlet.training.network_memory import MappingError, MemoryPolicy, make_memory_policy, memory_warm_start
from townlet.training.ppo_recurrent_trainer import MemoryTrainer
from townlet.training.request import EpochCallback, PhaseSection, RunOutputs, TrainPlan, TrainRequest
from townlet.training.saver import phase_saver, run_saving
from townlet.training.warm_start import Notify, Resumable, start_epoch


class MemoryPhase:
    name: str = "memory"
    modes: tuple[str, ...] = ("memory",)
    overrides: frozenset[str] = frozenset(MemoryConfig.model_fields) - {"warm_start", "overlap"}

    def section(self, config: TownConfig) -> PhaseSection:
        return MemoryConfig.of(config.sections.ppo, config.sections.training.memory)

    def default_epochs(self, config: TownConfig, section: PhaseSection) -> int:
        return config.sections.training.epochs

    def log_path(self, request: TrainRequest) -> Path | None:
        return request.ppo_log

    def load_data(
        self, request: TrainRequest, config: TownConfig, section: PhaseSection, mode: str
    ) -> ReplayData | None:
        return None

    def check_plan(self, plan: TrainPlan) -> TrainPlan:
        """A warm start whose tensors cannot be mapped is refused before anything is trained."""
        if plan.warm.check is not None and not plan.warm.resume:
            self.build(plan)
        return plan

    def build(self, plan: TrainPlan) -> tuple[MemoryPolicy, dict[str, Any]]:
        """The policy with its first weights (fresh, mapped from the warm start, or resumed), and
        the lineage fields its checkpoints carry."""
        mem = plan.section
        assert isinstance(mem, MemoryConfig)
        hint = "training.memory.warm_start.allow_mismatch: true or ALLOW_MISMATCH=1"
        return build_memory_policy(plan, mem.arch, mem.hidden, mem.context, mem.warm_start.allow_mismatch, hint)

    def run(self, plan: TrainPlan, *, on_epoch: EpochCallback | None, notify: Notify) -> RunOutputs:
        mem = plan.section
        assert isinstance(mem, MemoryConfig)
        env = TownTrainEnv(plan.config, mem.num_envs, plan.seed, mem.episode_ticks)
        policy, lineage = self.build(plan)
        if plan.warm.check is not None and plan.warm.check.problems:
            notify(f"WARNING: warm start despite: {'; '.join(plan.warm.check.problems)} (allow_mismatch)")
        trainer = MemoryTrainer(env, mem, seed=plan.seed, policy=policy)
        start = start_mapped(trainer, plan, self.name, notify, lineage)
        writer = plan.log.open(start) if plan.log is not None else None
        saver = phase_saver(plan, self.name, mode=True, arch=mem.arch, lineage=lineage)
        return run_saving(trainer, plan, saver, writer, on_epoch, start)


MEMORY = MemoryPhase()


def start_mapped(trainer: Resumable, plan: TrainPlan, phase: str, notify: Notify, lineage: dict[str, Any]) -> int:
    """`warm_start.start_epoch` for the memory and bc_memory phases (restore the trainer when the plan resumes, say
    where the run starts from), then, for a warm start, what its mapping (`lineage`) carried over."""
    start = start_epoch(trainer, plan.warm, phase, plan.epochs, notify)
    mapping = lineage.get("warm_start")
    if mapping and not plan.warm.resume:
        fresh = sorted({name.split(".")[0] for name in mapping["fresh"]})
        notify(f"{phase}: carried {len(mapping['carried'])} tensors from the {mapping['source_architecture']} "
               f"checkpoint; fresh: {', '.join(fresh) or 'none'}")  # fmt: skip
    return start


def build_memory_policy(
    plan: TrainPlan, arch: str, hidden: int, context: int, allow_mismatch: bool, override: str
) -> tuple[MemoryPolicy, dict[str, Any]]:
    """A memory policy for `plan` (the memory and bc_memory phases) with its first weights: fresh, resumed from
    the plan's checkpoint, or mapped from it (`memory_warm_start`; a tensor that cannot be mapped is refused in
    one line naming the checkpoint, the tensors and `override`); and the lineage fields its checkpoints carry."""
    meta = plan.meta
    torch.manual_seed(plan.seed)
    try:
        policy = make_memory_policy(arch, meta, len(meta["action_names"]), hidden, context)
    except ValueError as exc:
        raise UsageError(f"{plan.config.path}: training.memory: {exc}") from None
    check = plan.warm.check
    if check is None:
        return policy, {}
    ck = check.checkpoint
    if plan.warm.resume:
        policy.load_state_dict(ck.state)
        lineage = ck.header.get("lineage") or {}
        return policy, ({"warm_start": lineage["warm_start"]} if "warm_start" in lineage else {})
    source_arch = str((ck.header.get("architecture") or {}).get("architecture"))
    try:
        mapping = memory_warm_start(policy, ck.state, source_arch, allow_mismatch=allow_mismatch)
    except MappingError as exc:
        raise UsageError(
            f"{ck.path}: cannot warm start the {arch} policy from this {source_arch} checkpoint: {exc}; "
            f"override with {override} (those tensors start fresh)"
        ) from None
    return policy, {"warm_start": {"source_sha256": ck.sha256, **mapping}}
