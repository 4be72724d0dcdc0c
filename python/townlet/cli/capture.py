"""`townlet capture`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from townlet.capture import goldens
from townlet.capture.remote import CaptureJob
from townlet.capture.rollout import capture_rollout, capture_timestamp
from townlet.cli.common import resolve_policy, stderr_line
from townlet.errors import UsageError
from townlet.jsonio import write_json
from townlet.paths import check_output
from townlet.sim.config import TownConfig, load_config

app = typer.Typer(help="Capture rollouts, merge golden metrics, check drift.", no_args_is_help=True)


@app.command("rollout")
def capture_rollout_cmd(
    config: Annotated[Path, typer.Argument(help="Config YAML file.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the capture files.")],
    compress: Annotated[bool, typer.Option("--compress", help="Deflate the .npz samples.")] = False,
    ticks: Annotated[
        int | None, typer.Option("--ticks", min=1, help="Ticks (default: the scenario's, else 100).")
    ] = None,
    auto_seed_agents: Annotated[
        bool, typer.Option("--auto-seed-agents", help="Every agent acts under the expert (scripts dropped).")
    ] = False,
    agent_id: Annotated[str | None, typer.Option("--agent-id", help="Capture only this agent.")] = None,
    policy: Annotated[str, typer.Option("--policy", help="'scripted' or a policy checkpoint path.")] = "scripted",
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="Override the config's seed.")] = None,
    prefix: Annotated[str, typer.Option("--prefix", help="File name prefix.")] = "rollout_sample",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON summary.")] = False,
) -> None:
    """Capture one config's rollout: per-agent samples, manifest and metrics."""
    cfg = load_config(config, seed=seed)
    check_output(output, "--output", folder=True)
    pol, pol_name = resolve_policy(policy, cfg.seed)
    result = capture_rollout(
        cfg,
        output,
        ticks=ticks,
        compress=compress,
        auto_seed_agents=auto_seed_agents,
        agent_id=agent_id,
        prefix=prefix,
        policy=pol,
        policy_name=pol_name,
    )
    for line in result.notices:
        stderr_line(line)
    if as_json:
        typer.echo(json.dumps({"output": str(output), "samples": result.samples, "events": result.metrics["events"]}))
    else:
        typer.echo(f"captured {len(result.samples)} samples of {cfg.scenario_name} into {output}")


@app.command("suite")
def capture_suite_cmd(
    configs: Annotated[list[Path], typer.Argument(help="Scenario configs.")],
    output_root: Annotated[Path, typer.Option("--output-root", help="One folder per scenario goes here.")],
    compress: Annotated[bool, typer.Option("--compress")] = False,
    ticks: Annotated[int | None, typer.Option("--ticks", min=1)] = None,
    agent_filter: Annotated[str | None, typer.Option("--agent-filter", help="Capture only this agent id.")] = None,
    auto_seed_agents: Annotated[bool, typer.Option("--auto-seed-agents")] = False,
    retries: Annotated[int, typer.Option("--retries", min=0, help="Retries per scenario on I/O errors.")] = 0,
    backend: Annotated[
        str, typer.Option("--backend", help="'local' (this process) or 'ray' (scenarios spread over Ray shards).")
    ] = "local",
    shards: Annotated[
        int | None, typer.Option("--shards", min=1, help="Ray shard actors (--backend ray; default 2).")
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option("--ray-address", help="A running Ray cluster (--backend ray; default: start one here)."),
    ] = None,
) -> None:
    """Capture several configs, one folder per config (named after its file)."""
    if backend not in ("local", "ray"):
        raise UsageError(f"--backend {backend!r}: choose 'local' or 'ray'")
    if backend == "local" and (shards is not None or ray_address is not None):
        raise UsageError(f"{'--shards' if shards is not None else '--ray-address'} needs --backend ray")
    loaded = [(path, load_config(path)) for path in configs]
    check_output(output_root, "--output-root", folder=True)
    if backend == "ray":
        _capture_suite_ray(loaded, output_root, shards or 2, ray_address, compress=compress, ticks=ticks,
                           agent_filter=agent_filter, auto_seed_agents=auto_seed_agents, retries=retries)  # fmt: skip
        return
    for path, cfg in loaded:
        folder = output_root / path.stem
        for attempt in range(retries + 1):
            try:
                result = capture_rollout(
                    cfg,
                    folder,
                    ticks=ticks,
                    compress=compress,
                    auto_seed_agents=auto_seed_agents,
                    agent_id=agent_filter,
                )
                for line in result.notices:
                    stderr_line(line)
                break
            except UsageError as exc:
                if attempt == retries:
                    raise
                stderr_line(f"retrying {path} after: {exc}")
        typer.echo(f"{path.stem}: {len(result.samples)} samples -> {folder}")


def _capture_suite_ray(
    loaded: list[tuple[Path, TownConfig]],
    output_root: Path,
    shards: int,
    address: str | None,
    *,
    compress: bool,
    ticks: int | None,
    agent_filter: str | None,
    auto_seed_agents: bool,
    retries: int,
) -> None:
    """The suite on Ray shard actors: same files, same bytes, same lines, in scenario order."""
    from townlet.training import ray_capture  # Ray itself is imported only now (the `ray` extra)

    stamp = capture_timestamp()  # here, not on the shards: SOURCE_DATE_EPOCH is the caller's
    jobs = [
        CaptureJob(cfg, output_root / path.stem, stamp, ticks, compress, auto_seed_agents, agent_filter)
        for path, cfg in loaded
    ]
    for done in ray_capture.capture_suite(jobs, shards=shards, address=address, retries=retries):
        for line in done.notices:
            stderr_line(line)
        typer.echo(f"{done.job.folder.name}: {len(done.captured.samples)} samples -> {done.job.folder}")


@app.command("merge")
def capture_merge_cmd(
    capture_dir: Annotated[Path, typer.Argument(help="A capture folder or a suite's output root.")],
    golden: Annotated[Path, typer.Option("--golden", help="Golden metrics JSON.")] = goldens.DEFAULT_GOLDEN,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the changes without writing.")] = False,
) -> None:
    """Merge captured metrics into the golden JSON."""
    if not dry_run:
        check_output(golden, "--golden")
    captured = goldens.read_captures(capture_dir)
    current = goldens.load_golden(golden)
    new, changes = goldens.merge(current, captured)
    for line in changes:
        typer.echo(line)
    if dry_run:
        typer.echo(f"dry run: {len(changes)} changes; {golden} not written")
        return
    try:
        write_json(golden, new)
    except OSError as exc:
        raise UsageError(f"{golden}: cannot write ({exc.strerror or exc})") from None
    typer.echo(f"merged {len(captured)} scenarios into {golden} ({len(changes)} changes)")


@app.command("drift")
def capture_drift_cmd(
    capture_dir: Annotated[Path, typer.Argument(help="A suite's output root (or one capture folder).")],
    golden: Annotated[Path, typer.Option("--golden", help="Golden metrics JSON.")] = goldens.DEFAULT_GOLDEN,
) -> None:
    """Fail (exit 1) when any captured metric drifts from the golden by > 2% / 1e-6."""
    captured = goldens.read_captures(capture_dir)
    golden_data = goldens.load_golden(golden)
    if not golden_data:
        raise UsageError(f"{golden}: no golden metrics (run the merge first)")
    drifts = []
    for name, entry in captured.items():
        if name not in golden_data:
            drifts.append(goldens.Drift(name, None, "captured", "scenario not in the golden"))
            continue
        drifts.extend(goldens.compare(golden_data[name], entry, name))
    for d in drifts:
        stderr_line(f"drift: {d}")
    if drifts:
        stderr_line(f"{len(drifts)} metrics drifted from {golden}")
        raise typer.Exit(1)
    typer.echo(f"no drift: {len(captured)} scenarios match {golden}")
