"""`townlet data`: BC datasets (expert captures into a set, curation, the audit)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from townlet.capture.rollout import capture_rollout
from townlet.cli.common import stderr_line
from townlet.data.audit import AuditReport, audit
from townlet.data.curate import DEFAULT_MIN_TIMESTEPS, SetPaths, curate, describe_distribution
from townlet.data.expert import expert_name, expert_temperature, with_temperature
from townlet.data.records import DEFAULT_VERSIONS, Status, write_model
from townlet.data.verify import manifest_for, verify_set
from townlet.paths import check_output
from townlet.sim.config import load_config

app = typer.Typer(help="BC datasets: expert captures, curation, the catalogue audit.", no_args_is_help=True)


@app.command("capture")
def capture_cmd(
    config: Annotated[Path, typer.Argument(help="Config YAML file.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The set's captures folder (captures/<set>).")],
    ticks: Annotated[
        int | None, typer.Option("--ticks", min=1, help="Ticks (default: the scenario's, else 100).")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="Override the config's seed.")] = None,
    prefix: Annotated[
        str | None, typer.Option("--prefix", help="File name prefix (default: <config file stem>_s<seed>).")
    ] = None,
    auto_seed_agents: Annotated[
        bool, typer.Option("--auto-seed-agents", help="Every agent acts under the expert (scripts dropped).")
    ] = False,
    agent_id: Annotated[str | None, typer.Option("--agent-id", help="Capture only this agent.")] = None,
    compress: Annotated[bool, typer.Option("--compress/--no-compress", help="Deflate the .npz samples.")] = True,
    temperature: Annotated[
        float | None,
        typer.Option(
            "--temperature", help="The expert's sampling temperature (behavior.temperature; 0 = deterministic)."
        ),
    ] = None,
) -> None:
    """Capture the scripted expert into a set's folder (one capture per run; distinct prefixes share a set)."""
    cfg = with_temperature(load_config(config, seed=seed), temperature)
    check_output(output, "--output", folder=True)
    result = capture_rollout(
        cfg,
        output,
        ticks=ticks,
        compress=compress,
        auto_seed_agents=auto_seed_agents,
        agent_id=agent_id,
        prefix=prefix or f"{config.stem}_s{cfg.seed}",
        policy_name=expert_name(cfg),
        seed=seed,
    )
    for line in result.notices:
        stderr_line(line)
    size = sum(p.stat().st_size for p in result.files)
    typer.echo(
        f"captured {len(result.samples)} expert samples of {cfg.scenario_name} into {output} "
        f"({size:,} bytes; expert temperature {expert_temperature(cfg):g})"
    )


@app.command("curate")
def curate_cmd(
    captures: Annotated[Path, typer.Argument(help="The set's captures folder (data/bc_datasets/captures/<set>).")],
    min_timesteps: Annotated[
        int, typer.Option("--min-timesteps", min=0, help="Reject samples alive for fewer ticks.")
    ] = DEFAULT_MIN_TIMESTEPS,
    min_reward: Annotated[
        float | None, typer.Option("--min-reward", help="Reject samples whose reward sum is lower.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", help="Manifest (default: <root>/manifests/<set>.json).")
    ] = None,
    checksums: Annotated[
        Path | None, typer.Option("--checksums", help="Checksum sheet (default: <root>/checksums/<set>.json).")
    ] = None,
    versions: Annotated[
        Path | None, typer.Option("--versions", help="Catalogue (default: <root>/versions.json).")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Catalogue entry name (default: the set's name).")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="A catalogue tag (repeatable).")] = None,
    notes: Annotated[str, typer.Option("--notes", help="Catalogue notes (the action distribution is added).")] = "",
    status: Annotated[Status, typer.Option("--status", help="active or deprecated.")] = "active",
    no_register: Annotated[bool, typer.Option("--no-register", help="Leave the catalogue alone.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON summary.")] = False,
) -> None:
    """Accept or reject every sample of a set; write its manifest and checksum sheet; register it."""
    paths = SetPaths.resolve(captures, output, checksums, versions)
    for path, flag in ((paths.manifest, "--output"), (paths.checksums, "--checksums"), (paths.versions, "--versions")):
        check_output(path, flag)
    result = curate(
        captures,
        paths=paths,
        dataset=dataset,
        min_timesteps=min_timesteps,
        min_reward=min_reward,
        tags=tag,
        notes=notes,
        status=status,
        register=not no_register,
    )
    accepted = result.manifest.accepted
    if as_json:
        summary = {
            "dataset": result.dataset,
            "manifest": str(paths.manifest),
            "checksums": str(paths.checksums),
            "versions": None if no_register else str(paths.versions),
            "samples": len(result.manifest.samples),
            "accepted": len(accepted),
            "rejected": {s.sample: s.reasons for s in result.manifest.samples if not s.accepted},
        }
        typer.echo(json.dumps(summary))
        return
    for s in result.manifest.samples:
        verdict = "accepted" if s.accepted else f"rejected ({'; '.join(s.reasons)})"
        typer.echo(f"  {s.sample}: {s.metrics.timesteps} steps, reward_sum {s.metrics.reward_sum:.3f}: {verdict}")
    typer.echo(f"{result.dataset}: {len(accepted)} of {len(result.manifest.samples)} samples accepted")
    typer.echo(f"wrote {paths.manifest} and {paths.checksums}")
    if result.entry is not None:
        typer.echo(f"registered {result.dataset} in {paths.versions} ({result.entry.status})")
        typer.echo(f"actions: {describe_distribution(result.entry.action_distribution)}")


def _print_report(report: AuditReport) -> None:
    for d in report.datasets:
        typer.echo(
            f"{d.status:4}  {d.name} ({d.catalogue_status}): {d.accepted} of {d.samples} samples accepted, "
            f"{d.files_checked} files hashed"
        )
    for f in report.findings:
        typer.echo(f"  {f.level}: {f.dataset or '-'}: {f.path}: {f.message}")
    typer.echo(f"audit: {report.status} ({len(report.datasets)} datasets, {len(report.findings)} findings)")


@app.command("audit")
def audit_cmd(
    versions: Annotated[Path, typer.Option("--versions", help="The catalogue.")] = DEFAULT_VERSIONS,
    exit_on_failure: Annotated[
        bool, typer.Option("--exit-on-failure", help="Exit 1 when the verdict is FAIL.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report.")] = False,
    report_path: Annotated[Path | None, typer.Option("--report", help="Also write the JSON report here.")] = None,
) -> None:
    """Recompute every digest and check catalogue <-> manifest <-> files: PASS, WARN or FAIL."""
    if report_path is not None:
        check_output(report_path, "--report")
    report = audit(versions)
    if report_path is not None:
        write_model(report_path, report)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        _print_report(report)
    if report.status == "FAIL" and exit_on_failure:
        raise typer.Exit(1)


@app.command("verify")
def verify_cmd(
    dataset: Annotated[str, typer.Argument(help="A catalogue entry name, or a manifest path (*.json).")],
    versions: Annotated[Path, typer.Option("--versions", help="The catalogue.")] = DEFAULT_VERSIONS,
) -> None:
    """Recompute the digests of a dataset's accepted samples before training on it (exit 2 on any mismatch)."""
    manifest = Path(dataset) if dataset.endswith(".json") else manifest_for(dataset, versions)
    verified = verify_set(manifest)
    frames = sum(entry.metrics.timesteps for entry, _, _ in verified.samples)
    shown = manifest.relative_to(Path.cwd()) if manifest.is_relative_to(Path.cwd()) else manifest
    typer.echo(f"verified {len(verified.samples)} accepted samples ({frames} ticks) of {shown}")
