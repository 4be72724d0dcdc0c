"""`townlet archive`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from townlet.artifacts.archive import MAX_MEMBER_BYTES, create, diff, markdown, stale_markdown, verified, verify
from townlet.cli.common import RegistryOpt, print_diff, problems_exit, registry_path, stderr_line
from townlet.errors import UsageError
from townlet.jsonio import atomic_write_text, canonical_json
from townlet.paths import check_output

app = typer.Typer(help="Reproducible archives of a checkpoint with its log and config.", no_args_is_help=True)

MaxMemberOpt = Annotated[
    int,
    typer.Option(
        "--max-member-bytes",
        min=1,
        help="Refuse (without reading it) any member whose tar header declares more bytes than this.",
    ),
]


@app.command("create")
def archive_create_cmd(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="The checkpoint (X.json or X.safetensors).")],
    config: Annotated[Path, typer.Option("--config", help="The config file of the run.")],
    log: Annotated[Path | None, typer.Option("--log", help="The run's JSONL log.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Archive path (default: artifacts/<checkpoint>.tar.gz).")
    ] = None,
    label: Annotated[str | None, typer.Option("--label", help="Label (default: the config's registry label).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing archive.")] = False,
    registry: RegistryOpt = None,
    attach: Annotated[
        list[Path] | None,
        typer.Option("--attach", help="Also bundle this file as attached/NAME (repeatable): results, summaries."),
    ] = None,
) -> None:
    """Bundle checkpoint, log, config and the checkpoint's embedded config (and --attach files) into a
    reproducible .tar.gz."""
    if output is not None:
        check_output(output, "--output")
    made = create(
        checkpoint, config, log=log, output=output, label=label, registry=registry_path(registry), overwrite=overwrite,
        attach=tuple(attach or ()),
    )  # fmt: skip
    for note in made.notes:
        stderr_line(f"note: {note}")
    typer.echo(f"archive: {made.output} ({len(made.metadata['members']) + 1} members, sha256 {made.sha256})")


@app.command("verify")
def archive_verify_cmd(
    archive: Annotated[Path, typer.Argument(help="A .tar.gz made by `archive create`.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object: ok and problems.")] = False,
    max_member_bytes: MaxMemberOpt = MAX_MEMBER_BYTES,
) -> None:
    """Check every member against metadata.json (nothing is extracted); exit 1 naming each problem."""
    contents = verify(archive, max_member_bytes)
    problems = contents.problems
    if as_json:
        typer.echo(canonical_json({"archive": str(archive), "ok": not problems, "problems": problems}), nl=False)
        if problems:
            raise typer.Exit(1)
        return
    if problems:
        raise problems_exit(problems, archive)
    typer.echo(f"ok: {archive}: {len(contents.members)} members match metadata.json; the checkpoint verifies")


@app.command("diff")
def archive_diff_cmd(
    archive: Annotated[Path, typer.Option("--archive", help="The archive.")],
    config: Annotated[Path, typer.Option("--config", help="A config file to compare with the archived one.")],
    max_member_bytes: MaxMemberOpt = MAX_MEMBER_BYTES,
) -> None:
    """Key-path differences from the archived (resolved) config to CONFIG; exit 1 when they differ."""
    archived_sha, live_sha, changes = diff(archive, config, max_member_bytes)
    if not changes:
        typer.echo(f"equal: {config} matches the config archived in {archive} (sha256 {live_sha})")
        return
    raise print_diff(
        f"{archive}:config_resolved.json (sha256 {archived_sha[:12]})", f"{config} (sha256 {live_sha[:12]})", changes
    )


@app.command("summary")
def archive_summary_cmd(
    archive: Annotated[Path, typer.Option("--archive", help="The archive.")],
    as_markdown: Annotated[bool, typer.Option("--markdown", help="A Markdown table instead of JSON.")] = False,
    markdown_path: Annotated[
        Path | None, typer.Option("--markdown-path", help="Write the Markdown here (atomically).")
    ] = None,
    check_markdown: Annotated[
        bool, typer.Option("--check-markdown", help="Exit 1 when --markdown-path differs from the archive's summary.")
    ] = False,
    max_member_bytes: MaxMemberOpt = MAX_MEMBER_BYTES,
) -> None:
    """The archive's metadata (JSON), or a Markdown summary for release notes."""
    if check_markdown and markdown_path is None:
        raise UsageError("--check-markdown needs --markdown-path")
    if not (as_markdown or markdown_path or check_markdown):
        typer.echo(canonical_json(verified(archive, max_member_bytes).metadata), nl=False)
        return
    text = markdown(archive, max_member_bytes)
    if check_markdown:
        assert markdown_path is not None
        stale = stale_markdown(markdown_path, text)
        if stale:
            stderr_line(f"error: {stale}")
            raise typer.Exit(1)
        typer.echo(f"ok: {markdown_path} matches {archive}")
        return
    if markdown_path is not None:
        try:
            atomic_write_text(markdown_path, text)
        except OSError as exc:
            raise UsageError(f"{markdown_path}: cannot write ({exc.strerror or exc})") from None
    if as_markdown:
        typer.echo(text, nl=False)
    elif markdown_path is not None:
        typer.echo(f"wrote {markdown_path}")
