//! Perturbations and the economy: price spikes on exactly their resolved targets, utility outages
//! reference-counted, arranged meets for the top rivals, console trigger and cancel, scheduler caps
//! over long runs, deliveries and console prices.

use super::fixture::*;
use crate::events::EventKind;
use crate::state::Phase;
use crate::world::World;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const BASE: [(&str, f64); 4] = [
    ("meal_cost", 0.3),
    ("ingredients_cost", 0.2),
    ("cafe_meal_cost", 0.8),
    ("shower_cost", 0.1),
];

fn spike_world(targets: Value) -> World {
    let mut v = base();
    set(&mut v, "/perturbations/events/spike/targets", targets);
    world(&v)
}

/// Trigger the spike (x2 for 10 ticks) at tick 0 and return the prices seen after tick 0.
fn spiked(targets: Value) -> (World, BTreeMap<&'static str, f64>) {
    let mut w = spike_world(targets);
    w.perturbation_trigger("spike", 0, None, None).unwrap();
    step(&mut w, &[]);
    let prices = BASE.iter().map(|(k, _)| (*k, price(&w, k))).collect();
    (w, prices)
}

fn expect_multiplied(targets: Value, multiplied: &[&str]) {
    let (_, prices) = spiked(targets.clone());
    assert_eq!(prices.len(), BASE.len());
    for (k, base) in BASE {
        let want = if multiplied.contains(&k) {
            base * 2.0
        } else {
            base
        };
        assert!(
            approx(prices[k], want, 1e-12),
            "targets {targets}: {k} is {} not {want}",
            prices[k]
        );
    }
}

#[test]
fn a_price_spike_multiplies_exactly_its_resolved_targets() {
    expect_multiplied(json!(["grocer"]), &["meal_cost", "ingredients_cost"]);
    expect_multiplied(
        json!(["cafe", "shower_cost"]),
        &["cafe_meal_cost", "shower_cost"],
    );
    // A key named twice (directly and through its group) is multiplied once.
    expect_multiplied(
        json!(["grocer", "meal_cost"]),
        &["meal_cost", "ingredients_cost"],
    );
    let all: Vec<&str> = BASE.iter().map(|(k, _)| *k).collect();
    expect_multiplied(json!(["global"]), &all);
    expect_multiplied(json!([]), &all);
}

#[test]
fn prices_return_to_baseline_when_the_spike_ends() {
    let (mut w, _) = spiked(json!(["grocer"]));
    assert_eq!(total(&w, EventKind::PerturbationPriceSpike), 1);
    assert_eq!(total(&w, EventKind::EconomyPriceUpdate), 2);
    // Active for ticks 0..9, ended at tick 10.
    idle_until(&mut w, 10);
    assert_close(price(&w, "meal_cost"), 0.6, 1e-12);
    step(&mut w, &[]);
    for (k, base) in BASE {
        assert_eq!(price(&w, k), base, "{k}");
    }
    assert_eq!(total(&w, EventKind::PerturbationEnded), 1);
    assert_eq!(total(&w, EventKind::EconomyPriceUpdate), 4);
    assert!(w.state.perturb.active.is_empty());
}

#[test]
fn overlapping_spikes_multiply_and_unwind() {
    let mut w = spike_world(json!(["grocer"]));
    w.perturbation_trigger("spike", 0, Some(10), Some(2.0))
        .unwrap();
    w.perturbation_trigger("spike", 5, Some(10), Some(1.5))
        .unwrap();
    idle_until(&mut w, 6);
    assert_close(price(&w, "meal_cost"), 0.3 * 3.0, 1e-12);
    idle_until(&mut w, 11);
    assert_close(price(&w, "meal_cost"), 0.3 * 1.5, 1e-12);
    idle_until(&mut w, 16);
    assert_eq!(price(&w, "meal_cost"), 0.3);
}

#[test]
fn the_price_at_start_is_the_one_charged() {
    let mut w = town();
    let a = agent(&w, "alice");
    w.perturbation_trigger("spike", 0, None, Some(3.0)).unwrap();
    step(&mut w, &[("alice", "use:eat_meal")]);
    assert_close(w.state.agents[a].wallet, 5.0 - 0.9, 1e-12);
    // The spike ends while she eats; nothing more is charged or refunded.
    steps(&mut w, 3, &[("alice", "use:eat_meal")]);
    assert_close(w.state.agents[a].wallet, 5.0 - 0.9, 1e-12);
}

#[test]
fn console_prices_move_the_baseline() {
    let mut w = town();
    w.set_price("meal_cost", 0.5).unwrap();
    assert_eq!(price(&w, "meal_cost"), 0.5);
    assert!(w.set_price("bread", 1.0).unwrap_err().contains("bread"));
    assert!(w.set_price("meal_cost", -1.0).is_err());
    assert!(w.set_price("meal_cost", f64::NAN).is_err());
    w.perturbation_trigger("spike", 0, Some(3), Some(2.0))
        .unwrap();
    step(&mut w, &[]);
    assert_eq!(price(&w, "meal_cost"), 1.0);
    idle(&mut w, 3);
    assert_eq!(price(&w, "meal_cost"), 0.5);
}

#[test]
fn outages_are_reference_counted() {
    let mut w = town();
    w.perturbation_trigger("blackout", 0, Some(10), None)
        .unwrap();
    w.perturbation_trigger("blackout", 0, Some(20), None)
        .unwrap();
    let water = w.perturbation_trigger("outage", 0, Some(30), None).unwrap();
    step(&mut w, &[]);
    assert_eq!((w.state.power_out, w.state.water_out), (2, 1));
    assert_eq!(total(&w, EventKind::PerturbationBlackout), 2);
    assert_eq!(total(&w, EventKind::PerturbationOutage), 1);
    idle_until(&mut w, 11);
    assert_eq!(w.state.power_out, 1, "the other blackout still holds");
    let a = agent(&w, "alice");
    assert!(!valid(&w, a, "use:cook_meal"));
    idle_until(&mut w, 21);
    assert_eq!(w.state.power_out, 0);
    assert!(valid(&w, a, "use:cook_meal"));
    assert!(w.perturbation_cancel(water));
    assert_eq!(w.state.water_out, 0);
    assert!(valid(&w, a, "use:use_shower"));
}

#[test]
fn trigger_with_delay_and_cancel_pending_or_active() {
    let mut w = town();
    let id = w
        .perturbation_trigger("blackout", 5, Some(10), None)
        .unwrap();
    idle(&mut w, 5);
    assert_eq!(w.state.power_out, 0, "not before tick 5");
    assert_eq!(w.state.perturb.pending.len(), 1);
    step(&mut w, &[]);
    assert_eq!(w.state.power_out, 1);
    assert_eq!(w.state.perturb.active[0].started, 5);
    assert_eq!(w.state.perturb.active[0].ends, 15);
    // Cancel while active: the power is back at once, and it never "ends" on its own.
    assert!(w.perturbation_cancel(id));
    assert_eq!(w.state.power_out, 0);
    assert!(!w.perturbation_cancel(id), "cancelling twice");
    idle(&mut w, 20);
    assert_eq!(total(&w, EventKind::PerturbationCancelled), 1);
    assert_eq!(total(&w, EventKind::PerturbationEnded), 0);

    // Cancel while pending: it never starts.
    let id = w.perturbation_trigger("outage", 3, None, None).unwrap();
    assert!(w.perturbation_cancel(id));
    idle(&mut w, 10);
    assert_eq!(w.state.water_out, 0);
    assert_eq!(total(&w, EventKind::PerturbationOutage), 0);
    assert_eq!(total(&w, EventKind::PerturbationCancelled), 2);
    assert!(!w.perturbation_cancel(999));
}

#[test]
fn bad_triggers_are_refused_clearly() {
    let mut w = town();
    let e = w.perturbation_trigger("flood", 0, None, None).unwrap_err();
    assert!(e.contains("flood") && e.contains("blackout"), "{e}");
    assert!(w
        .perturbation_trigger("blackout", 0, Some(0), None)
        .is_err());
    assert!(w
        .perturbation_trigger("spike", 0, None, Some(-1.0))
        .is_err());
    assert!(w
        .perturbation_trigger("spike", 0, None, Some(f64::INFINITY))
        .is_err());
    assert!(w.state.perturb.pending.is_empty());
}

#[test]
fn an_arranged_meet_brings_the_top_rivals_to_the_location() {
    let mut w = town();
    let (a, b, c, d) = (
        agent(&w, "alice"),
        agent(&w, "bob"),
        agent(&w, "cara"),
        agent(&w, "dan"),
    );
    w.set_relationship(a, c, 0.0, 0.0, 0.3).unwrap();
    w.set_relationship(b, d, 0.0, 0.0, 0.6).unwrap();
    w.set_relationship(a, b, 0.5, 0.5, 0.1).unwrap();
    // bob is in the shower when the meet starts: that is abandoned.
    w.state.agents[b].pos = [6, 1];
    step(&mut w, &[("bob", "use:use_shower")]);
    assert_eq!(w.state.agents[b].activity.phase, Phase::Running);
    w.set_record_events(true);
    w.perturbation_trigger("meet", 0, None, None).unwrap();
    step(&mut w, &[]);
    let meet = &w.state.perturb.active[0];
    assert_eq!(meet.participants, vec![b as u32, d as u32]);
    // The counter at (6, 7): free neighbours north (6, 6) then east (7, 7).
    assert_eq!(w.state.agents[b].pos, [6, 6]);
    assert_eq!(w.state.agents[d].pos, [7, 7]);
    for i in [b, d] {
        assert!(w.state.agents[i].ctx_reset);
        assert!(w.state.agents[i].activity.is_idle());
    }
    assert!(!w.state.agents[a].ctx_reset && !w.state.agents[c].ctx_reset);
    assert_eq!(w.state.agents[a].pos, [2, 2]);
    assert_eq!(
        drain_kind(&mut w, EventKind::ArrangedMeetRelocated).len(),
        2
    );
    assert_eq!(total(&w, EventKind::AffordanceFail), 1);
    assert!(w.state.objects[obj(&w, "shower_1")].holders.is_empty());
}

#[test]
fn an_arranged_meet_without_rivals_draws_participants() {
    let mut v = base();
    set(
        &mut v,
        "/perturbations/events/meet/max_participants",
        json!(3),
    );
    set(
        &mut v,
        "/perturbations/per_agent_cooldown_ticks",
        json!(100),
    );
    let mut w = world(&v);
    w.perturbation_trigger("meet", 0, None, None).unwrap();
    step(&mut w, &[]);
    let p = w.state.perturb.active[0].participants.clone();
    assert_eq!(p.len(), 3);
    let mut sorted = p.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 3, "distinct agents");
    // Under the per-agent cooldown they are not drawn again: only one agent is left.
    w.perturbation_trigger("meet", 0, None, None).unwrap();
    step(&mut w, &[]);
    let q = &w.state.perturb.active.last().unwrap().participants;
    assert_eq!(q.len(), 1);
    assert!(!p.contains(&q[0]));
}

/// A busy scheduler: every spec very likely every tick, short events, tight caps.
fn busy(max_concurrent: u32, per_window: u32, global_cooldown: u32) -> Value {
    let mut v = base();
    set(
        &mut v,
        "/perturbations/max_concurrent_events",
        json!(max_concurrent),
    );
    set(
        &mut v,
        "/perturbations/max_events_per_window",
        json!(per_window),
    );
    set(
        &mut v,
        "/perturbations/global_cooldown_ticks",
        json!(global_cooldown),
    );
    set(&mut v, "/perturbations/window_ticks", json!(100));
    for name in ["spike", "blackout", "outage", "meet"] {
        set(
            &mut v,
            &format!("/perturbations/events/{name}/prob_per_day"),
            json!(100.0),
        );
        set(
            &mut v,
            &format!("/perturbations/events/{name}/duration"),
            json!([3, 40]),
        );
    }
    v
}

/// Run `ticks` ticks and return every scheduled start as (tick, spec).
fn starts(v: &Value, ticks: u64, max_concurrent: usize) -> Vec<(u64, usize)> {
    let mut w = world(v);
    let mut seen: Vec<u32> = vec![];
    let mut out = vec![];
    for _ in 0..ticks {
        step(&mut w, &[]);
        let active = &w.state.perturb.active;
        assert!(active.len() <= max_concurrent, "tick {}", w.tick() - 1);
        let blackouts = active
            .iter()
            .filter(|p| w.statics.perturbations[p.spec].name == "blackout")
            .count();
        assert_eq!(w.state.power_out as usize, blackouts);
        for p in active {
            if !seen.contains(&p.id) {
                seen.push(p.id);
                out.push((p.started, p.spec));
            }
        }
    }
    out
}

#[test]
fn the_scheduler_holds_its_caps_over_a_long_run() {
    let v = busy(2, 1, 0);
    let s = starts(&v, 3000, 2);
    assert!(s.len() > 60, "the scheduler fires ({} starts)", s.len());
    let mut per_window: BTreeMap<(u64, usize), u32> = BTreeMap::new();
    for &(t, spec) in &s {
        *per_window.entry((t / 100, spec)).or_default() += 1;
    }
    assert!(
        per_window.values().all(|&c| c <= 1),
        "one per spec per window"
    );
    // With such high odds every spec fires in most windows.
    assert!(per_window.len() > 4 * 30 / 2);

    let v = busy(1, 3, 0);
    let s = starts(&v, 2000, 1);
    let mut per_window: BTreeMap<(u64, usize), u32> = BTreeMap::new();
    for &(t, spec) in &s {
        *per_window.entry((t / 100, spec)).or_default() += 1;
    }
    assert!(per_window.values().all(|&c| c <= 3));
}

#[test]
fn the_global_and_per_spec_cooldowns_space_events_out() {
    let v = busy(4, 100, 50);
    let s = starts(&v, 3000, 4);
    assert!(s.len() > 20);
    for pair in s.windows(2) {
        assert!(pair[1].0 - pair[0].0 >= 50, "{pair:?}");
    }
    let mut v = busy(4, 100, 0);
    set(
        &mut v,
        "/perturbations/events/blackout/cooldown_ticks",
        json!(300),
    );
    let w = world(&v);
    let blackout = w
        .statics
        .perturbations
        .iter()
        .position(|p| p.name == "blackout")
        .unwrap();
    let s = starts(&v, 3000, 4);
    let b: Vec<u64> = s.iter().filter(|x| x.1 == blackout).map(|x| x.0).collect();
    assert!(b.len() > 3);
    for pair in b.windows(2) {
        assert!(pair[1] - pair[0] >= 300, "{pair:?}");
    }
}

#[test]
fn a_scenario_timeline_fires_at_its_ticks() {
    let mut v = base();
    set(
        &mut v,
        "/scenario/timeline",
        json!([{"tick": 7, "perturbation": "blackout", "duration": 4}]),
    );
    let mut w = world(&v);
    idle_until(&mut w, 7);
    assert_eq!(w.state.power_out, 0);
    step(&mut w, &[]);
    assert_eq!(w.state.power_out, 1);
    idle_until(&mut w, 12);
    assert_eq!(w.state.power_out, 0);
}

#[test]
fn deliveries_restock_up_to_the_maximum() {
    let mut v = base();
    set(
        &mut v,
        "/economy/delivery",
        json!({"enabled": true, "tick_of_day": 20, "object_type": "fridge", "stock": "meals",
               "amount": 2}),
    );
    let mut w = world(&v);
    set_stock(&mut w, "fridge_2", "meals", 3);
    idle_until(&mut w, 20);
    assert_eq!(stock(&w, "fridge_1", "meals"), 1);
    step(&mut w, &[]);
    assert_eq!(stock(&w, "fridge_1", "meals"), 3);
    assert_eq!(stock(&w, "fridge_2", "meals"), 4, "capped at max_stock");
    assert_eq!(total(&w, EventKind::StockReplenish), 2);
    idle_until(&mut w, TPD + 21);
    assert_eq!(stock(&w, "fridge_1", "meals"), 4);
    assert_eq!(total(&w, EventKind::StockReplenish), 4);
}
