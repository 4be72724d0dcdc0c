"""A shard acted by a trained policy (a checkpoint): the policy acts for every agent but the possessed one, and
the same commands give the same town."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from conftest import DEFAULT_CONFIG
from test_ops_bus import ADMIN, make_shard
from townlet import _core
from townlet.artifacts.checkpoint import save_checkpoint
from townlet.sim.config import load_config
from townlet.training.network import build_policy


def tiny_checkpoint(path: Path) -> Path:
    config = load_config(DEFAULT_CONFIG)
    meta = _core.obs_spec(config.world_json())
    torch.manual_seed(0)
    net = build_policy({"architecture": "mlp", "obs_dim": meta["obs_dim"], "n_actions": 16, "hidden": 16})
    save_checkpoint(path, net, obs_meta=meta, config=config.world, seed=0, counters={})
    return path


def test_a_policy_shard_acts_by_the_checkpoint_except_for_the_possessed(tmp_path: Path) -> None:
    ckpt = str(tiny_checkpoint(tmp_path / "tiny.json"))
    hashes = []
    for run in ("a", "b"):
        shard = make_shard(tmp_path / run, policy=ckpt)
        east = shard.world.action_index("move_e")
        shard.submit({"name": "possess", "args": ["alice", "move_e"], "cmd_id": "p"}, ADMIN)
        view = shard.world._view
        assert view is not None
        shard.world.town.observe(view.obs, view.masks)
        expected = np.asarray(shard.world._actor(view, view.obs))
        shard.step()
        acted = shard.world.town.last_actions()
        assert acted[0] == east
        masked = [i for i in range(1, len(acted)) if not view.masks[i][expected[i]]]
        assert not masked and list(acted[1:]) == list(expected[1:])
        for _ in range(5):
            shard.step()
        hashes.append(shard.world_hash())
        shard.close()
    assert hashes[0] == hashes[1]
