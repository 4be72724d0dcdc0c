"""`townlet soak` (tools/run_mixed_soak.py): alternating replay and rollout cycles, drift per cycle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from townlet.capture.goldens import DEFAULT_GOLDEN
from townlet.paths import check_output
from townlet.sim.config import load_config

if TYPE_CHECKING:
    from townlet.training.soak import CycleDrift


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def _line(c: CycleDrift) -> str:
    return (
        f"cycle {c.cycle} {c.mode:<7} epochs {c.epochs[0]}-{c.epochs[-1]}: queue events {c.queue_conflict_events:.2f} "
        f"(golden {c.golden_events:g}, {_ratio(c.events_ratio)}), intensity {c.queue_conflict_intensity_sum:.2f} "
        f"(golden {c.golden_intensity_sum:g}, {_ratio(c.intensity_ratio)}), loss {c.loss_total:.4f}: {c.verdict}"
    )


def soak_cmd(
    config: Annotated[Path, typer.Argument(help="Scenario config YAML (it needs a golden entry and scenario.ticks).")],
    cycles: Annotated[int, typer.Option("--cycles", min=1, help="Cycles: odd ones replay, even ones roll out.")] = 4,
    epochs_per_cycle: Annotated[int, typer.Option("--epochs-per-cycle", min=1, help="PPO epochs per cycle.")] = 1,
    num_envs: Annotated[int, typer.Option("--num-envs", min=1, help="Towns rolled out in rollout cycles.")] = 2,
    tolerance: Annotated[
        float, typer.Option("--tolerance", min=0.0, help="Relative drift allowed from the golden (0.15: 15 %).")
    ] = 0.15,
    golden: Annotated[Path, typer.Option("--golden", help="Golden scenario metrics.")] = DEFAULT_GOLDEN,
    capture: Annotated[
        Path | None,
        typer.Option("--capture", help="Replay this capture folder; its metrics are the baseline (not --golden)."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Output folder (default logs/<config_id>/soak).")
    ] = None,
    exit_on_drift: Annotated[bool, typer.Option("--exit-on-drift", help="Exit 1 when any cycle drifts.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
) -> None:
    """The endurance soak of seed 002: one PPO learner, replay and rollout cycles in turn; each cycle's
    queue-conflict events and intensity (per town and scenario window) against the golden baseline."""
    from townlet.training.soak import SoakOptions, default_output, run_soak  # torch: only a run pays for it

    cfg = load_config(config)
    out = output or default_output(cfg)
    check_output(out, "--output", folder=True)
    options = SoakOptions(cycles, out, epochs_per_cycle, num_envs, tolerance, golden, capture)
    result = run_soak(cfg, options, on_cycle=None if as_json else lambda c: typer.echo(_line(c)))
    summary = result.summary(options)
    if as_json:
        typer.echo(json.dumps(summary, sort_keys=True))
    else:
        if capture is None:
            said = "matches the golden" if not result.capture_drift else f"{len(result.capture_drift)} drifts"
            typer.echo(f"capture of {result.scenario}: {said}")
        else:
            typer.echo(f"baseline: the capture {capture}")
        typer.echo(f"soak {result.status}: {len(result.cycles)} cycles; drift per cycle in {summary['files']['drift']}")
    if exit_on_drift and result.status != "PASS":
        raise typer.Exit(1)
