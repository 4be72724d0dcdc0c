"""Promotion gate over an anneal's results (`tools/promotion_evaluate.py`, `townlet promotion evaluate`).

PROMOTE when the anneal PASSed (every BC stage at or above its threshold and above the majority baseline, no
PPO drift flag), nothing was rolled back, and the candidate (the last stage's checkpoint) is the file the anneal
wrote; HOLD when it HOLDs (promotion frozen) or the candidate cannot be vouched for; FAIL when it FAILed or was
rolled back (seed 000: FAIL requires rollback, HOLD freezes promotion). The status is checked against the
stages, so a hand-edited `"status": "PASS"` over a failed stage is a FAIL. Exit codes as the anneal's:
PROMOTE 0, HOLD 3, FAIL 4. No torch here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from townlet.errors import UsageError
from townlet.jsonio import read_json
from townlet.training.anneal_results import AnnealResults, verdict

Decision = Literal["PROMOTE", "HOLD", "FAIL"]
DECISION_EXIT: dict[str, int] = {"PROMOTE": 0, "HOLD": 3, "FAIL": 4}


class PromotionDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Decision
    input: str
    config_id: str | None
    status: str | None
    rolled_back: bool
    reasons: list[str]
    #: The policy that would be promoted (the last stage's checkpoint) and its recorded SHA-256.
    candidate: str | None = None
    candidate_sha256: str | None = None
    #: Observations that do not change the decision.
    notes: list[str] = Field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return DECISION_EXIT[self.decision]


class SimplePayload(BaseModel):
    """The short form: one BC accuracy and its threshold (the prior tool's simple payload)."""

    model_config = ConfigDict(extra="forbid")
    bc_accuracy: float
    bc_threshold: float
    config_id: str | None = None


def evaluate_file(path: Path) -> PromotionDecision:
    """The decision for an anneal_results.json (or a simple {bc_accuracy, bc_threshold} object)."""
    payload = read_json(path, "anneal results", finite=True)
    if not isinstance(payload, dict):
        raise UsageError(f"{path}: expected a JSON object (anneal_results.json)")
    return evaluate_payload(payload, where=str(path))


def evaluate_payload(payload: dict[str, Any], *, where: str = "<payload>") -> PromotionDecision:
    if "stages" not in payload and "bc_accuracy" in payload:
        return _evaluate_simple(payload, where)
    try:
        results = AnnealResults.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise UsageError(f"{where}: {key}: {first['msg']}") from None
    return evaluate_results(results, where=where)


def _evaluate_simple(payload: dict[str, Any], where: str) -> PromotionDecision:
    try:
        simple = SimplePayload.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UsageError(f"{where}: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    ok = simple.bc_accuracy >= simple.bc_threshold
    reason = f"bc_accuracy {simple.bc_accuracy:.4g} {'>=' if ok else '<'} bc_threshold {simple.bc_threshold:.4g}"
    return PromotionDecision(
        decision="PROMOTE" if ok else "FAIL",
        input=where,
        config_id=simple.config_id,
        status="PASS" if ok else "FAIL",
        rolled_back=False,
        reasons=[reason],
        notes=["simple payload: no stages, no rollback record, no candidate checkpoint to check"],
    )


def evaluate_results(results: AnnealResults, *, where: str = "<results>") -> PromotionDecision:
    derived, derived_reasons = verdict(list(results.stages))
    reasons: list[str] = []
    notes: list[str] = []
    decision: Decision = "PROMOTE"
    if derived != results.status:
        reasons.append(f"status_mismatch: the file says {results.status} but its stages give {derived}")
    worst = max((results.status, derived), key=["PASS", "HOLD", "FAIL"].index)
    if worst == "FAIL" or results.rolled_back:
        decision = "FAIL"
    elif worst == "HOLD":
        decision = "HOLD"
    reasons += results.reasons or derived_reasons
    if results.rolled_back and not any(r.startswith("rolled_back") for r in reasons):
        reasons.append(f"rolled_back: {len(results.rollbacks)} checkpoint file(s) restored")
    # A rolled-back stage's checkpoint is not a candidate: its file now holds the previous policy.
    candidate = results.stages[-1] if results.stages and not results.rolled_back else None
    if not results.stages:
        decision = "HOLD" if decision == "PROMOTE" else decision
        reasons.append("nothing_trained: the anneal ran no stage")
    elif decision == "PROMOTE" and candidate is not None:
        check = _check_candidate(candidate.checkpoint, candidate.checkpoint_sha256)
        if check is not None:
            decision = "HOLD"
            reasons.append(check)
    if decision == "PROMOTE":
        kinds = ", ".join(f"{s.mode} {'passed' if s.passed else 'flagged'}" for s in results.stages)
        reasons.insert(0, f"anneal PASS: every stage passed ({kinds}); nothing rolled back")
    if candidate is not None and candidate.checkpoint and not Path(candidate.checkpoint).is_file():
        notes.append(f"candidate {candidate.checkpoint} is not here to check (evaluated elsewhere?)")
    return PromotionDecision(
        decision=decision,
        input=where,
        config_id=results.config_id,
        status=results.status,
        rolled_back=results.rolled_back,
        reasons=reasons,
        candidate=candidate.checkpoint if candidate is not None else None,
        candidate_sha256=candidate.checkpoint_sha256 if candidate is not None else None,
        notes=notes,
    )


def _check_candidate(path: str | None, recorded: str | None) -> str | None:
    """Why the candidate checkpoint cannot be vouched for (None: it is the file the anneal wrote, or not here)."""
    if path is None or recorded is None:
        return "candidate_unrecorded: the last stage recorded no checkpoint digest"
    p = Path(path)
    if not p.is_file():
        return None  # evaluated away from the checkpoints: noted, not held
    actual = hashlib.sha256(p.read_bytes()).hexdigest()
    if actual != recorded:
        return f"candidate_changed: {path} has sha256 {actual[:12]}, the anneal wrote {recorded[:12]}"
    return None


def render_human(d: PromotionDecision) -> str:
    head = f"{d.decision}: {d.input}"
    if d.config_id is not None:
        head += f" ({d.config_id}, anneal {d.status}{', rolled back' if d.rolled_back else ''})"
    lines = [head, *(f"  reason: {r}" for r in d.reasons)]
    if d.candidate:
        lines.append(f"  candidate: {d.candidate} (sha256 {str(d.candidate_sha256)[:12]})")
    lines += [f"  note: {n}" for n in d.notes]
    return "\n".join(lines) + "\n"
