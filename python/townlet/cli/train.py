"""`townlet train`."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from townlet.capture.rollout import capture_rollout
from townlet.cli.common import strict_bool
from townlet.cli.progress import TrainProgress, ppo_describer
from townlet.cli.train_outputs import run_logged, shadow_target
from townlet.errors import UsageError
from townlet.paths import check_output
from townlet.sim.config import TownConfig, load_config
from townlet.sim.settings import BCConfig, PPOConfig
from townlet.training.bc_gate import GATE_FIELDS

if TYPE_CHECKING:  # torch comes with the training modules: imported where a run needs them
    from townlet.training.data import ReplayData
    from townlet.training.request import LogOptions, RunOutputs


def train_cmd(
    config_arg: Annotated[Path | None, typer.Argument(metavar="CONFIG", help="Config YAML file.")] = None,
    config_opt: Annotated[
        Path | None, typer.Option("--config", "-c", help="Config YAML file (instead of CONFIG).")
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode",
            help="rollout | replay | mixed (PPO), bc (behaviour cloning), memory (recurrent PPO, --arch), bc_memory "
            "(behaviour cloning of a memory policy on sequences, --arch) or anneal "
            "(BC -> PPO stages, exit 0 PASS, 3 HOLD, 4 FAIL); default: the config's.",
        ),
    ] = None,
    anneal_log_dir: Annotated[
        Path | None,
        typer.Option(
            "--anneal-log-dir", help="--mode anneal: where anneal_results.json goes (training.anneal.log_dir)."
        ),
    ] = None,
    train_ppo: Annotated[bool, typer.Option("--train-ppo", help="Train PPO (implied by every PPO mode).")] = False,
    capture_dir: Annotated[
        Path | None, typer.Option("--capture-dir", help="Replay or BC data: a capture folder.")
    ] = None,
    replay_manifest: Annotated[Path | None, typer.Option("--replay-manifest", help="Replay data: a manifest.")] = None,
    bc_manifest: Annotated[
        Path | None,
        typer.Option(
            "--bc-manifest",
            help="BC data: a dataset manifest (data/bc_datasets/manifests/<set>.json, checksums verified), "
            "a catalogue dataset name, or a capture manifest.",
        ),
    ] = None,
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
    kickstart_coef: Annotated[
        float | None,
        typer.Option("--kickstart-coef", min=0.0, help="PPO: weight of the pull to the expert (ppo.kickstart_coef)."),
    ] = None,
    kickstart_until: Annotated[
        float | None,
        typer.Option("--kickstart-until", help="PPO: share of the run the pull fades over (ppo.kickstart_until)."),
    ] = None,
    kickstart_on: Annotated[
        str | None,
        typer.Option("--kickstart-on", help="PPO: the states kickstarted: all, duties or shift (ppo.kickstart_on)."),
    ] = None,
    kickstart_final: Annotated[
        float | None,
        typer.Option(
            "--kickstart-final", min=0.0, help="PPO: the weight the pull falls to and keeps (ppo.kickstart_final)."
        ),
    ] = None,
    ent_coef_final: Annotated[
        float | None,
        typer.Option(
            "--ent-coef-final", min=0.0, help="PPO: the entropy coefficient the run anneals to (ppo.ent_coef_final)."
        ),
    ] = None,
    overlap: Annotated[
        bool | None,
        typer.Option(
            "--overlap/--no-overlap",
            help="PPO: collect the next epoch in a process of its own while learning, one update behind (ppo.overlap).",
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0)] = None,
    arch: Annotated[
        str | None,
        typer.Option("--arch", help="--mode memory|bc_memory: lstm | gru | attention (training.memory.arch)."),
    ] = None,
    shadow_dir: Annotated[
        Path | None,
        typer.Option(
            "--shadow-dir",
            help="Where the trained policy is published as a promotion candidate, under <config_id>/ "
            "(default: the config's ops.promotion.shadow_dir, snapshots/shadow).",
        ),
    ] = None,
    no_shadow: Annotated[
        bool, typer.Option("--no-shadow", help="Do not publish the trained policy as a candidate.")
    ] = False,
    tensorboard: Annotated[
        Path | None,
        typer.Option("--tensorboard", help="Also write the epoch telemetry scalars as TensorBoard event files here."),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            help="--mode rollout: collect on shards, local (in this process) or ray (Ray actors; pip install "
            "'townlet[ray]'); the same seed gives the same checkpoint whatever the backend and shard count.",
        ),
    ] = None,
    shards: Annotated[
        int | None, typer.Option("--shards", min=1, help="--backend: split the towns over N shards (default 1).")
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option("--ray-address", help="--backend ray: the cluster to join, HOST:PORT (default: a private one)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Show progress on stderr (epoch, agent-steps/s, return, KPIs, time left); default: on a terminal.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON summary at the end.")] = False,
) -> None:
    """Train a phase on a config (seeds 000-002, 004): PPO (rollout, replay or mixed) or behaviour cloning (bc)."""
    config = _one_config(config_arg, config_opt)
    if mode == "anneal" or (mode is None and load_config(config, seed=seed).sections.training.mode == "anneal"):
        given = {
            "--train-ppo": train_ppo, "--capture-dir": capture_dir, "--replay-manifest": replay_manifest,
            "--epochs": epochs, "--rollout-ticks": rollout_ticks, "--rollout-save-dir": rollout_save_dir,
            "--ppo-log-frequency": ppo_log_frequency != 1, "--ppo-log-max-entries": ppo_log_max_entries,
            "--bc-log": bc_log, "--checkpoint-every": checkpoint_every, "--warm-start-save": checkpoint,
            "--warm-start-load": warm_start_load, "--allow-mismatch": allow_mismatch, "--fresh": fresh,
            "--dry-run": dry_run, "--num-envs": num_envs, "--learning-rate": learning_rate, "--gamma": gamma,
            "--gae-lambda": gae_lambda, "--clip-coef": clip_coef, "--ent-coef": ent_coef, "--vf-coef": vf_coef,
            "--update-epochs": update_epochs, "--num-minibatches": num_minibatches,
            "--max-grad-norm": max_grad_norm, "--target-kl": target_kl, "--kickstart-coef": kickstart_coef,
            "--kickstart-until": kickstart_until, "--kickstart-on": kickstart_on, "--kickstart-final": kickstart_final,
            "--ent-coef-final": ent_coef_final, "--arch": arch, "--overlap": overlap,
            "--backend": backend, "--shards": shards, "--ray-address": ray_address,
            "--shadow-dir": shadow_dir, "--no-shadow": no_shadow, "--tensorboard": tensorboard,
        }  # fmt: skip
        unused = [flag for flag, value in given.items() if value not in (None, False)]
        if unused:
            raise UsageError(f"{', '.join(unused)}: not used by --mode anneal (training.anneal configures its stages)")
        from townlet.cli.train_anneal import anneal_cmd

        anneal_cmd(config, seed=seed, log_dir=anneal_log_dir, ppo_log=ppo_log, manifest=bc_manifest, as_json=as_json)
        return
    if anneal_log_dir is not None:
        raise UsageError("--anneal-log-dir: only used by --mode anneal")
    # torch takes about a second to import: only a training run pays for it, not --help or the other verbs.
    from townlet.training.run import TrainRequest, check_outputs, choose_phase, dry_run_report, plan

    flags = {
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
        "kickstart_coef": kickstart_coef,
        "kickstart_until": kickstart_until,
        "kickstart_on": kickstart_on,
        "kickstart_final": kickstart_final,
        "ent_coef_final": ent_coef_final,
        "learning_rate": learning_rate,
        "arch": arch,
        "overlap": overlap,
    }
    request = TrainRequest(
        config=config,
        seed=seed,
        mode=mode,
        epochs=epochs,
        overrides={name: value for name, value in flags.items() if value is not None},
        capture_dir=capture_dir,
        replay_manifest=replay_manifest,
        bc_manifest=bc_manifest,
        rollout_save_dir=rollout_save_dir,
        ppo_log=ppo_log,
        bc_log=bc_log,
        log_frequency=ppo_log_frequency,
        log_max_entries=ppo_log_max_entries,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        warm_start_load=warm_start_load,
        fresh=fresh,
        allow_mismatch=allow_mismatch,
        backend=backend,
        shards=shards,
        ray_address=ray_address,
    )
    choice = choose_phase(request)
    trains = rollout_save_dir is None or mode is not None or train_ppo
    if rollout_save_dir is not None:
        check_output(rollout_save_dir, "--rollout-save-dir", folder=True)
    candidate: Path | None = None
    if trains:
        check_outputs(request, choice)  # before the capture, too
        candidate = shadow_target(choice.config, request.checkpoint or Path(choice.section.warm_start.save_path),
                                  shadow_dir, off=no_shadow, given=checkpoint is not None)  # fmt: skip
        if tensorboard is not None:
            check_output(tensorboard, "--tensorboard", folder=True)
    if rollout_save_dir is not None:
        try:
            captured = capture_rollout(choice.config, rollout_save_dir, ticks=rollout_ticks)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        for line in captured.notices:
            notice(line)
        typer.echo(f"captured {len(captured.samples)} samples into {rollout_save_dir}")
        if not trains:
            return
    env_allow = strict_bool(os.environ.get("ALLOW_MISMATCH", ""), "ALLOW_MISMATCH")
    the_plan = plan(dataclasses.replace(request, allow_mismatch=allow_mismatch or env_allow), choice)
    if dry_run:
        for line in dry_run_report(the_plan):
            typer.echo(line)
        return
    phase, cfg = the_plan.phase, the_plan.config
    if progress is None:
        mode_shown = "live" if not (quiet or as_json) and sys.stderr.isatty() else "off"
    else:
        mode_shown = ("live" if sys.stderr.isatty() else "lines") if progress else "off"
    day_ticks = int(cfg.world["world"].get("ticks_per_day", 1440))
    describe = ppo_describer(day_ticks) if phase in ("ppo", "memory") else _bc_progress
    title = TITLES[phase](the_plan.mode)
    with TrainProgress(title=title, total=the_plan.epochs, mode=mode_shown, describe=describe) as shown:
        out = run_logged(the_plan, shown.on_epoch, tensorboard, notice)
    if candidate is not None and the_plan.checkpoint is not None:
        from townlet.ops.promotion_policy import publish_candidate

        candidate = publish_candidate(the_plan.checkpoint, candidate)
    last = out.result.records[-1] if out.result.records else {}
    summary = {
        "config_id": cfg.config_id,
        "phase": phase,
        "mode": the_plan.mode,
        "epochs": the_plan.epochs,
        "resumed_from_epoch": out.start_epoch,
        "steps": out.result.steps,
        "seconds": out.result.seconds,
        "checkpoint": str(the_plan.checkpoint),
        "best_checkpoint": str(out.best) if out.best else None,
        "telemetry": str(out.telemetry) if out.telemetry else None,
        "candidate": str(candidate) if candidate else None,
        "tensorboard": str(tensorboard) if tensorboard else None,
        "last": {k: last.get(k) for k in SUMMARY_KEYS[phase]},
    }
    if phase in ("bc", "bc_memory"):
        summary["gate"] = {k: last.get(k) for k in BC_GATE_KEYS}
    if as_json:
        typer.echo(json.dumps(summary, sort_keys=True))
        return
    resumed = f", resumed after epoch {out.start_epoch}" if out.start_epoch else ""
    label = f"{phase}: " if phase in ("bc", "bc_memory") else ""
    typer.echo(
        f"{label}trained {the_plan.epochs - out.start_epoch} epochs{resumed} "
        f"({out.result.steps:,} transitions, {out.result.seconds:.1f}s) on {cfg.config_id}; "
        f"checkpoint {the_plan.checkpoint}"
        + (f"; best {out.best}" if out.best else "")
        + (f"; telemetry {out.telemetry}" if out.telemetry else "")
        + (f"; candidate {candidate}" if candidate else "")
    )
    if phase in ("bc", "bc_memory") and "gate_passed" in last:
        typer.echo(_bc_gate_line(last))


def _one_config(positional: Path | None, option: Path | None) -> Path:
    """CONFIG or --config CONFIG (seed 003's form): one of them, or both naming the same file."""
    if positional is None:
        if option is None:
            raise UsageError("missing the config: give CONFIG or --config CONFIG (see 'townlet train --help')")
        return option
    if option is not None and option != positional:
        raise UsageError(
            f"two configs given: {positional} and --config {option}; give one (see 'townlet train --help')"
        )
    return positional


# How each phase is shown: the progress title, the progress line of an epoch, the summarised fields.
TITLES: dict[str, Callable[[str], str]] = {
    "ppo": lambda mode: f"PPO {mode}",
    "bc": lambda mode: "BC",
    "memory": lambda mode: "recurrent PPO",
    "bc_memory": lambda mode: "recurrent BC",
}


def _bc_progress(rec: dict[str, Any]) -> str:
    info = f"loss {rec['loss_policy']:.3f}  train acc {rec['train_accuracy']:.3f}"
    if rec["holdout_accuracy"] is not None:
        info += f"  held-out acc {rec['holdout_accuracy']:.3f}"
        if rec.get("holdout_baseline_accuracy") is not None:
            info += f" (majority {rec['holdout_baseline_accuracy']:.3f})"
    return info


#: The gate of a bc run (`training.bc_gate`), in `--json`'s `gate`: the fields its checkpoint keeps, less the epoch.
BC_GATE_KEYS = tuple(k for k in GATE_FIELDS if k != "epoch")


def _bc_gate_line(rec: dict[str, Any]) -> str:
    """`bc gate: PASS|FAIL ...`: the held-out accuracy against the threshold and the majority baseline."""
    verdict = "PASS" if rec["gate_passed"] else "FAIL"
    if rec["holdout_accuracy"] is None:
        return f"bc gate: {verdict}: {rec['gate_reason']}"
    recall = ", ".join(f"{name} {value:.2f}" for name, value in sorted(rec["holdout_recall"].items()))
    line = (
        f"bc gate: {verdict}: held-out accuracy {rec['holdout_accuracy']:.3f} on {rec['heldout_trajectories']} "
        f"trajectories (trained on {rec['train_trajectories']}), threshold {rec['gate_threshold']:.3f}, "
        f"majority baseline {rec['holdout_baseline_accuracy']:.3f} ({rec['holdout_majority_action']}); "
        f"recall: {recall}"
    )
    return line + (f"\nbc gate: {rec['gate_reason']}" if rec["gate_reason"] else "")


SUMMARY_KEYS = {
    "ppo": ("loss_total", "approx_kl", "episode_return_mean", "sps", "explained_variance"),
    "bc": ("loss_policy", "loss_value", "train_accuracy", "holdout_accuracy"),
    "bc_memory": ("loss_policy", "loss_value", "train_accuracy", "holdout_accuracy", "arch"),
    "memory": ("loss_total", "approx_kl", "episode_return_mean", "sps", "explained_variance", "arch"),
}


def notice(line: str) -> None:
    """A line the run wants read (a warm start despite mismatches, where a run starts from)."""
    typer.echo(line, err=True)


# -- the same runs from Python, on settings already resolved (tests, notebooks) -----------------


def run_training(
    config: TownConfig,
    *,
    ppo: PPOConfig,
    mode: str,
    epochs: int,
    seed: int,
    replay: ReplayData | None,
    telemetry: LogOptions | None,
    checkpoint: Path | None,
    checkpoint_every: int = 0,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> RunOutputs:
    """A ppo run as `townlet train` reports it: `ppo` is the final section (warm-start paths included)."""
    from townlet.training.run import plan_phase, run  # torch: see train_cmd

    planned = plan_phase(config, ppo, mode=mode, epochs=epochs, seed=seed, data=replay, checkpoint=checkpoint,
                         checkpoint_every=checkpoint_every, log=telemetry)  # fmt: skip
    return run(planned, on_epoch=on_epoch, on_notice=notice)


def run_bc(
    config: TownConfig,
    *,
    bc: BCConfig,
    epochs: int,
    seed: int,
    data: ReplayData,
    telemetry: LogOptions | None,
    checkpoint: Path | None,
    checkpoint_every: int = 0,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[list[dict[str, Any]], RunOutputs]:
    """A bc run as `townlet train` reports it; returns the epoch records and the outputs."""
    from townlet.training.run import plan_phase, run  # torch: see train_cmd

    planned = plan_phase(config, bc, mode="bc", epochs=epochs, seed=seed, data=data, checkpoint=checkpoint,
                         checkpoint_every=checkpoint_every, log=telemetry)  # fmt: skip
    out = run(planned, on_epoch=on_epoch, on_notice=notice)
    return out.result.records, out
