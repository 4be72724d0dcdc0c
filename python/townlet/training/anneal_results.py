"""`anneal_results.json`: what an anneal did, one pydantic model (`AnnealResults`), written atomically.

One entry per stage that ran (`BCStageResult`, `PPOStageResult`, told apart by `mode`), the verdict (`status`
PASS | HOLD | FAIL, with `reasons`), and the rollbacks: a failing stage's checkpoints restored from the copies
kept before it ran (`RollbackRecord`: the kept and restored SHA-256, which must be equal, and why). Exit
codes of `townlet train --mode anneal` and the promotion tool: `EXIT_CODES`. No torch here: the promotion
tool reads these files without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from townlet.errors import UsageError
from townlet.jsonio import atomic_write_bytes, canonical_json, read_json

FORMAT: Literal["townlet.anneal_results"] = "townlet.anneal_results"
FORMAT_VERSION: Literal[1] = 1

Status = Literal["PASS", "HOLD", "FAIL"]
#: Exit status of `townlet train --mode anneal` (and `run_training.py ... --mode anneal`) per verdict.
EXIT_CODES: dict[str, int] = {"PASS": 0, "HOLD": 3, "FAIL": 4}

_MODEL = ConfigDict(extra="forbid")


class BCStageResult(BaseModel):
    """A behaviour-cloning stage: passed when its held-out accuracy reaches `threshold` and beats the
    majority-action baseline (`reason` says why not)."""

    model_config = _MODEL
    mode: Literal["bc"] = "bc"
    stage: int
    passed: bool
    #: Held-out accuracy (None: nothing could be held out, which fails the gate).
    accuracy: float | None
    threshold: float
    baseline_accuracy: float | None = None
    per_action_recall: dict[str, float] = Field(default_factory=dict)
    heldout_trajectories: int | None = None
    train_trajectories: int | None = None
    epochs: int | None = None
    dataset: str | None = None
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    reason: str | None = None


class PPOStageResult(BaseModel):
    """A PPO stage: the last epoch's losses and queue-conflict events, their drift from the baselines (the
    previous PPO stage's, or the configured ones) and the flags that make the anneal HOLD."""

    model_config = _MODEL
    mode: Literal["ppo"] = "ppo"
    stage: int
    passed: bool
    data_mode: str
    epochs: int
    anneal_ratio: float
    loss_total: float
    kl: float
    queue_conflict_events: float
    queue_conflict_intensity_sum: float
    loss_baseline: float | None = None
    loss_drift: float | None = None
    queue_baseline: float | None = None
    queue_drift: float | None = None
    intensity_baseline: float | None = None
    intensity_drift: float | None = None
    #: loss_drift | queue_drift | intensity_drift: the bounds this stage broke.
    flags: list[str] = Field(default_factory=list)
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    telemetry: str | None = None


StageResult = Annotated[BCStageResult | PPOStageResult, Field(discriminator="mode")]


class RollbackRecord(BaseModel):
    """One checkpoint file put back as it was before a stage ran. `kept_sha256` is the copy's digest and
    `restored_sha256` the digest of the file after the restore (equal, or the rollback failed); None for both:
    there was no file before the stage, so the stage's file was removed. The rejected file is kept aside."""

    model_config = _MODEL
    stage: int
    mode: str
    path: str
    kept_copy: str | None
    kept_sha256: str | None
    restored_sha256: str | None
    rejected_sha256: str | None
    rejected_copy: str | None
    reason: str


class AnnealResults(BaseModel):
    model_config = _MODEL
    format: Literal["townlet.anneal_results"] = FORMAT
    format_version: Literal[1] = FORMAT_VERSION
    config_id: str
    config_path: str
    status: Status
    rolled_back: bool
    reasons: list[str]
    stages: list[StageResult]
    #: The stages the config asked for (`training.anneal.schedule`); a FAIL stops before the rest.
    schedule: list[dict[str, Any]]
    bounds: dict[str, float | None]
    rollbacks: list[RollbackRecord] = Field(default_factory=list)
    #: The PPO telemetry log the stages wrote their (anneal) records to.
    telemetry: str | None = None
    #: The rollback lineage files appended to (`rollbacks.jsonl` beside each restored checkpoint).
    lineage: list[str] = Field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]


def verdict(stages: list[BCStageResult | PPOStageResult]) -> tuple[Status, list[str]]:
    """FAIL when a BC stage failed, HOLD when a PPO stage broke a drift bound, else PASS; with the reasons."""
    reasons: list[str] = []
    failed = held = False
    for st in stages:
        if isinstance(st, BCStageResult) and not st.passed:
            failed = True
            reasons.append(f"bc_stage_failed_stage_{st.stage}: {st.reason or 'below the threshold'}")
        elif isinstance(st, PPOStageResult):
            for flag in st.flags:
                held = True
                reasons.append(f"{flag}_stage_{st.stage}: {describe_flag(st, flag)}")
    return ("FAIL" if failed else "HOLD" if held else "PASS"), reasons


def describe_flag(st: PPOStageResult, flag: str) -> str:
    value, base, drift = {
        "loss_drift": (st.loss_total, st.loss_baseline, st.loss_drift),
        "queue_drift": (st.queue_conflict_events, st.queue_baseline, st.queue_drift),
        "intensity_drift": (st.queue_conflict_intensity_sum, st.intensity_baseline, st.intensity_drift),
    }[flag]
    if base is None or drift is None:
        return f"{value:.6g} (no baseline recorded)"
    return f"{value:.6g} vs baseline {base:.6g} ({drift * 100:+.1f}%)"


def write_results(path: Path, results: AnnealResults) -> None:
    atomic_write_bytes(path, canonical_json(results.model_dump(mode="json")).encode())


def read_results(path: Path) -> AnnealResults:
    """An anneal_results.json, validated (one line naming the file and the first bad key otherwise)."""
    try:
        return AnnealResults.model_validate(read_json(path, "anneal results", finite=True))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise UsageError(f"{path}: {where}: {first['msg']}") from None
