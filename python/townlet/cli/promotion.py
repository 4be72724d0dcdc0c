"""`townlet promotion`: the promotion gate over an anneal's results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from townlet.errors import UsageError
from townlet.jsonio import canonical_json
from townlet.training.anneal_promotion import evaluate_file, render_human

app = typer.Typer(help="Promotion gates over anneal results.", no_args_is_help=True)


@app.command("evaluate")
def promotion_evaluate_cmd(
    input_path: Annotated[
        Path,
        typer.Option("--input", "--summary", help="anneal_results.json (or a {bc_accuracy, bc_threshold} object)."),
    ],
    fmt: Annotated[str, typer.Option("--format", help="human | json.")] = "human",
) -> None:
    """PROMOTE (exit 0), HOLD (3) or FAIL (4), with reasons."""
    if fmt not in ("human", "json"):
        raise UsageError(f"--format must be human or json, got {fmt!r}")
    decision = evaluate_file(input_path)
    if fmt == "json":
        typer.echo(canonical_json(decision.model_dump(mode="json")), nl=False)
    else:
        typer.echo(render_human(decision), nl=False)
    if decision.exit_code:
        raise typer.Exit(decision.exit_code)
