//! Relationships and chat: symmetric, clamped updates; decay toward zero; capacity pruning that
//! keeps the strongest ties; chat success and failure rules.

use super::fixture::*;
use crate::events::EventKind;
use crate::social::Cause;
use crate::state::Tie;
use crate::world::World;
use serde_json::json;

fn present_ties(w: &World, owner: usize) -> Vec<usize> {
    (0..w.n_agents())
        .filter(|&j| w.tie(owner, j).present)
        .collect()
}

#[test]
fn updates_are_symmetric_between_balanced_agents() {
    let mut w = town();
    let (a, b) = (agent(&w, "alice"), agent(&w, "bob"));
    w.update_pair(a, b, 0.1, 0.2, 0.3, Cause::SharedMeal);
    assert_eq!(w.tie(a, b), w.tie(b, a));
    let t = *w.tie(a, b);
    assert!(t.present);
    assert_close(f64::from(t.trust), 0.1, 1e-7);
    assert_close(f64::from(t.familiarity), 0.2, 1e-7);
    assert_close(f64::from(t.rivalry), 0.3, 1e-7);
    // Nobody else is touched, and an agent has no tie to itself.
    let c = agent(&w, "cara");
    assert!(!w.tie(a, c).present && !w.tie(c, a).present);
    w.update_pair(a, a, 1.0, 1.0, 1.0, Cause::Console);
    assert!(!w.tie(a, a).present);
}

#[test]
fn personality_shapes_each_owners_side() {
    let mut v = base();
    set(&mut v, "/agents/0/personality", json!("socialite"));
    set(&mut v, "/agents/1/personality", json!("stoic"));
    let mut w = world(&v);
    let (a, b) = (agent(&w, "alice"), agent(&w, "bob"));
    // Chat success: extroversion adds 0.02 * e to familiarity (socialite 0.6, stoic -0.3).
    w.update_pair(a, b, 0.0, 0.1, 0.0, Cause::ChatSuccess);
    assert_close(f64::from(w.tie(a, b).familiarity), 0.1 + 0.012, 1e-6);
    assert_close(f64::from(w.tie(b, a).familiarity), 0.1 - 0.006, 1e-6);
    // Negative changes are softened by forgiveness (stoic 0.5: x0.75; socialite 0.1: x0.95).
    w.update_pair(a, b, -0.2, 0.0, 0.0, Cause::ChatFailure);
    assert_close(f64::from(w.tie(a, b).trust), -0.19, 1e-6);
    assert_close(f64::from(w.tie(b, a).trust), -0.15, 1e-6);
    // The console sets exactly what it is told.
    w.update_pair(a, b, 0.0, 0.0, 0.2, Cause::Console);
    assert_close(f64::from(w.tie(a, b).rivalry), 0.2, 1e-6);
    assert_close(f64::from(w.tie(b, a).rivalry), 0.2, 1e-6);
}

#[test]
fn values_are_clamped() {
    let mut w = town();
    let (a, b) = (agent(&w, "alice"), agent(&w, "bob"));
    for _ in 0..30 {
        w.update_pair(a, b, 0.3, 0.3, 0.3, Cause::Console);
    }
    let t = *w.tie(a, b);
    assert_eq!((t.trust, t.familiarity, t.rivalry), (1.0, 1.0, 1.0));
    for _ in 0..30 {
        w.update_pair(a, b, -0.3, -0.3, -0.3, Cause::Console);
    }
    let t = *w.tie(b, a);
    assert_eq!((t.trust, t.familiarity, t.rivalry), (-1.0, -1.0, 0.0));
    w.set_relationship(a, b, 5.0, -5.0, 2.0).unwrap();
    let t = *w.tie(a, b);
    assert_eq!((t.trust, t.familiarity, t.rivalry), (1.0, -1.0, 1.0));
    // No tie with oneself: refused, nothing changed.
    assert!(w.set_relationship(a, a, 0.5, 0.5, 0.5).is_err());
    assert!(!w.tie(a, a).present);
}

#[test]
fn ties_decay_toward_zero_and_faded_ties_are_dropped() {
    let mut v = base();
    set(
        &mut v,
        "/relationships/decay",
        json!({"trust": 0.01, "familiarity": 0.02, "rivalry": 0.05}),
    );
    set(&mut v, "/relationships/eviction_threshold", json!(0.01));
    let mut w = world(&v);
    let (a, b, c) = (agent(&w, "alice"), agent(&w, "bob"), agent(&w, "cara"));
    w.set_relationship(a, b, 0.05, -0.1, 0.12).unwrap();
    w.relationships_tick();
    let t = *w.tie(a, b);
    assert_close(f64::from(t.trust), 0.04, 1e-6);
    assert_close(f64::from(t.familiarity), -0.08, 1e-6);
    assert_close(f64::from(t.rivalry), 0.07, 1e-6);
    for _ in 0..3 {
        w.relationships_tick();
    }
    let t = *w.tie(b, a);
    assert_close(f64::from(t.trust), 0.01, 1e-6);
    assert_close(f64::from(t.familiarity), -0.02, 1e-6);
    assert_eq!(t.rivalry, 0.0, "never overshoots zero");
    assert!(t.present);
    // Once every component is below the eviction threshold the tie goes.
    w.relationships_tick();
    w.relationships_tick();
    assert_eq!(*w.tie(a, b), Tie::default());
    assert_eq!(*w.tie(b, a), Tie::default());
    // A strong tie only fades (the world's relationship system runs every tick).
    w.set_relationship(a, c, 0.9, 0.0, 0.0).unwrap();
    idle(&mut w, 10);
    assert_close(f64::from(w.tie(c, a).trust), 0.8, 1e-5);
}

#[test]
fn pruning_keeps_the_strongest_ties() {
    let mut v = base();
    set(&mut v, "/relationships/max_edges", json!(2));
    let mut w = world(&v);
    let (a, b, c, d) = (
        agent(&w, "alice"),
        agent(&w, "bob"),
        agent(&w, "cara"),
        agent(&w, "dan"),
    );
    w.set_record_events(true);
    w.update_pair(a, b, 0.0, 0.0, 0.9, Cause::Conflict); // a strong rival
    w.update_pair(a, c, 0.0, 0.05, 0.0, Cause::SharedMeal); // a weak acquaintance
    w.update_pair(a, d, 0.3, 0.0, 0.0, Cause::SharedMeal); // a friend
    assert_eq!(present_ties(&w, a), vec![b, d], "the rival survives");
    let ev = drain_kind(&mut w, EventKind::RelationshipEvicted);
    assert_eq!(ev.len(), 1);
    assert_eq!((ev[0].agent, ev[0].other), (a as i32, c as i32));
    // Pruning is per owner: cara still remembers alice.
    assert!(w.tie(c, a).present);
    for i in 0..w.n_agents() {
        assert!(present_ties(&w, i).len() <= 2);
    }
}

#[test]
fn chat_between_neutral_agents_succeeds_about_sixty_percent_of_the_time() {
    let mut w = town();
    let (a, b) = (agent(&w, "alice"), agent(&w, "bob"));
    let n = 400;
    let mut ok = 0;
    for _ in 0..n {
        w.state.ties.iter_mut().for_each(|t| *t = Tie::default());
        let before = w.state.agents[a].counters.chats_ok;
        w.chat(a, b);
        ok += (w.state.agents[a].counters.chats_ok - before) as usize;
    }
    // p = 0.6 with no history, balanced agents and a listener that is fine.
    let rate = ok as f64 / n as f64;
    assert!((0.5..0.7).contains(&rate), "success rate {rate}");
    assert_eq!(total(&w, EventKind::ChatSuccess), ok as u64);
    assert_eq!(total(&w, EventKind::ChatFailure), (n - ok) as u64);
}

#[test]
fn chat_outcomes_update_both_sides() {
    let mut w = town();
    let (a, b) = (agent(&w, "alice"), agent(&w, "bob"));
    w.set_record_events(true);
    let mut seen_ok = false;
    let mut seen_fail = false;
    for _ in 0..50 {
        w.state.ties.iter_mut().for_each(|t| *t = Tie::default());
        w.chat(a, b);
        let ev = w.state.events.drain();
        assert_eq!(ev.len(), 1);
        let e = ev[0];
        assert_eq!((e.agent, e.other), (a as i32, b as i32));
        assert_eq!(w.tie(a, b), w.tie(b, a));
        let t = *w.tie(a, b);
        if e.kind == EventKind::ChatSuccess {
            seen_ok = true;
            let q = e.value;
            assert!((0.1..=1.0).contains(&q));
            assert_close(f64::from(t.trust), f64::from(0.05 * q), 1e-6);
            assert_close(f64::from(t.familiarity), f64::from(0.10 * q), 1e-6);
            assert_eq!(t.rivalry, 0.0);
        } else {
            assert_eq!(e.kind, EventKind::ChatFailure);
            seen_fail = true;
            assert_close(f64::from(t.familiarity), -0.05, 1e-6);
            assert_close(f64::from(t.rivalry), 0.05, 1e-6);
            assert!(w.state.agents[a].flags.chat_failed_speaker);
            assert!(w.state.agents[b].flags.chat_failed_listener);
        }
    }
    assert!(seen_ok && seen_fail);
}

#[test]
fn rivals_at_the_avoid_threshold_always_fail() {
    let mut w = town();
    let (a, b) = (agent(&w, "alice"), agent(&w, "bob"));
    w.set_relationship(a, b, 1.0, 1.0, 0.7).unwrap();
    assert!(w.avoids(a, b) && w.avoids(b, a));
    for _ in 0..100 {
        w.chat(a, b);
    }
    assert_eq!(total(&w, EventKind::ChatSuccess), 0);
    assert_eq!(total(&w, EventKind::ChatFailure), 100);
    // One-sided rivalry is enough: the listener refuses.
    let mut w = town();
    let n = w.n_agents();
    w.state.ties[b * n + a] = Tie {
        trust: 0.0,
        familiarity: 0.0,
        rivalry: 0.8,
        present: true,
    };
    assert!(!w.avoids(a, b) && w.avoids(b, a));
    assert_eq!(w.rivalry_summary(b), (0.8, 1));
    assert_eq!(w.rivalry_summary(a), (0.0, 0));
    for _ in 0..100 {
        w.chat(a, b);
    }
    assert_eq!(total(&w, EventKind::ChatSuccess), 0);
}

#[test]
fn a_chat_action_starts_the_speakers_cooldown() {
    let mut w = town();
    let a = agent(&w, "alice");
    step(&mut w, &[("alice", "chat:0")]);
    assert!(w.state.agents[a].last_action_ok);
    assert_eq!(w.state.agents[a].chat_ready_at, 5);
    assert_eq!(
        w.kpis().chat_success + w.kpis().chat_failure,
        1,
        "one chat, one event"
    );
    step(&mut w, &[("alice", "chat:0")]);
    assert!(!w.state.agents[a].last_action_ok, "on cooldown");
}
