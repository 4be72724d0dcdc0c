"""Property tests over random seeds, tick counts and actions: world invariants, determinism, snapshot
continuation, action validation and money conservation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from conftest import DEFAULT_CONFIG
from townlet import Simulation, TownConfig, load_config
from townlet._core import Town

BASE = load_config(DEFAULT_CONFIG)
MANIFEST: dict[str, Any] = BASE.world["affordances"]
CAPACITY = {name: int(spec.get("capacity", 1)) for name, spec in MANIFEST["object_types"].items()}
MAX_STOCK = {name: dict(spec.get("max_stock", {})) for name, spec in MANIFEST["object_types"].items()}

seeds = st.integers(min_value=0, max_value=2**64 - 1)
ticks = st.integers(min_value=0, max_value=3000)

FAST = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEWER = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def town_for(seed: int, *, mortality: bool = True) -> Simulation:
    sim = Simulation(BASE.with_seed(seed))
    if not mortality:
        sim.town.set_mortality(False)
    return sim


def random_valid_actions(mask: np.ndarray, previous: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """One valid action per agent; mostly sticky, so that options run long enough to hold objects."""
    acts = np.empty(mask.shape[0], dtype=np.int64)
    for i, row in enumerate(mask):
        if previous is not None and row[previous[i]] and rng.random() < 0.85:
            acts[i] = previous[i]
        else:
            acts[i] = rng.choice(np.flatnonzero(row))
    return acts


def check_invariants(t: Town) -> None:
    needs = t.needs()
    assert np.isfinite(needs).all()
    assert (needs >= 0.0).all(), needs.min()
    assert (needs <= 1.0).all(), needs.max()

    types = t.object_types()
    holders = t.object_holders()
    seen: dict[int, int] = {}
    for obj, (kind, hs) in enumerate(zip(types, holders, strict=True)):
        assert len(hs) <= CAPACITY[kind], (obj, kind, hs)
        assert len(set(hs)) == len(hs), (obj, hs)
        for agent in hs:
            assert 0 <= agent < t.n_agents
            assert agent not in seen, f"agent {agent} holds objects {seen[agent]} and {obj}"
            seen[agent] = obj
    queues = t.queue_lengths()
    assert (queues >= 0).all()
    assert queues[:, 0].tolist() == [len(h) for h in holders]

    stock = t.object_stock()
    keys = t.stock_keys()
    # uint32: a decrement below zero would wrap round to a huge value.
    assert (stock < 2**20).all(), stock.max()
    for obj, kind in enumerate(types):
        for k, key in enumerate(keys):
            cap = MAX_STOCK[kind].get(key)
            if cap is not None:
                assert stock[obj, k] <= cap, (obj, kind, key, int(stock[obj, k]))

    pos = t.positions()
    walls = t.walls()
    assert not walls[pos[:, 1], pos[:, 0]].any()
    assert np.isfinite(t.wallets()).all()
    assert (t.prices() >= 0).all()


# -- invariants ---------------------------------------------------------------------------------------------


@FAST
@given(seed=seeds, chunks=st.lists(st.integers(min_value=1, max_value=600), min_size=1, max_size=6))
def test_invariants_hold_under_the_scripted_policy(seed: int, chunks: list[int]) -> None:
    sim = town_for(seed)
    check_invariants(sim.town)
    for n in chunks:
        sim.run(n)
        check_invariants(sim.town)
    assert sim.tick == sum(chunks)


@FEWER
@given(seed=seeds, n=st.integers(min_value=20, max_value=250), data=st.data())
def test_random_valid_actions_keep_invariants(seed: int, n: int, data: st.DataObject) -> None:
    sim = town_for(seed)
    t = sim.town
    rng = np.random.default_rng(data.draw(st.integers(min_value=0, max_value=2**32 - 1), label="action seed"))
    acts: np.ndarray | None = None
    for _ in range(n):
        mask = t.action_mask()
        assert mask[:, 0].all()
        acts = random_valid_actions(mask, acts, rng)
        assert mask[np.arange(len(acts)), acts].all()
        t.step(1, acts)
        assert t.last_actions().tolist() == acts.tolist()
        check_invariants(t)
    assert sim.tick == n


# -- determinism ---------------------------------------------------------------------------------------------


@FAST
@given(seed=seeds, n=ticks)
def test_same_seed_same_hash(seed: int, n: int) -> None:
    a = town_for(seed)
    b = town_for(seed)
    assert a.world_hash() == b.world_hash()
    a.run(n)
    b.run(n)
    assert a.world_hash() == b.world_hash()
    assert a.kpis() == b.kpis()
    assert np.array_equal(a.needs(), b.needs())


@FAST
@given(seed=seeds, chunks=st.lists(st.integers(min_value=0, max_value=400), min_size=1, max_size=8))
def test_chunking_does_not_change_the_result(seed: int, chunks: list[int]) -> None:
    a = town_for(seed)
    for n in chunks:
        a.run(n)
    b = town_for(seed)
    b.run(sum(chunks))
    assert a.world_hash() == b.world_hash()


@FAST
@given(s1=seeds, s2=seeds, n=st.integers(min_value=300, max_value=1500))
def test_different_seeds_different_hashes(s1: int, s2: int, n: int) -> None:
    assume(s1 != s2)
    a = town_for(s1)
    b = town_for(s2)
    a.run(n)
    b.run(n)
    assert a.world_hash() != b.world_hash()


@FEWER
@given(seed=seeds, n=ticks)
def test_recording_events_does_not_change_the_trajectory(seed: int, n: int) -> None:
    a = Simulation(BASE.with_seed(seed), record_events=True)
    b = Simulation(BASE.with_seed(seed), record_events=False)
    a.run(n)
    b.run(n)
    assert a.world_hash() == b.world_hash()


# -- snapshots --------------------------------------------------------------------------------------------------


@FAST
@given(seed=seeds, n=st.integers(min_value=0, max_value=2000), m=st.integers(min_value=0, max_value=2000))
def test_snapshot_round_trip_continues_bit_identically(seed: int, n: int, m: int) -> None:
    cfg = BASE.with_seed(seed)
    straight = Simulation(cfg)
    straight.run(n + m)

    first = Simulation(cfg)
    first.run(n)
    snap = first.town.snapshot()
    restored = Town.from_snapshot(snap, cfg.world_json())
    assert restored.world_hash() == first.world_hash()
    assert restored.tick == n
    assert restored.snapshot() == snap  # the snapshot of a restored town is the same document
    restored.step(m)
    assert restored.world_hash() == straight.world_hash()
    assert restored.kpis() == straight.town.kpis()
    assert restored.agent_ids() == straight.agent_ids


@FEWER
@given(seed=seeds, n=st.integers(min_value=1, max_value=800))
def test_snapshot_is_bound_to_its_config(seed: int, n: int) -> None:
    cfg = BASE.with_seed(seed)
    sim = Simulation(cfg)
    sim.run(n)
    snap = sim.town.snapshot()
    other: TownConfig = BASE.with_seed(seed ^ 1)
    with pytest.raises(ValueError, match="config"):
        Town.from_snapshot(snap, other.world_json())


# -- invalid actions -----------------------------------------------------------------------------------------------

N_AGENTS = len(BASE.world["agents"])
N_ACTIONS = len(BASE.action_names())


@FAST
@given(
    acts=hnp.arrays(
        np.int64,
        st.integers(min_value=0, max_value=30).filter(lambda k: k != N_AGENTS),
        elements=st.integers(0, N_ACTIONS - 1),
    )
)
def test_wrong_number_of_actions_is_a_value_error(acts: np.ndarray) -> None:
    sim = town_for(0)
    with pytest.raises(ValueError, match=f"expected {N_AGENTS} actions") as info:
        sim.town.step(1, acts)
    assert f"got {len(acts)}" in str(info.value)
    assert sim.tick == 0


@FAST
@given(
    acts=hnp.arrays(np.int64, N_AGENTS, elements=st.integers(-(2**40), 2**40)).filter(
        lambda a: bool(((a < 0) | (a >= N_ACTIONS)).any())
    )
)
def test_out_of_range_actions_are_a_value_error(acts: np.ndarray) -> None:
    sim = town_for(0)
    before = sim.world_hash()
    with pytest.raises(ValueError, match=r"outside \[0, \d+\)") as info:
        sim.town.step(1, acts)
    bad = int(np.flatnonzero((acts < 0) | (acts >= N_ACTIONS))[0])
    assert f"action {int(acts[bad])} for agent {bad}" in str(info.value)
    assert sim.tick == 0
    assert sim.world_hash() == before


@FEWER
@given(shape=hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=9))
def test_multi_dimensional_actions_are_a_value_error(shape: tuple[int, ...]) -> None:
    sim = town_for(0)
    with pytest.raises(ValueError, match="1-D"):
        sim.town.step(1, np.zeros(shape, dtype=np.int64))
    assert sim.tick == 0


# -- money ---------------------------------------------------------------------------------------------------------


@FAST
@given(seed=seeds, n=st.integers(min_value=0, max_value=4320))
def test_wallet_changes_equal_money_flows(seed: int, n: int) -> None:
    sim = town_for(seed, mortality=False)
    t = sim.town
    start = t.wallets().sum()
    t.step(n)
    assert t.alive().all()
    assert t.terminations() == []
    wages, spent, penalties = t.money_flows()
    assert wages >= 0
    assert spent >= 0
    assert penalties >= 0
    delta = t.wallets().sum() - start
    expected = wages - spent - penalties
    scale = max(1.0, wages + spent + penalties)
    assert abs(delta - expected) <= 1e-6 * scale, (delta, expected)


@FEWER
@given(seed=seeds, n=st.integers(min_value=1, max_value=300), data=st.data())
def test_money_is_conserved_under_random_actions(seed: int, n: int, data: st.DataObject) -> None:
    sim = town_for(seed, mortality=False)
    t = sim.town
    rng = np.random.default_rng(data.draw(st.integers(min_value=0, max_value=2**32 - 1), label="action seed"))
    start = t.wallets().sum()
    acts: np.ndarray | None = None
    for _ in range(n):
        acts = random_valid_actions(t.action_mask(), acts, rng)
        t.step(1, acts)
    assert t.alive().all()
    wages, spent, penalties = t.money_flows()
    delta = t.wallets().sum() - start
    assert abs(delta - (wages - spent - penalties)) <= 1e-6 * max(1.0, wages + spent + penalties)
