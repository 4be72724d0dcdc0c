"""The terminal observer shows the promotion state when the shard has one (#16): the header names the manager's
status and pass streak, as the snapshot's `promotion` says; without a manager nothing is shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.geometry import Region

from conftest import DEFAULT_CONFIG
from test_observer import SIZE, run_app
from townlet.ops.promotion import attach
from townlet.sim.config import load_config
from townlet.ui.app import ObserverApp
from townlet.ui.source import LocalSource


def test_the_header_shows_the_promotion_state(tmp_path: Path) -> None:
    source = LocalSource(load_config(DEFAULT_CONFIG), audit_path=tmp_path / "audit.jsonl", snapshot_root=tmp_path)
    source.shard.step()
    app = ObserverApp(source, live=False)

    def header() -> str:
        return str(app.query_one("#header").render_lines(Region(0, 0, SIZE[0], 1))[0].text)

    async def body(pilot: Any) -> None:
        assert "promotion" not in header()  # no manager, no promotion state
        attach(source.shard.world, root=tmp_path)
        source.shard.step()
        await app.poll()
        await pilot.pause()
        promo = source.snapshot()["promotion"]
        assert promo["status"] == "monitoring" and promo["required_passes"] == 2
        assert f"promotion monitoring {promo['pass_streak']}/2" in header()

    try:
        run_app(app, body)
    finally:
        source.close()
