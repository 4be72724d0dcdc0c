"""`townlet sim`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from townlet.cli.common import CHUNK, report, resolve_policy
from townlet.errors import TownletError
from townlet.paths import check_output
from townlet.sim.config import load_config
from townlet.sim.simulation import Simulation

app = typer.Typer(help="Run the world simulation.", no_args_is_help=True)


@app.command("run")
def sim_run(
    config: Annotated[Path, typer.Option("--config", "-c", help="Config YAML file.")],
    tick_limit: Annotated[
        int | None, typer.Option("--tick-limit", min=0, help="Ticks to run (default: the scenario's, else one day).")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="Override the config's seed.")] = None,
    save_snapshot: Annotated[Path | None, typer.Option("--save-snapshot", help="Write a snapshot at the end.")] = None,
    load_snapshot: Annotated[
        Path | None, typer.Option("--load-snapshot", help="Continue from a snapshot taken with this config.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    policy: Annotated[
        str, typer.Option("--policy", help="'scripted' (the expert) or a policy checkpoint path.")
    ] = "scripted",
) -> None:
    """Run the town under the scripted expert (or a trained policy) and report KPIs."""
    if save_snapshot is not None:
        check_output(save_snapshot, "--save-snapshot")
    cfg = load_config(config, seed=seed)
    sim = Simulation.load_snapshot(load_snapshot, cfg) if load_snapshot else Simulation(cfg)
    pol, _ = resolve_policy(policy, cfg.seed)
    if pol is not None:
        pol.check(sim.observation_metadata())
    ticks = tick_limit if tick_limit is not None else (cfg.scenario_ticks or sim.town.ticks_per_day)
    if not (as_json or quiet) and sys.stdout.isatty() and ticks >= CHUNK:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,}/{task.total:,} ticks"),
            TimeRemainingColumn(),
            transient=True,
        ) as progress:
            task = progress.add_task(cfg.config_id, total=ticks)
            summary = sim.run_for(
                ticks, pol, chunk=CHUNK, on_progress=lambda done: progress.update(task, completed=done)
            )
    else:
        summary = sim.run_for(ticks, pol)
    if save_snapshot is not None:
        sim.save_snapshot(save_snapshot)
    summary["snapshot"] = str(save_snapshot) if save_snapshot else None
    if as_json:
        typer.echo(json.dumps(summary, sort_keys=True))
        return
    kpis = sim.kpis()
    console = Console()
    table = Table(title=f"{cfg.config_id} — {ticks:,} ticks, {sim.town.n_agents} agents", show_header=True)
    table.add_column("KPI")
    table.add_column("value", justify="right")
    table.add_row("self-sufficiency (all needs > 0.3)", f"{kpis['self_sufficiency']:.1%}")
    table.add_row("on-time rate", f"{kpis['on_time_rate']:.1%} of {int(kpis['shifts_scheduled'])} shifts")
    table.add_row("relationship coverage", f"{kpis['relationship_coverage']:.1%}")
    table.add_row("faints", str(int(kpis["faints"])))
    table.add_row("evictions", str(int(kpis["evictions"])))
    table.add_row("queue conflicts", str(int(kpis["queue_conflicts"])))
    table.add_row("chats (ok / failed)", f"{int(kpis['chat_success'])} / {int(kpis['chat_failure'])}")
    table.add_row("shared meals", str(int(kpis["shared_meals"])))
    table.add_row("agent steps / s", f"{summary['agent_steps_per_sec']:,.0f}")
    console.print(table)
    console.print(f"world hash [bold]{summary['world_hash'][:16]}[/] at tick {sim.tick}", highlight=False)
    if save_snapshot:
        console.print(f"snapshot written to {save_snapshot}", highlight=False)


def validate(configs: Annotated[list[Path], typer.Argument(help="Config files to check.")]) -> None:
    """Validate config files; print one line per file."""
    failed = False
    for path in configs:
        try:
            cfg = load_config(path)
        except TownletError as exc:
            report(exc)
            failed = True
            continue
        typer.echo(f"ok: {path} ({cfg.config_id}, {len(cfg.world['agents'])} agents)")
    if failed:
        raise typer.Exit(2)
