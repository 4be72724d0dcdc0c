"""The bc_memory phase: behaviour cloning of an `lstm`, `gru` or `attention` policy on whole per-agent
sequences (`training.bc_recurrent`), `townlet train --mode bc_memory --arch A` or `make train PHASE=bc ARCH=A`.

Its hyper-parameters are the `bc:` section's (data, learning rate, epochs, held-out fraction, gate) with
`training.memory`'s architecture, `seq_len` and `context`; it is judged by the same honest gate as feed-forward
BC (held-out trajectories, the majority-action baseline). Each architecture saves to its own
`logs/<config_id>/bc_memory/checkpoints/<arch>_agent_latest.json`. By default it starts fresh; a
`--warm-start-load` checkpoint of another phase (the feed-forward bc or ppo agent) goes through the memory
phase's explicit mapping (encoders and heads carried, recorded in the lineage), one of this phase, architecture
and config resumes exactly. The memory phase warm-starts from its checkpoint with the core carried over
(`--mode memory --arch A --warm-start-load .../bc_memory/checkpoints/A_agent_latest.json`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from townlet.errors import UsageError
from townlet.sim.config import TownConfig
from townlet.training.bc_gate import Gate, accuracy_threshold
from townlet.training.bc_recurrent import PHASE, MemoryBCConfig, RecurrentBCTrainer, split_sequences
from townlet.training.data import ReplayData
from townlet.training.phases.bc import BC, run_gated
from townlet.training.phases.memory import build_memory_policy, start_mapped
from townlet.training.request import EpochCallback, PhaseSection, RunOutputs, TrainPlan, TrainRequest
from townlet.training.saver import phase_saver
from townlet.training.warm_start import Notify

#: How the one-line refusal of an unmappable warm start says to override it.
OVERRIDE = "--allow-mismatch or ALLOW_MISMATCH=1"


class MemoryBCPhase:
    name: str = PHASE
    modes: tuple[str, ...] = (PHASE,)
    overrides: frozenset[str] = frozenset({"learning_rate", "arch"})

    def section(self, config: TownConfig) -> PhaseSection:
        return MemoryBCConfig.of(config.sections.bc, config.sections.training.memory)

    def default_epochs(self, config: TownConfig, section: PhaseSection) -> int:
        return BC.default_epochs(config, section)

    def log_path(self, request: TrainRequest) -> Path | None:
        return request.bc_log

    def load_data(
        self, request: TrainRequest, config: TownConfig, section: PhaseSection, mode: str
    ) -> ReplayData | None:
        return BC.load_data(request, config, section, mode)

    def check_plan(self, plan: TrainPlan) -> TrainPlan:
        """BC's (a resume reads the data it was trained on), then: a warm start whose tensors cannot be
        mapped is refused before anything is trained."""
        plan = BC.check_plan(plan)
        if plan.warm.check is not None and not plan.warm.resume:
            self.build(plan)
        return plan

    def build(self, plan: TrainPlan) -> tuple[Any, dict[str, Any]]:
        cfg = plan.section
        assert isinstance(cfg, MemoryBCConfig)
        allow = cfg.warm_start.allow_mismatch
        return build_memory_policy(plan, cfg.arch, cfg.hidden, cfg.context, allow, OVERRIDE)

    def run(self, plan: TrainPlan, *, on_epoch: EpochCallback | None, notify: Notify) -> RunOutputs:
        cfg, data, meta = plan.section, plan.data, plan.meta
        assert isinstance(cfg, MemoryBCConfig) and data is not None
        policy, lineage = self.build(plan)
        if plan.warm.check is not None and plan.warm.check.problems:
            notify(f"WARNING: warm start despite: {'; '.join(plan.warm.check.problems)} (allow_mismatch)")
        try:
            split = split_sequences(data.samples, cfg, seed=plan.seed, ctx_col=policy.ctx_reset_col)
            gate = Gate(split.holdout.live_actions(), list(meta["action_names"]), accuracy_threshold(plan.config),
                        len(split.train), len(split.holdout))  # fmt: skip
            trainer = RecurrentBCTrainer(policy, cfg, split.train, split.holdout, seed=plan.seed, gate=gate)
        except ValueError as exc:
            raise UsageError(f"{data.manifest or 'bc data'}: {exc}") from None
        start = start_mapped(trainer, plan, self.name, notify, lineage)
        writer = plan.log.open(start) if plan.log is not None else None
        dataset = data.fingerprint()
        saver = phase_saver(plan, self.name, arch=cfg.arch, dataset=str(dataset["manifest"]), lineage=lineage)

        return run_gated(trainer, plan, saver, writer, on_epoch, dataset, start)


BC_MEMORY = MemoryBCPhase()
