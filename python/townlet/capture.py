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
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from townlet import _core
from townlet.clock import source_date_epoch, utc_stamp
from townlet.config import TownConfig
from townlet.env import VecTown
from townlet.errors import UsageError
from townlet.jsonio import canonical_json

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


def load_npz(path: Path) -> dict[str, npt.NDArray[Any]]:
    """Read a sample without ever unpickling; a damaged file is a UsageError naming it."""
    try:
        with np.load(path, allow_pickle=False) as data:
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
    n, d, a = vec.num_agents, vec.obs_dim, vec.n_actions
    obs_log = np.zeros((steps, n, d), np.float32)
    mask_log = np.zeros((steps, n, a), np.bool_)
    act_log = np.zeros((steps, n), np.int64)
    logp_log = np.zeros((steps, n), np.float32)
    value_log = np.zeros((steps + 1, n), np.float32)
    rew_log = np.zeros((steps, n), np.float32)
    term_log = np.zeros((steps, n), np.bool_)
    alive_log = np.zeros((steps, n), np.bool_)
    obs, info = vec.reset(seed)
    alive = info["alive"].copy()
    for t in range(steps):
        obs_log[t] = obs
        mask_log[t] = vec.action_masks()
        alive_log[t] = alive
        if policy is None:
            actions, logp = vec.expert_actions()
            values = np.zeros(n, np.float32)
        else:
            actions, logp, values = policy(obs, vec.action_masks())
        act_log[t], logp_log[t], value_log[t] = actions, logp, values
        obs, rewards, terminated, _, info = vec.step(act_log[t])
        rew_log[t] = rewards
        term_log[t] = terminated
        alive = info["alive"].copy()
    if policy is not None:
        value_log[steps] = policy(obs, vec.action_masks())[2]
    trunc_log = np.zeros((steps, n), np.bool_)
    trunc_log[-1] = alive_log[-1] & ~term_log[-1]
    events = event_metrics(vec.native)

    map_shape = tuple(meta["map_shape"])
    map_len = int(np.prod(map_shape))
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
    files: dict[str, bytes] = {}
    manifest_samples: list[dict[str, Any]] = []
    all_metrics: dict[str, Any] = {}
    for slot, agent in enumerate(agents):
        if agent_id is not None and agent != agent_id:
            continue
        arrays: dict[str, npt.NDArray[Any]] = {
            "map": obs_log[:, slot, :map_len].reshape(steps, *map_shape),
            "features": obs_log[:, slot, map_len:],
            "actions": act_log[:, slot],
            "old_log_probs": logp_log[:, slot],
            "value_preds": value_log[:, slot],
            "rewards": rew_log[:, slot],
            "dones": term_log[:, slot] | trunc_log[:, slot],
            "truncations": trunc_log[:, slot],
            "action_masks": mask_log[:, slot],
            "alive": alive_log[:, slot],
        }
        stem = f"{prefix}_{agent}_{slot + 1:03d}"
        metrics = sample_metrics(arrays, meta["feature_names"], meta["action_names"])
        npz = npz_bytes(arrays, compress=compress)
        sidecar = {
            "agent_id": agent,
            "slot": slot,
            "variant": meta["variant"],
            "map_shape": list(map_shape),
            "map_channels": meta["map_channels"],
            "feature_names": meta["feature_names"],
            "action_names": meta["action_names"],
            "action_dim": a,
            "timesteps": steps,
            "value_pred_steps": steps + 1,
            "training_arrays": list(TRAINING_ARRAYS),
            "metrics": metrics,
            "capture_metadata": metadata,
        }
        meta_bytes = canonical_json(sidecar).encode()
        files[f"{stem}.npz"] = npz
        files[f"{stem}.json"] = meta_bytes
        manifest_samples.append(
            {
                "sample": f"{stem}.npz",
                "meta": f"{stem}.json",
                "agent_id": agent,
                "frame_count": steps,
                "sha256": hashlib.sha256(npz).hexdigest(),
                "meta_sha256": hashlib.sha256(meta_bytes).hexdigest(),
            }
        )
        all_metrics[f"{stem}.npz"] = metrics
    files[f"{prefix}_metrics.json"] = canonical_json(
        {"metadata": metadata, "samples": all_metrics, "events": events}
    ).encode()
    files[f"{prefix}_manifest.json"] = canonical_json({"metadata": metadata, "samples": manifest_samples}).encode()
    written = publish(output, files, last=f"{prefix}_manifest.json")
    return CaptureResult(
        output, [s["sample"] for s in manifest_samples], {"samples": all_metrics, "events": events}, written
    )


def publish(output: Path, files: dict[str, bytes], *, last: str) -> list[Path]:
    """Write every file into a staging folder beside them, fsync, then rename into `output`,
    the manifest last, so a folder with a manifest is always complete."""
    if output.exists() and not output.is_dir():
        raise UsageError(f"{output}: exists and is not a directory (--output must name a folder)")
    try:
        output.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".capture-", dir=output))
    except OSError as exc:
        raise UsageError(f"{output}: cannot write capture output ({exc.strerror or exc})") from None
    try:
        for name, data in files.items():
            with open(staging / name, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        written = []
        for name in sorted(files, key=lambda x: x == last):
            os.replace(staging / name, output / name)
            written.append(output / name)
        return written
    except OSError as exc:
        raise UsageError(f"{output}: cannot write capture output ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
