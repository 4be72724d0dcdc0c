"""`telemetry summary`: latest values, extremes, the anneal block and baseline drift, as a JSON-able dict and
as text or markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from townlet.errors import TownletError, UsageError
from townlet.telemetry.drift import SUMMARY_DRIFT_KEYS, Baseline, Drift
from townlet.telemetry.reader import LogLine
from townlet.telemetry.records import ANNEAL_FIELDS, HYGIENE_FIELDS, SOCIAL_FIELDS, is_anneal_record
from townlet.telemetry.values import fmt_num, number

LATEST_KEYS = (
    "loss_total",
    "kl_divergence",
    "grad_norm",
    "batch_entropy_mean",
    "reward_advantage_corr",
    "epoch_duration_sec",
    "rollout_ticks",
    "queue_conflict_events",
    "queue_conflict_intensity_sum",
    *SOCIAL_FIELDS,
    *HYGIENE_FIELDS,
    "sps",
    "episode_return_mean",
    "explained_variance",
)
EXTREME_KEYS = (
    "loss_total",
    "kl_divergence",
    "grad_norm",
    "queue_conflict_events",
    "shared_meal_events",
    "chat_quality_mean",
    *HYGIENE_FIELDS,
)


def summarise(
    lines: list[LogLine], *, log: Path, last: int | None = None, baseline: Baseline | None = None
) -> dict[str, Any]:
    """The summary as a JSON-able dict (sections: run, latest, extremes, anneal, baseline_drift)."""
    if last is not None:
        if last < 1:
            raise UsageError(f"--last must be >= 1, got {last}")
        lines = lines[-last:]
    if not lines:
        raise TownletError(f"{log}: no telemetry records")
    records = [ln.record for ln in lines]
    latest = records[-1]
    epochs = [r.get("epoch") for r in records]
    modes = list(dict.fromkeys(str(r.get("data_mode")) for r in records if "data_mode" in r))
    out: dict[str, Any] = {
        "log": str(log),
        "records": len(records),
        "epochs": {"count": len(records), "first": epochs[0], "last": epochs[-1]},
        "data_mode": latest.get("data_mode"),
        "data_modes": modes,
        "cycle_id": latest.get("cycle_id"),
        "log_stream_offset": latest.get("log_stream_offset"),
        "telemetry_version": latest.get("telemetry_version"),
        "latest": {key: number(latest.get(key)) for key in LATEST_KEYS},
        "extremes": {},
        "anneal": None,
        "baseline_drift": None,
    }
    for key in EXTREME_KEYS:
        values = [v for r in records if (v := number(r.get(key))) is not None]
        out["extremes"][key] = {"min": min(values), "max": max(values)} if values else {"min": None, "max": None}
    anneal_recs = [r for r in records if is_anneal_record(r)]
    if anneal_recs:
        a = anneal_recs[-1]
        out["anneal"] = {"epoch": a.get("epoch"), **{key: a.get(key) for key in ANNEAL_FIELDS}}
    if baseline is not None:
        base = baseline.for_epoch(latest.get("epoch"), fallback_last=True)
        assert base is not None
        drift: dict[str, Any] = {"baseline": str(baseline.path), "baseline_epoch": base.get("epoch"), "keys": {}}
        for key in SUMMARY_DRIFT_KEYS:
            v, b = number(latest.get(key)), number(base.get(key))
            if v is None or b is None:
                continue
            d = Drift(latest.get("epoch"), key, v, b, "")
            rel = d.relative
            drift["keys"][key] = {
                "log": v,
                "baseline": b,
                "delta": d.delta,
                "percent": None if rel is None else rel * 100,
            }
        out["baseline_drift"] = drift
    return out


def _run_line(s: dict[str, Any]) -> list[tuple[str, str]]:
    e = s["epochs"]
    return [
        ("log", s["log"]),
        ("records", str(s["records"])),
        ("epochs", f"{fmt_num(e['first'])}-{fmt_num(e['last'])} ({e['count']} records)"),
        (
            "data_mode",
            str(s["data_mode"]) + (f" (seen: {', '.join(s['data_modes'])})" if len(s["data_modes"]) > 1 else ""),
        ),
        ("cycle_id", fmt_num(s["cycle_id"])),
        ("log_stream_offset", fmt_num(s["log_stream_offset"])),
        ("telemetry_version", str(s["telemetry_version"])),
    ]


def render_text(s: dict[str, Any]) -> str:
    lines = ["PPO telemetry summary"]
    width = max(len(k) for k in (*LATEST_KEYS, *ANNEAL_FIELDS, *SUMMARY_DRIFT_KEYS)) + 2
    lines += [f"  {k:<{width}}{v}" for k, v in _run_line(s)]
    lines.append(f"latest (epoch {fmt_num(s['epochs']['last'])}):")
    lines += [f"  {k:<{width}}{fmt_num(v)}" for k, v in s["latest"].items()]
    lines.append("extremes (min .. max):")
    lines += [f"  {k:<{width}}{fmt_num(v['min'])} .. {fmt_num(v['max'])}" for k, v in s["extremes"].items()]
    if s["anneal"] is not None:
        lines.append(f"anneal (epoch {fmt_num(s['anneal']['epoch'])}):")
        lines += [f"  {k:<{width}}{fmt_num(s['anneal'].get(k))}" for k in ANNEAL_FIELDS]
    if s["baseline_drift"] is not None:
        bd = s["baseline_drift"]
        lines.append(f"baseline_drift (latest - {bd['baseline']} epoch {fmt_num(bd['baseline_epoch'])}):")
        if not bd["keys"]:
            lines.append("  no overlapping keys")
        for k, v in bd["keys"].items():
            pct = "n/a" if v["percent"] is None else f"{v['percent']:+.2f}%"
            lines.append(
                f"  {k:<{width}}delta {v['delta']:+.6g} ({pct})  "
                f"log {fmt_num(v['log'])}  baseline {fmt_num(v['baseline'])}"
            )
    return "\n".join(lines) + "\n"


def _md(value: str) -> str:
    return value.replace("|", "\\|")


def render_markdown(s: dict[str, Any]) -> str:
    out = ["# PPO telemetry summary", ""]
    out += [f"- **{k}**: {_md(v)}" for k, v in _run_line(s)]
    out += ["", f"## Latest (epoch {fmt_num(s['epochs']['last'])})", "", "| metric | value |", "|---|---:|"]
    out += [f"| {k} | {fmt_num(v)} |" for k, v in s["latest"].items()]
    out += ["", "## Extremes", "", "| metric | min | max |", "|---|---:|---:|"]
    out += [f"| {k} | {fmt_num(v['min'])} | {fmt_num(v['max'])} |" for k, v in s["extremes"].items()]
    if s["anneal"] is not None:
        out += ["", f"## Anneal (epoch {fmt_num(s['anneal']['epoch'])})", "", "| field | value |", "|---|---|"]
        out += [f"| {k} | {_md(fmt_num(s['anneal'].get(k)))} |" for k in ANNEAL_FIELDS]
    if s["baseline_drift"] is not None:
        bd = s["baseline_drift"]
        out += [
            "",
            "## Baseline drift",
            "",
            f"Latest record minus `{_md(bd['baseline'])}` (epoch {fmt_num(bd['baseline_epoch'])}).",
            "",
            "| key | log | baseline | delta | percent |",
            "|---|---:|---:|---:|---:|",
        ]
        for k, v in bd["keys"].items():
            pct = "n/a" if v["percent"] is None else f"{v['percent']:+.2f}%"
            out.append(f"| {k} | {fmt_num(v['log'])} | {fmt_num(v['baseline'])} | {v['delta']:+.6g} | {pct} |")
    return "\n".join(out) + "\n"
