"""`townlet rehearsal` (tools/ops_rehearsal.py, `make rehearsal`): seed 001's ops rehearsal end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from townlet.artifacts.registry import repo_root
from townlet.errors import UsageError
from townlet.jsonio import atomic_write_text

if TYPE_CHECKING:
    from townlet.training.rehearsal import Step

#: A folder the rehearsal prepared (and may wipe to start again).
MARK = ".townlet-rehearsal"
DEFAULT_WORKDIR = Path("tmp/rehearsal")


def _shown(i: int, n: int, step: Step) -> str:
    mark = "ok" if step.ok else "UNEXPECTED"
    head = f"[{i}/{n}] {step.title}: {step.verdict} (expected {step.expected}) {mark} {step.seconds:.1f}s"
    return "\n".join([head, *(f"      {note}" for note in step.notes)])


def rehearsal_cmd(
    workdir: Annotated[
        Path, typer.Option("--workdir", help="Scratch folder, made afresh (a previous rehearsal's is replaced).")
    ] = DEFAULT_WORKDIR,
    in_place: Annotated[
        bool, typer.Option("--in-place", help="Run in the working directory itself (a checkout), not a scratch folder.")
    ] = False,
    report: Annotated[
        Path | None, typer.Option("--report", help="Also write the acceptance report (Markdown) here.")
    ] = None,
    report_only: Annotated[
        bool, typer.Option("--report-only", help="Write the report from a finished rehearsal's artefacts; run nothing.")
    ] = False,
    only: Annotated[
        str | None, typer.Option("--only", help="Comma-separated steps to run (default: all, in order).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the steps as one JSON object.")] = False,
) -> None:
    """Seed 001's rehearsal: overlay, dataset integrity, BC verification, anneal smoke, anneal, rollback
    drill, bundle; prints each step's verdict next to the one it should give and writes the acceptance
    report. Exit 0 only when every step gave its expected verdict (the drill must roll back)."""
    from townlet.training.rehearsal import REPORT, prepare_workdir
    from townlet.training.rehearsal_report import report_from_artefacts
    from townlet.training.rehearsal_steps import STEPS, run_rehearsal

    where = Path.cwd() if in_place else workdir
    if report_only:
        text = report_from_artefacts(where)
        _write_report(where, text, report)
        typer.echo(f"report: {where / REPORT}" + (f" and {report}" if report else ""))
        return
    names = tuple(n.strip() for n in only.split(",")) if only else None
    known = [name for name, *_ in STEPS]
    if names is not None and (bad := [n for n in names if n not in known]):
        raise UsageError(f"--only: unknown step {bad[0]!r} (steps: {', '.join(known)})")
    if not in_place:
        root = repo_root()
        if root is None:
            raise UsageError("run the rehearsal from a checkout (no pyproject.toml and configs/ found above here)")
        if (workdir / MARK).is_file():
            shutil.rmtree(workdir)
        prepare_workdir(workdir, root)
        (workdir / MARK).write_text("made by tools/ops_rehearsal.py; replaced by the next rehearsal\n")
    total = len(names) if names is not None else len(STEPS)
    counter = iter(range(1, total + 1))
    done = run_rehearsal(
        where, only=names, on_step=None if as_json else lambda s: typer.echo(_shown(next(counter), total, s))
    )
    records = [s.record() for s in done.steps]
    _write_report(where, report_from_artefacts(where, records), report)
    if as_json:
        typer.echo(json.dumps({"ok": done.ok, "workdir": str(where), "steps": records}, sort_keys=True))
    else:
        good = sum(s.ok for s in done.steps)
        verdict = "PASS" if done.ok else "FAIL"
        typer.echo(f"rehearsal {verdict}: {good}/{len(done.steps)} steps gave the expected verdict; "
                   f"report {where / REPORT}")  # fmt: skip
    if not done.ok:
        raise typer.Exit(1)


def _write_report(where: Path, text: str, extra: Path | None) -> None:
    from townlet.training.rehearsal import REPORT

    atomic_write_text(where / REPORT, text)
    if extra is not None:
        atomic_write_text(extra, text)
