"""Rollout capture: run a town under a policy and write per-agent samples, a manifest and metrics.

Layout of a capture directory (`prefix` defaults to `rollout_sample`):

* `<prefix>_<agent>_<NNN>.npz` — `map` (T, C, H, W) f32, `features` (T, F) f32, `actions` (T,) i64,
  `old_log_probs` (T,) f32, `value_preds` (T + 1,) f32 (the last one bootstraps), `rewards` (T,)
  f32, `dones` (T,) bool, `truncations` (T,) bool, `action_masks` (T, A) bool, `alive` (T,) bool.
  Row t pairs the observation the policy saw with the action it took and what that step returned.
* `<prefix>_<agent>_<NNN>.json` — names, shapes, metrics and capture metadata for that sample
  (`records.SampleSidecar`).
* `<prefix>_manifest.json` — `{"metadata": {...}, "samples": [...]}` with each file's SHA-256
  (`records.CaptureManifest`).
* `<prefix>_metrics.json` — `{"metadata": {...}, "samples": {npz: metrics}, "events": {...}}`
  (`records.CaptureMetrics`).

Captures are byte-identical for the same config and seed once `SOURCE_DATE_EPOCH` pins the capture
timestamp (else it is the real UTC time, in the JSON files only): zip entries carry a fixed date and
JSON is canonical, so the `.npz` files are byte-identical regardless.

How a capture runs (the files are those `npz_bytes` and `publish` would make; only the route is
faster, see `npz`):

* The scripted expert runs in Rust (`VecTown.capture_expert`), which writes every observation once,
  straight into agent-major arrays `(agents, T, ...)`: each sample's arrays are then contiguous
  slices, written to disk from array memory without further copies. (A policy given in Python
  steps from Python, one tick at a time, recording into the same arrays.)
* The run is stepped in chunks of ticks (`npz.chunks`). While the next chunk steps (the GIL is
  released), the stream thread creates the staging folder and files and streams the finished rows
  of the big arrays (`npz.SampleWriter.stream`).
* Then each sample's archive is finished (`SampleWriter.finish`: zip headers, small arrays, central
  directory, SHA-256). Large archives are finished on a pool of threads (hashing, CRC and writes
  release the GIL), each fsynced by its thread as soon as it is finished (so that the fsyncs overlap
  the hashing of the others). A capture of small archives only (the scenarios) seals them on the
  calling thread (`SampleWriter.seal`: no file needed yet, so the staging folder may still be in
  the making) while the pool makes the JSON, then writes them. Sidecars and metrics are written on
  the calling thread; every file is fsynced on the pool; the manifest follows the digests.
* Publishing (`staging.Staging`): every file is fsynced in a staging folder inside the output
  folder, and only then renamed into place, the manifest last, so a folder with a manifest is
  always complete.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from townlet.capture import npz
from townlet.capture.metrics import EVENT_COUNTERS, event_metrics, sample_metrics
from townlet.capture.npz import SampleWriter, load_npz, npz_bytes
from townlet.capture.records import (
    CAPTURE_FORMAT_VERSION,
    CaptureManifest,
    CaptureMetadata,
    CaptureMetrics,
    ManifestEntry,
    SampleSidecar,
    dump,
    unsafe_member,
)
from townlet.capture.staging import Staging, pool, publish, wait_all
from townlet.clock import utc_stamp
from townlet.errors import UsageError
from townlet.sim.config import TownConfig
from townlet.sim.env import VecTown

__all__ = [
    "CAPTURE_FORMAT_VERSION",
    "DEFAULT_PREFIX",
    "EVENT_COUNTERS",
    "TRAINING_ARRAYS",
    "CaptureResult",
    "Policy",
    "capture_rollout",
    "capture_timestamp",
    "event_metrics",
    "load_npz",
    "npz_bytes",
    "publish",
    "sample_metrics",
    "scripted_config",
]

DEFAULT_PREFIX = "rollout_sample"
DEFAULT_TICKS = 100
TRAINING_ARRAYS = (
    "map",
    "features",
    "actions",
    "old_log_probs",
    "value_preds",
    "rewards",
    "dones",
    "truncations",
    "action_masks",
    "alive",
)
#: Archives of at least this many bytes are finished on the thread pool (hashing releases the GIL).
PARALLEL_BYTES = 1 << 20

#: A policy maps (observations (N, D), masks (N, A)) to (actions (N,), log-probs (N,), values (N,)).
Policy = Callable[
    [npt.NDArray[np.float32], npt.NDArray[np.bool_]],
    tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.float32]],
]


def capture_timestamp() -> str:
    """UTC RFC 3339 time of the capture: `SOURCE_DATE_EPOCH` when set (reproducible bytes), else now."""
    return utc_stamp()


@dataclass
class CaptureResult:
    output: Path
    samples: list[str]
    metrics: dict[str, Any]
    files: list[Path] = field(default_factory=list)
    #: Lines a user should read (stale staging folders removed), for the CLI to print.
    notices: list[str] = field(default_factory=list)


def scripted_config(config: TownConfig, *, auto_seed_agents: bool) -> TownConfig:
    """With auto_seed_agents every agent acts under the expert (scenario scripts are dropped)."""
    if not auto_seed_agents:
        return config
    world = dict(config.world)
    world["agents"] = [{k: v for k, v in a.items() if k not in ("script", "script_loop")} for a in world["agents"]]
    return dataclasses.replace(config, world=world)


# -- what a capture writes ----------------------------------------------------------------------------


@dataclass
class _Plan:
    """One capture: its town, the agents captured (by slot), their file stems, and its metadata."""

    vec: VecTown
    meta: dict[str, Any]
    agents: list[str]
    slots: list[int]
    stems: dict[int, str]
    steps: int
    prefix: str
    metadata: CaptureMetadata

    @property
    def map_shape(self) -> tuple[int, ...]:
        return tuple(self.meta["map_shape"])

    @property
    def metrics_name(self) -> str:
        return f"{self.prefix}_metrics.json"

    @property
    def manifest_name(self) -> str:
        return f"{self.prefix}_manifest.json"

    @property
    def file_names(self) -> list[str]:
        per_sample = [f"{self.stems[slot]}{ext}" for slot in self.slots for ext in (".npz", ".json")]
        return [*per_sample, self.metrics_name, self.manifest_name]


def _plan(
    config: TownConfig,
    *,
    ticks: int | None,
    agent_id: str | None,
    prefix: str,
    policy: Policy | None,
    policy_name: str,
    seed: int | None,
    timestamp: str | None = None,
) -> _Plan:
    steps = ticks if ticks is not None else (config.scenario_ticks or DEFAULT_TICKS)
    if steps < 1:
        raise UsageError(f"--ticks must be >= 1, got {steps}")
    if "/" in prefix or (prefix and unsafe_member(prefix)):
        raise UsageError(f"--prefix {prefix!r}: must be a plain file name prefix (no folders)")
    # One tick longer than the capture, so the town never autoresets inside it.
    vec = VecTown(config, 1, seed, episode_ticks=steps + 1, num_threads=1)
    meta = vec.observation_metadata()
    check = getattr(policy, "check", None)
    if check is not None:
        check(meta)
    agents = vec.agent_ids(0)
    if agent_id is not None and agent_id not in agents:
        raise UsageError(f"--agent-id {agent_id!r}: no such agent (agents: {', '.join(agents)})")
    slots = [slot for slot, agent in enumerate(agents) if agent_id is None or agent == agent_id]
    metadata = CaptureMetadata(
        capture_format_version=CAPTURE_FORMAT_VERSION,
        config_path=str(config.path),
        config_id=config.config_id,
        config_hash=vec.native.config_hash,
        scenario_name=config.scenario_name,
        description=(config.world.get("scenario") or {}).get("description") or "",
        seed=vec.seed,
        ticks=steps,
        policy=policy_name,
        manifest_checksum=meta["manifest_checksum"],
        observation_schema_version=meta["observation_schema_version"],
        action_space_version=meta["action_space_version"],
        variant=meta["variant"],
        timestamp=timestamp or capture_timestamp(),
    )
    stems = {slot: f"{prefix}_{agents[slot]}_{slot + 1:03d}" for slot in slots}
    return _Plan(vec, meta, agents, slots, stems, steps, prefix, metadata)


@dataclass
class _Documents:
    """The JSON files of a capture but the manifest (which waits for the archives' digests)."""

    sidecars: dict[str, bytes]
    metrics: dict[str, dict[str, float]]  # npz name -> its metrics
    meta_sha256: dict[str, str]  # npz name -> its sidecar's digest
    metrics_file: bytes
    events: dict[str, float]


def _documents(plan: _Plan, arrays: Sequence[dict[str, npt.NDArray[Any]]], events: dict[str, float]) -> _Documents:
    """Sidecars and the metrics file for the samples' `arrays` (in `plan.slots` order)."""
    meta = plan.meta
    sidecars: dict[str, bytes] = {}
    all_metrics: dict[str, dict[str, float]] = {}
    meta_sha: dict[str, str] = {}
    for slot, sample in zip(plan.slots, arrays, strict=True):
        stem = plan.stems[slot]
        metrics = sample_metrics(sample, meta["feature_names"], meta["action_names"])
        sidecar = SampleSidecar(
            agent_id=plan.agents[slot],
            slot=slot,
            variant=meta["variant"],
            map_shape=list(plan.map_shape),
            map_channels=meta["map_channels"],
            feature_names=meta["feature_names"],
            action_names=meta["action_names"],
            action_dim=plan.vec.n_actions,
            timesteps=plan.steps,
            value_pred_steps=plan.steps + 1,
            training_arrays=list(TRAINING_ARRAYS),
            metrics=metrics,
            capture_metadata=plan.metadata,
        )
        sidecars[f"{stem}.json"] = raw = dump(sidecar)
        meta_sha[f"{stem}.npz"] = hashlib.sha256(raw).hexdigest()
        all_metrics[f"{stem}.npz"] = metrics
    metrics_file = dump(CaptureMetrics(metadata=plan.metadata, samples=all_metrics, events=events))
    return _Documents(sidecars, all_metrics, meta_sha, metrics_file, events)


def _manifest(plan: _Plan, docs: _Documents, digests: dict[str, str]) -> bytes:
    """The manifest, once every archive's SHA-256 (`digests`, by npz name) is known."""
    entries = [
        ManifestEntry(
            sample=f"{plan.stems[slot]}.npz",
            meta=f"{plan.stems[slot]}.json",
            agent_id=plan.agents[slot],
            frame_count=plan.steps,
            sha256=digests[f"{plan.stems[slot]}.npz"],
            meta_sha256=docs.meta_sha256[f"{plan.stems[slot]}.npz"],
        )
        for slot in plan.slots
    ]
    return dump(CaptureManifest(metadata=plan.metadata, samples=entries))


# -- the capture --------------------------------------------------------------------------------------


def capture_rollout(
    config: TownConfig,
    output: Path,
    *,
    ticks: int | None = None,
    compress: bool = False,
    auto_seed_agents: bool = False,
    agent_id: str | None = None,
    prefix: str = DEFAULT_PREFIX,
    policy: Policy | None = None,
    policy_name: str = "scripted",
    seed: int | None = None,
    timestamp: str | None = None,
) -> CaptureResult:
    """Capture `ticks` ticks (default: the scenario's, else 100) into `output`; `timestamp` (RFC 3339) replaces
    `capture_timestamp()` (a capture made on another machine takes the caller's)."""
    config = scripted_config(config, auto_seed_agents=auto_seed_agents)
    plan = _plan(
        config,
        ticks=ticks,
        agent_id=agent_id,
        prefix=prefix,
        policy=policy,
        policy_name=policy_name,
        seed=seed,
        timestamp=timestamp,
    )
    vec, steps = plan.vec, plan.steps
    staging = Staging(output, plan.file_names)
    stream, io_pool = pool("stream"), pool("io")
    streaming: list[Future[Any]] = []
    jobs: list[Future[Any]] = []
    try:
        # The staging folder and files are made on the stream thread while the town steps.
        stream.submit(staging.open)  # not waited for: the main thread opens them itself if need be
        map_len = int(np.prod(plan.map_shape))
        rec = _Recording.allocate(vec.num_agents, steps, map_len, int(plan.meta["n_features"]), vec.n_actions)
        samples = [
            SampleWriter(plan.stems[slot], rec.sample(slot, plan.map_shape), compress=compress) for slot in plan.slots
        ]
        obs, _ = vec.reset(seed)

        def rows_done(t0: int, t1: int) -> None:
            # The last chunk's rows are left to the archive threads, which finish in parallel.
            if t1 < steps:
                streaming.append(stream.submit(staging.stream_rows, samples, t0, t1))

        chunks = npz.chunks(steps, len(plan.slots) * vec.obs_dim * 4)
        if policy is None:
            for t0, t1 in chunks:
                vec.native.capture_expert(t0, t1, *rec.native_args())
                rows_done(t0, t1)
        else:
            _policy_rollout(vec, policy, rec, obs, chunks, rows_done)
        rec.close_episode()

        # Small archives are sealed here (CRCs, headers, SHA-256: no file needed, so the stream
        # thread may still be making the staging folder and files); written once they exist.
        small = [sample for sample in samples if sample.nbytes < PARALLEL_BYTES]
        digests: dict[str, Future[str]] = {sample.name: Future() for sample in samples}
        events = event_metrics(vec.native)  # on this thread: the town is not shared
        docs_job: Future[_Documents] | None = None
        if len(small) == len(samples):
            # Only small archives: the JSON (Python, holding the GIL) is made on the pool while this
            # thread seals them (CRC and SHA-256, which release the GIL), the two in parallel.
            docs_job = io_pool.submit(_documents, plan, [s.arrays for s in samples], events)
            jobs.append(docs_job)
        if small:
            wait_all(streaming)  # the stream thread's CRCs come first
        for sample in small:
            digests[sample.name].set_result(sample.seal())
        # Else the JSON first: the archive threads would only wait for the GIL it holds.
        docs = docs_job.result() if docs_job is not None else _documents(plan, [s.arrays for s in samples], events)
        staging.open()  # done on the stream thread by now, unless it never got the chance
        wait_all(streaming)
        # Large archives are finished on the pool (hashing, CRC and writes release the GIL), each
        # fsynced as soon as it is finished, so that the fsyncs overlap the hashing still going on.
        # Small files are written here and fsynced on the pool. Every file is fsynced before any is
        # renamed into place.
        for sample in samples:
            if sample.nbytes >= PARALLEL_BYTES:
                jobs.append(io_pool.submit(staging.finish_sample, sample, digests[sample.name], sync=True))
        for name, data in [*docs.sidecars.items(), (plan.metrics_name, docs.metrics_file)]:
            staging.put(name, data)
            jobs.append(io_pool.submit(staging.sync, name))
        for sample in small:
            staging.write_sealed(sample)
            jobs.append(io_pool.submit(staging.sync, sample.name))
        manifest = _manifest(plan, docs, {name: fut.result() for name, fut in digests.items()})
        staging.put(plan.manifest_name, manifest)
        staging.sync(plan.manifest_name)
        wait_all(jobs)
        written = staging.publish(plan.manifest_name)
    except BaseException:
        # No worker may still write into the staging folder when it is removed.
        for fut in (*streaming, *jobs):
            fut.cancel()
        for fut in (*streaming, *jobs):
            with contextlib.suppress(BaseException):
                fut.exception()  # waits for a running one; a cancelled one raises
        staging.abort()
        raise
    metrics = {"samples": docs.metrics, "events": docs.events}
    return CaptureResult(output, [s.name for s in samples], metrics, written, staging.notices)


def _policy_rollout(
    vec: VecTown,
    policy: Policy,
    rec: _Recording,
    obs: npt.NDArray[np.float32],
    chunks: Sequence[tuple[int, int]],
    rows_done: Callable[[int, int], None],
) -> None:
    """Step under `policy` from Python, one tick at a time, recording agent-major."""
    map_len = rec.map.shape[2]
    alive = np.ones(vec.num_agents, np.bool_)  # as `reset` reports it
    for t0, t1 in chunks:
        for t in range(t0, t1):
            rec.map[:, t] = obs[:, :map_len]
            rec.features[:, t] = obs[:, map_len:]
            rec.masks[:, t] = vec.action_masks()
            rec.alive[:, t] = alive
            actions, logp, values = policy(obs, vec.action_masks())
            rec.actions[:, t], rec.log_probs[:, t], rec.values[:, t] = actions, logp, values
            obs, rewards, terminated, _, info = vec.step(rec.actions[:, t])
            rec.rewards[:, t] = rewards
            rec.terminated[:, t] = terminated
            alive = info["alive"]
        rows_done(t0, t1)
    rec.values[:, -1] = policy(obs, vec.action_masks())[2]


# -- recording ----------------------------------------------------------------------------------------


@dataclass
class _Recording:
    """A capture's arrays, agent-major (agents, T, ...): one sample's arrays are contiguous slices."""

    map: npt.NDArray[np.float32]
    features: npt.NDArray[np.float32]
    masks: npt.NDArray[np.bool_]
    actions: npt.NDArray[np.int64]
    log_probs: npt.NDArray[np.float32]
    values: npt.NDArray[np.float32]
    rewards: npt.NDArray[np.float32]
    terminated: npt.NDArray[np.bool_]
    alive: npt.NDArray[np.bool_]
    truncated: npt.NDArray[np.bool_]
    dones: npt.NDArray[np.bool_]

    @classmethod
    def allocate(cls, n: int, steps: int, map_len: int, n_features: int, n_actions: int) -> _Recording:
        return cls(
            map=np.empty((n, steps, map_len), np.float32),
            features=np.empty((n, steps, n_features), np.float32),
            masks=np.empty((n, steps, n_actions), np.bool_),
            actions=np.empty((n, steps), np.int64),
            log_probs=np.empty((n, steps), np.float32),
            values=np.zeros((n, steps + 1), np.float32),
            rewards=np.empty((n, steps), np.float32),
            terminated=np.empty((n, steps), np.bool_),
            alive=np.empty((n, steps), np.bool_),
            truncated=np.zeros((n, steps), np.bool_),
            dones=np.empty((n, steps), np.bool_),
        )

    def native_args(self) -> tuple[npt.NDArray[Any], ...]:
        return (
            self.map,
            self.features,
            self.masks,
            self.actions,
            self.log_probs,
            self.rewards,
            self.terminated,
            self.alive,
        )

    def close_episode(self) -> None:
        """The capture ends by truncation: live, unterminated agents are truncated on the last tick."""
        self.truncated[:, -1] = self.alive[:, -1] & ~self.terminated[:, -1]
        np.logical_or(self.terminated, self.truncated, out=self.dones)

    def sample(self, slot: int, map_shape: tuple[int, ...]) -> dict[str, npt.NDArray[Any]]:
        steps = self.actions.shape[1]
        return {
            "map": self.map[slot].reshape(steps, *map_shape),
            "features": self.features[slot],
            "actions": self.actions[slot],
            "old_log_probs": self.log_probs[slot],
            "value_preds": self.values[slot],
            "rewards": self.rewards[slot],
            "dones": self.dones[slot],
            "truncations": self.truncated[slot],
            "action_masks": self.masks[slot],
            "alive": self.alive[slot],
        }
