"""The one entry point for every training phase: request -> plan -> run.

`plan(request)` resolves what `townlet train` was asked (mode -> phase, flag overrides validated like
the config's section, data, telemetry options, `--fresh` / `--warm-start-load`, the warm-start
checkpoint) and refuses what cannot run, training nothing and writing nothing; `dry_run_report`
says what it found. `run(plan)` trains: the phase builds its trainer, loads the warm start, runs
the epochs and saves. Nothing here prints: `on_epoch` gets each record, `on_notice` each line a
user should read (the CLI prints those on stderr).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from townlet.errors import UsageError
from townlet.paths import check_output
from townlet.sim.config import TownConfig, load_config
from townlet.sim.env import observation_spec
from townlet.sim.settings import best_path_for
from townlet.telemetry.writer import TelemetryWriter
from townlet.training.data import ReplayData, check_replay_spec
from townlet.training.phases import PHASES, Phase, phase_for_mode
from townlet.training.request import (
    BACKENDS,
    Backend,
    EpochCallback,
    LogOptions,
    PhaseSection,
    RunOutputs,
    TrainPlan,
    TrainRequest,
)
from townlet.training.warm_start import Notify, plan_warm_start


@dataclass(frozen=True)
class PhaseChoice:
    """The first half of planning: the config, the phase the mode selects and its section with
    the flag overrides applied (a capture made before training needs no more)."""

    config: TownConfig
    phase: Phase
    mode: str
    section: PhaseSection


def choose_phase(request: TrainRequest) -> PhaseChoice:
    """Load the config, pick the phase and apply the overrides it takes, validated like the
    config's section."""
    config = load_config(request.config, seed=request.seed)
    mode = request.mode or config.sections.training.mode
    phase = phase_for_mode(mode)
    unused = [
        name
        for name in request.overrides
        if name not in phase.overrides and not (name == "rollout_ticks" and request.rollout_save_dir)
    ]
    if unused:
        flags = ", ".join("--" + name.replace("_", "-") for name in unused)
        hint = "; behaviour cloning of a memory policy is --mode bc_memory --arch A" if "arch" in unused else ""
        raise UsageError(f"{flags}: PPO options, not used by --mode {mode}{hint}")
    overrides = {name: value for name, value in request.overrides.items() if name in phase.overrides}
    base = phase.section(config)
    try:  # model_copy would skip the bounds
        section = type(base).model_validate({**base.model_dump(), **overrides})
    except ValidationError as exc:
        first = exc.errors()[0]
        if not first["loc"]:  # a rule across keys (the config's and the flags'): its message names them
            raise UsageError(f"{request.config}: {first['msg'].removeprefix('Value error, ')}") from None
        raise UsageError(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}") from None
    return PhaseChoice(config, phase, mode, per_config(section, config))


def per_config(section: PhaseSection, config: TownConfig) -> PhaseSection:
    """`section` with `{config_id}` in its warm-start paths filled in (a config built by hand
    rather than by `load_config` may still hold it): `logs/<config_id>/<phase>/checkpoints/...`."""
    warm = section.warm_start.for_config(config.config_id)
    return section if warm is section.warm_start else section.model_copy(update={"warm_start": warm})


def check_outputs(request: TrainRequest, choice: PhaseChoice) -> None:
    """Refuse, before anything is loaded or trained, a log or checkpoint path that could not be
    written (one line naming the path and the option or config key)."""
    phase, warm = choice.phase, choice.section.warm_start
    log = phase.log_path(request)
    if log is not None:
        check_output(log, f"--{phase.name}-log")
    if request.checkpoint is not None:
        save, option = request.checkpoint, "--warm-start-save"
    else:
        save, option = Path(warm.save_path), f"{phase.name}.warm_start.save_path"
    check_output(save, option)
    if warm.best_path:
        check_output(warm.best_path, f"{phase.name}.warm_start.best_path")
    else:
        check_output(best_path_for(str(save)), f"{option} (its best-checkpoint sibling)")


def plan(request: TrainRequest, choice: PhaseChoice | None = None) -> TrainPlan:
    """Everything the run needs, resolved and validated (`choice`: `choose_phase(request)`,
    already made)."""
    choice = choice or choose_phase(request)
    check_outputs(request, choice)
    config, phase, mode, section = choice.config, choice.phase, choice.mode, choice.section
    backend = plan_backend(request, phase.name, mode, section)
    if getattr(section, "kickstart_coef", 0) > 0 and mode != "rollout":
        # Replayed rows carry no expert action: the term would silently vanish from the joined rows.
        raise UsageError(f"ppo.kickstart_coef: kickstarting labels rollout states (--mode rollout), not --mode {mode}")
    if getattr(section, "overlap", False) and mode != "rollout":
        raise UsageError(f"ppo.overlap: collects rollouts ahead (--mode rollout), not --mode {mode}")
    log_path = phase.log_path(request)
    try:
        data = phase.load_data(request, config, section, mode)
        if log_path is not None:  # bad --ppo-log-* values fail here, before anything is trained
            TelemetryWriter.check_options(request.log_frequency, request.log_max_entries)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if request.fresh and request.warm_start_load is not None:
        raise UsageError("--fresh and --warm-start-load contradict each other; give one")
    warm = section.warm_start
    load = None if request.fresh else request.warm_start_load or (Path(warm.load_path) if warm.load_path else None)
    checkpoint = request.checkpoint or Path(warm.save_path)
    warm = warm.model_copy(
        update={
            "load_path": str(load) if load else None,
            "inherit": None if request.fresh else warm.inherit,
            "save_path": str(checkpoint),
            "allow_mismatch": warm.allow_mismatch or request.allow_mismatch,
        }
    )
    clash = warm.clash()
    if clash:
        raise UsageError(f"{request.config}: {phase.name}.warm_start: {clash}")
    every = request.checkpoint_every
    planned = plan_phase(
        config,
        section.model_copy(update={"warm_start": warm}),
        mode=mode,
        epochs=request.epochs or phase.default_epochs(config, section),
        seed=config.seed,
        data=data,
        checkpoint=checkpoint,
        checkpoint_every=config.sections.training.checkpoint_every if every is None else every,
        log=LogOptions(log_path, request.log_frequency, request.log_max_entries) if log_path else None,
    )
    return dataclasses.replace(planned, backend=backend) if backend is not None else planned


def plan_backend(request: TrainRequest, phase: str, mode: str, section: PhaseSection) -> Backend | None:
    """`--backend/--shards/--ray-address` checked against the run (None: no --backend)."""
    if request.backend is None:
        given = [
            flag for flag, value in (("--shards", request.shards), ("--ray-address", request.ray_address)) if value
        ]
        if given:
            raise UsageError(f"{', '.join(given)}: needs --backend local|ray")
        return None
    if request.backend not in BACKENDS:
        raise UsageError(f"--backend {request.backend}: one of {', '.join(BACKENDS)}")
    if phase != "ppo" or mode != "rollout":
        raise UsageError(f"--backend: shards collect PPO rollouts (--mode rollout), not --mode {mode}")
    if request.ray_address and request.backend != "ray":
        raise UsageError("--ray-address: needs --backend ray")
    if getattr(section, "kickstart_coef", 0) > 0:
        raise UsageError("--backend: shards collect without the expert's actions; ppo.kickstart_coef must be 0")
    if getattr(section, "overlap", False):
        raise UsageError("--backend: shards already collect in parallel; ppo.overlap (--overlap) must be off")
    shards, towns = request.shards or 1, getattr(section, "num_envs", 1)
    if not 1 <= shards <= towns:
        raise UsageError(f"--shards {shards}: between 1 and the run's towns (ppo.num_envs {towns})")
    if request.backend == "ray":
        from townlet.training.ray_cluster import check_address, require_ray

        require_ray()
        if request.ray_address:
            check_address(request.ray_address)
    return Backend(request.backend, shards, request.ray_address)


def plan_phase(
    config: TownConfig,
    section: PhaseSection,
    *,
    mode: str,
    epochs: int,
    seed: int,
    data: ReplayData | None,
    checkpoint: Path | None,
    checkpoint_every: int = 0,
    log: LogOptions | None = None,
) -> TrainPlan:
    """The plan for a phase whose section is already final (its warm-start paths included):
    checks the data and the warm start against the config's observation/action spec."""
    phase = phase_for_mode(mode)
    section = per_config(section, config)
    meta = observation_spec(config)
    if data is not None:
        check_replay_spec(data, meta, config.path)
    warm = plan_warm_start(config, section, phase.name, meta=meta)
    planned = TrainPlan(config, phase.name, mode, section, epochs, seed, data, checkpoint, checkpoint_every, log,
                        meta, warm)  # fmt: skip
    return phase.check_plan(planned)


def dry_run_report(plan: TrainPlan) -> list[str]:
    """What the run would load and write (`plan` has already refused paths it could not write)."""
    config, phase = plan.config, plan.phase
    lines = [f"config ok: {config.path} ({config.config_id}), phase {phase}, mode {plan.mode}"]
    lines.append(("warm start ok: " if plan.warm.check else "") + plan.warm.describe(phase))
    warm = plan.section.warm_start
    for label, target in (("save path", warm.save_path), ("best path", warm.best())):
        lines.append(f"{label} ok: {Path(target)}")
    if plan.backend is not None:
        lines.append(f"rollouts: {plan.backend.describe()}")
    lines.append("dry run: nothing trained, nothing written")
    return lines


def run(plan: TrainPlan, *, on_epoch: EpochCallback | None = None, on_notice: Notify | None = None) -> RunOutputs:
    """Train as planned. `on_notice` gets, when they happen, the lines a user should read (a
    warm start despite mismatches, where the run starts from); `RunOutputs.notices` keeps them."""
    notices: list[str] = []

    def notify(line: str) -> None:
        notices.append(line)
        if on_notice is not None:
            on_notice(line)

    if plan.backend is not None:
        from townlet.training.sharded_run import run_sharded  # Ray, when used, only then

        out = run_sharded(plan, plan.backend, on_epoch=on_epoch, notify=notify)
    else:
        out = PHASES[plan.phase].run(plan, on_epoch=on_epoch, notify=notify)
    return dataclasses.replace(out, notices=notices)


__all__ = [
    "PhaseChoice",
    "RunOutputs",
    "TrainPlan",
    "TrainRequest",
    "check_outputs",
    "choose_phase",
    "dry_run_report",
    "plan",
    "plan_phase",
    "run",
]
