"""`townlet log`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from townlet.artifacts.log_tools import follow as follow_log
from townlet.artifacts.log_tools import last_lines, validate_log
from townlet.cli.common import problems_exit, stderr_line
from townlet.jsonio import canonical_json

app = typer.Typer(help="Tail and validate JSONL logs (PPO telemetry and per-episode records).", no_args_is_help=True)


@app.command("tail")
def log_tail_cmd(
    log: Annotated[Path, typer.Argument(metavar="PATH", help="A JSONL log.")],
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many final lines to print.")] = 20,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Then print lines as they are appended.")] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between polls with --follow.")] = 0.5,
    max_wait: Annotated[
        float,
        typer.Option("--max-wait", help="With --follow, stop after this many seconds without a new line (0: never)."),
    ] = 300.0,
) -> None:
    """Print the last lines of a log (read from the end); --follow keeps going across truncation and rotation."""
    try:
        tail, offset = last_lines(log, lines, complete=follow)
        for line in tail:
            typer.echo(line)
        if follow:
            sys.stdout.flush()

            def emit(line: str) -> None:
                typer.echo(line)
                sys.stdout.flush()

            result = follow_log(log, emit, offset=offset, interval=interval, max_wait=max_wait, note=stderr_line)
            stderr_line(f"stopped following {log}: {result.stopped}")
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


@app.command("validate")
def log_validate_cmd(
    log: Annotated[Path, typer.Argument(metavar="PATH", help="A JSONL log.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object: counts, problems, warnings.")] = False,
) -> None:
    """Check each line: telemetry records against the telemetry schema, episode records (an `episode`
    key) for types, finite numbers and increasing episodes; exit 1 naming each problem (FILE:LINE)."""

    report = validate_log(log)
    if as_json:
        typer.echo(
            canonical_json(
                {
                    "log": str(log),
                    "ok": not report.problems,
                    "telemetry_records": report.telemetry,
                    "episode_records": report.episodes,
                    "bc_records": report.bc,
                    "problems": report.problems,
                    "warnings": report.warnings,
                }
            ),
            nl=False,
        )
        if report.problems:
            raise typer.Exit(1)
        return
    for warning in report.warnings:
        stderr_line(f"warning: {warning}")
    if report.problems:
        raise problems_exit(report.problems, log)
    typer.echo(
        f"ok: {log}: {report.records} records valid "
        f"({report.telemetry} telemetry, {report.bc} bc, {report.episodes} episode)"
    )
