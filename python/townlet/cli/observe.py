"""`townlet observe [CONFIG | --url URL]`: the terminal observer (Textual) over a town run in-process or a live
shard (`townlet sim serve`). Also `python tools/observer_ui.py`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from townlet.cli.common import stderr_line
from townlet.errors import UsageError


def observe_cmd(
    config: Annotated[
        Path | None,
        typer.Argument(
            metavar="CONFIG",
            help="Config YAML of the town to run in-process (default: the default town). Not with --url.",
        ),
    ] = None,
    url: Annotated[
        str | None, typer.Option("--url", help="Attach to a live shard (townlet sim serve) at http://HOST:PORT.")
    ] = None,
    refresh: Annotated[
        float, typer.Option("--refresh", min=0.05, help="Seconds between screen refreshes (snapshot reads).")
    ] = 0.5,
    ticks: Annotated[
        int | None,
        typer.Option("--ticks", min=1, help="Watch this many ticks, then stop (in-process: the town stops; q quits)."),
    ] = None,
    focus_agent: Annotated[
        str | None, typer.Option("--focus-agent", help="The agent selected at start (↑/↓ change it).")
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="The operator's token for --url (a file with the token; default $TOWNLET_TOKEN). A viewer token "
            "watches; approve/defer and admin palette commands need an admin token. In-process, the observer "
            "makes its own admin token.",
        ),
    ] = None,
    tick_rate: Annotated[
        float, typer.Option("--tick-rate", min=0.1, help="In-process: ticks per second the town runs at.")
    ] = 5.0,
    policy: Annotated[
        str, typer.Option("--policy", help="In-process: 'scripted' (the expert) or a policy checkpoint path.")
    ] = "scripted",
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="In-process: override the config's seed.")] = None,
    audit_log: Annotated[
        Path | None,
        typer.Option("--audit-log", help="In-process: the audit log (default: logs/console/commands.jsonl)."),
    ] = None,
) -> None:
    """Watch a town live in the terminal: the map (walls, objects, agents by initial, queues, outages), agent rows
    (need sparklines, wallet, shift, activity), KPIs against the charter targets, the employment exit queue
    (a: approve, d: defer, x: next request; sent through the command bus with a cmd_id), perturbations, a feed of
    events, narrations and command results, and a command palette (`:`) for any console command. Keyboard only
    (q quits); fits 100x30."""
    from townlet.ui.app import ObserverApp
    from townlet.ui.source import LocalSource, RemoteSource

    source: Any
    notice = None
    if url is not None:
        if config is not None:
            raise UsageError("give CONFIG (run a town in-process) or --url (attach to a shard), not both")
        from townlet.ops.client import read_token_file

        token = read_token_file(token_file) if token_file is not None else os.environ.get("TOWNLET_TOKEN") or None
        source = RemoteSource(url, token)
        notice = source.gate.warning
    else:
        if token_file is not None:
            raise UsageError("--token-file is for --url; in-process the observer makes its own operator token")
        from townlet.cli.sim import default_config
        from townlet.ops.audit import DEFAULT_AUDIT_PATH
        from townlet.sim.config import load_config

        cfg = load_config(default_config(config), seed=seed)
        source = LocalSource(
            cfg,
            audit_path=audit_log if audit_log is not None else DEFAULT_AUDIT_PATH,
            policy=None if policy == "scripted" else policy,
        )
    try:
        agents = source.snapshot().get("agents") or {}
        if focus_agent is not None and focus_agent not in agents:
            raise UsageError(f"--focus-agent {focus_agent!r}: no such agent (agents: {', '.join(agents)})")
        if isinstance(source, LocalSource):
            source.start(tick_rate=tick_rate, tick_limit=ticks)
        app = ObserverApp(source, refresh=refresh, ticks=ticks, focus_agent=focus_agent, notice=notice)
        app.run()
    finally:
        source.close()
    if isinstance(source, LocalSource) and source.failure is not None:
        raise source.failure
    stderr_line(f"observer stopped at tick {app.snap.get('tick', '?')}")
