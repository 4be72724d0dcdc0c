"""A capture made elsewhere (`capture/remote.py`: the bytes travel, the caller publishes them) writes the same
files as a local capture; the timestamp is the caller's, never the worker's clock or environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from townlet.capture.remote import CaptureJob, capture_files, publish_files
from townlet.capture.rollout import capture_rollout
from townlet.sim.config import load_config

STAMP = "2001-02-03T04:05:06Z"


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("compress", [False, True])
def test_captured_files_published_elsewhere_match_a_local_capture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compress: bool
) -> None:
    cfg = load_config(Path("configs/scenarios/queue_conflict.yaml"))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "981173106")  # = STAMP, for the local capture
    capture_rollout(cfg, tmp_path / "local", compress=compress)
    # The worker's environment says otherwise: the job's timestamp wins.
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    captured = capture_files(CaptureJob(cfg, tmp_path / "shipped", STAMP, compress=compress))
    assert captured.last == "rollout_sample_manifest.json"
    assert list(captured.files)[-1] == captured.last
    assert captured.samples == [n for n in captured.files if n.endswith(".npz")]
    assert not publish_files(tmp_path / "shipped", captured)
    assert folder_bytes(tmp_path / "shipped") == folder_bytes(tmp_path / "local")
    assert STAMP.encode() in captured.files[captured.last]


def test_publishing_removes_a_stale_staging_folder_and_says_so(tmp_path: Path) -> None:
    cfg = load_config(Path("configs/scenarios/observation_baseline.yaml"))
    out = tmp_path / "out"
    (out / ".capture-stale").mkdir(parents=True)
    notices = publish_files(out, capture_files(CaptureJob(cfg, out, STAMP)))
    assert len(notices) == 1 and ".capture-stale" in notices[0]
    assert not (out / ".capture-stale").exists()
    assert (out / "rollout_sample_manifest.json").is_file()
