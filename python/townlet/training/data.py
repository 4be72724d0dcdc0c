"""Captured samples as training data: `load_replay` reads a capture (its manifest, every sample
it lists, checked against the recorded SHA-256, and the capture's event totals) or a curated BC
dataset (`data/bc_datasets/manifests/<set>.json`: its accepted samples, verified against the set's
checksum sheet first) into `ReplayData`, which PPO replays and behaviour cloning learns from."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from townlet import _core
from townlet.capture.npz import check_sample, load_npz
from townlet.capture.records import member_path, read_capture_events, read_manifest, read_sidecar_spec
from townlet.data.records import (
    DEFAULT_VERSIONS,
    MANIFEST_FORMAT,
    DatasetManifest,
    read_catalogue,
    read_model,
    repo_root,
)
from townlet.data.verify import manifest_for, verify_set
from townlet.errors import UsageError
from townlet.jsonio import parse_json, read_bytes
from townlet.training.network import ActorCritic
from townlet.training.ppo import Dataset, baseline_from_samples


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
    #: Each sample's file name (a trajectory: one agent of one capture), in the order of `samples`.
    sample_ids: list[str] | None = None

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
    if is_curated(manifest):
        return load_curated(manifest)
    refs, manifest_raw = read_manifest(manifest)
    samples = []
    for ref in refs:
        path = member_path(manifest, ref.sample)
        raw = read_bytes(path)
        arrays = load_npz(path, raw)
        if ref.sha256 is not None and hashlib.sha256(raw).hexdigest() != ref.sha256:
            raise UsageError(f"{path}: contents do not match the SHA-256 recorded in {manifest} (altered?)")
        samples.append(_sample(path, arrays))
    obs_dim, n_actions = _check_shapes(samples, [member_path(manifest, r.sample) for r in refs])
    sidecar = member_path(manifest, refs[0].meta) if refs[0].meta else None
    meta = read_sidecar_spec(sidecar) if sidecar is not None and sidecar.is_file() else {}
    return ReplayData(
        samples,
        obs_dim,
        n_actions,
        meta,
        manifest,
        read_capture_events(manifest),
        hashlib.sha256(manifest_raw).hexdigest(),
        [r.sample for r in refs],
    )


def resolve_manifest(named: Path | str, versions: Path = DEFAULT_VERSIONS) -> Path:
    """A manifest given as a path, or as the name of a catalogue entry (`poc_hybrid_expert_v1`): a value that
    is no existing file and looks like no path is looked up in the catalogue `versions`."""
    path = Path(named)
    if path.exists() or len(path.parts) != 1 or path.suffix == ".json":
        return path
    return manifest_for(str(named), versions)


def default_manifest(config_id: str, versions: Path = DEFAULT_VERSIONS) -> Path | None:
    """The manifest of the catalogue's largest active dataset captured from config `config_id` (None when the
    catalogue does not exist or holds none)."""
    if not versions.is_file():
        return None
    found: list[tuple[int, str, Path]] = []
    for name, entry in read_catalogue(versions).datasets.items():
        manifest = repo_root(versions) / entry.manifest
        if entry.status != "active" or not manifest.is_file():
            continue
        doc = read_model(DatasetManifest, manifest, "BC dataset manifest")
        if any(c.config_id == config_id for c in doc.captures.values()):
            found.append((-entry.samples, name, manifest))
    return min(found)[2] if found else None


def is_curated(manifest: Path) -> bool:
    """Whether `manifest` is a curated BC dataset manifest (`data/bc_datasets/manifests/<set>.json`) rather than a
    capture's own manifest (an unreadable file is left to the capture reader, which names the problem)."""
    try:
        doc = parse_json(manifest, read_bytes(manifest, "manifest"))
    except UsageError:
        return False
    return isinstance(doc, dict) and doc.get("format") == MANIFEST_FORMAT


def load_curated(manifest: Path) -> ReplayData:
    """The accepted samples of a curated BC dataset, after `townlet.data.verify.verify_set` has checked the manifest
    against its checksum sheet and every accepted sample and sidecar against both (a mismatch is one line naming
    the sample); the bytes read are checked once more, so what is trained on is what was verified."""
    verified = verify_set(manifest)
    samples = []
    for entry, path, _ in verified.samples:
        raw = read_bytes(path)
        if hashlib.sha256(raw).hexdigest() != entry.sha256:
            raise UsageError(f"{path}: checksum mismatch: the file changed while it was read")
        samples.append(_sample(path, load_npz(path, raw)))
    obs_dim, n_actions = _check_shapes(samples, [path for _, path, _ in verified.samples])
    meta = read_sidecar_spec(verified.samples[0][2])
    events: dict[str, float] = {}  # the event totals of the captures the accepted samples come from
    for capture in sorted({entry.capture for entry, _, _ in verified.samples}):
        for name, count in read_capture_events(verified.captures / capture).items():
            events[name] = events.get(name, 0.0) + count
    return ReplayData(
        samples,
        obs_dim,
        n_actions,
        meta,
        manifest,
        events,
        verified.manifest_sha256,
        [entry.sample for entry, _, _ in verified.samples],
    )


def _sample(path: Path, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One sample's arrays as training reads them (observation = flattened map + features)."""
    check_sample(path, arrays)
    t = len(arrays["actions"])
    maps = arrays["map"].reshape(t, -1).astype(np.float32)
    obs = np.concatenate([maps, arrays["features"].astype(np.float32)], axis=1)
    return {
        "obs": obs,
        "next_obs": obs[-1],
        "action_masks": arrays["action_masks"].astype(bool),
        "actions": arrays["actions"],
        "old_log_probs": arrays["old_log_probs"],
        "rewards": arrays["rewards"],
        "dones": arrays["dones"],
        "truncations": arrays.get("truncations", np.zeros(t, bool)),
        "alive": arrays.get("alive", np.ones(t, bool)),
    }


def _check_shapes(samples: list[dict[str, np.ndarray]], paths: list[Path]) -> tuple[int, int]:
    """The dataset's (obs_dim, n_actions); a sample that differs is a UsageError naming it."""
    obs_dim, n_actions = samples[0]["obs"].shape[1], samples[0]["action_masks"].shape[1]
    for s, path in zip(samples, paths, strict=True):
        if s["obs"].shape[1] != obs_dim or s["action_masks"].shape[1] != n_actions:
            raise UsageError(
                f"{path}: observation or action shape {s['obs'].shape[1]}/{s['action_masks'].shape[1]} differs "
                f"from the dataset's {obs_dim}/{n_actions}"
            )
    return int(obs_dim), int(n_actions)


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
