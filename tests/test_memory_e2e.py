"""Memory policies end to end (issue 17): `townlet sim run --policy`, `townlet capture rollout --policy` and a
serving shard act with a memory checkpoint, keeping one memory row per agent slot from tick to tick and forgetting
it where the town flags a new context (`ctx_reset`: an episode's first tick, a respawn, a console move). Each is
checked against the network stepped by hand with an explicit memory (`MemoryPolicy.step`), and against the same
network without memory, which acts differently (so the memory is really carried)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import DEFAULT_CONFIG, run_cli
from test_ops_bus import ADMIN, make_shard
from test_promotion import cmd, settings
from townlet import _core
from townlet.artifacts.checkpoint import save_checkpoint
from townlet.capture.npz import load_npz
from townlet.jsonio import read_bytes
from townlet.ops.promotion import attach
from townlet.ops.world import ShardWorld, TickRecord
from townlet.sim.config import load_config
from townlet.sim.simulation import Simulation
from townlet.training.network import draw
from townlet.training.network_memory import MemoryPolicy, make_memory_policy
from townlet.training.policy import CheckpointPolicy


def memory_checkpoint(path: Path, arch: str, seed: int = 0) -> Path:
    """A small memory policy of the default town whose core really changes what it does (a fresh core adds
    nothing: its output projection starts at zero)."""
    config = load_config(DEFAULT_CONFIG)
    meta = _core.obs_spec(config.world_json())
    torch.manual_seed(seed)
    net = make_memory_policy(arch, meta, len(meta["action_names"]), 16, 4)
    with torch.no_grad():
        for p in net.core.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return save_checkpoint(path, net, obs_meta=meta, config=config.world, seed=0, counters={})


class ByHand:
    """The checkpoint's network stepped with an explicit memory per slot: reset where `ctx_reset` is set
    (`remember=False`: reset every tick, a policy without memory)."""

    def __init__(self, path: Path, *, remember: bool = True) -> None:
        net = CheckpointPolicy(path).net
        assert isinstance(net, MemoryPolicy) and net.ctx_reset_col is not None
        self.net, self.remember, self.col = net, remember, net.ctx_reset_col
        self.state: torch.Tensor | None = None

    @torch.no_grad()
    def step(self, obs: np.ndarray, masks: np.ndarray, *, forget: tuple[int, ...] = ()) -> torch.Tensor:
        """The logits of one tick (`forget`: slots whose memory is NOT reset even where ctx_reset says so)."""
        o, m = torch.from_numpy(obs.copy()), torch.from_numpy(masks.copy())
        state = self.net.initial_state(len(o)) if self.state is None or not self.remember else self.state
        reset = o[:, self.col] > 0.5
        reset[list(forget)] = False
        state = state * (~reset).float()[:, None]
        logits, _, self.state = self.net.step(o, m, state)
        return logits


@pytest.mark.parametrize("arch", ["gru", "attention"])
def test_sim_run_with_a_memory_policy_is_the_network_stepped_by_hand(tmp_path: Path, arch: str) -> None:
    ckpt = memory_checkpoint(tmp_path / f"{arch}.json", arch)
    ticks = 40
    res = run_cli("sim", "run", "--config", DEFAULT_CONFIG, "--policy", ckpt, "--tick-limit", str(ticks), "--json")
    assert res.returncode == 0, res
    config = load_config(DEFAULT_CONFIG)
    sim = Simulation(config)
    hand, memoryless = ByHand(ckpt), ByHand(ckpt, remember=False)
    gen = torch.Generator().manual_seed(config.seed)  # CheckpointPolicy's, seeded by the config
    meta = sim.observation_metadata()
    obs = np.zeros((sim.town.n_agents, meta["obs_dim"]), np.float32)
    masks = np.zeros((sim.town.n_agents, len(meta["action_names"])), np.bool_)
    differs = 0
    for _ in range(ticks):
        sim.town.observe(obs, masks)
        logits = hand.step(obs, masks)
        differs += int(not torch.allclose(logits, memoryless.step(obs, masks), atol=1e-4))
        sim.step(draw(logits, gen)[0].numpy())
    assert res.json()["world_hash"] == sim.world_hash()
    assert differs >= ticks - 2  # every tick after the first acted on a memory


def test_capture_with_a_memory_policy_records_what_the_network_computes_with_memory(tmp_path: Path) -> None:
    ckpt = memory_checkpoint(tmp_path / "lstm.json", "lstm")
    res = run_cli("capture", "rollout", DEFAULT_CONFIG, "-o", "cap", "--policy", ckpt, "--ticks", "30", "--json")
    assert res.returncode == 0, res
    samples = sorted(Path("cap").glob("*.npz"))
    arrays = [load_npz(p, read_bytes(p)) for p in samples]
    assert len(arrays) == 9
    t = len(arrays[0]["actions"])
    obs = np.stack([np.concatenate([a["map"].reshape(t, -1), a["features"]], 1) for a in arrays], 1)  # (T, N, D)
    masks = np.stack([a["action_masks"] for a in arrays], 1).astype(bool)
    actions = torch.from_numpy(np.stack([a["actions"] for a in arrays], 1).astype(np.int64))
    recorded = np.stack([a["old_log_probs"] for a in arrays], 1)
    for remember in (True, False):
        hand = ByHand(ckpt, remember=remember)
        logp = np.stack([
            torch.log_softmax(hand.step(obs[i], masks[i]), -1).gather(-1, actions[i][:, None])[:, 0].numpy()
            for i in range(t)
        ])  # fmt: skip
        assert np.allclose(logp, recorded, atol=1e-5) == remember


def test_a_serving_shard_keeps_each_slots_memory_and_forgets_it_on_respawn(tmp_path: Path) -> None:
    ckpt = memory_checkpoint(tmp_path / "gru.json", "gru")
    shard = make_shard(tmp_path / "shard", policy=str(ckpt))
    seen: list[tuple[np.ndarray, np.ndarray, np.ndarray, list[float | None]]] = []

    def listen(world: ShardWorld, rec: TickRecord) -> None:
        assert rec.obs is not None and rec.masks is not None
        seen.append((rec.obs.copy(), rec.masks.copy(), np.asarray(rec.actions).copy(), list(world.last_probs)))

    shard.world.tick_listeners.append(listen)
    alice = shard.world.agent("alice")
    for _ in range(6):
        shard.step()
    x, y = (int(v) for v in shard.world.town.positions()[alice])
    assert shard.submit({"name": "kill", "args": ["alice"], "cmd_id": "k"}, ADMIN).status == "ok"
    for _ in range(3):
        shard.step()
    assert not bool(shard.world.town.alive()[alice])
    assert shard.submit({"name": "spawn", "args": ["alice", x, y], "cmd_id": "s"}, ADMIN).status == "ok"
    respawn = len(seen)  # the next tick is alice's first after the respawn
    for _ in range(5):
        shard.step()
    shard.close()
    col = ByHand(ckpt).col
    assert seen[respawn][0][alice, col] == 1.0 and seen[respawn - 1][0][alice, col] == 0.0

    def replay(hand: ByHand, **kw: tuple[int, ...]) -> list[np.ndarray]:
        out = []
        for i, (obs, masks, _, _) in enumerate(seen):
            logits = hand.step(obs, masks, **(kw if i == respawn else {}))
            out.append(torch.softmax(logits.double(), -1).numpy())
        return out

    probs = replay(ByHand(ckpt))
    for (_, _, acted, got), p in zip(seen, probs, strict=True):
        assert np.array_equal(acted, p.argmax(-1))  # greedy: the argmax with memory
        assert np.allclose([float(v) for v in got if v is not None], p.max(-1), atol=1e-6)
    # The memory is carried: without it the probabilities differ after the first tick.
    memoryless = replay(ByHand(ckpt, remember=False))
    assert not np.allclose(memoryless[3], probs[3], atol=1e-4)
    # ... and forgotten at the respawn: keeping alice's memory there computes something else than the shard did.
    kept = replay(ByHand(ckpt), forget=(alice,))
    assert not np.allclose(kept[respawn][alice], probs[respawn][alice], atol=1e-4)
    others = [i for i in range(len(probs[0])) if i != alice]
    assert np.allclose(kept[respawn][others], probs[respawn][others])


def test_a_memory_policy_rolled_back_to_acts_with_fresh_memories(tmp_path: Path) -> None:
    """Swapped out, a memory policy's memory stops at the ticks it acted on; swapped back in by a rollback, it starts
    again from fresh memories rather than from that stale one."""
    a, b = (memory_checkpoint(tmp_path / f"{n}.json", "gru", seed) for n, seed in (("a", 0), ("b", 1)))
    shard = make_shard(tmp_path / "shard")
    attach(shard.world, settings(), root=tmp_path / "shard")
    seen: list[tuple[np.ndarray, np.ndarray, list[float | None]]] = []

    def listen(world: ShardWorld, rec: TickRecord) -> None:
        if rec.obs is not None and rec.masks is not None:
            seen.append((rec.obs.copy(), rec.masks.copy(), list(world.last_probs)))

    shard.world.tick_listeners.append(listen)
    assert cmd(shard, "policy_swap", str(a)).status == "ok"
    for _ in range(4):
        shard.step()
    assert cmd(shard, "policy_swap", str(b)).status == "ok"
    for _ in range(3):
        shard.step()
    assert cmd(shard, "rollback_policy", "--reason", "test").status == "ok"
    for _ in range(3):
        shard.step()
    shard.close()
    assert len(seen) == 10

    def probs(hand: ByHand, ticks: list[tuple[np.ndarray, np.ndarray, list[float | None]]]) -> list[np.ndarray]:
        return [torch.softmax(hand.step(o, m).double(), -1).numpy().max(-1) for o, m, _ in ticks]

    fresh = probs(ByHand(a), seen[7:])
    stale_hand = ByHand(a)
    probs(stale_hand, seen[:4])  # a's memory when it was swapped out
    stale = probs(stale_hand, seen[7:])
    for (_, _, got), want in zip(seen[7:], fresh, strict=True):
        assert np.allclose([float(v) for v in got if v is not None], want, atol=1e-6)
    assert not np.allclose(stale[0], fresh[0], atol=1e-4)


def test_a_snapshot_loaded_into_a_running_shard_gives_the_memory_policy_the_memory_it_kept(tmp_path: Path) -> None:
    """The snapshot keeps the policy's memory at its tick: after `snapshot_load` the policy goes on from that memory,
    not from the (stale) memory of the ticks it ran after the save."""
    ckpt = memory_checkpoint(tmp_path / "gru.json", "gru")
    shard = make_shard(tmp_path / "shard", policy=str(ckpt))
    seen: list[tuple[np.ndarray, np.ndarray, list[float | None]]] = []

    def listen(world: ShardWorld, rec: TickRecord) -> None:
        assert rec.obs is not None and rec.masks is not None
        seen.append((rec.obs.copy(), rec.masks.copy(), list(world.last_probs)))

    shard.world.tick_listeners.append(listen)
    for _ in range(3):
        shard.step()
    assert cmd(shard, "snapshot_save", "at3.json").status == "ok"
    for _ in range(3):
        shard.step()
    loaded = cmd(shard, "snapshot_load", "at3.json")
    assert loaded.status == "ok" and loaded.result["policy_memory"] == {"acting": "restored"}, loaded
    for _ in range(2):
        shard.step()
    shard.close()
    assert len(seen) == 8 and np.array_equal(seen[6][0], seen[3][0])  # tick 3 again
    hand, stale = ByHand(ckpt), ByHand(ckpt)
    for o, m, _ in seen[:3]:
        hand.step(o, m)  # the memory the policy had when the snapshot was saved
    for o, m, _ in seen[:6]:
        stale.step(o, m)  # the memory the policy had before the load
    for o, m, got in seen[6:]:
        want = torch.softmax(hand.step(o, m).double(), -1).numpy().max(-1)
        assert np.allclose([float(v) for v in got if v is not None], want, atol=1e-6)
    acted = [float(v) for v in seen[6][2] if v is not None]
    # The stale memory is of similar ticks: it acts close to the kept one, but not within the float noise above.
    stale_probs = torch.softmax(stale.step(*seen[6][:2]).double(), -1).numpy().max(-1)
    assert not np.allclose(stale_probs, acted, rtol=0, atol=1e-5)
