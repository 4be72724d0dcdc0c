"""Snapshot 1.1.0 on a real shard: each agent's action and its probability under the acting policy (the scripted
expert's behaviour log-prob, a checkpoint's distribution, null for a possessed agent's operator action), and the
`promotion` entry (null without a promotion manager); the payloads pass the published schema."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from test_ops_bus import ADMIN, VIEWER, make_shard
from test_promotion import checkpoint
from townlet.ops.promotion import attach
from townlet.ops.snapshot import SCHEMA_VERSION
from townlet.ops.snapshot_schema import check_payload


def _valid(snap: dict[str, object]) -> None:
    version, problems, warnings = check_payload(snap)
    assert (version, problems, warnings) == (SCHEMA_VERSION, [], [])


def test_expert_actions_and_probabilities_and_a_possessed_agent(tmp_path: Path) -> None:
    shard = make_shard(tmp_path)
    try:
        snap = shard.snapshot()
        assert SCHEMA_VERSION == "1.1.0" and snap["schema_version"] == "1.1.0"
        assert snap["promotion"] is None
        assert all(a["action"] is None and a["action_prob"] is None for a in snap["agents"].values())
        _valid(snap)
        for _ in range(5):
            shard.step()
        town = shard.world.town
        names = list(town.action_names())
        ids = list(town.agent_ids())
        taken = town.last_actions()
        logp = np.exp(town.last_log_probs().astype(np.float64))
        snap = shard.snapshot()
        for i, aid in enumerate(ids):
            assert snap["agents"][aid]["action"] == names[int(taken[i])]
            assert snap["agents"][aid]["action_prob"] == round(float(logp[i]), 6)
        _valid(snap)
        r = shard.submit({"name": "possess", "args": ["hugo", "move_e"], "cmd_id": "p1"}, ADMIN)
        assert r.status == "ok", r
        shard.step()
        snap = shard.snapshot()
        assert snap["agents"]["hugo"]["action"] == "move_e"
        assert snap["agents"]["hugo"]["action_prob"] is None
        assert all(a["action_prob"] is not None for k, a in snap["agents"].items() if k != "hugo")
        _valid(snap)
    finally:
        shard.close()


def test_a_checkpoint_policy_reports_its_distributions_probability(tmp_path: Path) -> None:
    ckpt = checkpoint(tmp_path / "a.json", seed=1)
    shard = make_shard(tmp_path, policy=str(ckpt))
    try:
        world = shard.world
        view = world._view
        assert view is not None
        shard.step()
        obs, masks = view.obs.copy(), view.masks.copy()
        net = world.actor.actor.loaded.net
        with torch.no_grad():
            logits, _ = net(torch.from_numpy(obs), torch.from_numpy(masks))
        probs = torch.softmax(logits.double(), -1).numpy()
        greedy = probs.argmax(-1)
        snap = shard.snapshot()
        names = world.action_names
        for i, aid in enumerate(world.agent_ids()):
            agent = snap["agents"][aid]
            assert agent["action"] == names[int(greedy[i])]
            assert agent["action_prob"] == round(float(probs[i, greedy[i]]), 6)
            assert 0.0 < agent["action_prob"] < 1.0  # an untrained network: a real distribution, not a constant
        _valid(snap)
    finally:
        shard.close()


def test_the_promotion_entry_follows_the_manager(tmp_path: Path) -> None:
    shard = make_shard(tmp_path)
    try:
        assert shard.snapshot()["promotion"] is None
        status = shard.submit({"name": "promotion_status"}, VIEWER)
        assert status.status == "ok", status
        shard.step()
        promo = shard.snapshot()["promotion"]
        assert promo == {
            "status": "monitoring",
            "release": "expert",
            "shadow": None,
            "pass_streak": 0,
            "required_passes": status.result["monitor"]["required_passes"],
            "candidate_ready": False,
            "canary_until": None,
            "last_event": None,
        }
        ckpt = checkpoint(tmp_path / "b.json", seed=2)
        r = shard.submit({"name": "policy_swap", "args": [str(ckpt)], "cmd_id": "s1"}, ADMIN)
        assert r.status == "ok", r
        shard.step()
        promo = shard.snapshot()["promotion"]
        assert promo["release"].startswith("checkpoint:b.json:")
        assert promo["last_event"] == {
            "event": "policy_swap",
            "tick": r.result["tick"],
            "from": "expert",
            "to": promo["release"],
            "reason": None,
        }
        _valid(shard.snapshot())
        attach(shard.world)  # a fresh manager: the entry says so
        shard.step()
        assert shard.snapshot()["promotion"]["last_event"] is None
    finally:
        shard.close()
