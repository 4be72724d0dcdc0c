"""The anneal's PPO stage: train PPO from the BC weights (or on from the previous PPO stage), write each epoch to
the anneal's PPO telemetry log with its `anneal_*` fields, and judge the stage's drift from its baselines."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from townlet.errors import UsageError
from townlet.sim.config import TownConfig
from townlet.sim.settings import AnnealSection, AnnealStage
from townlet.telemetry.records import AnnealFields
from townlet.telemetry.writer import TelemetryWriter
from townlet.training.anneal_results import BCStageResult, PPOStageResult
from townlet.training.data import load_replay
from townlet.training.mixed import blend_ratio
from townlet.training.run import plan_phase, run


@dataclass
class Baselines:
    """What a PPO stage's loss and queue-conflict events are compared with: the configured values, else the
    previous PPO stage's."""

    loss: float | None = None
    queue: float | None = None
    intensity: float | None = None

    @staticmethod
    def configured(anneal: AnnealSection) -> Baselines:
        return Baselines(anneal.loss_baseline, anneal.queue_baseline, anneal.intensity_baseline)

    def after(self, stage: PPOStageResult, anneal: AnnealSection) -> Baselines:
        """The baselines of the next PPO stage: configured ones stay, the others roll to this stage's values."""
        return Baselines(
            anneal.loss_baseline if anneal.loss_baseline is not None else stage.loss_total,
            anneal.queue_baseline if anneal.queue_baseline is not None else stage.queue_conflict_events,
            anneal.intensity_baseline if anneal.intensity_baseline is not None else stage.queue_conflict_intensity_sum,
        )


def drift(value: float, baseline: float | None) -> float | None:
    """(value - baseline) / |baseline|; None without a (non-zero) baseline."""
    if baseline is None or baseline == 0:
        return None
    return (value - baseline) / abs(baseline)


def flags_of(
    loss: float, queue: float, intensity: float, base: Baselines, anneal: AnnealSection
) -> dict[str, tuple[float | None, bool]]:
    """flag -> (drift, broken) for the loss, queue-event and intensity bounds."""
    out: dict[str, tuple[float | None, bool]] = {}
    for name, value, baseline, bound in (
        ("loss_drift", loss, base.loss, anneal.loss_drift_max),
        ("queue_drift", queue, base.queue, anneal.queue_drift_max),
        ("intensity_drift", intensity, base.intensity, anneal.queue_drift_max),
    ):
        d = drift(value, baseline)
        out[name] = (d, d is not None and abs(d) > bound)
    return out


@dataclass
class AnnealLog:
    """The anneal's PPO telemetry log: one writer for every PPO stage, so the stages' records form one stream
    (epochs continue across stages that resume; `log_stream_offset` always increases)."""

    path: Path
    writer: TelemetryWriter | None = None
    written: int = 0

    def write(self, record: dict[str, Any]) -> None:
        if self.writer is None:
            self.writer = TelemetryWriter(self.path)
        self.writer.write(record)
        self.written += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@dataclass
class StageContext:
    """What a PPO stage's records carry about the anneal so far."""

    stage: int
    bc: BCStageResult | None
    baselines: Baselines
    ratio: float
    dataset: str | None = None

    def anneal_fields(self, record: dict[str, Any], anneal: AnnealSection) -> dict[str, Any]:
        """The `anneal_*` fields of one epoch record (validated by `AnnealFields`)."""
        flags = flags_of(
            float(record["loss_total"]),
            float(record.get("queue_conflict_events", 0.0)),
            float(record.get("queue_conflict_intensity_sum", 0.0)),
            self.baselines,
            anneal,
        )
        bc = self.bc
        values: dict[str, Any] = {
            "anneal_stage": "ppo",
            "anneal_cycle": self.stage,
            "anneal_dataset": self.dataset,
            "anneal_bc_accuracy": bc.accuracy if bc is not None else None,
            "anneal_bc_threshold": bc.threshold if bc is not None else None,
            "anneal_bc_passed": bc.passed if bc is not None else None,
            "anneal_loss_baseline": self.baselines.loss,
            "anneal_queue_baseline": self.baselines.queue,
            "anneal_intensity_baseline": self.baselines.intensity,
            "anneal_loss_flag": flags["loss_drift"][1],
            "anneal_queue_flag": flags["queue_drift"][1],
            "anneal_intensity_flag": flags["intensity_drift"][1],
            "anneal_ratio": self.ratio,
        }
        checked = AnnealFields.model_validate({k: v for k, v in values.items() if v is not None})
        return checked.model_dump(exclude_none=True)


def stage_data(config: TownConfig, mode: str) -> Any:
    """The replay data of a stage that replays (`training.replay_manifest`), else None."""
    if mode not in ("replay", "mixed"):
        return None
    manifest = config.sections.training.replay_manifest
    if manifest is None:
        raise UsageError(f"{config.path}: training.anneal: a {mode} PPO stage needs training.replay_manifest")
    try:
        return load_replay(Path(manifest), None)
    except ValueError as exc:
        raise UsageError(f"{config.path}: training.replay_manifest: {exc}") from None


def run_ppo_stage(
    config: TownConfig,
    stage: AnnealStage,
    ctx: StageContext,
    *,
    anneal: AnnealSection,
    log: AnnealLog,
    load_from: Path | None,
    save_to: Path,
    best: Path,
    trained_epochs: int,
    notify: Callable[[str], None],
) -> PPOStageResult:
    """Train one PPO stage from `load_from`: the BC checkpoint (its weights), or the previous PPO stage's
    checkpoint (that run continues for this stage's epochs, after `trained_epochs`); None: fresh weights."""
    epochs = stage.epochs or config.sections.training.epochs
    ppo = config.sections.ppo
    warm = ppo.warm_start.model_copy(
        update={
            "load_path": str(load_from) if load_from is not None else None,
            "inherit": None,
            "save_path": str(save_to),
            "best_path": str(best),
        }
    )
    planned = plan_phase(
        config,
        ppo.model_copy(update={"warm_start": warm}),
        mode=stage.data_mode,
        epochs=trained_epochs + epochs,
        seed=config.seed,
        data=stage_data(config, stage.data_mode),
        checkpoint=save_to,
    )
    planned = dataclasses.replace(planned, anneal_ratio=stage.anneal_ratio)
    records: list[dict[str, Any]] = []

    def on_epoch(rec: dict[str, Any]) -> None:
        rec.update(ctx.anneal_fields(rec, anneal))
        records.append(rec)
        log.write(rec)

    run(planned, on_epoch=on_epoch, on_notice=notify)
    if not records:
        raise UsageError(f"{planned.checkpoint}: the PPO stage trained no epoch")
    last = records[-1]
    loss, kl = float(last["loss_total"]), float(last["kl_divergence"])
    queue, intensity = float(last["queue_conflict_events"]), float(last["queue_conflict_intensity_sum"])
    flags = flags_of(loss, queue, intensity, ctx.baselines, anneal)
    return PPOStageResult(
        stage=ctx.stage,
        passed=not any(broken for _, broken in flags.values()),
        data_mode=stage.data_mode,
        epochs=epochs,
        anneal_ratio=ctx.ratio,
        loss_total=loss,
        kl=kl,
        queue_conflict_events=queue,
        queue_conflict_intensity_sum=intensity,
        loss_baseline=ctx.baselines.loss,
        loss_drift=flags["loss_drift"][0],
        queue_baseline=ctx.baselines.queue,
        queue_drift=flags["queue_drift"][0],
        intensity_baseline=ctx.baselines.intensity,
        intensity_drift=flags["intensity_drift"][0],
        flags=[name for name, (_, broken) in flags.items() if broken],
        checkpoint=str(planned.checkpoint),
        telemetry=str(log.path),
    )


def stage_ratio(config: TownConfig, stage: AnnealStage) -> float:
    """The learned share of a stage's rollout actions (1.0: no blend)."""
    ratio = blend_ratio(stage.data_mode, config.sections.training.anneal_ratio, stage.anneal_ratio)
    return 1.0 if ratio is None else ratio
