"""The bc phase: behaviour cloning on captured (expert) samples (`training.bc`)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch

from townlet.artifacts.checkpoint import TrainingState
from townlet.data.records import DEFAULT_VERSIONS
from townlet.errors import UsageError
from townlet.sim.config import TownConfig
from townlet.sim.settings import BCConfig
from townlet.telemetry.writer import TelemetryWriter
from townlet.training.bc import BCTrainer, split_rows
from townlet.training.bc_gate import GATE_FIELDS, Gate, accuracy_threshold
from townlet.training.data import ReplayData, default_manifest, load_replay, resolve_manifest
from townlet.training.request import EpochCallback, PhaseSection, RunOutputs, TrainPlan, TrainRequest
from townlet.training.saver import PhaseSaver, phase_saver
from townlet.training.trainer import TrainResult, make_policy
from townlet.training.warm_start import Notify, WarmStartCheck, WarmStartPlan, load_weights, start_epoch


class BCPhase:
    name: str = "bc"
    modes: tuple[str, ...] = ("bc",)
    overrides: frozenset[str] = frozenset({"learning_rate"})

    def section(self, config: TownConfig) -> PhaseSection:
        return config.sections.bc

    def default_epochs(self, config: TownConfig, section: PhaseSection) -> int:
        assert isinstance(section, BCConfig)
        return section.epochs

    def log_path(self, request: TrainRequest) -> Path | None:
        return request.bc_log

    def load_data(
        self, request: TrainRequest, config: TownConfig, section: PhaseSection, mode: str
    ) -> ReplayData | None:
        assert isinstance(section, BCConfig)
        named = request.bc_manifest or (Path(section.manifest) if section.manifest else None)
        data_dir = request.capture_dir or request.rollout_save_dir  # capture, then clone what was captured
        if named is None and data_dir is None:
            named = default_manifest(config.config_id)  # the catalogue's dataset of this config
            if named is None:
                raise UsageError(
                    f"--mode bc needs --capture-dir DIR or --bc-manifest FILE|DATASET (or bc.manifest): "
                    f"{DEFAULT_VERSIONS} lists no active dataset of {config.config_id}"
                )
        return load_replay(resolve_manifest(named) if named is not None else None, data_dir)

    def check_plan(self, plan: TrainPlan) -> TrainPlan:
        """A resume continues on the data it was trained on (the manifest's SHA-256 names it):
        other data is refused, or, allowed, makes the checkpoint a warm start."""
        warm, data = plan.warm, plan.data
        assert data is not None
        if not warm.resume:
            return plan
        assert warm.check is not None and warm.check.checkpoint.training is not None
        dataset = data.fingerprint()
        was = warm.check.checkpoint.training.data.get("dataset") or {}
        if was.get("sha256") == dataset["sha256"]:
            return plan
        if not plan.section.warm_start.allow_mismatch:
            raise UsageError(
                f"{warm.check.checkpoint.path}: cannot resume: it was trained on {was.get('manifest')} "
                f"(sha256 {str(was.get('sha256'))[:12]}) but this run reads {dataset['manifest']} "
                f"(sha256 {str(dataset['sha256'])[:12]}); give the same data, or override with "
                "bc.warm_start.allow_mismatch: true or ALLOW_MISMATCH=1"
            )
        check = WarmStartCheck(warm.check.checkpoint, [*warm.check.problems, "dataset differs"])
        return dataclasses.replace(plan, warm=WarmStartPlan(check, warm.inherited_from))

    def run(self, plan: TrainPlan, *, on_epoch: EpochCallback | None, notify: Notify) -> RunOutputs:
        bc, data, meta = plan.section, plan.data, plan.meta
        assert isinstance(bc, BCConfig) and data is not None
        torch.manual_seed(plan.seed)
        policy = make_policy(meta, int(meta["obs_dim"]), len(meta["action_names"]), bc.hidden)
        load_weights(policy, plan.warm, notify)
        try:
            split = split_rows(data.samples, bc, seed=plan.seed)
            gate = Gate(split.holdout.actions, list(meta["action_names"]), accuracy_threshold(plan.config),
                        len(split.train_ids), len(split.holdout_ids))  # fmt: skip
            trainer = BCTrainer(policy, bc, split.train, split.holdout, seed=plan.seed, gate=gate)
        except ValueError as exc:
            raise UsageError(f"{data.manifest or 'bc data'}: {exc}") from None
        start = start_epoch(trainer, plan.warm, self.name, plan.epochs, notify)
        writer = plan.log.open(start) if plan.log is not None else None
        dataset = data.fingerprint()
        saver = phase_saver(plan, self.name, dataset=str(dataset["manifest"]))

        return run_gated(trainer, plan, saver, writer, on_epoch, dataset, start)


BC = BCPhase()


class GatedTrainer(Protocol):
    """What `run_gated` needs of a BC trainer (feed-forward `BCTrainer` or the memory phase's)."""

    policy: Any
    epoch: int
    steps: int
    best: dict[str, Any] | None
    last: dict[str, Any] | None

    def training_state(self, total_epochs: int, dataset: dict[str, Any]) -> TrainingState: ...

    def run(
        self,
        epochs: int,
        *,
        on_epoch: Callable[[dict[str, Any]], None] | None = ...,
        checkpoint_every: int | None = ...,
        save: Callable[[Any], None] | None = ...,
        on_best: Callable[[Any], None] | None = ...,
    ) -> list[dict[str, Any]]: ...


def run_gated(
    trainer: GatedTrainer,
    plan: TrainPlan,
    saver: PhaseSaver,
    writer: TelemetryWriter | None,
    on_epoch: EpochCallback | None,
    dataset: dict[str, Any],
    start: int,
) -> RunOutputs:
    """Run a BC trainer to `plan.epochs`: each checkpoint carries the gate's verdict on the held-out trajectories
    (`bc_gate` metadata), each epoch's record goes to the telemetry writer and the caller."""

    def gate_of(t: GatedTrainer) -> dict[str, str]:
        rec = t.last or {}
        return {"bc_gate": json.dumps({k: rec.get(k) for k in GATE_FIELDS}, sort_keys=True)} if rec else {}

    def save(t: GatedTrainer) -> None:
        saver.metadata = {**saver.metadata, **gate_of(t)}
        saver.latest(t.policy, epoch=t.epoch, steps=t.steps, training=t.training_state(plan.epochs, dataset))

    def epoch_done(rec: dict[str, Any]) -> None:
        if writer is not None:
            writer.write(rec)
        if on_epoch is not None:
            on_epoch(rec)

    t0 = time.perf_counter()
    records = trainer.run(
        plan.epochs,
        on_epoch=epoch_done,
        checkpoint_every=plan.checkpoint_every or None,
        save=save,
        on_best=lambda t: saver.offer_best(t.policy, t.best, t.steps, gate_of(t)),
    )
    if writer is not None:
        writer.close()
    save(trainer)
    result = TrainResult(plan.epochs, trainer.steps, records, seconds=time.perf_counter() - t0)
    return RunOutputs(result, plan.checkpoint, writer.path if writer else None, saver.best(), start)
