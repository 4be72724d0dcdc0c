"""`townlet eval`: a trained policy against the scripted expert and a random policy, on the same towns and seeds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from townlet.errors import UsageError
from townlet.paths import check_output
from townlet.sim.config import load_config
from townlet.telemetry.reader import read_records_strict

if TYPE_CHECKING:
    from townlet.training.evaluate import Actor, EvalReport


#: The baselines `--against` may name (checked before torch is imported).
BASELINES = ("expert", "random")


def _against(raw: str) -> list[str]:
    names = [n.strip() for n in raw.split(",") if n.strip()]
    for name in names:
        if name not in BASELINES:
            raise UsageError(f"--against: unknown policy {name!r} (choose from {', '.join(BASELINES)})")
    if len(set(names)) != len(names):
        raise UsageError(f"--against {raw!r}: a policy is named twice")
    return names


def _at_least_one(value: int, option: str) -> int:
    if value < 1:
        raise UsageError(f"{option} must be >= 1, got {value}")
    return value


def eval_cmd(
    config: Annotated[Path, typer.Argument(help="Config YAML file (the towns to evaluate on).")],
    policy: Annotated[Path, typer.Option("--policy", help="The trained policy's checkpoint.")],
    against: Annotated[
        str, typer.Option("--against", help="Comma-separated baselines: expert, random (empty: none).")
    ] = "expert,random",
    seeds: Annotated[int, typer.Option("--seeds", help="Evaluation seeds (10000, 10001, ...).")] = 3,
    ticks: Annotated[int, typer.Option("--ticks", help="Episode length in ticks (one day: 1440).")] = 1440,
    towns: Annotated[int, typer.Option("--towns", help="Towns per seed.")] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
    report_dir: Annotated[
        Path | None,
        typer.Option("--report", help="Also write report.md, kpis.png (and learning_curve.png) into this folder."),
    ] = None,
    telemetry: Annotated[
        Path | None, typer.Option("--telemetry", help="The run's telemetry JSONL: the report's learning curve.")
    ] = None,
) -> None:
    """Evaluate a checkpoint (greedy) against the scripted expert and a uniformly random masked policy."""
    names = _against(against)
    _at_least_one(seeds, "--seeds")
    _at_least_one(ticks, "--ticks")
    _at_least_one(towns, "--towns")
    if telemetry is not None and report_dir is None:
        raise UsageError("--telemetry draws the report's learning curve: give --report DIR too")
    if report_dir is not None:
        check_output(report_dir, "--report", folder=True)
    cfg = load_config(config)
    records = [ln.record for ln in read_records_strict(telemetry)] if telemetry is not None else None
    # torch takes about a second to import: only an evaluation pays for it, not --help or the other verbs.
    from townlet.training.evaluate import checkpoint_actor, evaluate, expert_actor, random_actor
    from townlet.training.report import ReportInputs, table_rows, write_report

    trained = checkpoint_actor(policy, config=cfg)
    baselines: dict[str, Actor] = {"expert": expert_actor(), "random": random_actor(0)}
    policies: dict[str, Actor] = {"trained": trained, **{n: baselines[n] for n in names}}
    result = evaluate(cfg, policies, seeds=seeds, ticks=ticks, num_towns=towns)
    written = None
    if report_dir is not None:
        header = trained.checkpoint.header
        counters = header.get("counters") or {}
        facts = [(k, f"{v:,}") for k, v in counters.items() if isinstance(v, int)]
        inputs = ReportInputs(cfg.config_id, str(config), str(policy), facts=facts, records=records)
        written = write_report(report_dir, result, inputs)
    if as_json:
        typer.echo(json.dumps(result.policies_json(), sort_keys=False))
        return
    _print_table(result, title=f"{cfg.config_id}: {policy.name}", rows=table_rows(result))
    if written is not None:
        typer.echo(f"report: {written}")


def _print_table(result: EvalReport, *, title: str, rows: list[list[Any]]) -> None:
    from townlet.training.report import COLUMNS, comparison, setup_line

    console = Console()
    caption = f"{setup_line(result)}; faints and evictions per town"
    table = Table(title=title, caption=caption, show_header=True)
    table.add_column("policy")
    for header, _, _ in COLUMNS:
        table.add_column(header, justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    line = comparison(result)
    if line is not None:
        console.print(line, highlight=False)
