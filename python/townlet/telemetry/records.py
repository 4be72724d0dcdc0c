"""The record formats the trainer writes, one pydantic model each, and the checks derived from them.

* `PpoRecord`: one PPO epoch, `telemetry_version` 1.1 (a 1.0 record is the same without the `v1.1` group).
* `BcRecord`: one behaviour-cloning epoch (`--bc-log`).
* `EpisodeRecord`: one episode of a per-episode log.

Every PPO field belongs to a group (base, v1.1, social, ...). The validator enforces the groups of the contract
(`ENFORCED`); the other groups are documented and typed but not required. The field-name tuples other code
imports come from the models, and the checks map pydantic's errors to our one-line messages
(`FILE:LINE: missing field 'kl_divergence'`), which users and tests rely on. docs/TELEMETRY.md describes
each field.
"""

from __future__ import annotations

import math
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Le
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo

TELEMETRY_VERSION = "1.1"

#: A finite JSON number (an int or a float, not a bool).
Finite = Annotated[float, Field(allow_inf_nan=False)]
#: A finite number in [0, 1].
Fraction = Annotated[float, Field(allow_inf_nan=False, ge=0, le=1)]


def _in(group: str, default: Any = ..., *, alias: str | None = None) -> Any:
    """A field of `group`: required unless given a default. A default of None on a non-optional type means
    "may be absent, but must be valid when present" (pydantic does not validate defaults)."""
    return Field(default, alias=alias, json_schema_extra={"group": group})


_STRICT = ConfigDict(strict=True, extra="allow", populate_by_name=False)


class AnnealFields(BaseModel):
    """The anneal part of a PPO record (`PpoRecord` carries these): written by the BC -> PPO anneal's PPO stages
    (training/anneal.py), except `anneal_ratio`, which every mixed-mode record carries (the learned share of the
    rollout's actions, training/mixed.py). A record with an `anneal_*` key other than `anneal_ratio` is an anneal
    record for the watcher and the summary."""

    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=False)

    anneal_stage: str | None = _in("anneal", None)
    anneal_cycle: int | None = _in("anneal", None)
    anneal_dataset: str | None = _in("anneal", None)
    anneal_bc_accuracy: float | None = _in("anneal", None)
    anneal_bc_threshold: float | None = _in("anneal", None)
    anneal_bc_passed: bool | None = _in("anneal", None)
    anneal_loss_baseline: float | None = _in("anneal", None)
    anneal_queue_baseline: float | None = _in("anneal", None)
    anneal_intensity_baseline: float | None = _in("anneal", None)
    anneal_loss_flag: bool | None = _in("anneal", None)
    anneal_queue_flag: bool | None = _in("anneal", None)
    anneal_intensity_flag: bool | None = _in("anneal", None)
    anneal_ratio: Fraction | None = _in("anneal", None)


class PpoRecord(AnnealFields):
    """One PPO epoch record (telemetry 1.1), as `epoch_record` in training/ppo.py builds it."""

    model_config = _STRICT

    telemetry_version: str | float = _in("version")
    # Base (1.0): always required.
    epoch: Finite = _in("base")
    updates: Finite = _in("base")
    transitions: Finite = _in("base")
    loss_policy: Finite = _in("base")
    loss_value: Finite = _in("base")
    loss_entropy: Finite = _in("base")
    loss_total: Finite = _in("base")
    clip_fraction: Finite = _in("base")
    clip_fraction_max: Finite = _in("base")
    clip_triggered_minibatches: Finite = _in("base")
    adv_mean: Finite = _in("base")
    adv_std: Finite = _in("base")
    adv_zero_std_batches: Finite = _in("base")
    adv_min_std: Finite = _in("base")
    grad_norm: Finite = _in("base")
    kl_divergence: Finite = _in("base")
    lr: Finite = _in("base")
    steps: Finite = _in("base")
    # Conflict block: always required.
    rivalry_max_mean_avg: Finite = _in("conflict", alias="conflict.rivalry_max_mean_avg")
    rivalry_max_max_avg: Finite = _in("conflict", alias="conflict.rivalry_max_max_avg")
    rivalry_avoid_count_mean_avg: Finite = _in("conflict", alias="conflict.rivalry_avoid_count_mean_avg")
    rivalry_avoid_count_max_avg: Finite = _in("conflict", alias="conflict.rivalry_avoid_count_max_avg")
    # Version 1.1: required from 1.1 on, forbidden below.
    epoch_duration_sec: Finite = _in("v1.1")
    cycle_id: Finite = _in("v1.1")
    batch_entropy_mean: Finite = _in("v1.1")
    batch_entropy_std: Finite = _in("v1.1")
    grad_norm_max: Finite = _in("v1.1")
    kl_divergence_max: Finite = _in("v1.1")
    reward_advantage_corr: Finite = _in("v1.1")
    rollout_ticks: Finite = _in("v1.1")
    log_stream_offset: Finite = _in("v1.1")
    queue_conflict_events: Finite = _in("v1.1")
    queue_conflict_intensity_sum: Finite = _in("v1.1")
    data_mode: Literal["replay", "rollout", "mixed"] = _in("v1.1")
    # Social counters (the watcher reads them; not required by the contract).
    shared_meal_events: float | None = _in("social", None)
    late_help_events: float | None = _in("social", None)
    shift_takeover_events: float | None = _in("social", None)
    chat_success_events: float | None = _in("social", None)
    chat_failure_events: float | None = _in("social", None)
    chat_quality_mean: float | None = _in("social", None)
    # Hygiene and utility counters (optional in the contract).
    utility_outage_events: float | None = _in("hygiene", None)
    shower_complete_events: float | None = _in("hygiene", None)
    sleep_complete_events: float | None = _in("hygiene", None)
    # Baseline block: finite when present.
    baseline_sample_count: Finite = _in("baseline", None)
    baseline_reward_mean: Finite = _in("baseline", None)
    baseline_reward_sum: Finite = _in("baseline", None)
    baseline_reward_sum_mean: Finite = _in("baseline", None)
    # Throughput and learning diagnostics.
    sps: float | None = _in("extras", None)
    approx_kl: float | None = _in("extras", None)
    explained_variance: float | None = _in("extras", None)
    episode_return_mean: float | None = _in("extras", None)
    episodes: int | None = _in("extras", None)
    reward_mean: float | None = _in("extras", None)
    # Town KPIs of the episodes that ended during the epoch (absent when none did).
    kpi_self_sufficiency: float | None = _in("extras", None)
    kpi_on_time_rate: float | None = _in("extras", None)
    kpi_relationship_coverage: float | None = _in("extras", None)
    kpi_faints: float | None = _in("extras", None)
    kpi_evictions: float | None = _in("extras", None)
    baseline_log_prob_mean: float | None = _in("diagnostics", None)
    early_stop: bool | None = _in("diagnostics", None)
    time_env_sec: float | None = _in("diagnostics", None)
    time_policy_sec: float | None = _in("diagnostics", None)
    time_learn_sec: float | None = _in("diagnostics", None)
    time_inference_sec: float | None = _in("diagnostics", None)
    time_other_sec: float | None = _in("diagnostics", None)
    # Kickstarting (`ppo.kickstart_coef`; absent when off): the epoch's weight and cross-entropy to the expert.
    kickstart_coef: float | None = _in("diagnostics", None)
    loss_imitation: float | None = _in("diagnostics", None)


class BcRecord(BaseModel):
    """One behaviour-cloning epoch record (`--bc-log`); the log tool knows it by `phase` "bc" and an `epoch`."""

    model_config = _STRICT

    phase: Literal["bc"] = _in("kind", "bc")
    epoch: Finite = _in("bc")
    steps: Finite = _in("bc")
    lr: Finite = _in("bc")
    loss_policy: Finite = _in("bc")
    loss_value: Finite = _in("bc")
    train_accuracy: Fraction = _in("bc")
    rows_train: Finite = _in("bc")
    rows_holdout: Finite = _in("bc")
    epoch_duration_sec: Finite = _in("bc")
    #: Null when nothing is held out.
    holdout_accuracy: Fraction | None = _in("bc")
    holdout_loss: Finite | None = _in("bc")


class EpisodeRecord(BaseModel):
    """One per-episode record: `episode` increases within a run (records sharing `run_id` and `phase`); the
    other known fields are checked when present. Every number, however nested, must be finite."""

    model_config = _STRICT

    episode: Annotated[int, Field(ge=0)] = _in("episode")
    run_id: str = _in("episode", None)
    phase: str = _in("episode", None)
    schema_version: Annotated[int, Field(ge=1)] = _in("episode", None)
    # Any number here (1e999 is caught by the finite-number rule, which names the field once).
    return_: float = _in("episode", None, alias="return")
    wall_time: float = _in("episode", None)
    length: Annotated[int, Field(ge=0)] = _in("episode", None)
    env_steps: Annotated[int, Field(ge=0)] = _in("episode", None)


# -- field names, derived ------------------------------------------------------------------------------------


def _key(name: str, info: FieldInfo) -> str:
    return info.alias or name


def _group(info: FieldInfo) -> str:
    extra = info.json_schema_extra
    assert isinstance(extra, dict)
    return str(extra["group"])


def _nullable(info: FieldInfo) -> bool:
    origin = get_origin(info.annotation)
    return origin in (Union, types.UnionType) and type(None) in get_args(info.annotation)


def _constraints(info: FieldInfo) -> list[Any]:
    """The field's metadata, including that of an `Annotated` inside `X | None`."""
    found = list(info.metadata)
    for arg in get_args(info.annotation) if _nullable(info) else ():
        for meta in getattr(arg, "__metadata__", ()):
            found += meta.metadata if isinstance(meta, FieldInfo) else [meta]
    return found


def _bounds(info: FieldInfo) -> str:
    low = next(m.ge for m in _constraints(info) if isinstance(m, Ge))
    high = next(m.le for m in _constraints(info) if isinstance(m, Le))
    return f"[{low}, {high}]"


def fields_of(model: type[BaseModel], group: str) -> tuple[str, ...]:
    """The record keys of `group`, in the model's order."""
    return tuple(_key(n, f) for n, f in model.model_fields.items() if _group(f) == group)


#: The groups `check_record` enforces.
ENFORCED = ("base", "conflict", "v1.1", "baseline")
#: Always required, numeric (v1.0).
BASE_FIELDS = fields_of(PpoRecord, "base")
#: Required from version 1.1 (numeric; `data_mode`, a string, comes with them).
V11_FIELDS = tuple(k for k in fields_of(PpoRecord, "v1.1") if k != "data_mode")
SOCIAL_FIELDS = fields_of(PpoRecord, "social")
HYGIENE_FIELDS = fields_of(PpoRecord, "hygiene")
CONFLICT_FIELDS = fields_of(PpoRecord, "conflict")
BASELINE_FIELDS = fields_of(PpoRecord, "baseline")
EXTRA_FIELDS = fields_of(PpoRecord, "extras")
ANNEAL_FIELDS = fields_of(PpoRecord, "anneal")
DATA_MODES: tuple[str, ...] = get_args(PpoRecord.model_fields["data_mode"].annotation)
#: A behaviour-cloning epoch record: these finite numbers ...
BC_NUMERIC_FIELDS = tuple(k for k, f in BcRecord.model_fields.items() if _group(f) == "bc" and not _nullable(f))
#: ... and these, numbers or null.
BC_OPTIONAL_FIELDS = tuple(k for k, f in BcRecord.model_fields.items() if _group(f) == "bc" and _nullable(f))


#: Carried by every mixed-mode record, so it alone does not make an anneal record.
MIXED_FIELDS = ("anneal_ratio",)


def is_anneal_record(record: dict[str, Any]) -> bool:
    """Written by the BC -> PPO anneal: any `anneal_*` key but `anneal_ratio` (which mixed mode writes)."""
    return any(key.startswith("anneal_") and key not in MIXED_FIELDS for key in record)


def _failures(model: type[BaseModel], record: dict[str, Any]) -> dict[str, str]:
    """record key -> pydantic's error type, for each field that does not validate."""
    try:
        model.model_validate(record)
    except ValidationError as exc:
        out: dict[str, str] = {}
        for err in exc.errors():
            out.setdefault(str(err["loc"][0]), err["type"])
        return out
    return {}


def _version(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def check_record(record: Any, *, where: str) -> list[str]:
    """Schema problems of one telemetry record (empty when valid)."""
    if not isinstance(record, dict):
        return [f"{where}: expected a JSON object, got {type(record).__name__}"]
    version = record.get("telemetry_version")
    v = _version(version)
    if v is None:
        return [f"{where}: telemetry_version missing or not a version number (got {version!r})"]
    failed = _failures(PpoRecord, record)
    carried = [k for k in fields_of(PpoRecord, "v1.1") if k in record] if v < 1.1 else []
    problems: list[str] = []
    for name, info in PpoRecord.model_fields.items():
        key, group = _key(name, info), _group(info)
        if group == "v1.1" and v < 1.1:
            if carried:
                problems.append(f"{where}: version {version} record carries 1.1 fields {carried}")
                carried = []
        elif group in ENFORCED and key in failed:
            if get_origin(info.annotation) is Literal:
                choices = ", ".join(get_args(info.annotation))
                problems.append(f"{where}: {key} must be one of {choices}, got {record.get(key)!r}")
            elif failed[key] == "missing":
                problems.append(f"{where}: missing field {key!r}")
            else:
                problems.append(f"{where}: field {key!r} must be a finite number, got {record[key]!r}")
    return problems


def check_bc_record(record: dict[str, Any], *, where: str) -> list[str]:
    """Schema problems of one behaviour-cloning epoch record (empty when valid)."""
    failed = _failures(BcRecord, record)
    problems: list[str] = []
    ranges: list[str] = []
    for name, info in BcRecord.model_fields.items():
        kind = failed.get(name)
        if _group(info) != "bc" or kind is None:
            continue
        if kind == "missing":
            problems.append(f"{where}: missing field {name!r}")
        elif kind in ("greater_than_equal", "less_than_equal"):
            ranges.append(f"{where}: field {name!r} must lie in {_bounds(info)}, got {record[name]!r}")
        else:
            null = " or null" if _nullable(info) else ""
            problems.append(f"{where}: field {name!r} must be a finite number{null}, got {record[name]!r}")
    return problems + ranges


def _what(info: FieldInfo) -> str:
    """How an episode field's type reads in a problem: "a string", "a number", "an integer >= 0"."""
    if info.annotation is str:
        return "a string"
    if info.annotation is int:
        low = next((m.ge for m in _constraints(info) if isinstance(m, Ge)), None)
        return "an integer" if low is None else f"an integer >= {low}"
    return "a number"


def _non_finite(value: Any, path: str) -> list[str]:
    """Key paths of the non-finite numbers in `value`."""
    if isinstance(value, float) and not math.isfinite(value):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _non_finite(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _non_finite(v, f"{path}[{i}]")]
    return []


def check_episode(record: dict[str, Any], *, where: str) -> list[str]:
    """Schema problems of one per-episode record (empty when valid)."""
    failed = _failures(EpisodeRecord, record)
    problems = [
        f"{where}: field {key!r} must be {_what(info)}, got {record.get(key)!r}"
        for name, info in EpisodeRecord.model_fields.items()
        if (key := _key(name, info)) in failed
    ]
    return problems + [f"{where}: field {p!r} must be a finite number" for p in _non_finite(record, "")]
