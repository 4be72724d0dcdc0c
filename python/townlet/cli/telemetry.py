"""`townlet telemetry`."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated

import typer

from townlet.cli.common import stderr_line
from townlet.errors import UsageError
from townlet.jsonio import canonical_json
from townlet.paths import check_output
from townlet.telemetry.drift import load_baseline
from townlet.telemetry.plots import expert_return, write_plot
from townlet.telemetry.reader import LogLine, read_records_strict
from townlet.telemetry.summary import render_markdown, render_text, summarise
from townlet.telemetry.thresholds import SPECS, Thresholds
from townlet.telemetry.validate import validate_log
from townlet.telemetry.values import fmt_num
from townlet.telemetry.watch import Breach, normalise, text_line, watch_log

app = typer.Typer(help="Validate, watch and summarise PPO telemetry logs.", no_args_is_help=True)


@app.command("validate")
def telemetry_validate_cmd(
    log: Annotated[Path, typer.Argument(help="PPO telemetry JSONL.")],
    relative: Annotated[
        bool,
        typer.Option("--relative", help="Add percentages to the drift report (alone: drift from the first record)."),
    ] = False,
    baseline: Annotated[
        Path | None, typer.Option("--baseline", help="Baseline: a telemetry JSONL (matched by epoch) or one object.")
    ] = None,
    drift_threshold: Annotated[
        float | None,
        typer.Option("--drift-threshold", help="Fail when any |relative drift| exceeds this fraction (0.1 = 10%)."),
    ] = None,
    include_rotated: Annotated[
        bool, typer.Option("--include-rotated", help="Also read LOG.N ... LOG.1 (oldest first).")
    ] = False,
) -> None:
    """Check every record's schema (FILE:LINE per problem, exit 1) and report baseline drift."""
    report = validate_log(
        log,
        baseline=baseline,
        relative=relative,
        drift_threshold=drift_threshold,
        include_rotated=include_rotated,
    )
    for line in report.drift_lines:
        typer.echo(line)
    for problem in [*report.problems, *report.drift_failures]:
        stderr_line(f"error: {problem}")
    if not report.ok:
        raise typer.Exit(1)
    epochs = [e for e in report.epochs if e is not None]
    span = f", epochs {fmt_num(epochs[0])}-{fmt_num(epochs[-1])}" if epochs else ""
    typer.echo(
        f"ok: {log}: {report.records} records valid (telemetry_version {', '.join(report.versions)}{span})"
        + (" within the drift threshold" if drift_threshold is not None else "")
    )


def telemetry_watch_cmd(
    log: Annotated[Path, typer.Argument(help="PPO telemetry JSONL.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep reading new lines (across rotation).")] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between polls with --follow.")] = 2.0,
    max_wait: Annotated[
        float, typer.Option("--max-wait", help="With --follow, stop after this many seconds without new data.")
    ] = 30.0,
    as_json: Annotated[bool, typer.Option("--json", help="One normalised JSON record per line.")] = False,
    include_rotated: Annotated[
        bool, typer.Option("--include-rotated", help="First read LOG.N ... LOG.1 (oldest first).")
    ] = False,
    **limits: float | None,
) -> None:
    """Check thresholds on every record (tail with --follow); exit 1 at the first breach (an anneal breach:
    3 HOLD for loss or queue drift, 4 FAIL for BC accuracy)."""
    thresholds = Thresholds(**limits)

    def emit(ln: LogLine, breaches: list[Breach]) -> None:
        typer.echo(canonical_json(normalise(ln, breaches), indent=None) if as_json else text_line(ln, breaches))

    result = watch_log(
        log, thresholds, emit=emit, follow=follow, interval=interval, max_wait=max_wait, include_rotated=include_rotated
    )
    if result.breach is not None:
        verdict = f" (anneal {result.breach.verdict})" if result.breach.verdict else ""
        stderr_line(f"breach: {result.breach.message}{verdict}")
        raise typer.Exit(result.breach.exit_code)
    span = f", epochs {fmt_num(result.first_epoch)}-{fmt_num(result.last_epoch)}" if result.records else ""
    summary = (
        f"ok: {log}: {result.records} records{span}, no breaches of {len(thresholds.active())} thresholds "
        f"({result.stopped})"
    )
    if as_json:
        stderr_line(summary)
    else:
        typer.echo(summary)


def _threshold_options() -> list[inspect.Parameter]:
    """One `--flag` option per `Thresholds` field, with the field's flag, default and help."""
    return [
        inspect.Parameter(
            spec.attr,
            inspect.Parameter.KEYWORD_ONLY,
            default=spec.default,
            annotation=Annotated[
                float if spec.default is not None else float | None, typer.Option(spec.flag, help=spec.help)
            ],
        )
        for spec in SPECS
    ]


# Typer reads the options off the signature: replace `**limits` with the thresholds' own options.
_watch_params = list(inspect.signature(telemetry_watch_cmd, eval_str=True).parameters.values())[:-1]
telemetry_watch_cmd.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [*_watch_params, *_threshold_options()], return_annotation=None
)
app.command("watch")(telemetry_watch_cmd)


@app.command("summary")
def telemetry_summary_cmd(
    log: Annotated[Path, typer.Argument(help="PPO telemetry JSONL.")],
    fmt: Annotated[str, typer.Option("--format", help="text | markdown | json.")] = "text",
    baseline: Annotated[
        Path | None, typer.Option("--baseline", help="Compare the latest record with this baseline log or object.")
    ] = None,
    last: Annotated[int | None, typer.Option("--last", help="Only the last N records.")] = None,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Write a PNG chart (episode return, losses, KL divergence, entropy per epoch)."),
    ] = None,
    include_rotated: Annotated[
        bool, typer.Option("--include-rotated", help="Also read LOG.N ... LOG.1 (oldest first).")
    ] = False,
) -> None:
    """Summarise a run: latest values, extremes, anneal status, baseline drift; optionally a PNG chart."""
    if fmt not in ("text", "markdown", "json"):
        raise UsageError(f"--format must be text, markdown or json, got {fmt!r}")
    if last is not None and last < 1:
        raise UsageError(f"--last must be >= 1, got {last}")
    if plot is not None:
        check_output(plot, "--plot")
    base = load_baseline(baseline) if baseline is not None else None
    lines = read_records_strict(log, include_rotated=include_rotated)
    summary = summarise(lines, log=log, last=last, baseline=base)
    if plot is not None:
        records = [ln.record for ln in (lines[-last:] if last else lines)]
        write_plot(records, plot, expert=expert_return(records, base), title=f"PPO telemetry: {log.name}")
        summary["plot"] = str(plot)
    if fmt == "json":
        typer.echo(canonical_json(summary), nl=False)
    elif fmt == "markdown":
        typer.echo(render_markdown(summary) + (f"\n![telemetry]({plot})\n" if plot else ""), nl=False)
    else:
        typer.echo(render_text(summary) + (f"plot written to {plot}\n" if plot else ""), nl=False)
