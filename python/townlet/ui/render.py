"""What the observer draws, as Rich renderables built from a `telemetry_snapshot` and the `town_map` command's
result: the town map, agent rows with need sparklines, KPIs against their targets, the exit queue, perturbations.
Pure functions of their inputs (no Textual here), so tests and other front ends can use them."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

NEEDS = ("hunger", "hygiene", "energy")
SPARKS = "▁▂▃▄▅▆▇█"
WALL = "█"
FLOOR = "·"
#: Object type -> its glyph on the map (other types: their first letter).
GLYPHS = {
    "bed": "b",
    "shower": "s",
    "stove": "k",
    "fridge": "f",
    "cafe_counter": "c",
    "market_stall": "m",
}
#: Which utility an object type needs: it is drawn as out of service while that utility is off.
NEEDS_UTILITY = {"shower": "water", "stove": "power", "fridge": "power", "cafe_counter": "power"}
AGENT_COLOURS = ("bright_cyan", "bright_magenta", "bright_yellow", "bright_green", "orange1", "deep_sky_blue1")


@dataclass(frozen=True)
class Target:
    """A KPI's goal: `value >= goal` (or `<=` when `at_most`); `source` says where the goal comes from."""

    goal: float
    source: str
    at_most: bool = False
    percent: bool = True

    def met(self, value: float) -> bool:
        return value <= self.goal if self.at_most else value >= self.goal

    def near(self, value: float) -> bool:
        """Missed, but within a tenth of the goal."""
        if self.at_most:
            return value <= self.goal * 1.1 + 1
        return value >= self.goal * 0.9


#: The charter's KPI targets (docs/OPS_HANDBOOK.md "Review KPIs vs. charter targets") and the stability monitor's.
KPI_TARGETS: dict[str, Target] = {
    "self_sufficiency": Target(0.70, "charter"),
    "relationship_coverage": Target(0.60, "charter"),
    "on_time_rate": Target(0.80, "ops"),
    "faints": Target(0, "stability: starvation 0", at_most=True, percent=False),
}
KPI_LABELS = {
    "self_sufficiency": "self-sufficiency",
    "relationship_coverage": "relationships",
    "on_time_rate": "on time",
}
KPI_ORDER = ("self_sufficiency", "relationship_coverage", "on_time_rate", "faints", "evictions", "queue_conflicts")


def sparkline(values: Iterable[float], width: int) -> Text:
    """The last `width` values in [0, 1] as block characters, coloured by the latest value."""
    vals = list(values)[-width:]
    chars = "".join(SPARKS[min(len(SPARKS) - 1, max(0, int(v * len(SPARKS))))] for v in vals)
    last = vals[-1] if vals else 1.0
    colour = "red" if last < 0.25 else "yellow" if last < 0.5 else "green"
    return Text(chars.ljust(width), style=colour)


def agent_initials(agent_ids: Iterable[str]) -> dict[str, str]:
    """Each agent's map letter: its initial in capitals, the next unused letter of its name when taken."""
    used: set[str] = set()
    out: dict[str, str] = {}
    for aid in agent_ids:
        name = aid.split("#", 1)[0] or "?"
        letter = next((c.upper() for c in name if c.isalpha() and c.upper() not in used), name[0].upper())
        used.add(letter)
        out[aid] = letter
    return out


def agent_colour(index: int) -> str:
    return AGENT_COLOURS[index % len(AGENT_COLOURS)]


def map_grid(
    town: Mapping[str, Any], snap: Mapping[str, Any], queues: Mapping[str, Any] | None = None
) -> list[list[tuple[str, str]]]:
    """The map as rows of (character, style) cells: walls, floor, objects (queues from `debug queues` and outages
    marked), living agents by their initial (a digit where several stand on one cell)."""
    walls: list[str] = list(town["walls"])
    grid = [[(WALL, "grey50") if c == "#" else (FLOOR, "grey23") for c in row] for row in walls]
    utilities = (snap.get("economy") or {}).get("utilities") or {}
    queues = queues or {}
    for obj in town["objects"]:
        x, y = obj["position"]
        glyph = GLYPHS.get(obj["type"], obj["type"][:1] or "?")
        style = "bold white"
        q = queues.get(obj["id"]) or {}
        waiting, holding = _count(q.get("waiting")), _count(q.get("holders", q.get("holding")))
        if waiting:
            style = "bold black on yellow"
            glyph = str(min(9, waiting)) if waiting > 1 else glyph.upper()
        elif holding:
            style = "bold bright_white on grey35"
        if utilities.get(NEEDS_UTILITY.get(obj["type"], ""), True) is False:
            style = "bold white on red"
        if 0 <= y < len(grid) and 0 <= x < len(grid[y]):
            grid[y][x] = (glyph, style)
    agents: Mapping[str, Any] = snap.get("agents") or {}
    letters = agent_initials(agents)
    here: dict[tuple[int, int], list[str]] = {}
    for aid, a in agents.items():
        if a.get("alive", True):
            here.setdefault((int(a["position"][0]), int(a["position"][1])), []).append(aid)
    order = list(agents)
    for (x, y), ids in here.items():
        if not (0 <= y < len(grid) and 0 <= x < len(grid[y])):
            continue
        under = grid[y][x][1]
        bg = under.split(" on ", 1)[1] if " on " in under else None
        char = letters[ids[0]] if len(ids) == 1 else str(min(9, len(ids)))
        style = f"bold {agent_colour(order.index(ids[0]))}" + (f" on {bg}" if bg else "")
        grid[y][x] = (char, style)
    return grid


def _count(value: Any) -> int:
    """A queue field as a count: `debug queues` lists the agents (older shards gave the number)."""
    if isinstance(value, list):
        return len(value)
    return int(value or 0)


def map_window(grid_width: int, view_width: int | None, focus_x: int | None) -> tuple[int, int]:
    """The columns [x0, x1) shown of a map `grid_width` wide in `view_width` columns: all of it when it fits, else
    a window centred on the focused agent (clamped to the map)."""
    if view_width is None or grid_width <= view_width:
        return 0, grid_width
    centre = focus_x if focus_x is not None else view_width // 2
    x0 = min(max(0, centre - view_width // 2), grid_width - view_width)
    return x0, x0 + view_width


def map_text(
    town: Mapping[str, Any],
    snap: Mapping[str, Any],
    focus: str | None = None,
    queues: Mapping[str, Any] | None = None,
    view_width: int | None = None,
) -> Text:
    grid = map_grid(town, snap, queues)
    fpos = None
    agents = snap.get("agents") or {}
    if focus in agents:
        fpos = tuple(int(v) for v in agents[focus]["position"])
    x0, x1 = map_window(len(grid[0]) if grid else 0, view_width, fpos[0] if fpos else None)
    out = Text(no_wrap=True, overflow="crop")
    for y, row in enumerate(grid):
        for x, (char, style) in enumerate(row[x0:x1], start=x0):
            out.append(char, style=f"{style} reverse" if (x, y) == fpos else style)
        if y < len(grid) - 1:
            out.append("\n")
    return out


def map_plain(town: Mapping[str, Any], snap: Mapping[str, Any]) -> list[str]:
    """The map's characters only, one string per row (what a test or a log compares)."""
    return ["".join(c for c, _ in row) for row in map_grid(town, snap)]


def legend(town: Mapping[str, Any]) -> Text:
    types = sorted({o["type"] for o in town["objects"]})
    parts = [f"{GLYPHS.get(t, t[:1])} {t.split('_', 1)[0]}" for t in types]
    out = Text(" ".join(parts), style="grey62")
    out.append(" ")
    out.append(" queue ", style="black on yellow")
    out.append(" ")
    out.append(" outage ", style="white on red")
    return out


def fmt_kpi(name: str, value: float) -> str:
    target = KPI_TARGETS.get(name)
    if target is not None and target.percent:
        return f"{value * 100:5.1f}%"
    return f"{value:g}"


def kpi_table(kpis: Mapping[str, float]) -> Table:
    table = Table.grid(padding=(0, 1))
    table.add_column("kpi", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("target", no_wrap=True, style="grey62")
    names = [k for k in KPI_ORDER if k in kpis] + [k for k in kpis if k not in KPI_ORDER and k in KPI_TARGETS]
    for name in names:
        value = float(kpis[name])
        target = KPI_TARGETS.get(name)
        if target is None:
            table.add_row(KPI_LABELS.get(name, name.replace("_", " ")), Text(fmt_kpi(name, value)), "")
            continue
        colour = "green" if target.met(value) else "yellow" if target.near(value) else "red"
        mark = "✓" if target.met(value) else "✗"
        goal = f"{target.goal * 100:.0f}%" if target.percent else f"{target.goal:g}"
        op = "≤" if target.at_most else "≥"
        table.add_row(
            Text(KPI_LABELS.get(name, name.replace("_", " ")), style=colour),
            Text(f"{fmt_kpi(name, value)} {mark}", style=colour),
            f"{op}{goal}",
        )
    return table


class NeedHistory:
    """Each agent's recent needs, for the sparklines (one sample per snapshot seen)."""

    def __init__(self, width: int = 8) -> None:
        self.width = width
        self._seen: dict[str, dict[str, deque[float]]] = {}
        self._last_tick: int | None = None

    def add(self, snap: Mapping[str, Any]) -> None:
        tick = int(snap.get("tick", 0))
        if tick == self._last_tick:
            return
        self._last_tick = tick
        for aid, a in (snap.get("agents") or {}).items():
            hist = self._seen.setdefault(aid, {n: deque(maxlen=64) for n in NEEDS})
            for n in NEEDS:
                hist[n].append(float((a.get("needs") or {}).get(n, 0.0)))

    def get(self, aid: str, need: str) -> list[float]:
        return list(self._seen.get(aid, {}).get(need, ()))


def activity_text(agent: Mapping[str, Any]) -> str:
    act = agent.get("activity") or {}
    if not agent.get("alive", True):
        return "gone"
    if act.get("affordance"):
        return f"{act['affordance']}" + ("" if act.get("phase") in (None, "running") else f" ({act['phase']})")
    return "idle"


def fmt_prob(p: Any) -> str:
    """A probability as two decimals, `—` when there is none (a possessed agent, before the first tick)."""
    return "—" if p is None else f"{float(p):.2f}"


def action_text(agent: Mapping[str, Any]) -> str:
    """The agent's last action and its probability under the acting policy, e.g. `use:rest_sleep 1.00`; `—` for
    what the snapshot leaves null."""
    return f"{agent.get('action') or '—'} {fmt_prob(agent.get('action_prob'))}"


def shift_style(state: str) -> str:
    return {"on_time": "green", "late": "yellow", "absent": "red", "idle": "grey62"}.get(state, "white")


def agent_page(ids: list[str], focus: str | None, rows: int | None) -> tuple[int, int]:
    """The agents [first, last) listed in `rows` rows: all when they fit, else the page holding the focused one."""
    if rows is None or len(ids) <= rows:
        return 0, len(ids)
    k = ids.index(focus) if focus in ids else 0
    first = (k // rows) * rows
    return first, min(len(ids), first + rows)


def agent_table(snap: Mapping[str, Any], history: NeedHistory, focus: str | None, rows: int | None = None) -> Table:
    agents: Mapping[str, Any] = snap.get("agents") or {}
    first, last = agent_page(list(agents), focus, rows)
    letters = agent_initials(agents)
    pending = set((snap.get("employment") or {}).get("pending") or [])
    table = Table(box=None, padding=(0, 1, 0, 0), pad_edge=False, show_edge=False, expand=True)
    table.add_column("", no_wrap=True, width=2)
    table.add_column("agent", no_wrap=True, max_width=9)
    for n in NEEDS:
        table.add_column(n[:6], no_wrap=True, width=history.width)
    table.add_column("$", justify="right", no_wrap=True)
    table.add_column("shift", no_wrap=True)
    table.add_column("action", no_wrap=True, overflow="ellipsis", ratio=1)
    table.add_column("p", justify="right", no_wrap=True, width=4)
    for k, (aid, a) in enumerate(agents.items()):
        if not first <= k < last:
            continue
        marker = Text(("▶" if aid == focus else " ") + letters[aid], style=f"bold {agent_colour(k)}")
        name = Text(aid, style="bold" if aid == focus else "")
        if aid in pending:
            name.stylize("underline red")
        wallet = "—" if a.get("wallet") is None else f"{float(a['wallet']):.1f}"
        state = str(a.get("shift_state", ""))
        table.add_row(
            marker,
            name,
            *(sparkline(history.get(aid, n), history.width) for n in NEEDS),
            wallet,
            Text(state, style=shift_style(state)),
            Text(a.get("action") or "—", style="magenta" if a.get("possessed") else ""),
            Text(fmt_prob(a.get("action_prob")), style="grey62" if a.get("action_prob") is None else ""),
        )
    return table


def focus_line(snap: Mapping[str, Any], focus: str | None) -> Text:
    """The selected agent's card: where it is, its job and needs; below, its action and that action's probability
    under the acting policy (`possessed` when an operator drives it)."""
    agents = snap.get("agents") or {}
    a = agents.get(focus) if focus else None
    if a is None:
        return Text("no agent selected (↑/↓ choose)", style="grey62")
    needs = " ".join(f"{n} {float(a['needs'][n]):.2f}" for n in NEEDS)
    job = a.get("job") or "no job"
    x, y = a["position"]
    out = Text(f"{focus} at ({x},{y}) · {job} · {needs}\n", no_wrap=True, overflow="ellipsis")
    out.append(f"action {action_text(a)}", style="bold")
    out.append(" (possessed)" if a.get("possessed") else " (acting policy)", style="grey62")
    out.append(f" · doing {activity_text(a)}")
    return out


def exit_queue(snap: Mapping[str, Any], selected: int) -> RenderableType:
    emp = snap.get("employment") or {}
    pending: list[str] = list(emp.get("pending") or [])
    head = Text(
        f"exit queue {len(pending)}/{emp.get('queue_limit', 0)} · exits "
        f"{emp.get('exits_today', 0)}/{emp.get('daily_exit_cap', 0)}",
        style="bold",
    )
    if len(pending) > int(emp.get("queue_limit", 0) or 0) > 0:
        head.append("  BACKLOG", style="bold white on red")
    lines: list[RenderableType] = [head]
    if not pending:
        lines.append(Text("no exit requests", style="grey62"))
    for k, aid in enumerate(pending):
        mark = "▶ " if k == selected else "  "
        lines.append(Text(f"{mark}{aid}", style="reverse" if k == selected else ""))
    return Group(*lines)


def perturbations(snap: Mapping[str, Any]) -> RenderableType:
    active = list(snap.get("perturbations") or [])
    tick = int(snap.get("tick", 0))
    if not active:
        return Text("no perturbations", style="grey62")
    lines: list[RenderableType] = []
    for p in active:
        started = int(p.get("started", 0))
        state = "pending" if started > tick else "active"
        when = f"starts in {started - tick}" if state == "pending" else f"{int(p.get('ends', 0)) - tick} ticks left"
        style = "bold white on dark_orange3" if state == "active" else "yellow"
        lines.append(Text(f"{p.get('name')} ({p.get('kind')}) x{float(p.get('magnitude', 1)):g} {when}", style=style))
    return Group(*lines)
