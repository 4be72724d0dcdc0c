"""`townlet telemetry-check PAYLOAD.json` (tools/telemetry_check.py): a telemetry_snapshot payload against the
published schema (townlet.ops.snapshot_schema; docs/telemetry_snapshot.schema.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from townlet.cli.common import problems_exit, stderr_line
from townlet.jsonio import canonical_json, read_json
from townlet.paths import check_output


def telemetry_check(
    payloads: Annotated[
        list[Path] | None,
        typer.Argument(help="Snapshot payloads (JSON): a snapshot, a command result or a stream snapshot message."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per payload.")] = False,
    write_schema: Annotated[
        Path | None, typer.Option("--write-schema", help="Write the published JSON Schema to this file.")
    ] = None,
) -> None:
    """Validate telemetry_snapshot payloads against the published schema; exit 1 when one does not conform."""
    from townlet.jsonio import atomic_write_text
    from townlet.ops.snapshot_schema import check_payload, json_schema, unwrap

    if write_schema is not None:
        check_output(write_schema, "--write-schema")
        atomic_write_text(write_schema, canonical_json(json_schema()) + "\n")
        typer.echo(f"wrote {write_schema}")
    if not payloads:
        if write_schema is None:
            raise typer.BadParameter("give a PAYLOAD.json (or --write-schema PATH)", param_hint="PAYLOADS")
        return
    problems: list[str] = []
    for path in payloads:
        obj = read_json(path, "snapshot payload")
        version, found, warnings = check_payload(obj)
        for warning in warnings:
            stderr_line(f"warning: {path}: {warning}")
        problems += [f"{path}: {p}" for p in found]
        if as_json:
            out = {"payload": str(path), "schema_version": version, "ok": not found, "problems": found}
            typer.echo(json.dumps(out | {"warnings": warnings}, sort_keys=True))
        elif not found:
            snap = unwrap(obj)
            typer.echo(
                f"ok: {path}: telemetry_snapshot schema {version} (tick {snap['tick']}, {len(snap['agents'])} agents)"
            )
    if problems:
        raise problems_exit(problems, "telemetry-check")
