"""The mixed soak (seed 002's follow-up): one PPO learner trained in alternating replay and rollout
cycles on a scenario, each cycle's queue-conflict events and intensity compared with the golden
baseline (`docs/samples/rollout_scenario_stats.json`, the scripted policy's capture of the scenario).

Before the first cycle the scenario is captured with the scripted policy (the replay data) and that
capture is checked against the golden (`capture.goldens.compare`, 2 % / 1e-6). Odd cycles replay the
capture, even cycles roll the learner out in `num_envs` towns, one episode of the scenario's length
per epoch. A cycle's figures are per town and per scenario window (what the golden counts): replay
cycles carry the capture's own totals, rollout cycles divide the epoch's totals by the number of
towns. A cycle drifts when either figure is off the golden by more than `tolerance` (relative; against a zero
golden, the absolute difference: `telemetry.drift.Drift.exceeds`, the rule of `telemetry validate`).
The learner keeps one optimizer and one policy across cycles; the learning rate does not anneal.
With `capture` (seed 002's "artifacts/phase4/ captures as baselines") that capture is replayed and its own
metrics are the baseline; nothing is captured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from townlet.capture.goldens import DEFAULT_GOLDEN, compare, load_golden, read_capture_metrics
from townlet.capture.rollout import capture_rollout
from townlet.errors import UsageError
from townlet.jsonio import atomic_write_text, canonical_json, write_json
from townlet.sim.config import TownConfig
from townlet.sim.env import observation_spec
from townlet.sim.settings import config_folder
from townlet.telemetry.drift import Drift
from townlet.training.data import check_replay_spec, load_replay
from townlet.training.envs import TownTrainEnv
from townlet.training.request import LogOptions
from townlet.training.trainer import Trainer, make_policy

#: The figures a cycle is judged on (telemetry record field = golden `events` field).
FIGURES = ("queue_conflict_events", "queue_conflict_intensity_sum")


@dataclass(frozen=True)
class SoakOptions:
    cycles: int
    output: Path
    epochs_per_cycle: int = 1
    num_envs: int = 2
    tolerance: float = 0.15
    golden: Path = DEFAULT_GOLDEN
    #: Replay this capture and take its metrics as the baseline (seed 002: artifacts/phase4/ captures), instead
    #: of capturing the scenario afresh against the golden file.
    capture: Path | None = None


@dataclass
class CycleDrift:
    """One cycle's queue-conflict figures next to the golden's."""

    cycle: int
    mode: str
    epochs: list[int]
    #: Per town and scenario window, averaged over the cycle's epochs.
    queue_conflict_events: float
    queue_conflict_intensity_sum: float
    golden_events: float
    golden_intensity_sum: float
    events_ratio: float | None
    intensity_ratio: float | None
    #: What drifted beyond the tolerance (empty: within it).
    drift: list[str]
    loss_total: float
    kl_divergence: float

    @property
    def verdict(self) -> str:
        return "DRIFT" if self.drift else "OK"

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


@dataclass
class SoakResult:
    config_id: str
    scenario: str
    cycles: list[CycleDrift] = field(default_factory=list)
    capture_drift: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "DRIFT" if self.capture_drift or any(c.drift for c in self.cycles) else "PASS"

    def summary(self, options: SoakOptions) -> dict[str, Any]:
        return {
            "config_id": self.config_id,
            "scenario": self.scenario,
            "status": self.status,
            "cycles": len(self.cycles),
            "epochs_per_cycle": options.epochs_per_cycle,
            "num_envs": options.num_envs,
            "tolerance": options.tolerance,
            "golden": str(options.capture or options.golden),
            "capture_drift": self.capture_drift,
            "drifted_cycles": [c.cycle for c in self.cycles if c.drift],
            "files": self.files,
        }


def default_output(config: TownConfig) -> Path:
    """`logs/<config_id>/soak`: next to the config's checkpoints."""
    return Path("logs") / config_folder(config.config_id) / "soak"


def _ratio(value: float, golden: float) -> float | None:
    return value / golden if golden else None


def judge(value: float, golden: float, tolerance: float, where: str = "") -> bool:
    """Within `tolerance` of the golden: telemetry's drift rule (relative; against a zero golden, absolute)."""
    return not Drift(None, "", value, golden, where).exceeds(tolerance)


def run_soak(
    config: TownConfig, options: SoakOptions, *, on_cycle: Callable[[CycleDrift], None] | None = None
) -> SoakResult:
    if options.cycles < 1 or options.epochs_per_cycle < 1 or options.num_envs < 1:
        raise UsageError("--cycles, --epochs-per-cycle and --num-envs must be at least 1")
    scenario, ticks = config.scenario_name, config.scenario_ticks
    if options.capture is not None:
        golden = read_capture_metrics(options.capture)
    else:
        golden_all = load_golden(options.golden)
        if scenario not in golden_all:
            known = ", ".join(sorted(golden_all)) or "none"
            raise UsageError(f"{options.golden}: no golden for scenario {scenario!r} (goldens: {known})")
        golden = golden_all[scenario]
    if ticks is None:
        raise UsageError(f"{config.path}: scenario.ticks is not set: the soak compares scenario windows")
    gold = {name: float(golden["events"][name]) for name in FIGURES}
    out = options.output
    capture_dir, log_path, drift_path = (
        options.capture or out / "capture",
        out / "ppo_soak.jsonl",
        out / "soak_drift.jsonl",
    )
    meta = observation_spec(config)
    replay = load_replay(None, capture_dir) if options.capture is not None else None
    if replay is not None:
        check_replay_spec(replay, meta, config.path)  # before anything is written
    for stale in (log_path, drift_path):
        stale.unlink(missing_ok=True)
    result = SoakResult(config.config_id, scenario)
    if replay is None:
        captured = capture_rollout(config, capture_dir)
        result.capture_drift = [str(d) for d in compare(golden, captured.metrics)]
        replay = load_replay(None, capture_dir)
    check_replay_spec(replay, meta, config.path)

    ppo = config.sections.ppo.model_copy(
        update={"anneal_lr": False, "rollout_ticks": ticks, "num_envs": options.num_envs, "episode_ticks": ticks}
    )
    torch.manual_seed(config.seed)
    env = TownTrainEnv(config, ppo.num_envs, config.seed, ppo.episode_ticks)
    policy = make_policy(meta, int(meta["obs_dim"]), len(meta["action_names"]), ppo.hidden)
    trainer = Trainer(
        env, ppo, seed=config.seed, policy=policy,
        replay=lambda net: replay.dataset(net, ppo.gamma, ppo.gae_lambda),
        replay_baseline=replay.baseline(), replay_events=replay.events, obs_meta=meta,
    )  # fmt: skip
    log = LogOptions(log_path)
    lines: list[dict[str, Any]] = []
    for cycle in range(1, options.cycles + 1):
        mode = "replay" if cycle % 2 else "rollout"
        start = trainer.epoch
        records = trainer.run(start + options.epochs_per_cycle, data_mode=mode, telemetry=log.open(start)).records
        towns = 1 if mode == "replay" else ppo.num_envs
        mean = {name: sum(float(r[name]) for r in records) / len(records) / towns for name in FIGURES}
        drift = [
            f"{name} {mean[name]:.4g} vs golden {gold[name]:.4g}"
            for name in FIGURES
            if not judge(mean[name], gold[name], options.tolerance)
        ]
        done = CycleDrift(
            cycle=cycle,
            mode=mode,
            epochs=[int(r["epoch"]) for r in records],
            queue_conflict_events=mean["queue_conflict_events"],
            queue_conflict_intensity_sum=mean["queue_conflict_intensity_sum"],
            golden_events=gold["queue_conflict_events"],
            golden_intensity_sum=gold["queue_conflict_intensity_sum"],
            events_ratio=_ratio(mean["queue_conflict_events"], gold["queue_conflict_events"]),
            intensity_ratio=_ratio(mean["queue_conflict_intensity_sum"], gold["queue_conflict_intensity_sum"]),
            drift=drift,
            loss_total=float(records[-1]["loss_total"]),
            kl_divergence=float(records[-1]["kl_divergence"]),
        )
        result.cycles.append(done)
        lines.append(done.record())
        _write_jsonl(drift_path, lines)
        if on_cycle is not None:
            on_cycle(done)
    result.files = {
        "capture": str(capture_dir),
        "telemetry": str(log_path),
        "drift": str(drift_path),
        "summary": str(out / "soak_summary.json"),
    }
    write_json(out / "soak_summary.json", {**result.summary(options), "per_cycle": lines})
    return result


def _write_jsonl(path: Path, lines: list[dict[str, Any]]) -> None:
    """The cycles so far, one JSON object per line (rewritten whole, atomically, after each cycle)."""
    atomic_write_text(path, "".join(canonical_json(rec, indent=None) + "\n" for rec in lines))
