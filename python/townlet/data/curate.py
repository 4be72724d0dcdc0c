"""Curation: judge every captured sample of a set, write its manifest and checksum sheet, and register the set in
the catalogue.

A set is one folder of captures (`captures/<set>/`, any number of capture manifests with distinct prefixes). Each
sample is read once: its bytes must match the SHA-256 its capture manifest recorded (a damaged capture is refused,
not curated), its arrays are loaded without unpickling, and its metrics decide: accepted when the agent was alive
for at least `min_timesteps` ticks and, when `min_reward` is given, its reward sum is at least that.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from townlet.capture.npz import load_npz
from townlet.capture.records import CaptureManifest, SampleSidecar, member_path
from townlet.clock import utc_stamp
from townlet.data.records import (
    Catalogue,
    CatalogueEntry,
    ChecksumSheet,
    Criteria,
    CuratedSample,
    DatasetManifest,
    SampleStats,
    Status,
    parse_model,
    read_catalogue,
    read_model,
    relative_to_root,
    repo_root,
    sha256_file,
    write_model,
)
from townlet.errors import UsageError
from townlet.jsonio import read_bytes

DEFAULT_MIN_TIMESTEPS = 10
CAPTURE_MANIFEST_SUFFIX = "_manifest.json"


@dataclass(frozen=True)
class SetPaths:
    """Where a set's files go: the manifest, the checksum sheet and the catalogue."""

    manifest: Path
    checksums: Path
    versions: Path

    @classmethod
    def default(cls, captures: Path) -> SetPaths:
        """`<root>/captures/<set>` -> `<root>/manifests/<set>.json`, `<root>/checksums/<set>.json`,
        `<root>/versions.json`."""
        if captures.absolute().parent.name != "captures":
            raise UsageError(f"{captures}: not inside a 'captures' folder; pass --output, --checksums and --versions")
        base = captures if len(captures.parts) >= 3 else captures.absolute()  # keep a relative path relative
        root, name = base.parent.parent, base.name
        return cls(root / "manifests" / f"{name}.json", root / "checksums" / f"{name}.json", root / "versions.json")

    @classmethod
    def resolve(cls, captures: Path, manifest: Path | None, checksums: Path | None, versions: Path | None) -> SetPaths:
        """The paths given, the defaults for the others."""
        if manifest is not None and checksums is not None and versions is not None:
            return cls(manifest, checksums, versions)
        d = cls.default(captures)
        return cls(manifest or d.manifest, checksums or d.checksums, versions or d.versions)


@dataclass
class CurateResult:
    dataset: str
    manifest: DatasetManifest
    paths: SetPaths
    entry: CatalogueEntry | None


def sample_stats(arrays: dict[str, npt.NDArray[Any]], action_names: list[str]) -> SampleStats:
    """Metrics over the ticks the agent was alive (all ticks when the sample has no `alive` column)."""
    rewards = np.asarray(arrays["rewards"], np.float64)
    alive = np.asarray(arrays.get("alive", np.ones(len(rewards), np.bool_)), np.bool_)
    actions = np.asarray(arrays["actions"])[alive]
    counts = np.bincount(actions, minlength=len(action_names)) if actions.size else np.zeros(len(action_names))
    names = [*action_names, *(f"action_{k}" for k in range(len(action_names), len(counts)))]
    return SampleStats(
        timesteps=int(alive.sum()),
        frames=len(rewards),
        reward_sum=float(rewards[alive].sum()),
        mean_reward=float(rewards[alive].mean()) if alive.any() else 0.0,
        done_count=int(np.asarray(arrays["dones"]).sum()),
        action_counts={name: int(c) for name, c in zip(names, counts, strict=True)},
    )


def judge(stats: SampleStats, criteria: Criteria) -> list[str]:
    """Why a sample is rejected (empty when it is accepted)."""
    reasons = []
    if stats.timesteps < criteria.min_timesteps:
        reasons.append(f"timesteps {stats.timesteps} < min_timesteps {criteria.min_timesteps}")
    if criteria.min_reward is not None and stats.reward_sum < criteria.min_reward:
        reasons.append(f"reward_sum {stats.reward_sum:.4g} < min_reward {criteria.min_reward:g}")
    return reasons


def _checked(path: Path, expected: str) -> bytes:
    raw = read_bytes(path, "capture file")
    if hashlib.sha256(raw).hexdigest() != expected:
        raise UsageError(f"{path}: sha256 does not match its capture manifest (damaged capture)")
    return raw


def curate_samples(captures: Path, criteria: Criteria) -> tuple[dict[str, Any], list[CuratedSample]]:
    """Every sample of every capture manifest in `captures`, judged: (capture metadata by manifest, samples)."""
    if not captures.is_dir():
        raise UsageError(f"{captures}: captures folder not found")
    manifests = sorted(p for p in captures.glob(f"*{CAPTURE_MANIFEST_SUFFIX}") if not p.name.startswith("."))
    if not manifests:
        raise UsageError(f"{captures}: no capture manifest (*{CAPTURE_MANIFEST_SUFFIX}); capture into it first")
    metadata: dict[str, Any] = {}
    samples: list[CuratedSample] = []
    for path in manifests:
        capture = read_model(CaptureManifest, path, "capture manifest")
        metadata[path.name] = capture.metadata
        for entry in capture.samples:
            raw_meta = _checked(member_path(path, entry.meta), entry.meta_sha256)
            sidecar = parse_model(SampleSidecar, captures / entry.meta, raw_meta, "capture sample sidecar")
            npz_path = member_path(path, entry.sample)
            arrays = load_npz(npz_path, _checked(npz_path, entry.sha256))
            missing = [k for k in ("actions", "rewards", "dones") if k not in arrays]
            if missing:
                raise UsageError(f"{npz_path}: {missing[0]}: array missing (not a capture sample)")
            stats = sample_stats(arrays, sidecar.action_names)
            reasons = judge(stats, criteria)
            samples.append(
                CuratedSample(
                    **entry.model_dump(), capture=path.name, metrics=stats, accepted=not reasons, reasons=reasons
                )
            )
    names = [s.sample for s in samples]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise UsageError(f"{captures}: {dup}: listed by two capture manifests")
    return metadata, samples


def action_distribution(samples: list[CuratedSample]) -> dict[str, float]:
    """Share of each action over the accepted samples' alive ticks (rounded to 4 places)."""
    totals: dict[str, int] = {}
    for s in samples:
        for name, n in s.metrics.action_counts.items():
            totals[name] = totals.get(name, 0) + n
    whole = sum(totals.values())
    return {name: round(n / whole, 4) for name, n in sorted(totals.items()) if n} if whole else {}


def describe_distribution(dist: dict[str, float]) -> str:
    top = sorted(dist.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{name} {share:.1%}" for name, share in top)


def checksum_sheet(name: str, captures: Path, root: Path, manifest: Path, manifest_raw: bytes) -> ChecksumSheet:
    """The SHA-256 of every `.npz` and `.json` in `captures` (hidden files and folders left out)."""
    files = {
        p.name: sha256_file(p)
        for p in sorted(captures.iterdir())
        if p.is_file() and not p.name.startswith(".") and p.suffix in (".npz", ".json")
    }
    return ChecksumSheet(
        dataset=name,
        captures_dir=relative_to_root(captures, root),
        manifest=relative_to_root(manifest, root),
        manifest_sha256=hashlib.sha256(manifest_raw).hexdigest(),
        files=files,
    )


def curate(
    captures: Path,
    *,
    paths: SetPaths,
    dataset: str | None = None,
    min_timesteps: int = DEFAULT_MIN_TIMESTEPS,
    min_reward: float | None = None,
    tags: list[str] | None = None,
    notes: str = "",
    status: Status = "active",
    register: bool = True,
) -> CurateResult:
    """Judge the set in `captures`, write its manifest and checksum sheet, and (with `register`) add or update the
    catalogue entry `dataset` (default: the set's name). Every file is written atomically; the catalogue last."""
    root = repo_root(paths.versions)
    catalogue: Catalogue | None = read_catalogue(paths.versions, missing_ok=True) if register else None
    criteria = Criteria(min_timesteps=min_timesteps, min_reward=min_reward)
    metadata, samples = curate_samples(captures, criteria)
    name = captures.absolute().name
    manifest = DatasetManifest(
        dataset=name,
        captures_dir=relative_to_root(captures, root),
        created=utc_stamp(),
        criteria=criteria,
        captures=metadata,
        samples=samples,
    )
    raw = write_model(paths.manifest, manifest)
    write_model(paths.checksums, checksum_sheet(name, captures, root, paths.manifest, raw))
    entry = None
    if catalogue is not None:
        dist = action_distribution(manifest.accepted)
        summary = f"{len(manifest.accepted)} of {len(samples)} samples accepted; actions: {describe_distribution(dist)}"
        entry = CatalogueEntry(
            manifest=relative_to_root(paths.manifest, root),
            checksums=relative_to_root(paths.checksums, root),
            captures_dir=manifest.captures_dir,
            created=manifest.created,
            tags=tags or [],
            samples=len(manifest.accepted),
            notes=f"{notes.rstrip('. ')}. {summary}" if notes else summary,
            status=status,
            action_distribution=dist,
        )
        datasets = {**catalogue.datasets, (dataset or name): entry}
        write_model(paths.versions, Catalogue(datasets=dict(sorted(datasets.items()))))
    return CurateResult(dataset or name, manifest, paths, entry)
