"""`townlet`: one command-line program, one Typer group per workflow, one module per group.

Each verb parses its options, calls the library and prints. Errors are reported in one place: the
top-level group turns any `TownletError` into its one-line message and exit code.
"""

from __future__ import annotations

from typing import Any

import typer
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer.core import TyperGroup

from townlet.cli import archive, capture, checkpoint, data, log, registry, rehearsal, sim, soak, telemetry, train
from townlet.cli import console as console_cli
from townlet.cli import eval as eval_cli
from townlet.cli import observe as observe_cli
from townlet.cli import promotion as promotion_cli
from townlet.cli import snapshot_check as snapshot_check_cli
from townlet.cli.common import report, stderr_line
from townlet.errors import TownletError


def _usage_exit(exc: UsageError) -> typer.Exit:
    """A command-line usage error as one line (the option or argument, and where help is), exit 2."""
    where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
    stderr_line(f"error: {exc.format_message()}{where}")
    return typer.Exit(2)


class _Townlet(TyperGroup):
    """The top-level group: every subcommand is parsed and runs inside its `invoke`, so this is the one
    error handler: our errors and usage errors (an unknown option, a bad value) become one line each."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except NoArgsIsHelpError:
            raise
        except UsageError as exc:
            raise _usage_exit(exc) from None

    def invoke(self, ctx: Any) -> Any:  # typer.Context is narrower than the click context it receives
        try:
            return super().invoke(ctx)
        except TownletError as exc:
            report(exc)
            raise typer.Exit(exc.exit_code) from None
        except NoArgsIsHelpError:
            raise
        except UsageError as exc:
            raise _usage_exit(exc) from None


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
app.add_typer(promotion_cli.app, name="promotion")
app.command("validate")(sim.validate)
app.command("soak")(soak.soak_cmd)
app.command("rehearsal")(rehearsal.rehearsal_cmd)
app.command("console")(console_cli.console_cmd)
app.command("telemetry-check")(snapshot_check_cli.telemetry_check)
app.command("observe")(observe_cli.observe_cmd)


def main() -> None:
    app()


__all__ = ["app", "main"]
