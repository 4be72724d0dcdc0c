"""A capture made in one process (a Ray shard, maybe on another machine) and published by another.

`capture_files` runs `capture_rollout` into a private temporary folder and returns every file's bytes;
`publish_files` writes them into the real output folder through the same staging route (fsync, rename,
the manifest last). The bytes are those a local capture of the same config writes, once the caller's
timestamp travels with the job (`SOURCE_DATE_EPOCH` is read where the caller runs, never on the worker).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from townlet.capture.rollout import capture_rollout
from townlet.capture.staging import Staging, pool, wait_all
from townlet.sim.config import TownConfig


@dataclass(frozen=True)
class CaptureJob:
    """One scenario of a suite: its config, the folder it goes to, and the suite's options."""

    config: TownConfig
    folder: Path
    timestamp: str
    ticks: int | None = None
    compress: bool = False
    auto_seed_agents: bool = False
    agent_id: str | None = None


@dataclass
class CapturedFiles:
    """A finished capture's files by name (the manifest, `last`, is published last)."""

    files: dict[str, bytes]
    last: str
    samples: list[str]
    notices: list[str] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return sum(len(data) for data in self.files.values())


def capture_files(job: CaptureJob) -> CapturedFiles:
    """Capture `job` into a temporary folder and return its files' bytes (the folder is removed)."""
    with tempfile.TemporaryDirectory(prefix="townlet-capture-") as tmp:
        out = Path(tmp) / "capture"
        result = capture_rollout(
            job.config,
            out,
            ticks=job.ticks,
            compress=job.compress,
            auto_seed_agents=job.auto_seed_agents,
            agent_id=job.agent_id,
            timestamp=job.timestamp,
        )
        files = {path.name: path.read_bytes() for path in result.files}
    return CapturedFiles(files, result.files[-1].name, result.samples)


def publish_files(folder: Path, captured: CapturedFiles) -> list[str]:
    """Write `captured` into `folder` (staged, fsynced, renamed; the manifest last). Returns the notices
    (stale staging folders removed) for the caller to print."""
    staging = Staging(folder, list(captured.files))
    try:
        staging.open()
        wait_all([pool("io").submit(staging.write, name, data) for name, data in captured.files.items()])
        staging.publish(captured.last)
    except BaseException:
        staging.abort()
        raise
    return staging.notices
