"""The archive's manifest (`metadata.json`) as a model: what `archive.create` writes and
`archive.read` checks.

`members` maps every other member to its SHA-256 and size; `checkpoint`, `config`, `log` and
`provenance` say what was bundled and where it came from (copied from the verified checkpoint header);
`attached` names further files bundled as they were (an acceptance summary, anneal results).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

ARCHIVE_FORMAT: Final = "townlet.archive"
ARCHIVE_VERSION: Final = 1
METADATA = "metadata.json"
EMBEDDED = "checkpoint_config.json"
RESOLVED = "config_resolved.json"


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class MemberRecord(_Block):
    sha256: str
    size: int


class CheckpointBlock(_Block):
    """The bundled checkpoint, in brief (copied from its verified header)."""

    format: str
    header: str
    weights: str | None
    policy_class: str | None
    config_sha256: str | None
    fingerprint: str | None
    weights_sha256: str | None
    seed: int | None
    counters: dict[str, Any] | None


class ConfigBlock(_Block):
    file: str
    resolved: str
    resolved_sha256: str
    registry_label: str | None
    matches_checkpoint: bool


class LogBlock(_Block):
    file: str
    telemetry_records: int
    episode_records: int


class Provenance(_Block):
    git: dict[str, Any] | None
    checkpoint_created_utc: str | None
    libraries: dict[str, Any] | None
    lineage: dict[str, Any] | None


class ArchiveMetadata(_Block):
    """`metadata.json`: every other member's SHA-256 and size, and where the bundle came from."""

    format: Literal["townlet.archive"]
    format_version: Literal[1]
    created_utc: str | None
    label: str | None
    members: dict[str, MemberRecord]
    checkpoint: CheckpointBlock
    config: ConfigBlock
    log: LogBlock | None
    provenance: Provenance
    #: Further files bundled as `attached/NAME` (`create --attach`); absent when none.
    attached: list[str] | None = None


def metadata_problems(path: Path, doc: Any, exc: ValidationError) -> tuple[list[str], bool]:
    """`ArchiveMetadata`'s errors in our words, and whether the manifest is unusable (wrong format or
    version, members not an object). Errors inside `members` are left to `verify`, which reports
    each member once, with its digest check."""
    errors = exc.errors()
    top = {str(err["loc"][0]) if err["loc"] else "format" for err in errors if len(err["loc"]) <= 1}
    got = doc if isinstance(doc, dict) else {}
    if "format" in top:
        return [f"{path}: {METADATA} is not a Townlet archive manifest (format {ARCHIVE_FORMAT!r})"], True
    if "format_version" in top:
        return [
            f"{path}: {METADATA} format_version {got.get('format_version')!r} is not supported "
            f"(this build reads {ARCHIVE_VERSION})"
        ], True
    if "members" in top:
        return [f"{path}: {METADATA}: members must be an object"], True
    problems = [
        f"{path}: {METADATA}: {'.'.join(str(x) for x in err['loc'])}: {err['msg']}"
        for err in errors
        if err["loc"][0] != "members"
    ]
    return problems, False
