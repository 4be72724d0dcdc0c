"""The summary chart (`telemetry summary --plot`): per epoch, the episode return (with the expert's return as a
reference line when the records know it), the losses, the KL divergence and the policy entropy. Drawn with
matplotlib's Agg backend and written atomically."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from townlet.errors import UsageError
from townlet.jsonio import atomic_write_bytes
from townlet.telemetry.drift import Baseline
from townlet.telemetry.values import number

#: Figure size in inches at `DPI`: 1000 x 700 pixels.
SIZE = (10.0, 7.0)
DPI = 100
#: (panel title, y label, [(record key, legend label)]) for the panels after the return panel.
PANELS = (
    ("Losses", "loss", [("loss_total", "total"), ("loss_policy", "policy"), ("loss_value", "value")]),
    ("KL divergence", "KL (old || new)", [("kl_divergence", "mean"), ("kl_divergence_max", "max")]),
    ("Policy entropy", "entropy (nats)", [("batch_entropy_mean", "mean")]),
)


def expert_return(records: Sequence[dict[str, Any]], baseline: Baseline | None = None) -> float | None:
    """The expert's mean return per sample, when known: `baseline_reward_sum_mean` of a replay-mode record
    (its baseline block describes the captured expert samples; in rollout and mixed mode it describes the
    learner's own rollouts), from the log or else from the `--baseline` records (a baseline object without a
    `data_mode` counts as the expert's)."""
    candidates = [*records, *(baseline.records if baseline is not None else [])]
    for rec in candidates:
        value = number(rec.get("baseline_reward_sum_mean"))
        if rec.get("data_mode", "replay") == "replay" and value is not None:
            return value
    return None


def _epochs(records: Sequence[dict[str, Any]]) -> list[float]:
    return [e if (e := number(r.get("epoch"))) is not None else float(i + 1) for i, r in enumerate(records)]


def render_png(records: Sequence[dict[str, Any]], *, expert: float | None = None, title: str = "") -> bytes:
    """The chart as PNG bytes: a 2 x 2 grid of panels, epochs on every x axis."""
    # matplotlib takes about half a second to import: only `summary --plot` pays for it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    if title:
        fig.suptitle(title)
    axes = fig.subplots(2, 2, sharex=True).ravel()
    xs = _epochs(records)

    ax = axes[0]
    # An epoch in which no episode ended writes 0.0, which is not a return: skip it.
    points = [
        (x, v)
        for x, r in zip(xs, records, strict=True)
        if r.get("episodes") != 0 and (v := number(r.get("episode_return_mean"))) is not None
    ]
    if points:
        ax.plot(*zip(*points, strict=True), marker="o", label="learner")
    else:
        ax.text(0.5, 0.5, "no episode ended", transform=ax.transAxes, ha="center", va="center", color="grey")
    if expert is not None:
        ax.axhline(expert, color="black", linestyle="--", linewidth=1, label=f"expert ({expert:.3g})")
    ax.set(title="Episode return", ylabel="mean return")
    if points or expert is not None:
        ax.legend(loc="best", fontsize="small")

    for ax, (name, ylabel, series) in zip(axes[1:], PANELS, strict=True):
        drawn = False
        for key, label in series:
            pts = [(x, v) for x, r in zip(xs, records, strict=True) if (v := number(r.get(key))) is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", markersize=3, label=label)
                drawn = True
        if drawn:
            ax.legend(loc="best", fontsize="small")
        else:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="grey")
        ax.set(title=name, ylabel=ylabel)

    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelbottom=True)
    for ax in axes[2:]:
        ax.set_xlabel("epoch")
    buf = io.BytesIO()
    # No Software/version metadata: the same records give the same bytes.
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def write_plot(records: Sequence[dict[str, Any]], path: Path, *, expert: float | None = None, title: str = "") -> None:
    """Render the chart and write it to `path` atomically."""
    data = render_png(records, expert=expert, title=title)
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise UsageError(f"--plot {path}: cannot write ({exc.strerror or exc})") from None


# -- the evaluation report's figures (`townlet eval --report`) -----------------------------------------------

#: Colours of the evaluated policies (any other name gets the next colour of matplotlib's cycle).
POLICY_COLOURS = {"trained": "tab:blue", "expert": "black", "random": "tab:red"}
#: The rate KPIs (0..1) and the count KPIs (per town and episode) of the KPI figure, with their axis labels.
RATE_KPIS = (("self_sufficiency", "self-sufficiency"), ("on_time_rate", "on-time rate"),
             ("relationship_coverage", "relationship\ncoverage"))  # fmt: skip
COUNT_KPIS = (("faints", "faints"), ("evictions", "evictions"))


def day_returns(records: Sequence[dict[str, Any]], day_ticks: int) -> list[tuple[float, float]]:
    """The learning curve, as (agent-steps, return per agent-day): each rollout record's mean reward per agent
    slot and tick (`baseline_reward_mean`, a slot whose agent is down earning 0) averaged over the trailing
    day's worth of epochs (the reward rate follows the clock, and an epoch covers part of a day), times
    `day_ticks`. Comparable with the evaluation's per-agent episode return over a day."""
    points: list[tuple[float, float]] = []
    window: list[float] = []
    for rec in records:
        rate, steps = number(rec.get("baseline_reward_mean")), number(rec.get("steps"))
        ticks = number(rec.get("rollout_ticks"))
        if rec.get("data_mode") == "replay" or rate is None or steps is None or not ticks:
            continue
        size = max(1, round(day_ticks / ticks))
        window = [*window[-(size - 1) :], rate] if size > 1 else [rate]
        if len(window) == size:  # a full day only: a part of one reads the rate of its hours
            points.append((steps, sum(window) / size * day_ticks))
    return points


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})  # no version metadata: same inputs, same bytes
    return buf.getvalue()


def _colour(name: str, k: int) -> str:
    return POLICY_COLOURS.get(name, f"C{k + 3}")


def render_learning_curve(
    records: Sequence[dict[str, Any]], levels: dict[str, float], *, day_ticks: int, title: str = ""
) -> bytes:
    """The training return per agent-day (`day_returns`) against agent-steps, with each evaluated policy's return
    (`levels`: name -> return) as a horizontal line, as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.0, 5.0), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    points = day_returns(records, day_ticks)
    if points:
        ax.plot(*zip(*points, strict=True), color=POLICY_COLOURS["trained"], label="training (sampled, last day)")
    else:
        ax.text(0.5, 0.5, "less than a day of rollouts", transform=ax.transAxes, ha="center", va="center", color="grey")
    for k, (name, value) in enumerate(levels.items()):
        style = ":" if name == "trained" else "--"
        ax.axhline(value, color=_colour(name, k), linestyle=style, linewidth=1.2, label=f"{name} ({value:.3g})")
    ax.set(title=title or "Learning curve", xlabel="agent-steps", ylabel="return per agent-day")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return _png(fig)


def render_kpi_bars(scores: dict[str, dict[str, float]], *, title: str = "") -> bytes:
    """Bars per policy (`scores`: name -> {"return", and the KPI names}): the return, the three rates, and the
    faints and evictions per town, as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12.0, 4.5), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    if title:
        fig.suptitle(title)
    axes = fig.subplots(1, 3, width_ratios=[1.0, 3.0, 2.0])
    names = list(scores)
    width = 0.8 / max(1, len(names))
    panels = (
        ("Return per agent-day", [("return", "return")], None),
        ("Rates", list(RATE_KPIS), (0.0, 1.05)),
        ("Per town and day", list(COUNT_KPIS), None),
    )
    for ax, (panel, keys, ylim) in zip(axes, panels, strict=True):
        for k, name in enumerate(names):
            xs = [i + (k - (len(names) - 1) / 2) * width for i in range(len(keys))]
            values = [scores[name].get(key, 0.0) for key, _ in keys]
            bars = ax.bar(xs, values, width, color=_colour(name, k), label=name)
            ax.bar_label(bars, fmt="%.2f", fontsize="x-small")
        ax.set_xticks(range(len(keys)), [label for _, label in keys])
        ax.set_title(panel)
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].legend(loc="best", fontsize="small")
    return _png(fig)


def write_png(path: Path, data: bytes, option: str) -> None:
    """Write PNG bytes to `path` atomically; an unwritable path is a UsageError naming `option`."""
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot write ({exc.strerror or exc})") from None
