"""Output paths that cannot be written (issue 11): under a regular file, under /proc or /sys, with a
name too long, a folder where a file goes. Every command checks its output paths before any work
starts (`townlet.paths.check_output`) and refuses with one line naming the option and the path; the
tests run as root, so every path here fails for root too."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import WriteConfig, assert_one_line_error, run_cli

QUEUE_CONFLICT = "configs/scenarios/queue_conflict.yaml"
LONG = "n" * 300


def bad_paths(tmp_path: Path) -> list[tuple[Path, str]]:
    """(path, what the error says) for several paths nobody can write."""
    plain = tmp_path / "plain.txt"
    plain.write_text("a regular file\n", encoding="utf-8")
    return [
        (Path("/proc/x/out.jsonl"), "cannot create files in /proc"),
        (Path("/proc/out.jsonl"), "cannot create files in /proc"),
        (Path("/sys/out.jsonl"), "cannot create files in /sys"),
        (plain / "out.jsonl", f"{plain} is not a folder"),
        (plain / "deeper" / "out.jsonl", f"{plain} is not a folder"),
        (tmp_path / LONG / "out.jsonl", "File name too long"),
        (tmp_path / f"{LONG}.jsonl", "File name too long"),
    ]


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(
    ("option", "extra"),
    [
        ("--ppo-log", ["--mode", "rollout"]),
        ("--checkpoint", ["--mode", "rollout"]),
        ("--warm-start-save", ["--mode", "rollout"]),
        ("--bc-log", ["--mode", "bc", "--rollout-save-dir", "capture"]),
        ("--rollout-save-dir", ["--mode", "rollout"]),
    ],
)
def test_train_refuses_unwritable_outputs_before_any_work(
    tmp_path: Path, scratch_cwd: Path, option: str, extra: list[str]
) -> None:
    cases = bad_paths(tmp_path)
    before = listing(scratch_cwd), listing(tmp_path)
    for path, why in cases:
        res = run_cli("train", QUEUE_CONFLICT, "--epochs", "1", "--rollout-ticks", "5", *extra, option, path)
        named = "--warm-start-save" if option == "--checkpoint" else option  # the option's first name
        line = assert_one_line_error(res, why)
        assert line.startswith(f"error: {named} {path}: cannot write"), line
        # Nothing trained, captured or created (no capture folder, no default log or checkpoint).
        assert (listing(scratch_cwd), listing(tmp_path)) == before, str(res)


def test_train_refuses_a_folder_as_log_file(tmp_path: Path) -> None:
    res = run_cli("train", QUEUE_CONFLICT, "--mode", "rollout", "--epochs", "1", "--ppo-log", tmp_path)
    assert_one_line_error(res, f"--ppo-log {tmp_path}", "it is a folder")


def test_a_checkpoint_path_from_the_config_is_named_by_its_key(tmp_path: Path, write_config: WriteConfig) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x", encoding="utf-8")
    config = write_config(lambda d: d.setdefault("ppo", {}).setdefault("warm_start", {}).update(
        save_path=str(plain / "ck.safetensors")
    ))  # fmt: skip
    res = run_cli("train", config, "--mode", "rollout", "--epochs", "1")
    assert_one_line_error(res, "ppo.warm_start.save_path", f"{plain} is not a folder")


@pytest.mark.parametrize(
    ("verb", "option"),
    [("rollout", "--output"), ("suite", "--output-root")],
)
def test_capture_refuses_unwritable_output_folders(tmp_path: Path, scratch_cwd: Path, verb: str, option: str) -> None:
    cases = bad_paths(tmp_path)
    before = listing(scratch_cwd), listing(tmp_path)
    for path, why in cases:
        res = run_cli("capture", verb, QUEUE_CONFLICT, option, path, "--ticks", "5")
        assert_one_line_error(res, f"{option} {path}", why)
        assert (listing(scratch_cwd), listing(tmp_path)) == before, str(res)
    plain = tmp_path / "plain.txt"
    res = run_cli("capture", verb, QUEUE_CONFLICT, option, plain, "--ticks", "5")
    assert_one_line_error(res, f"{option} {plain}", "exists and is not a directory")


def test_capture_merge_refuses_an_unwritable_golden(tmp_path: Path) -> None:
    capture = tmp_path / "cap"
    assert run_cli("capture", "rollout", QUEUE_CONFLICT, "--output", capture, "--ticks", "5").returncode == 0
    for path, why in bad_paths(tmp_path):
        res = run_cli("capture", "merge", capture, "--golden", path)
        assert_one_line_error(res, f"--golden {path}", why)


@pytest.mark.parametrize(
    ("option", "argv"),
    [
        ("--save-snapshot", ["sim", "run", "--config", "configs/examples/poc_hybrid.yaml", "--tick-limit", "5"]),
        ("--plot", ["telemetry", "summary", "docs/samples/ppo_conflict_telemetry.jsonl"]),
        ("--output", ["archive", "create", "--checkpoint", "missing.json", "--config", QUEUE_CONFLICT]),
    ],
)
def test_other_commands_refuse_unwritable_outputs_before_any_work(
    tmp_path: Path, scratch_cwd: Path, option: str, argv: list[str]
) -> None:
    """A snapshot, a plot and an archive: the path is refused before the town runs, the log is read or the
    checkpoint is looked at (the archive's checkpoint here does not even exist), and nothing is created."""
    cases = bad_paths(tmp_path)
    before = listing(scratch_cwd), listing(tmp_path)
    for path, why in cases:
        res = run_cli(*argv, option, path)
        line = assert_one_line_error(res, why)
        assert line.startswith(f"error: {option} {path}: cannot write"), line
        assert (listing(scratch_cwd), listing(tmp_path)) == before, str(res)
