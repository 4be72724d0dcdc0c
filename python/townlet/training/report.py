"""The evaluation report: `report.md` with its figures (`learning_curve.png`, `kpis.png`) in one folder, and the
table rows that `townlet eval` prints. Every file is written atomically; the figures before `report.md`, so a
report that exists has its figures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from townlet.errors import UsageError
from townlet.jsonio import atomic_write_text
from townlet.telemetry.plots import render_kpi_bars, render_learning_curve, write_png
from townlet.training.evaluate import EvalReport, PolicyScore

REPORT_NAME = "report.md"
CURVE_NAME = "learning_curve.png"
KPIS_NAME = "kpis.png"

#: The table's columns: (terminal header, Markdown header, the score's key).
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("return", "return", "return"),
    ("self-suff.", "self-sufficiency", "self_sufficiency"),
    ("on-time", "on-time rate", "on_time_rate"),
    ("rel. cov.", "relationship coverage", "relationship_coverage"),
    ("faints", "faints/town", "faints"),
    ("evictions", "evictions/town", "evictions"),
)


def _cells(score: PolicyScore) -> list[str]:
    values = {"return": score.return_, **score.kpis.model_dump()}
    return [f"{values[key]:.2f}" if key in ("return", "faints", "evictions") else f"{values[key]:.3f}"
            for _, _, key in COLUMNS]  # fmt: skip


def table_rows(report: EvalReport) -> list[list[str]]:
    """One row per policy, in the report's order: the name, then the `COLUMNS` cells."""
    return [[name, *_cells(score)] for name, score in report.policies.items()]


def setup_line(report: EvalReport) -> str:
    seeds = report.seeds
    span = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
    return (
        f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''} ({span}) x {report.num_towns} towns x "
        f"{report.ticks} ticks, the same towns for every policy"
    )


def comparison(report: EvalReport) -> str | None:
    """How the trained policy's return compares with the others', when there is one."""
    trained = report.policies.get("trained")
    if trained is None:
        return None
    parts = []
    for name, score in report.policies.items():
        if name == "trained":
            continue
        gap = trained.return_ - score.return_
        # A ratio to a return near zero (the random policy's) says nothing: only the expert's is quoted.
        ratio = f" ({trained.return_ / score.return_:.2f}x)" if name == "expert" and score.return_ > 0 else ""
        parts.append(f"{gap:+.2f} against {name}{ratio}")
    return f"trained return {trained.return_:.2f}: " + "; ".join(parts) if parts else None


def markdown_table(report: EvalReport) -> str:
    head = ["policy", *(h for _, h, _ in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(report)]
    return "\n".join(lines)


@dataclass
class ReportInputs:
    """What the report says besides the evaluation: the config and checkpoint it names, the training log."""

    config_id: str
    config_path: str
    checkpoint: str | None = None
    #: Facts about the trained policy (e.g. epochs, agent-steps), shown as a list.
    facts: list[tuple[str, str]] = field(default_factory=list)
    #: The training telemetry records for the learning curve (None: no learning curve).
    records: Sequence[dict[str, Any]] | None = None


def render_markdown(report: EvalReport, inputs: ReportInputs, *, curve: bool) -> str:
    out = [f"# Evaluation: {inputs.config_id}", ""]
    out.append(f"- config: `{inputs.config_path}`")
    if inputs.checkpoint is not None:
        out.append(f"- checkpoint: `{inputs.checkpoint}` (acting greedily: the most likely valid action)")
    out += [f"- {name}: {value}" for name, value in inputs.facts]
    out.append(f"- evaluation: {setup_line(report)}")
    out += ["", markdown_table(report), ""]
    if (line := comparison(report)) is not None:
        out += [line + ".", ""]
    out += [
        "`return` is the mean per-agent episode return (the reward an agent slot earned over the episode), "
        "averaged over agents, towns and seeds. The rates are the native KPIs at the episode's end, averaged over "
        "towns and seeds; faints and evictions are counted per town over the episode, then averaged. `expert` is "
        "the scripted policy, `random` a uniformly random valid action.",
        "",
    ]
    if curve:
        out += [
            "## Learning curve",
            "",
            "Training return per agent-day (the sampled policy's mean reward per agent and tick over the trailing "
            "day of training, times a day's ticks), with the evaluated policies' returns as horizontal lines.",
            "",
            f"![learning curve]({CURVE_NAME})",
            "",
        ]
    out += ["## KPIs", "", f"![KPIs]({KPIS_NAME})", "", "## Per seed", ""]
    out += ["| policy | seed | return | self-sufficiency | on-time rate | relationship coverage | faints | evictions |"]
    out += ["|---|---|---|---|---|---|---|---|"]
    for name, score in report.policies.items():
        for s in score.per_seed:
            k = s.kpis
            out.append(
                f"| {name} | {s.seed} | {s.return_:.2f} | {k.self_sufficiency:.3f} | {k.on_time_rate:.3f} | "
                f"{k.relationship_coverage:.3f} | {k.faints:.2f} | {k.evictions:.2f} |"
            )
    return "\n".join(out) + "\n"


def write_report(folder: Path, report: EvalReport, inputs: ReportInputs, *, option: str = "--report") -> Path:
    """Write the figures, then `report.md`, into `folder` (created); returns the report's path."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{option} {folder}: cannot create the folder ({exc.strerror or exc})") from None
    scores = {name: {"return": s.return_, **s.kpis.model_dump()} for name, s in report.policies.items()}
    title = f"{inputs.config_id}: {setup_line(report)}"
    write_png(folder / KPIS_NAME, render_kpi_bars(scores, title=title), option)
    curve = inputs.records is not None
    if inputs.records is not None:
        levels = {name: s.return_ for name, s in report.policies.items()}
        data = render_learning_curve(
            inputs.records, levels, day_ticks=report.ticks, title=f"Learning curve: {inputs.config_id}"
        )
        write_png(folder / CURVE_NAME, data, option)
    path = folder / REPORT_NAME
    try:
        atomic_write_text(path, render_markdown(report, inputs, curve=curve))
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot write ({exc.strerror or exc})") from None
    return path
