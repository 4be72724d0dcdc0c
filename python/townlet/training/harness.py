"""`TrainingHarness`: behaviour cloning and the anneal from Python, on a loaded config (seed 001's API).

```python
from townlet import load_config
from townlet.training import TrainingHarness

result = TrainingHarness(load_config("configs/examples/poc_hybrid.yaml")).run_bc_training()
result.accuracy, result.baseline_accuracy, result.threshold, result.passed
```

`run_bc_training` is the bc phase of `townlet train --mode bc` (the same plan, checks and checkpoint): it trains
from a curated dataset (the catalogue's manifest, verified against its checksum sheet before a single array is
read) and judges the final weights on held-out trajectories (`training.bc_gate`). The dataset is the `manifest`
argument (a path or a catalogue name), else the config's `bc.manifest`, else the catalogue's active dataset
captured from the config's id (the largest). `run_bc_memory_training(arch=...)` is the same for a memory policy:
the bc_memory phase of `townlet train --mode bc_memory --arch A` (`training.bc_recurrent`: whole per-agent
sequences, the same data, gate and result), saving to `logs/<config_id>/bc_memory/checkpoints/<arch>_agent_latest.json`.
`run_anneal` is `townlet.training.anneal.run_anneal`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from townlet.data.records import DEFAULT_VERSIONS
from townlet.data.verify import manifest_for
from townlet.errors import UsageError
from townlet.sim.config import TownConfig
from townlet.sim.settings import BCGate
from townlet.training.data import default_manifest
from townlet.training.phases import Phase
from townlet.training.phases.bc import BC
from townlet.training.phases.bc_memory import BC_MEMORY
from townlet.training.request import EpochCallback, PhaseSection, TrainRequest
from townlet.training.run import PhaseChoice, per_config, plan, run


class BCResult(BaseModel):
    """What a BC run came to: the final weights judged on held-out trajectories."""

    model_config = ConfigDict(frozen=True)

    #: Held-out accuracy of the final weights (None: nothing could be held out).
    accuracy: float | None
    #: The majority-action baseline on the same held-out rows (always answering the most frequent action).
    baseline_accuracy: float | None
    threshold: float
    #: accuracy >= threshold and accuracy > baseline_accuracy.
    passed: bool
    #: Held-out recall of every action that occurs there, by action name.
    per_action_recall: dict[str, float]
    heldout_trajectories: int
    train_trajectories: int
    #: The latest checkpoint (the weights judged).
    checkpoint: str
    #: Why the gate failed (None when it passed).
    reason: str | None
    majority_action: str | None = None
    train_accuracy: float | None = None
    epochs: int = 0
    #: The manifest trained on and the SHA-256 of its bytes.
    dataset: str | None = None
    dataset_sha256: str | None = None
    best_checkpoint: str | None = None
    telemetry: str | None = None
    #: What the run would have told a user (warm start, resume).
    notices: list[str] = []
    #: The memory architecture (lstm | gru | attention) of a `run_bc_memory_training` run; None: feed-forward BC.
    arch: str | None = None


class TrainingHarness:
    """Training phases on one loaded config. Relative paths (manifest, catalogue, checkpoints) are taken
    relative to `root` when given, else to the working directory."""

    def __init__(self, config: TownConfig, *, root: Path | None = None) -> None:
        self.config = config
        self.root = Path(root) if root is not None else None

    def _at(self, path: str | Path) -> Path:
        p = Path(path)
        return self.root / p if self.root is not None and not p.is_absolute() else p

    def resolve(self, named: str) -> Path:
        """A manifest path (relative to the root), or the manifest of the catalogue entry `named`."""
        path = self._at(named)
        if path.exists() or len(Path(named).parts) != 1 or Path(named).suffix == ".json":
            return path
        return manifest_for(named, self._at(DEFAULT_VERSIONS))

    def default_dataset(self) -> Path:
        """The manifest of the catalogue's largest active dataset captured from this config's id."""
        versions = self._at(DEFAULT_VERSIONS)
        found = default_manifest(self.config.config_id, versions)
        if found is None:
            raise UsageError(
                f"{versions}: no active BC dataset captured from config {self.config.config_id}; give a manifest "
                "(manifest=, or the config's bc.manifest)"
            )
        return found

    def run_bc_training(
        self,
        *,
        manifest: str | None = None,
        save_path: str | None = None,
        threshold: float | None = None,
        epochs: int | None = None,
        log_path: str | Path | None = None,
        on_epoch: EpochCallback | None = None,
    ) -> BCResult:
        """Train BC and judge it (module docstring). `threshold` overrides the config's
        (`training.bc.accuracy_threshold`); `save_path` the checkpoint (`bc.warm_start.save_path`)."""
        config = self.config if threshold is None else with_threshold(self.config, threshold)
        return self._run_bc(config, BC, config.sections.bc, manifest, save_path, epochs, log_path, on_epoch)

    def run_bc_memory_training(
        self,
        arch: str | None = None,
        *,
        manifest: str | None = None,
        save_path: str | None = None,
        threshold: float | None = None,
        epochs: int | None = None,
        log_path: str | Path | None = None,
        on_epoch: EpochCallback | None = None,
    ) -> BCResult:
        """Behaviour cloning of a memory policy on whole sequences, judged like `run_bc_training` (the same data and
        gate; `--mode bc_memory`). `arch` is lstm | gru | attention (default: the config's `training.memory.arch`);
        `save_path` overrides `logs/<config_id>/bc_memory/checkpoints/<arch>_agent_latest.json`."""
        config = self.config if threshold is None else with_threshold(self.config, threshold)
        section = BC_MEMORY.section(config)
        if arch is not None:
            try:  # validated like the config's (and `--arch`): its checkpoint paths follow the architecture
                section = type(section).model_validate({**section.model_dump(), "arch": arch})
            except ValidationError as exc:
                raise UsageError(f"arch: {exc.errors()[0]['msg']}") from None
        section = per_config(section, config)
        return self._run_bc(config, BC_MEMORY, section, manifest, save_path, epochs, log_path, on_epoch)

    def _run_bc(
        self,
        config: TownConfig,
        phase: Phase,
        section: PhaseSection,
        manifest: str | None,
        save_path: str | None,
        epochs: int | None,
        log_path: str | Path | None,
        on_epoch: EpochCallback | None,
    ) -> BCResult:
        """One behaviour-cloning phase (bc or bc_memory) on the harness's data and paths, and its judgement."""
        named = manifest or config.sections.bc.manifest
        data = self.default_dataset() if named is None else self.resolve(named)
        warm = section.warm_start
        rooted = {key: str(self._at(value)) for key in ("load_path", "best_path") if (value := getattr(warm, key))}
        section = section.model_copy(update={"warm_start": warm.model_copy(update=rooted)})
        request = TrainRequest(
            config=config.path,
            mode=phase.name,
            epochs=epochs,
            bc_manifest=data,
            bc_log=self._at(log_path) if log_path is not None else None,
            checkpoint=self._at(save_path or warm.save_path),
        )
        planned = plan(request, PhaseChoice(config, phase, phase.name, section))
        out = run(planned, on_epoch=on_epoch)
        last = out.result.records[-1] if out.result.records else {}
        if not last:  # a resumed run already at its last epoch: the checkpoint's own judgement
            raise UsageError(f"{planned.checkpoint}: already trained to epoch {planned.epochs}; nothing was judged")
        fingerprint = planned.data.fingerprint() if planned.data is not None else {}
        return BCResult(
            accuracy=last.get("holdout_accuracy"),
            baseline_accuracy=last.get("holdout_baseline_accuracy"),
            threshold=float(last["gate_threshold"]),
            passed=bool(last["gate_passed"]),
            per_action_recall=dict(last.get("holdout_recall") or {}),
            heldout_trajectories=int(last["heldout_trajectories"]),
            train_trajectories=int(last["train_trajectories"]),
            checkpoint=str(planned.checkpoint),
            reason=last.get("gate_reason"),
            majority_action=last.get("holdout_majority_action"),
            train_accuracy=last.get("train_accuracy"),
            epochs=int(last["epoch"]),
            dataset=fingerprint.get("manifest"),
            dataset_sha256=fingerprint.get("sha256"),
            best_checkpoint=str(out.best) if out.best else None,
            telemetry=str(out.telemetry) if out.telemetry else None,
            notices=list(out.notices),
            arch=getattr(section, "arch", None),
        )

    def run_anneal(self, log_dir: str | Path, **kw: Any) -> dict[str, Any]:
        """The anneal schedule (`townlet.training.anneal.run_anneal`): the parsed `anneal_results.json`."""
        from townlet.training.anneal import run_anneal  # type: ignore[import-not-found,unused-ignore]

        result: dict[str, Any] = run_anneal(self, log_dir, **kw)
        return result


def with_threshold(config: TownConfig, threshold: float) -> TownConfig:
    """`config` with `training.bc.accuracy_threshold` set (validated like the config's)."""
    try:
        gate = BCGate(accuracy_threshold=threshold)
    except ValidationError as exc:
        raise UsageError(f"threshold: {exc.errors()[0]['msg']}") from None
    training = config.sections.training.model_copy(update={"bc": gate})
    return dataclasses.replace(config, sections=config.sections.model_copy(update={"training": training}))


__all__ = ["BCResult", "TrainingHarness", "with_threshold"]
