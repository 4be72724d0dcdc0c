"""Real rollback for the anneal: before a stage runs, its checkpoint files are copied aside (`StageGuard.keep`);
a failing stage puts them back byte for byte (`StageGuard.restore`: the restored file's SHA-256 must equal the
kept copy's) and says why in the lineage: one JSON line per restored file in `rollbacks.jsonl` beside the
checkpoint, and `RollbackRecord`s in anneal_results.json. The rejected files are kept aside for inspection.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from townlet.errors import TownletError
from townlet.jsonio import atomic_write_bytes, canonical_json
from townlet.training.anneal_results import RollbackRecord

#: Beside each restored checkpoint: the rollback lineage, one JSON object per line.
LINEAGE_FILE = "rollbacks.jsonl"


class RollbackError(TownletError):
    """A restore that did not reproduce the kept file."""


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def checkpoint_files(path: Path) -> list[Path]:
    """The files of one checkpoint: a `.json`, or a `.safetensors` and its `.json` header."""
    return [path, path.with_suffix(".json")] if path.suffix == ".safetensors" else [path]


@dataclass(frozen=True)
class Kept:
    path: Path
    #: The copy made before the stage (None: there was no file).
    copy: Path | None
    sha256: str | None


class StageGuard:
    """Keeps a stage's checkpoint files before it runs and restores them if it fails."""

    def __init__(self, stage: int, mode: str, checkpoints: list[Path], keep_dir: Path) -> None:
        self.stage, self.mode, self.keep_dir = stage, mode, keep_dir
        files = [f for ck in checkpoints for f in checkpoint_files(ck)]
        self.files = list(dict.fromkeys(files))
        self.kept: list[Kept] = []

    def keep(self) -> list[Kept]:
        """Copy every existing file aside (`<keep_dir>/kept/<n>_<name>`)."""
        self.kept = []
        for n, path in enumerate(self.files):
            if path.is_file():
                data = path.read_bytes()
                copy = self.keep_dir / "kept" / f"{n}_{path.name}"
                atomic_write_bytes(copy, data)
                self.kept.append(Kept(path, copy, hashlib.sha256(data).hexdigest()))
            else:
                self.kept.append(Kept(path, None, None))
        return self.kept

    def restore(self, reason: str) -> list[RollbackRecord]:
        """Put every kept file back (or remove a file the stage created where there was none); the stage's
        own files go to `<keep_dir>/rejected/`. Raises RollbackError when a restored digest differs."""
        records = []
        for n, kept in enumerate(self.kept):
            rejected_sha = rejected_copy = None
            if kept.path.is_file():
                data = kept.path.read_bytes()
                rejected_sha = hashlib.sha256(data).hexdigest()
                if rejected_sha == kept.sha256:
                    rejected_sha = None  # the stage did not touch this file
                else:
                    target = self.keep_dir / "rejected" / f"{n}_{kept.path.name}"
                    atomic_write_bytes(target, data)
                    rejected_copy = str(target)
            if kept.copy is None and rejected_sha is None:
                continue  # no file before, none now
            if kept.copy is not None and rejected_sha is None:
                continue  # unchanged: nothing to restore
            restored = None
            if kept.copy is not None:
                atomic_write_bytes(kept.path, kept.copy.read_bytes())
                restored = sha256_of(kept.path)
                if restored != kept.sha256:
                    raise RollbackError(
                        f"{kept.path}: rollback failed: restored sha256 {restored} != kept {kept.sha256}"
                    )
            else:
                kept.path.unlink()
            records.append(
                RollbackRecord(
                    stage=self.stage,
                    mode=self.mode,
                    path=str(kept.path),
                    kept_copy=str(kept.copy) if kept.copy is not None else None,
                    kept_sha256=kept.sha256,
                    restored_sha256=restored,
                    rejected_sha256=rejected_sha,
                    rejected_copy=rejected_copy,
                    reason=reason,
                )
            )
        return records


def append_lineage(records: list[RollbackRecord], stamp: str) -> list[Path]:
    """Append each record to the `rollbacks.jsonl` beside its checkpoint (rewritten atomically); returns
    the lineage files written."""
    written: list[Path] = []
    for rec in records:
        lineage = Path(rec.path).parent / LINEAGE_FILE
        before = lineage.read_bytes() if lineage.is_file() else b""
        line = canonical_json({"event": "rollback", "at": stamp, **rec.model_dump(mode="json")}, indent=None)
        atomic_write_bytes(lineage, before + line.encode() + b"\n")
        if lineage not in written:
            written.append(lineage)
    return written
