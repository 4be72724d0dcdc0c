"""Rollout capture: run a town under a policy and write per-agent samples, a manifest and metrics.

Layout of a capture directory (`prefix` defaults to `rollout_sample`):

* `<prefix>_<agent>_<NNN>.npz` — `map` (T, C, H, W) f32, `features` (T, F) f32, `actions` (T,) i64,
  `old_log_probs` (T,) f32, `value_preds` (T + 1,) f32 (the last one bootstraps), `rewards` (T,)
  f32, `dones` (T,) bool, `truncations` (T,) bool, `action_masks` (T, A) bool, `alive` (T,) bool.
  Row t pairs the observation the policy saw with the action it took and what that step returned.
* `<prefix>_<agent>_<NNN>.json` — names, shapes, metrics and capture metadata for that sample.
* `<prefix>_manifest.json` — `{"metadata": {...}, "samples": [...]}` with each file's SHA-256.
* `<prefix>_metrics.json` — `{"metadata": {...}, "samples": {npz: metrics}, "events": {...}}`.

Captures are byte-identical for the same config and seed: zip entries carry a fixed date, JSON is
canonical, and the capture timestamp comes from `SOURCE_DATE_EPOCH` (default 0), not the clock.

How a capture runs (the files are those `npz_bytes` and `publish` would make; only the route is
faster):

* The scripted expert runs in Rust (`VecTown.capture_expert`), which writes every observation once,
  straight into agent-major arrays `(agents, T, ...)`: each sample's arrays are then contiguous
  slices, written to disk from array memory without further copies. (A policy given in Python
  steps from Python, one tick at a time, recording into the same arrays.)
* The run is stepped in chunks of ticks. While the next chunk steps (the GIL is released), a worker
  thread creates the staging folder and files, and streams the finished rows of the big arrays
  (`map`, `features`): it extends their CRC-32 and, for stored archives, writes them to their
  final offsets in the staging files (every offset is known before the first tick).
* Then each sample's archive is finished: the zip headers (now that the CRCs are known), the
  small arrays and the central directory are written, and the SHA-256 is computed over the file's
  bytes as they lie in memory. Large archives are finished on a pool of threads (hashing, CRC and
  writes release the GIL); small ones, sidecars and metrics on the calling thread, where handing
  them over would cost more than it saves. The manifest follows once the digests are known.
* Publishing is unchanged: every file is fsynced (all at once, from the pool, so that the fsyncs
  share journal commits) in a staging folder inside the output folder, and only then renamed into
  place, the manifest last, so a folder with a manifest is always complete.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import shutil
import struct
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from townlet import _core
from townlet.clock import source_date_epoch, utc_stamp
from townlet.errors import UsageError
from townlet.jsonio import canonical_json, fsync_dir
from townlet.sim.config import TownConfig
from townlet.sim.env import VecTown

CAPTURE_FORMAT_VERSION = "1"
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
#: Scenario-level event counters: output key -> event names summed.
EVENT_COUNTERS = {
    "queue_conflict_events": ("queue_conflict",),
    "shared_meal_events": ("shared_meal",),
    "late_help_events": ("employment_helped_when_late",),
    "shift_takeover_events": ("employment_took_my_shift",),
    "chat_success_events": ("chat_success",),
    "chat_failure_events": ("chat_failure",),
    "utility_outage_events": ("perturbation_blackout", "perturbation_outage"),
    "shower_complete_events": ("shower_complete",),
    "sleep_complete_events": ("sleep_complete",),
}

#: A policy maps (observations (N, D), masks (N, A)) to (actions (N,), log-probs (N,), values (N,)).
Policy = Callable[
    [npt.NDArray[np.float32], npt.NDArray[np.bool_]],
    tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.float32]],
]

#: Zip entries carry this date, never the clock's.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
#: The per-tick arrays large enough to stream to disk while later ticks step.
STREAMED_ARRAYS = ("map", "features")
#: About this many bytes of streamed rows per chunk of ticks.
CHUNK_BYTES = 2 << 20
#: Archives of at least this many bytes are finished on the thread pool (hashing releases the GIL).
PARALLEL_BYTES = 1 << 20
#: Pieces of at least this size are written on their own; smaller ones are gathered into runs.
_RUN_BYTES = 64 << 10
_ZIP64_LIMIT = (1 << 31) - 1
_ZIP_FILECOUNT_LIMIT = (1 << 16) - 1
_CENTRAL_DIR = struct.Struct("<4s4B4HL2L5H2L")
_END_RECORD = struct.Struct("<4s4H2LH")


def capture_timestamp() -> str:
    """UTC ISO time from SOURCE_DATE_EPOCH (0 when unset): never the wall clock."""
    return utc_stamp(source_date_epoch() or 0)


def npz_bytes(arrays: dict[str, npt.NDArray[Any]], *, compress: bool) -> bytes:
    """An .npz archive with fixed entry dates and order, so equal arrays give equal bytes."""
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for name in sorted(arrays):
            payload = io.BytesIO()
            np.lib.format.write_array(payload, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = method
            info.external_attr = 0o644 << 16
            zf.writestr(info, payload.getvalue())
    return buf.getvalue()


def load_npz(path: Path, raw: bytes | None = None) -> dict[str, npt.NDArray[Any]]:
    """Read a sample (from `raw`, its bytes, when the caller has them) without ever unpickling; a
    damaged file is a UsageError naming it."""
    try:
        with np.load(io.BytesIO(raw) if raw is not None else path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise UsageError(f"{path}: file not found") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise UsageError(f"{path}: not a readable .npz sample ({exc})") from None


@dataclass
class CaptureResult:
    output: Path
    samples: list[str]
    metrics: dict[str, Any]
    files: list[Path] = field(default_factory=list)


def scripted_config(config: TownConfig, *, auto_seed_agents: bool) -> TownConfig:
    """With auto_seed_agents every agent acts under the expert (scenario scripts are dropped)."""
    if not auto_seed_agents:
        return config
    world = dict(config.world)
    world["agents"] = [{k: v for k, v in a.items() if k not in ("script", "script_loop")} for a in world["agents"]]
    return TownConfig(config.path, config.raw, world, config.sections, config.includes)


def _entropy(counts: npt.NDArray[np.int64]) -> float:
    total = counts.sum()
    if total == 0:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * np.log(p)).sum())


def sample_metrics(
    arrays: dict[str, npt.NDArray[Any]], feature_names: list[str], action_names: list[str]
) -> dict[str, float]:
    """Per-sample metrics over the ticks the agent was alive."""
    alive = arrays["alive"]
    feats = arrays["features"][alive]
    rewards = arrays["rewards"]
    col = {n: i for i, n in enumerate(feature_names)}

    def stat(name: str, fn: Callable[[npt.NDArray[Any]], Any]) -> float:
        values = feats[:, col[name]]
        return float(fn(values)) if values.size else 0.0

    counts = np.bincount(arrays["actions"][alive], minlength=len(action_names))
    out: dict[str, float] = {
        "timesteps": float(len(rewards)),
        "alive_ticks": float(alive.sum()),
        "reward_sum": float(rewards.sum(dtype=np.float64)),
        "reward_mean": float(rewards.mean(dtype=np.float64)) if len(rewards) else 0.0,
        "log_prob_mean": float(arrays["old_log_probs"][alive].mean(dtype=np.float64)) if alive.any() else 0.0,
        "value_pred_last": float(arrays["value_preds"][-1]),
        "done_count": float(arrays["dones"].sum()),
        "rivalry_max_mean": stat("rivalry_max", np.mean),
        "rivalry_max_max": stat("rivalry_max", np.max),
        "rivalry_avoid_count_mean": stat("rivalry_avoid_count", np.mean),
        "rivalry_avoid_count_max": stat("rivalry_avoid_count", np.max),
        "lateness_mean": stat("lateness", np.mean),
        "need_hunger_mean": stat("need_hunger", np.mean),
        "need_hygiene_mean": stat("need_hygiene", np.mean),
        "need_energy_mean": stat("need_energy", np.mean),
        "action_entropy": _entropy(counts),
    }
    for name, c in zip(action_names, counts, strict=True):
        out[f"action_{name}_count"] = float(c)
    return out


def event_metrics(native: _core.VecTown) -> dict[str, float]:
    names = list(native.event_names())
    totals = dict(zip(names, (int(x) for x in native.event_totals(0)), strict=True))
    values = dict(zip(names, (float(x) for x in native.event_value_totals(0)), strict=True))
    out = {key: float(sum(totals[e] for e in events)) for key, events in EVENT_COUNTERS.items()}
    out["queue_conflict_intensity_sum"] = values["queue_conflict"]
    out["chat_quality_mean"] = values["chat_success"] / totals["chat_success"] if totals["chat_success"] else 0.0
    return out


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
) -> CaptureResult:
    """Capture `ticks` ticks (default: the scenario's, else 100) into `output`."""
    config = scripted_config(config, auto_seed_agents=auto_seed_agents)
    steps = ticks if ticks is not None else (config.scenario_ticks or DEFAULT_TICKS)
    if steps < 1:
        raise UsageError(f"--ticks must be >= 1, got {steps}")
    # One tick longer than the capture, so the town never autoresets inside it.
    vec = VecTown(config, 1, seed, episode_ticks=steps + 1, num_threads=1)
    meta = vec.observation_metadata()
    check = getattr(policy, "check", None)
    if check is not None:
        check(meta)
    agents = vec.agent_ids(0)
    if agent_id is not None and agent_id not in agents:
        raise UsageError(f"--agent-id {agent_id!r}: no such agent (agents: {', '.join(agents)})")
    n, a = vec.num_agents, vec.n_actions
    slots = [slot for slot, agent in enumerate(agents) if agent_id is None or agent == agent_id]
    stems = {slot: f"{prefix}_{agents[slot]}_{slot + 1:03d}" for slot in slots}
    names = [f"{stems[slot]}{ext}" for slot in slots for ext in (".npz", ".json")]
    metrics_name, manifest_name = f"{prefix}_metrics.json", f"{prefix}_manifest.json"
    staging = _Staging(output, [*names, metrics_name, manifest_name])
    stream, io_pool = _pool("stream"), _pool("io")
    streaming: list[Future[Any]] = []
    jobs: list[Future[Any]] = []
    try:
        # The staging folder and files are made on the stream thread while the town steps.
        stream.submit(staging.open)  # not waited for: the main thread opens them itself if need be
        map_shape = tuple(meta["map_shape"])
        map_len = int(np.prod(map_shape))
        rec = _Recording.allocate(n, steps, map_len, int(meta["n_features"]), a)
        samples = [_Sample(stems[slot], rec.sample(slot, map_shape), compress=compress) for slot in slots]
        metadata = {
            "capture_format_version": CAPTURE_FORMAT_VERSION,
            "config_path": str(config.path),
            "config_id": config.config_id,
            "config_hash": vec.native.config_hash,
            "scenario_name": config.scenario_name,
            "description": (config.world.get("scenario") or {}).get("description") or "",
            "seed": vec.seed,
            "ticks": steps,
            "policy": policy_name,
            "manifest_checksum": meta["manifest_checksum"],
            "observation_schema_version": meta["observation_schema_version"],
            "action_space_version": meta["action_space_version"],
            "variant": meta["variant"],
            "timestamp": capture_timestamp(),
        }
        obs, _ = vec.reset(seed)

        def rows_done(t0: int, t1: int) -> None:
            # The last chunk's rows are left to the archive threads, which finish in parallel.
            if t1 < steps:
                streaming.append(stream.submit(_stream, staging, samples, t0, t1))

        chunks = _chunks(steps, len(slots) * vec.obs_dim * 4)
        if policy is None:
            for t0, t1 in chunks:
                vec.native.capture_expert(t0, t1, *rec.native_args())
                rows_done(t0, t1)
        else:
            _policy_rollout(vec, policy, rec, obs, chunks, rows_done)
        rec.close_episode()
        events = event_metrics(vec.native)

        # The JSON first: the archive threads would only wait for the GIL it holds.
        shared = {
            "metadata": metadata,
            "map_channels": meta["map_channels"],
            "feature_names": meta["feature_names"],
            "action_names": meta["action_names"],
            "training_arrays": list(TRAINING_ARRAYS),
        }
        sidecars: dict[str, bytes] = {}
        manifest_samples: list[dict[str, Any]] = []
        all_metrics: dict[str, Any] = {}
        for slot, sample in zip(slots, samples, strict=True):
            stem = stems[slot]
            metrics = sample_metrics(sample.arrays, meta["feature_names"], meta["action_names"])
            sidecar = {
                "agent_id": agents[slot],
                "slot": slot,
                "variant": meta["variant"],
                "map_shape": list(map_shape),
                "map_channels": shared["map_channels"],
                "feature_names": shared["feature_names"],
                "action_names": shared["action_names"],
                "action_dim": a,
                "timesteps": steps,
                "value_pred_steps": steps + 1,
                "training_arrays": shared["training_arrays"],
                "metrics": metrics,
                "capture_metadata": shared["metadata"],
            }
            sidecars[f"{stem}.json"] = meta_bytes = canonical_json(sidecar).encode()
            manifest_samples.append(
                {
                    "sample": sample.name,
                    "meta": f"{stem}.json",
                    "agent_id": agents[slot],
                    "frame_count": steps,
                    "sha256": "",
                    "meta_sha256": hashlib.sha256(meta_bytes).hexdigest(),
                }
            )
            all_metrics[sample.name] = metrics
        metrics_doc = {"metadata": shared["metadata"], "samples": all_metrics, "events": events}
        metrics_bytes = canonical_json(metrics_doc).encode()

        staging.open()  # done on the stream thread by now, unless it never got the chance
        _wait(streaming)
        # Small files are written here: handing small Python work to threads costs more in GIL
        # hand-overs than it saves. Large archives are finished on the pool (hashing, CRC and
        # writes release the GIL).
        for name, data in [*sidecars.items(), (metrics_name, metrics_bytes)]:
            staging.put(name, data)
        digests: dict[str, Future[str]] = {}
        for sample in samples:
            digests[sample.name] = Future()
            if sample.nbytes >= PARALLEL_BYTES:
                jobs.append(io_pool.submit(_finish_sample, staging, sample, digests[sample.name]))
        for sample in samples:
            if sample.nbytes < PARALLEL_BYTES:
                _finish_sample(staging, sample, digests[sample.name])
        for entry in manifest_samples:
            entry["sha256"] = digests[entry["sample"]].result()
        manifest_doc = {"metadata": shared["metadata"], "samples": manifest_samples}
        staging.put(manifest_name, canonical_json(manifest_doc).encode())
        _wait(jobs)
        # Every file is fsynced before any is renamed into place; fsyncs issued together share
        # the file system's journal commits.
        jobs.extend(io_pool.submit(staging.sync, name) for name in staging.names)
        _wait(jobs)
        written = staging.publish(manifest_name)
    except BaseException:
        # No worker may still write into the staging folder when it is removed.
        for fut in (*streaming, *jobs):
            fut.cancel()
        for fut in (*streaming, *jobs):
            with contextlib.suppress(BaseException):
                fut.exception()  # waits for a running one; a cancelled one raises
        staging.abort()
        raise
    return CaptureResult(
        output, [s["sample"] for s in manifest_samples], {"samples": all_metrics, "events": events}, written
    )


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


# -- writing archives straight from array memory -------------------------------------------------------


def _npy_header(arr: npt.NDArray[Any]) -> bytes:
    """The .npy header `np.lib.format.write_array` writes before `arr`'s data."""
    return _npy_header_for(arr.dtype, arr.shape)


@functools.lru_cache(maxsize=256)
def _npy_header_for(dtype: np.dtype[Any], shape: tuple[int, ...]) -> bytes:
    # What `header_data_from_array_1_0` gives for a C-contiguous array.
    header = {"shape": shape, "fortran_order": False, "descr": np.lib.format.dtype_to_descr(dtype)}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def _flat_bytes(arr: npt.NDArray[Any]) -> memoryview:
    if not arr.flags.c_contiguous:
        raise ValueError("capture arrays must be C-contiguous")
    return memoryview(arr.reshape(-1).view(np.uint8).data)


def _pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view.nbytes:
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done


def _central_directory(infos: Sequence[zipfile.ZipInfo], start: int) -> bytes:
    """Central directory and end record, as `zipfile.ZipFile` writes them without ZIP64 or comments."""
    parts = []
    for info in infos:
        dt = info.date_time
        dosdate = (dt[0] - 1980) << 9 | dt[1] << 5 | dt[2]
        dostime = dt[3] << 11 | dt[4] << 5 | (dt[5] // 2)
        name = info.filename.encode("ascii")
        parts.append(
            _CENTRAL_DIR.pack(
                b"PK\x01\x02",
                info.create_version,
                info.create_system,
                info.extract_version,
                info.reserved,
                info.flag_bits,
                info.compress_type,
                dostime,
                dosdate,
                info.CRC,
                info.compress_size,
                info.file_size,
                len(name),
                0,
                0,
                0,
                info.internal_attr,
                info.external_attr,
                info.header_offset,
            )
            + name
        )
    body = b"".join(parts)
    end = _END_RECORD.pack(b"PK\x05\x06", 0, 0, len(infos), len(infos), len(body), start, 0)
    return body + end


@dataclass(eq=False)
class _Entry:
    """One array of a sample: its zip entry, .npy header and data (the array's own memory)."""

    info: zipfile.ZipInfo
    header: bytes
    data: memoryview
    streamed: bool
    row_bytes: int
    crc: int = 0
    data_offset: int = 0
    packed: bytes = b""


class _Sample:
    """One agent's .npz, written from its arrays without building the archive in memory.

    Byte for byte what `npz_bytes(arrays, compress=...)` returns (a test holds the two together).
    Archives that would need ZIP64 (an entry near 2 GiB) are left to `npz_bytes` itself.
    """

    def __init__(self, stem: str, arrays: dict[str, npt.NDArray[Any]], *, compress: bool) -> None:
        self.name = f"{stem}.npz"
        self.arrays = arrays
        self.compress = compress
        method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        self.entries: list[_Entry] = []
        for key in sorted(arrays):
            arr = arrays[key]
            info = zipfile.ZipInfo(f"{key}.npy", date_time=ZIP_DATE)
            info.compress_type = method
            info.external_attr = 0o644 << 16
            header = _npy_header(arr)
            data = _flat_bytes(arr)
            info.file_size = len(header) + data.nbytes
            streamed = key in STREAMED_ARRAYS
            rows = arr.shape[0] if arr.ndim else 1
            row_bytes = data.nbytes // rows if rows else 0
            self.entries.append(
                _Entry(info, header, data, streamed, row_bytes, crc=zlib.crc32(header) if streamed else 0)
            )
        size = sum(30 + len(e.info.filename) + e.info.file_size for e in self.entries)
        self.zip64 = (
            any(e.info.file_size * 1.05 > _ZIP64_LIMIT for e in self.entries)
            or size + 46 * len(self.entries) > _ZIP64_LIMIT
            or len(self.entries) > _ZIP_FILECOUNT_LIMIT
        )
        self.rows = next(len(arrays[key]) for key in STREAMED_ARRAYS)
        self.nbytes = sum(e.data.nbytes for e in self.entries)
        self.rows_streamed = 0
        # Stored archives have every offset fixed in advance, so rows can go to disk as they come.
        self.planned = not compress and not self.zip64
        if self.planned:
            self._place([e.info.file_size for e in self.entries])

    def _place(self, sizes: Iterable[int]) -> int:
        offset = 0
        for entry, size in zip(self.entries, sizes, strict=True):
            entry.info.header_offset = offset
            entry.data_offset = offset + 30 + len(entry.info.filename) + len(entry.header)
            offset += 30 + len(entry.info.filename) + size
        return offset

    def stream(self, fd: int, t0: int, t1: int) -> None:
        """Rows t0..t1 of the streamed arrays are final: extend their CRCs (and write them)."""
        if t0 != self.rows_streamed:
            raise RuntimeError(f"{self.name}: rows {t0}..{t1} streamed after rows ..{self.rows_streamed}")
        self.rows_streamed = t1
        for e in self.entries:
            if e.streamed and e.row_bytes:
                piece = e.data[t0 * e.row_bytes : t1 * e.row_bytes]
                e.crc = zlib.crc32(piece, e.crc)
                if self.planned:
                    _pwrite_all(fd, piece, e.data_offset + t0 * e.row_bytes)

    def finish(self, fd: int) -> str:
        """Write the rest of the archive and return its SHA-256 (the file is not yet fsynced)."""
        if self.zip64:
            payload = npz_bytes(self.arrays, compress=self.compress)
            _pwrite_all(fd, payload, 0)
            return hashlib.sha256(payload).hexdigest()
        self.stream(fd, self.rows_streamed, self.rows)  # the rows nobody streamed yet
        for e in self.entries:
            if not e.streamed:
                e.crc = zlib.crc32(e.data, zlib.crc32(e.header))
            e.info.CRC = e.crc
        if self.compress:
            for e in self.entries:
                # zipfile's compressor; deflate's output does not depend on how its input is split.
                packer = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
                e.packed = packer.compress(e.header) + packer.compress(e.data) + packer.flush()
                e.info.compress_size = len(e.packed)
            end = self._place([e.info.compress_size for e in self.entries])
        else:
            for e in self.entries:
                e.info.compress_size = e.info.file_size
            last = self.entries[-1]
            end = last.data_offset + last.data.nbytes
        sha = hashlib.sha256()
        run = bytearray()
        run_at = 0

        def put(piece: bytes | memoryview, at: int, written: bool) -> None:
            nonlocal run, run_at
            sha.update(piece)
            if written or len(piece) >= _RUN_BYTES:
                if run:
                    _pwrite_all(fd, run, run_at)
                    run = bytearray()
                if not written:
                    _pwrite_all(fd, piece, at)
                return
            if not run:
                run_at = at
            run += piece

        for e in self.entries:
            at = e.info.header_offset
            local = e.info.FileHeader(False)
            put(local, at, False)
            if self.compress:
                put(e.packed, at + len(local), False)
            else:
                put(e.header, at + len(local), False)
                put(e.data, e.data_offset, e.streamed)
        put(_central_directory([e.info for e in self.entries], end), end, False)
        if run:
            _pwrite_all(fd, run, run_at)
        return sha.hexdigest()


# -- thread pools and the staging folder ----------------------------------------------------------------

_POOLS: dict[str, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()
#: Threads that finish large archives (hashing and deflate release the GIL) and, mostly, wait on fsyncs:
#: every file of a capture is fsynced at once.
IO_THREADS = 32


def _pool(kind: str) -> ThreadPoolExecutor:
    """`stream`: one thread, so that a capture's chunks are handled in order; `io`: several."""
    with _POOLS_LOCK:
        pool = _POOLS.get(kind)
        if pool is None:
            workers = 1 if kind == "stream" else IO_THREADS
            pool = _POOLS[kind] = ThreadPoolExecutor(workers, thread_name_prefix=f"townlet-capture-{kind}")
        return pool


def _forget_pools() -> None:
    # A forked child has none of its parent's threads (nor, maybe, a usable lock): it starts afresh.
    global _POOLS_LOCK
    _POOLS_LOCK = threading.Lock()
    _POOLS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)


def _wait(futures: Iterable[Future[Any]]) -> None:
    """Wait for every future, then raise the first failure (so that no worker still writes)."""
    failure: BaseException | None = None
    for fut in list(futures):
        try:
            fut.result()
        except BaseException as exc:
            failure = failure or exc
    if failure is not None:
        raise failure


class _Staging:
    """Files written and fsynced in a staging folder inside `output`, then renamed into it, `last` last,
    so that nothing half-written is ever visible there."""

    def __init__(self, output: Path, names: Sequence[str]) -> None:
        if output.exists() and not output.is_dir():
            raise UsageError(f"{output}: exists and is not a directory (--output must name a folder)")
        self.output = output
        self.names = list(names)
        self.folder: Path | None = None
        self.fds: dict[str, int] = {}
        self._made_output = False
        self._lock = threading.Lock()
        self._open_error: UsageError | None = None
        self._closed = False

    def error(self, exc: OSError) -> UsageError:
        return UsageError(f"{self.output}: cannot write capture output ({exc.strerror or exc})")

    def open(self) -> None:
        """Make the staging folder and files, once, on whichever thread comes first."""
        with self._lock:
            if self._open_error is not None:
                raise self._open_error
            if self.folder is not None or self._closed:
                return
            try:
                if not self.output.exists():
                    self.output.mkdir(parents=True, exist_ok=True)
                    self._made_output = True
                self.folder = Path(tempfile.mkdtemp(prefix=".capture-", dir=self.output))
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
                for name in self.names:
                    self.fds[name] = os.open(self.folder / name, flags, 0o666)
            except OSError as exc:
                self._open_error = self.error(exc)
                raise self._open_error from None

    def put(self, name: str, data: bytes) -> None:
        """Write a whole (small) file; not yet fsynced."""
        try:
            _pwrite_all(self.fds[name], data, 0)
        except OSError as exc:
            raise self.error(exc) from None

    def write(self, name: str, data: bytes) -> None:
        self.put(name, data)
        self.sync(name)

    def sync(self, name: str) -> None:
        try:
            os.fsync(self.fds[name])
        except OSError as exc:
            raise self.error(exc) from None

    def _close(self) -> None:
        with self._lock:
            self._closed = True
        for fd in self.fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = {}

    def publish(self, last: str) -> list[Path]:
        """Rename every (already fsynced) file into `output`, `last` last."""
        assert self.folder is not None
        self._close()
        try:
            written = []
            for name in sorted(self.names, key=lambda x: x == last):
                os.replace(self.folder / name, self.output / name)
                written.append(self.output / name)
        except OSError as exc:
            raise self.error(exc) from None
        finally:
            try:
                self.folder.rmdir()
            except OSError:
                shutil.rmtree(self.folder, ignore_errors=True)
        fsync_dir(self.output)  # the renames themselves survive a crash
        return written

    def abort(self) -> None:
        self._close()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
        if self._made_output:
            with contextlib.suppress(OSError):
                self.output.rmdir()


def publish(output: Path, files: dict[str, bytes], *, last: str) -> list[Path]:
    """Write every file into a staging folder beside them, fsync, then rename into `output`,
    the manifest last, so a folder with a manifest is always complete."""
    staging = _Staging(output, list(files))
    try:
        staging.open()
        _wait([_pool("io").submit(staging.write, name, data) for name, data in files.items()])
        return staging.publish(last)
    except BaseException:
        staging.abort()
        raise


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


def _chunks(steps: int, bytes_per_tick: int) -> list[tuple[int, int]]:
    size = max(1, CHUNK_BYTES // max(1, bytes_per_tick))
    return [(t0, min(steps, t0 + size)) for t0 in range(0, steps, size)]


def _stream(staging: _Staging, samples: Sequence[_Sample], t0: int, t1: int) -> None:
    staging.open()
    try:
        for sample in samples:
            sample.stream(staging.fds[sample.name], t0, t1)
    except OSError as exc:
        raise staging.error(exc) from None


def _finish_sample(staging: _Staging, sample: _Sample, digest: Future[str]) -> None:
    """Finish one archive and hand its digest over (the manifest waits for it)."""
    try:
        digest.set_result(sample.finish(staging.fds[sample.name]))
    except OSError as exc:
        err = staging.error(exc)
        digest.set_exception(err)
        raise err from None
    except BaseException as exc:
        digest.set_exception(exc)
        raise
