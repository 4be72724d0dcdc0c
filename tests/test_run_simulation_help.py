"""`python tools/run_simulation.py --help` (sim run's help) names the serving form and its options (#14): a user
who never read the handbook finds --serve there."""

from __future__ import annotations

from conftest import run_cli


def test_run_simulation_help_names_serve() -> None:
    res = run_cli("--help", tool=True)
    assert res.returncode == 0 and not res.stderr, res
    text = " ".join(res.stdout.split())
    for flag in ("--serve HOST:PORT", "--tokens FILE", "--allow-anonymous-viewer", "--tick-rate HZ", "--load-snapshot"):
        assert flag in text, flag
    assert "--tick-limit" in text and "--save-snapshot" in text  # sim run's own options are still there
    serve = run_cli("--serve", "127.0.0.1:0", "--help", tool=True)
    assert serve.returncode == 0 and "--tokens-env" in serve.stdout
