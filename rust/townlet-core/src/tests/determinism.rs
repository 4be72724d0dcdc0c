//! Determinism and snapshots: same config and seed give the same world hash; a snapshot restores
//! to a bit-identical continuation; bad snapshots fail clearly.

use super::fixture::*;
use crate::snapshot::{snapshot_checksum, SNAPSHOT_VERSION};
use crate::world::{Actions, World};
use serde_json::{json, Value};
use std::sync::Arc;

fn stochastic() -> Value {
    let mut v = lively();
    set(&mut v, "/behavior/temperature", json!(0.5));
    v
}

fn run_policy(v: &Value, town: u64, ticks: u64) -> World {
    let mut w = world_town(v, town);
    w.run(ticks, Actions::Policy);
    w
}

#[test]
fn the_same_config_and_seed_give_the_same_hash() {
    let v = stochastic();
    let a = run_policy(&v, 0, 300);
    let b = run_policy(&v, 0, 300);
    assert_eq!(a.world_hash(), b.world_hash());
    assert_eq!(a.last_actions, b.last_actions);
    assert_eq!(a.kpis(), b.kpis());
    // Something actually happened.
    assert!(a.state.events.totals.iter().sum::<u64>() > 100);
    assert!(a.state.stats.spent > 0.0 && a.state.stats.wages_paid > 0.0);
}

#[test]
fn a_different_seed_or_town_gives_a_different_hash() {
    let v = stochastic();
    let a = run_policy(&v, 0, 200);
    let mut v2 = v.clone();
    set(&mut v2, "/seed", json!(8));
    let b = run_policy(&v2, 0, 200);
    assert_ne!(a.world_hash(), b.world_hash());
    let c = run_policy(&v, 1, 200);
    assert_ne!(a.world_hash(), c.world_hash());
    assert_ne!(a.state.rng_world, c.state.rng_world);
}

#[test]
fn the_hash_covers_the_state_but_not_the_event_reader() {
    let v = stochastic();
    let mut a = world_town(&v, 0);
    let mut b = world_town(&v, 0);
    b.set_record_events(true);
    a.run(50, Actions::Policy);
    b.run(50, Actions::Policy);
    assert_eq!(a.world_hash(), b.world_hash());
    let h = a.world_hash();
    a.state.agents[0].wallet += 0.01;
    assert_ne!(a.world_hash(), h);
}

#[test]
fn a_snapshot_restores_to_an_identical_continuation() {
    let v = stochastic();
    // Stop after a tick that had events, so that the per-tick counters are part of the state.
    let mut half = run_policy(&v, 3, 250);
    while half.state.events.tick_counts.iter().sum::<u32>() == 0 {
        half.step(Actions::Policy);
    }
    let n = half.tick();
    let straight = run_policy(&v, 3, 2 * n);
    let json = half.snapshot_json();
    let mut restored = World::from_snapshot(&json, None).expect("snapshot restores");
    assert_eq!(restored.tick(), n);
    assert_eq!(restored.town, 3);
    assert_eq!(
        restored.world_hash(),
        half.world_hash(),
        "identical right after restore"
    );
    restored.run(n, Actions::Policy);
    assert_eq!(restored.world_hash(), straight.world_hash());
    assert_eq!(restored.kpis(), straight.kpis());

    // Restoring against the config's own statics works; against another config it does not.
    let same = World::from_snapshot(&json, Some(Arc::clone(&half.statics))).unwrap();
    assert_eq!(same.world_hash(), restored_at(&json));
    let other = world(&base());
    let e = World::from_snapshot(&json, Some(Arc::clone(&other.statics))).unwrap_err();
    assert!(e.contains("config hash"), "{e}");
}

fn restored_at(json: &str) -> String {
    World::from_snapshot(json, None).unwrap().world_hash()
}

#[test]
fn snapshots_taken_mid_activity_continue_identically_with_given_actions() {
    // Random valid actions, so that queues, running affordances and walks are all mid-way.
    let v = lively();
    let mut a = world(&v);
    let mut rng = TestRng::new(11);
    let mut script = vec![];
    for _ in 0..400 {
        let acts = random_actions(&a, &mut rng);
        script.push(acts.clone());
        a.step(Actions::Given(&acts));
        if a.tick() == 200 {
            break;
        }
    }
    let json = a.snapshot_json();
    let mut b = World::from_snapshot(&json, None).unwrap();
    for _ in 0..200 {
        let acts = random_actions(&a, &mut rng);
        a.step(Actions::Given(&acts));
        b.step(Actions::Given(&acts));
        assert_eq!(a.world_hash(), b.world_hash(), "tick {}", a.tick());
    }
}

#[test]
fn bad_snapshots_fail_with_a_clear_message() {
    let w = run_policy(&lively(), 0, 10);
    let json = w.snapshot_json();
    let mut doc: Value = serde_json::from_str(&json).unwrap();

    let mut v2 = doc.clone();
    v2["version"] = json!(99);
    let e = World::from_snapshot(&v2.to_string(), None).unwrap_err();
    let current = format!("version {SNAPSHOT_VERSION}");
    assert!(e.contains("version 99") && e.contains(&current), "{e}");

    let mut f = doc.clone();
    f["format"] = json!("something.else");
    let e = World::from_snapshot(&f.to_string(), None).unwrap_err();
    assert!(e.contains("not a Townlet snapshot"), "{e}");

    let e = World::from_snapshot("{ truncated", None).unwrap_err();
    assert!(e.contains("not a JSON document"), "{e}");

    let mut m = doc.clone();
    m.as_object_mut().unwrap().remove("state");
    seal(&mut m);
    let e = World::from_snapshot(&m.to_string(), None).unwrap_err();
    assert!(e.contains("malformed snapshot"), "{e}");

    // A state that does not fit its config (one agent too few).
    doc["state"]["agents"].as_array_mut().unwrap().pop();
    seal(&mut doc);
    let e = World::from_snapshot(&doc.to_string(), None).unwrap_err();
    assert!(e.contains("does not match its config"), "{e}");

    let mut t: Value = serde_json::from_str(&json).unwrap();
    t["state"]["events"]["tick_counts"]
        .as_array_mut()
        .unwrap()
        .pop();
    seal(&mut t);
    let e = World::from_snapshot(&t.to_string(), None).unwrap_err();
    assert!(e.contains("does not match its config"), "{e}");

    // An embedded config that does not validate.
    let mut c: Value = serde_json::from_str(&json).unwrap();
    c["config"]["queue_fairness"]["ghost_step_after"] = json!(0);
    seal(&mut c);
    let e = World::from_snapshot(&c.to_string(), None).unwrap_err();
    assert!(e.contains("queue_fairness.ghost_step_after"), "{e}");
}

/// Re-checksum an edited snapshot document, as a writer with the edit's bug would have.
fn seal(doc: &mut Value) {
    let sum = snapshot_checksum(doc);
    doc["checksum"] = json!(sum);
}

#[test]
fn a_snapshot_changed_after_writing_fails_its_checksum() {
    let w = run_policy(&lively(), 0, 10);
    let json = w.snapshot_json();
    let doc: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["checksum"], json!(snapshot_checksum(&doc)));
    let mismatch = |v: &Value| {
        let e = World::from_snapshot(&v.to_string(), None).unwrap_err();
        assert!(e.contains("checksum mismatch"), "{e}");
    };

    let mut money = doc.clone();
    let cash = money["state"]["agents"][0]["wallet"].as_f64().unwrap();
    money["state"]["agents"][0]["wallet"] = json!(cash + 1.0);
    mismatch(&money);

    let mut town = doc.clone();
    town["town"] = json!(7);
    mismatch(&town);

    let mut sum = doc.clone();
    sum["checksum"] = json!("0".repeat(64));
    mismatch(&sum);

    // Whitespace and key order are not content: the re-serialised document still restores.
    let pretty = serde_json::to_string_pretty(&doc).unwrap();
    let restored = World::from_snapshot(&pretty, None).unwrap();
    assert_eq!(restored.world_hash(), w.world_hash());

    let mut none = doc.clone();
    none.as_object_mut().unwrap().remove("checksum");
    let e = World::from_snapshot(&none.to_string(), None).unwrap_err();
    assert!(e.contains("checksum"), "{e}");

    let mut old = doc;
    old["version"] = json!(1);
    let e = World::from_snapshot(&old.to_string(), None).unwrap_err();
    assert!(e.contains("version 1") && e.contains("checksum"), "{e}");
}
