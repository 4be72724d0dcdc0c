"""The fast capture route against the plain one it replaced (issue 4's benchmark work).

A capture records through `VecTown.capture_expert` (Rust, agent-major) and writes each archive from
array memory, streaming rows while the town steps; these tests hold it byte for byte to the plain
route: stepping from Python with `expert_actions` + `step` (or a policy), `npz_bytes` for every
sample, `canonical_json` for every JSON file.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import numpy.typing as npt
import pytest

from conftest import REPO_ROOT
from townlet import load_config
from townlet.capture import npz as capture
from townlet.capture.npz import SampleWriter as _Sample
from townlet.capture.rollout import (
    CaptureResult,
    capture_rollout,
    npz_bytes,
    sample_metrics,
    scripted_config,
)
from townlet.errors import UsageError
from townlet.jsonio import canonical_json
from townlet.sim.env import VecTown

QUEUE = REPO_ROOT / "configs/scenarios/queue_conflict.yaml"
POC = REPO_ROOT / "configs/examples/poc_hybrid.yaml"


# -- archives -----------------------------------------------------------------------------------------


def _arrays(rng: np.random.Generator, t: int, *, map_shape: tuple[int, ...] = (2, 3, 3)) -> dict[str, Any]:
    return {
        "map": (rng.random((t, *map_shape)) < 0.2).astype(np.float32),
        "features": rng.standard_normal((t, 7)).astype(np.float32),
        "actions": rng.integers(0, 9, t).astype(np.int64),
        "old_log_probs": rng.standard_normal(t).astype(np.float32),
        "value_preds": rng.standard_normal(t + 1).astype(np.float32),
        "rewards": rng.standard_normal(t).astype(np.float32),
        "dones": rng.random(t) < 0.1,
        "truncations": np.arange(t) == t - 1,
        "action_masks": rng.random((t, 5)) < 0.5,
        "alive": rng.random(t) < 0.9,
    }


def _write(sample: _Sample, path: Path, chunks: list[tuple[int, int]]) -> str:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        for t0, t1 in chunks:
            sample.stream(fd, t0, t1)
        return sample.finish(fd)
    finally:
        os.close(fd)


@pytest.mark.parametrize("compress", [False, True], ids=["stored", "deflated"])
@pytest.mark.parametrize("ticks", [1, 2, 37, 300])
def test_sample_writer_is_byte_identical_to_npz_bytes(compress: bool, ticks: int, tmp_path: Path) -> None:
    rng = np.random.default_rng(ticks)
    arrays = _arrays(rng, ticks)
    want = npz_bytes(arrays, compress=compress)
    # Rows streamed in uneven chunks (the rest left to `finish`), or not streamed at all.
    cuts = sorted({0, *rng.integers(0, ticks + 1, 3).tolist()})
    for k, chunks in enumerate([[], list(itertools.pairwise(cuts))]):
        path = tmp_path / f"s{k}.npz"
        digest = _write(_Sample("s", arrays, compress=compress), path, chunks)
        got = path.read_bytes()
        assert got == want
        assert digest == hashlib.sha256(want).hexdigest()
        with np.load(path, allow_pickle=False) as data:
            assert all(np.array_equal(data[name], arrays[name]) for name in arrays)


def test_sample_writer_handles_empty_maps_and_rejects_out_of_order_rows(tmp_path: Path) -> None:
    arrays = _arrays(np.random.default_rng(1), 9, map_shape=(0, 3, 3))
    assert (
        _write(_Sample("s", arrays, compress=False), tmp_path / "a.npz", [(0, 4)])
        == hashlib.sha256(npz_bytes(arrays, compress=False)).hexdigest()
    )
    sample = _Sample("s", _arrays(np.random.default_rng(2), 9), compress=False)
    with pytest.raises(RuntimeError, match="streamed after"):
        _write(sample, tmp_path / "b.npz", [(0, 3), (4, 9)])


def test_archives_needing_zip64_fall_back_to_npz_bytes(tmp_path: Path) -> None:
    arrays = _arrays(np.random.default_rng(3), 20)
    with mock.patch.object(capture, "_ZIP64_LIMIT", 500):
        sample = _Sample("s", arrays, compress=False)
        assert sample.zip64 and not sample.planned
        with mock.patch.object(
            capture, "npz_bytes", lambda a, compress: b"fallback:" + npz_bytes(a, compress=compress)
        ):
            digest = _write(sample, tmp_path / "z.npz", [(0, 5)])
    assert (tmp_path / "z.npz").read_bytes() == b"fallback:" + npz_bytes(arrays, compress=False)
    assert digest == hashlib.sha256((tmp_path / "z.npz").read_bytes()).hexdigest()


def _record_from_python(vec: VecTown, steps: int) -> dict[str, npt.NDArray[Any]]:
    """The plain route: `expert_actions` then `step`, one tick at a time, tick-major."""
    n, d, a = vec.num_agents, vec.obs_dim, vec.n_actions
    out: dict[str, npt.NDArray[Any]] = {
        "obs": np.zeros((steps, n, d), np.float32),
        "masks": np.zeros((steps, n, a), np.bool_),
        "actions": np.zeros((steps, n), np.int64),
        "log_probs": np.zeros((steps, n), np.float32),
        "rewards": np.zeros((steps, n), np.float32),
        "terminated": np.zeros((steps, n), np.bool_),
        "alive": np.zeros((steps, n), np.bool_),
    }
    obs, info = vec.reset(None)
    for t in range(steps):
        out["obs"][t], out["masks"][t], out["alive"][t] = obs, vec.action_masks(), info["alive"]
        out["actions"][t], out["log_probs"][t] = vec.expert_actions()
        obs, rewards, terminated, _, info = vec.step(out["actions"][t])
        out["rewards"][t], out["terminated"][t] = rewards, terminated
    return out


def _native_args(vec: VecTown, steps: int) -> tuple[npt.NDArray[Any], ...]:
    n, a, nf = vec.num_agents, vec.n_actions, vec.native.n_features
    ml = vec.obs_dim - nf
    return (
        np.full((n, steps, ml), np.nan, np.float32),
        np.full((n, steps, nf), np.nan, np.float32),
        np.zeros((n, steps, a), np.bool_),
        np.full((n, steps), -1, np.int64),
        np.full((n, steps), np.nan, np.float32),
        np.full((n, steps), np.nan, np.float32),
        np.zeros((n, steps), np.bool_),
        np.zeros((n, steps), np.bool_),
    )


@pytest.mark.parametrize("config", [QUEUE, POC], ids=["queue_conflict", "poc_hybrid"])
def test_capture_expert_records_what_stepping_from_python_sees(config: Path) -> None:
    steps = 90
    cfg = scripted_config(load_config(config), auto_seed_agents=False)
    want = _record_from_python(VecTown(cfg, 1, None, episode_ticks=steps + 1, num_threads=1), steps)
    vec = VecTown(cfg, 1, None, episode_ticks=steps + 1, num_threads=1)
    vec.reset(None)
    args = _native_args(vec, steps)
    for t0, t1 in [(0, 0), (0, 1), (1, 40), (40, 90)]:
        vec.native.capture_expert(t0, t1, *args)
    map_, feats, masks, actions, logp, rewards, term, alive = (np.swapaxes(x, 0, 1) for x in args)
    ml = map_.shape[2]
    np.testing.assert_array_equal(map_, want["obs"][:, :, :ml])
    np.testing.assert_array_equal(feats, want["obs"][:, :, ml:])
    for got, key in [
        (masks, "masks"),
        (actions, "actions"),
        (logp, "log_probs"),
        (rewards, "rewards"),
        (term, "terminated"),
        (alive, "alive"),
    ]:
        np.testing.assert_array_equal(got, want[key], err_msg=key)
    # And the towns end in the same state.
    other = VecTown(cfg, 1, None, episode_ticks=steps + 1, num_threads=1)
    _record_from_python(other, steps)
    assert vec.native.world_hash(0) == other.native.world_hash(0)
    ran = VecTown(cfg, 1, None, episode_ticks=steps + 1, num_threads=1)
    ran.reset(None)
    ran.native.run_expert(steps)
    assert ran.native.world_hash(0) == other.native.world_hash(0)


def test_capture_expert_refuses_bad_calls() -> None:
    vec = VecTown(load_config(QUEUE), 1, None, episode_ticks=10, num_threads=1)
    vec.reset(None)
    args = _native_args(vec, 12)
    with pytest.raises(ValueError, match="episode_ticks"):
        vec.native.capture_expert(0, 10, *args)
    with pytest.raises(ValueError, match="not at the start tick"):
        vec.native.capture_expert(3, 5, *args)
    with pytest.raises(ValueError, match="past the 12 recorded ticks"):
        vec.native.capture_expert(0, 13, *_native_args(vec, 12)[:7], np.zeros((3, 12), np.bool_))
    bad = list(args)
    bad[1] = np.zeros((3, 12, 5), np.float32)
    with pytest.raises(ValueError, match="features has shape"):
        vec.native.capture_expert(0, 5, *bad)
    bad = list(args)
    bad[3] = np.zeros((12, 3), np.int64).T  # right shape, not contiguous
    with pytest.raises(Exception, match="contiguous"):
        vec.native.capture_expert(0, 5, *bad)


# -- whole captures against the plain route ----------------------------------------------------------


def _policy(obs: npt.NDArray[np.float32], masks: npt.NDArray[np.bool_]) -> tuple[Any, Any, Any]:
    score = np.where(masks, (obs[:, : masks.shape[1]] * 7.0) % 1.0, -1.0)
    return score.argmax(1).astype(np.int64), (obs.sum(1) * 1e-3).astype(np.float32), obs.mean(1)


def _plain_capture(
    config: Path, ticks: int, policy: Callable[..., Any] | None, *, compress: bool, agent_id: str | None
) -> dict[str, bytes]:
    """The files the plain route makes: Python stepping, tick-major logs, `npz_bytes`, `canonical_json`."""
    cfg = load_config(config)
    vec = VecTown(cfg, 1, None, episode_ticks=ticks + 1, num_threads=1)
    meta = vec.observation_metadata()
    agents = vec.agent_ids(0)
    n, d = vec.num_agents, vec.obs_dim
    obs_log = np.zeros((ticks, n, d), np.float32)
    mask_log = np.zeros((ticks, n, vec.n_actions), np.bool_)
    act_log = np.zeros((ticks, n), np.int64)
    logp_log = np.zeros((ticks, n), np.float32)
    value_log = np.zeros((ticks + 1, n), np.float32)
    rew_log = np.zeros((ticks, n), np.float32)
    term_log = np.zeros((ticks, n), np.bool_)
    alive_log = np.zeros((ticks, n), np.bool_)
    obs, info = vec.reset(None)
    alive = info["alive"].copy()
    for t in range(ticks):
        obs_log[t], mask_log[t], alive_log[t] = obs, vec.action_masks(), alive
        if policy is None:
            act_log[t], logp_log[t] = vec.expert_actions()
        else:
            act_log[t], logp_log[t], value_log[t] = policy(obs, vec.action_masks())
        obs, rewards, terminated, _, info = vec.step(act_log[t])
        rew_log[t], term_log[t] = rewards, terminated
        alive = info["alive"].copy()
    if policy is not None:
        value_log[ticks] = policy(obs, vec.action_masks())[2]
    trunc_log = np.zeros((ticks, n), np.bool_)
    trunc_log[-1] = alive_log[-1] & ~term_log[-1]
    map_shape = tuple(meta["map_shape"])
    map_len = int(np.prod(map_shape))
    files: dict[str, bytes] = {}
    for slot, agent in enumerate(agents):
        if agent_id is not None and agent != agent_id:
            continue
        arrays = {
            "map": obs_log[:, slot, :map_len].reshape(ticks, *map_shape),
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
        stem = f"rollout_sample_{agent}_{slot + 1:03d}"
        files[f"{stem}.npz"] = npz_bytes(arrays, compress=compress)
        files[f"{stem}.metrics"] = canonical_json(
            sample_metrics(arrays, meta["feature_names"], meta["action_names"])
        ).encode()
    return files


@pytest.mark.parametrize(
    ("config", "ticks", "policy", "compress", "agent_id"),
    [
        (QUEUE, 60, None, False, None),
        (QUEUE, 60, None, True, "ben"),
        (QUEUE, 45, _policy, False, None),
        (POC, 400, None, False, None),  # several chunks streamed while the town steps
        (POC, 130, _policy, True, None),
    ],
    ids=["expert", "expert-deflated-one-agent", "policy", "expert-chunked", "policy-deflated"],
)
def test_capture_matches_the_plain_route(
    config: Path,
    ticks: int,
    policy: Callable[..., Any] | None,
    compress: bool,
    agent_id: str | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(capture, "CHUNK_BYTES", 64 << 10)
    want = _plain_capture(config, ticks, policy, compress=compress, agent_id=agent_id)
    result: CaptureResult = capture_rollout(
        load_config(config), tmp_path, ticks=ticks, compress=compress, agent_id=agent_id, policy=policy
    )
    npz = {p.name: p.read_bytes() for p in result.files if p.suffix == ".npz"}
    assert npz == {k: v for k, v in want.items() if k.endswith(".npz")}
    manifest = json.loads((tmp_path / "rollout_sample_manifest.json").read_text(encoding="utf-8"))
    metrics = json.loads((tmp_path / "rollout_sample_metrics.json").read_text(encoding="utf-8"))
    for entry in manifest["samples"]:
        assert entry["sha256"] == hashlib.sha256(npz[entry["sample"]]).hexdigest()
        stem = entry["sample"].removesuffix(".npz")
        assert canonical_json(metrics["samples"][entry["sample"]]).encode() == want[f"{stem}.metrics"]
        sidecar = (tmp_path / entry["meta"]).read_bytes()
        assert entry["meta_sha256"] == hashlib.sha256(sidecar).hexdigest()
    # Every JSON file is canonical JSON.
    for path in result.files:
        if path.suffix == ".json":
            text = path.read_text(encoding="utf-8")
            assert text == canonical_json(json.loads(text)), path.name
    with zipfile.ZipFile(tmp_path / next(iter(npz))) as zf:
        assert zf.testzip() is None


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "new" / "capture"

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    with mock.patch("townlet.capture.staging.os.fsync", broken_fsync), pytest.raises(UsageError) as err:
        capture_rollout(load_config(QUEUE), out, ticks=30)
    assert str(err.value) == f"{out}: cannot write capture output (Input/output error)"
    assert not out.exists()  # the folder it made is gone, staging folder and all

    out.mkdir(parents=True)
    (out / "keep.txt").write_text("mine\n", encoding="utf-8")
    with mock.patch("townlet.capture.staging.os.fsync", broken_fsync), pytest.raises(UsageError):
        capture_rollout(load_config(POC), out, ticks=300)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_a_failure_while_stepping_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "capture"

    def failing_policy(obs: Any, masks: Any) -> Any:
        raise RuntimeError("policy blew up")

    with pytest.raises(RuntimeError, match="policy blew up"):
        capture_rollout(load_config(QUEUE), out, ticks=30, policy=failing_policy)
    assert not out.exists()
