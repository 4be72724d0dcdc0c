"""The BC dataset files, one pydantic model each, and their readers.

Layout under `data/bc_datasets/` (paths inside the files are relative to the repository root, the folder
holding `data/`):

* `captures/<set>/` -- capture folders' files (`capture.rollout`): per agent a sample (`.npz`) and its sidecar
  (`.json`), and per capture a manifest and a metrics file.
* `manifests/<set>.json` -- `DatasetManifest`: every sample of the set with its metrics and whether curation
  accepted it. The entries extend the capture manifest's `ManifestEntry` (sample, meta, agent, SHA-256s).
* `checksums/<set>.json` -- `ChecksumSheet`: the SHA-256 of every `.npz` and `.json` in the captures folder, and
  of the manifest.
* `versions.json` -- `Catalogue`: dataset name -> `CatalogueEntry` (manifest, checksums, captures folder, created,
  tags, sample count, notes, status active|deprecated).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from townlet.capture.records import CaptureMetadata, ManifestEntry, dump, unsafe_member
from townlet.errors import UsageError
from townlet.jsonio import atomic_write_bytes, parse_json, read_bytes

CATALOGUE_FORMAT = "townlet.bc_datasets"
MANIFEST_FORMAT = "townlet.bc_manifest"
CHECKSUMS_FORMAT = "townlet.bc_checksums"
DEFAULT_VERSIONS = Path("data/bc_datasets/versions.json")

Status = Literal["active", "deprecated"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _inside_root(path: str) -> str:
    """A path the catalogue, a manifest or a sheet records: relative, inside the repository root."""
    why = unsafe_member(path)
    if why:
        raise ValueError(f"{path!r} is {why}; dataset paths are relative to the repository root")
    return path


def _plain_name(name: str) -> str:
    if "/" in name or unsafe_member(name):
        raise ValueError(f"{name!r} is not a plain file name inside the captures folder")
    return name


class SampleStats(_Record):
    """What curation judges a sample by (over the ticks the agent was alive)."""

    timesteps: int
    frames: int
    reward_sum: float
    mean_reward: float
    done_count: int
    action_counts: dict[str, int]


class CuratedSample(ManifestEntry):
    """One sample of a dataset: the capture manifest's entry, the capture it came from, metrics, the verdict."""

    capture: str
    metrics: SampleStats
    accepted: bool
    reasons: list[str]


class Criteria(_Record):
    min_timesteps: int
    min_reward: float | None


class DatasetManifest(_Record):
    """`manifests/<set>.json`."""

    format: Literal["townlet.bc_manifest"] = "townlet.bc_manifest"
    format_version: Literal[1] = 1
    dataset: str
    captures_dir: str
    created: str
    criteria: Criteria
    captures: dict[str, CaptureMetadata]
    samples: list[CuratedSample]

    _paths = field_validator("captures_dir")(_inside_root)

    @property
    def accepted(self) -> list[CuratedSample]:
        return [s for s in self.samples if s.accepted]


class ChecksumSheet(_Record):
    """`checksums/<set>.json`: file name (inside `captures_dir`) -> SHA-256, and the manifest's SHA-256."""

    format: Literal["townlet.bc_checksums"] = "townlet.bc_checksums"
    format_version: Literal[1] = 1
    dataset: str
    captures_dir: str
    manifest: str
    manifest_sha256: str
    files: dict[str, str]

    _paths = field_validator("captures_dir", "manifest")(_inside_root)

    @field_validator("files")
    @classmethod
    def _plain_names(cls, files: dict[str, str]) -> dict[str, str]:
        for name in files:
            _plain_name(name)
        return files


class CatalogueEntry(_Record):
    manifest: str
    checksums: str
    captures_dir: str
    created: str
    tags: list[str]
    samples: int
    notes: str
    status: Status
    action_distribution: dict[str, float] = {}

    _paths = field_validator("manifest", "checksums", "captures_dir")(_inside_root)


class Catalogue(_Record):
    """`versions.json`: dataset name -> entry."""

    format: Literal["townlet.bc_datasets"] = "townlet.bc_datasets"
    format_version: Literal[1] = 1
    datasets: dict[str, CatalogueEntry]


M = TypeVar("M", bound=BaseModel)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_model(model: type[M], path: Path, raw: bytes, what: str) -> M:
    """`raw` (the bytes of `path`) as `model`; bad JSON or a bad field is a UsageError naming the file and key."""
    doc = parse_json(path, raw, finite=True)
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "document"
        raise UsageError(f"{path}: {where}: {err['msg']} (not a valid {what})") from None


def read_model(model: type[M], path: Path, what: str) -> M:
    return parse_model(model, path, read_bytes(path, what), what)


def write_model(path: Path, record: BaseModel) -> bytes:
    """Write `record` atomically as canonical JSON; return the bytes written."""
    raw = dump(record)
    try:
        atomic_write_bytes(path, raw)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return raw


def repo_root(versions: Path) -> Path:
    """The folder the catalogue's paths are relative to: the one holding the `data/` folder the catalogue is in
    (else the catalogue's own folder)."""
    for path in (versions, versions.absolute()):  # a relative catalogue path gives a relative root
        for parent in path.parents:
            if parent.name == "data":
                return parent.parent
    return versions.parent


def relative_to_root(path: Path, root: Path) -> str:
    """`path` as the catalogue writes it: relative to `root`, with forward slashes."""
    try:
        return path.absolute().relative_to(root.absolute()).as_posix()
    except ValueError:
        raise UsageError(f"{path}: must lie inside {root} (catalogue paths are relative to it)") from None


def read_catalogue(path: Path, *, missing_ok: bool = False) -> Catalogue:
    if missing_ok and not path.exists():
        return Catalogue(datasets={})
    return read_model(Catalogue, path, "BC dataset catalogue")
