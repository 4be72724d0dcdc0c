"""Capture at scale (`townlet capture suite --backend ray`): a suite's scenarios spread over Ray shard actors,
published in scenario order.

Scenario i goes to shard i mod N, and shard k to node k mod nodes (`spread`). Each shard
captures into a private temporary folder on its own node and returns the files' bytes
(`capture.remote.capture_files`); the caller takes the results in scenario order, never arrival order, and
publishes each through the usual staging route (fsync, rename, the manifest last). So the output root holds
the same files, with the same bytes, as the local suite: the timestamp travels with the job
(`CaptureJob.timestamp`, read where the caller runs). A shard that dies is restarted by Ray and its
unfinished scenarios are captured again (`RESTARTS`, on the same node: shards are pinned); past that, or when
its node is gone, the suite stops with one clear line.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from townlet.capture.remote import CapturedFiles, CaptureJob, capture_files, publish_files
from townlet.errors import TownletError, UsageError
from townlet.training.ray_cluster import connect

#: Ray restarts a dead capture shard this many times and re-runs the scenarios it had not finished.
RESTARTS = 1


class CaptureShard:
    """One Ray actor: captures the scenarios handed to it, in the order they come."""

    def capture(self, job: CaptureJob) -> CapturedFiles:
        return capture_files(job)

    def pid(self) -> int:
        return os.getpid()

    def node_id(self) -> str:
        """The Ray node this shard runs on (tests check that shards spread over nodes)."""
        import ray  # inside the actor's process, where Ray is running

        return str(ray.get_runtime_context().get_node_id())


@dataclass
class Published:
    """One scenario, published: its job, its files and what the user should read (retries, notices)."""

    job: CaptureJob
    captured: CapturedFiles
    notices: list[str] = field(default_factory=list)


def start_shards(ray: ModuleType, shards: int) -> list[Any]:
    """`shards` capture actors, shard k pinned to the cluster's node k mod nodes."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = sorted(str(n["NodeID"]) for n in ray.nodes() if n["Alive"])
    # No CPU reserved: N shards on fewer CPUs share them rather than wait for each other. Pinned (not soft): a
    # soft placement falls back to the caller's node whenever the head's view of a node's resources lags.
    shard = ray.remote(num_cpus=0, max_restarts=RESTARTS, max_task_retries=RESTARTS)(CaptureShard)
    return [
        shard.options(scheduling_strategy=NodeAffinitySchedulingStrategy(nodes[k % len(nodes)], soft=False)).remote()
        for k in range(shards)
    ]


def spread(ray: ModuleType, jobs: Sequence[CaptureJob], shards: int) -> tuple[list[Any], list[Any]]:
    """min(shards, len(jobs)) capture actors, scenario i handed to shard i mod N: (actors, refs in job order)."""
    actors = start_shards(ray, max(1, min(shards, len(jobs))))
    return actors, [actors[i % len(actors)].capture.remote(job) for i, job in enumerate(jobs)]


def capture_suite(
    jobs: Sequence[CaptureJob], *, shards: int, address: str | None = None, retries: int = 0
) -> Iterator[Published]:
    """Capture every job on `shards` Ray actors (the cluster at `address`, or a private one in this process)
    and publish each into `job.folder`, in job order. An I/O error (on a shard or while publishing here) is
    retried `retries` times, then raised."""
    ray = connect(address, num_cpus=shards)
    actors, refs = spread(ray, jobs, shards)
    try:
        for i, job in enumerate(jobs):
            yield _one(ray, actors[i % len(actors)], job, refs[i], retries)
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)


def _one(ray: ModuleType, actor: Any, job: CaptureJob, ref: Any, retries: int) -> Published:
    notices: list[str] = []
    captured: CapturedFiles | None = None
    for attempt in range(retries + 1):
        try:
            if captured is None:
                captured = fetch(ray, ref)
            notices += publish_files(job.folder, captured)
            return Published(job, captured, notices)
        except UsageError as exc:
            if attempt == retries:
                raise
            notices.append(f"retrying {job.config.path} after: {exc}")
            if captured is None:  # the shard's capture failed: capture again
                ref = actor.capture.remote(job)
    raise AssertionError("unreachable")


def fetch(ray: ModuleType, ref: Any) -> CapturedFiles:
    """The shard's result; its own error (a UsageError, say) as that error, a lost shard as one clear line."""
    try:
        captured: CapturedFiles = ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause
        if isinstance(cause, TownletError):
            raise cause from None
        raise TownletError(f"a capture shard failed: {type(cause).__name__}: {cause}") from None
    except (
        ray.exceptions.RayActorError,
        ray.exceptions.ActorUnavailableError,
        ray.exceptions.ActorUnschedulableError,
    ) as exc:
        raise TownletError(
            f"a capture shard died more than {RESTARTS} time(s); nothing of its scenario was written "
            f"({type(exc).__name__})"
        ) from None
    return captured
