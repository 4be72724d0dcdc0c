"""`townlet registry`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from townlet.artifacts.registry import (
    check_registry,
    checkpoint_dirs,
    diff_side,
    fmt_registry,
    key_path_diff,
    lookup,
    read_registry,
    register,
)
from townlet.cli.common import RegistryOpt, print_diff, problems_exit, registry_path
from townlet.jsonio import canonical_json

app = typer.Typer(help="The config registry: register, look up, diff and check configs.", no_args_is_help=True)


@app.command("register")
def registry_register_cmd(
    config: Annotated[Path, typer.Argument(help="Config YAML file (validated by the loader).")],
    label: Annotated[str, typer.Option("--label", "-l", help="Human-readable name.")],
    notes: Annotated[str, typer.Option("--notes", help="Free text.")] = "",
    relabel: Annotated[bool, typer.Option("--relabel", help="Change the label of a registered config.")] = False,
    registry: RegistryOpt = None,
) -> None:
    """Register a config under a label, keyed by the SHA-256 of its canonical resolved form."""
    reg = registry_path(registry)
    done = register(reg, config, label, notes=notes, relabel=relabel)
    entry = done.entry
    verb = {"new": "registered", "unchanged": "already registered", "relabelled": "relabelled"}[done.status]
    typer.echo(f"{verb}: {entry['sha256']} {entry['label']!r} ({entry['path']}) in {reg}")


@app.command("lookup")
def registry_lookup_cmd(
    sha: Annotated[str, typer.Argument(metavar="HASH", help="A SHA-256 or a unique prefix (>= 4 hex digits).")],
    as_json: Annotated[bool, typer.Option("--json", help="The whole entry, resolved config included.")] = False,
    registry: RegistryOpt = None,
) -> None:
    """Find a registered config by hash or unique prefix (exit 1 when none matches)."""
    entry = lookup(registry_path(registry), sha)
    if as_json:
        typer.echo(canonical_json(entry), nl=False)
        return
    typer.echo(f"sha256:     {entry['sha256']}")
    typer.echo(f"label:      {entry['label']}")
    typer.echo(f"path:       {entry['path']}")
    typer.echo(f"registered: {entry['registered_utc']}")
    if entry.get("notes"):
        typer.echo(f"notes:      {entry['notes']}")
    for prev in entry.get("previous_labels", []):
        typer.echo(f"was:        {prev['label']} (until {prev['until_utc']})")
    config = entry.get("config")
    for phase, folder in checkpoint_dirs(config if isinstance(config, dict) else {}).items():
        here = Path(folder)
        count = sum(1 for p in here.glob("*.json")) if here.is_dir() else 0
        typer.echo(f"{phase} checkpoints: {folder}" + (f" ({count} here)" if count else " (none here)"))


@app.command("diff")
def registry_diff_cmd(
    a: Annotated[str, typer.Argument(help="A config file, or a registered hash (prefix).")],
    b: Annotated[str, typer.Argument(help="A config file, or a registered hash (prefix).")],
    registry: RegistryOpt = None,
) -> None:
    """Key-path differences between two loaded configs; exit 1 when they differ, 0 when equal."""
    reg = registry_path(registry)
    left, right = diff_side(a, reg), diff_side(b, reg)
    changes = key_path_diff(left.config, right.config)
    if not changes:
        typer.echo(f"equal: {left.name} and {right.name} (sha256 {left.sha256})")
        return
    raise print_diff(f"{left.name} (sha256 {left.sha256[:12]})", f"{right.name} (sha256 {right.sha256[:12]})", changes)


@app.command("list")
def registry_list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array (resolved configs left out).")] = False,
    registry: RegistryOpt = None,
) -> None:
    """Every registered config: hash prefix, label, path, registration time."""
    reg = registry_path(registry)
    doc = read_registry(reg)
    entries = sorted(doc["entries"].values(), key=lambda e: (str(e.get("registered_utc")), str(e.get("sha256"))))
    if as_json:
        typer.echo(canonical_json([{k: v for k, v in e.items() if k != "config"} for e in entries]), nl=False)
        return
    if not entries:
        typer.echo(f"no configs registered in {reg}")
        return
    for e in entries:
        typer.echo(f"{str(e.get('sha256'))[:12]}  {e.get('registered_utc')}  {e.get('label')}  ({e.get('path')})")


@app.command("validate")
def registry_validate_cmd(registry: RegistryOpt = None) -> None:
    """Check the registry: canonical form (sorted keys, 2-space indent, final newline), entry fields,
    and that every entry's hash matches its stored config; exit 1 naming each problem."""

    reg = registry_path(registry)
    problems = check_registry(reg)
    if problems:
        raise problems_exit(problems, reg)
    typer.echo(f"ok: {reg}: canonical, {len(read_registry(reg)['entries'])} entries")


@app.command("fmt")
def registry_fmt_cmd(registry: RegistryOpt = None) -> None:
    """Rewrite the registry in canonical form (atomically)."""
    reg = registry_path(registry)
    changed = fmt_registry(reg)
    typer.echo(f"{'reformatted' if changed else 'already canonical'}: {reg}")
