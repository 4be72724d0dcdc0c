"""Behaviour cloning judged honestly, through `TrainingHarness` and `townlet train --mode bc` (issue 13):

* the held-out set is whole trajectories (samples), chosen from the seed, never rows of a trained trajectory;
* the default town's expert set clones far above its majority-action baseline, and the gate, the baseline and the
  per-action recall are in the BC log and the checkpoint metadata;
* a held-out set where one action is always right fails the gate, whatever the accuracy;
* a dataset whose bytes do not match its checksum sheet is refused, one line naming the sample, nothing written;
* the threshold comes from the config (`training.bc.accuracy_threshold`, `training.anneal_accuracy_threshold`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from conftest import REPO_ROOT, assert_one_line_error, run_cli
from townlet import load_config
from townlet.artifacts.checkpoint import load_checkpoint
from townlet.errors import UsageError
from townlet.sim.settings import BCConfig
from townlet.training import BCResult, TrainingHarness
from townlet.training.bc import holdout_trajectories, split_rows
from townlet.training.bc_gate import DEFAULT_THRESHOLD, accuracy_threshold

BC_DIR = REPO_ROOT / "data/bc_datasets"
EXPERT = BC_DIR / "manifests/poc_hybrid_expert_v1.json"
IDLE = BC_DIR / "manifests/idle_v1.json"
IDLE_SAMPLE = "idle_s4242_bob_002.npz"


def overlay(base: str, name: str, **sections: dict[str, Any]) -> Path:
    """A copy of the config `base` (relative to configs/) in the scratch folder with `sections` merged in."""
    raw = yaml.safe_load((Path("configs") / base).read_text())  # includes are repository-relative paths
    for key, value in sections.items():
        raw[key] = {**(raw.get(key) or {}), **value}
    path = Path(name)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def fake_samples(n: int, t: int = 12) -> list[dict[str, np.ndarray]]:
    """`n` trajectories whose every observation holds the trajectory's index (dead for the last two ticks)."""
    out = []
    for i in range(n):
        alive = np.ones(t, bool)
        alive[-2:] = False
        out.append(
            {
                "obs": np.full((t, 3), float(i), np.float32),
                "action_masks": np.ones((t, 4), bool),
                "actions": np.full(t, i % 4, np.int64),
                "rewards": np.zeros(t, np.float32),
                "dones": np.zeros(t, bool),
                "alive": alive,
            }
        )
    return out


def test_held_out_trajectories_are_whole_and_follow_the_seed() -> None:
    cfg = BCConfig(holdout_fraction=0.2)
    samples = fake_samples(27)
    split = split_rows(samples, cfg, seed=7)
    assert len(split.holdout_ids) == 5 and len(split.train_ids) == 22
    assert sorted(split.holdout_ids + split.train_ids) == list(range(27))
    # Every row of a held-out trajectory is held out, and no row of it is trained on.
    held, trained = set(split.holdout.obs[:, 0].astype(int)), set(split.train.obs[:, 0].astype(int))
    assert held == set(split.holdout_ids) and trained == set(split.train_ids) and not held & trained
    assert len(split.holdout) == 5 * 10 and len(split.train) == 22 * 10  # the ticks the agents were alive
    # Deterministic from the seed; another seed picks other trajectories.
    assert split_rows(samples, cfg, seed=7).holdout_ids == split.holdout_ids
    assert holdout_trajectories(27, 0.2, 7) == split.holdout_ids
    assert any(holdout_trajectories(27, 0.2, s) != split.holdout_ids for s in range(1, 5))
    # One trajectory (or no held-out fraction) holds nothing out; two hold out one; never all.
    assert holdout_trajectories(1, 0.2, 7) == [] and holdout_trajectories(9, 0.0, 7) == []
    assert len(holdout_trajectories(2, 0.2, 7)) == 1 and len(holdout_trajectories(3, 0.9, 7)) == 2


def test_the_default_town_expert_set_clones_far_above_its_majority_baseline(scratch_cwd: Path) -> None:
    cfg = overlay("examples/poc_hybrid.yaml", "town.yaml", bc={"epochs": 1, "batch_size": 256})
    # The catalogue's active dataset of this config id is what the harness trains on when given none.
    assert TrainingHarness(load_config(cfg), root=REPO_ROOT).default_dataset() == EXPERT
    harness = TrainingHarness(load_config(cfg), root=scratch_cwd)
    result = harness.run_bc_training(manifest=str(EXPERT), log_path="logs/bc.jsonl")
    assert isinstance(result, BCResult)
    assert (result.train_trajectories, result.heldout_trajectories) == (22, 5)
    assert result.accuracy is not None and result.baseline_accuracy is not None
    assert result.accuracy > 0.85 and result.baseline_accuracy < 0.5, result
    assert result.accuracy - result.baseline_accuracy > 0.35, result
    assert result.passed and result.reason is None and result.threshold == DEFAULT_THRESHOLD
    assert result.majority_action == "use:rest_sleep"
    assert result.per_action_recall["use:rest_sleep"] > 0.9 and result.per_action_recall["use:work_shift"] > 0.9
    assert set(result.per_action_recall) <= set(load_config(cfg).action_names())
    # The gate is in the BC log record and in the checkpoint the harness names.
    rec = json.loads((scratch_cwd / "logs/bc.jsonl").read_text().splitlines()[-1])
    assert rec["holdout_accuracy"] == result.accuracy and rec["holdout_baseline_accuracy"] == result.baseline_accuracy
    assert rec["gate_passed"] is True and rec["heldout_trajectories"] == 5
    ck = load_checkpoint(Path(result.checkpoint))
    assert Path(result.checkpoint).is_relative_to(scratch_cwd / "logs/poc_hybrid_v1/bc/checkpoints")
    gate = json.loads(ck.header["metadata"]["bc_gate"])
    assert gate["holdout_accuracy"] == result.accuracy and gate["gate_passed"] is True
    assert gate["holdout_recall"] == result.per_action_recall
    # The best-known checkpoint's gate is that of its own weights.
    assert result.best_checkpoint is not None
    best = load_checkpoint(Path(result.best_checkpoint)).header["metadata"]
    best_gate, chosen = json.loads(best["bc_gate"]), json.loads(best["best"])
    assert best_gate["epoch"] == chosen["policy_epoch"] and best_gate["holdout_accuracy"] == chosen["value"]


def test_a_held_out_set_where_one_action_is_always_right_fails_the_gate(scratch_cwd: Path) -> None:
    result = TrainingHarness(load_config("configs/datasets/idle.yaml")).run_bc_training(
        manifest=str(IDLE), epochs=1, save_path="out/bc.json"
    )
    assert result.accuracy == 1.0 and result.baseline_accuracy == 1.0 and result.accuracy >= result.threshold
    assert not result.passed
    assert result.reason is not None and "does not beat the majority-action baseline" in result.reason
    assert "one action is always right" in result.reason and "'wait'" in result.reason
    assert result.per_action_recall == {"wait": 1.0}
    # The command line says so too (and still trains: the gate is a verdict, not an error).
    res = run_cli("train", "configs/datasets/idle.yaml", "--mode", "bc", "--bc-manifest", IDLE, "--epochs", "1")
    assert res.returncode == 0, str(res)
    assert "bc gate: FAIL: held-out accuracy 1.000 on 1 trajectories (trained on 1)" in res.stdout, str(res)
    assert "majority baseline 1.000 (wait)" in res.stdout and "one action is always right" in res.stdout


def tampered_copy(root: Path) -> Path:
    """The idle set copied under `root/data/bc_datasets` with one byte appended to a sample."""
    for sub in ("captures/idle_v1", "manifests/idle_v1.json", "checksums/idle_v1.json", "versions.json"):
        src, dst = BC_DIR / sub, root / "data/bc_datasets" / sub
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dst) if src.is_dir() else shutil.copy2(src, dst)
    sample = root / "data/bc_datasets/captures/idle_v1" / IDLE_SAMPLE
    sample.write_bytes(sample.read_bytes() + b"x")
    return sample


def test_a_tampered_dataset_is_refused_naming_the_sample(scratch_cwd: Path) -> None:
    tampered_copy(scratch_cwd)
    # The command line, by manifest path and by catalogue name: one line, exit 2, nothing written.
    for given in ("data/bc_datasets/manifests/idle_v1.json", "idle_v1_production"):
        res = run_cli("train", "configs/datasets/idle.yaml", "--mode", "bc", "--bc-manifest", given,
                      "--bc-log", "logs/bc.jsonl")  # fmt: skip
        assert_one_line_error(res, f"data/bc_datasets/captures/idle_v1/{IDLE_SAMPLE}", "checksum mismatch")
        assert not (scratch_cwd / "logs").exists()
    # The config's bc.manifest, through the harness.
    cfg = overlay("datasets/idle.yaml", "idle.yaml", bc={"manifest": "data/bc_datasets/manifests/idle_v1.json"})
    with pytest.raises(UsageError, match=f"captures/idle_v1/{IDLE_SAMPLE}: checksum mismatch"):
        TrainingHarness(load_config(cfg), root=scratch_cwd).run_bc_training()
    assert not (scratch_cwd / "logs").exists()


def test_the_threshold_comes_from_the_config(scratch_cwd: Path) -> None:
    def threshold(training: dict[str, Any], *, anneal: bool = False) -> float:
        return accuracy_threshold(load_config(overlay("datasets/idle.yaml", "t.yaml", training=training)),
                                  anneal=anneal)  # fmt: skip

    assert threshold({}) == DEFAULT_THRESHOLD == threshold({}, anneal=True)
    assert threshold({"anneal_accuracy_threshold": 0.95}) == 0.95  # seed 001's name, for BC too
    assert threshold({"bc": {"accuracy_threshold": 0.7}}, anneal=True) == 0.7
    both = {"bc": {"accuracy_threshold": 0.7}, "anneal_accuracy_threshold": 0.95}
    assert threshold(both) == 0.7 and threshold(both, anneal=True) == 0.95
    # A trained run carries the config's threshold; an explicit one overrides it.
    cfg = load_config(overlay("datasets/idle.yaml", "t.yaml", training={"anneal_accuracy_threshold": 0.55}))
    harness = TrainingHarness(cfg, root=scratch_cwd)
    assert harness.run_bc_training(manifest=str(IDLE), epochs=1).threshold == 0.55
    assert harness.run_bc_training(manifest=str(IDLE), epochs=1, threshold=0.6).threshold == 0.6
    with pytest.raises(UsageError, match="threshold: Input should be less than or equal to 1"):
        harness.run_bc_training(manifest=str(IDLE), threshold=1.5)
    res = run_cli("train", "t.yaml", "--mode", "bc", "--bc-manifest", IDLE, "--epochs", "1", "--json")
    assert res.returncode == 0 and res.json()["gate"]["gate_threshold"] == 0.55, str(res)


def test_the_harness_api(scratch_cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import townlet.training as training
    from townlet.training import anneal

    assert {"TrainingHarness", "BCResult"} <= set(training.__all__)
    harness = TrainingHarness(load_config("configs/datasets/idle.yaml"), root=scratch_cwd)
    seen: list[tuple[Any, ...]] = []

    def fake(h: TrainingHarness, log_dir: Path | str, **kw: Any) -> dict[str, Any]:
        seen.append((h, log_dir, kw))
        return {"status": "PASS"}

    monkeypatch.setattr(anneal, "run_anneal", fake)
    assert harness.run_anneal(log_dir="logs/a", threshold=0.9) == {"status": "PASS"}
    assert seen == [(harness, "logs/a", {"threshold": 0.9})]
    # No dataset of this config in the scratch catalogue: one line saying what to give.
    with pytest.raises(UsageError, match="no active BC dataset captured from config dataset_idle"):
        harness.run_bc_training()
    with pytest.raises(UsageError, match="no_such_set: no such dataset"):
        TrainingHarness(load_config("configs/datasets/idle.yaml"), root=REPO_ROOT).resolve("no_such_set")
