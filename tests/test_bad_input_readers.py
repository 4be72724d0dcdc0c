"""Inputs that are not the text they claim to be, fed through the CLI as a user would.

* Binary garbage or invalid UTF-8 where JSON/YAML is expected (snapshot, config, capture manifest, sidecar and
  metrics, golden, registry, checkpoint header, telemetry log, baseline, archive): one `error:` line naming the
  file, no traceback (exit 2; the tools' problem exit 1 for a log or an archive).
* A JSON object that names a key twice (Python's json keeps the last silently): refused by the one parser
  (`jsonio.loads_strict`: `parse_json`, the JSONL reader and the readers built on them), naming the file, the line
  and the key.
* Snapshots carry a checksum over their content: a digit of a number, a letter of a string, a truncation or an
  edit of the checksum itself is refused before anything is restored; whitespace is not content.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO_ROOT, CliResult, RunCli, assert_one_line_error

QUEUE = str(REPO_ROOT / "configs/scenarios/queue_conflict.yaml")
TINY = ("--epochs", "1", "--num-envs", "1", "--rollout-ticks", "20", "-q")
GARBAGE = b"\x89PNG\r\n\x1a\n\x00\xff\xfe\x00binary"


@dataclass(frozen=True)
class Inputs:
    snap: Path  # a snapshot of QUEUE after 10 ticks
    ckpt: Path  # a .json checkpoint (weights inline)
    log: Path  # the run's telemetry JSONL
    capture: Path  # a capture folder (manifest, sidecars, metrics)
    registry: Path
    archive: Path


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    from conftest import run_cli

    d = tmp_path_factory.mktemp("good")
    # Dated artefacts would make the archive's gzip bytes (and so where a spoil lands in them) differ per run.
    pinned, os.environ["SOURCE_DATE_EPOCH"] = os.environ.get("SOURCE_DATE_EPOCH"), "1700000000"
    ok = [
        run_cli("sim", "run", "--config", QUEUE, "--tick-limit", "10", "--save-snapshot", d / "snap.json"),
        run_cli("train", QUEUE, *TINY, "--fresh", "--warm-start-save", d / "ck.json", "--ppo-log", d / "log.jsonl"),
        run_cli("capture", "rollout", QUEUE, "--output", d / "cap", "--ticks", "10"),
        run_cli("registry", "register", QUEUE, "--label", "queue", "--registry", d / "reg.json"),
    ]
    ok.append(
        run_cli(
            "archive",
            "create",
            "--checkpoint",
            d / "ck.json",
            "--log",
            d / "log.jsonl",
            "--config",
            QUEUE,
            "--output",
            d / "a.tar.gz",
            "--registry",
            d / "reg.json",
        )
    )
    if pinned is None:
        del os.environ["SOURCE_DATE_EPOCH"]
    else:
        os.environ["SOURCE_DATE_EPOCH"] = pinned
    for res in ok:
        assert res.returncode == 0, str(res)
    return Inputs(d / "snap.json", d / "ck.json", d / "log.jsonl", d / "cap", d / "reg.json", d / "a.tar.gz")


def _invalid_utf8(raw: bytes) -> bytes:
    """`raw` with two bytes that are not UTF-8 inside its first string."""
    at = raw.index(b'"') + 1
    return raw[:at] + b"\xff\xfe" + raw[at:]


def _duplicate_first_key(raw: bytes) -> tuple[bytes, str]:
    """`raw` (a JSON object) with its first key named once more at the front; and that key."""
    start = raw.index(b"{") + 1
    q1 = raw.index(b'"', start)
    q2 = raw.index(b'"', q1 + 1)
    key = raw[q1 : q2 + 1]
    return raw[:start] + key + b": 0, " + raw[start:], json.loads(key)


@dataclass(frozen=True)
class Case:
    """One input kind: which file of `Inputs` to spoil, and the command that reads it."""

    source: str  # "snap", "ckpt", "log", "registry", "cap/<file>" or "config"
    argv: tuple[str, ...]  # {} is the spoiled file's path, {dir} its folder
    exit_code: int = 2


CASES = {
    "snapshot": Case("snap", ("sim", "run", "--config", QUEUE, "--load-snapshot", "{}", "--tick-limit", "5")),
    "checkpoint-load": Case("ckpt", ("train", QUEUE, *TINY, "--warm-start-load", "{}")),
    "checkpoint-info": Case("ckpt", ("checkpoint", "info", "{}")),
    "policy": Case("ckpt", ("capture", "rollout", QUEUE, "--output", "{dir}/out", "--ticks", "5", "--policy", "{}")),
    "registry": Case("registry", ("registry", "list", "--registry", "{}")),
    "manifest": Case(
        "cap/rollout_sample_manifest.json",
        ("train", QUEUE, "--mode", "replay", "--replay-manifest", "{}", "--epochs", "1", "-q"),
    ),
    "sidecar": Case(
        "cap/rollout_sample_anna_001.json",
        (
            "train",
            QUEUE,
            "--mode",
            "replay",
            "--replay-manifest",
            "{dir}/rollout_sample_manifest.json",
            "--epochs",
            "1",
            "-q",
        ),
    ),
    "capture-metrics": Case(
        "cap/rollout_sample_metrics.json", ("capture", "drift", "{dir}", "--golden", "{dir}/golden.json")
    ),
    "golden": Case("golden", ("capture", "drift", "{dir}/cap", "--golden", "{}")),
    "telemetry-log": Case("log", ("telemetry", "summary", "{}"), exit_code=1),
    "archive": Case("archive", ("archive", "summary", "--archive", "{}"), exit_code=1),
    "baseline": Case("baseline", ("telemetry", "summary", "{dir}/good.jsonl", "--baseline", "{}")),
}


NAMES = {
    "snap": "snap.json",
    "ckpt": "ck.json",
    "log": "log.jsonl",
    "registry": "reg.json",
    "golden": "golden.json",
    "baseline": "base.json",
    "archive": "a.tar.gz",
}


def _rebuild_archive(archive: Path, dest: Path, spoil: Callable[[bytes], bytes]) -> None:
    """`archive` copied to `dest` with its metadata.json member passed through `spoil` (every other member intact)."""
    with tarfile.open(archive, "r:gz") as src, tarfile.open(dest, "w:gz") as dst:
        for info in src.getmembers():
            data = src.extractfile(info).read() if info.isfile() else b""  # type: ignore[union-attr]
            if info.name == "metadata.json":
                data = spoil(data)
                info.size = len(data)
            dst.addfile(info, io.BytesIO(data))


def _spoil(good: Inputs, case: Case, work: Path, spoil: str) -> tuple[Path, str]:
    """Copy the inputs `case` needs into `work`, spoil its file the `spoil` way; the file and what must be named."""
    shutil.copytree(good.capture, work / "cap")
    (work / "golden.json").write_bytes((good.capture / "rollout_sample_metrics.json").read_bytes())
    (work / "good.jsonl").write_bytes(good.log.read_bytes())
    target = work / (case.source if case.source.startswith("cap/") else NAMES[case.source])
    original = {
        "snap": good.snap,
        "ckpt": good.ckpt,
        "log": good.log,
        "registry": good.registry,
        "golden": good.capture / "rollout_sample_metrics.json",
        "baseline": None,
        "archive": good.archive,
    }.get(case.source, target)
    raw = b'{"loss_total": 1.0}\n' if original is None else original.read_bytes()
    named = str(target)
    if spoil == "utf8" and case.source == "archive":
        # A .tar.gz is not text: its text is the metadata.json member, rebuilt with bytes that are not UTF-8.
        _rebuild_archive(good.archive, target, lambda data: _invalid_utf8(data))
        return target, named
    if spoil == "binary":
        data = GARBAGE
    elif spoil == "utf8":
        data = _invalid_utf8(raw)
    else:
        data, key = _duplicate_first_key(raw)
        named = key
    target.write_bytes(data)
    return target, named


def _run(cli: RunCli, case: Case, target: Path) -> CliResult:
    dir_ = target.parent
    argv = [a.replace("{dir}", str(dir_)).replace("{}", str(target)) for a in case.argv]
    return cli(*argv)


@pytest.mark.parametrize("spoil", ["binary", "utf8"])
@pytest.mark.parametrize("name", list(CASES))
def test_non_utf8_input_is_one_line_naming_the_file(
    cli: RunCli, good: Inputs, tmp_path: Path, name: str, spoil: str
) -> None:
    case = CASES[name]
    target, _ = _spoil(good, case, tmp_path, spoil)
    before = sorted(p.name for p in tmp_path.iterdir())
    res = _run(cli, case, target)
    line = assert_one_line_error(res, str(target), exit_code=case.exit_code)
    assert "utf-8" in line.lower() or "not a" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_binary_config_is_one_line_naming_the_file(cli: RunCli, tmp_path: Path) -> None:
    cfg = tmp_path / "town.yaml"
    cfg.write_bytes(GARBAGE)
    res = cli("sim", "run", "--config", cfg, "--tick-limit", "5")
    assert_one_line_error(res, str(cfg))


# The telemetry log and the archive's metadata.json (a member inside the .tar.gz) have their own tests below.
@pytest.mark.parametrize("name", [n for n in CASES if n not in ("telemetry-log", "archive")])
def test_duplicate_keys_are_refused_naming_file_line_and_key(
    cli: RunCli, good: Inputs, tmp_path: Path, name: str
) -> None:
    case = CASES[name]
    target, key = _spoil(good, case, tmp_path, "duplicate")
    res = _run(cli, case, target)
    assert_one_line_error(res, str(target), f"duplicate key {key!r}", exit_code=case.exit_code)


@pytest.mark.parametrize("verb", ["verify", "summary"])
def test_an_archive_whose_metadata_names_a_key_twice_is_refused(
    cli: RunCli, good: Inputs, tmp_path: Path, verb: str
) -> None:
    """The archive's metadata.json goes through the same parser: rebuilt with its first key named twice (every
    other member intact), the archive is refused naming the key."""
    spoiled = tmp_path / "dup.tar.gz"
    keys: list[str] = []

    def spoil(data: bytes) -> bytes:
        data, key = _duplicate_first_key(data)
        keys.append(key)
        return data

    _rebuild_archive(good.archive, spoiled, spoil)
    key = keys[0]
    res = cli("archive", verb, spoiled) if verb == "verify" else cli("archive", verb, "--archive", spoiled)
    assert res.returncode == 1 and "Traceback" not in res.stderr, str(res)
    assert f"duplicate key {key!r}" in res.stderr and str(spoiled) in res.stderr, str(res)


@pytest.mark.parametrize("verb", ["summary", "validate", "watch"])
def test_a_log_record_with_a_duplicate_key_is_a_malformed_line(
    cli: RunCli, good: Inputs, tmp_path: Path, verb: str
) -> None:
    lines = good.log.read_bytes().splitlines(keepends=True)
    spoiled, key = _duplicate_first_key(lines[-1])
    log = tmp_path / "log.jsonl"
    log.write_bytes(b"".join(lines[:-1]) + spoiled)
    res = cli("telemetry", verb, log)
    assert_one_line_error(res, f"{log}:{len(lines)}", f"duplicate key {key!r}", exit_code=1)


# -- snapshot checksums ---------------------------------------------------------------------------------------


def _edit_once(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def _edit_checksum(text: str) -> str:
    """The snapshot with the first hex digit of its checksum changed (the content left alone)."""
    at = text.index('"checksum":"') + len('"checksum":"')
    return text[:at] + ("1" if text[at] == "0" else "0") + text[at + 1 :]


SNAPSHOT_EDITS: dict[str, tuple[Callable[[str], str], str]] = {
    "number": (lambda t: _edit_once(t, '"wallet":2.0', '"wallet":3.0'), "checksum mismatch"),
    "string": (lambda t: _edit_once(t, '"name":"anna"', '"name":"anne"'), "checksum mismatch"),
    "checksum": (_edit_checksum, "checksum mismatch"),
    "truncated": (lambda t: t[: len(t) // 2], "invalid JSON"),
    "no-checksum": (lambda t: json.dumps({k: v for k, v in json.loads(t).items() if k != "checksum"}), "checksum"),
    "version-1": (lambda t: json.dumps({**json.loads(t), "version": 1}), "version 1"),
}


@pytest.mark.parametrize("edit", list(SNAPSHOT_EDITS))
def test_a_changed_snapshot_is_refused_and_nothing_runs(cli: RunCli, good: Inputs, tmp_path: Path, edit: str) -> None:
    change, fragment = SNAPSHOT_EDITS[edit]
    snap = tmp_path / "snap.json"
    snap.write_text(change(good.snap.read_text(encoding="utf-8")), encoding="utf-8")
    out = tmp_path / "again.json"
    res = cli("sim", "run", "--config", QUEUE, "--load-snapshot", snap, "--tick-limit", "5", "--save-snapshot", out)
    assert_one_line_error(res, str(snap), fragment)
    assert res.stdout.strip() == ""
    assert not out.exists()


def test_a_reformatted_snapshot_is_the_same_content(cli: RunCli, good: Inputs, tmp_path: Path) -> None:
    pretty = tmp_path / "pretty.json"
    pretty.write_text(json.dumps(json.loads(good.snap.read_text(encoding="utf-8")), indent=1), encoding="utf-8")
    runs = [
        cli("sim", "run", "--config", QUEUE, "--load-snapshot", s, "--tick-limit", "20", "--json")
        for s in (good.snap, pretty)
    ]
    for res in runs:
        assert res.returncode == 0, str(res)
    assert runs[0].json()["world_hash"] == runs[1].json()["world_hash"]


def test_the_line_named_is_the_repeat_not_a_nested_namesake(cli: RunCli, good: Inputs, tmp_path: Path) -> None:
    doc = json.loads((good.capture / "rollout_sample_metrics.json").read_text(encoding="utf-8"))
    first = next(iter(doc))
    text = json.dumps(doc, indent=2)
    # A nested object that also names `first` (legitimately), `first` on line 4, and its repeat on line 5.
    spoiled = "{\n" + f'  "nested": {{"{first}": 1}},\n\n  "{first}": 0,\n' + text[2:]
    golden = tmp_path / "golden.json"
    golden.write_text(spoiled, encoding="utf-8")
    res = cli("capture", "drift", good.capture, "--golden", golden)
    assert_one_line_error(res, f"{golden}:5:", f"duplicate key {first!r}")
