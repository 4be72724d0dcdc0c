"""`townlet`: one command-line program, one Typer group per workflow."""

from __future__ import annotations

import json
import os
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
from townlet.training.settings import MODES, BCConfig, PPOConfig
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
telemetry_app = typer.Typer(help="Validate, watch and summarise PPO telemetry logs.", no_args_is_help=True)
app.add_typer(telemetry_app, name="telemetry")
checkpoint_app = typer.Typer(
    help="List, inspect, copy and verify checkpoints; extract their configs.", no_args_is_help=True
)
app.add_typer(checkpoint_app, name="checkpoint")
registry_app = typer.Typer(help="The config registry: register, look up, diff and check configs.", no_args_is_help=True)
app.add_typer(registry_app, name="registry")
log_app = typer.Typer(
    help="Tail and validate JSONL logs (PPO telemetry and per-episode records).", no_args_is_help=True
)
app.add_typer(log_app, name="log")
archive_app = typer.Typer(help="Reproducible archives of a checkpoint with its log and config.", no_args_is_help=True)
app.add_typer(archive_app, name="archive")

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


def strict_bool(raw: str, name: str) -> bool:
    """1/true/yes/on -> True; 0/false/no/off/empty -> False; anything else is a usage error."""
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise UsageError(f"{name}={raw!r}: expected 1/true/yes/on or 0/false/no/off")


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
        str | None,
        typer.Option("--mode", help="rollout | replay | mixed (PPO) or bc (behaviour cloning); default: the config's."),
    ] = None,
    train_ppo: Annotated[bool, typer.Option("--train-ppo", help="Train PPO (implied by every PPO mode).")] = False,
    capture_dir: Annotated[
        Path | None, typer.Option("--capture-dir", help="Replay or BC data: a capture folder.")
    ] = None,
    replay_manifest: Annotated[Path | None, typer.Option("--replay-manifest", help="Replay data: a manifest.")] = None,
    bc_manifest: Annotated[Path | None, typer.Option("--bc-manifest", help="BC data: a capture manifest.")] = None,
    epochs: Annotated[
        int | None, typer.Option("--epochs", min=1, help="Train until this epoch (a resumed run continues to it).")
    ] = None,
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
    bc_log: Annotated[Path | None, typer.Option("--bc-log", help="BC: JSONL, one record per epoch.")] = None,
    checkpoint_every: Annotated[
        int | None,
        typer.Option("--checkpoint-every", min=0, help="Also save every N epochs (training.checkpoint_every)."),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--warm-start-save", "--checkpoint", help="Where to save the policy (<phase>.warm_start.save_path)."
        ),
    ] = None,
    warm_start_load: Annotated[
        Path | None,
        typer.Option(
            "--warm-start-load",
            help="Start from this checkpoint (<phase>.warm_start.load_path): the same phase and config resumes.",
        ),
    ] = None,
    allow_mismatch: Annotated[
        bool,
        typer.Option("--allow-mismatch", help="Load despite a config-hash or spec mismatch (or ALLOW_MISMATCH=1)."),
    ] = False,
    fresh: Annotated[
        bool,
        typer.Option("--fresh", help="Start from fresh weights: ignore load_path and the inherited checkpoint."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate the config and checkpoint paths; train nothing.")
    ] = False,
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
    """Train a phase on a config (seeds 000-002, 004): PPO (rollout, replay or mixed) or behaviour cloning (bc)."""
    from townlet.capture import capture_rollout
    from townlet.telemetry import TelemetryWriter
    from townlet.training.run import PHASE_BC, PHASE_PPO, ReplayData, load_replay, run_bc, run_training

    try:
        cfg = load_config(config, seed=seed)
    except TownletError as exc:
        raise fail(exc) from None
    section = cfg.sections.training
    run_mode = mode or section.mode
    if run_mode not in (*MODES, "bc"):
        raise fail(UsageError(f"--mode must be one of {', '.join((*MODES, 'bc'))}, got {run_mode!r}"))
    phase = PHASE_BC if run_mode == "bc" else PHASE_PPO
    ppo_flags = {
        "rollout_ticks": rollout_ticks,
        "num_envs": num_envs,
        "gamma": gamma,
        "gae_lambda": gae_lambda,
        "clip_coef": clip_coef,
        "ent_coef": ent_coef,
        "vf_coef": vf_coef,
        "update_epochs": update_epochs,
        "num_minibatches": num_minibatches,
        "max_grad_norm": max_grad_norm,
        "target_kl": target_kl,
    }
    overrides = {k: v for k, v in {**ppo_flags, "learning_rate": learning_rate}.items() if v is not None}
    if phase == PHASE_BC:
        given = [k for k in ppo_flags if k in overrides and not (k == "rollout_ticks" and rollout_save_dir)]
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise fail(UsageError(f"{flags}: PPO options, not used by --mode bc"))
        overrides = {"learning_rate": learning_rate} if learning_rate is not None else {}
    from pydantic import ValidationError

    base: PPOConfig | BCConfig = cfg.sections.bc if phase == PHASE_BC else cfg.sections.ppo
    try:  # validated like the config's section (model_copy would skip the bounds)
        phase_cfg = type(base).model_validate({**base.model_dump(), **overrides})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise fail(UsageError(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}")) from None
    try:
        if rollout_save_dir is not None:
            captured = capture_rollout(cfg, rollout_save_dir, ticks=rollout_ticks)
            typer.echo(f"captured {len(captured.samples)} samples into {rollout_save_dir}")
            if mode is None and not train_ppo:
                return
        if phase == PHASE_BC:
            assert isinstance(phase_cfg, BCConfig)
            manifest = bc_manifest or (Path(phase_cfg.manifest) if phase_cfg.manifest else None)
            data_dir = capture_dir or rollout_save_dir  # capture, then clone what was captured
            if manifest is None and data_dir is None:
                raise UsageError("--mode bc needs --capture-dir DIR or --bc-manifest FILE (or bc.manifest)")
            replay: ReplayData | None = load_replay(manifest, data_dir)
        else:
            manifest = replay_manifest or (Path(section.replay_manifest) if section.replay_manifest else None)
            replay = load_replay(manifest, capture_dir) if run_mode in ("replay", "mixed") else None
        log_path = bc_log if phase == PHASE_BC else ppo_log
        if log_path is not None:  # bad --ppo-log-* values fail here, before anything is trained
            TelemetryWriter.check_options(ppo_log_frequency, ppo_log_max_entries)
    except (TownletError, ValueError) as exc:
        raise fail(exc if isinstance(exc, TownletError) else UsageError(str(exc))) from None

    def telemetry(start: int) -> TelemetryWriter:
        assert log_path is not None
        return TelemetryWriter(
            log_path,
            frequency=ppo_log_frequency,
            max_entries=ppo_log_max_entries,
            resume_after=start if start else None,
        )

    n_epochs = epochs or (phase_cfg.epochs if isinstance(phase_cfg, BCConfig) else section.epochs)
    ckpt = checkpoint or Path(phase_cfg.warm_start.save_path)
    try:
        env_allow = strict_bool(os.environ.get("ALLOW_MISMATCH", ""), "ALLOW_MISMATCH")
    except UsageError as exc:
        raise fail(exc) from None
    warm = phase_cfg.warm_start
    if fresh and warm_start_load is not None:
        raise fail(UsageError("--fresh and --warm-start-load contradict each other; give one"))
    load = None if fresh else warm_start_load or (Path(warm.load_path) if warm.load_path else None)
    phase_cfg = phase_cfg.model_copy(
        update={
            "warm_start": warm.model_copy(
                update={
                    "load_path": str(load) if load else None,
                    "inherit": None if fresh else warm.inherit,
                    "save_path": str(ckpt),
                    "allow_mismatch": warm.allow_mismatch or allow_mismatch or env_allow,
                }
            )
        }
    )
    clash = phase_cfg.warm_start.clash()
    if clash:
        raise fail(UsageError(f"{config}: {phase}.warm_start: {clash}"))
    if dry_run:
        from townlet.training.run import dry_run_report

        try:
            for line in dry_run_report(cfg, phase_cfg, mode=run_mode, seed=cfg.seed, phase=phase):
                typer.echo(line)
        except TownletError as exc:
            raise fail(exc) from None
        return
    show = not (quiet or as_json) and sys.stdout.isatty()
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("epoch {task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        disable=not show,
    )
    title = f"BC {cfg.config_id}" if phase == PHASE_BC else f"PPO {run_mode} {cfg.config_id}"
    task = progress.add_task(title, total=n_epochs, info="")

    def on_epoch(rec: dict[str, Any]) -> None:
        if phase == PHASE_BC:
            info = f"loss {rec['loss_policy']:.3f}  train acc {rec['train_accuracy']:.3f}"
            if rec["holdout_accuracy"] is not None:
                info += f"  held-out acc {rec['holdout_accuracy']:.3f}"
        else:
            info = (
                f"steps {rec['steps']:,}  sps {rec['sps']:,.0f}  return {rec['episode_return_mean']:.3f}  "
                f"kl {rec['approx_kl']:.4f}"
            )
        progress.update(task, completed=rec["epoch"], info=info)

    try:
        with progress:
            if isinstance(phase_cfg, BCConfig):
                assert replay is not None
                _, out = run_bc(
                    cfg,
                    bc=phase_cfg,
                    epochs=n_epochs,
                    seed=cfg.seed,
                    data=replay,
                    telemetry=telemetry if log_path else None,
                    checkpoint=ckpt,
                    checkpoint_every=section.checkpoint_every if checkpoint_every is None else checkpoint_every,
                    on_epoch=on_epoch,
                )
            else:
                out = run_training(
                    cfg,
                    ppo=phase_cfg,
                    mode=run_mode,
                    epochs=n_epochs,
                    seed=cfg.seed,
                    replay=replay,
                    telemetry=telemetry if log_path else None,
                    checkpoint=ckpt,
                    checkpoint_every=section.checkpoint_every if checkpoint_every is None else checkpoint_every,
                    on_epoch=on_epoch,
                )
    except TownletError as exc:
        raise fail(exc) from None
    last = out.result.records[-1] if out.result.records else {}
    keys = (
        ("loss_policy", "loss_value", "train_accuracy", "holdout_accuracy")
        if phase == PHASE_BC
        else ("loss_total", "approx_kl", "episode_return_mean", "sps", "explained_variance")
    )
    summary = {
        "config_id": cfg.config_id,
        "phase": phase,
        "mode": run_mode,
        "epochs": n_epochs,
        "resumed_from_epoch": out.start_epoch,
        "steps": out.result.steps,
        "seconds": out.result.seconds,
        "checkpoint": str(ckpt),
        "best_checkpoint": str(out.best) if out.best else None,
        "telemetry": str(out.telemetry) if out.telemetry else None,
        "last": {k: last.get(k) for k in keys},
    }
    if as_json:
        typer.echo(json.dumps(summary, sort_keys=True))
        return
    resumed = f", resumed after epoch {out.start_epoch}" if out.start_epoch else ""
    typer.echo(
        f"{'bc: ' if phase == PHASE_BC else ''}trained {n_epochs - out.start_epoch} epochs{resumed} "
        f"({out.result.steps:,} transitions, {out.result.seconds:.1f}s) on {cfg.config_id}; checkpoint {ckpt}"
        + (f"; best {out.best}" if out.best else "")
        + (f"; telemetry {out.telemetry}" if out.telemetry else "")
    )


def _stderr_line(text: str) -> None:
    err_console.print(text, highlight=False, markup=False, soft_wrap=True)


@telemetry_app.command("validate")
def telemetry_validate_cmd(
    log: Annotated[Path, typer.Argument(help="PPO telemetry JSONL.")],
    relative: Annotated[bool, typer.Option("--relative", help="Add percentages to the drift report.")] = False,
    baseline: Annotated[
        Path | None, typer.Option("--baseline", help="Baseline: a telemetry JSONL (matched by epoch) or one object.")
    ] = None,
    drift_threshold: Annotated[
        float | None,
        typer.Option("--drift-threshold", help="Fail when any |relative drift| exceeds this fraction (0.1 = 10%)."),
    ] = None,
    include_rotated: Annotated[
        bool, typer.Option("--include-rotated", help="Also read LOG.N ... LOG.1 (oldest first).")
    ] = False,
) -> None:
    """Check every record's schema (FILE:LINE per problem, exit 1) and report baseline drift."""
    from townlet.telemetry_tools import fmt_num, validate_log

    try:
        report = validate_log(
            log,
            baseline=baseline,
            relative=relative,
            drift_threshold=drift_threshold,
            include_rotated=include_rotated,
        )
    except TownletError as exc:
        raise fail(exc) from None
    for line in report.drift_lines:
        typer.echo(line)
    for problem in report.problems:
        _stderr_line(f"error: {problem}")
    for failure in report.drift_failures:
        _stderr_line(f"error: {failure}")
    if not report.ok:
        raise typer.Exit(1)
    epochs = [e for e in report.epochs if e is not None]
    span = f", epochs {fmt_num(epochs[0])}-{fmt_num(epochs[-1])}" if epochs else ""
    typer.echo(
        f"ok: {log}: {report.records} records valid (telemetry_version {', '.join(report.versions)}{span})"
        + (" within the drift threshold" if drift_threshold is not None else "")
    )


@telemetry_app.command("watch")
def telemetry_watch_cmd(
    log: Annotated[Path, typer.Argument(help="PPO telemetry JSONL.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep reading new lines (across rotation).")] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between polls with --follow.")] = 2.0,
    max_wait: Annotated[
        float, typer.Option("--max-wait", help="With --follow, stop after this many seconds without new data.")
    ] = 30.0,
    as_json: Annotated[bool, typer.Option("--json", help="One normalised JSON record per line.")] = False,
    include_rotated: Annotated[
        bool, typer.Option("--include-rotated", help="First read LOG.N ... LOG.1 (oldest first).")
    ] = False,
    kl_threshold: Annotated[float | None, typer.Option("--kl-threshold", help="Max kl_divergence.")] = None,
    loss_threshold: Annotated[float | None, typer.Option("--loss-threshold", help="Max loss_total.")] = None,
    grad_threshold: Annotated[float | None, typer.Option("--grad-threshold", help="Max grad_norm.")] = None,
    entropy_threshold: Annotated[
        float | None, typer.Option("--entropy-threshold", help="Min batch_entropy_mean.")
    ] = None,
    reward_corr_threshold: Annotated[
        float | None, typer.Option("--reward-corr-threshold", help="Min reward_advantage_corr.")
    ] = None,
    queue_events_min: Annotated[
        float | None, typer.Option("--queue-events-min", help="Min queue_conflict_events (rollout/mixed records).")
    ] = None,
    queue_intensity_min: Annotated[
        float | None,
        typer.Option("--queue-intensity-min", help="Min queue_conflict_intensity_sum (rollout/mixed records)."),
    ] = None,
    shared_meal_min: Annotated[
        float | None, typer.Option("--shared-meal-min", help="Min shared_meal_events (rollout/mixed).")
    ] = None,
    late_help_min: Annotated[
        float | None, typer.Option("--late-help-min", help="Min late_help_events (rollout/mixed).")
    ] = None,
    shift_takeover_max: Annotated[
        float | None, typer.Option("--shift-takeover-max", help="Max shift_takeover_events (rollout/mixed).")
    ] = None,
    chat_quality_min: Annotated[
        float | None, typer.Option("--chat-quality-min", help="Min chat_quality_mean (rollout/mixed).")
    ] = None,
    utility_outage_max: Annotated[
        float | None, typer.Option("--utility-outage-max", help="Max utility_outage_events (rollout/mixed).")
    ] = None,
    shower_complete_min: Annotated[
        float | None, typer.Option("--shower-complete-min", help="Min shower_complete_events (rollout/mixed).")
    ] = None,
    sleep_complete_min: Annotated[
        float | None, typer.Option("--sleep-complete-min", help="Min sleep_complete_events (rollout/mixed).")
    ] = None,
    anneal_bc_min: Annotated[
        float, typer.Option("--anneal-bc-min", help="Min anneal_bc_accuracy on anneal records.")
    ] = 0.9,
    anneal_loss_max: Annotated[
        float,
        typer.Option("--anneal-loss-max", help="Max |loss_total - anneal_loss_baseline| / baseline on anneal records."),
    ] = 0.1,
    anneal_queue_min: Annotated[
        float | None,
        typer.Option(
            "--anneal-queue-min", help="Min queue_conflict_events on anneal records (default 0.85 x baseline)."
        ),
    ] = None,
    anneal_intensity_min: Annotated[
        float | None,
        typer.Option(
            "--anneal-intensity-min",
            help="Min queue_conflict_intensity_sum on anneal records (default 0.85 x baseline).",
        ),
    ] = None,
) -> None:
    """Check thresholds on every record (tail with --follow); exit 1 at the first breach."""
    from townlet.jsonio import canonical_json
    from townlet.telemetry_tools import Breach, LogLine, Thresholds, fmt_num, normalise, text_line, watch_log

    thresholds = Thresholds(
        kl_threshold=kl_threshold,
        loss_threshold=loss_threshold,
        grad_threshold=grad_threshold,
        entropy_threshold=entropy_threshold,
        reward_corr_threshold=reward_corr_threshold,
        queue_events_min=queue_events_min,
        queue_intensity_min=queue_intensity_min,
        shared_meal_min=shared_meal_min,
        late_help_min=late_help_min,
        shift_takeover_max=shift_takeover_max,
        chat_quality_min=chat_quality_min,
        utility_outage_max=utility_outage_max,
        shower_complete_min=shower_complete_min,
        sleep_complete_min=sleep_complete_min,
        anneal_bc_min=anneal_bc_min,
        anneal_loss_max=anneal_loss_max,
        anneal_queue_min=anneal_queue_min,
        anneal_intensity_min=anneal_intensity_min,
    )

    def emit(ln: LogLine, breaches: list[Breach]) -> None:
        typer.echo(canonical_json(normalise(ln, breaches), indent=None) if as_json else text_line(ln, breaches))

    try:
        result = watch_log(
            log,
            thresholds,
            emit=emit,
            follow=follow,
            interval=interval,
            max_wait=max_wait,
            include_rotated=include_rotated,
        )
    except TownletError as exc:
        raise fail(exc) from None
    if result.breach is not None:
        _stderr_line(f"breach: {result.breach.message}")
        raise typer.Exit(1)
    span = f", epochs {fmt_num(result.first_epoch)}-{fmt_num(result.last_epoch)}" if result.records else ""
    summary = (
        f"ok: {log}: {result.records} records{span}, no breaches of {len(thresholds.active())} thresholds "
        f"({result.stopped})"
    )
    if as_json:
        _stderr_line(summary)
    else:
        typer.echo(summary)


@telemetry_app.command("summary")
def telemetry_summary_cmd(
    log: Annotated[Path, typer.Argument(help="PPO telemetry JSONL.")],
    fmt: Annotated[str, typer.Option("--format", help="text | markdown | json.")] = "text",
    baseline: Annotated[
        Path | None, typer.Option("--baseline", help="Compare the latest record with this baseline log or object.")
    ] = None,
    last: Annotated[int | None, typer.Option("--last", help="Only the last N records.")] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write a PNG chart (loss_total, approx_kl, episode_return_mean).")
    ] = None,
    include_rotated: Annotated[
        bool, typer.Option("--include-rotated", help="Also read LOG.N ... LOG.1 (oldest first).")
    ] = False,
) -> None:
    """Summarise a run: latest values, extremes, anneal status, baseline drift; optionally a PNG chart."""
    from townlet.jsonio import canonical_json
    from townlet.telemetry_tools import (
        iter_records,
        load_baseline,
        read_records_strict,
        render_markdown,
        render_text,
        summarise,
        write_plot,
    )

    try:
        if fmt not in ("text", "markdown", "json"):
            raise UsageError(f"--format must be text, markdown or json, got {fmt!r}")
        if last is not None and last < 1:
            raise UsageError(f"--last must be >= 1, got {last}")
        base = load_baseline(baseline) if baseline is not None else None
        lines = read_records_strict(log, include_rotated=include_rotated)
        summary = summarise(lines, log=log, last=last, baseline=base)
        if plot is not None:
            write_plot(list(iter_records(lines[-last:] if last else lines)), plot)
    except TownletError as exc:
        raise fail(exc) from None
    if plot is not None:
        summary["plot"] = str(plot)
    if fmt == "json":
        typer.echo(canonical_json(summary), nl=False)
    elif fmt == "markdown":
        typer.echo(render_markdown(summary) + (f"\n![telemetry]({plot})\n" if plot else ""), nl=False)
    else:
        typer.echo(render_text(summary) + (f"plot written to {plot}\n" if plot else ""), nl=False)


# ---------------------------------------------------------------------------------------------
# Warm-start tools: checkpoint, registry, log, archive (docs/warm_start.md)

RegistryOpt = Annotated[
    Path | None,
    typer.Option("--registry", help="Config registry file (default: configs/config_registry.json of the repo)."),
]


def _registry(path: Path | None) -> Path:
    from townlet.config_registry import default_registry

    return path if path is not None else default_registry()


def _problems(problems: list[str], where: object) -> typer.Exit:
    """Print each problem on stderr, then a count; return Exit(1) to raise."""
    for problem in problems:
        _stderr_line(f"error: {problem}")
    _stderr_line(f"{where}: {len(problems)} problem{'' if len(problems) == 1 else 's'}")
    return typer.Exit(1)


@checkpoint_app.command("list")
def checkpoint_list_cmd(
    folder: Annotated[Path, typer.Argument(help="Folder holding checkpoints.")],
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Also look in sub-folders.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array of rows.")] = False,
    registry: RegistryOpt = None,
) -> None:
    """One row per checkpoint: file, format, created, config label (or hash prefix), steps."""
    from townlet.ckpt_tools import list_dir
    from townlet.jsonio import canonical_json

    try:
        rows = list_dir(folder, _registry(registry), recursive=recursive)
    except TownletError as exc:
        raise fail(exc) from None
    if as_json:
        typer.echo(canonical_json(rows), nl=False)
        return
    if not rows:
        typer.echo(f"no checkpoints in {folder}")
        return
    table = Table(show_header=True, box=None, pad_edge=False)
    for col in ("file", "format", "created", "config", "steps", "note"):
        table.add_column(col, justify="right" if col == "steps" else "left", overflow="fold")
    for row in rows:
        sha = row.get("config_sha256")
        cfg = row.get("config_label") or (str(sha)[:12] if sha else "—")
        steps = (row.get("counters") or {}).get("steps")
        table.add_row(
            escape(row["file"]),
            row["format"],
            str(row.get("created_utc") or "—"),
            escape(cfg),
            "—" if steps is None else f"{steps:,}",
            escape(row.get("problem", "")),
        )
    Console(width=max(Console().width, 120)).print(table, highlight=False)


@checkpoint_app.command("info")
def checkpoint_info_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="X.json or X.safetensors.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
    registry: RegistryOpt = None,
) -> None:
    """The header in brief, with the verification result (weights are checked, not printed)."""
    from townlet.ckpt_tools import info
    from townlet.jsonio import canonical_json

    try:
        out = info(checkpoint, _registry(registry))
    except TownletError as exc:
        raise fail(exc) from None
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
        ("fingerprint", out["fingerprint"]),
        ("seed", out["seed"]),
        ("counters", ", ".join(f"{k} {v:,}" for k, v in sorted(counters.items())) or "—"),
        ("git", f"{git.get('commit')}" + (" (dirty)" if git.get("dirty") else "")),
        ("parent", lineage.get("parent_sha256") or "—"),
        ("weights sha256", out["weights_sha256"]),
        ("verified", "yes" if out["verified"] else f"NO: {len(out['problems'])} problems (run checkpoint verify)"),
    ]
    metadata = out["metadata"] or {}
    lines.append(("metadata", ", ".join(f"{k}={v}" for k, v in sorted(metadata.items())) or "—"))
    for key, value in lines:
        typer.echo(f"{key + ':':<16}{value}")


@checkpoint_app.command("copy")
def checkpoint_copy_cmd(
    src: Annotated[Path, typer.Argument(help="Checkpoint to copy (X.json or X.safetensors).")],
    dest: Annotated[str, typer.Argument(help="Destination file, or folder (existing, or ending in /).")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing destination.")] = False,
) -> None:
    """Copy a checkpoint (weights and header together), atomically, and verify the copy."""
    from townlet.ckpt_tools import copy

    try:
        target, check = copy(src, dest, overwrite=overwrite)
    except TownletError as exc:
        raise fail(exc) from None
    shown = target.weights or target.header
    typer.echo(f"copied {src} -> {shown} (verified; weights sha256 {check.weights_sha256})")


@checkpoint_app.command("extract-config")
def checkpoint_extract_config_cmd(
    path: Annotated[Path, typer.Option("--path", "-p", help="The checkpoint.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the config (.yaml or .json).")],
    fmt: Annotated[str | None, typer.Option("--format", help="yaml | json (default: from --output).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output file.")] = False,
) -> None:
    """Write the checkpoint's embedded config (checked against its config_sha256)."""
    from townlet.ckpt_tools import extract_config

    try:
        if fmt is not None and fmt not in ("yaml", "json"):
            raise UsageError(f"--format must be yaml or json, got {fmt!r}")
        out = extract_config(path, output, fmt=fmt, overwrite=overwrite)
    except TownletError as exc:
        raise fail(exc) from None
    typer.echo(f"wrote the embedded config (sha256 {out['config_sha256']}) to {output}")


@checkpoint_app.command("verify")
def checkpoint_verify_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="X.json or X.safetensors.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object: ok and problems.")] = False,
) -> None:
    """Check format, version, fields, shapes, weights SHA-256, config_sha256 and fingerprint; exit 1
    naming each problem."""
    from townlet.ckpt_tools import verify
    from townlet.jsonio import canonical_json

    try:
        files, check = verify(checkpoint)
    except TownletError as exc:
        raise fail(exc) from None
    if as_json:
        typer.echo(
            canonical_json({"checkpoint": str(checkpoint), "ok": check.ok, "problems": check.problems}), nl=False
        )
        if not check.ok:
            raise typer.Exit(1)
        return
    if not check.ok:
        raise _problems(check.problems, checkpoint)
    assert files is not None and check.header is not None
    typer.echo(
        f"ok: {checkpoint}: {files.kind} checkpoint, {check.n_params:,} parameters, "
        f"config sha256 {check.header.get('config_sha256')}, weights sha256 {check.weights_sha256}"
    )


@registry_app.command("register")
def registry_register_cmd(
    config: Annotated[Path, typer.Argument(help="Config YAML file (validated by the loader).")],
    label: Annotated[str, typer.Option("--label", "-l", help="Human-readable name.")],
    notes: Annotated[str, typer.Option("--notes", help="Free text.")] = "",
    relabel: Annotated[bool, typer.Option("--relabel", help="Change the label of a registered config.")] = False,
    registry: RegistryOpt = None,
) -> None:
    """Register a config under a label, keyed by the SHA-256 of its canonical resolved form."""
    from townlet.config_registry import register

    reg = _registry(registry)
    try:
        done = register(reg, config, label, notes=notes, relabel=relabel)
    except TownletError as exc:
        raise fail(exc) from None
    entry = done.entry
    verb = {"new": "registered", "unchanged": "already registered", "relabelled": "relabelled"}[done.status]
    typer.echo(f"{verb}: {entry['sha256']} {entry['label']!r} ({entry['path']}) in {reg}")


@registry_app.command("lookup")
def registry_lookup_cmd(
    sha: Annotated[str, typer.Argument(metavar="HASH", help="A SHA-256 or a unique prefix (>= 4 hex digits).")],
    as_json: Annotated[bool, typer.Option("--json", help="The whole entry, resolved config included.")] = False,
    registry: RegistryOpt = None,
) -> None:
    """Find a registered config by hash or unique prefix (exit 1 when none matches)."""
    from townlet.config_registry import lookup
    from townlet.jsonio import canonical_json

    try:
        entry = lookup(_registry(registry), sha)
    except TownletError as exc:
        raise fail(exc) from None
    if as_json:
        typer.echo(canonical_json(entry), nl=False)
        return
    typer.echo(f"sha256:     {entry['sha256']}")
    typer.echo(f"label:      {entry['label']}")
    typer.echo(f"path:       {entry['path']}")
    typer.echo(f"registered: {entry['registered_utc']}")
    if entry.get("notes"):
        typer.echo(f"notes:      {entry['notes']}")
    for prev in entry.get("previous_labels", []):
        typer.echo(f"was:        {prev['label']} (until {prev['until_utc']})")


@registry_app.command("diff")
def registry_diff_cmd(
    a: Annotated[str, typer.Argument(help="A config file, or a registered hash (prefix).")],
    b: Annotated[str, typer.Argument(help="A config file, or a registered hash (prefix).")],
    registry: RegistryOpt = None,
) -> None:
    """Key-path differences between two loaded configs; exit 1 when they differ, 0 when equal."""
    from townlet.config_registry import diff_side, key_path_diff

    reg = _registry(registry)
    try:
        left, right = diff_side(a, reg), diff_side(b, reg)
    except TownletError as exc:
        raise fail(exc) from None
    changes = key_path_diff(left.config, right.config)
    if not changes:
        typer.echo(f"equal: {left.name} and {right.name} (sha256 {left.sha256})")
        return
    typer.echo(f"--- {left.name} (sha256 {left.sha256[:12]})")
    typer.echo(f"+++ {right.name} (sha256 {right.sha256[:12]})")
    for change in changes:
        typer.echo(change.render())
    typer.echo(f"{len(changes)} differences")
    raise typer.Exit(1)


@registry_app.command("list")
def registry_list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array (resolved configs left out).")] = False,
    registry: RegistryOpt = None,
) -> None:
    """Every registered config: hash prefix, label, path, registration time."""
    from townlet.config_registry import read_registry
    from townlet.jsonio import canonical_json

    reg = _registry(registry)
    try:
        doc = read_registry(reg)
    except TownletError as exc:
        raise fail(exc) from None
    entries = sorted(doc["entries"].values(), key=lambda e: (str(e.get("registered_utc")), str(e.get("sha256"))))
    if as_json:
        typer.echo(canonical_json([{k: v for k, v in e.items() if k != "config"} for e in entries]), nl=False)
        return
    if not entries:
        typer.echo(f"no configs registered in {reg}")
        return
    for e in entries:
        typer.echo(f"{str(e.get('sha256'))[:12]}  {e.get('registered_utc')}  {e.get('label')}  ({e.get('path')})")


@registry_app.command("validate")
def registry_validate_cmd(registry: RegistryOpt = None) -> None:
    """Check the registry: canonical form (sorted keys, 2-space indent, final newline), entry fields,
    and that every entry's hash matches its stored config; exit 1 naming each problem."""
    from townlet.config_registry import check_registry, read_registry

    reg = _registry(registry)
    try:
        problems = check_registry(reg)
    except TownletError as exc:
        raise fail(exc) from None
    if problems:
        raise _problems(problems, reg)
    typer.echo(f"ok: {reg}: canonical, {len(read_registry(reg)['entries'])} entries")


@registry_app.command("fmt")
def registry_fmt_cmd(registry: RegistryOpt = None) -> None:
    """Rewrite the registry in canonical form (atomically)."""
    from townlet.config_registry import fmt_registry

    reg = _registry(registry)
    try:
        changed = fmt_registry(reg)
    except TownletError as exc:
        raise fail(exc) from None
    typer.echo(f"{'reformatted' if changed else 'already canonical'}: {reg}")


@log_app.command("tail")
def log_tail_cmd(
    log: Annotated[Path, typer.Argument(metavar="PATH", help="A JSONL log.")],
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many final lines to print.")] = 20,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Then print lines as they are appended.")] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between polls with --follow.")] = 0.5,
    max_wait: Annotated[
        float,
        typer.Option("--max-wait", help="With --follow, stop after this many seconds without a new line (0: never)."),
    ] = 300.0,
) -> None:
    """Print the last lines of a log (read from the end); --follow keeps going across truncation and rotation."""
    from townlet.log_tools import follow as follow_log
    from townlet.log_tools import last_lines

    try:
        tail, offset = last_lines(log, lines, complete=follow)
        for line in tail:
            typer.echo(line)
        if follow:
            sys.stdout.flush()

            def emit(line: str) -> None:
                typer.echo(line)
                sys.stdout.flush()

            result = follow_log(log, emit, offset=offset, interval=interval, max_wait=max_wait, note=_stderr_line)
            _stderr_line(f"stopped following {log}: {result.stopped}")
    except TownletError as exc:
        raise fail(exc) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


@log_app.command("validate")
def log_validate_cmd(
    log: Annotated[Path, typer.Argument(metavar="PATH", help="A JSONL log.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object: counts, problems, warnings.")] = False,
) -> None:
    """Check each line: telemetry records against the telemetry schema, episode records (an `episode`
    key) for types, finite numbers and increasing episodes; exit 1 naming each problem (FILE:LINE)."""
    from townlet.jsonio import canonical_json
    from townlet.log_tools import validate_log

    try:
        report = validate_log(log)
    except TownletError as exc:
        raise fail(exc) from None
    if as_json:
        typer.echo(
            canonical_json(
                {
                    "log": str(log),
                    "ok": not report.problems,
                    "telemetry_records": report.telemetry,
                    "episode_records": report.episodes,
                    "bc_records": report.bc,
                    "problems": report.problems,
                    "warnings": report.warnings,
                }
            ),
            nl=False,
        )
        if report.problems:
            raise typer.Exit(1)
        return
    for warning in report.warnings:
        _stderr_line(f"warning: {warning}")
    if report.problems:
        raise _problems(report.problems, log)
    typer.echo(
        f"ok: {log}: {report.records} records valid "
        f"({report.telemetry} telemetry, {report.bc} bc, {report.episodes} episode)"
    )


@archive_app.command("create")
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
) -> None:
    """Bundle checkpoint, log, config and the checkpoint's embedded config into a reproducible .tar.gz."""
    from townlet.archive import create

    try:
        made = create(
            checkpoint, config, log=log, output=output, label=label, registry=_registry(registry), overwrite=overwrite
        )
    except TownletError as exc:
        raise fail(exc) from None
    for note in made.notes:
        _stderr_line(f"note: {note}")
    typer.echo(f"archive: {made.output} ({len(made.metadata['members']) + 1} members, sha256 {made.sha256})")


@archive_app.command("verify")
def archive_verify_cmd(
    archive: Annotated[Path, typer.Argument(help="A .tar.gz made by `archive create`.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object: ok and problems.")] = False,
) -> None:
    """Check every member against metadata.json (nothing is extracted); exit 1 naming each problem."""
    from townlet.archive import verify
    from townlet.jsonio import canonical_json

    try:
        contents = verify(archive)
    except TownletError as exc:
        raise fail(exc) from None
    problems = contents.problems
    if as_json:
        typer.echo(canonical_json({"archive": str(archive), "ok": not problems, "problems": problems}), nl=False)
        if problems:
            raise typer.Exit(1)
        return
    if problems:
        raise _problems(problems, archive)
    typer.echo(f"ok: {archive}: {len(contents.members)} members match metadata.json; the checkpoint verifies")


@archive_app.command("diff")
def archive_diff_cmd(
    archive: Annotated[Path, typer.Option("--archive", help="The archive.")],
    config: Annotated[Path, typer.Option("--config", help="A config file to compare with the archived one.")],
) -> None:
    """Key-path differences from the archived (resolved) config to CONFIG; exit 1 when they differ."""
    from townlet.archive import diff

    try:
        archived_sha, live_sha, changes = diff(archive, config)
    except TownletError as exc:
        raise fail(exc) from None
    if not changes:
        typer.echo(f"equal: {config} matches the config archived in {archive} (sha256 {live_sha})")
        return
    typer.echo(f"--- {archive}:config_resolved.json (sha256 {archived_sha[:12]})")
    typer.echo(f"+++ {config} (sha256 {live_sha[:12]})")
    for change in changes:
        typer.echo(change.render())
    typer.echo(f"{len(changes)} differences")
    raise typer.Exit(1)


@archive_app.command("summary")
def archive_summary_cmd(
    archive: Annotated[Path, typer.Option("--archive", help="The archive.")],
    as_markdown: Annotated[bool, typer.Option("--markdown", help="A Markdown table instead of JSON.")] = False,
    markdown_path: Annotated[
        Path | None, typer.Option("--markdown-path", help="Write the Markdown here (atomically).")
    ] = None,
    check_markdown: Annotated[
        bool, typer.Option("--check-markdown", help="Exit 1 when --markdown-path differs from the archive's summary.")
    ] = False,
) -> None:
    """The archive's metadata (JSON), or a Markdown summary for release notes."""
    from townlet.archive import markdown, stale_markdown, verified
    from townlet.jsonio import atomic_write_text, canonical_json

    try:
        if check_markdown and markdown_path is None:
            raise UsageError("--check-markdown needs --markdown-path")
        if not (as_markdown or markdown_path or check_markdown):
            typer.echo(canonical_json(verified(archive).metadata), nl=False)
            return
        text = markdown(archive)
        if check_markdown:
            assert markdown_path is not None
            stale = stale_markdown(markdown_path, text)
            if stale:
                _stderr_line(f"error: {stale}")
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
    except TownletError as exc:
        raise fail(exc) from None


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
