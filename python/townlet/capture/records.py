"""The capture's file formats, one pydantic model each, and the readers built on them.

A capture folder holds, per agent, a sample (`.npz`) and its sidecar (`SampleSidecar`), and for
the whole capture a manifest (`CaptureManifest`, the file list with SHA-256s, written last) and a
metrics file (`CaptureMetrics`). All four carry the same `CaptureMetadata`. The writer builds the
models and dumps them (`dump`), so the files are `canonical_json` of exactly these fields.

Readers (replay training, the golden merge) validate against the same models; each translates
pydantic's errors into one message naming the file (and the entry) in one place.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from townlet.capture.metrics import EVENT_COUNTERS
from townlet.errors import UsageError
from townlet.jsonio import canonical_json, parse_json, read_bytes

CAPTURE_FORMAT_VERSION = "1"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CaptureMetadata(_Record):
    """What was captured and how: the same block in every file of a capture."""

    capture_format_version: str
    config_path: str
    config_id: str
    config_hash: str
    scenario_name: str
    description: str
    seed: int
    ticks: int
    policy: str
    manifest_checksum: str
    observation_schema_version: str
    action_space_version: str
    variant: str
    timestamp: str


class SampleRef(BaseModel):
    """What a reader needs of a manifest entry: the sample file and, when recorded, its digest and sidecar."""

    model_config = ConfigDict(extra="allow", frozen=True)

    sample: str
    sha256: str | None = None
    meta: str | None = None

    @field_validator("sample", "meta")
    @classmethod
    def _inside_folder(cls, name: str | None) -> str | None:
        why = None if name is None else unsafe_member(name)
        if why:
            raise ValueError(f"{name!r} is {why}; a manifest names files inside its own folder")
        return name


class ManifestEntry(SampleRef):
    """One sample of the manifest, as the writer records it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample: str
    meta: str
    agent_id: str
    frame_count: int
    sha256: str
    meta_sha256: str


class CaptureManifest(_Record):
    """`<prefix>_manifest.json`: the capture's files, renamed into place last."""

    metadata: CaptureMetadata
    samples: list[ManifestEntry]


class SidecarSpec(BaseModel):
    """What a reader needs of a sidecar: the observation/action spec the sample was captured with."""

    model_config = ConfigDict(extra="allow", frozen=True)

    map_shape: list[int] | None = None
    feature_names: list[str] = []
    action_names: list[str] | None = None
    map_channels: list[str] | None = None
    variant: str | None = None


class SampleSidecar(SidecarSpec):
    """`<stem>.json`: names, shapes, metrics and capture metadata of one sample."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent_id: str
    slot: int
    variant: str
    map_shape: list[int]
    map_channels: list[str]
    feature_names: list[str]
    action_names: list[str]
    action_dim: int
    timesteps: int
    value_pred_steps: int
    training_arrays: list[str]
    metrics: dict[str, float]
    capture_metadata: CaptureMetadata


class CaptureMetrics(_Record):
    """`<prefix>_metrics.json`: per-sample metrics and the capture's event totals."""

    metadata: CaptureMetadata
    samples: dict[str, dict[str, float]]
    events: dict[str, float]


class GoldenMetrics(BaseModel):
    """What the golden merge reads of a metrics file: numeric per-sample metrics and the events."""

    model_config = ConfigDict(extra="allow", strict=True)

    samples: dict[str, dict[str, float]]
    events: dict[str, Any]


def dump(record: BaseModel) -> bytes:
    """The file's bytes: canonical JSON of the model's fields (python mode: floats stay floats, and a
    NaN is refused by `canonical_json`, not turned into null)."""
    return canonical_json(record.model_dump()).encode()


def unsafe_member(name: str) -> str | None:
    """Why a file name a manifest lists could lead outside the manifest's folder (None when it is
    safe): the rule archive members follow (`artifacts.archive`), for captures."""
    if not name:
        return "an empty name"
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if "\\" in name:
        return "a name with a backslash"
    if ".." in PurePosixPath(name).parts:
        return "a path that leaves the folder (..)"
    return None


def member_path(manifest: Path, name: str) -> Path:
    """The file `name` (already checked by `SampleRef`) beside `manifest`; a symbolic link that leads
    out of the manifest's folder is a UsageError naming both."""
    path = manifest.parent / name
    folder = manifest.parent.resolve()
    if not path.resolve().is_relative_to(folder):
        raise UsageError(f"{manifest}: {name!r} leads outside the manifest's folder (to {path.resolve()})")
    return path


# -- readers ---------------------------------------------------------------------------------------


def _first_error(exc: ValidationError) -> tuple[tuple[int | str, ...], str]:
    err = exc.errors()[0]
    return tuple(err["loc"]), str(err["type"])


def read_manifest(path: Path) -> tuple[list[SampleRef], bytes]:
    """The samples a manifest lists (never empty) and the manifest's bytes; UsageError naming it."""
    raw = read_bytes(path, "manifest")
    doc = parse_json(path, raw)
    entries = doc.get("samples") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise UsageError(f"{path}: not a capture manifest (no 'samples' list)")
    if not entries:
        raise UsageError(f"{path}: the dataset is empty (no samples)")
    refs = []
    for k, entry in enumerate(entries):
        try:
            refs.append(SampleRef.model_validate(entry))
        except ValidationError as exc:
            loc, kind = _first_error(exc)
            if kind == "value_error":
                msg = str(exc.errors()[0]["ctx"]["error"])
                raise UsageError(f"{path}: samples[{k}].{loc[0]}: {msg}") from None
            if loc and loc[0] != "sample":
                raise UsageError(f"{path}: samples[{k}].{loc[0]}: expected a string") from None
            raise UsageError(f"{path}: samples[{k}] has no 'sample' file name") from None
    return refs, raw


def read_sidecar_spec(path: Path) -> dict[str, Any]:
    """The spec a sidecar records (map shape, feature/action names, channels, variant, n_features)."""
    doc = parse_json(path, read_bytes(path, "capture sample sidecar"))  # binary, bad JSON, duplicate keys
    try:
        spec = SidecarSpec.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "document"
        raise UsageError(f"{path}: not a capture sample sidecar ({where}: {err['msg']})") from None
    meta: dict[str, Any] = spec.model_dump(
        include={"map_shape", "feature_names", "action_names", "map_channels", "variant"}
    )
    meta["n_features"] = len(spec.feature_names)
    return meta


def read_capture_events(manifest: Path) -> dict[str, float]:
    """The capture's event totals (`<prefix>_metrics.json` beside the manifest), keyed by native event
    name; empty when there is no metrics file."""
    path = manifest.with_name(manifest.name.replace("_manifest.json", "_metrics.json"))
    if path == manifest or not path.is_file():
        return {}
    try:
        doc = parse_json(path, path.read_bytes())
        ev = doc.get("events") or {}
        out = {names[0]: float(ev.get(key, 0.0)) for key, names in EVENT_COUNTERS.items()}
        out["queue_conflict_value"] = float(ev.get("queue_conflict_intensity_sum", 0.0))
        out["chat_success_value"] = float(ev.get("chat_quality_mean", 0.0)) * out["chat_success"]
    except (UsageError, OSError, ValueError, TypeError, AttributeError):
        raise UsageError(f"{path}: not a capture metrics file (invalid JSON or event totals)") from None
    return {k: v for k, v in out.items() if v}


def read_golden_metrics(path: Path) -> dict[str, Any]:
    """One scenario's golden entry (`{"events", "samples"}`) from its metrics file."""
    doc = parse_json(path, read_bytes(path))
    try:
        GoldenMetrics.model_validate(doc)
    except ValidationError as exc:
        locs = [tuple(err["loc"]) for err in exc.errors()]
        bad_sample = next((loc[1] for loc in locs if len(loc) >= 2 and loc[0] == "samples"), None)
        if bad_sample is None or any(len(loc) < 2 for loc in locs):
            raise UsageError(f"{path}: not a capture metrics file (expected 'samples' and 'events' mappings)") from None
        raise UsageError(f"{path}: samples.{bad_sample}: expected a mapping of numbers") from None
    return {"events": doc["events"], "samples": doc["samples"]}
