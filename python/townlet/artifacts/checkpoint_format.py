"""The checkpoint format without torch: constants, the header model, the fingerprint, header parsing
and file naming. The tools (`checkpoint_tools`, `archive`) read checkpoints through this module and
numpy only, so listing or verifying a checkpoint does not pay torch's start-up.

Two encodings of one format (`format_version` 1):
* `X.json` — header and weights together; weights as plain JSON numbers (float32 values survive
  the round trip exactly, since JSON floats are doubles);
* `X.safetensors` + `X.json` sidecar — weights in safetensors, the same header in the sidecar.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path
from typing import Annotated, Any, TypeGuard, get_origin

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from townlet.errors import UsageError
from townlet.jsonio import canonical_json, loads_strict

FORMAT = "townlet.checkpoint"
FORMAT_VERSION = 1
#: Prefix of training-state tensors (optimizer moments) inside a safetensors file; "/" cannot occur
#: in a module's parameter names, so they never collide with the policy's.
TRAINING_PREFIX = "_training/"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

Shape = list[Annotated[int, Field(ge=0)]]


class Lineage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    parent_sha256: str | None = None
    note: str | None = None
    resumed_from_sha256: str | None = None  # only when the run resumed from a checkpoint


class TrainingBlock(BaseModel):
    """What a resume restores besides the weights: JSON `data` and the shapes of the training tensors."""

    model_config = ConfigDict(extra="allow", strict=True)

    data: dict[str, Any]
    tensors: dict[str, Shape] = {}


class SourceFile(BaseModel):
    """The exact text of a YAML file a run's config was read from, and the SHA-256 of its UTF-8 bytes."""

    model_config = ConfigDict(extra="allow", strict=True)

    path: str
    text: str
    sha256: str


class ConfigYaml(SourceFile):
    """`config_yaml`: the config file exactly as it was read, and each file it included, by key
    (`affordances`, `perturbations`). Absent from checkpoints written before raw-text embedding."""

    includes: dict[str, SourceFile] = {}


class CheckpointHeader(BaseModel):
    """The header of a checkpoint (the `.json` file, or the sidecar of a `.safetensors` file).

    Required fields are the ones every checkpoint carries; `checkpoint_tools.check_checkpoint` reports
    each that is missing or of the wrong JSON type. The writer sets exactly the fields it writes and
    dumps them with `exclude_unset`, so optional blocks (training, lineage.resumed_from_sha256, the
    weights of one encoding or the other) appear only when given.
    """

    model_config = ConfigDict(extra="allow", strict=True)

    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    policy_class: str
    architecture: dict[str, Any]
    parameters: dict[str, Shape]
    created_utc: Annotated[str, Field(pattern=STAMP.pattern)]
    metadata: dict[str, Any]
    observation: dict[str, Any]
    fingerprint: str
    config: dict[str, Any] | None = None
    config_sha256: str | None = None
    config_yaml: ConfigYaml | None = None
    git: dict[str, Any]
    libraries: dict[str, Any]
    seed: int
    counters: dict[str, Any]
    lineage: Lineage
    training: TrainingBlock | None = None
    # The .json encoding: weights inline.
    weights: dict[str, Any] | None = None
    training_weights: dict[str, Any] | None = None
    # The .safetensors encoding: the sidecar names the weights file and its digest.
    weights_file: str | None = None
    weights_sha256: str | None = None


_SHAPE: TypeAdapter[list[int]] = TypeAdapter(Shape)

#: Header fields every checkpoint carries (the model's required fields).
REQUIRED = tuple(name for name, f in CheckpointHeader.model_fields.items() if f.is_required())
_JSON_TYPES = {str: "a string", dict: "an object", int: "an integer", list: "a list"}


def _json_type(name: str) -> str:
    annotation = CheckpointHeader.model_fields[name].annotation
    kind = get_origin(annotation) or annotation
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return "an object"
    return _JSON_TYPES.get(kind, "valid") if isinstance(kind, type) else "valid"


def header_problems(name: str, header: dict[str, Any]) -> list[str]:
    """The header's structural problems, from the model: missing or mistyped required fields, a
    created_utc that is not RFC 3339 UTC, parameter shapes that are not lists of integers >= 0.
    (Weights, config and training are checked against their contents by `checkpoint_tools`.)"""
    try:
        CheckpointHeader.model_validate(header)
    except ValidationError as exc:
        errors = exc.errors()
    else:
        return []
    fields: list[tuple[int, str]] = []
    stamp: list[str] = []
    shapes: list[str] = []
    for err in errors:
        loc = err["loc"]
        key = str(loc[0]) if loc else ""
        if key not in REQUIRED:
            continue
        if err["type"] == "missing":
            fields.append((REQUIRED.index(key), f"{name}: missing field {key!r}"))
        elif len(loc) == 1 and err["type"] == "string_pattern_mismatch":
            stamp.append(f"{name}: created_utc {header[key]!r} is not RFC 3339 UTC (YYYY-MM-DDTHH:MM:SSZ)")
        elif len(loc) == 1:
            value = header[key]
            fields.append(
                (REQUIRED.index(key), f"{name}: field {key!r} must be {_json_type(key)}, got {type(value).__name__}")
            )
    params = header.get("parameters")
    if isinstance(params, dict):
        valid = parameter_shapes(params)
        shapes = [
            f"{name}: parameters.{pname}: a shape is a list of integers >= 0, got {shape!r}"
            for pname, shape in params.items()
            if pname not in valid
        ]
    return [m for _, m in sorted(fields)] + stamp + shapes


def config_yaml_problems(name: str, header: dict[str, Any]) -> list[str]:
    """Problems of the header's `config_yaml` block (none when it is absent: older checkpoints): its
    shape, and each embedded text against its SHA-256."""
    block = header.get("config_yaml")
    if block is None:
        return []
    try:
        source = ConfigYaml.model_validate(block)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return [f"{name}: config_yaml{'.' + where if where else ''}: {first['msg']}"]
    problems = []
    for label, item in [
        ("config_yaml", source),
        *((f"config_yaml.includes.{k}", v) for k, v in source.includes.items()),
    ]:
        actual = hashlib.sha256(item.text.encode("utf-8")).hexdigest()
        if actual != item.sha256:
            problems.append(f"{name}: {label} text does not match its sha256 {item.sha256} (sha256 {actual})")
    return problems


def parameter_shapes(parameters: dict[str, Any]) -> dict[str, list[int]]:
    """The entries of a header's `parameters` that are valid shapes (`Shape`)."""
    shapes = {}
    for pname, shape in parameters.items():
        try:
            shapes[pname] = _SHAPE.validate_python(shape, strict=True)
        except ValidationError:
            continue
    return shapes


def fingerprint(spec: dict[str, Any], obs_meta: dict[str, Any]) -> str:
    """SHA-256 over what must match for a checkpoint to drive an env: architecture, observation
    layout and schema, action names and action-space version."""
    keys = ("variant", "map_shape", "map_channels", "feature_names", "obs_dim", "action_names",
            "observation_schema_version", "action_space_version")  # fmt: skip
    payload = {"architecture": spec, "observation": {k: obs_meta.get(k) for k in keys}}
    return hashlib.sha256(canonical_json(payload, indent=None).encode()).hexdigest()


def git_info() -> dict[str, Any]:
    """The commit the working tree is at and whether it has uncommitted changes (None outside git)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, check=True, timeout=5)
        return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def parse_header(name: str, raw: bytes) -> dict[str, Any]:
    """The header of a checkpoint (or sidecar) from its bytes: UsageError naming `name` unless it is
    JSON of this format and version. NaN and Infinity are not JSON and are refused."""
    try:
        header = loads_strict(raw, finite=True)
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, a duplicate key, NaN/Infinity
        raise UsageError(f"{name}: not a checkpoint (invalid JSON: {exc})") from None
    found = header.get("format") if isinstance(header, dict) else None
    if not isinstance(header, dict) or found != FORMAT:
        raise UsageError(f"{name}: not a Townlet checkpoint (format is {found!r}, expected {FORMAT!r})")
    if header.get("format_version") != FORMAT_VERSION:
        raise UsageError(
            f"{name}: checkpoint format_version {header.get('format_version')!r} is not supported "
            f"(this build reads {FORMAT_VERSION})"
        )
    return header


def plain_file_name(name: Any) -> TypeGuard[str]:
    """A file name without a folder part: what a sidecar's `weights_file` must be."""
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name


def header_path(path: Path) -> Path:
    """The header of the checkpoint `path` names: `X.json` for `X.safetensors`, else `path` itself."""
    return path.with_suffix(".json") if path.suffix == ".safetensors" else path
