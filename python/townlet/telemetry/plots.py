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
