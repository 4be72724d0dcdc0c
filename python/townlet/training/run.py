"""`run_training`: the workflow behind `townlet train` / `tools/run_training.py`.

Modes: `rollout` (on-policy PPO, the learned policy acts in VecTown), `replay` (PPO on captured
samples, with their stored behaviour log-probabilities), `mixed` (both each epoch). A checkpoint
of the policy (with its config and observation/action spec) is saved at the end and every
`checkpoint_every` epochs.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from townlet import _core
from townlet.artifacts.checkpoint import Checkpoint, TrainingState, fingerprint, load_checkpoint, save_checkpoint
from townlet.artifacts.registry import config_sha256, resolved_config
from townlet.capture.rollout import EVENT_COUNTERS, load_npz
from townlet.errors import UsageError
from townlet.jsonio import parse_json, read_bytes
from townlet.sim.config import TownConfig
from townlet.sim.env import VecTown
from townlet.sim.settings import MODES, BCConfig, PPOConfig
from townlet.telemetry.records import TelemetryWriter
from townlet.training.bc import BCTrainer, split_rows
from townlet.training.envs import TownTrainEnv
from townlet.training.network import ActorCritic
from townlet.training.ppo import Dataset, baseline_from_samples
from townlet.training.state import require
from townlet.training.trainer import Trainer, TrainResult, make_policy

PHASE_BC = "bc"
PHASE_PPO = "ppo"


@dataclass
class ReplayData:
    """Captured samples ready for PPO: per sample (T, ...) arrays."""

    samples: list[dict[str, np.ndarray]]
    obs_dim: int
    n_actions: int
    meta: dict[str, Any]
    #: The manifest the samples came from (named in errors).
    manifest: Path | None = None
    #: The capture's event totals, by native event name (counted into each replayed epoch's record).
    events: dict[str, float] | None = None
    #: SHA-256 of the manifest's bytes (which list every sample's SHA-256).
    manifest_sha256: str | None = None

    def fingerprint(self) -> dict[str, Any]:
        """Which data this is: the manifest and the SHA-256 of its bytes (which list every
        sample's SHA-256)."""
        return {"manifest": str(self.manifest) if self.manifest else None, "sha256": self.manifest_sha256}

    def baseline(self) -> dict[str, float]:
        pairs = [(float(s["rewards"].sum()), float(s["rewards"].mean())) for s in self.samples]
        logp = float(np.mean([s["old_log_probs"].mean() for s in self.samples]))
        return baseline_from_samples(pairs, logp)

    @torch.no_grad()
    def dataset(self, policy: ActorCritic, gamma: float, lam: float) -> Dataset:
        """Values from the current critic, GAE in Rust, rows where the agent was alive (the trainer
        asks for it every epoch, so the advantages follow the critic as it learns)."""
        parts = []
        for s in self.samples:
            obs = s["obs"]
            values = policy.value(torch.from_numpy(obs)).numpy().astype(np.float32)
            t = len(values)
            last = policy.value(torch.from_numpy(s["next_obs"][None])).numpy().astype(np.float32)
            boot = np.zeros(t, np.float32)
            trunc = s["truncations"].astype(bool)
            boot[trunc] = last[0]
            term = s["dones"].astype(bool) & ~trunc
            adv, ret = _core.compute_gae(
                s["rewards"].reshape(t, 1).astype(np.float32),
                values.reshape(t, 1),
                term.reshape(t, 1),
                trunc.reshape(t, 1),
                s["alive"].reshape(t, 1).astype(bool),
                boot.reshape(t, 1),
                last,
                gamma,
                lam,
            )
            keep = s["alive"].astype(bool)
            parts.append(
                Dataset(
                    obs=obs[keep],
                    masks=s["action_masks"][keep],
                    actions=s["actions"][keep].astype(np.int64),
                    log_probs=s["old_log_probs"][keep].astype(np.float32),
                    values=values[keep],
                    advantages=adv[:, 0][keep],
                    returns=ret[:, 0][keep],
                    rewards=s["rewards"][keep].astype(np.float32),
                )
            )
        return Dataset.concat(parts)


def load_replay(manifest: Path | None, capture_dir: Path | None) -> ReplayData:
    """Samples listed by a capture manifest (or every sample of a capture folder)."""
    if manifest is None:
        if capture_dir is None:
            raise UsageError("replay needs --capture-dir DIR or --replay-manifest FILE")
        if not capture_dir.is_dir():
            raise UsageError(f"{capture_dir}: capture directory not found")
        found = sorted(capture_dir.glob("*_manifest.json"))
        if not found:
            raise UsageError(f"{capture_dir}: no *_manifest.json in the capture directory")
        manifest = found[0]
    manifest_raw = read_bytes(manifest, "manifest")
    doc = parse_json(manifest, manifest_raw)
    entries = doc.get("samples") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise UsageError(f"{manifest}: not a capture manifest (no 'samples' list)")
    if not entries:
        raise UsageError(f"{manifest}: the dataset is empty (no samples)")
    samples = []
    obs_dim = n_actions = None
    for k, entry in enumerate(entries):
        name = entry.get("sample") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            raise UsageError(f"{manifest}: samples[{k}] has no 'sample' file name")
        path = manifest.parent / name
        raw = read_bytes(path)
        arrays = load_npz(path, raw)
        want = entry.get("sha256")
        if isinstance(want, str) and hashlib.sha256(raw).hexdigest() != want:
            raise UsageError(f"{path}: contents do not match the SHA-256 recorded in {manifest} (altered?)")
        missing = [a for a in ("map", "features", "actions", "old_log_probs", "rewards", "dones") if a not in arrays]
        if missing:
            raise UsageError(f"{path}: sample lacks arrays {missing}")
        t = len(arrays["actions"])
        maps = arrays["map"].reshape(t, -1).astype(np.float32)
        obs = np.concatenate([maps, arrays["features"].astype(np.float32)], axis=1)
        masks = arrays.get("action_masks")
        if masks is None:
            raise UsageError(f"{path}: sample lacks action_masks (captured by an older Townlet?)")
        if obs_dim is None:
            obs_dim, n_actions = obs.shape[1], masks.shape[1]
        elif obs.shape[1] != obs_dim or masks.shape[1] != n_actions:
            raise UsageError(
                f"{path}: observation or action shape {obs.shape[1]}/{masks.shape[1]} differs from the "
                f"dataset's {obs_dim}/{n_actions}"
            )
        samples.append(
            {
                "obs": obs,
                "next_obs": obs[-1],
                "action_masks": masks.astype(bool),
                "actions": arrays["actions"],
                "old_log_probs": arrays["old_log_probs"],
                "rewards": arrays["rewards"],
                "dones": arrays["dones"],
                "truncations": arrays.get("truncations", np.zeros(t, bool)),
                "alive": arrays.get("alive", np.ones(t, bool)),
            }
        )
    sidecar = manifest.parent / str(entries[0].get("meta", ""))
    meta: dict[str, Any] = {}
    if sidecar.is_file():
        try:
            side = json.loads(sidecar.read_text(encoding="utf-8"))
            meta = {k: side.get(k) for k in ("map_shape", "feature_names", "action_names", "map_channels", "variant")}
            meta["n_features"] = len(side.get("feature_names", []))
        except (ValueError, TypeError, AttributeError):
            raise UsageError(f"{sidecar}: not a capture sample sidecar (invalid JSON or fields)") from None
    assert obs_dim is not None and n_actions is not None
    return ReplayData(
        samples, obs_dim, n_actions, meta, manifest, _capture_events(manifest), hashlib.sha256(manifest_raw).hexdigest()
    )


def _capture_events(manifest: Path) -> dict[str, float]:
    """The capture's event totals (`<prefix>_metrics.json`), mapped back to native event names."""
    metrics = manifest.with_name(manifest.name.replace("_manifest.json", "_metrics.json"))
    if metrics == manifest or not metrics.is_file():
        return {}
    try:
        ev = json.loads(metrics.read_text(encoding="utf-8")).get("events") or {}
        out = {names[0]: float(ev.get(key, 0.0)) for key, names in EVENT_COUNTERS.items()}
        out["queue_conflict_value"] = float(ev.get("queue_conflict_intensity_sum", 0.0))
        out["chat_success_value"] = float(ev.get("chat_quality_mean", 0.0)) * out["chat_success"]
    except (ValueError, TypeError, AttributeError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UsageError(f"{metrics}: not a capture metrics file (invalid JSON or event totals)") from None
    return {k: v for k, v in out.items() if v}


def check_replay_spec(replay: ReplayData, meta: dict[str, Any], config_path: Path) -> None:
    """Refuse replay data captured with another observation/action spec than the config's."""
    diffs = [
        k
        for k in ("variant", "map_shape", "feature_names", "action_names")
        if replay.meta.get(k) is not None and replay.meta.get(k) != meta.get(k)
    ]
    if replay.obs_dim != meta["obs_dim"] or replay.n_actions != len(meta["action_names"]):
        diffs.insert(0, "observation/action sizes")
    if diffs:
        raise UsageError(
            f"{replay.manifest or 'replay data'}: captured with a different observation/action spec than "
            f"{config_path} (differs in: {', '.join(diffs)}); capture it with the same config"
        )


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
    path: Path, *, meta: dict[str, Any], run_cfg: dict[str, Any], allow_mismatch: bool, phase: str = "ppo"
) -> WarmStartCheck:
    """Validate a checkpoint for warm-starting this run, changing nothing: format and shapes
    (always fatal), architecture and observation/action spec, and, for a checkpoint of the same
    phase, the config hash. Mismatches are errors unless `allow_mismatch`."""
    ck = load_checkpoint(path)
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
            return f"{phase}: fresh start (no warm-start checkpoint)"
        ck = self.check.checkpoint
        if self.resume:
            assert ck.training is not None
            return f"{phase}: resuming {ck.path} at epoch {ck.training.data.get('epoch')}"
        src = (ck.header.get("metadata") or {}).get("phase") or "unknown phase"
        how = f"inherited from the {self.inherited_from} phase" if self.inherited_from else "warm start"
        extra = f" (allow_mismatch: {'; '.join(self.check.problems)})" if self.check.problems else ""
        return f"{phase}: {how}: weights from {ck.path} ({src} checkpoint){extra}"


def inherit_path(config: TownConfig, phase: str) -> str:
    """The save path of `phase` in this config: where an inheriting phase looks."""
    section: PPOConfig | BCConfig = getattr(config.sections, phase)
    return section.warm_start.save_path


def plan_warm_start(
    config: TownConfig, section: PPOConfig | BCConfig, phase: str, *, meta: dict[str, Any]
) -> WarmStartPlan:
    warm = section.warm_start
    path, inherited = warm.load_path, None
    if not path and warm.inherit:
        candidate = inherit_path(config, warm.inherit)
        if Path(candidate).is_file():
            path, inherited = candidate, warm.inherit
    if not path:
        return WarmStartPlan()
    try:
        check = check_warm_start(
            Path(path), meta=meta, run_cfg=run_config(config, section, phase), allow_mismatch=warm.allow_mismatch,
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


def dry_run_report(
    config: TownConfig, section: PPOConfig | BCConfig, *, mode: str, seed: int, phase: str = "ppo"
) -> list[str]:
    """Check what a run would load and write, without training or writing anything."""
    meta = VecTown(config, 1, seed, num_threads=1).observation_metadata()
    lines = [f"config ok: {config.path} ({config.config_id}), phase {phase}, mode {mode}"]
    plan = plan_warm_start(config, section, phase, meta=meta)
    lines.append(("warm start ok: " if plan.check else "") + plan.describe(phase))
    warm = section.warm_start
    for label, target in (("save path", warm.save_path), ("best path", warm.best())):
        save = Path(target)
        parent = save.parent if str(save.parent) else Path(".")
        existing = next((p for p in [parent, *parent.parents] if p.exists()), Path("."))
        if not existing.is_dir() or not os.access(existing, os.W_OK):
            raise UsageError(f"{save}: cannot write the checkpoint here ({existing} is not a writable folder)")
        lines.append(f"{label} ok: {save}")
    lines.append("dry run: nothing trained, nothing written")
    return lines


def load_weights(policy: ActorCritic, plan: WarmStartPlan, phase: str) -> None:
    """Load the plan's weights into `policy` (after `plan_warm_start` validated them)."""
    if plan.check is None:
        return
    ck = plan.check.checkpoint
    if plan.check.problems:
        print(f"WARNING: warm start despite: {'; '.join(plan.check.problems)} (allow_mismatch)", file=sys.stderr)
    if ck.header["architecture"] != policy.spec():
        raise UsageError(
            f"{ck.path}: architecture {ck.header['architecture']} cannot be loaded into {policy.spec()} "
            "(allow_mismatch cannot bridge different parameter shapes)"
        )
    policy.load_state_dict(ck.state)


def start_epoch(trainer: Trainer | BCTrainer, plan: WarmStartPlan, phase: str, epochs: int) -> int:
    """Restore the trainer when the plan resumes, check there is something left to train before
    `epochs`, say on stderr where the run starts from; returns the epoch it starts after."""
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
    if plan.check is not None:
        print(plan.describe(phase), file=sys.stderr)
    return trainer.epoch


class PhaseSaver:
    """Writes a phase's checkpoints: the latest (with the training state a resume restores) at
    `path`, and the best-known agent (weights only) at `best_path`. A new best is held in memory
    and written with the next save, so a run pays one write per checkpoint rather than one per
    improving epoch, and the best file never runs ahead of the checkpoint a resume starts from
    (which restores the best score)."""

    def __init__(
        self,
        path: Path | None,
        best_path: Path,
        *,
        obs_meta: dict[str, Any],
        config: dict[str, Any],
        seed: int,
        metadata: dict[str, Any],
        plan: WarmStartPlan,
    ) -> None:
        self.path, self.best_path = path, best_path
        self.obs_meta, self.config, self.seed, self.metadata, self.plan = obs_meta, config, seed, metadata, plan
        self.pending: tuple[ActorCritic, dict[str, Any], int] | None = None
        self.best_written: Path | None = None

    def latest(self, policy: ActorCritic, *, epoch: int, steps: int, training: TrainingState | None) -> None:
        if self.path is None:
            return
        save_checkpoint(
            self.path,
            policy,
            obs_meta=self.obs_meta,
            config=self.config,
            seed=self.seed,
            counters={"epochs": epoch, "steps": steps},
            metadata=self.metadata,
            parent=self.plan.parent,
            lineage_note=self.plan.note,
            resumed_from=self.plan.resumed_from,
            training=training,
        )
        self._flush_best()

    def offer_best(self, policy: ActorCritic, best: dict[str, Any] | None, steps: int) -> None:
        if self.path is not None and best is not None:
            self.pending = (copy.deepcopy(policy), dict(best), steps)

    def _flush_best(self) -> None:
        if self.pending is None:
            return
        policy, best, steps = self.pending
        save_checkpoint(
            self.best_path,
            policy,
            obs_meta=self.obs_meta,
            config=self.config,
            seed=self.seed,
            counters={"epochs": int(best["policy_epoch"]), "steps": steps},
            metadata={**self.metadata, "best": json.dumps(best, sort_keys=True)},
            parent=self.plan.parent,
            lineage_note=self.plan.note,
        )
        self.pending, self.best_written = None, self.best_path

    def best(self) -> Path | None:
        """The run's best-known checkpoint: written now, or, for a resumed run that did not beat
        it, written before the interruption."""
        if self.best_written is None and self.plan.resume and self.path is not None and self.best_path.is_file():
            return self.best_path
        return self.best_written


@dataclass
class RunOutputs:
    result: TrainResult
    checkpoint: Path | None
    telemetry: Path | None
    best: Path | None = None
    #: The epoch the run started from (0 unless it resumed).
    start_epoch: int = 0


def run_training(
    config: TownConfig,
    *,
    ppo: PPOConfig,
    mode: str,
    epochs: int,
    seed: int,
    replay: ReplayData | None,
    telemetry: Callable[[int], TelemetryWriter] | None,
    checkpoint: Path | None,
    checkpoint_every: int = 0,
    on_epoch: Any = None,
) -> RunOutputs:
    """PPO. `telemetry` makes the log's writer, given the epoch the run starts after (so that a
    resumed run continues its log)."""
    if mode not in MODES:
        raise UsageError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    env = None
    if mode in ("rollout", "mixed"):
        env = TownTrainEnv(config, ppo.num_envs, seed, ppo.episode_ticks)
    # The config's observation/action spec, also in replay mode (it goes into the checkpoint).
    meta = env.metadata() if env is not None else VecTown(config, 1, seed, num_threads=1).observation_metadata()
    if replay is not None:
        check_replay_spec(replay, meta, config.path)
    obs_dim = int(meta["obs_dim"])
    n_actions = len(meta["action_names"])
    torch.manual_seed(seed)
    policy = make_policy(meta, obs_dim, n_actions, ppo.hidden)
    run_cfg = run_config(config, ppo)
    warm = ppo.warm_start
    plan = plan_warm_start(config, ppo, PHASE_PPO, meta=meta)
    load_weights(policy, plan, PHASE_PPO)
    replay_ds = (lambda net: replay.dataset(net, ppo.gamma, ppo.gae_lambda)) if replay is not None else None
    trainer = Trainer(
        env,
        ppo,
        seed=seed,
        policy=policy,
        replay=replay_ds,
        replay_baseline=replay.baseline() if replay else None,
        replay_events=replay.events if replay else None,
        obs_meta=meta,
    )
    start = start_epoch(trainer, plan, PHASE_PPO, epochs)
    writer = telemetry(start) if telemetry is not None else None

    saver = PhaseSaver(
        checkpoint,
        Path(warm.best()),
        obs_meta=meta,
        config=run_cfg,
        seed=seed,
        metadata={**warm.metadata, "mode": mode, "phase": PHASE_PPO, "config_id": config.config_id,
                  "config_path": str(config.path)},
        plan=plan,
    )  # fmt: skip

    def save(t: Trainer) -> None:
        saver.latest(t.policy, epoch=t.epoch, steps=t.steps, training=t.training_state(epochs))

    result = trainer.run(
        epochs,
        data_mode=mode,
        telemetry=writer,
        on_epoch=on_epoch,
        checkpoint_every=checkpoint_every or None,
        save=save,
        on_best=lambda t: saver.offer_best(t.policy, t.best, t.steps),
    )
    save(trainer)
    return RunOutputs(result, checkpoint, writer.path if writer else None, saver.best(), start)


def run_bc(
    config: TownConfig,
    *,
    bc: BCConfig,
    epochs: int,
    seed: int,
    data: ReplayData,
    telemetry: Callable[[int], TelemetryWriter] | None,
    checkpoint: Path | None,
    checkpoint_every: int = 0,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[list[dict[str, Any]], RunOutputs]:
    """Behaviour cloning on captured samples; returns the epoch records and the outputs."""
    meta = VecTown(config, 1, seed, num_threads=1).observation_metadata()
    check_replay_spec(data, meta, config.path)
    torch.manual_seed(seed)
    policy = make_policy(meta, int(meta["obs_dim"]), len(meta["action_names"]), bc.hidden)
    run_cfg = run_config(config, bc, PHASE_BC)
    warm = bc.warm_start
    plan = plan_warm_start(config, bc, PHASE_BC, meta=meta)
    dataset = data.fingerprint()
    if plan.resume:
        assert plan.check is not None and plan.check.checkpoint.training is not None
        was = plan.check.checkpoint.training.data.get("dataset") or {}
        same = was.get("sha256") == dataset["sha256"]
        if not same and not warm.allow_mismatch:
            raise UsageError(
                f"{plan.check.checkpoint.path}: cannot resume: it was trained on {was.get('manifest')} "
                f"(sha256 {str(was.get('sha256'))[:12]}) but this run reads {dataset['manifest']} "
                f"(sha256 {str(dataset['sha256'])[:12]}); give the same data, or override with "
                "bc.warm_start.allow_mismatch: true or ALLOW_MISMATCH=1"
            )
        if not same:
            plan = WarmStartPlan(
                WarmStartCheck(plan.check.checkpoint, [*plan.check.problems, "dataset differs"]), plan.inherited_from
            )
    load_weights(policy, plan, PHASE_BC)
    try:
        train, holdout = split_rows(data.samples, bc)
        trainer = BCTrainer(policy, bc, train, holdout, seed=seed)
    except ValueError as exc:
        raise UsageError(f"{data.manifest or 'bc data'}: {exc}") from None
    start = start_epoch(trainer, plan, PHASE_BC, epochs)
    writer = telemetry(start) if telemetry is not None else None

    saver = PhaseSaver(
        checkpoint,
        Path(warm.best()),
        obs_meta=meta,
        config=run_cfg,
        seed=seed,
        metadata={**warm.metadata, "phase": PHASE_BC, "config_id": config.config_id,
                  "config_path": str(config.path), "dataset": str(dataset["manifest"])},
        plan=plan,
    )  # fmt: skip

    def save(t: BCTrainer) -> None:
        saver.latest(t.policy, epoch=t.epoch, steps=t.steps, training=t.training_state(epochs, dataset))

    def epoch_done(rec: dict[str, Any]) -> None:
        if writer is not None:
            writer.write(rec)
        if on_epoch is not None:
            on_epoch(rec)

    t0 = time.perf_counter()
    records = trainer.run(
        epochs,
        on_epoch=epoch_done,
        checkpoint_every=checkpoint_every or None,
        save=save,
        on_best=lambda t: saver.offer_best(t.policy, t.best, t.steps),
    )
    if writer is not None:
        writer.close()
    save(trainer)
    result = TrainResult(epochs=epochs, steps=trainer.steps, records=records, seconds=time.perf_counter() - t0)
    return records, RunOutputs(result, checkpoint, writer.path if writer else None, saver.best(), start)
