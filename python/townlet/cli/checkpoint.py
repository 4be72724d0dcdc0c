"""`townlet checkpoint`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from townlet.artifacts.checkpoint_config import extract_config
from townlet.artifacts.checkpoint_tools import copy, info, list_dir, verify
from townlet.cli.common import RegistryOpt, problems_exit, registry_path
from townlet.jsonio import canonical_json

app = typer.Typer(help="List, inspect, copy and verify checkpoints; extract their configs.", no_args_is_help=True)


@app.command("list")
def checkpoint_list_cmd(
    folder: Annotated[
        Path,
        typer.Argument(help="Folder holding checkpoints, or logs/ (its <config_id>/<phase>/checkpoints/ folders)."),
    ] = Path("logs"),
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Also look in sub-folders.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array of rows.")] = False,
    registry: RegistryOpt = None,
) -> None:
    """One row per checkpoint: file, format, created, config id, phase, config label (or hash prefix), steps.
    Without --recursive it also looks in the default layout below FOLDER (logs/<config_id>/<phase>/checkpoints/)."""
    rows = list_dir(folder, registry_path(registry), recursive=recursive)
    if as_json:
        typer.echo(canonical_json(rows), nl=False)
        return
    if not rows:
        typer.echo(f"no checkpoints in {folder}")
        return
    table = Table(show_header=True, box=None, pad_edge=False)
    for col in ("file", "format", "created", "config id", "phase", "config", "steps", "note"):
        table.add_column(col, justify="right" if col == "steps" else "left", overflow="fold")
    for row in rows:
        sha = row.get("config_sha256")
        cfg = row.get("config_label") or (str(sha)[:12] if sha else "—")
        steps = (row.get("counters") or {}).get("steps")
        table.add_row(
            escape(row["file"]),
            row["format"],
            str(row.get("created_utc") or "—"),
            escape(str(row.get("config_id") or "—")),
            escape(_phase(row.get("metadata") or {})),
            escape(cfg),
            "—" if steps is None else f"{steps:,}",
            escape(row.get("problem", "")),
        )
    Console(width=max(Console().width, 120)).print(table, highlight=False)


@app.command("info")
def checkpoint_info_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="X.json or X.safetensors.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
    registry: RegistryOpt = None,
) -> None:
    """The header in brief, with the verification result (weights are checked, not printed)."""
    out = info(checkpoint, registry_path(registry))
    if as_json:
        typer.echo(canonical_json(out), nl=False)
        return
    git = out["git"] or {}
    counters = out["counters"] or {}
    lineage = out["lineage"] or {}
    arch = out["architecture"] or {}
    lines = [
        ("checkpoint", out["header"] + (f" (weights {out['weights']})" if out["weights"] else "")),
        ("format", f"{out['format']} (format_version {out['format_version']})"),
        ("policy", f"{out['policy_class']} ({arch.get('architecture')}, {out['parameters']:,} parameters)"),
        ("created", out["created_utc"]),
        ("config", f"{out['config_sha256']}" + (f" ({out['config_label']})" if out["config_label"] else "")),
        ("config id", out["config_id"]),
        ("config yaml", _yaml_line(out["config_yaml"])),
        ("fingerprint", out["fingerprint"]),
        ("seed", out["seed"]),
        ("counters", ", ".join(f"{k} {v:,}" for k, v in sorted(counters.items())) or "—"),
        ("git", f"{git.get('commit')}" + (" (dirty)" if git.get("dirty") else "")),
        ("parent", lineage.get("parent_sha256") or "—"),
        *([("warm start", _mapping_line(lineage["warm_start"]))] if lineage.get("warm_start") else []),
        ("weights sha256", out["weights_sha256"]),
        ("verified", "yes" if out["verified"] else f"NO: {len(out['problems'])} problems (run checkpoint verify)"),
    ]
    metadata = out["metadata"] or {}
    lines.append(("metadata", ", ".join(f"{k}={v}" for k, v in sorted(metadata.items())) or "—"))
    for key, value in lines:
        typer.echo(f"{key + ':':<16}{value}")


def _phase(metadata: dict[str, Any]) -> str:
    """The list's phase column: the phase, and a memory policy's architecture (`memory (gru)`)."""
    phase = str(metadata.get("phase") or "—")
    return f"{phase} ({metadata['arch']})" if metadata.get("arch") else phase


def _mapping_line(mapping: dict[str, Any]) -> str:
    """A memory checkpoint's warm-start mapping in brief: the source and which tensors it carried over."""

    def groups(names: list[str]) -> str:
        return ", ".join(dict.fromkeys(name.split(".")[0] for name in names)) or "none"

    carried, fresh = list(mapping.get("carried") or []), list(mapping.get("fresh") or [])
    line = (
        f"from {str(mapping.get('source_sha256'))[:12]} ({mapping.get('source_architecture')}): carried "
        f"{len(carried)} tensors ({groups(carried)}); fresh {len(fresh)} ({groups(fresh)})"
    )
    mismatched = mapping.get("mismatched") or []
    return line + (f"; {len(mismatched)} mismatched (allow_mismatch)" if mismatched else "")


def _yaml_line(brief: dict[str, Any] | None) -> str:
    if brief is None:
        return "— (predates raw-text embedding: extract-config --resolved)"
    includes = f"; includes {', '.join(brief['includes'])}" if brief["includes"] else ""
    return f"{brief['path']} (sha256 {brief['sha256']}{includes})"


@app.command("copy")
def checkpoint_copy_cmd(
    src: Annotated[Path, typer.Argument(help="Checkpoint to copy (X.json or X.safetensors).")],
    dest: Annotated[str, typer.Argument(help="Destination file, or folder (existing, or ending in /).")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing destination.")] = False,
) -> None:
    """Copy a checkpoint (weights and header together), atomically, and verify the copy."""
    target, check = copy(src, dest, overwrite=overwrite)
    shown = target.weights or target.header
    typer.echo(f"copied {src} -> {shown} (verified; weights sha256 {check.weights_sha256})")


@app.command("extract-config")
def checkpoint_extract_config_cmd(
    path: Annotated[Path, typer.Option("--path", "-p", help="The checkpoint.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Where to write the config (default: standard output).")
    ] = None,
    resolved: Annotated[
        bool, typer.Option("--resolved", help="The resolved config (includes inlined, run settings) instead.")
    ] = False,
    include: Annotated[
        str | None, typer.Option("--include", help="An included file's exact text, by key (e.g. affordances).")
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="yaml | json, for --resolved (json implies it; default: --output's).")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output file.")] = False,
) -> None:
    """The exact YAML the checkpoint was trained with, byte for byte (checked against its SHA-256); with
    --resolved, the resolved config (checked against config_sha256)."""
    out = extract_config(path, output, fmt=fmt, overwrite=overwrite, resolved=resolved, include=include)
    if output is None:
        sys.stdout.buffer.write(out.text.encode("utf-8"))
        sys.stdout.flush()
        return
    what = (
        f"the resolved config as {out.format.upper()} (config_sha256 {out.sha256})"
        if out.resolved
        else f"the exact YAML of {out.source} (sha256 {out.sha256})"
    )
    typer.echo(f"wrote {what} to {output}")
    if not out.resolved and include is None and out.includes:
        typer.echo(f"it includes {', '.join(out.includes)}: their exact texts are embedded too (--include KEY)")


@app.command("verify")
def checkpoint_verify_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="X.json or X.safetensors.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object: ok and problems.")] = False,
) -> None:
    """Check format, version, fields, shapes, weights SHA-256, config_sha256 and fingerprint; exit 1
    naming each problem."""
    files, check = verify(checkpoint)
    if as_json:
        typer.echo(
            canonical_json({"checkpoint": str(checkpoint), "ok": check.ok, "problems": check.problems}), nl=False
        )
        if not check.ok:
            raise typer.Exit(1)
        return
    if not check.ok:
        raise problems_exit(check.problems, checkpoint)
    assert files is not None and check.header is not None
    typer.echo(
        f"ok: {checkpoint}: {files.kind} checkpoint, {check.n_params:,} parameters, "
        f"config sha256 {check.header.get('config_sha256')}, weights sha256 {check.weights_sha256}"
    )
