"""The native town as Python sees it: array shapes and dtypes, the action space and mask, events, and the
console operations."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import CORE_MANIFEST, DEFAULT_CONFIG, load_yaml
from townlet import ACTION_SPACE_VERSION, Simulation, TownConfig, load_config
from townlet.errors import UsageError

N_AGENTS = 9


@pytest.fixture(scope="module")
def config() -> TownConfig:
    return load_config(DEFAULT_CONFIG)


@pytest.fixture
def sim(config: TownConfig) -> Simulation:
    return Simulation(config, record_events=True)


def index_of(names: list[str], name: str) -> int:
    assert name in names, (name, names)
    return names.index(name)


# -- arrays -------------------------------------------------------------------------------------------------


def test_state_arrays_have_documented_shapes_and_dtypes(sim: Simulation) -> None:
    sim.run(90)
    t = sim.town
    a = t.n_agents
    assert a == N_AGENTS
    n_obj = len(t.object_ids())

    needs = t.needs()
    assert needs.shape == (a, 3)
    assert needs.dtype == np.float32
    pos = t.positions()
    assert pos.shape == (a, 2)
    assert pos.dtype == np.int32
    assert t.wallets().shape == (a,)
    assert t.wallets().dtype == np.float64
    assert t.alive().shape == (a,)
    assert t.alive().dtype == np.bool_

    h, w = t.grid_shape
    walls = t.walls()
    assert walls.shape == (h, w)
    assert walls.dtype == np.bool_
    # Agents stand on floor, inside the grid.
    assert np.all((pos[:, 0] >= 0) & (pos[:, 0] < w) & (pos[:, 1] >= 0) & (pos[:, 1] < h))
    assert not walls[pos[:, 1], pos[:, 0]].any()

    assert t.object_positions().shape == (n_obj, 2)
    assert t.object_positions().dtype == np.int32
    stock = t.object_stock()
    assert stock.shape == (n_obj, len(t.stock_keys()))
    assert stock.dtype == np.uint32
    assert t.queue_lengths().shape == (n_obj, 2)
    assert len(t.object_holders()) == n_obj
    assert t.prices().shape == (len(t.price_keys()),)

    trust, fam, riv = t.relationships()
    for m in (trust, fam, riv):
        assert m.shape == (a, a)
        assert m.dtype == np.float32

    assert len(t.shift_states()) == a
    assert len(t.activities()) == a
    assert t.last_actions().shape == (a,)
    assert t.last_actions().dtype == np.int64
    assert t.last_log_probs().shape == (a,)
    n_events = len(t.event_names())
    assert t.event_counts().shape == (n_events,)
    assert t.event_totals().shape == (n_events,)


def test_arrays_are_copies_not_views(sim: Simulation) -> None:
    needs = sim.needs()
    needs[:] = -5.0
    assert (sim.needs() >= 0).all()


def test_walls_and_objects_match_the_config(sim: Simulation, config: TownConfig) -> None:
    layout = config.world["world"]["layout"].splitlines()
    walls = sim.town.walls()
    assert walls.shape == (len(layout), len(layout[0]))
    assert walls[0].all()
    assert not walls[1, 1]
    assert sim.town.object_ids() == [o["id"] for o in config.world["world"]["objects"]]
    assert sim.town.object_types() == [o["type"] for o in config.world["world"]["objects"]]
    assert sim.town.object_positions().tolist() == [o["pos"] for o in config.world["world"]["objects"]]
    assert sim.agent_ids == [a["id"] for a in config.world["agents"]]


# -- actions --------------------------------------------------------------------------------------------------


def test_action_names_follow_the_versioned_layout(sim: Simulation, config: TownConfig) -> None:
    names = list(sim.town.action_names())
    assert names[:5] == ["wait", "move_n", "move_e", "move_s", "move_w"]
    assert names[-1] == "release"
    manifest = load_yaml(CORE_MANIFEST)
    uses = [n for n in names if n.startswith("use:")]
    assert uses == [f"use:{a['id']}" for a in manifest["affordances"]]
    chats = [n for n in names if n.startswith("chat:")]
    assert chats
    assert chats == [f"chat:{k}" for k in range(len(chats))]
    assert len(names) == 5 + len(uses) + len(chats) + 1
    assert len(set(names)) == len(names)
    # The config knows the same names without building a town.
    assert config.action_names() == names
    assert sim.town.action_space_version == ACTION_SPACE_VERSION
    assert ACTION_SPACE_VERSION


def test_action_mask_shape_and_wait_always_valid(sim: Simulation) -> None:
    t = sim.town
    names = list(t.action_names())
    for _ in range(6):
        mask = t.action_mask()
        assert mask.shape == (t.n_agents, len(names))
        assert mask.dtype == np.bool_
        assert mask[:, 0].all()  # wait
        # Nothing to release before anything was started.
        if t.tick == 0:
            assert not mask[:, index_of(names, "release")].any()
        sim.run(240)


def test_action_mask_follows_walls(sim: Simulation) -> None:
    t = sim.town
    names = list(t.action_names())
    walls = t.walls()
    mask = t.action_mask()
    moves = {"move_n": (0, -1), "move_e": (1, 0), "move_s": (0, 1), "move_w": (-1, 0)}
    for i, (x, y) in enumerate(t.positions().tolist()):
        for name, (dx, dy) in moves.items():
            assert mask[i, index_of(names, name)] == (not walls[y + dy, x + dx]), (i, name)


def test_given_actions_are_applied(sim: Simulation) -> None:
    t = sim.town
    names = list(t.action_names())
    # Put agent 0 in an open spot and move it east; everyone else waits.
    t.teleport(0, 10, 7)
    acts = np.zeros(t.n_agents, dtype=np.int64)
    acts[0] = index_of(names, "move_e")
    t.step(1, acts)
    assert t.positions()[0].tolist() == [11, 7]
    assert t.last_actions().tolist() == acts.tolist()
    assert t.tick == 1


@pytest.mark.parametrize(
    ("actions", "fragment"),
    [
        (np.zeros(3, dtype=np.int64), "expected 9 actions"),
        (np.zeros(10, dtype=np.int64), "expected 9 actions"),
        (np.full(9, -1, dtype=np.int64), "outside [0,"),
        (np.full(9, 10_000, dtype=np.int64), "outside [0,"),
        (np.zeros((9, 1), dtype=np.int64), "1-D"),
        (np.zeros((3, 3), dtype=np.int64), "1-D"),
        (np.zeros(9, dtype=np.float64), "int64"),
    ],
    ids=["too-few", "too-many", "negative", "too-large", "column", "square", "float"],
)
def test_invalid_actions_raise_value_error(sim: Simulation, actions: np.ndarray, fragment: str) -> None:
    before = sim.world_hash()
    with pytest.raises(ValueError) as info:
        sim.town.step(1, actions)
    assert fragment in str(info.value), str(info.value)
    # Nothing moved.
    assert sim.tick == 0
    assert sim.world_hash() == before


def test_given_actions_drive_exactly_one_tick(sim: Simulation) -> None:
    with pytest.raises(ValueError, match="exactly one tick"):
        sim.town.step(2, np.zeros(N_AGENTS, dtype=np.int64))
    assert sim.tick == 0


def test_simulation_step_and_run_validate_input(sim: Simulation) -> None:
    with pytest.raises(ValueError, match="expected 9 actions"):
        sim.step([0, 0])
    with pytest.raises(UsageError, match="tick count must be >= 0"):
        sim.run(-1)
    sim.step([0] * N_AGENTS)
    assert sim.tick == 1


# -- events -----------------------------------------------------------------------------------------------------


def test_event_names_and_drained_events(sim: Simulation) -> None:
    names = sim.event_names
    assert len(names) == len(set(names))
    for expected in ("affordance_start", "affordance_finish", "shift_start", "chat_success", "queue_conflict"):
        assert expected in names
    sim.run(600)
    events = sim.drain_events()
    assert events
    ids = set(sim.agent_ids)
    objects = set(sim.town.object_ids())
    for ev in events:
        assert set(ev) >= {"event", "tick", "agent", "other", "object", "value"}
        assert ev["event"] in names
        assert 0 <= ev["tick"] <= 600
        assert ev["agent"] is None or ev["agent"] in ids
        assert ev["other"] is None or ev["other"] in ids
        assert ev["object"] is None or ev["object"] in objects
    ticks = [ev["tick"] for ev in events]
    assert ticks == sorted(ticks)
    # The recorded list agrees with the counters.
    totals = sim.event_totals()
    for name in {ev["event"] for ev in events}:
        assert totals[name] == sum(ev["event"] == name for ev in events), name
    starts = [ev for ev in events if ev["event"] == "affordance_start"]
    assert starts
    assert all(ev["agent"] is not None and ev["object"] is not None for ev in starts)
    # Draining empties the list.
    assert sim.drain_events() == []
    assert sim.town.events_dropped == 0


def test_events_are_not_recorded_unless_asked(config: TownConfig) -> None:
    sim = Simulation(config)
    assert sim.town.record_events is False
    sim.run(300)
    assert sim.drain_events() == []
    assert sum(sim.event_totals().values()) > 0  # counters run regardless


def test_event_counts_are_per_tick(sim: Simulation) -> None:
    per_tick_sum = np.zeros(len(sim.event_names), dtype=np.uint64)
    for _ in range(200):
        sim.run(1)
        per_tick_sum += sim.town.event_counts().astype(np.uint64)
    assert per_tick_sum.tolist() == sim.town.event_totals().tolist()


# -- console operations --------------------------------------------------------------------------------------------


def test_teleport(sim: Simulation) -> None:
    t = sim.town
    t.teleport(1, 12, 8)
    assert t.positions()[1].tolist() == [12, 8]
    with pytest.raises(ValueError, match="walkable"):
        t.teleport(1, 0, 0)  # a wall
    with pytest.raises(ValueError):
        t.teleport(1, 500, 500)  # outside the map
    assert t.positions()[1].tolist() == [12, 8]
    with pytest.raises(IndexError, match="out of range"):
        t.teleport(N_AGENTS, 12, 8)


def test_set_need(sim: Simulation) -> None:
    t = sim.town
    t.set_need(2, 1, 0.25)
    assert t.needs()[2, 1] == pytest.approx(0.25)
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            t.set_need(2, 0, bad)
    with pytest.raises(ValueError, match="need index"):
        t.set_need(2, 3, 0.5)
    assert t.needs()[2, 0] == pytest.approx(0.8)


def test_set_price(sim: Simulation) -> None:
    t = sim.town
    keys = list(t.price_keys())
    t.set_price("meal_cost", 0.55)
    assert t.prices()[keys.index("meal_cost")] == pytest.approx(0.55)
    with pytest.raises(ValueError, match="caviar"):
        t.set_price("caviar", 1.0)


def test_unknown_perturbation_names_the_configured_ones(sim: Simulation) -> None:
    with pytest.raises(ValueError) as info:
        sim.town.perturbation_trigger("meteor")
    msg = str(info.value)
    assert "meteor" in msg
    for name in ("blackout", "water_outage", "grocer_price_spike", "cafe_meet"):
        assert name in msg


def test_blackout_turns_power_off_then_on(sim: Simulation) -> None:
    t = sim.town
    assert t.utilities() == (True, True)
    event_id = t.perturbation_trigger("blackout", 0, 15)
    t.step(1)
    assert t.utilities() == (False, True)
    active = t.perturbations_active()
    assert [(a[0], a[1], a[2]) for a in active] == [(event_id, "blackout", "blackout")]
    # Cooking needs power: the mask says so.
    names = list(t.action_names())
    assert not t.action_mask()[:, index_of(names, "use:cook_meal")].any()
    t.step(20)
    assert t.utilities() == (True, True)
    assert t.perturbations_active() == []
    kinds = [ev["event"] for ev in sim.drain_events()]
    assert "perturbation_blackout" in kinds
    assert "perturbation_ended" in kinds


def test_water_outage_and_cancel(sim: Simulation) -> None:
    t = sim.town
    event_id = t.perturbation_trigger("water_outage", 0, 100)
    t.step(2)
    assert t.utilities() == (True, False)
    assert t.perturbation_cancel(event_id) is True
    t.step(1)
    assert t.utilities() == (True, True)
    assert t.perturbation_cancel(event_id) is False
    assert "perturbation_cancelled" in {ev["event"] for ev in sim.drain_events()}


def test_price_spike_raises_prices_for_its_duration(sim: Simulation) -> None:
    t = sim.town
    keys = list(t.price_keys())
    base = t.prices().copy()
    t.perturbation_trigger("grocer_price_spike", 0, 10, 1.5)
    t.step(1)
    spiked = t.prices()
    for key in ("meal_cost", "ingredients_cost", "cafe_meal_cost"):
        assert spiked[keys.index(key)] == pytest.approx(base[keys.index(key)] * 1.5)
    assert spiked[keys.index("shower_cost")] == pytest.approx(base[keys.index("shower_cost")])
    t.step(15)
    assert t.prices() == pytest.approx(base)


def test_kill_and_respawn_with_lineage_id(sim: Simulation, config: TownConfig) -> None:
    t = sim.town
    delay = config.world["lifecycle"]["respawn_delay_ticks"]
    assert t.kill(0) is True
    t.step(1)
    assert not t.alive()[0]
    assert (0, "killed") in t.terminations()
    assert t.kill(0) is False  # already dead
    t.step(delay - 5)
    assert not t.alive()[0]
    assert sim.agent_ids[0] == "alice"
    waited = 0
    while not t.alive()[0]:
        t.step(1)
        waited += 1
        assert waited <= 10, "no respawn within the configured delay"
    assert t.alive().all()
    assert sim.agent_ids[0] == "alice#2"
    assert sim.agent_ids[1:] == [a["id"] for a in config.world["agents"]][1:]
    assert t.n_agents == N_AGENTS  # population held constant
    respawn = config.world["lifecycle"]["respawn_needs"]
    assert t.needs()[0].tolist() == pytest.approx([respawn["hunger"], respawn["hygiene"], respawn["energy"]], abs=0.01)
    assert t.wallets()[0] == pytest.approx(config.world["lifecycle"]["respawn_wallet"])
    events = [ev["event"] for ev in sim.drain_events() if ev["agent"] in ("alice", "alice#2")]
    assert "agent_killed" in events
    assert "agent_respawn" in events
    # A second death gives the third generation.
    t.kill(0)
    t.step(delay + 5)
    assert sim.agent_ids[0] == "alice#3"


def test_set_relationship(sim: Simulation) -> None:
    t = sim.town
    t.set_relationship(0, 1, 0.5, 0.4, 0.3)
    trust, fam, riv = t.relationships()
    assert trust[0, 1] == pytest.approx(0.5)
    assert fam[0, 1] == pytest.approx(0.4)
    assert riv[0, 1] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="itself"):
        t.set_relationship(2, 2, 0.1, 0.1, 0.1)


def test_employment_report(sim: Simulation, config: TownConfig) -> None:
    sim.run(config.world["jobs"]["barista"]["start"] + 60)
    rows = sim.town.employment()
    assert len(rows) == N_AGENTS
    jobs = [a.get("job", "") for a in config.world["agents"]]
    assert [r[0] for r in rows] == [j or "" for j in jobs]
    for (_job, state, _late, attendance, earned, withheld), spec_job in zip(rows, jobs, strict=True):
        assert isinstance(state, str)
        assert 0.0 <= attendance <= 1.0
        assert earned >= 0.0
        assert withheld >= 0.0
        if not spec_job:
            assert state == "idle"
            assert earned == 0.0
    # Baristas have been on shift for an hour: somebody earned a wage.
    assert any(r[4] > 0 for r in rows if r[0] == "barista")


def test_metadata(sim: Simulation, config: TownConfig) -> None:
    t = sim.town
    assert t.config_id == config.config_id
    assert t.seed == config.seed
    assert t.ticks_per_day == 1440
    assert len(t.manifest_checksum) == 64
    assert len(t.config_hash) == 64
    other = Simulation(config.with_seed(config.seed + 1)).town
    assert other.manifest_checksum == t.manifest_checksum  # same manifest
    assert other.config_hash != t.config_hash  # another config
