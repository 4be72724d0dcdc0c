"""Command-line usage errors (an unknown option, a missing argument, a value of the wrong type) are one line naming
the option and where help is, exit 2, like every other bad input; asking for help still shows help."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import assert_one_line_error, run_cli


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["train", "--bogus"], "--bogus"),
        (["train"], "--config CONFIG"),
        (["--bogus"], "--bogus"),
        (["sim", "run", "--config", "x.yaml", "--tick-limit", "many"], "--tick-limit"),
        (["eval", "configs/examples/poc_hybrid.yaml"], "--policy"),
        (["checkpoint", "info", "--json", "--nope"], "--nope"),
        (["telemetry", "summary"], "Missing argument"),
    ],
)
def test_usage_errors_are_one_line(args: list[str], named: str) -> None:
    line = assert_one_line_error(run_cli(*args), named)
    assert "--help" in line


def test_tools_report_usage_errors_the_same_way() -> None:
    proc = subprocess.run(
        [sys.executable, "tools/checkpoint_tool.py", "info", "--bogus"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2, proc
    assert proc.stderr.splitlines() == [proc.stderr.strip()] and proc.stderr.startswith("error: "), proc.stderr
    assert "--bogus" in proc.stderr


def test_help_is_still_help() -> None:
    res = run_cli("train", "--help")
    assert res.returncode == 0 and "--ppo-log" in res.stdout and not res.stderr
