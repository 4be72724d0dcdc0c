"""Bad captures through the command line (issue 11): non-finite numbers, arrays of the wrong shape,
manifest entries that lead outside the capture's folder, and the staging folders a killed capture
leaves behind. Each bad input is refused with one `error:` line naming the file and the array (or
manifest entry), before anything is trained or written."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import _cli_env, assert_one_line_error, run_cli
from townlet.capture.npz import npz_bytes
from townlet.capture.records import ManifestEntry
from townlet.errors import TownletError
from townlet.telemetry.writer import TelemetryWriter

QUEUE_CONFLICT = "configs/scenarios/queue_conflict.yaml"
MANIFEST = "rollout_sample_manifest.json"

Arrays = dict[str, np.ndarray]


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """queue_conflict, 30 ticks, captured once for the module (copied by each case)."""
    out = tmp_path_factory.mktemp("capture") / "qc"
    res = run_cli("capture", "rollout", Path(__file__).parents[1] / QUEUE_CONFLICT, "--output", out, "--ticks", "30")
    assert res.returncode == 0, str(res)
    return out


def copy_capture(capture: Path, dest: Path) -> Path:
    shutil.copytree(capture, dest)
    return dest


def manifest_doc(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    return data


def write_manifest(folder: Path, doc: dict[str, Any]) -> None:
    (folder / MANIFEST).write_text(json.dumps(doc, indent=2), encoding="utf-8")


def rewrite_sample(folder: Path, edit: Callable[[Arrays], None]) -> Path:
    """Edit the first sample's arrays and record the new file's SHA-256 in the manifest (so that only
    the arrays are wrong, not the digest)."""
    doc = manifest_doc(folder)
    path = folder / doc["samples"][0]["sample"]
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    edit(arrays)
    raw = npz_bytes(arrays, compress=False)
    path.write_bytes(raw)
    doc["samples"][0]["sha256"] = hashlib.sha256(raw).hexdigest()
    write_manifest(folder, doc)
    return path


def train_replay(folder: Path, work: Path) -> tuple[Any, Path, Path]:
    log, ckpt = work / "out" / "ppo.jsonl", work / "out" / "ppo.safetensors"
    res = run_cli(
        "train", QUEUE_CONFLICT, "--mode", "replay", "--replay-manifest", folder / MANIFEST, "--epochs", "1",
        "--ppo-log", log, "--checkpoint", ckpt,
    )  # fmt: skip
    return res, log, ckpt


def assert_refused(res: Any, log: Path, ckpt: Path, *must: str) -> str:
    line = assert_one_line_error(res, *must)
    assert not log.exists() and not ckpt.exists() and not log.parent.exists(), "nothing may be written"
    return line


def _set(name: str, value: Any, row: int = 3) -> Callable[[Arrays], None]:
    def edit(arrays: Arrays) -> None:
        arrays[name] = arrays[name].copy()
        arrays[name][row] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "array"),
    [
        (_set("rewards", np.nan), "rewards"),
        (_set("rewards", -np.inf, row=0), "rewards"),
        (_set("features", np.inf), "features"),
        (_set("old_log_probs", np.nan, row=29), "old_log_probs"),
        (_set("map", np.nan), "map"),
    ],
    ids=["nan-reward", "neg-inf-reward", "inf-feature", "nan-logprob-last-row", "nan-map"],
)
def test_non_finite_sample_is_refused_naming_file_and_array(
    capture: Path, tmp_path: Path, edit: Callable[[Arrays], None], array: str
) -> None:
    folder = copy_capture(capture, tmp_path / "cap")
    sample = rewrite_sample(folder, edit)
    res, log, ckpt = train_replay(folder, tmp_path)
    line = assert_refused(res, log, ckpt, str(sample), f"array {array!r}", "non-finite")
    assert "nan" in line or "inf" in line


def _drop_rows(name: str, keep: int) -> Callable[[Arrays], None]:
    def edit(arrays: Arrays) -> None:
        arrays[name] = arrays[name][:keep]

    return edit


def _replace(name: str, value: Callable[[np.ndarray], np.ndarray]) -> Callable[[Arrays], None]:
    def edit(arrays: Arrays) -> None:
        arrays[name] = value(arrays[name])

    return edit


def _all_rows(keep: int) -> Callable[[Arrays], None]:
    def edit(arrays: Arrays) -> None:
        for name in ("map", "features", "actions", "old_log_probs", "rewards", "dones", "action_masks"):
            arrays[name] = arrays[name][:keep]
        for name in ("truncations", "alive"):
            arrays[name] = arrays[name][:keep]

    return edit


@pytest.mark.parametrize(
    ("edit", "must"),
    [
        (_drop_rows("actions", 29), ["array 'actions'", "29 rows", "30"]),
        (_drop_rows("features", 10), ["array 'features'", "10 rows"]),
        (_drop_rows("dones", 0), ["array 'dones'", "0 rows"]),
        (_replace("features", lambda a: a.reshape(-1)), ["array 'features'", "expected 2 axes"]),
        (_replace("action_masks", lambda a: a[:, 0]), ["array 'action_masks'", "expected 2 axes"]),
        (_replace("rewards", lambda a: a.astype(str)), ["array 'rewards'", "not numbers"]),
        (_replace("actions", lambda a: a.astype(np.float32)), ["array 'actions'", "not action indices"]),
        (_replace("actions", lambda a: np.full_like(a, 99)), ["array 'actions'", "outside the"]),
        (_replace("actions", lambda a: np.full_like(a, -1)), ["array 'actions'", "-1"]),
        (_all_rows(0), ["array 'map'", "no rows"]),
        (lambda arrays: arrays.pop("rewards"), ["lacks arrays", "rewards"]),
    ],
    ids=[
        "short-actions",
        "short-features",
        "empty-dones",
        "flat-features",
        "flat-masks",
        "string-rewards",
        "float-actions",
        "action-too-big",
        "negative-action",
        "no-ticks",
        "missing-rewards",
    ],
)
def test_badly_shaped_sample_is_refused_naming_file_and_array(
    capture: Path, tmp_path: Path, edit: Callable[[Arrays], None], must: list[str]
) -> None:
    folder = copy_capture(capture, tmp_path / "cap")
    sample = rewrite_sample(folder, edit)
    res, log, ckpt = train_replay(folder, tmp_path)
    line = assert_refused(res, log, ckpt, str(sample), *must)
    assert "reshape" not in line


@pytest.mark.parametrize(
    ("field", "name", "why"),
    [
        ("sample", "../outside.npz", "leaves the folder"),
        ("sample", "a/../../outside.npz", "leaves the folder"),
        ("sample", "ABSOLUTE", "an absolute path"),
        ("sample", "..\\outside.npz", "backslash"),
        ("sample", "", "an empty name"),
        ("meta", "../outside.json", "leaves the folder"),
        ("meta", "/etc/passwd", "an absolute path"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "backslash", "empty", "meta-dotdot", "meta-absolute"],
)
def test_manifest_entry_leaving_its_folder_is_refused(
    capture: Path, tmp_path: Path, field: str, name: str, why: str
) -> None:
    """A manifest names files inside its own folder, as archive members do; a valid sample copied
    outside would otherwise be trained on."""
    folder = copy_capture(capture, tmp_path / "cap")
    doc = manifest_doc(folder)
    entry = doc["samples"][0]
    outside = tmp_path / ("outside.npz" if field == "sample" else "outside.json")
    shutil.copy(folder / entry[field], outside)
    entry[field] = str(outside) if name == "ABSOLUTE" else name
    write_manifest(folder, doc)
    res, log, ckpt = train_replay(folder, tmp_path)
    assert_refused(res, log, ckpt, str(folder / MANIFEST), f"samples[0].{field}", why)


@pytest.mark.parametrize("field", ["sample", "meta"])
def test_manifest_entry_linked_outside_its_folder_is_refused(capture: Path, tmp_path: Path, field: str) -> None:
    folder = copy_capture(capture, tmp_path / "cap")
    entry = manifest_doc(folder)["samples"][0]
    outside = tmp_path / "elsewhere" / entry[field]
    outside.parent.mkdir()
    shutil.move(folder / entry[field], outside)
    (folder / entry[field]).symlink_to(outside)
    res, log, ckpt = train_replay(folder, tmp_path)
    assert_refused(res, log, ckpt, str(folder / MANIFEST), entry[field], "leads outside the manifest's folder")


def test_prefix_with_folders_is_refused(tmp_path: Path) -> None:
    for prefix in ("../escape", "sub/dir", ".."):
        out = tmp_path / "cap"
        res = run_cli("capture", "rollout", QUEUE_CONFLICT, "--output", out, "--ticks", "5", "--prefix", prefix)
        assert_one_line_error(res, "--prefix", repr(prefix))
        assert not out.exists() and not (tmp_path / "escape_manifest.json").exists()


def test_telemetry_writer_refuses_a_non_finite_record_and_creates_nothing(tmp_path: Path) -> None:
    """Unreachable from the CLI (captures are checked on load), refused clearly if it ever happens."""
    log = tmp_path / "sub" / "ppo.jsonl"
    writer = TelemetryWriter(log)
    assert not log.parent.exists(), "a writer creates its file with the first record, not before"
    for record in ({"epoch": 1, "loss": float("nan")}, {"epoch": 1, "nested": {"kl": float("inf")}}):
        with pytest.raises(
            TownletError, match=r"ppo.jsonl: epoch 1's record holds non-finite numbers \((loss|nested.kl)\)"
        ):
            writer.write(record)
        assert not log.exists()
    writer.write({"epoch": 1, "loss": 0.5})
    assert json.loads(log.read_text(encoding="utf-8")) == {"epoch": 1, "loss": 0.5, "log_stream_offset": 0}


# -- stale staging folders ------------------------------------------------------------------------------

HOLD_STAGING = """
import sys
from pathlib import Path
from townlet.capture.staging import Staging
staging = Staging(Path(sys.argv[1]), ["rollout_sample_alice_001.npz"])
staging.open()
staging.put("rollout_sample_alice_001.npz", b"half a sample")
print(staging.folder.name, flush=True)
sys.stdin.read()
"""


def capture_into(out: Path) -> Any:
    return run_cli("capture", "rollout", QUEUE_CONFLICT, "--output", out, "--ticks", "5")


def test_a_killed_captures_staging_folder_is_removed_by_the_next_capture(tmp_path: Path) -> None:
    out = tmp_path / "cap"
    out.mkdir()
    # A capture that is still writing (it holds its staging folder), then killed with SIGKILL.
    with subprocess.Popen(
        [sys.executable, "-c", HOLD_STAGING, str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=_cli_env(),
        text=True,
    ) as proc:
        assert proc.stdout is not None
        held = out / proc.stdout.readline().strip()
        # Two older leftovers: an empty one and one from a capture without the lock.
        (out / ".capture-old1").mkdir()
        (out / ".capture-old2").mkdir()
        (out / ".capture-old2" / "rollout_sample_bob_002.npz").write_bytes(b"partial")
        try:
            res = capture_into(out)
            assert res.returncode == 0, str(res)
            assert held.is_dir(), "a living capture's staging folder is left alone"
            notice = [line for line in res.stderr.splitlines() if line.strip()]
            assert notice == [
                f"notice: removed 2 staging folder(s) left in {out} by an interrupted capture "
                "(.capture-old1, .capture-old2)"
            ], str(res)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    res = capture_into(out)
    assert res.returncode == 0, str(res)
    assert (
        res.stderr.strip()
        == f"notice: removed 1 staging folder(s) left in {out} by an interrupted capture ({held.name})"
    )
    assert not held.exists()
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    # Nothing left to clean: no notice.
    res = capture_into(out)
    assert res.returncode == 0 and res.stderr.strip() == "", str(res)


def test_stale_staging_notice_also_from_train_rollout_save_dir(tmp_path: Path) -> None:
    out = tmp_path / "cap"
    (out / ".capture-dead").mkdir(parents=True)
    res = run_cli("train", QUEUE_CONFLICT, "--rollout-save-dir", out, "--rollout-ticks", "5")
    assert res.returncode == 0, str(res)
    assert "notice: removed 1 staging folder(s)" in res.stderr and ".capture-dead" in res.stderr
    assert not (out / ".capture-dead").exists()
    assert os.path.isfile(out / MANIFEST)


def test_good_capture_still_trains(capture: Path, tmp_path: Path) -> None:
    folder = copy_capture(capture, tmp_path / "cap")
    res, log, ckpt = train_replay(folder, tmp_path)
    assert res.returncode == 0, str(res)
    assert log.is_file() and ckpt.is_file()
    assert io.StringIO(log.read_text(encoding="utf-8")).read().count("\n") == 1


def test_bc_refuses_the_same_bad_samples(capture: Path, tmp_path: Path) -> None:
    """Behaviour cloning reads captures through the same loader."""
    for k, (edit, must) in enumerate(
        [
            (_set("rewards", np.nan), "array 'rewards'"),
            (_drop_rows("actions", 5), "array 'actions'"),
        ]
    ):
        folder = copy_capture(capture, tmp_path / f"cap{k}")
        sample = rewrite_sample(folder, edit)
        log = tmp_path / "out" / "bc.jsonl"
        res = run_cli(
            "train", QUEUE_CONFLICT, "--mode", "bc", "--bc-manifest", folder / MANIFEST, "--epochs", "1",
            "--bc-log", log, "--checkpoint", tmp_path / "out" / "bc.safetensors",
        )  # fmt: skip
        assert_one_line_error(res, str(sample), must)
        assert not (tmp_path / "out").exists()


def test_the_writers_manifest_model_refuses_escaping_names() -> None:
    fields = {"agent_id": "a", "frame_count": 1, "sha256": "0", "meta_sha256": "0"}
    for name in ("../x.npz", "/abs/x.npz", "a/../../x.npz"):
        with pytest.raises(ValueError, match="a manifest names files inside its own folder"):
            ManifestEntry(sample=name, meta="x.json", **fields)
        with pytest.raises(ValueError, match="a manifest names files inside its own folder"):
            ManifestEntry(sample="x.npz", meta=name, **fields)
    assert ManifestEntry(sample="sub/x.npz", meta="x.json", **fields).sample == "sub/x.npz"
