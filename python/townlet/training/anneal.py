"""The BC -> PPO anneal (`townlet train --mode anneal`, `TrainingHarness(config).run_anneal(log_dir=...)`).

The stages of `training.anneal.schedule` run in order (docs/anneal.md):

* a **bc** stage trains behaviour cloning (`TrainingHarness.run_bc_training`) and is judged on held-out
  trajectories against `training.anneal_accuracy_threshold` (else `training.bc.accuracy_threshold`) and the
  majority-action baseline. Below it the anneal FAILs and stops: the stage's checkpoint is rolled back;
* a **ppo** stage trains PPO from the BC weights (a PPO stage right after another continues it), writes each
  epoch with its `anneal_*` fields to the anneal's PPO telemetry log, and compares its last epoch's
  `loss_total`, queue-conflict events and intensity with their baselines (configured, else the previous PPO
  stage's): a drift beyond `loss_drift_max` / `queue_drift_max` HOLDs the anneal (promotion frozen; the
  checkpoint stays, for inspection).

Rollback is real: before each stage its checkpoint files are copied aside, and a failing (or crashing) stage
restores them byte for byte (`anneal_rollback`). Everything lands in `<log_dir>/anneal_results.json`
(`anneal_results.AnnealResults`), written atomically, which `run_anneal` returns parsed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from townlet.clock import utc_stamp
from townlet.errors import UsageError
from townlet.paths import check_output
from townlet.sim.config import TownConfig
from townlet.sim.settings import CONFIG_ID, AnnealSection, AnnealStage, best_path_for, config_folder
from townlet.training.anneal_ppo import AnnealLog, Baselines, StageContext, run_ppo_stage, stage_ratio
from townlet.training.anneal_results import (
    AnnealResults,
    BCStageResult,
    PPOStageResult,
    RollbackRecord,
    verdict,
    write_results,
)
from townlet.training.anneal_rollback import StageGuard, append_lineage, sha256_of
from townlet.training.bc_gate import accuracy_threshold

RESULTS_FILE = "anneal_results.json"
#: The PPO telemetry log in the log folder when none is given.
PPO_LOG_FILE = "ppo_anneal.jsonl"

Notify = Callable[[str], None]


class BCOutcome(Protocol):
    """What `run_bc_training` returns (`harness.BCResult`), as far as the anneal reads it."""

    @property
    def accuracy(self) -> float | None: ...
    @property
    def baseline_accuracy(self) -> float | None: ...
    @property
    def threshold(self) -> float: ...
    @property
    def passed(self) -> bool: ...
    @property
    def per_action_recall(self) -> dict[str, float]: ...
    @property
    def heldout_trajectories(self) -> int: ...
    @property
    def train_trajectories(self) -> int: ...
    @property
    def checkpoint(self) -> str: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def epochs(self) -> int: ...
    @property
    def dataset(self) -> str | None: ...


class Harness(Protocol):
    """`TrainingHarness` as the anneal uses it."""

    config: TownConfig
    root: Path | None

    def run_bc_training(
        self, *, manifest: str | None = ..., threshold: float | None = ..., epochs: int | None = ...
    ) -> BCOutcome: ...


def default_log_dir(config: TownConfig) -> Path:
    """`training.anneal.log_dir` (`{config_id}` filled in), else `logs/<config_id>/anneal`, beside the config's
    per-phase checkpoint folders."""
    given = config.sections.training.anneal.log_dir or f"logs/{CONFIG_ID}/anneal"
    return Path(given.replace(CONFIG_ID, config_folder(config.config_id)))


def run_anneal(
    harness: Harness,
    log_dir: str | Path | None = None,
    *,
    ppo_log: str | Path | None = None,
    manifest: str | None = None,
    threshold: float | None = None,
    on_notice: Notify | None = None,
) -> dict[str, Any]:
    """Run the anneal schedule and write `<log_dir>/anneal_results.json`; returns its parsed content.
    `threshold` overrides the BC stages' gate; `manifest` their dataset (default: the harness's);
    `ppo_log` the PPO stages' telemetry log (default `<log_dir>/ppo_anneal.jsonl`)."""
    config = harness.config
    anneal = config.sections.training.anneal

    def at(path: str | Path) -> Path:
        p = Path(path)
        return harness.root / p if harness.root is not None and not p.is_absolute() else p

    folder = at(log_dir) if log_dir is not None else at(default_log_dir(config))
    results_path = folder / RESULTS_FILE
    log = AnnealLog(at(ppo_log) if ppo_log is not None else folder / PPO_LOG_FILE)
    check_output(results_path, "--anneal-log-dir")
    check_output(log.path, "--ppo-log")
    gate = threshold if threshold is not None else accuracy_threshold(config, anneal=True)
    notify: Notify = on_notice or (lambda line: None)
    for n, stage in enumerate(anneal.schedule):
        if stage.anneal_ratio is not None and (stage.mode != "ppo" or stage.data_mode != "mixed"):
            raise UsageError(
                f"{config.path}: training.anneal.schedule[{n}].anneal_ratio: only a ppo stage in mixed data mode "
                "blends (give data_mode: mixed, or drop it)"
            )
    paths = Checkpoints.of(config, at)
    if any(stage.mode == "ppo" for stage in anneal.schedule):  # BC checks its own before it trains
        check_output(paths.ppo[0], "ppo.warm_start.save_path")
        check_output(paths.ppo[1], "ppo.warm_start.best_path")

    stages: list[BCStageResult | PPOStageResult] = []
    rollbacks: list[RollbackRecord] = []
    lineage: list[Path] = []
    last_bc: BCStageResult | None = None
    baselines = Baselines.configured(anneal)
    ppo_run: tuple[Path, int] | None = None  # the PPO checkpoint this anneal trained, and its epochs
    try:
        for index, stage in enumerate(anneal.schedule, start=1):
            files = paths.bc if stage.mode == "bc" else paths.ppo
            guard = StageGuard(index, stage.mode, list(files), folder / "rollback" / f"stage_{index}_{stage.mode}")
            guard.keep()
            try:
                result: BCStageResult | PPOStageResult
                if stage.mode == "bc":
                    last_bc = result = bc_stage(harness, index, stage, manifest, gate, paths)
                    ppo_run = None  # the next PPO stage starts from these weights
                else:
                    ctx = StageContext(index, last_bc, baselines, stage_ratio(config, stage), dataset_name(last_bc))
                    result = run_ppo_stage(
                        config, stage, ctx, anneal=anneal, log=log,
                        load_from=ppo_run[0] if ppo_run else paths.ppo_start(),
                        save_to=paths.ppo[0], best=paths.ppo[1], trained_epochs=ppo_run[1] if ppo_run else 0,
                        notify=notify,
                    )  # fmt: skip
                    result.checkpoint_sha256 = sha256_of(paths.ppo[0])
                    ppo_run = (paths.ppo[0], (ppo_run[1] if ppo_run else 0) + result.epochs)
                    baselines = baselines.after(result, anneal)
            except BaseException as exc:
                done = guard.restore(f"stage {index} ({stage.mode}) did not finish: {exc}")
                append_lineage(done, utc_stamp())
                raise
            stages.append(result)
            if isinstance(result, BCStageResult) and not result.passed:
                why = f"stage {index} (bc) failed the gate: {result.reason or 'below the threshold'}; rolled back"
                done = guard.restore(why)
                rollbacks += done
                lineage += [p for p in append_lineage(done, utc_stamp()) if p not in lineage]
                notify(f"anneal: {why} ({len(done)} checkpoint file(s))")
                break
    finally:
        log.close()
    status, reasons = verdict(stages)
    if rollbacks:
        reasons.append(
            "rolled_back: "
            + "; ".join(
                f"{r.path} restored to sha256 {r.kept_sha256[:12]}" if r.kept_sha256 else f"{r.path} removed"
                for r in rollbacks
            )
        )
    results = AnnealResults(
        config_id=config.config_id,
        config_path=str(config.path),
        status=status,
        rolled_back=bool(rollbacks),
        reasons=reasons,
        stages=stages,
        schedule=[
            s.model_dump(exclude_none=True, exclude={"data_mode"} if s.mode == "bc" else None) for s in anneal.schedule
        ],
        bounds=bounds_of(anneal, gate),
        rollbacks=rollbacks,
        telemetry=str(log.path) if log.written else None,
        lineage=[str(p) for p in lineage],
    )
    write_results(results_path, results)
    return results.model_dump(mode="json")


def bounds_of(anneal: AnnealSection, gate: float) -> dict[str, float | None]:
    return {
        "bc_accuracy_threshold": gate,
        "loss_drift_max": anneal.loss_drift_max,
        "queue_drift_max": anneal.queue_drift_max,
        "loss_baseline": anneal.loss_baseline,
        "queue_baseline": anneal.queue_baseline,
        "intensity_baseline": anneal.intensity_baseline,
    }


def dataset_name(bc: BCStageResult | None) -> str | None:
    return Path(bc.dataset).stem if bc is not None and bc.dataset else None


class Checkpoints:
    """The checkpoint files the stages write (per config id, rooted like the harness's), latest and best."""

    def __init__(self, bc: tuple[Path, Path], ppo: tuple[Path, Path], ppo_load: Path | None, inherit: bool) -> None:
        self.bc, self.ppo, self.ppo_load, self.inherit = bc, ppo, ppo_load, inherit

    @staticmethod
    def of(config: TownConfig, at: Callable[[str | Path], Path]) -> Checkpoints:
        bc, ppo = config.sections.bc.warm_start, config.sections.ppo.warm_start
        return Checkpoints(
            (at(bc.save_path), at(bc.best())),
            (at(ppo.save_path), at(ppo.best_path or best_path_for(ppo.save_path))),
            at(ppo.load_path) if ppo.load_path else None,
            ppo.inherit == "bc",
        )

    def ppo_start(self) -> Path | None:
        """Where the first PPO stage starts: `ppo.warm_start.load_path`, else the BC checkpoint."""
        if self.ppo_load is not None:
            return self.ppo_load
        return self.bc[0] if self.inherit and self.bc[0].is_file() else None


def bc_stage(
    harness: Harness, index: int, stage: AnnealStage, manifest: str | None, gate: float, paths: Checkpoints
) -> BCStageResult:
    """Train and judge one BC stage (its checkpoint: `bc.warm_start.save_path`)."""
    res = harness.run_bc_training(manifest=manifest, threshold=gate, epochs=stage.epochs)
    checkpoint = Path(res.checkpoint)
    if checkpoint != paths.bc[0]:
        raise UsageError(f"{checkpoint}: the BC stage saved outside its kept checkpoint {paths.bc[0]}")
    return BCStageResult(
        stage=index,
        passed=res.passed,
        accuracy=res.accuracy,
        threshold=res.threshold,
        baseline_accuracy=res.baseline_accuracy,
        per_action_recall=dict(res.per_action_recall),
        heldout_trajectories=res.heldout_trajectories,
        train_trajectories=res.train_trajectories,
        epochs=res.epochs,
        dataset=res.dataset,
        checkpoint=str(checkpoint),
        checkpoint_sha256=sha256_of(checkpoint) if checkpoint.is_file() else None,
        reason=res.reason,
    )
