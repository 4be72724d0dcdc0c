#!/usr/bin/env python3
"""Every bench, one table: runs each bench script with `--json` and prints each figure with its goal.

`python bench/run_all.py [--quick] [--minutes M] [--only tick,capture,...] [--json]`   (`make bench`)

The goals come from the scripts themselves (the convention in bench/README.md): each script's JSON
carries `"goals": {figure: {"value": x, "op": ">="}}` and, optionally, `"figures": [...]` shown without a
goal. A script that is missing, fails, or prints no JSON object is a row saying so; the table is printed
regardless. Each bench's first row notes its run time and the machine's load average when it started (speed
figures taken under load are low: compare A/B inside one command then, e.g. `bench/train.py --vs REF`).
Older scripts that only carry `goal_<figure>` numbers are read as `<figure> >= number`.

`--minutes M` is the training budget of the long benches (vs_sb3 and learn_town: `--minutes M`, and
learn_town's BC -> PPO runs `--bc-minutes M`); `--quick` runs every bench short (about 1 minute of
training each for the long ones, one seed): for a check that the benches run, not for figures to quote.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

BENCH = Path(__file__).resolve().parent
#: name -> (arguments, arguments with --quick); every script also gets --json.
SCRIPTS: dict[str, tuple[list[str], list[str]]] = {
    "tick": ([], ["--ticks", "2880", "--repeats", "1"]),
    "vec_step": ([], ["--steps", "100"]),
    # As `make run` trains: collecting ahead (the split's parts then overlap).
    "train": (["--overlap"], ["--epochs", "2", "--overlap"]),
    # The suite's scenarios are tiny (its floor is about 2 ms): 15 rounds steady the median.
    "capture": (["--quick", "--repeats", "15"], ["--quick", "--repeats", "3"]),
    # Ours collecting ahead on its second core, SB3 on two torch threads.
    "vs_sb3": (["--overlap"], ["--minutes", "1", "--overlap"]),
    "learn_town": ([], ["--minutes", "1", "--bc-minutes", "1", "--seeds", "1"]),
    "console_load": ([], ["--clients", "2", "--commands", "100"]),
    # Equal epochs (equal agent-steps) per agent: fair on a loaded box; the scenario's agents start from the
    # feed-forward agent trained on its fully observed control.
    "learn_memory": (
        ["--epochs", "100", "--control-epochs", "200", "--town-epochs", "20"],
        ["--epochs", "2", "--seeds", "0"],
    ),
    # Ray shards 1, 2, 4 next to the local backend (a private Ray instance; needs the ray extra).
    "ray_scale": ([], ["--quick"]),
}
#: Benches whose budget `--minutes` sets.
MINUTES_ARGS = {"vs_sb3": ["--minutes"], "learn_town": ["--minutes", "--bc-minutes"]}
OPS = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    "==": lambda a, b: a == b,
}


@dataclass
class Row:
    bench: str
    figure: str
    value: Any = None
    goal: str = ""
    met: bool | None = None
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("bench", "figure", "value", "goal", "met", "note")}


def lookup(obj: Any, path: str) -> Any:
    """`a.b.0.c` into nested objects and lists; None when absent."""
    for part in path.split("."):
        if isinstance(obj, dict) and part in obj:
            obj = obj[part]
        elif isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        else:
            return None
    return obj


def search(obj: Any, key: str) -> Any:
    """The first value named `key` in `obj` or the objects nested in it (depth first); None when absent."""
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        for value in obj.values():
            if isinstance(value, dict) and (found := search(value, key)) is not None:
                return found
    return None


def goals_of(out: dict[str, Any]) -> dict[str, dict[str, Any]]:
    goals = out.get("goals")
    if isinstance(goals, dict):
        return {k: v for k, v in goals.items() if isinstance(v, dict) and "value" in v}
    # Older scripts: goal_<figure> = number, read as figure >= number when that figure is there.
    legacy = {}
    for key, value in out.items():
        name = key.removeprefix("goal_")
        if key.startswith("goal_") and isinstance(value, int | float) and lookup(out, name) is not None:
            legacy[name] = {"value": value, "op": ">="}
    return legacy


def judge(bench: str, label: str, value: Any, goal: dict[str, Any] | None) -> Row:
    if goal is None:
        return Row(bench, label, value)
    op, target = str(goal.get("op", ">=")), goal["value"]
    text = f"{op} {fmt(target)}"
    if not isinstance(value, int | float) or isinstance(value, bool) or op not in OPS:
        return Row(bench, label, value, text, None, "no value" if value is None else "")
    return Row(bench, label, value, text, bool(OPS[op](value, target)))


def rows_of(bench: str, out: dict[str, Any]) -> list[Row]:
    """One row per goal and per extra figure. A goal that names no top-level figure is applied to every
    object of the top-level lists that has it (e.g. learn_town's `runs`: one row per run)."""
    rows: list[Row] = []
    per_item: dict[str, dict[str, Any]] = {}
    for figure, goal in goals_of(out).items():
        value = lookup(out, figure)
        if value is not None or "." in figure:
            rows.append(judge(bench, figure, value, goal))
        elif any(search(i, figure) is not None for v in out.values() if isinstance(v, list) for i in v):
            per_item[figure] = goal
        else:
            rows.append(judge(bench, figure, None, goal))
    # Goals applied to each run of a list: grouped by run.
    for key, items in out.items():
        if not isinstance(items, list) or not per_item:
            continue
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            seed = f" seed {item['seed']}" if "seed" in item else ""
            for figure, goal in per_item.items():
                found = search(item, figure)
                if found is not None:
                    rows.append(judge(bench, f"{key}[{i}]{seed}: {figure}", found, goal))
    for figure in out.get("figures") or []:
        rows.append(Row(bench, str(figure), lookup(out, str(figure))))
    return rows or [Row(bench, "—", note="no goals or figures in its JSON")]


def run_one(name: str, args: list[str], bench_dir: Path, timeout: float | None) -> list[Row]:
    script = bench_dir / f"{name}.py"
    if not script.is_file():
        return [Row(name, "—", note=f"missing: {script.name} does not exist")]
    argv = [sys.executable, str(script), "--json", *args]
    load = load_average()
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return [Row(name, "—", note=f"timed out after {timeout:.0f} s")]
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return [Row(name, "—", note=f"failed (exit {proc.returncode}): {last[:160]}")]
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    try:
        out = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        out = None
    if not isinstance(out, dict):
        return [Row(name, "—", note="printed no JSON object with --json")]
    rows = rows_of(name, out)
    rows[0].note = rows[0].note or f"{seconds:.0f} s" + (f", load {load:.1f}" if load is not None else "")
    return rows


def load_average() -> float | None:
    """The machine's 1-minute load average (None where the OS has none): a figure taken while other work
    ran is low, so every bench's row says the load it started under."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if isinstance(value, int):
        return str(value)
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def table(rows: list[Row]) -> Table:
    out = Table(title="Townlet benchmarks: every figure with its goal", show_lines=False)
    for col, justify in (("bench", "left"), ("figure", "left"), ("value", "right"), ("goal", "right"),
                         ("met?", "center"), ("note", "left")):  # fmt: skip
        out.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        met = "—" if r.met is None else ("[green]yes[/]" if r.met else "[red]no[/]")
        out.add_row(r.bench, r.figure, fmt(r.value), r.goal or "—", met, r.note)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="every bench short (a check that they run)")
    p.add_argument("--minutes", type=float, default=None, help="training budget of vs_sb3 and learn_town")
    p.add_argument("--only", default="", help="comma-separated subset of: " + ", ".join(SCRIPTS))
    p.add_argument("--json", action="store_true", help="print the rows as one JSON object instead of the table")
    p.add_argument("--bench-dir", type=Path, default=BENCH, help=argparse.SUPPRESS)  # tests
    p.add_argument("--timeout", type=float, default=None, help="seconds per bench (default: none)")
    args = p.parse_args()
    only = [k for k in args.only.split(",") if k] or list(SCRIPTS)
    if unknown := sorted(set(only) - set(SCRIPTS)):
        p.error(f"--only: unknown {', '.join(unknown)} (choose from {', '.join(SCRIPTS)})")
    err = Console(stderr=True)
    rows: list[Row] = []
    for name in only:
        full, quick = SCRIPTS[name]
        extra = list(quick if args.quick else full)
        if args.minutes is not None:
            for flag in MINUTES_ARGS.get(name, []):
                if flag in extra:
                    del extra[extra.index(flag) : extra.index(flag) + 2]
                extra += [flag, f"{args.minutes:g}"]
        err.print(f"bench: {name} {' '.join(extra)}".rstrip(), highlight=False)
        rows.extend(run_one(name, extra, args.bench_dir, args.timeout))
    if args.json:
        print(json.dumps({"rows": [r.as_json() for r in rows]}, sort_keys=True))
        return
    Console(width=max(Console().width, 120)).print(table(rows))
    met = [r.met for r in rows if r.met is not None]
    load = load_average()
    machine = [f"cores: {os.cpu_count()}"] if os.cpu_count() else []
    machine += [f"load average {load:.1f} at the end"] if load is not None else []
    print(f"{sum(met)} of {len(met)} goals met" + (f" ({', '.join(machine)})" if machine else ""))


if __name__ == "__main__":
    main()
