"""`townlet train --mode anneal`: run the anneal (`townlet.training.anneal`), print its verdict, exit 0 PASS,
3 HOLD, 4 FAIL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from townlet.cli.common import stderr_line
from townlet.jsonio import canonical_json
from townlet.sim.config import load_config
from townlet.training.anneal_results import EXIT_CODES


def describe_stage(stage: dict[str, Any]) -> str:
    """One line per stage: what it measured and whether it passed."""
    verdict = "passed" if stage["passed"] else "FAILED" if stage["mode"] == "bc" else "flagged"
    head = f"stage {stage['stage']} {stage['mode']}: {verdict}"
    if stage["mode"] == "bc":
        acc, base = stage["accuracy"], stage["baseline_accuracy"]
        shown = "n/a" if acc is None else f"{acc:.3f}"
        baseline = "" if base is None else f", majority baseline {base:.3f}"
        return f"{head} (held-out accuracy {shown}, threshold {stage['threshold']:.3f}{baseline})"
    drift = f", loss drift {stage['loss_drift'] * 100:+.1f}%" if stage["loss_drift"] is not None else ""
    return (
        f"{head} ({stage['data_mode']}, {stage['epochs']} epochs, anneal ratio {stage['anneal_ratio']:g}: "
        f"loss_total {stage['loss_total']:.4g}, kl {stage['kl']:.3g}, queue events "
        f"{stage['queue_conflict_events']:g}{drift})"
    )


def anneal_cmd(
    config: Path,
    *,
    seed: int | None,
    log_dir: Path | None,
    ppo_log: Path | None,
    manifest: Path | None,
    as_json: bool,
) -> None:
    # torch: only an anneal run pays for it
    from townlet.training.anneal import RESULTS_FILE, default_log_dir
    from townlet.training.harness import TrainingHarness

    cfg = load_config(config, seed=seed)
    harness = TrainingHarness(cfg)
    folder = log_dir or default_log_dir(cfg)
    results = harness.run_anneal(
        log_dir=folder,
        ppo_log=ppo_log,
        manifest=str(manifest) if manifest is not None else None,
        on_notice=lambda line: stderr_line(line),
    )
    status = str(results["status"])
    if as_json:
        typer.echo(canonical_json(results), nl=False)
    else:
        typer.echo(f"anneal {status} on {cfg.config_id}: {len(results['stages'])} stage(s) ran")
        for stage in results["stages"]:
            typer.echo("  " + describe_stage(stage))
        for reason in results["reasons"]:
            typer.echo(f"  reason: {reason}")
        for rb in results["rollbacks"]:
            kept = rb["kept_sha256"]
            what = f"restored, sha256 {kept} (equal to the kept copy)" if kept else "removed (no checkpoint before)"
            typer.echo(f"  rolled back: {rb['path']} {what}")
        if results["telemetry"]:
            typer.echo(f"  telemetry: {results['telemetry']}")
        typer.echo(f"results: {Path(folder) / RESULTS_FILE}")
    if EXIT_CODES[status]:
        raise typer.Exit(EXIT_CODES[status])
