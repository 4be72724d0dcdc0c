//! A small test town built with `serde_json::json!`, and helpers to build variants and drive it.
//!
//! Layout (x grows right, y grows down; `F` fridge, `S` stove, `H` shower, `B` bed, `C` counter,
//! `W` work stall):
//!
//! ```text
//!   x 0123456789AB
//! y0  ############
//! y1  #.F.S..H.F.#
//! y2  #..........#
//! y3  #..........#
//! y4  #####.######   <- one door at x = 5
//! y5  #.........W#
//! y6  #..........#
//! y7  #B.B..C....#
//! y8  ############
//! ```
//!
//! Needs do not decay and relationships do not decay unless a test turns it on, so that every
//! number a test checks comes from the system under test alone.

use crate::events::{Event, EventKind};
use crate::world::{Actions, World};
use serde_json::{json, Value};

pub const LAYOUT: &str = "\
############
#..........#
#..........#
#..........#
#####.######
#..........#
#..........#
#..........#
############
";

pub const TPD: u64 = 200;
pub const SHIFT_START: u64 = 50;
pub const SHIFT_END: u64 = 100;
pub const WAGE: f64 = 0.01;

/// The base test town: four agents (alice, bob and dan work as clerks at `stall_1`, cara has no job),
/// two fridges, a stove, a shower, two beds, a two-seat counter and a work stall.
pub fn base() -> Value {
    json!({
        "config_id": "test_town",
        "seed": 7,
        "world": {
            "ticks_per_day": TPD,
            "layout": LAYOUT,
            "objects": [
                {"id": "fridge_1", "type": "fridge", "pos": [2, 1]},
                {"id": "stove_1", "type": "stove", "pos": [4, 1]},
                {"id": "shower_1", "type": "shower", "pos": [7, 1]},
                {"id": "fridge_2", "type": "fridge", "pos": [9, 1]},
                {"id": "bed_1", "type": "bed", "pos": [1, 7]},
                {"id": "bed_2", "type": "bed", "pos": [3, 7]},
                {"id": "counter_1", "type": "counter", "pos": [6, 7]},
                {"id": "stall_1", "type": "stall", "pos": [10, 5]}
            ]
        },
        "agents": [
            {"id": "alice", "home": [2, 2], "job": "clerk"},
            {"id": "bob", "home": [3, 2], "job": "clerk"},
            {"id": "cara", "home": [8, 5]},
            {"id": "dan", "home": [8, 6], "job": "clerk"}
        ],
        "affordances": {
            "manifest_version": 1,
            "object_types": {
                "fridge": {"capacity": 1, "stock": {"meals": 1}, "max_stock": {"meals": 4}},
                "stove": {"capacity": 1},
                "shower": {"capacity": 1},
                "bed": {"capacity": 1},
                "counter": {"capacity": 2},
                "stall": {"capacity": 3}
            },
            "affordances": [
                {"id": "eat_meal", "object": "fridge", "kind": "meal", "duration": 4,
                 "effects": {"hunger": 0.4, "energy": 0.02}, "price": "meal_cost",
                 "consumes": {"meals": 1}},
                {"id": "cook_meal", "object": "stove", "kind": "cook", "duration": 6,
                 "effects": {"hunger": 0.06, "hygiene": -0.03}, "price": "ingredients_cost",
                 "requires": ["power"], "produces": {"meals": 3}, "produces_into": "fridge"},
                {"id": "use_shower", "object": "shower", "kind": "shower", "duration": 5,
                 "effects": {"hygiene": 0.5}, "price": "shower_cost", "requires": ["water"]},
                {"id": "rest_sleep", "object": "bed", "kind": "sleep", "duration": 20,
                 "effects": {"energy": 0.8}},
                {"id": "eat_cafe", "object": "counter", "kind": "meal", "duration": 8,
                 "effects": {"hunger": 0.5}, "price": "cafe_meal_cost", "requires": ["power"]},
                {"id": "work_shift", "object": "stall", "kind": "work", "duration": 0,
                 "effects": {"energy": -0.001}, "requires": ["on_shift"]}
            ]
        },
        "personalities": {"distribution": {"balanced": 1.0}},
        "needs": {
            "decay": {"hunger": 0.0, "hygiene": 0.0, "energy": 0.0},
            "initial": {"hunger": 0.5, "hygiene": 0.5, "energy": 0.5},
            "faint_threshold": 0.05,
            "faint_window_ticks": 5
        },
        "economy": {
            "prices": {"meal_cost": 0.3, "ingredients_cost": 0.2, "cafe_meal_cost": 0.8,
                       "shower_cost": 0.1},
            "groups": {"grocer": ["meal_cost", "ingredients_cost"], "cafe": ["cafe_meal_cost"]},
            "starting_wallet": 5.0
        },
        "jobs": {
            "clerk": {"site": "stall_1", "start": SHIFT_START, "end": SHIFT_END,
                      "wage_rate": WAGE, "lateness_penalty": 0.1}
        },
        "employment": {
            "grace_ticks": 5, "absent_cutoff": 20, "absence_slack": 10,
            "late_tick_penalty": 0.005, "absence_penalty": 0.2, "max_absent_shifts": 2,
            "attendance_window": 3, "daily_exit_cap": 1, "exit_queue_limit": 8,
            "exit_review_window": 50, "arrival_buffer": 10, "enforce_job_loop": true
        },
        "queue_fairness": {"cooldown_ticks": 10, "ghost_step_after": 3,
                           "age_priority_weight": 0.1, "patience_ticks": 1000},
        "conflict": {"increment_per_conflict": 0.15, "ghost_step_boost": 1.5, "wait_boost": 0.4,
                     "queue_length_boost": 0.25, "intensity_min": 0.1, "intensity_max": 5.0,
                     "avoid_threshold": 0.7},
        "relationships": {"decay": {"trust": 0.0, "familiarity": 0.0, "rivalry": 0.0},
                          "max_edges": 6, "eviction_threshold": 0.001},
        "perturbations": {
            "max_concurrent_events": 4, "window_ticks": 200, "max_events_per_window": 5,
            "events": {
                "spike": {"kind": "price_spike", "duration": [10, 10], "magnitude": [2.0, 2.0],
                          "targets": ["grocer"]},
                "blackout": {"kind": "blackout", "duration": [10, 10]},
                "outage": {"kind": "outage", "duration": [10, 10]},
                "meet": {"kind": "arranged_meet", "duration": [5, 5], "location": "counter"}
            }
        },
        "lifecycle": {"mortality": true, "respawn_delay_ticks": 10,
                      "respawn_needs": {"hunger": 0.6, "hygiene": 0.6, "energy": 0.6},
                      "respawn_wallet": 2.0},
        "identity": {"max_slots": 6, "cooldown_ticks": 100},
        "behavior": {"sleep_window": [170, 30], "chat_cooldown_ticks": 5},
        "actions": {"chat_slots": 3, "chat_range": 2}
    })
}

/// A livelier variant for long runs: needs and relationships decay, deliveries restock the fridges,
/// queues grow impatient, agents chat more, and perturbations happen on their own.
pub fn lively() -> Value {
    let mut v = base();
    set(
        &mut v,
        "/needs/decay",
        json!({"hunger": 0.004, "hygiene": 0.002, "energy": 0.002}),
    );
    set(
        &mut v,
        "/relationships/decay",
        json!({"trust": 0.0005, "familiarity": 0.0005, "rivalry": 0.001}),
    );
    set(
        &mut v,
        "/economy/delivery",
        json!({"enabled": true, "tick_of_day": 20, "object_type": "fridge", "stock": "meals",
               "amount": 2}),
    );
    set(&mut v, "/queue_fairness/patience_ticks", json!(8));
    set(&mut v, "/behavior/chat_propensity", json!(0.3));
    for (name, p) in [
        ("spike", 2.0),
        ("blackout", 1.0),
        ("outage", 1.0),
        ("meet", 2.0),
    ] {
        set(
            &mut v,
            &format!("/perturbations/events/{name}/prob_per_day"),
            json!(p),
        );
    }
    set(&mut v, "/perturbations/max_concurrent_events", json!(2));
    v
}

/// Set the value at a JSON pointer, creating missing objects on the way.
pub fn set(v: &mut Value, pointer: &str, x: Value) {
    let mut cur = v;
    let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    let (last, init) = parts.split_last().expect("non-empty pointer");
    for p in init {
        cur = match cur {
            Value::Array(a) => &mut a[p.parse::<usize>().expect("array index")],
            Value::Object(m) => m.entry(p.to_string()).or_insert_with(|| json!({})),
            _ => panic!("cannot descend into {pointer}"),
        };
    }
    match cur {
        Value::Array(a) => a[last.parse::<usize>().expect("array index")] = x,
        Value::Object(m) => {
            m.insert(last.to_string(), x);
        }
        _ => panic!("cannot set {pointer}"),
    }
}

/// Remove the key at a JSON pointer.
pub fn remove(v: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer");
    let parent = if parent.is_empty() {
        &mut *v
    } else {
        v.pointer_mut(parent).expect("parent exists")
    };
    match parent {
        Value::Object(m) => {
            m.remove(key).expect("key exists");
        }
        Value::Array(a) => {
            a.remove(key.parse::<usize>().expect("index"));
        }
        _ => panic!("cannot remove {pointer}"),
    }
}

pub fn world(v: &Value) -> World {
    World::from_json(&v.to_string(), 0).unwrap_or_else(|e| panic!("fixture config invalid: {e}"))
}

pub fn world_town(v: &Value, town: u64) -> World {
    World::from_json(&v.to_string(), town).expect("fixture config valid")
}

pub fn town() -> World {
    world(&base())
}

// -- indices ----------------------------------------------------------------------------------

pub fn agent(w: &World, name: &str) -> usize {
    w.agent_index(name)
        .unwrap_or_else(|| panic!("no agent {name}"))
}

pub fn obj(w: &World, id: &str) -> usize {
    w.statics
        .objects
        .iter()
        .position(|o| o.id == id)
        .unwrap_or_else(|| panic!("no object {id}"))
}

pub fn aff(w: &World, id: &str) -> usize {
    w.statics
        .affordances
        .iter()
        .position(|a| a.id == id)
        .unwrap_or_else(|| panic!("no affordance {id}"))
}

pub fn action(w: &World, name: &str) -> u16 {
    w.statics
        .action_names
        .iter()
        .position(|a| a == name)
        .unwrap_or_else(|| panic!("no action {name}")) as u16
}

pub fn stock(w: &World, object: &str, key: &str) -> u32 {
    let k = w.statics.stock_index(key).expect("stock key");
    w.state.objects[obj(w, object)].stock[k]
}

pub fn set_stock(w: &mut World, object: &str, key: &str, value: u32) {
    let k = w.statics.stock_index(key).expect("stock key");
    let o = obj(w, object);
    w.state.objects[o].stock[k] = value;
}

pub fn price(w: &World, key: &str) -> f64 {
    w.state.prices[w
        .statics
        .price_keys
        .iter()
        .position(|k| k == key)
        .expect("price key")]
}

// -- driving ----------------------------------------------------------------------------------

/// Step once with `acts` given as (agent name, action name) pairs; everyone else waits.
pub fn step(w: &mut World, acts: &[(&str, &str)]) {
    let mut a = vec![0u16; w.n_agents()];
    for (who, what) in acts {
        a[agent(w, who)] = action(w, what);
    }
    w.step(Actions::Given(&a));
}

/// Step `n` times with the same named actions.
pub fn steps(w: &mut World, n: usize, acts: &[(&str, &str)]) {
    for _ in 0..n {
        step(w, acts);
    }
}

pub fn idle(w: &mut World, n: u64) {
    let a = vec![0u16; w.n_agents()];
    w.run(n, Actions::Given(&a));
}

/// Step with everyone waiting until the tick counter reads `tick`.
pub fn idle_until(w: &mut World, tick: u64) {
    assert!(w.tick() <= tick, "already past tick {tick}");
    let n = tick - w.tick();
    idle(w, n);
}

pub fn mask(w: &World, i: usize) -> Vec<bool> {
    let mut m = vec![false; w.statics.n_actions()];
    w.action_mask(i, &mut m);
    m
}

pub fn valid(w: &World, i: usize, name: &str) -> bool {
    mask(w, i)[action(w, name) as usize]
}

pub fn total(w: &World, kind: EventKind) -> u64 {
    w.state.events.total(kind)
}

pub fn tick_count(w: &World, kind: EventKind) -> u32 {
    w.state.events.tick_counts[kind as usize]
}

/// Recorded events of one kind, drained from the pending list (turn recording on first).
pub fn drain_kind(w: &mut World, kind: EventKind) -> Vec<Event> {
    w.state
        .events
        .drain()
        .into_iter()
        .filter(|e| e.kind == kind)
        .collect()
}

pub fn rivalry(w: &World, a: usize, b: usize) -> f32 {
    w.tie(a, b).rivalry
}

pub fn approx(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[track_caller]
pub fn assert_close(a: f64, b: f64, tol: f64) {
    assert!(approx(a, b, tol), "{a} != {b} (tolerance {tol})");
}

/// A deterministic pseudo-random generator for tests (independent of the world's streams).
#[derive(Clone)]
pub struct TestRng(u64);

impl TestRng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One random valid action per agent (from the action mask).
pub fn random_actions(w: &World, rng: &mut TestRng) -> Vec<u16> {
    (0..w.n_agents())
        .map(|i| {
            let m = mask(w, i);
            let valid: Vec<usize> = (0..m.len()).filter(|&a| m[a]).collect();
            valid[rng.below(valid.len())] as u16
        })
        .collect()
}

#[test]
fn fixture_builds_and_names_actions() {
    let w = town();
    assert_eq!(w.n_agents(), 4);
    assert_eq!(
        w.statics.action_names,
        vec![
            "wait",
            "move_n",
            "move_e",
            "move_s",
            "move_w",
            "use:eat_meal",
            "use:cook_meal",
            "use:use_shower",
            "use:rest_sleep",
            "use:eat_cafe",
            "use:work_shift",
            "chat:0",
            "chat:1",
            "chat:2",
            "release"
        ]
    );
    assert_eq!(stock(&w, "fridge_1", "meals"), 1);
    assert_eq!(w.state.agents[agent(&w, "alice")].pos, [2, 2]);
    world(&lively());
}
