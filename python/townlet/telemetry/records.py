"""PPO telemetry: one JSON object per epoch (`telemetry_version` 1.1), written with frequency
thinning and rotation, and the schema the validator checks."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from townlet.jsonio import atomic_write_bytes, canonical_json

TELEMETRY_VERSION = "1.1"

#: Always required, numeric (v1.0).
BASE_FIELDS = (
    "epoch",
    "updates",
    "transitions",
    "loss_policy",
    "loss_value",
    "loss_entropy",
    "loss_total",
    "clip_fraction",
    "clip_fraction_max",
    "clip_triggered_minibatches",
    "adv_mean",
    "adv_std",
    "adv_zero_std_batches",
    "adv_min_std",
    "grad_norm",
    "kl_divergence",
    "lr",
    "steps",
)
#: Required from version 1.1 (numeric, except data_mode, a string).
V11_FIELDS = (
    "epoch_duration_sec",
    "cycle_id",
    "batch_entropy_mean",
    "batch_entropy_std",
    "grad_norm_max",
    "kl_divergence_max",
    "reward_advantage_corr",
    "rollout_ticks",
    "log_stream_offset",
    "queue_conflict_events",
    "queue_conflict_intensity_sum",
)
SOCIAL_FIELDS = (
    "shared_meal_events",
    "late_help_events",
    "shift_takeover_events",
    "chat_success_events",
    "chat_failure_events",
    "chat_quality_mean",
)
HYGIENE_FIELDS = ("utility_outage_events", "shower_complete_events", "sleep_complete_events")
CONFLICT_FIELDS = (
    "conflict.rivalry_max_mean_avg",
    "conflict.rivalry_max_max_avg",
    "conflict.rivalry_avoid_count_mean_avg",
    "conflict.rivalry_avoid_count_max_avg",
)
BASELINE_FIELDS = (
    "baseline_sample_count",
    "baseline_reward_mean",
    "baseline_reward_sum",
    "baseline_reward_sum_mean",
)
EXTRA_FIELDS = ("sps", "approx_kl", "explained_variance", "episode_return_mean", "episodes", "reward_mean")
DATA_MODES = ("replay", "rollout", "mixed")


class TelemetryWriter:
    """Appends one record per epoch to a JSONL file.

    * `frequency` k: only every k-th epoch is written (and always the final one, via `close`).
    * `max_entries` m: after m records the file rotates: `log` -> `log.1` -> `log.2` ...
    `log_stream_offset` counts the records written, across rotations, so tailers can resume.
    """

    def __init__(
        self, path: Path, *, frequency: int = 1, max_entries: int | None = None, resume_after: int | None = None
    ) -> None:
        """`resume_after` E: continue the log of a run resumed after epoch E (records of later
        epochs, written by the interrupted run after its checkpoint, are dropped) instead of
        starting a new one."""
        self.check_options(frequency, max_entries)
        self.path = path
        self.frequency = frequency
        self.max_entries = max_entries
        self.offset = 0
        self._in_file = 0
        self._pending: dict[str, Any] | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume_after is not None and path.is_file():
            self._continue(resume_after)
            return
        # A new run starts a new stream: drop a previous run's rotated files, which rotation would
        # otherwise shift up and interleave with this run's records.
        k = 1
        while Path(f"{path}.{k}").exists():
            os.unlink(f"{path}.{k}")
            k += 1
        with open(path, "w", encoding="utf-8"):
            pass

    @staticmethod
    def check_options(frequency: int, max_entries: int | None) -> None:
        if frequency < 1:
            raise ValueError(f"--ppo-log-frequency must be >= 1, got {frequency}")
        if max_entries is not None and max_entries < 1:
            raise ValueError(f"--ppo-log-max-entries must be >= 1, got {max_entries}")

    def _continue(self, epoch: int) -> None:
        """Keep the records up to `epoch` and continue the stream offset after the last one."""
        try:
            kept = [rec for _, rec in read_records(self.path) if int(rec["epoch"]) <= epoch]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{self.path}: cannot continue this log ({exc})") from None
        rotated = Path(f"{self.path}.1")
        previous = [rec for _, rec in read_records(rotated)] if rotated.is_file() else []
        last = kept[-1] if kept else (previous[-1] if previous else None)
        self.offset = int(last.get("log_stream_offset", -1)) + 1 if isinstance(last, dict) else 0
        self._in_file = len(kept)
        # The records as `write` wrote them: canonical JSON gives back the same bytes.
        atomic_write_bytes(self.path, "".join(canonical_json(rec, indent=None) + "\n" for rec in kept).encode())

    def _rotate(self) -> None:
        k = 1
        while Path(f"{self.path}.{k}").exists():
            k += 1
        for j in range(k, 1, -1):
            os.replace(f"{self.path}.{j - 1}", f"{self.path}.{j}")
        os.replace(self.path, f"{self.path}.1")
        with open(self.path, "w", encoding="utf-8"):
            pass
        self._in_file = 0

    def write(self, record: dict[str, Any], *, force: bool = False) -> bool:
        """Write `record` if its epoch is due (or `force`); returns whether it was written."""
        epoch = int(record["epoch"])
        if not force and epoch % self.frequency != 0:
            self._pending = record
            return False
        self._pending = None
        if self.max_entries is not None and self._in_file >= self.max_entries:
            self._rotate()
        record = dict(record, log_stream_offset=self.offset)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(canonical_json(record, indent=None) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.offset += 1
        self._in_file += 1
        return True

    def close(self) -> None:
        """Write the last epoch if thinning skipped it."""
        if self._pending is not None:
            self.write(self._pending, force=True)


def check_record(record: Any, *, where: str) -> list[str]:
    """Schema problems of one telemetry record (empty when valid)."""
    if not isinstance(record, dict):
        return [f"{where}: expected a JSON object, got {type(record).__name__}"]
    problems: list[str] = []
    version = record.get("telemetry_version")
    try:
        v = float(version) if version is not None else None
    except (TypeError, ValueError):
        v = None
    if v is None:
        problems.append(f"{where}: telemetry_version missing or not a version number (got {version!r})")
        return problems

    def numeric(key: str) -> None:
        if key not in record:
            problems.append(f"{where}: missing field {key!r}")
            return
        val = record[key]
        if isinstance(val, bool) or not isinstance(val, int | float) or not math.isfinite(float(val)):
            problems.append(f"{where}: field {key!r} must be a finite number, got {val!r}")

    for key in BASE_FIELDS:
        numeric(key)
    for key in CONFLICT_FIELDS:
        numeric(key)
    if v >= 1.1:
        for key in V11_FIELDS:
            numeric(key)
        mode = record.get("data_mode")
        if not isinstance(mode, str) or mode not in DATA_MODES:
            problems.append(f"{where}: data_mode must be one of {', '.join(DATA_MODES)}, got {mode!r}")
    else:
        present = [k for k in (*V11_FIELDS, "data_mode") if k in record]
        if present:
            problems.append(f"{where}: version {version} record carries 1.1 fields {present}")
    for key in BASELINE_FIELDS:
        if key in record:
            numeric(key)
    return problems


#: A behaviour-cloning epoch record (`--bc-log`): `phase` "bc" and these fields.
BC_NUMERIC_FIELDS = (
    "epoch",
    "steps",
    "lr",
    "loss_policy",
    "loss_value",
    "train_accuracy",
    "rows_train",
    "rows_holdout",
    "epoch_duration_sec",
)
#: Numbers, or null when nothing is held out.
BC_OPTIONAL_FIELDS = ("holdout_accuracy", "holdout_loss")


def check_bc_record(record: dict[str, Any], *, where: str) -> list[str]:
    """Schema problems of one behaviour-cloning epoch record (empty when valid)."""
    problems: list[str] = []

    def finite(val: Any) -> bool:
        return not isinstance(val, bool) and isinstance(val, int | float) and math.isfinite(float(val))

    for key in BC_NUMERIC_FIELDS:
        if key not in record:
            problems.append(f"{where}: missing field {key!r}")
        elif not finite(record[key]):
            problems.append(f"{where}: field {key!r} must be a finite number, got {record[key]!r}")
    for key in BC_OPTIONAL_FIELDS:
        if key not in record:
            problems.append(f"{where}: missing field {key!r}")
        elif record[key] is not None and not finite(record[key]):
            problems.append(f"{where}: field {key!r} must be a finite number or null, got {record[key]!r}")
    for key in ("train_accuracy", "holdout_accuracy"):
        val = record.get(key)
        if val is not None and finite(val) and not 0.0 <= float(val) <= 1.0:
            problems.append(f"{where}: field {key!r} must lie in [0, 1], got {val!r}")
    return problems


def read_records(path: Path) -> list[tuple[int, Any]]:
    """(line number, parsed JSON) for each non-empty line; raises ValueError naming the line."""
    out: list[tuple[int, Any]] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                out.append((lineno, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: malformed JSON ({exc.msg})") from None
    return out
