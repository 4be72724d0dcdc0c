"""`townlet train`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from townlet.capture.rollout import capture_rollout
from townlet.cli.common import strict_bool
from townlet.errors import UsageError
from townlet.sim.config import load_config
from townlet.sim.settings import MODES, BCConfig, PPOConfig
from townlet.telemetry.records import TelemetryWriter


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
    from townlet.training.run import PHASE_BC, PHASE_PPO, ReplayData, load_replay, run_bc, run_training

    cfg = load_config(config, seed=seed)
    section = cfg.sections.training
    run_mode = mode or section.mode
    if run_mode not in (*MODES, "bc"):
        raise UsageError(f"--mode must be one of {', '.join((*MODES, 'bc'))}, got {run_mode!r}")
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
            raise UsageError(f"{flags}: PPO options, not used by --mode bc")
        overrides = {"learning_rate": learning_rate} if learning_rate is not None else {}

    base: PPOConfig | BCConfig = cfg.sections.bc if phase == PHASE_BC else cfg.sections.ppo
    try:  # validated like the config's section (model_copy would skip the bounds)
        phase_cfg = type(base).model_validate({**base.model_dump(), **overrides})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UsageError(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}") from None
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
    except ValueError as exc:
        raise UsageError(str(exc)) from None

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
    env_allow = strict_bool(os.environ.get("ALLOW_MISMATCH", ""), "ALLOW_MISMATCH")
    warm = phase_cfg.warm_start
    if fresh and warm_start_load is not None:
        raise UsageError("--fresh and --warm-start-load contradict each other; give one")
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
        raise UsageError(f"{config}: {phase}.warm_start: {clash}")
    if dry_run:
        from townlet.training.run import dry_run_report

        for line in dry_run_report(cfg, phase_cfg, mode=run_mode, seed=cfg.seed, phase=phase):
            typer.echo(line)
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
