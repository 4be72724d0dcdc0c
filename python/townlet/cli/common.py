"""Shared pieces of the command line: the error console, one-line errors, common options."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from townlet.artifacts.registry import Change, default_registry
from townlet.errors import TownletError, UsageError

err_console = Console(stderr=True)

#: Ticks stepped per native call when a progress display is shown.
CHUNK = 1440


def report(exc: TownletError) -> None:
    """Print a user error as one line on stderr."""
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)


def stderr_line(text: str) -> None:
    err_console.print(text, highlight=False, markup=False, soft_wrap=True)


def strict_bool(raw: str, name: str) -> bool:
    """1/true/yes/on -> True; 0/false/no/off/empty -> False; anything else is a usage error."""
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise UsageError(f"{name}={raw!r}: expected 1/true/yes/on or 0/false/no/off")


def resolve_policy(policy: str, seed: int = 0) -> tuple[Any, str]:
    """`scripted` (the expert, no value function) or a policy checkpoint path."""
    if policy == "scripted":
        return None, "scripted"
    # torch takes about a second to import: only a command given a checkpoint pays for it.
    from townlet.training.policy import CheckpointPolicy

    loaded = CheckpointPolicy(Path(policy), seed=seed)
    return loaded, loaded.name


RegistryOpt = Annotated[
    Path | None,
    typer.Option("--registry", help="Config registry file (default: configs/config_registry.json of the repo)."),
]


def registry_path(path: Path | None) -> Path:
    return path if path is not None else default_registry()


def print_diff(left: str, right: str, changes: Sequence[Change]) -> typer.Exit:
    """Key-path differences as `---`/`+++` headers, one line per change and a count; return Exit(1) to raise."""
    typer.echo(f"--- {left}")
    typer.echo(f"+++ {right}")
    for change in changes:
        typer.echo(change.render())
    typer.echo(f"{len(changes)} differences")
    return typer.Exit(1)


def problems_exit(problems: list[str], where: object) -> typer.Exit:
    """Print each problem on stderr, then a count; return Exit(1) to raise."""
    for problem in problems:
        stderr_line(f"error: {problem}")
    stderr_line(f"{where}: {len(problems)} problem{'' if len(problems) == 1 else 's'}")
    return typer.Exit(1)
