"""Incident tools (seed 003 §Incident Response) on a real shard: reward clip events counted in the snapshot,
`debug queues` with reservations and the fairness cooldowns, dropped stream payloads counted in /metrics."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from conftest import DEFAULT_CONFIG
from test_ops_bus import ADMIN, VIEWER
from townlet import _core
from townlet.ops import Shard
from townlet.ops.auth import TokenStore
from townlet.ops.http import metrics_text
from townlet.ops.stream import StreamHub
from townlet.sim.config import load_config


def _shard(tmp: Path, **rewards: float) -> Shard:
    config = load_config(DEFAULT_CONFIG)
    if rewards:
        config = replace(config, world={**config.world, "rewards": {**config.world.get("rewards", {}), **rewards}})
    tokens = TokenStore([(VIEWER, "viewer", "vera"), (ADMIN, "admin", "ada")])
    return Shard(config, tokens=tokens, audit_path=tmp / "audit.jsonl", snapshot_root=tmp / "snapshots")


def _clipped_by_hand(shard: Shard, ticks: int) -> int:
    """Step `ticks` times; the agent-ticks whose paid reward differs from the raw one (shaped + terminal)."""
    names = list(_core.REWARD_COMPONENTS)
    total, terminal = names.index("total"), names.index("terminal")
    n = 0
    for _ in range(ticks):
        shard.step()
        b = shard.world.town.reward_breakdown().astype(np.float64)
        raw = b[:, : terminal + 1].sum(axis=1)
        n += int((np.abs(b[:, total] - raw) > 1e-6).sum())
    return n


def test_reward_clip_events_are_counted_in_the_snapshot(tmp_path: Path) -> None:
    tight = _shard(tmp_path / "tight", clip_per_tick=0.001)
    try:
        assert tight.snapshot()["reward_clip_events"] == 0
        expected = _clipped_by_hand(tight, 40)
        assert expected > 0, "a clip of 0.001 per tick clips"
        assert tight.snapshot()["reward_clip_events"] == expected
        assert tight.metrics()["reward_clip_events_total"] == float(expected)
    finally:
        tight.close()
    loose = _shard(tmp_path / "loose", clip_per_tick=1000.0, clip_per_episode=100000.0)
    try:
        assert _clipped_by_hand(loose, 40) == 0
        assert loose.snapshot()["reward_clip_events"] == 0
    finally:
        loose.close()


def test_debug_queues_shows_reservations_and_the_fairness_cooldowns(tmp_path: Path) -> None:
    shard = _shard(tmp_path)
    try:
        fairness_cfg = shard.config.world["queue_fairness"]
        seen_reservation = seen_cooldown = False
        for _ in range(400):
            shard.step()
            out = shard.submit({"name": "debug", "args": ["queues"]}, VIEWER).result
            tick = out["tick"]
            assert out["fairness"]["cooldown_ticks"] == int(fairness_cfg["cooldown_ticks"])
            assert out["fairness"]["ghost_step_after"] == int(fairness_cfg["ghost_step_after"])
            for obj in out["objects"].values():
                assert [r["agent_id"] for r in obj["reservations"]] == [h["agent_id"] for h in obj["holders"]]
                for r in obj["reservations"]:
                    assert r["held_ticks"] == tick - r["since"]
                    seen_reservation = True
                for agent, until in obj["cooldowns"].items():
                    assert obj["cooldown_remaining"][agent] == until - tick > 0
                    seen_cooldown = True
            cooling = sum(len(o["cooldowns"]) for o in out["objects"].values())
            assert out["fairness"]["agents_cooling_down"] == cooling
            if seen_reservation and seen_cooldown:
                break
        assert seen_reservation and seen_cooldown, "the expert reserved objects and released them into a cooldown"
        names = list(shard.world.town.event_names())
        totals = shard.world.town.event_totals()
        assert out["fairness"]["ghost_steps"] == int(totals[names.index("queue_ghost_step")])
        assert out["fairness"]["cooldown_refusals"] == int(totals[names.index("queue_cooldown")])
    finally:
        shard.close()


def test_a_dropped_stream_client_counts_the_payloads_it_lost(tmp_path: Path) -> None:
    shard = _shard(tmp_path)
    try:
        hub = StreamHub(shard, client_queue=3)
        slow, _ = hub.join()
        fast, _ = hub.join()
        for k in range(5):
            hub._broadcast([slow, fast], f"m{k}")
            fast.queue.get_nowait()  # this one reads
        assert slow.dropped is not None and "slow consumer" in slow.dropped
        assert fast.dropped is None
        assert hub.dropped_total == 1
        assert hub.payloads_dropped_total == 4  # the one that did not fit and the three it never read
        assert hub.messages_total == 3 + 5
        text = metrics_text(shard, hub)
        assert "townlet_stream_payloads_dropped_total 4.0" in text
        assert "townlet_stream_resyncs_total 0.0" in text
    finally:
        shard.close()
