"""Where a phase's first weights come from: check a warm-start checkpoint against this run
(`check_warm_start`), decide between fresh, warm start, inherit and resume (`plan_warm_start`),
then load the weights and restore the trainer (`load_weights`, `start_epoch`).

Nothing here prints: what a user should read (the allow-mismatch warning, where the run starts
from) goes to the `notify` callback the caller gives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from townlet.artifacts.checkpoint import Checkpoint, TrainingState, fingerprint, load_checkpoint
from townlet.artifacts.registry import config_sha256, resolved_config
from townlet.errors import UsageError
from townlet.sim.config import TownConfig
from townlet.sim.settings import BCConfig, PPOConfig
from townlet.training.network import ActorCritic
from townlet.training.state import require

#: Receives the lines a user should read while a run starts (the CLI prints them on stderr).
Notify = Callable[[str], None]


def run_config(config: TownConfig, section: PPOConfig | BCConfig, phase: str = "ppo") -> dict[str, Any]:
    """The config a phase trains on (the registry's resolved form, with the phase's effective
    values and without the warm-start paths): what a checkpoint embeds and its `config_sha256`
    covers."""
    return {**resolved_config(config), phase: section.model_dump(mode="json", exclude={"warm_start"})}


@dataclass
class WarmStartCheck:
    checkpoint: Checkpoint
    problems: list[str]

    @property
    def note(self) -> str | None:
        return "allow_mismatch: " + "; ".join(self.problems) if self.problems else None


def check_warm_start(
    path: Path | Checkpoint,
    *,
    meta: dict[str, Any],
    run_cfg: dict[str, Any],
    allow_mismatch: bool,
    phase: str = "ppo",
) -> WarmStartCheck:
    """Validate a checkpoint (a path, or one already loaded) for warm-starting this run, changing
    nothing: format and shapes (always fatal), architecture and observation/action spec, and, for a
    checkpoint of the same phase, the config hash. Mismatches are errors unless `allow_mismatch`."""
    ck = path if isinstance(path, Checkpoint) else load_checkpoint(path)
    header = ck.header
    problems: list[str] = []
    if header.get("fingerprint") != fingerprint(header["architecture"], meta):
        trained = header.get("observation", {})
        differs = [
            k for k in ("variant", "map_shape", "feature_names", "action_names") if trained.get(k) != meta.get(k)
        ]
        problems.append(f"observation/action spec differs ({', '.join(differs) or 'architecture'})")
    ck_phase = (header.get("metadata") or {}).get("phase")
    want = config_sha256(run_cfg)
    if ck_phase == phase and header.get("config_sha256") != want:
        problems.append(
            f"config hash differs (checkpoint {str(header.get('config_sha256'))[:12]}, this config {want[:12]})"
        )
    if problems and not allow_mismatch:
        raise UsageError(
            f"{ck.path}: cannot warm start: {'; '.join(problems)}. Regenerate the checkpoint with this config "
            f"(train without --warm-start-load), or override with {phase}.warm_start.allow_mismatch: true or "
            "ALLOW_MISMATCH=1"
        )
    return WarmStartCheck(ck, problems)


@dataclass
class WarmStartPlan:
    """Where a phase's starting point comes from, decided before anything changes."""

    check: WarmStartCheck | None = None
    #: The checkpoint came from `inherit` (another phase's save path), not `load_path`.
    inherited_from: str | None = None
    #: Same phase, same config, with training state: continue that run exactly.
    resume: bool = False
    #: Why the checkpoint at the inherited phase's save path was not inherited (another config id).
    skipped: str | None = None

    @property
    def parent(self) -> str | None:
        """The lineage parent: the loaded checkpoint, or, for a resume, that checkpoint's own parent
        (a resumed run is the same run)."""
        if self.check is None:
            return None
        if self.resume:
            parent = (self.check.checkpoint.header.get("lineage") or {}).get("parent_sha256")
            return str(parent) if parent else None
        return self.check.checkpoint.sha256

    @property
    def note(self) -> str | None:
        if self.check is None:
            return None
        if self.resume:
            note = (self.check.checkpoint.header.get("lineage") or {}).get("note")
            return str(note) if note else None
        return self.check.note

    @property
    def resumed_from(self) -> str | None:
        return self.check.checkpoint.sha256 if self.check and self.resume else None

    def describe(self, phase: str) -> str:
        if self.check is None:
            why = f" ({self.skipped})" if self.skipped else " (no warm-start checkpoint)"
            return f"{phase}: fresh start{why}"
        ck = self.check.checkpoint
        if self.resume:
            assert ck.training is not None
            return f"{phase}: resuming {ck.path} at epoch {ck.training.data.get('epoch')}"
        src = (ck.header.get("metadata") or {}).get("phase") or "unknown phase"
        how = f"inherited from the {self.inherited_from} phase" if self.inherited_from else "warm start"
        extra = f" (allow_mismatch: {'; '.join(self.check.problems)})" if self.check.problems else ""
        return f"{phase}: {how}: weights from {ck.path} ({src} checkpoint){extra}"


def inherit_path(config: TownConfig, phase: str) -> str:
    """The save path of `phase` in this config (by default `logs/<config_id>/<phase>/checkpoints/
    <phase>_latest.json`): where an inheriting phase looks."""
    section: PPOConfig | BCConfig = getattr(config.sections, phase)
    return section.warm_start.for_config(config.config_id).save_path


def checkpoint_config_id(ck: Checkpoint) -> str | None:
    """The config id a checkpoint was trained on (its metadata, else its embedded config)."""
    found = (ck.header.get("metadata") or {}).get("config_id") or (ck.header.get("config") or {}).get("config_id")
    return str(found) if found is not None else None


def plan_warm_start(
    config: TownConfig, section: PPOConfig | BCConfig, phase: str, *, meta: dict[str, Any]
) -> WarmStartPlan:
    """Where the phase starts from: `load_path`, else the `inherit` phase's checkpoint of the same
    config id (a checkpoint of another config at that path is not inherited: fresh start), else fresh."""
    warm = section.warm_start.for_config(config.config_id)
    source: Path | Checkpoint | None = Path(warm.load_path) if warm.load_path else None
    inherited = None
    if source is None and warm.inherit:
        candidate = Path(inherit_path(config, warm.inherit))
        if candidate.is_file():
            ck = load_checkpoint(candidate)
            trained_on = checkpoint_config_id(ck)
            if trained_on != config.config_id:
                return WarmStartPlan(
                    skipped=f"not inheriting {candidate}: that {warm.inherit} checkpoint was trained on config "
                    f"{trained_on}, not {config.config_id}"
                )
            source, inherited = ck, warm.inherit
    if source is None:
        return WarmStartPlan()
    try:
        check = check_warm_start(
            source, meta=meta, run_cfg=run_config(config, section, phase), allow_mismatch=warm.allow_mismatch,
            phase=phase,
        )  # fmt: skip
    except UsageError as exc:
        if inherited is None:
            raise
        raise UsageError(
            f"{exc} (inherited from the {inherited} phase's save path; --fresh or "
            f"{phase}.warm_start.inherit: null starts fresh instead)"
        ) from None
    ck = check.checkpoint
    same_phase = (ck.header.get("metadata") or {}).get("phase") == phase
    resume = same_phase and not check.problems and ck.training is not None
    return WarmStartPlan(check, inherited, resume)


def load_weights(policy: ActorCritic, plan: WarmStartPlan, notify: Notify) -> None:
    """Load the plan's weights into `policy` (after `plan_warm_start` validated them); a load
    despite mismatches is announced loudly first."""
    if plan.check is None:
        return
    ck = plan.check.checkpoint
    if plan.check.problems:
        notify(f"WARNING: warm start despite: {'; '.join(plan.check.problems)} (allow_mismatch)")
    if ck.header["architecture"] != policy.spec():
        raise UsageError(
            f"{ck.path}: architecture {ck.header['architecture']} cannot be loaded into {policy.spec()} "
            "(allow_mismatch cannot bridge different parameter shapes)"
        )
    policy.load_state_dict(ck.state)


class Resumable(Protocol):
    """A phase's trainer, as `start_epoch` restores it."""

    epoch: int

    def restore(self, training: TrainingState) -> None: ...


def start_epoch(trainer: Resumable, plan: WarmStartPlan, phase: str, epochs: int, notify: Notify) -> int:
    """Restore the trainer when the plan resumes, check there is something left to train before
    `epochs`, tell `notify` where the run starts from; returns the epoch it starts after."""
    if plan.resume:
        assert plan.check is not None and plan.check.checkpoint.training is not None
        where = plan.check.checkpoint.path
        try:
            trainer.restore(require(plan.check.checkpoint.training, str(where), phase))
        except KeyError as exc:
            raise UsageError(f"{where}: cannot resume: the training state lacks {exc}") from None
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{where}: cannot resume: {exc}") from None
    if trainer.epoch >= epochs:
        raise UsageError(
            f"{plan.check.checkpoint.path if plan.check else 'checkpoint'}: already trained {trainer.epoch} epochs; "
            f"nothing to resume for --epochs {epochs} (raise --epochs to train on)"
        )
    if plan.check is not None or plan.skipped:
        notify(plan.describe(phase))
    return trainer.epoch
