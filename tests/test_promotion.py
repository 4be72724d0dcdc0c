"""Release and shadow policies that really swap (#15): on a live shard, after promote_policy the actions taken are
the new policy's greedy actions on the same observations (not the old one's), after a rollback the old one's
again; a canary breach (starving agents) rolls back by itself; pre-flight refusals; the history files."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import DEFAULT_CONFIG
from test_ops_bus import ADMIN, VIEWER, err, make_shard
from townlet import _core
from townlet.artifacts.checkpoint import save_checkpoint
from townlet.ops.envelope import CommandResult
from townlet.ops.monitor import ALERTS
from townlet.ops.promotion import PromotionManager, attach
from townlet.ops.promotion_policy import MaskedView
from townlet.ops.shard import Shard
from townlet.ops.world import ShardWorld, TickRecord
from townlet.sim.config import load_config
from townlet.sim.settings_ops import OpsSection, PromotionSettings, SnapshotSettings, StabilitySettings
from townlet.training.evaluate import checkpoint_actor
from townlet.training.network import build_policy

WINDOW = 40


def checkpoint(path: Path, *, seed: int, hidden: int = 16, config_id: str | None = None) -> Path:
    """A real checkpoint (the real writer) of a freshly initialised network: differently seeded, different acts."""
    config = load_config(DEFAULT_CONFIG)
    meta = _core.obs_spec(config.world_json())
    torch.manual_seed(seed)
    net = build_policy({"architecture": "mlp", "obs_dim": meta["obs_dim"], "n_actions": 16, "hidden": hidden})
    metadata = {"config_id": config_id} if config_id else {}
    save_checkpoint(path, net, obs_meta=meta, config=config.world, seed=seed, counters={}, metadata=metadata)
    return path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ckpts")
    return {
        "a": checkpoint(d / "a.json", seed=1),
        "b": checkpoint(d / "b.json", seed=2),
        "c": checkpoint(d / "c.json", seed=6),
        "wide": checkpoint(d / "wide.json", seed=3, hidden=32),
        "other_id": checkpoint(d / "other.json", seed=4, config_id="some_other_town"),
    }


def settings(**promotion: Any) -> OpsSection:
    # The acting networks here are untrained: only starvation (what the canary test forces) fails a window.
    allowed = [a for a in ALERTS if a != "starvation_spike"]
    stability = StabilitySettings(window_ticks=WINDOW, required_passes=2, allowed_alerts=allowed)
    return OpsSection(stability=stability, promotion=PromotionSettings(**promotion))


class Recorder:
    """Every tick's observations, masks and the actions taken."""

    def __init__(self, world: ShardWorld) -> None:
        self.ticks: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
        world.tick_listeners.append(self)

    def __call__(self, world: ShardWorld, rec: TickRecord) -> None:
        if rec.obs is not None and rec.masks is not None:  # None while the expert acts unobserved
            self.ticks.append((rec.tick, rec.obs.copy(), rec.masks.copy(), rec.actions.copy()))

    def take(self) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        out, self.ticks = self.ticks, []
        return out


def greedy(path: Path, obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
    actor: Any = checkpoint_actor(path, config=load_config(DEFAULT_CONFIG))
    return np.asarray(actor(MaskedView(masks, _core.obs_spec(load_config(DEFAULT_CONFIG).world_json())), obs))


def acted_by(path: Path, ticks: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]) -> bool:
    return all(np.array_equal(greedy(path, o, m), a) for _, o, m, a in ticks)


_IDS = itertools.count()


def cmd(shard: Shard, name: str, *args: Any, token: str = ADMIN) -> CommandResult:
    return shard.submit({"name": name, "args": list(args), "cmd_id": f"{name}-{next(_IDS)}"}, token)


def history(tmp: Path) -> list[dict[str, Any]]:
    text = (tmp / "logs/promotion_history.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def setup(tmp: Path, **promotion: Any) -> tuple[Shard, PromotionManager, Recorder]:
    shard = make_shard(tmp)
    manager = attach(shard.world, settings(**promotion), root=tmp)
    return shard, manager, Recorder(shard.world)


def test_help_lists_the_policy_commands(tmp_path: Path) -> None:
    shard = make_shard(tmp_path)
    table = {c["name"]: c for c in shard.submit({"name": "help"}, VIEWER).result["commands"]}
    for name in ("promote_policy", "rollback_policy", "policy_swap", "promotion_status"):
        assert name in table and not table[name]["reserved"]
    assert table["promotion_status"]["role"] == "viewer" and table["promote_policy"]["role"] == "admin"
    r = shard.submit({"name": "promote_policy", "args": ["x.json"]}, ADMIN)
    assert r.status == "error" and r.error is not None and "cmd_id" in err(r).message
    shard.close()


def test_promotion_swaps_the_acting_policy_and_rollback_swaps_it_back(tmp_path: Path, ckpts: dict[str, Path]) -> None:
    shard, manager, rec = setup(tmp_path)
    # The scripted expert is the initial release; a drill swap makes A the release.
    assert cmd(shard, "promotion_status", token=VIEWER).result["release"]["kind"] == "expert"
    assert cmd(shard, "policy_swap", str(ckpts["a"])).status == "ok"
    rec.take()
    # B in shadow: its actions are logged beside A's, A still acts.
    assert cmd(shard, "shadow_policy", str(ckpts["b"])).status == "ok"
    r = cmd(shard, "promote_policy", str(ckpts["b"]))
    assert err(r).code == "conflict" and "candidate not ready: pass streak 0/2" in err(r).message
    for _ in range(2 * WINDOW):
        shard.step()
    before = rec.take()
    assert acted_by(ckpts["a"], before) and not acted_by(ckpts["b"], before)
    status = cmd(shard, "promotion_status", token=VIEWER).result
    assert status["monitor"]["candidate_ready"] and status["state"] == "ready", status["monitor"]
    assert status["shadow"]["ticks"] == 2 * WINDOW and 0 <= status["shadow"]["agreement"] < 1
    r = cmd(shard, "promote_policy", str(ckpts["c"]))  # ready windows, but C never ran in shadow
    assert err(r).code == "conflict" and "c.json has not run in shadow" in err(r).message
    # Promote: B acts from the very next tick, on the same observations A would have acted on differently.
    tick = shard.tick
    r = cmd(shard, "promote_policy", str(ckpts["b"]))
    assert r.status == "ok", r
    assert r.result["tick"] == tick and r.result["snapshot"] == f"release/{tick}.json"
    assert (tmp_path / "snapshots/release" / f"{tick}.json").exists()
    assert (tmp_path / "snapshots/rel/b.json").exists()
    for _ in range(10):
        shard.step()
    after = rec.take()
    assert after[0][0] == tick  # swap latency: 0 ticks (the next tick is the new policy's)
    assert acted_by(ckpts["b"], after)
    assert not all(np.array_equal(greedy(ckpts["a"], o, m), a) for _, o, m, a in after)
    # Roll back by hand: A again.
    r = cmd(shard, "rollback_policy", "--reason", "drill")
    assert r.status == "ok" and r.result["to"].startswith("checkpoint:a.json"), r
    for _ in range(10):
        shard.step()
    back = rec.take()
    assert acted_by(ckpts["a"], back) and not acted_by(ckpts["b"], back)
    events = [e["event"] for e in history(tmp_path)]
    assert events == ["policy_swap", "promoted", "rollback"]
    rollouts = (tmp_path / "ops/rollouts.md").read_text(encoding="utf-8")
    assert "**promoted** checkpoint:b.json" in rollouts and "reason: drill" in rollouts
    shard.close()
    manager.close()


def test_a_canary_breach_rolls_back_by_itself(tmp_path: Path, ckpts: dict[str, Path]) -> None:
    shard, manager, rec = setup(tmp_path)
    assert cmd(shard, "shadow_policy", str(ckpts["b"])).status == "ok"
    for _ in range(2 * WINDOW):
        shard.step()
    rec.take()
    assert cmd(shard, "promote_policy", str(ckpts["b"])).status == "ok"
    for _ in range(3):
        shard.step()
    assert manager.state == "promoted" and acted_by(ckpts["b"], rec.take())
    r = cmd(shard, "setneed", "alice", "hunger", 0.0)
    assert r.status == "ok", r
    shard.step()
    assert manager.state == "monitoring" and manager.release.kind == "expert"
    last = history(tmp_path)[-1]
    assert last["event"] == "rollback" and last["reason"] == "canary breach: starvation_spike"
    assert last["alert"]["alert"] == "starvation_spike" and last["to"] == "expert"
    assert shard.world.actor is None  # the expert acts again
    shard.close()
    manager.close()


def test_preflight_refuses_what_differs_from_the_release(tmp_path: Path, ckpts: dict[str, Path]) -> None:
    shard, manager, _ = setup(tmp_path)
    r = cmd(shard, "policy_swap", str(ckpts["other_id"]))
    assert err(r).code == "conflict"
    assert "config id 'some_other_town' differs from the release's" in err(r).message
    assert cmd(shard, "policy_swap", str(ckpts["a"])).status == "ok"
    r = cmd(shard, "policy_swap", str(ckpts["wide"]))
    assert "architecture" in err(r).message and "hidden=32" in err(r).message
    r = cmd(shard, "policy_swap", "missing.json")
    assert err(r).code == "not_found"
    assert [e["event"] for e in history(tmp_path)] == ["policy_swap"]
    shard.close()
    manager.close()


def test_rollback_to_a_kept_snapshot_restores_its_world_and_release(tmp_path: Path, ckpts: dict[str, Path]) -> None:
    shard, manager, _ = setup(tmp_path)
    for _ in range(5):
        shard.step()
    assert cmd(shard, "policy_swap", str(ckpts["a"])).status == "ok"
    kept = json.loads((tmp_path / "snapshots/release/5.json").read_text(encoding="utf-8"))
    for _ in range(7):
        shard.step()
    r = cmd(shard, "rollback_policy", "--to", "release/5.json", "--reason", "back to the start")
    assert r.status == "ok", r
    assert shard.world.town.world_hash() == kept["world_hash"] and shard.world.tick == 5
    assert manager.release.kind == "expert" and shard.world.actor is None
    r = cmd(shard, "rollback_policy", "--to", "../outside.json")
    assert err(r).code == "forbidden"
    shard.close()
    manager.close()


def test_a_kept_snapshot_with_the_same_commands_replays_identically(tmp_path: Path, ckpts: dict[str, Path]) -> None:
    def play(shard: Shard, tmp: Path) -> str:
        attach(shard.world, settings(), root=tmp)
        assert cmd(shard, "policy_swap", str(ckpts["a"])).status == "ok"
        for _ in range(3):
            shard.step()
        assert cmd(shard, "setneed", "bob", "hunger", 0.5).status == "ok"
        for _ in range(7):
            shard.step()
        assert shard.world.tick == 15
        return shard.world_hash()

    first = make_shard(tmp_path / "one")
    for _ in range(5):
        first.step()
    live = play(first, tmp_path / "one")
    kept = tmp_path / "one/snapshots/release/5.json"
    again = Shard.from_snapshot(
        kept,
        load_config(DEFAULT_CONFIG),
        tokens=first.tokens,
        audit_path=tmp_path / "two/logs/console/commands.jsonl",
        snapshot_root=tmp_path / "two/snapshots",
    )
    assert again.world.tick == 5
    assert play(again, tmp_path / "two") == live
    first.close()
    again.close()


def test_shadow_evaluation_does_not_change_the_world(tmp_path: Path, ckpts: dict[str, Path]) -> None:
    hashes = []
    for run, shadow in (("plain", False), ("shadowed", True)):
        shard, manager, _ = setup(tmp_path / run)
        if shadow:
            assert cmd(shard, "shadow_policy", str(ckpts["b"])).status == "ok"
        for _ in range(60):
            shard.step()
        assert (manager.shadow_ticks == 60) is shadow
        hashes.append(shard.world_hash())
        shard.close()
        manager.close()
    assert hashes[0] == hashes[1]
    lines = (tmp_path / "shadowed/logs/shadow_actions.jsonl").read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    assert len(lines) == 60 and set(first) == {"tick", "release", "shadow", "agree"} and len(first["shadow"]) == 9


def test_a_safetensors_release_is_installed_whole(tmp_path: Path) -> None:
    ckpt = checkpoint(tmp_path / "st.safetensors", seed=8)  # the weights file; its header is st.json
    shard, manager, rec = setup(tmp_path / "shard")
    r = cmd(shard, "policy_swap", str(ckpt))
    assert r.status == "ok", r
    rel = tmp_path / "shard/snapshots/rel"
    assert (rel / "st.safetensors").exists() and (rel / "st.json").exists()
    installed = Path(r.result["release"]["path"])
    for _ in range(3):
        shard.step()
    assert installed.parent == rel and acted_by(installed, rec.take())
    shard.close()
    manager.close()


def test_paths_that_are_not_checkpoints_or_snapshots_are_clear_errors(tmp_path: Path) -> None:
    shard, manager, _ = setup(tmp_path)
    (tmp_path / "snapshots/release").mkdir(parents=True)
    (tmp_path / "junk.json").write_text("{", encoding="utf-8")
    (tmp_path / "snapshots/release/junk.json").write_text("[]", encoding="utf-8")
    cases = [
        (("policy_swap", str(tmp_path)), "not_found"),  # a folder
        (("shadow_policy", "junk.json"), "invalid_args"),
        (("rollback_policy", "--to", "release"), "not_found"),
        (("rollback_policy", "--to", "release/junk.json"), "invalid_args"),
        (("rollback_policy", "--to"), "invalid_args"),
        (("rollback_policy",), "conflict"),
    ]
    for (name, *args), code in cases:
        r = cmd(shard, name, *args)
        assert err(r).code == code and "\n" not in err(r).message, (name, args, r)
    assert not (tmp_path / "logs/promotion_history.jsonl").exists()
    shard.close()
    manager.close()


def test_autosave_keeps_the_last_k_and_never_the_promotion_snapshots(tmp_path: Path, ckpts: dict[str, Path]) -> None:
    shard = make_shard(tmp_path)
    ops = settings().model_copy(update={"snapshots": SnapshotSettings(autosave_every=10, keep_last=2)})
    manager = attach(shard.world, ops, root=tmp_path)
    hashes: dict[int, str] = {}
    shard.world.tick_listeners.append(lambda w, rec: hashes.__setitem__(w.tick, w.town.world_hash()))
    for _ in range(5):
        shard.step()
    assert cmd(shard, "policy_swap", str(ckpts["a"])).status == "ok"
    for _ in range(40):
        shard.step()
    assert sorted(p.name for p in (tmp_path / "snapshots/auto").iterdir()) == ["30.json", "40.json"]
    assert (tmp_path / "snapshots/release/5.json").exists()
    assert cmd(shard, "promotion_status", token=VIEWER).result["autosaves"] == ["30.json", "40.json"]
    back = Shard.from_snapshot(
        tmp_path / "snapshots/auto/40.json", load_config(DEFAULT_CONFIG), tokens=shard.tokens,
        audit_path=tmp_path / "b/audit.jsonl", snapshot_root=tmp_path / "b/snapshots",
    )  # fmt: skip
    assert back.world.tick == 40 and back.world_hash() == hashes[40]
    for s in (shard, back):
        s.close()
    manager.close()
