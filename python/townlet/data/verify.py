"""A dataset a trainer may use: a curated manifest whose accepted samples match its checksum sheet.

`verify_set(manifest)` is what a training run calls before it reads a single array: it finds the set's checksum sheet
(`checksums/<set>.json` beside `manifests/`), checks that the manifest is the one the sheet was written for, and
recomputes the SHA-256 of every accepted sample and sidecar. Any mismatch is a UsageError, one line naming the sample.
`manifest_for(name, versions)` turns a catalogue name (`idle_v1_production`) into its manifest's path.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from townlet.data.records import (
    DEFAULT_VERSIONS,
    ChecksumSheet,
    CuratedSample,
    DatasetManifest,
    parse_model,
    read_catalogue,
    read_model,
    repo_root,
    sha256_file,
)
from townlet.errors import UsageError
from townlet.jsonio import read_bytes


@dataclass(frozen=True)
class VerifiedSet:
    """A curated set whose accepted samples were just hashed and found as recorded."""

    manifest_path: Path
    manifest: DatasetManifest
    manifest_sha256: str
    captures: Path
    #: Accepted samples, in manifest order: (entry, .npz path, sidecar path).
    samples: list[tuple[CuratedSample, Path, Path]]


def checksums_for(manifest: Path) -> Path:
    """`<root>/manifests/<set>.json` -> `<root>/checksums/<set>.json`."""
    return manifest.parent.parent / "checksums" / manifest.name


def manifest_for(name: str, versions: Path = DEFAULT_VERSIONS) -> Path:
    """The manifest of the catalogue entry `name` (a UsageError naming the catalogue when there is none)."""
    catalogue = read_catalogue(versions)
    entry = catalogue.datasets.get(name)
    if entry is None:
        known = ", ".join(sorted(catalogue.datasets)) or "none"
        raise UsageError(f"{versions}: datasets.{name}: no such dataset (known: {known})")
    return repo_root(versions) / entry.manifest


def verify_set(manifest: Path, checksums: Path | None = None) -> VerifiedSet:
    """Check `manifest` against its checksum sheet and its accepted files against both (see the module docstring)."""
    raw = read_bytes(manifest, "BC dataset manifest")
    doc = parse_model(DatasetManifest, manifest, raw, "BC dataset manifest")
    sheet_path = checksums if checksums is not None else checksums_for(manifest)
    sheet = read_model(ChecksumSheet, sheet_path, "BC checksum sheet")
    digest = hashlib.sha256(raw).hexdigest()
    if digest != sheet.manifest_sha256:
        raise UsageError(f"{manifest}: checksum mismatch: the manifest changed since {sheet_path} was written")
    if not doc.accepted:
        raise UsageError(f"{manifest}: the dataset is empty (no accepted samples)")
    captures = repo_root(manifest) / doc.captures_dir
    samples = []
    for entry in doc.accepted:
        paths = []
        for name, recorded in ((entry.sample, entry.sha256), (entry.meta, entry.meta_sha256)):
            path = captures / name
            if name not in sheet.files:
                raise UsageError(f"{path}: not in the checksum sheet {sheet_path}")
            if not path.is_file():
                raise UsageError(f"{path}: sample file missing (listed in {manifest})")
            got = sha256_file(path)
            if got != sheet.files[name] or got != recorded:
                raise UsageError(f"{path}: checksum mismatch: sha256 {got[:12]}... is not the one {sheet_path} records")
            paths.append(path)
        samples.append((entry, paths[0], paths[1]))
    return VerifiedSet(manifest, doc, digest, captures, samples)
