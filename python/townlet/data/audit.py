"""The dataset audit: every catalogue entry checked against its manifest, checksum sheet and files.

Per dataset: the manifest, checksum sheet and captures folder exist and parse; they name the same set and folder
as the catalogue; the catalogue's sample count is the manifest's accepted count; the manifest's SHA-256 is the one
the sheet recorded; every file the sheet lists exists and hashes to its digest; every sample the manifest lists
exists (else the entry is stale) and matches both the sheet and the capture's own digest. Findings are FAIL
(the data cannot be trusted) or WARN (extra files nobody lists; problems of a deprecated dataset). The verdict is
FAIL when any finding is, else WARN when any is, else PASS.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from townlet.clock import utc_stamp
from townlet.data.records import (
    Catalogue,
    CatalogueEntry,
    ChecksumSheet,
    DatasetManifest,
    parse_model,
    read_catalogue,
    repo_root,
    sha256_file,
)
from townlet.errors import UsageError

Verdict = Literal["PASS", "WARN", "FAIL"]
AUDIT_FORMAT = "townlet.bc_audit"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Finding(_Record):
    level: Literal["WARN", "FAIL"]
    dataset: str | None
    path: str
    message: str


class DatasetAudit(_Record):
    name: str
    status: Verdict
    catalogue_status: str
    samples: int
    accepted: int
    files_checked: int


class AuditReport(_Record):
    """The audit's JSON report (`--json`, `--report`)."""

    format: Literal["townlet.bc_audit"] = "townlet.bc_audit"
    format_version: Literal[1] = 1
    timestamp: str
    versions: str
    root: str
    status: Verdict
    datasets: list[DatasetAudit]
    findings: list[Finding]


def worst(levels: list[str]) -> Verdict:
    return "FAIL" if "FAIL" in levels else "WARN" if "WARN" in levels else "PASS"


@dataclass
class _Audit:
    """One dataset's checks, collecting findings (FAIL becomes WARN for a deprecated dataset)."""

    name: str
    entry: CatalogueEntry
    root: Path
    findings: list[Finding] = field(default_factory=list)
    files_checked: int = 0

    def add(self, level: Literal["WARN", "FAIL"], path: Path | str, message: str) -> None:
        if self.entry.status == "deprecated":
            level = "WARN"
        self.findings.append(Finding(level=level, dataset=self.name, path=str(path), message=message))

    def digest(self, path: Path) -> str | None:
        try:
            self.files_checked += 1
            return sha256_file(path)
        except OSError as exc:
            self.add("FAIL", path, f"cannot read ({exc.strerror or exc})")
            return None

    def load(self, rel: str, model: type[DatasetManifest] | type[ChecksumSheet], what: str) -> tuple[object, bytes]:
        path = self.root / rel
        if not path.is_file():
            self.add("FAIL", rel, f"{what} not found")
            return None, b""
        try:
            raw = path.read_bytes()
        except OSError as exc:
            self.add("FAIL", rel, f"cannot read {what} ({exc.strerror or exc})")
            return None, b""
        try:
            return parse_model(model, Path(rel), raw, what), raw
        except UsageError as exc:
            self.add("FAIL", rel, str(exc).removeprefix(f"{rel}: "))
            return None, raw

    def run(self) -> tuple[DatasetManifest | None, ChecksumSheet | None]:
        entry = self.entry
        captures = self.root / entry.captures_dir
        if not captures.is_dir():
            self.add("FAIL", entry.captures_dir, "captures folder not found")
        manifest, manifest_raw = self.load(entry.manifest, DatasetManifest, "BC dataset manifest")
        sheet, _ = self.load(entry.checksums, ChecksumSheet, "BC checksum sheet")
        assert manifest is None or isinstance(manifest, DatasetManifest)
        assert sheet is None or isinstance(sheet, ChecksumSheet)
        if manifest is not None:
            if manifest.captures_dir != entry.captures_dir:
                self.add("FAIL", entry.manifest, f"captures_dir {manifest.captures_dir!r} is not the catalogue's")
            if len(manifest.accepted) != entry.samples:
                self.add(
                    "FAIL",
                    entry.manifest,
                    f"{len(manifest.accepted)} accepted samples, the catalogue says {entry.samples}",
                )
        if sheet is not None:
            self._check_sheet(sheet, manifest_raw if manifest is not None else None, captures)
        if manifest is not None and captures.is_dir():
            self._check_manifest(manifest, sheet, captures)
        return manifest, sheet

    def _check_sheet(self, sheet: ChecksumSheet, manifest_raw: bytes | None, captures: Path) -> None:
        entry = self.entry
        if sheet.captures_dir != entry.captures_dir:
            self.add("FAIL", entry.checksums, f"captures_dir {sheet.captures_dir!r} is not the catalogue's")
        if sheet.manifest != entry.manifest:
            self.add("FAIL", entry.checksums, f"manifest {sheet.manifest!r} is not the catalogue's")
        if manifest_raw is not None and hashlib.sha256(manifest_raw).hexdigest() != sheet.manifest_sha256:
            self.add("FAIL", entry.manifest, "checksum mismatch: the manifest changed since its checksums were written")
        if not captures.is_dir():
            return
        for name, expected in sorted(sheet.files.items()):
            path = captures / name
            rel = f"{entry.captures_dir}/{name}"
            if not path.is_file():
                self.add("FAIL", rel, "missing file (listed in the checksum sheet)")
            elif (got := self.digest(path)) is not None and got != expected:
                self.add("FAIL", rel, f"checksum mismatch: sha256 {got[:12]}..., the sheet says {expected[:12]}...")
        for path in sorted(captures.iterdir()):
            if path.name.startswith(".") or not path.is_file():
                continue
            if path.suffix in (".npz", ".json") and path.name not in sheet.files:
                self.add("WARN", f"{entry.captures_dir}/{path.name}", "extra file: not in the checksum sheet")

    def _check_manifest(self, manifest: DatasetManifest, sheet: ChecksumSheet | None, captures: Path) -> None:
        listed = sheet.files if sheet is not None else {}
        for sample in manifest.samples:
            for name, recorded in ((sample.sample, sample.sha256), (sample.meta, sample.meta_sha256)):
                rel = f"{self.entry.captures_dir}/{name}"
                if not (captures / name).is_file():
                    self.add("FAIL", rel, "stale manifest entry: the file is missing")
                elif sheet is not None and name not in listed:
                    self.add("FAIL", rel, "manifest entry not in the checksum sheet")
                elif listed.get(name, recorded) != recorded:
                    self.add("FAIL", rel, "checksum mismatch: the manifest and the checksum sheet disagree")
                elif sheet is None and (got := self.digest(captures / name)) is not None and got != recorded:
                    self.add("FAIL", rel, "checksum mismatch: the file is not the one the manifest recorded")


def _extras(catalogue: Catalogue, versions: Path, root: Path) -> list[Finding]:
    """Manifests and checksum sheets beside the catalogue that no entry names."""
    named = {(root / e.manifest).absolute() for e in catalogue.datasets.values()}
    named |= {(root / e.checksums).absolute() for e in catalogue.datasets.values()}
    out = []
    for sub in ("manifests", "checksums"):
        folder = versions.absolute().parent / sub
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.json")):
            if path.absolute() not in named and not path.name.startswith("."):
                full, base = path.absolute(), root.absolute()
                rel = full.relative_to(base).as_posix() if full.is_relative_to(base) else str(path)
                out.append(Finding(level="WARN", dataset=None, path=rel, message="extra entry: no dataset names it"))
    return out


def audit(versions: Path) -> AuditReport:
    """Audit every dataset of the catalogue `versions` (an unreadable catalogue is a UsageError)."""
    catalogue = read_catalogue(versions)
    root = repo_root(versions)
    findings: list[Finding] = []
    datasets = []
    for name, entry in catalogue.datasets.items():
        check = _Audit(name, entry, root)
        manifest, _ = check.run()
        findings.extend(check.findings)
        datasets.append(
            DatasetAudit(
                name=name,
                status=worst([f.level for f in check.findings]),
                catalogue_status=entry.status,
                samples=len(manifest.samples) if manifest else 0,
                accepted=len(manifest.accepted) if manifest else 0,
                files_checked=check.files_checked,
            )
        )
    findings.extend(_extras(catalogue, versions, root))
    if not catalogue.datasets:
        findings.append(Finding(level="WARN", dataset=None, path=str(versions), message="the catalogue is empty"))
    return AuditReport(
        timestamp=utc_stamp(),
        versions=str(versions),
        root=str(root.absolute()),
        status=worst([f.level for f in findings]),
        datasets=datasets,
        findings=findings,
    )
