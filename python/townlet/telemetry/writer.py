"""The PPO telemetry writer: one JSON object per epoch (`telemetry_version` 1.1), with frequency thinning and
rotation; a resumed run continues its log."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from townlet.errors import TownletError
from townlet.jsonio import atomic_write_bytes, canonical_json
from townlet.telemetry.reader import read_file


def _records(path: Path) -> list[Any]:
    """The parsed records of one file; a line that is not JSON raises ValueError naming it."""
    lines = read_file(path)
    for ln in lines:
        if ln.error is not None:
            raise ValueError(f"{ln.where}: malformed JSON ({ln.error})")
    return [ln.record for ln in lines]


def _non_finite(value: Any, where: str = "") -> list[str]:
    """The keys (dotted) of the NaN and infinite numbers in a record."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [where or "(record)"]
    if isinstance(value, dict):
        return [k for key, v in value.items() for k in _non_finite(v, f"{where}.{key}" if where else str(key))]
    if isinstance(value, (list, tuple)):
        return [k for i, v in enumerate(value) for k in _non_finite(v, f"{where}[{i}]")]
    return []


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
        # A new log (and the dropping of a previous run's) starts with the first record, so a run
        # that fails before any leaves no created-but-empty file behind.
        self._started = False
        if resume_after is not None and path.is_file():
            self._continue(resume_after)
            self._started = True

    def _start(self) -> None:
        """A new run starts a new stream: drop a previous run's rotated files, which rotation would
        otherwise shift up and interleave with this run's records (the first record then replaces the
        log)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        k = 1
        while Path(f"{self.path}.{k}").exists():
            os.unlink(f"{self.path}.{k}")
            k += 1

    @staticmethod
    def check_options(frequency: int, max_entries: int | None) -> None:
        if frequency < 1:
            raise ValueError(f"--ppo-log-frequency must be >= 1, got {frequency}")
        if max_entries is not None and max_entries < 1:
            raise ValueError(f"--ppo-log-max-entries must be >= 1, got {max_entries}")

    def _continue(self, epoch: int) -> None:
        """Keep the records up to `epoch` and continue the stream offset after the last one."""
        try:
            kept = [rec for rec in _records(self.path) if int(rec["epoch"]) <= epoch]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{self.path}: cannot continue this log ({exc})") from None
        rotated = Path(f"{self.path}.1")
        previous = _records(rotated) if rotated.is_file() else []
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
        self._in_file = 0

    def write(self, record: dict[str, Any], *, force: bool = False) -> bool:
        """Write `record` if its epoch is due (or `force`); returns whether it was written."""
        epoch = int(record["epoch"])
        if not force and epoch % self.frequency != 0:
            self._pending = record
            return False
        self._pending = None
        record = dict(record, log_stream_offset=self.offset)
        try:
            line = canonical_json(record, indent=None) + "\n"
        except ValueError:
            bad = ", ".join(_non_finite(record)) or "a value"
            raise TownletError(
                f"{self.path}: epoch {epoch}'s record holds non-finite numbers ({bad}); not written"
            ) from None
        mode = "a" if self._started else "w"
        if not self._started:
            self._start()
            self._started = True
        if self.max_entries is not None and self._in_file >= self.max_entries:
            self._rotate()
        with open(self.path, mode, encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        self.offset += 1
        self._in_file += 1
        return True

    def close(self) -> None:
        """Write the last epoch if thinning skipped it."""
        if self._pending is not None:
            self.write(self._pending, force=True)
