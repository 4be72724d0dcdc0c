"""`townlet`: one command-line program, one Typer group per workflow."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from townlet.config import load_config
from townlet.errors import TownletError, UsageError
from townlet.world import Simulation

app = typer.Typer(
    name="townlet",
    help="Townlet: a deterministic town simulation for training agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
sim_app = typer.Typer(help="Run the world simulation.", no_args_is_help=True)
app.add_typer(sim_app, name="sim")
capture_app = typer.Typer(help="Capture rollouts, merge golden metrics, check drift.", no_args_is_help=True)
app.add_typer(capture_app, name="capture")

err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

#: Ticks stepped per native call when a progress display is shown.
CHUNK = 1440


def fail(exc: TownletError) -> typer.Exit:
    """Print a user error as one line and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    return typer.Exit(exc.exit_code)


@sim_app.command("run")
def sim_run(
    config: Annotated[Path, typer.Option("--config", "-c", help="Config YAML file.")],
    tick_limit: Annotated[
        int | None, typer.Option("--tick-limit", min=0, help="Ticks to run (default: the scenario's, else one day).")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="Override the config's seed.")] = None,
    save_snapshot: Annotated[Path | None, typer.Option("--save-snapshot", help="Write a snapshot at the end.")] = None,
    load_snapshot: Annotated[
        Path | None, typer.Option("--load-snapshot", help="Continue from a snapshot taken with this config.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    policy: Annotated[
        str, typer.Option("--policy", help="'scripted' (the expert) or a policy checkpoint path.")
    ] = "scripted",
) -> None:
    """Run the town under the scripted expert (or a trained policy) and report KPIs."""
    try:
        cfg = load_config(config, seed=seed)
        sim = Simulation.load_snapshot(load_snapshot, cfg) if load_snapshot else Simulation(cfg)
        pol, _ = resolve_policy(policy, cfg.seed)
        if pol is not None:
            pol.check(sim.observation_metadata())
    except TownletError as exc:
        raise fail(exc) from None
    ticks = tick_limit if tick_limit is not None else (cfg.scenario_ticks or sim.town.ticks_per_day)
    start_tick = sim.tick
    steps_before = sim.town.agent_steps
    show_progress = not (as_json or quiet) and sys.stdout.isatty() and ticks >= CHUNK
    t0 = time.perf_counter()
    if show_progress:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,}/{task.total:,} ticks"),
            TimeRemainingColumn(),
            transient=True,
        ) as progress:
            task = progress.add_task(cfg.config_id, total=ticks)
            done = 0
            while done < ticks:
                n = min(CHUNK, ticks - done)
                sim.run(n) if pol is None else sim.run_policy(n, pol)
                done += n
                progress.update(task, completed=done)
    elif pol is None:
        sim.run(ticks)
    else:
        sim.run_policy(ticks, pol)
    elapsed = max(time.perf_counter() - t0, 1e-9)
    agent_steps = sim.town.agent_steps - steps_before
    if save_snapshot is not None:
        try:
            sim.save_snapshot(save_snapshot)
        except OSError as exc:
            raise fail(UsageError(f"{save_snapshot}: cannot write snapshot: {exc.strerror or exc}")) from None
    kpis = sim.kpis()
    summary: dict[str, Any] = {
        "config_id": cfg.config_id,
        "config": str(config),
        "seed": cfg.seed,
        "start_tick": start_tick,
        "ticks": ticks,
        "final_tick": sim.tick,
        "agents": sim.town.n_agents,
        "agent_ids": sim.agent_ids,
        "world_hash": sim.world_hash(),
        "manifest_checksum": sim.town.manifest_checksum,
        "kpis": {
            "self_sufficiency": kpis["self_sufficiency"],
            "on_time_rate": kpis["on_time_rate"],
            "relationship_coverage": kpis["relationship_coverage"],
            "faints": int(kpis["faints"]),
            "evictions": int(kpis["evictions"]),
            "queue_conflicts": int(kpis["queue_conflicts"]),
            "shifts_scheduled": int(kpis["shifts_scheduled"]),
            "chat_success": int(kpis["chat_success"]),
            "shared_meals": int(kpis["shared_meals"]),
        },
        "agent_steps": agent_steps,
        "elapsed_sec": elapsed,
        "agent_steps_per_sec": agent_steps / elapsed,
        "snapshot": str(save_snapshot) if save_snapshot else None,
    }
    if as_json:
        typer.echo(json.dumps(summary, sort_keys=True))
        return
    console = Console()
    table = Table(title=f"{cfg.config_id} — {ticks:,} ticks, {sim.town.n_agents} agents", show_header=True)
    table.add_column("KPI")
    table.add_column("value", justify="right")
    table.add_row("self-sufficiency (all needs > 0.3)", f"{kpis['self_sufficiency']:.1%}")
    table.add_row("on-time rate", f"{kpis['on_time_rate']:.1%} of {int(kpis['shifts_scheduled'])} shifts")
    table.add_row("relationship coverage", f"{kpis['relationship_coverage']:.1%}")
    table.add_row("faints", str(int(kpis["faints"])))
    table.add_row("evictions", str(int(kpis["evictions"])))
    table.add_row("queue conflicts", str(int(kpis["queue_conflicts"])))
    table.add_row("chats (ok / failed)", f"{int(kpis['chat_success'])} / {int(kpis['chat_failure'])}")
    table.add_row("shared meals", str(int(kpis["shared_meals"])))
    table.add_row("agent steps / s", f"{summary['agent_steps_per_sec']:,.0f}")
    console.print(table)
    console.print(f"world hash [bold]{summary['world_hash'][:16]}[/] at tick {sim.tick}", highlight=False)
    if save_snapshot:
        console.print(f"snapshot written to {save_snapshot}", highlight=False)


@capture_app.command("rollout")
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
    from townlet.capture import capture_rollout

    try:
        cfg = load_config(config, seed=seed)
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
    except TownletError as exc:
        raise fail(exc) from None
    if as_json:
        typer.echo(json.dumps({"output": str(output), "samples": result.samples, "events": result.metrics["events"]}))
    else:
        typer.echo(f"captured {len(result.samples)} samples of {cfg.scenario_name} into {output}")


def resolve_policy(policy: str, seed: int = 0) -> tuple[Any, str]:
    """`scripted` (the expert, no value function) or a policy checkpoint path."""
    if policy == "scripted":
        return None, "scripted"
    from townlet.policy import CheckpointPolicy

    loaded = CheckpointPolicy(Path(policy), seed=seed)
    return loaded, loaded.name


@capture_app.command("suite")
def capture_suite_cmd(
    configs: Annotated[list[Path], typer.Argument(help="Scenario configs.")],
    output_root: Annotated[Path, typer.Option("--output-root", help="One folder per scenario goes here.")],
    compress: Annotated[bool, typer.Option("--compress")] = False,
    ticks: Annotated[int | None, typer.Option("--ticks", min=1)] = None,
    agent_filter: Annotated[str | None, typer.Option("--agent-filter", help="Capture only this agent id.")] = None,
    auto_seed_agents: Annotated[bool, typer.Option("--auto-seed-agents")] = False,
    retries: Annotated[int, typer.Option("--retries", min=0, help="Retries per scenario on I/O errors.")] = 0,
) -> None:
    """Capture several configs, one folder per config (named after its file)."""
    from townlet.capture import capture_rollout

    try:
        loaded = [(path, load_config(path)) for path in configs]
    except TownletError as exc:
        raise fail(exc) from None
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
                break
            except UsageError as exc:
                if attempt == retries:
                    raise fail(exc) from None
                err_console.print(f"retrying {path} after: {exc}", highlight=False, markup=False, soft_wrap=True)
        typer.echo(f"{path.stem}: {len(result.samples)} samples -> {folder}")


@capture_app.command("merge")
def capture_merge_cmd(
    capture_dir: Annotated[Path, typer.Argument(help="A capture folder or a suite's output root.")],
    golden: Annotated[Path, typer.Option("--golden", help="Golden metrics JSON.")] = Path(
        "docs/samples/rollout_scenario_stats.json"
    ),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the changes without writing.")] = False,
) -> None:
    """Merge captured metrics into the golden JSON."""
    from townlet import goldens
    from townlet.jsonio import write_json

    try:
        folders = goldens.capture_folders(capture_dir)
        captured = {name: goldens.read_capture_metrics(folder) for name, folder in folders.items()}
        current = goldens.load_golden(golden)
        new, changes = goldens.merge(current, captured)
    except TownletError as exc:
        raise fail(exc) from None
    for line in changes:
        typer.echo(line)
    if dry_run:
        typer.echo(f"dry run: {len(changes)} changes; {golden} not written")
        return
    try:
        write_json(golden, new)
    except OSError as exc:
        raise fail(UsageError(f"{golden}: cannot write ({exc.strerror or exc})")) from None
    typer.echo(f"merged {len(captured)} scenarios into {golden} ({len(changes)} changes)")


@capture_app.command("drift")
def capture_drift_cmd(
    capture_dir: Annotated[Path, typer.Argument(help="A suite's output root (or one capture folder).")],
    golden: Annotated[Path, typer.Option("--golden", help="Golden metrics JSON.")] = Path(
        "docs/samples/rollout_scenario_stats.json"
    ),
) -> None:
    """Fail (exit 1) when any captured metric drifts from the golden by > 2% / 1e-6."""
    from townlet import goldens

    try:
        folders = goldens.capture_folders(capture_dir)
        captured = {name: goldens.read_capture_metrics(folder) for name, folder in folders.items()}
        golden_data = goldens.load_golden(golden)
    except TownletError as exc:
        raise fail(exc) from None
    if not golden_data:
        raise fail(UsageError(f"{golden}: no golden metrics (run the merge first)"))
    drifts = []
    for name, entry in captured.items():
        if name not in golden_data:
            drifts.append(goldens.Drift(name, None, "captured", "scenario not in the golden"))
            continue
        drifts.extend(goldens.compare(golden_data[name], entry, name))
    for d in drifts:
        err_console.print(f"drift: {d}", highlight=False, markup=False, soft_wrap=True)
    if drifts:
        err_console.print(f"{len(drifts)} metrics drifted from {golden}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(1)
    typer.echo(f"no drift: {len(captured)} scenarios match {golden}")


@app.command("train")
def train_cmd(
    config: Annotated[Path, typer.Argument(help="Config YAML file.")],
    mode: Annotated[
        str | None, typer.Option("--mode", help="rollout | replay | mixed (default: the config's).")
    ] = None,
    train_ppo: Annotated[bool, typer.Option("--train-ppo", help="Train PPO (implied by every mode).")] = False,
    capture_dir: Annotated[Path | None, typer.Option("--capture-dir", help="Replay data: a capture folder.")] = None,
    replay_manifest: Annotated[Path | None, typer.Option("--replay-manifest", help="Replay data: a manifest.")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Training epochs (cycles).")] = None,
    rollout_ticks: Annotated[
        int | None, typer.Option("--rollout-ticks", min=1, help="Ticks collected per epoch.")
    ] = None,
    rollout_save_dir: Annotated[
        Path | None,
        typer.Option("--rollout-save-dir", help="Also capture --rollout-ticks ticks of the scripted policy here."),
    ] = None,
    ppo_log: Annotated[Path | None, typer.Option("--ppo-log", help="Telemetry JSONL, one record per epoch.")] = None,
    ppo_log_frequency: Annotated[int, typer.Option("--ppo-log-frequency", min=1, help="Write every Kth epoch.")] = 1,
    ppo_log_max_entries: Annotated[
        int | None, typer.Option("--ppo-log-max-entries", min=1, help="Rotate the log after M records.")
    ] = None,
    checkpoint: Annotated[Path | None, typer.Option("--checkpoint", help="Where to save the policy.")] = None,
    num_envs: Annotated[int | None, typer.Option("--num-envs", min=1, help="Towns stepped together.")] = None,
    learning_rate: Annotated[float | None, typer.Option("--learning-rate", min=0.0)] = None,
    gamma: Annotated[float | None, typer.Option("--gamma", min=0.0, max=1.0)] = None,
    gae_lambda: Annotated[float | None, typer.Option("--gae-lambda", min=0.0, max=1.0)] = None,
    clip_coef: Annotated[float | None, typer.Option("--clip-coef", min=0.0)] = None,
    ent_coef: Annotated[float | None, typer.Option("--ent-coef", min=0.0)] = None,
    vf_coef: Annotated[float | None, typer.Option("--vf-coef", min=0.0)] = None,
    update_epochs: Annotated[int | None, typer.Option("--update-epochs", min=1)] = None,
    num_minibatches: Annotated[int | None, typer.Option("--num-minibatches", min=1)] = None,
    max_grad_norm: Annotated[float | None, typer.Option("--max-grad-norm", min=0.0)] = None,
    target_kl: Annotated[float | None, typer.Option("--target-kl", min=0.0)] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON summary at the end.")] = False,
) -> None:
    """Train PPO on a config (seeds 000-002): rollout, replay or mixed."""
    from townlet.capture import capture_rollout
    from townlet.telemetry import TelemetryWriter
    from townlet.training.run import load_replay, run_training

    try:
        cfg = load_config(config, seed=seed)
    except TownletError as exc:
        raise fail(exc) from None
    section = cfg.sections.training
    run_mode = mode or section.mode
    overrides = {
        k: v
        for k, v in {
            "rollout_ticks": rollout_ticks,
            "num_envs": num_envs,
            "learning_rate": learning_rate,
            "gamma": gamma,
            "gae_lambda": gae_lambda,
            "clip_coef": clip_coef,
            "ent_coef": ent_coef,
            "vf_coef": vf_coef,
            "update_epochs": update_epochs,
            "num_minibatches": num_minibatches,
            "max_grad_norm": max_grad_norm,
            "target_kl": target_kl,
        }.items()
        if v is not None
    }
    ppo = cfg.sections.ppo.model_copy(update=overrides)
    try:
        if rollout_save_dir is not None:
            captured = capture_rollout(cfg, rollout_save_dir, ticks=rollout_ticks)
            typer.echo(f"captured {len(captured.samples)} samples into {rollout_save_dir}")
            if mode is None and not train_ppo:
                return
        manifest = replay_manifest or (Path(section.replay_manifest) if section.replay_manifest else None)
        replay = load_replay(manifest, capture_dir) if run_mode in ("replay", "mixed") else None
        writer = (
            TelemetryWriter(ppo_log, frequency=ppo_log_frequency, max_entries=ppo_log_max_entries) if ppo_log else None
        )
    except (TownletError, ValueError) as exc:
        raise fail(exc if isinstance(exc, TownletError) else UsageError(str(exc))) from None
    n_epochs = epochs or section.epochs
    ckpt = checkpoint or Path(section.checkpoint)
    show = not (quiet or as_json) and sys.stdout.isatty()
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("epoch {task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        disable=not show,
    )
    task = progress.add_task(f"PPO {run_mode} {cfg.config_id}", total=n_epochs, info="")

    def on_epoch(rec: dict[str, Any]) -> None:
        info = (
            f"steps {rec['steps']:,}  sps {rec['sps']:,.0f}  return {rec['episode_return_mean']:.3f}  "
            f"kl {rec['approx_kl']:.4f}"
        )
        progress.update(task, completed=rec["epoch"], info=info)

    try:
        with progress:
            out = run_training(
                cfg,
                ppo=ppo,
                mode=run_mode,
                epochs=n_epochs,
                seed=cfg.seed,
                replay=replay,
                telemetry=writer,
                checkpoint=ckpt,
                checkpoint_every=section.checkpoint_every,
                on_epoch=on_epoch,
            )
    except TownletError as exc:
        raise fail(exc) from None
    last = out.result.records[-1] if out.result.records else {}
    summary = {
        "config_id": cfg.config_id,
        "mode": run_mode,
        "epochs": n_epochs,
        "steps": out.result.steps,
        "seconds": out.result.seconds,
        "checkpoint": str(ckpt),
        "telemetry": str(ppo_log) if ppo_log else None,
        "last": {
            k: last.get(k) for k in ("loss_total", "approx_kl", "episode_return_mean", "sps", "explained_variance")
        },
    }
    if as_json:
        typer.echo(json.dumps(summary, sort_keys=True))
        return
    typer.echo(
        f"trained {n_epochs} epochs ({out.result.steps:,} transitions, {out.result.seconds:.1f}s) on {cfg.config_id}; "
        f"checkpoint {ckpt}" + (f"; telemetry {ppo_log}" if ppo_log else "")
    )


@app.command("validate")
def validate(configs: Annotated[list[Path], typer.Argument(help="Config files to check.")]) -> None:
    """Validate config files; print one line per file."""
    failed = False
    for path in configs:
        try:
            cfg = load_config(path)
        except TownletError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            failed = True
            continue
        typer.echo(f"ok: {path} ({cfg.config_id}, {len(cfg.world['agents'])} agents)")
    if failed:
        raise typer.Exit(2)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
