"""The terminal observer (`townlet observe`, tools/observer_ui.py): a Textual app over a `Source` (a town run
in-process, or a live shard over HTTP). Keyboard only; laid out for 100x30 and up.

Panels: the town map (walls, objects, agents by initial, queues, outages), KPIs against their targets, agent rows
(needs as sparklines, wallet, shift state, the last action and its probability under the acting policy; the selected
agent's card below them), the employment exit queue (approve/defer through the command bus with the operator's token
and a cmd_id), perturbations, a feed of events, narrations and command results, and a command palette (`:`) that
runs any console command."""

from __future__ import annotations

import asyncio
import json
import shlex
from typing import Any, ClassVar

from rich.console import Group
from rich.text import Text
from textual.app import App, ComposeResult, ScreenStackError
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Input, RichLog, Static

from townlet.errors import TownletError
from townlet.ops.client import build_envelope
from townlet.ui import render
from townlet.ui.source import Source, new_cmd_id, read

#: World events shown in the feed (those that become narration lines are shown as narrations).
FEED_EVENTS = frozenset(
    {
        "shift_late_start",
        "shift_absent",
        "shower_power_outage",
        "employment_exit_pending",
        "employment_exit_queue_overflow",
        "employment_exit_manual_request",
        "employment_exit_deferred",
        "agent_teleported",
        "agent_respawn",
        "agent_removed",
        "relationship_evicted",
        "perturbation_started",
        "perturbation_ended",
        "perturbation_cancelled",
        "perturbation_price_spike",
        "perturbation_blackout",
        "perturbation_outage",
        "arranged_meet_relocated",
    }
)

#: Map columns shown when the panel has not been laid out yet (the left column is 36 wide, less its border).
MAP_VIEW = 34
#: Agent rows listed at once (a page holding the selected agent; ↑/↓ move through them all).
AGENT_ROWS = 9

CSS = """
Screen { layout: vertical; }
#header { height: 1; background: $primary-background; color: $text; }
#body { height: 1fr; }
#left { width: 36; }
#right { width: 1fr; }
.panel { border: round $secondary; border-title-color: $text; padding: 0 0; }
#map { height: auto; }
#kpis { height: 1fr; }
#agents { height: auto; }
#ops { height: 6; }
#exits { width: 1fr; }
#perturbations { width: 1fr; }
#feed { height: 1fr; overflow-x: hidden; }
#palette { dock: bottom; display: none; }
"""


class ObserverApp(App[None]):
    """See the module docstring. `poll()` reads the source once (the refresh timer calls it)."""

    CSS = CSS
    TITLE = "Townlet observer"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "quit"),
        Binding("down,j", "agent(1)", "next agent"),
        Binding("up,k", "agent(-1)", "prev agent", show=False),
        Binding("x", "next_exit", "next exit"),
        Binding("a", "exit('approve')", "approve exit"),
        Binding("d", "exit('defer')", "defer exit"),
        Binding("colon", "palette", "command"),
        Binding("r", "refresh", "refresh"),
        Binding("escape", "close_palette", "close", show=False),
    ]

    def __init__(
        self,
        source: Source,
        *,
        refresh: float = 0.5,
        ticks: int | None = None,
        focus_agent: str | None = None,
        live: bool = True,
        notice: str | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.refresh_every = refresh
        self.ticks = ticks
        self.focus_agent = focus_agent
        self.live = live
        self.notice = notice
        self.snap: dict[str, Any] = {}
        self.town: dict[str, Any] = {}
        self.queues: dict[str, Any] = {}
        self.history = render.NeedHistory(width=6)
        self.exit_selected = 0
        self.start_tick: int | None = None
        self.results: list[dict[str, Any]] = []
        self._polling = False
        self._last_error: str | None = None
        self._seen: set[tuple[int, str]] = set()

    # -- layout -----------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="header")
        with Horizontal(id="body"):
            with Vertical(id="left"):
                yield Static(id="map", classes="panel")
                yield Static(id="kpis", classes="panel")
            with Vertical(id="right"):
                yield Static(id="agents", classes="panel")
                with Horizontal(id="ops"):
                    yield Static(id="exits", classes="panel")
                    yield Static(id="perturbations", classes="panel")
                yield RichLog(id="feed", classes="panel", max_lines=500, wrap=True, markup=False)
        yield Input(placeholder="command, e.g. help | setneed alice hunger 0.2 | employment_exit review", id="palette")
        yield Footer()

    async def on_mount(self) -> None:
        titles = {
            "map": "town",
            "kpis": "KPIs vs targets",
            "agents": "agents",
            "exits": "employment",
            "perturbations": "perturbations",
            "feed": "events · narrations · commands",
        }
        for wid, title in titles.items():
            self.query_one(f"#{wid}").border_title = title
        try:
            self.town = await asyncio.to_thread(read, self.source, "town_map")
        except TownletError as exc:
            self.feed_line(f"no map: {exc}", "red")
        if self.notice:
            self.feed_line(self.notice, "yellow")
        await self.poll()
        if self.live:
            self.set_interval(self.refresh_every, self.poll)

    # -- data ---------------------------------------------------------------------------------------------

    async def poll(self) -> None:
        """Read a snapshot (and the queues) from the source and redraw; skipped while one is in flight."""
        if self._polling:
            return
        watched = int(self.snap.get("tick", 0)) - (self.start_tick or 0)
        if self.ticks is not None and self.start_tick is not None and watched >= self.ticks:
            return
        self._polling = True
        try:
            snap = await asyncio.to_thread(self.source.snapshot)
            queues = await asyncio.to_thread(read, self.source, "debug", "queues")
        except TownletError as exc:
            self._error(str(exc))
            return
        finally:
            self._polling = False
        if not self._drawable():  # the app closed (or had not composed yet) while the source was read
            return
        failure = getattr(self.source, "failure", None)
        if failure is not None:
            self._error(f"the town stopped: {type(failure).__name__}: {failure}")
        else:
            self._last_error = None
        self.apply(snap, queues.get("objects") or {})

    def _drawable(self) -> bool:
        """Whether this app's widgets are on screen: a refresh that outlives the app has nothing to draw on."""
        try:
            return self.is_running and self.screen.is_running and bool(self.screen.query("#header"))
        except ScreenStackError:
            return False

    def apply(self, snap: dict[str, Any], queues: dict[str, Any] | None = None) -> None:
        """Show `snap`: every panel redrawn, what changed since the last one written to the feed."""
        prev = self.snap
        self.snap = snap
        if queues is not None:
            self.queues = queues
        if self.start_tick is None:
            self.start_tick = int(snap.get("tick", 0))
        agents = snap.get("agents") or {}
        if self.focus_agent not in agents and agents:
            self.focus_agent = next(iter(agents))
        pending = (snap.get("employment") or {}).get("pending") or []
        self.exit_selected = min(self.exit_selected, max(0, len(pending) - 1))
        self.history.add(snap)
        self._feed_changes(prev, snap)
        self.redraw()

    def redraw(self) -> None:
        snap = self.snap
        header = Text(f" {self.TITLE} ", style="bold reverse")
        header.append(
            f" {snap.get('config_id', '?')} · tick {snap.get('tick', '?')} · day {snap.get('day', '?')} · "
            f"{self.source.label}",
            style="bold",
        )
        if self.ticks is not None and self.start_tick is not None:
            header.append(f" · {int(snap.get('tick', 0)) - self.start_tick}/{self.ticks} ticks")
        promotion = snap.get("promotion")
        if promotion:  # when the shard has a promotion manager: its state and pass streak (before the schema,
            # which a 100-column header may cut)
            if isinstance(promotion, dict):
                state = f"{promotion.get('status')} {promotion.get('pass_streak')}/{promotion.get('required_passes')}"
            else:
                state = str(promotion)
            header.append(f" · promotion {state}", style="bold magenta")
        header.append(f" · schema {snap.get('schema_version', '?')}", style="bold")
        self.query_one("#header", Static).update(header)
        if self.town:
            panel = self.query_one("#map", Static)
            view = panel.content_size.width or MAP_VIEW
            body = render.map_text(self.town, snap, self.focus_agent, self.queues, view)
            body.append("\n")
            body.append_text(render.legend(self.town))
            panel.update(body)
            width = int(self.town.get("width", 0))
            if width > view:  # a long town: the window around the selected agent
                focus = (snap.get("agents") or {}).get(self.focus_agent) or {}
                x0, x1 = render.map_window(width, view, (focus.get("position") or [None])[0])
                panel.border_title = f"town x {x0}-{x1 - 1} of {width}"
        self.query_one("#kpis", Static).update(render.kpi_table(snap.get("kpis") or {}))
        table = render.agent_table(snap, self.history, self.focus_agent, AGENT_ROWS)
        agents_panel = self.query_one("#agents", Static)
        agents_panel.update(Group(table, render.focus_line(snap, self.focus_agent)))
        ids = list((snap.get("agents") or {}).keys())
        first, last = render.agent_page(ids, self.focus_agent, AGENT_ROWS)
        agents_panel.border_title = "agents" if len(ids) <= AGENT_ROWS else f"agents {first + 1}-{last} of {len(ids)}"
        self.query_one("#exits", Static).update(render.exit_queue(snap, self.exit_selected))
        perturb = self.query_one("#perturbations", Static)
        perturb.update(render.perturbations(snap))
        perturb.border_title = f"perturbations ({len(snap.get('perturbations') or [])})"

    def _feed_changes(self, prev: dict[str, Any], snap: dict[str, Any]) -> None:
        tick = int(snap.get("tick", 0))
        for n in snap.get("narrations") or []:
            key = (int(n.get("tick", 0)), str(n.get("text", "")))
            if key not in self._seen:
                self._seen.add(key)
                self.feed_line(f"{key[0]:>6} {key[1]}", "white")
        for e in snap.get("events") or []:
            if e.get("event") not in FEED_EVENTS:
                continue
            key = (int(e.get("tick", 0)), f"{e.get('event')} {e.get('agent') or ''} {e.get('other') or ''}".strip())
            if key not in self._seen:
                self._seen.add(key)
                self.feed_line(f"{key[0]:>6} {key[1].replace('_', ' ')}", "cyan")
        if len(self._seen) > 2000:
            self._seen = {k for k in self._seen if k[0] >= tick - 200}
        if not prev:
            return
        old = set((prev.get("employment") or {}).get("pending") or [])
        new = set((snap.get("employment") or {}).get("pending") or [])
        for aid in sorted(new - old):
            self.feed_line(f"{tick:>6} {aid} is in the exit queue (approve: a, defer: d)", "yellow")
        for aid in sorted(old - new):
            self.feed_line(f"{tick:>6} {aid} left the exit queue", "yellow")
        before = {p["event_id"]: p for p in prev.get("perturbations") or []}
        after = {p["event_id"]: p for p in snap.get("perturbations") or []}
        for eid in sorted(set(after) - set(before)):
            self.feed_line(f"{tick:>6} perturbation {after[eid]['name']} ({after[eid]['kind']}) scheduled", "magenta")
        for eid in sorted(set(before) - set(after)):
            self.feed_line(f"{tick:>6} perturbation {before[eid]['name']} over", "magenta")
        for aid, a in (snap.get("agents") or {}).items():
            was = (prev.get("agents") or {}).get(aid)
            if was is not None and was.get("alive", True) and not a.get("alive", True):
                self.feed_line(f"{tick:>6} {aid} left town", "red")

    def _error(self, text: str) -> None:
        """An error in the feed once, not at every refresh while it lasts."""
        if text != self._last_error:
            self._last_error = text
            self.feed_line(text, "red")

    def feed_line(self, text: str, style: str = "") -> None:
        self.query_one("#feed", RichLog).write(Text(text, style=style))

    # -- commands -----------------------------------------------------------------------------------------

    async def send(self, envelope: dict[str, Any]) -> dict[str, Any]:
        """Send through the command bus (with a cmd_id), write the result to the feed, then read a new snapshot."""
        envelope.setdefault("cmd_id", new_cmd_id())
        result = await asyncio.to_thread(self.source.send, envelope)
        self.results.append(result)
        words = " ".join(str(a) for a in envelope.get("args") or [])
        if result.get("status") == "ok":
            value = json.dumps(result.get("result"), sort_keys=True, default=str)
            short = value if len(value) <= 160 else value[:157] + "..."
            self.feed_line(f"ok {envelope['name']} {words} [{envelope['cmd_id']}] -> {short}", "green")
        else:
            err = result.get("error") or {}
            self.feed_line(f"{err.get('code', 'error')}: {envelope['name']} {words}: {err.get('message', '')}", "red")
        await self.poll()
        return result

    async def action_exit(self, action: str) -> None:
        pending = list((self.snap.get("employment") or {}).get("pending") or [])
        if not pending:
            self.feed_line(f"{action}: the exit queue is empty", "grey62")
            return
        agent = pending[self.exit_selected % len(pending)]
        await self.send({"name": "employment_exit", "args": [action, agent]})

    def action_next_exit(self) -> None:
        pending = (self.snap.get("employment") or {}).get("pending") or []
        if pending:
            self.exit_selected = (self.exit_selected + 1) % len(pending)
            self.redraw()

    def action_agent(self, step: int) -> None:
        ids = list((self.snap.get("agents") or {}).keys())
        if not ids:
            return
        k = ids.index(self.focus_agent) if self.focus_agent in ids else 0
        self.focus_agent = ids[(k + step) % len(ids)]
        self.redraw()

    async def action_refresh(self) -> None:
        await self.poll()

    def action_palette(self) -> None:
        box = self.query_one("#palette", Input)
        box.display = True
        box.focus()

    def action_close_palette(self) -> None:
        box = self.query_one("#palette", Input)
        box.value = ""
        box.display = False
        self.set_focus(None)

    async def on_input_submitted(self, event: Input.Submitted) -> None:
        line = event.value.strip().lstrip(":").strip()
        self.action_close_palette()
        if not line:
            return
        try:
            words = shlex.split(line)
            envelope = build_envelope(words[0], words[1:], cmd_id=new_cmd_id())
        except (ValueError, TownletError) as exc:
            self.feed_line(f"palette: {exc}", "red")
            return
        await self.send(envelope)
