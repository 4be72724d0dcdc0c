"""The published schema of a `telemetry_snapshot` payload (`SCHEMA_VERSION`), as pydantic models, and the check
`tools/telemetry_check.py` runs: `check_payload(obj)` -> the schema version, and the problems found.

Compatibility (docs/TELEMETRY_CHANGELOG.md): a minor version only adds keys, so every model allows keys it does not
know; a payload of a newer minor version is checked against what this version knows (with a warning); a different
major version is refused. The JSON Schema generated from `TelemetrySnapshot` ships as
docs/telemetry_snapshot.schema.json (a test keeps the two equal).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from townlet.ops.snapshot import SCHEMA_VERSION

VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
Unit = Annotated[float, Field(ge=0.0, le=1.0)]
Count = Annotated[int, Field(ge=0)]


class _Open(BaseModel):
    """Keys a later minor version adds are allowed; the types of the known ones are strict."""

    model_config = ConfigDict(extra="allow", strict=True)


class Needs(_Open):
    hunger: Unit
    hygiene: Unit
    energy: Unit


class Activity(_Open):
    affordance: str | None
    phase: str


class Agent(_Open):
    position: Annotated[list[int], Field(min_length=2, max_length=2)]
    needs: Needs
    wallet: float | None = Field(description="null in privacy mode")
    shift_state: str
    job: str | None
    alive: bool
    activity: Activity
    possessed: bool
    action: str | None = Field(None, description="since 1.1.0: the last tick's action (null before the first tick)")
    action_prob: Unit | None = Field(
        None, description="since 1.1.0: its probability under the acting policy; null for an operator's action"
    )


class Job(_Open):
    job_id: str | None
    shift_state: str
    on_shift: bool
    wallet: float | None
    lateness_counter: Count
    attendance_ratio: Unit
    wages_earned: float
    wages_withheld: float
    exit_pending: bool


class Utilities(_Open):
    power: bool
    water: bool


class Economy(_Open):
    stock: dict[str, dict[str, int]] = Field(description="object id -> stock key -> units")
    prices: dict[str, float]
    utilities: Utilities


class Employment(_Open):
    pending: list[str] = Field(description="agents queued for an employment exit")
    pending_count: Count
    exits_today: Count
    daily_exit_cap: Count
    queue_limit: Count
    review_window: Count


class Perturbation(_Open):
    event_id: Count
    name: str
    kind: str
    started: int
    ends: int
    magnitude: float


class Narration(_Open):
    tick: Count
    event: str
    text: str


class Event(_Open):
    tick: Count
    event: str
    agent: str | None
    other: str | None


class Toggles(_Open):
    narration: bool
    narration_throttle: Count
    privacy_mode: bool


class PromotionEvent(_Open):
    event: str = Field(description="promoted | rollback | policy_swap")
    tick: Count
    to: str | None = None
    reason: str | None = None


class Promotion(_Open):
    status: str = Field(description="monitoring | ready | promoted")
    release: str = Field(description="the acting policy: expert, or checkpoint:<file>:<sha256 prefix>")
    shadow: str | None
    pass_streak: Count
    required_passes: Count
    candidate_ready: bool
    canary_until: int | None
    last_event: PromotionEvent | None


class TelemetrySnapshot(_Open):
    """`telemetry_snapshot`'s result: the town at one tick."""

    schema_version: Annotated[str, Field(pattern=VERSION.pattern)]
    tick: Count
    day: Count
    config_id: str
    agents: dict[str, Agent] = Field(description="agent id -> its state")
    jobs: dict[str, Job] = Field(description="agent id -> its employment record")
    economy: Economy
    employment: Employment
    kpis: dict[str, float]
    perturbations: list[Perturbation]
    narrations: list[Narration]
    events: list[Event] = Field(description="the latest world events, every kind")
    toggles: Toggles
    possessed: list[str]
    reward_clip_events: Count = Field(0, description="since 1.1.0: agent-ticks whose reward a clip changed")
    promotion: Promotion | None = Field(None, description="since 1.1.0; null when the shard has no promotion manager")


def json_schema() -> dict[str, Any]:
    schema = TelemetrySnapshot.model_json_schema()
    schema["$id"] = f"townlet/telemetry_snapshot/{SCHEMA_VERSION}"
    schema["description"] = f"A Townlet telemetry_snapshot payload, schema {SCHEMA_VERSION}."
    return schema


def unwrap(obj: Any) -> Any:
    """The snapshot inside a command result (`{"status": "ok", "result": {...}}`) or a stream message
    (`{"type": "snapshot", "data": {...}}`); anything else as it is."""
    if isinstance(obj, dict) and "schema_version" not in obj:
        if isinstance(obj.get("result"), dict) and "status" in obj:
            return obj["result"]
        if obj.get("type") == "snapshot" and isinstance(obj.get("data"), dict):
            return obj["data"]
    return obj


def check_payload(obj: Any) -> tuple[str | None, list[str], list[str]]:
    """(schema version, problems, warnings) of a snapshot payload against this version's schema."""
    obj = unwrap(obj)
    if not isinstance(obj, dict):
        return None, [f"expected a JSON object (a telemetry_snapshot payload), got {type(obj).__name__}"], []
    version = obj.get("schema_version")
    if not isinstance(version, str) or VERSION.match(version) is None:
        return None, [f"schema_version: expected MAJOR.MINOR.PATCH, got {version!r}"], []
    theirs = tuple(int(x) for x in version.split("."))
    mine = tuple(int(x) for x in SCHEMA_VERSION.split("."))
    warnings: list[str] = []
    if theirs[0] != mine[0]:
        return version, [f"schema_version {version}: major version differs from the published {SCHEMA_VERSION}"], []
    if theirs[1] > mine[1]:
        warnings.append(
            f"schema_version {version} is newer than {SCHEMA_VERSION}: only {SCHEMA_VERSION}'s keys checked"
        )
    try:
        TelemetrySnapshot.model_validate(obj)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "payload"
            problems.append(f"{where}: {err['msg']}")
        return version, problems, warnings
    return version, [], warnings
