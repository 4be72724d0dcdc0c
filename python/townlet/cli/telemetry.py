"""`townlet telemetry`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from townlet.cli.common import stderr_line
from townlet.errors import UsageError
from townlet.jsonio import canonical_json
from townlet.telemetry.tools import (
    Breach,
    LogLine,
    Thresholds,
    fmt_num,
    iter_records,
    load_baseline,
    normalise,
    read_records_strict,
    render_markdown,
    render_text,
    summarise,
    text_line,
    validate_log,
    watch_log,
    write_plot,
)

app = typer.Typer(help="Validate, watch and summarise PPO telemetry logs.", no_args_is_help=True)


@app.command("validate")
def telemetry_validate_cmd(
    log: Annotated[Path, typer.Argument(help="PPO telemetry JSONL.")],
    relative: Annotated[bool, typer.Option("--relative", help="Add percentages to the drift report.")] = False,
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
    for problem in report.problems:
        stderr_line(f"error: {problem}")
    for failure in report.drift_failures:
        stderr_line(f"error: {failure}")
    if not report.ok:
        raise typer.Exit(1)
    epochs = [e for e in report.epochs if e is not None]
    span = f", epochs {fmt_num(epochs[0])}-{fmt_num(epochs[-1])}" if epochs else ""
    typer.echo(
        f"ok: {log}: {report.records} records valid (telemetry_version {', '.join(report.versions)}{span})"
        + (" within the drift threshold" if drift_threshold is not None else "")
    )


@app.command("watch")
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
    kl_threshold: Annotated[float | None, typer.Option("--kl-threshold", help="Max kl_divergence.")] = None,
    loss_threshold: Annotated[float | None, typer.Option("--loss-threshold", help="Max loss_total.")] = None,
    grad_threshold: Annotated[float | None, typer.Option("--grad-threshold", help="Max grad_norm.")] = None,
    entropy_threshold: Annotated[
        float | None, typer.Option("--entropy-threshold", help="Min batch_entropy_mean.")
    ] = None,
    reward_corr_threshold: Annotated[
        float | None, typer.Option("--reward-corr-threshold", help="Min reward_advantage_corr.")
    ] = None,
    queue_events_min: Annotated[
        float | None, typer.Option("--queue-events-min", help="Min queue_conflict_events (rollout/mixed records).")
    ] = None,
    queue_intensity_min: Annotated[
        float | None,
        typer.Option("--queue-intensity-min", help="Min queue_conflict_intensity_sum (rollout/mixed records)."),
    ] = None,
    shared_meal_min: Annotated[
        float | None, typer.Option("--shared-meal-min", help="Min shared_meal_events (rollout/mixed).")
    ] = None,
    late_help_min: Annotated[
        float | None, typer.Option("--late-help-min", help="Min late_help_events (rollout/mixed).")
    ] = None,
    shift_takeover_max: Annotated[
        float | None, typer.Option("--shift-takeover-max", help="Max shift_takeover_events (rollout/mixed).")
    ] = None,
    chat_quality_min: Annotated[
        float | None, typer.Option("--chat-quality-min", help="Min chat_quality_mean (rollout/mixed).")
    ] = None,
    utility_outage_max: Annotated[
        float | None, typer.Option("--utility-outage-max", help="Max utility_outage_events (rollout/mixed).")
    ] = None,
    shower_complete_min: Annotated[
        float | None, typer.Option("--shower-complete-min", help="Min shower_complete_events (rollout/mixed).")
    ] = None,
    sleep_complete_min: Annotated[
        float | None, typer.Option("--sleep-complete-min", help="Min sleep_complete_events (rollout/mixed).")
    ] = None,
    anneal_bc_min: Annotated[
        float, typer.Option("--anneal-bc-min", help="Min anneal_bc_accuracy on anneal records.")
    ] = 0.9,
    anneal_loss_max: Annotated[
        float,
        typer.Option("--anneal-loss-max", help="Max |loss_total - anneal_loss_baseline| / baseline on anneal records."),
    ] = 0.1,
    anneal_queue_min: Annotated[
        float | None,
        typer.Option(
            "--anneal-queue-min", help="Min queue_conflict_events on anneal records (default 0.85 x baseline)."
        ),
    ] = None,
    anneal_intensity_min: Annotated[
        float | None,
        typer.Option(
            "--anneal-intensity-min",
            help="Min queue_conflict_intensity_sum on anneal records (default 0.85 x baseline).",
        ),
    ] = None,
) -> None:
    """Check thresholds on every record (tail with --follow); exit 1 at the first breach."""

    thresholds = Thresholds(
        kl_threshold=kl_threshold,
        loss_threshold=loss_threshold,
        grad_threshold=grad_threshold,
        entropy_threshold=entropy_threshold,
        reward_corr_threshold=reward_corr_threshold,
        queue_events_min=queue_events_min,
        queue_intensity_min=queue_intensity_min,
        shared_meal_min=shared_meal_min,
        late_help_min=late_help_min,
        shift_takeover_max=shift_takeover_max,
        chat_quality_min=chat_quality_min,
        utility_outage_max=utility_outage_max,
        shower_complete_min=shower_complete_min,
        sleep_complete_min=sleep_complete_min,
        anneal_bc_min=anneal_bc_min,
        anneal_loss_max=anneal_loss_max,
        anneal_queue_min=anneal_queue_min,
        anneal_intensity_min=anneal_intensity_min,
    )

    def emit(ln: LogLine, breaches: list[Breach]) -> None:
        typer.echo(canonical_json(normalise(ln, breaches), indent=None) if as_json else text_line(ln, breaches))

    result = watch_log(
        log,
        thresholds,
        emit=emit,
        follow=follow,
        interval=interval,
        max_wait=max_wait,
        include_rotated=include_rotated,
    )
    if result.breach is not None:
        stderr_line(f"breach: {result.breach.message}")
        raise typer.Exit(1)
    span = f", epochs {fmt_num(result.first_epoch)}-{fmt_num(result.last_epoch)}" if result.records else ""
    summary = (
        f"ok: {log}: {result.records} records{span}, no breaches of {len(thresholds.active())} thresholds "
        f"({result.stopped})"
    )
    if as_json:
        stderr_line(summary)
    else:
        typer.echo(summary)


@app.command("summary")
def telemetry_summary_cmd(
    log: Annotated[Path, typer.Argument(help="PPO telemetry JSONL.")],
    fmt: Annotated[str, typer.Option("--format", help="text | markdown | json.")] = "text",
    baseline: Annotated[
        Path | None, typer.Option("--baseline", help="Compare the latest record with this baseline log or object.")
    ] = None,
    last: Annotated[int | None, typer.Option("--last", help="Only the last N records.")] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write a PNG chart (loss_total, approx_kl, episode_return_mean).")
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
    base = load_baseline(baseline) if baseline is not None else None
    lines = read_records_strict(log, include_rotated=include_rotated)
    summary = summarise(lines, log=log, last=last, baseline=base)
    if plot is not None:
        write_plot(list(iter_records(lines[-last:] if last else lines)), plot)
    if plot is not None:
        summary["plot"] = str(plot)
    if fmt == "json":
        typer.echo(canonical_json(summary), nl=False)
    elif fmt == "markdown":
        typer.echo(render_markdown(summary) + (f"\n![telemetry]({plot})\n" if plot else ""), nl=False)
    else:
        typer.echo(render_text(summary) + (f"plot written to {plot}\n" if plot else ""), nl=False)
