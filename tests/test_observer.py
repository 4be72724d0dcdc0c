"""The terminal observer, driven headless by Textual's pilot over a live shard run in-process (and one over HTTP):
the map shows the walls and the agents where the snapshot puts them; approving an exit request goes through the
command bus (cmd_id, audit line) and changes the next snapshot; the palette runs console commands.

Screens are written to tests/artifacts/ (observer.png, observer.svg); with TOWNLET_UPDATE_SCREENSHOTS=1 the PNG
also replaces docs/img/observer.png, the README's screenshot."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.geometry import Region

from conftest import DEFAULT_CONFIG, REPO_ROOT, _cli_env, assert_one_line_error, run_cli
from ops_shard import ADMIN, no_proxy, start_shard
from townlet.ops.auth import TokenStore
from townlet.ops.shard import Shard
from townlet.sim.config import load_config
from townlet.ui.app import ObserverApp
from townlet.ui.png import save_png
from townlet.ui.render import WALL, agent_initials, agent_page, map_window
from townlet.ui.source import LocalSource, RemoteSource

no_proxy()
ARTIFACTS = REPO_ROOT / "tests/artifacts"
SIZE = (100, 30)


def map_rows(app: ObserverApp) -> list[str]:
    """The map panel as drawn on screen, border stripped: one string per grid row."""
    panel = app.query_one("#map")
    lines = [s.text for s in panel.render_lines(Region(0, 0, panel.size.width + 2, panel.size.height + 2))]
    height = len(app.town["walls"])
    return [line[1 : 1 + app.town["width"]] for line in lines[1 : 1 + height]]


def check_map(rows: list[str], town: dict[str, Any], snap: dict[str, Any]) -> int:
    """Every living agent's letter (or a count where several share a cell) at its snapshot position; every wall
    cell drawn as a wall unless an agent stands there. Returns how many agents were found."""
    letters = agent_initials(snap["agents"])
    cells: dict[tuple[int, int], list[str]] = {}
    for aid, a in snap["agents"].items():
        if a["alive"]:
            cells.setdefault((a["position"][0], a["position"][1]), []).append(aid)
    for (x, y), ids in cells.items():
        want = letters[ids[0]] if len(ids) == 1 else str(len(ids))
        assert rows[y][x] == want, f"{ids} at ({x},{y}): drawn {rows[y][x]!r}, expected {want!r}\n" + "\n".join(rows)
    for y, row in enumerate(town["walls"]):
        for x, c in enumerate(row):
            if c == "#" and (x, y) not in cells:
                assert rows[y][x] == WALL, f"wall at ({x},{y}) drawn {rows[y][x]!r}"
            if c == "." and (x, y) not in cells:
                assert rows[y][x] != WALL, f"floor at ({x},{y}) drawn as a wall"
    return sum(len(ids) for ids in cells.values())


def panel_lines(app: ObserverApp, wid: str) -> list[str]:
    panel = app.query_one(wid)
    return [s.text for s in panel.render_lines(Region(0, 0, panel.size.width + 2, panel.size.height + 2))]


def assert_action_shown(app: ObserverApp, snap: dict[str, Any], focus: str) -> None:
    """The focused agent's card and its row show the action and its probability that `snap` reports (`—` for a
    null probability)."""
    a = snap["agents"][focus]
    assert app.snap["tick"] == snap["tick"] and app.focus_agent == focus
    prob = "—" if a["action_prob"] is None else f"{a['action_prob']:.2f}"
    assert a["action"], a
    lines = panel_lines(app, "#agents")
    card = f"action {a['action']} {prob}" + (" (possessed)" if a["possessed"] else " (acting policy)")
    assert any(card in line for line in lines), (card, lines)
    row = next(line for line in lines if line.startswith(f"│▶{agent_initials(snap['agents'])[focus]} {focus} "))
    assert row.rstrip("│ ").endswith(f" {prob}") and f" {a['action'][:10]}" in row, (row, a)


async def until(pilot: Any, what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    """Let the app run until `check` holds (an event to wait on; the deadline only guards a hang)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.02)


def run_app(app: ObserverApp, body: Callable[[Any], Awaitable[None]]) -> None:
    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, "the first snapshot", lambda: bool(app.snap) and bool(app.town))
            await body(pilot)

    asyncio.run(main())


def test_town_map_command_matches_the_town(tmp_path: Path) -> None:
    shard = Shard(
        load_config(DEFAULT_CONFIG), tokens=TokenStore([], allow_anonymous_viewer=True), audit_path=tmp_path / "a.jsonl"
    )
    try:
        result = shard.submit({"name": "town_map"}, None)
        assert result.status == "ok", result
        town = shard.world.town
        value = result.result
        walls = town.walls()
        assert (value["height"], value["width"]) == walls.shape
        assert [[c == "#" for c in row] for row in value["walls"]] == walls.tolist()
        assert [(o["id"], o["type"], o["position"]) for o in value["objects"]] == [
            (i, t, [int(p[0]), int(p[1])])
            for i, t, p in zip(town.object_ids(), town.object_types(), town.object_positions(), strict=True)
        ]
        assert shard.submit({"name": "town_map", "args": ["extra"]}, None).error.code == "invalid_args"
    finally:
        shard.close()


def test_observer_map_shows_walls_and_agents_where_the_snapshot_says(tmp_path: Path) -> None:
    source = LocalSource(load_config(DEFAULT_CONFIG), audit_path=tmp_path / "audit.jsonl", snapshot_root=tmp_path)
    for _ in range(40):
        source.shard.step()
    app = ObserverApp(source, live=False, focus_agent="bob")

    async def body(pilot: Any) -> None:
        assert check_map(map_rows(app), app.town, app.snap) == 9
        for _ in range(25):  # the agents move: the map follows the next snapshot
            source.shard.step()
        await app.poll()
        await pilot.pause()
        snap = source.snapshot()
        assert app.snap["tick"] == snap["tick"] == 65
        assert check_map(map_rows(app), app.town, snap) == 9
        header = app.query_one("#header").render_lines(Region(0, 0, SIZE[0], 1))[0].text
        assert "tick 65" in header and "poc_hybrid_v1" in header
        assert_action_shown(app, snap, "bob")
        assert source.send({"name": "possess", "args": ["bob", "move_n"], "cmd_id": "t-1"})["status"] == "ok"
        source.shard.step()  # bob moved north by the operator's hand: an action with no policy probability
        await app.poll()
        await pilot.pause()
        snap = source.snapshot()
        assert snap["agents"]["bob"]["action"] == "move_n" and snap["agents"]["bob"]["action_prob"] is None
        assert_action_shown(app, snap, "bob")
        await pilot.press("down")
        assert app.focus_agent == "cara"
        svg = app.export_screenshot()
        assert "town" in svg and "alice" in svg

    try:
        run_app(app, body)
    finally:
        source.close()


def test_observer_follows_a_running_town_live_until_its_tick_limit(tmp_path: Path) -> None:
    source = LocalSource(load_config(DEFAULT_CONFIG), audit_path=tmp_path / "audit.jsonl", snapshot_root=tmp_path)
    source.start(tick_rate=40, tick_limit=20)  # the town ticks in its own thread, as `townlet observe` runs it
    app = ObserverApp(source, refresh=0.05, ticks=20)

    async def body(pilot: Any) -> None:
        await until(pilot, "the town's last tick on screen", lambda: app.snap.get("tick") == 20)
        # The shard's thread publishes tick 20 and then ends: wait for its end, not just the last snapshot.
        await until(pilot, "the town's thread to end", lambda: not source.running)
        assert not source.running and source.failure is None
        assert check_map(map_rows(app), app.town, source.snapshot()) == 9
        header = app.query_one("#header").render_lines(Region(0, 0, SIZE[0], 1))[0].text
        assert "tick 20" in header

    try:
        run_app(app, body)
    finally:
        source.close()


def exit_config(tmp_path: Path) -> Any:
    """The default town with a strict employment policy: one absence puts an agent in the exit queue."""
    cfg = load_config(DEFAULT_CONFIG)
    world = json.loads(json.dumps(cfg.world))
    world["employment"].update(max_absent_shifts=1, absent_cutoff=1, grace_ticks=0)
    return dataclasses.replace(cfg, world=world)


def test_approve_on_an_exit_request_goes_through_the_bus_and_changes_the_next_snapshot(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    source = LocalSource(exit_config(tmp_path), audit_path=audit, snapshot_root=tmp_path)
    shard = source.shard
    town = shard.world.town
    for _ in range(4000):  # fast-forward the town until someone misses a shift and is queued for exit
        town.step(1)
        if town.employment_exit_review()[0]:
            break
    shard.step()  # one shard tick publishes it
    pending = shard.snapshot()["employment"]["pending"]
    assert pending, "nobody was queued for exit"
    agent = pending[0]
    app = ObserverApp(source, live=False, focus_agent=agent)

    async def body(pilot: Any) -> None:
        exits = app.query_one("#exits").render_lines(Region(0, 0, 40, 6))
        assert any(f"▶ {agent}" in s.text for s in exits), [s.text for s in exits]
        for _ in range(24):  # a few more ticks, each seen: the need sparklines fill in
            shard.step()
            await app.poll()
        assert agent in app.snap["employment"]["pending"]
        await pilot.press("colon", *"setneed alice hunger 0.125", "enter")
        await until(pilot, "the palette's result", lambda: len(app.results) == 1)
        assert app.results[0]["status"] == "ok", app.results[0]
        assert app.snap["agents"]["alice"]["needs"]["hunger"] == 0.125
        ARTIFACTS.mkdir(exist_ok=True)
        save_png(app, ARTIFACTS / "observer.png")
        app.save_screenshot(str(ARTIFACTS / "observer.svg"))
        if os.environ.get("TOWNLET_UPDATE_SCREENSHOTS") == "1":
            save_png(app, REPO_ROOT / "docs/img/observer.png")
        before = shard.snapshot()
        assert before["agents"][agent]["alive"]
        await pilot.press("a")
        await until(pilot, "the approve result", lambda: len(app.results) == 2)
        result = app.results[1]
        assert result["status"] == "ok" and result["name"] == "employment_exit", result
        assert result["result"] == {"action": "approve", "agent_id": agent, "exits_at_tick": before["tick"] + 1}
        shard.step()  # the exit is processed at the next tick
        await app.poll()
        after = app.snap
        assert after["tick"] == before["tick"] + 1
        assert not after["agents"][agent]["alive"]
        assert agent not in after["employment"]["pending"]
        assert after["employment"]["exits_today"] == before["employment"]["exits_today"] + 1
        feed = "\n".join(s.text for s in app.query_one("#feed").lines)
        assert f"ok employment_exit approve {agent}" in feed

    try:
        run_app(app, body)
    finally:
        source.close()
    lines = [json.loads(line) for line in audit.read_text(encoding="utf-8").splitlines()]
    approve = [r for r in lines if r["name"] == "employment_exit"]
    assert len(approve) == 1, lines
    assert approve[0]["args"] == ["approve", agent] and approve[0]["status"] == "ok"
    assert approve[0]["issuer"] == "observer" and approve[0]["cmd_id"].startswith("observer-")
    assert [r["name"] for r in lines if r.get("cmd_id")] == ["setneed", "employment_exit"]


def test_observer_attaches_to_a_live_shard_over_http(tmp_path: Path) -> None:
    served = start_shard(tmp_path, tick_rate=20)
    stopped: list[Any] = []
    try:
        res = served.post({"name": "town_map"}, token=ADMIN)
        assert res.status_code == 200, res.text
        town = res.json()["result"]
        assert len(town["walls"]) == town["height"] and town["objects"]
        source = RemoteSource(served.url, ADMIN)
        app = ObserverApp(source, live=False)

        async def body(pilot: Any) -> None:
            assert app.town == town
            assert check_map(map_rows(app), app.town, app.snap) == 9
            first = app.snap["tick"]
            await until(pilot, "a later tick", lambda: served.tick() > first)
            await app.poll()
            assert app.snap["tick"] > first
            assert check_map(map_rows(app), app.town, app.snap) == 9
            stopped.extend(served.stop())  # the shard goes away: the feed says so once, not at every refresh
            for _ in range(3):
                await app.poll()
            feed = [s.text for s in app.query_one("#feed").lines]
            assert sum("cannot reach the shard" in line for line in feed) == 1, feed

        try:
            run_app(app, body)
        finally:
            source.close()
    finally:
        code, err = stopped if stopped else served.stop()
        assert code == 0, err


def test_observer_ui_help_and_usage_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = _cli_env()
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools/observer_ui.py"), "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for option in ("CONFIG", "--url", "--refresh", "--ticks", "--focus-agent", "--token-file"):
        assert option in proc.stdout, option
    monkeypatch.chdir(tmp_path)
    res = run_cli("observe", str(DEFAULT_CONFIG), "--url", "http://127.0.0.1:9")
    assert_one_line_error(res, "not both")
    res = run_cli("observe", str(DEFAULT_CONFIG), "--focus-agent", "zed")
    assert_one_line_error(res, "--focus-agent 'zed': no such agent")


def test_long_towns_and_many_agents_fit_the_panels() -> None:
    # town64 is 256 columns wide: the map shows the 34 around the selected agent, clamped to the map.
    assert map_window(32, 34, 5) == (0, 32)
    assert map_window(256, 34, 103) == (86, 120)
    assert map_window(256, 34, 2) == (0, 34)
    assert map_window(256, 34, 255) == (222, 256)
    ids = [f"a{k}" for k in range(64)]
    assert agent_page(ids, "a20", 9) == (18, 27)
    assert agent_page(ids, "a63", 9) == (63, 64)
    assert agent_page(ids[:9], "a3", 9) == (0, 9)
