"""`townlet`: one command-line program, one Typer group per workflow, one module per group.

Each verb parses its options, calls the library and prints. Errors are reported in one place: the
top-level group turns any `TownletError` into its one-line message and exit code.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from townlet.cli import archive, capture, checkpoint, data, log, registry, sim, telemetry, train
from townlet.cli import eval as eval_cli
from townlet.cli.common import report
from townlet.errors import TownletError


class _Townlet(TyperGroup):
    """The top-level group: every subcommand runs inside its `invoke`, so this is the one error handler."""

    def invoke(self, ctx: Any) -> Any:  # typer.Context is narrower than the click context it receives
        try:
            return super().invoke(ctx)
        except TownletError as exc:
            report(exc)
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    name="townlet",
    cls=_Townlet,
    help="Townlet: a deterministic town simulation for training agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(sim.app, name="sim")
app.add_typer(capture.app, name="capture")
app.command("train")(train.train_cmd)
app.command("eval")(eval_cli.eval_cmd)
app.add_typer(telemetry.app, name="telemetry")
app.add_typer(checkpoint.app, name="checkpoint")
app.add_typer(registry.app, name="registry")
app.add_typer(log.app, name="log")
app.add_typer(archive.app, name="archive")
app.add_typer(data.app, name="data")
app.command("validate")(sim.validate)


def main() -> None:
    app()


__all__ = ["app", "main"]
