"""Capture and checkpoint timestamps: the real UTC time by default (a manifest dated 1970 looks broken);
`SOURCE_DATE_EPOCH` pins it, and the golden Make targets pin it to the last commit's time."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, _cli_env

QUEUE = "configs/scenarios/queue_conflict.yaml"
MAKE = shutil.which("make") or "/usr/bin/make"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _stamp(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def _unpinned_env() -> dict[str, str]:
    env = _cli_env()
    env.pop("SOURCE_DATE_EPOCH", None)
    return env


def test_capture_is_dated_now_unless_source_date_epoch_pins_it(tmp_path: Path) -> None:
    before = _now()
    argv = [sys.executable, "tools/capture_rollout.py", QUEUE, "--ticks", "10"]
    res = subprocess.run([*argv, "--output", tmp_path / "now"], env=_unpinned_env(), capture_output=True, check=False)
    assert res.returncode == 0, res.stderr
    after = _now()
    pinned_env = {**_unpinned_env(), "SOURCE_DATE_EPOCH": "1700000000"}
    res = subprocess.run([*argv, "--output", tmp_path / "pinned"], env=pinned_env, capture_output=True, check=False)
    assert res.returncode == 0, res.stderr
    for name in ("rollout_sample_manifest.json", "rollout_sample_metrics.json", "rollout_sample_anna_001.json"):
        now = json.loads((tmp_path / "now" / name).read_text(encoding="utf-8"))
        pinned = json.loads((tmp_path / "pinned" / name).read_text(encoding="utf-8"))
        assert before <= _stamp((now.get("metadata") or now["capture_metadata"])["timestamp"]) <= after, name
        assert (pinned.get("metadata") or pinned["capture_metadata"])["timestamp"] == "2023-11-14T22:13:20Z"
    # The arrays never carry a date.
    npz = "rollout_sample_anna_001.npz"
    assert (tmp_path / "now" / npz).read_bytes() == (tmp_path / "pinned" / npz).read_bytes()


def test_checkpoint_is_dated_now_unless_pinned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from townlet.artifacts.checkpoint import load_checkpoint, save_checkpoint
    from townlet.training.network import build_policy

    net = build_policy({"architecture": "mlp", "obs_dim": 4, "n_actions": 2, "hidden": 8})
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    before = _now()
    save_checkpoint(tmp_path / "now.json", net, obs_meta={}, config=None, seed=0, counters={})
    after = _now()
    assert before <= _stamp(load_checkpoint(tmp_path / "now.json").header["created_utc"]) <= after
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    save_checkpoint(tmp_path / "pinned.json", net, obs_meta={}, config=None, seed=0, counters={})
    assert load_checkpoint(tmp_path / "pinned.json").header["created_utc"] == "2023-11-14T22:13:20Z"


def _make_dates(target: str, env: dict[str, str]) -> list[str]:
    """The SOURCE_DATE_EPOCH each recipe line of `target` runs with: PY is swapped for an echo, and the
    extension stamp dropped, so nothing is built or captured."""
    argv = [MAKE, "-s", "-C", str(REPO_ROOT), target, "EXT_STAMP=", "PY=sh -c 'echo SDE=$$SOURCE_DATE_EPOCH' probe"]
    res = subprocess.run(argv, cwd="/", env=env, capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    return [ln.removeprefix("SDE=") for ln in res.stdout.splitlines() if ln.startswith("SDE=")]


def test_golden_targets_pin_the_date_to_the_last_commit() -> None:
    if (REPO_ROOT / ".git").exists():
        git = ["git", "-C", str(REPO_ROOT), "log", "-1", "--format=%ct"]
        commit = subprocess.run(git, capture_output=True, text=True, check=False).stdout.strip() or "0"
    else:
        commit = "0"
    # golden-merge runs capture, then the merge: both recipe lines see the pinned date.
    assert _make_dates("golden-merge", _unpinned_env()) == [commit, commit]
    # A date already in the environment wins.
    assert _make_dates("capture", {**_unpinned_env(), "SOURCE_DATE_EPOCH": "5"}) == ["5"]
