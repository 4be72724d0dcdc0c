"""`townlet sim`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from townlet.artifacts.registry import repo_root
from townlet.cli.common import CHUNK, report, resolve_policy, stderr_line
from townlet.errors import TownletError, UsageError
from townlet.paths import check_output
from townlet.sim.config import load_config
from townlet.sim.simulation import Simulation

app = typer.Typer(help="Run the world simulation.", no_args_is_help=True)

#: The town run when no --config is given.
DEFAULT_CONFIG = Path("configs/examples/poc_hybrid.yaml")

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help=f"Config YAML file (default: {DEFAULT_CONFIG}).")
]


def default_config(config: Path | None) -> Path:
    """`config`, else the default town of the repository around the working directory."""
    if config is not None:
        return config
    root = repo_root()
    return root / DEFAULT_CONFIG if root is not None else DEFAULT_CONFIG


#: `sim run --help` (and `run_simulation.py --help`) names the serving form, whose options live on `sim serve`.
SERVE_EPILOG = (
    "Serve the town live instead (HTTP API, stream, dashboard at /): townlet sim serve, or run_simulation.py "
    "--serve HOST:PORT [--tokens FILE | --tokens-env VAR | --allow-anonymous-viewer] [--tick-rate HZ] "
    "[--tick-limit N] [--policy CKPT] [--audit-log F] [--snapshot-root DIR] [--load-snapshot F]; "
    "'run_simulation.py --serve X --help' (townlet sim serve --help) explains each. docs/OPS_HANDBOOK.md"
)


@app.command("run", epilog=SERVE_EPILOG)
def sim_run(
    config: ConfigOpt = None,
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
    cfg = load_config(default_config(config), seed=seed)
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


@app.command("serve")
def sim_serve(
    config: ConfigOpt = None,
    listen: Annotated[
        str, typer.Option("--serve", "--listen", help="HOST:PORT to serve the HTTP API on (port 0: any free port).")
    ] = "127.0.0.1:8765",
    tokens: Annotated[
        Path | None,
        typer.Option("--tokens", help='Tokens file: JSON [{"token", "role": "viewer"|"admin", "label"}].'),
    ] = None,
    tokens_env: Annotated[
        str | None, typer.Option("--tokens-env", help="Read the tokens JSON from this environment variable instead.")
    ] = None,
    anonymous: Annotated[
        bool, typer.Option("--allow-anonymous-viewer", help="Requests without a token act as a viewer.")
    ] = False,
    tick_rate: Annotated[
        float | None, typer.Option("--tick-rate", min=0.001, help="Ticks per second (default: as fast as it goes).")
    ] = None,
    tick_limit: Annotated[
        int | None, typer.Option("--tick-limit", min=0, help="Stop after this many ticks (default: run until stopped).")
    ] = None,
    policy: Annotated[
        str,
        typer.Option(
            "--policy",
            help="'scripted' (the expert), 'release' (the release recorded in ops.promotion.release_dir/release.json "
            "by the last promotion or swap; the expert when none) or a policy checkpoint path.",
        ),
    ] = "scripted",
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="Override the config's seed.")] = None,
    audit_log: Annotated[
        Path | None, typer.Option("--audit-log", help="Audit log (default: logs/console/commands.jsonl).")
    ] = None,
    snapshot_root: Annotated[
        Path, typer.Option("--snapshot-root", help="Folder snapshot_save/inspect/validate paths stay inside.")
    ] = Path("snapshots"),
    load_snapshot: Annotated[
        Path | None, typer.Option("--load-snapshot", help="Continue from a shard snapshot (snapshot_save).")
    ] = None,
) -> None:
    """Run a live shard with its HTTP API (POST /v1/commands, GET /v1/snapshot, /metrics, WS /v1/stream, /docs).

    Prints one line with the URL once it is listening; stops on Ctrl-C / SIGTERM or after --tick-limit ticks."""
    try:
        from townlet.ops.audit import DEFAULT_AUDIT_PATH
        from townlet.ops.auth import TokenStore
        from townlet.ops.server import parse_listen, serve
        from townlet.ops.shard import Shard
    except ImportError as exc:
        raise UsageError(f"serving needs the ops extra: pip install 'townlet[ops]' ({exc})") from None

    host, port = parse_listen(listen)
    if tokens is not None and tokens_env is not None:
        raise UsageError("give --tokens or --tokens-env, not both")
    if tokens is not None:
        store = TokenStore.from_file(tokens, allow_anonymous_viewer=anonymous)
    elif tokens_env is not None:
        store = TokenStore.from_env(tokens_env, allow_anonymous_viewer=anonymous)
    elif anonymous:
        store = TokenStore([], allow_anonymous_viewer=True)
    else:
        raise UsageError("--tokens FILE (or --tokens-env VAR, or --allow-anonymous-viewer) is required to serve")
    cfg = load_config(default_config(config), seed=seed)
    if policy == "release":
        from townlet.ops.promotion_policy import recorded_release

        policy = recorded_release(Path(cfg.sections.ops.promotion.release_dir)) or "scripted"
    kwargs: dict[str, Any] = {
        "tokens": store,
        "policy": None if policy == "scripted" else policy,
        "audit_path": audit_log if audit_log is not None else DEFAULT_AUDIT_PATH,
        "snapshot_root": snapshot_root,
        "allow_anonymous_viewer": anonymous,
    }
    shard = Shard.from_snapshot(load_snapshot, cfg, **kwargs) if load_snapshot else Shard(cfg, **kwargs)
    for role, said in shard.world.memory_restored.items():  # a memory policy: its memory as kept, or fresh and why
        stderr_line(f"{load_snapshot}: {role} policy memory {said}")
    rate = f"{tick_rate:g} ticks/s" if tick_rate else "unthrottled"

    def listening(url: str) -> None:
        typer.echo(f"serving {cfg.config_id} on {url} ({rate}, tick {shard.tick}); Ctrl-C stops")

    try:
        done = serve(shard, host, port, tick_limit=tick_limit, tick_rate=tick_rate, on_listening=listening)
    finally:
        shard.close()
    stderr_line(f"stopped at tick {done.ticks} ({done.reason})")
