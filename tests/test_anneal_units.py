"""The anneal's parts on their own: the rollback guard (real files), the verdict, the promotion gate's decisions
(a tampered status, a changed candidate), and the mixed-mode blend of learned and scripted actions."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import DEFAULT_CONFIG
from townlet.sim.config import load_config
from townlet.sim.env import VecTown
from townlet.telemetry.records import is_anneal_record
from townlet.training.anneal_promotion import evaluate_payload
from townlet.training.anneal_results import AnnealResults, BCStageResult, PPOStageResult, verdict
from townlet.training.anneal_rollback import RollbackError, StageGuard
from townlet.training.mixed import BlendActor
from townlet.training.trainer import make_policy


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_stage_guard_restores_byte_for_byte_and_removes_what_was_not_there(tmp_path: Path) -> None:
    latest, best = tmp_path / "ck" / "bc_latest.json", tmp_path / "ck" / "bc_best.json"
    latest.parent.mkdir()
    latest.write_bytes(b'{"weights": "before"}')
    guard = StageGuard(1, "bc", [latest, best], tmp_path / "rollback")
    guard.keep()
    latest.write_bytes(b'{"weights": "after a failed stage"}')
    best.write_bytes(b'{"weights": "new best"}')
    records = guard.restore("stage 1 (bc) failed the gate")
    assert latest.read_bytes() == b'{"weights": "before"}' and not best.exists()
    restored, removed = records
    assert restored.kept_sha256 == restored.restored_sha256 == sha(b'{"weights": "before"}')
    assert restored.rejected_sha256 == sha(b'{"weights": "after a failed stage"}')
    assert Path(str(restored.rejected_copy)).read_bytes() == b'{"weights": "after a failed stage"}'
    assert removed.kept_sha256 is None and removed.restored_sha256 is None and removed.path == str(best)
    # An untouched file needs no restore.
    guard.keep()
    assert guard.restore("nothing changed") == []


def test_a_restore_that_does_not_reproduce_the_kept_file_is_an_error(tmp_path: Path) -> None:
    ck = tmp_path / "ppo_latest.json"
    ck.write_bytes(b"kept")
    guard = StageGuard(2, "ppo", [ck], tmp_path / "rollback")
    (kept,) = guard.keep()
    assert kept.copy is not None
    kept.copy.write_bytes(b"the copy was damaged")
    ck.write_bytes(b"stage output")
    with pytest.raises(RollbackError, match="rollback failed"):
        guard.restore("x")


def bc(passed: bool, accuracy: float = 0.9) -> BCStageResult:
    return BCStageResult(stage=1, passed=passed, accuracy=accuracy, threshold=0.8, baseline_accuracy=0.4)


def ppo(flags: list[str], checkpoint: str | None = None, digest: str | None = None) -> PPOStageResult:
    return PPOStageResult(
        stage=2, passed=not flags, data_mode="rollout", epochs=1, anneal_ratio=1.0, loss_total=0.2, kl=0.01,
        queue_conflict_events=10.0, queue_conflict_intensity_sum=20.0, loss_baseline=0.1, loss_drift=1.0,
        flags=flags, checkpoint=checkpoint, checkpoint_sha256=digest,
    )  # fmt: skip


def test_verdicts() -> None:
    assert verdict([bc(True), ppo([])]) == ("PASS", [])
    status, reasons = verdict([bc(True), ppo(["loss_drift"])])
    assert status == "HOLD" and reasons == ["loss_drift_stage_2: 0.2 vs baseline 0.1 (+100.0%)"]
    assert verdict([bc(False)])[0] == "FAIL"


def results(stages: list[Any], status: str, **kw: Any) -> dict[str, Any]:
    model = AnnealResults(config_id="c", config_path="c.yaml", status=status, rolled_back=False, reasons=[],
                          stages=stages, schedule=[], bounds={}, **kw)  # fmt: skip
    return model.model_dump(mode="json")


def test_promotion_decisions(tmp_path: Path) -> None:
    ck = tmp_path / "ppo_latest.json"
    ck.write_bytes(b"candidate")
    good = results([bc(True), ppo([], str(ck), sha(b"candidate"))], "PASS")
    assert evaluate_payload(good).decision == "PROMOTE"
    # A hand-edited status over a failed stage is a FAIL; a HOLD holds.
    tampered = results([bc(False)], "PASS")
    d = evaluate_payload(tampered)
    assert d.decision == "FAIL" and d.reasons[0].startswith(
        "status_mismatch: the file says PASS but its stages give FAIL"
    )
    assert evaluate_payload(results([bc(True), ppo(["queue_drift"])], "HOLD")).decision == "HOLD"
    # The candidate changed since the anneal wrote it: HOLD.
    ck.write_bytes(b"someone else's weights")
    d = evaluate_payload(good)
    assert d.decision == "HOLD" and d.reasons[-1].startswith("candidate_changed: ")
    # The short form.
    assert evaluate_payload({"bc_accuracy": 0.95, "bc_threshold": 0.9}).decision == "PROMOTE"
    assert evaluate_payload({"bc_accuracy": 0.5, "bc_threshold": 0.9}).decision == "FAIL"


def blend_setup(ratio: float) -> tuple[BlendActor, VecTown, torch.Tensor, torch.Tensor]:
    config = load_config(DEFAULT_CONFIG)
    vec = VecTown(config, 2, 7)
    obs, _ = vec.reset(7)
    torch.manual_seed(0)
    policy = make_policy(vec.observation_metadata(), vec.obs_dim, vec.n_actions, 32)
    return BlendActor(policy, vec, ratio), vec, torch.from_numpy(obs), torch.from_numpy(vec.action_masks())


def test_blend_at_ratio_zero_is_the_expert_and_at_one_the_policy() -> None:
    actor, vec, obs, masks = blend_setup(0.0)
    action, logp, _ = actor(obs, masks, torch.Generator().manual_seed(1))
    assert np.array_equal(action.numpy(), vec.expert_actions()[0])
    assert torch.all(logp == 0.0)  # the expert alone: the behaviour probability of its action is 1
    actor, _, obs, masks = blend_setup(1.0)
    action, logp, _ = actor(obs, masks, torch.Generator().manual_seed(1))
    expected, _, _ = actor.policy.evaluate(obs, masks, action)
    assert torch.allclose(logp, expected, atol=1e-6) and actor.learned == actor.acted


def test_blend_mixes_at_its_ratio_with_the_mixture_probability() -> None:
    actor, vec, obs, masks = blend_setup(0.5)
    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        action, logp, _ = actor(obs, masks, gen)
        expert = torch.from_numpy(vec.expert_actions()[0].copy())
        p_policy = actor.policy.evaluate(obs, masks, action)[0].exp()
        mixture = 0.5 * p_policy + 0.5 * (action == expert).float()
        assert torch.allclose(logp, mixture.log(), atol=1e-5)
    share = actor.learned / actor.acted
    assert 0.35 < share < 0.65, share


def test_anneal_ratio_alone_does_not_make_an_anneal_record() -> None:
    assert not is_anneal_record({"anneal_ratio": 0.5, "data_mode": "mixed"})
    assert is_anneal_record({"anneal_ratio": 0.5, "anneal_stage": "ppo"})


class CrashingHarness:
    """A harness whose BC stage writes its checkpoint and then dies (a killed trainer, a full disk)."""

    def __init__(self, config: Any) -> None:
        self.config, self.root = config, None

    def run_bc_training(self, **kw: Any) -> Any:
        Path(self.config.sections.bc.warm_start.save_path).write_bytes(b"half-written weights")
        raise OSError("disk full")


def test_a_stage_that_raises_is_rolled_back_too(tmp_path: Path) -> None:
    from townlet.training.anneal import run_anneal

    config = load_config(DEFAULT_CONFIG)
    latest = Path(config.sections.bc.warm_start.save_path)
    latest.parent.mkdir(parents=True)
    latest.write_bytes(b"the good policy")
    with pytest.raises(OSError, match="disk full"):
        run_anneal(CrashingHarness(config), tmp_path / "logs")  # type: ignore[arg-type]
    assert latest.read_bytes() == b"the good policy"
    (line,) = (latest.parent / "rollbacks.jsonl").read_text(encoding="utf-8").splitlines()
    assert '"reason":"stage 1 (bc) did not finish: disk full"' in line
    assert not (tmp_path / "logs" / "anneal_results.json").exists()  # no partial results


def test_drift_flags() -> None:
    from townlet.sim.settings import AnnealSection
    from townlet.training.anneal_ppo import Baselines, flags_of

    bounds = AnnealSection(loss_drift_max=0.1, queue_drift_max=0.15)
    base = Baselines(loss=1.0, queue=20.0, intensity=0.0)
    flags = flags_of(1.05, 16.0, 5.0, base, bounds)
    assert flags["loss_drift"] == (pytest.approx(0.05), False)
    assert flags["queue_drift"] == (pytest.approx(-0.2), True)  # 20 % fewer queue conflicts than the baseline
    assert flags["intensity_drift"] == (None, False)  # a zero baseline has no relative drift
    assert flags_of(0.8, 23.0, 0.0, Baselines(), bounds)["loss_drift"] == (None, False)  # nothing to drift from
    assert flags_of(-0.8, 23.5, 0.0, Baselines(loss=-1.0, queue=20.0), bounds)["queue_drift"][1] is True


def test_watch_breaches_carry_the_anneal_verdict() -> None:
    from townlet.telemetry.thresholds import Thresholds
    from townlet.telemetry.watch import check_thresholds

    rec = {"epoch": 1, "loss_total": 2.0, "anneal_stage": "ppo", "anneal_bc_accuracy": 0.5, "anneal_loss_baseline": 1.0}
    bc_low, loss_drift = check_thresholds(rec, Thresholds(), "LOG:1")
    assert (bc_low.flag, bc_low.verdict, bc_low.exit_code, bc_low.as_json()["verdict"]) == (
        "--anneal-bc-min",
        "FAIL",
        4,
        "FAIL",
    )
    assert (loss_drift.flag, loss_drift.verdict, loss_drift.exit_code) == ("--anneal-loss-max", "HOLD", 3)
    (kl,) = check_thresholds({"epoch": 1, "kl_divergence": 1.0}, Thresholds(kl_threshold=0.1, anneal_bc_min=None,
                                                                          anneal_loss_max=None), "LOG:1")  # fmt: skip
    assert kl.verdict is None and kl.exit_code == 1


def test_every_results_field_is_documented(repo_root: Path) -> None:
    doc = (repo_root / "docs" / "anneal.md").read_text(encoding="utf-8")
    from townlet.training.anneal_results import RollbackRecord

    for model in (AnnealResults, BCStageResult, PPOStageResult, RollbackRecord):
        missing = [name for name in model.model_fields if f"`{name}`" not in doc]
        assert not missing, f"docs/anneal.md does not name {model.__name__} fields {missing}"
