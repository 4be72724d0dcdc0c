//! Queues and reservations: holder on a free object, capacity, wait-list order with age priority,
//! cooldown after success, relationship-preferred handover, ghost steps for stalled holders only,
//! and queue conflicts that count once.

use super::fixture::*;
use crate::events::EventKind;
use crate::state::{Activity, Phase, Waiter};
use crate::world::World;
use serde_json::{json, Value};

/// alice, bob and cara stand in range of the shower (W, S and E of it); dan is one step away.
fn at_shower(v: &Value) -> World {
    let mut w = world(v);
    for (name, pos) in [
        ("alice", [6, 1]),
        ("bob", [7, 2]),
        ("cara", [8, 1]),
        ("dan", [7, 3]),
    ] {
        let i = agent(&w, name);
        w.state.agents[i].pos = pos;
    }
    w
}

fn holders(w: &World, object: &str) -> Vec<usize> {
    w.state.objects[obj(w, object)]
        .holders
        .iter()
        .map(|h| h.agent as usize)
        .collect()
}

fn waiting(w: &World, object: &str) -> Vec<usize> {
    w.state.objects[obj(w, object)]
        .waiting
        .iter()
        .map(|h| h.agent as usize)
        .collect()
}

#[test]
fn a_request_at_a_free_object_holds_and_starts_it() {
    let mut w = at_shower(&base());
    let a = agent(&w, "alice");
    step(&mut w, &[("alice", "use:use_shower")]);
    assert_eq!(holders(&w, "shower_1"), vec![a]);
    assert!(waiting(&w, "shower_1").is_empty());
    let act = w.state.agents[a].activity;
    assert_eq!(act.phase, Phase::Running);
    assert_eq!(act.object as usize, obj(&w, "shower_1"));
    assert_eq!(act.remaining, 4, "5-tick shower, one tick done");
    assert_eq!(total(&w, EventKind::AffordanceStart), 1);
}

#[test]
fn an_agent_out_of_range_walks_first_then_queues() {
    let mut w = at_shower(&base());
    let d = agent(&w, "dan");
    step(&mut w, &[("dan", "use:use_shower")]);
    // One step to (7, 2), in range, and the request in the same tick.
    assert_eq!(w.state.agents[d].pos, [7, 2]);
    assert_eq!(w.state.agents[d].activity.phase, Phase::Running);

    // From the other room it takes several ticks, one tile each.
    let mut w = town();
    let c = agent(&w, "cara");
    let shower = obj(&w, "shower_1");
    let d0 = w.statics.dist_at(shower, w.state.agents[c].pos);
    assert!(d0 > 3);
    for k in 1..d0 {
        step(&mut w, &[("cara", "use:use_shower")]);
        assert_eq!(w.state.agents[c].activity.phase, Phase::Walking);
        assert_eq!(w.statics.dist_at(shower, w.state.agents[c].pos), d0 - k);
    }
    step(&mut w, &[("cara", "use:use_shower")]);
    assert_eq!(w.state.agents[c].activity.phase, Phase::Running);
}

#[test]
fn capacity_is_respected() {
    let mut w = town();
    for (name, pos) in [("alice", [5, 7]), ("bob", [6, 6]), ("cara", [7, 7])] {
        let i = agent(&w, name);
        w.state.agents[i].pos = pos;
    }
    let (a, b, c) = (agent(&w, "alice"), agent(&w, "bob"), agent(&w, "cara"));
    let all = [
        ("alice", "use:eat_cafe"),
        ("bob", "use:eat_cafe"),
        ("cara", "use:eat_cafe"),
    ];
    step(&mut w, &all);
    assert_eq!(holders(&w, "counter_1"), vec![a, b], "two seats");
    assert_eq!(waiting(&w, "counter_1"), vec![c]);
    assert_eq!(w.state.agents[c].activity.phase, Phase::Waiting);
    for _ in 0..20 {
        step(&mut w, &all);
        assert!(holders(&w, "counter_1").len() <= 2);
    }
    assert_eq!(w.state.agents[c].counters.meals_eaten, 1);
}

#[test]
fn the_wait_list_is_served_in_order() {
    let mut w = at_shower(&base());
    let (a, b, c) = (agent(&w, "alice"), agent(&w, "bob"), agent(&w, "cara"));
    step(
        &mut w,
        &[("alice", "use:use_shower"), ("bob", "use:use_shower")],
    );
    let all = [
        ("alice", "use:use_shower"),
        ("bob", "use:use_shower"),
        ("cara", "use:use_shower"),
    ];
    step(&mut w, &all);
    assert_eq!(holders(&w, "shower_1"), vec![a]);
    assert_eq!(waiting(&w, "shower_1"), vec![b, c]);
    // alice finishes at tick 4 and bob takes over (holding until his next action starts it).
    steps(&mut w, 3, &all);
    assert_eq!(holders(&w, "shower_1"), vec![b]);
    assert_eq!(w.state.agents[b].activity.phase, Phase::Holding);
    assert_eq!(waiting(&w, "shower_1"), vec![c]);
    step(&mut w, &all);
    assert_eq!(w.state.agents[b].activity.phase, Phase::Running);
    steps(&mut w, 5, &all);
    assert_eq!(holders(&w, "shower_1"), vec![c]);
    assert_eq!(w.state.agents[a].counters.showers, 1);
    assert_eq!(w.state.agents[b].counters.showers, 1);
}

/// Put bob and cara in the shower's wait list with the given join ticks and run the queue system.
fn assign_with_ages(v: &Value, tick: u64, first: (&str, u64), second: (&str, u64)) -> usize {
    let mut w = at_shower(v);
    let shower = obj(&w, "shower_1");
    let aff = aff(&w, "use_shower");
    w.state.tick = tick;
    for (name, joined) in [first, second] {
        let i = agent(&w, name);
        w.state.agents[i].activity = Activity {
            affordance: aff as i32,
            object: shower as i32,
            phase: Phase::Waiting,
            remaining: 0,
            since: joined,
        };
        w.state.objects[shower].waiting.push(Waiter {
            agent: i as u32,
            joined,
            conflicted: false,
        });
    }
    w.queues_tick();
    let h = holders(&w, "shower_1");
    assert_eq!(h.len(), 1);
    assert_eq!(w.state.agents[h[0]].activity.phase, Phase::Holding);
    assert_eq!(waiting(&w, "shower_1").len(), 1);
    h[0]
}

#[test]
fn age_priority_lets_a_long_waiter_go_first() {
    let v = base();
    let w = town();
    let (b, c) = (agent(&w, "bob"), agent(&w, "cara"));
    // Score = index - 0.1 * ticks waited: cara (index 0, waited 5) -0.5; bob (index 1, waited 30) -2.
    assert_eq!(assign_with_ages(&v, 30, ("cara", 25), ("bob", 0)), b);
    // A small age difference does not beat the queue order: cara -0.5, bob 1 - 1 = 0.
    assert_eq!(assign_with_ages(&v, 30, ("cara", 25), ("bob", 20)), c);
    // Without an age weight the wait list is strictly first come, first served.
    let mut fifo = base();
    set(&mut fifo, "/queue_fairness/age_priority_weight", json!(0.0));
    assert_eq!(assign_with_ages(&fifo, 30, ("cara", 25), ("bob", 0)), c);
}

#[test]
fn cooldown_after_success_blocks_a_new_request() {
    let mut w = at_shower(&base());
    let a = agent(&w, "alice");
    let shower = obj(&w, "shower_1");
    steps(&mut w, 5, &[("alice", "use:use_shower")]);
    assert_eq!(w.state.agents[a].counters.showers, 1);
    let n = w.n_agents();
    assert_eq!(
        w.state.cooldowns[shower * n + a],
        4 + 10,
        "finished at tick 4"
    );
    while w.tick() < 14 {
        assert!(!valid(&w, a, "use:use_shower"));
        step(&mut w, &[("alice", "use:use_shower")]);
        assert!(!w.state.agents[a].last_action_ok);
        assert!(w.state.agents[a].activity.is_idle());
    }
    assert!(valid(&w, a, "use:use_shower"));
    step(&mut w, &[("alice", "use:use_shower")]);
    assert_eq!(w.state.agents[a].activity.phase, Phase::Running);
}

#[test]
fn an_abandoned_use_sets_no_cooldown() {
    let mut w = at_shower(&base());
    let a = agent(&w, "alice");
    steps(&mut w, 2, &[("alice", "use:use_shower")]);
    step(&mut w, &[("alice", "release")]);
    assert!(w.state.agents[a].activity.is_idle());
    assert!(valid(&w, a, "use:use_shower"));
}

#[test]
fn handover_prefers_a_liked_waiter() {
    let mut w = at_shower(&base());
    let (a, b, c) = (agent(&w, "alice"), agent(&w, "bob"), agent(&w, "cara"));
    w.set_relationship(a, c, 0.5, 0.5, 0.0).unwrap();
    w.set_record_events(true);
    let all = [
        ("alice", "use:use_shower"),
        ("bob", "use:use_shower"),
        ("cara", "use:use_shower"),
    ];
    steps(&mut w, 5, &all);
    // bob queued first, but alice hands over to cara, whom she likes.
    assert_eq!(holders(&w, "shower_1"), vec![c]);
    assert_eq!(waiting(&w, "shower_1"), vec![b]);
    let ev = drain_kind(&mut w, EventKind::QueueInteraction);
    assert_eq!(ev.len(), 1);
    assert_eq!((ev[0].agent, ev[0].other), (a as i32, c as i32));
    // The handover itself is a friendly interaction: +0.05 trust and familiarity both ways.
    assert_close(f64::from(w.tie(a, c).trust), 0.55, 1e-6);
    assert_close(f64::from(w.tie(c, a).familiarity), 0.55, 1e-6);
}

#[test]
fn handover_without_preference_goes_to_the_head_and_is_recorded() {
    let mut w = at_shower(&base());
    let (a, b) = (agent(&w, "alice"), agent(&w, "bob"));
    w.set_record_events(true);
    let all = [
        ("alice", "use:use_shower"),
        ("bob", "use:use_shower"),
        ("cara", "use:use_shower"),
    ];
    steps(&mut w, 5, &all);
    assert_eq!(holders(&w, "shower_1"), vec![b]);
    let ev = drain_kind(&mut w, EventKind::QueueInteraction);
    assert_eq!(ev.len(), 1);
    assert_eq!((ev[0].agent, ev[0].other), (a as i32, b as i32));
    assert!(w.tie(a, b).present && w.tie(b, a).present);
    assert_close(f64::from(w.tie(a, b).trust), 0.05, 1e-6);
}

#[test]
fn the_handover_recipient_is_the_agent_that_gets_the_reservation() {
    // A long shower: bob joins at tick 0, cara at tick 15; alice likes cara. At the handover bob
    // has waited 15 ticks longer than cara (more than one queue place's worth of age priority).
    let mut v = base();
    set(&mut v, "/affordances/affordances/2/duration", json!(30));
    let mut w = at_shower(&v);
    let (a, c) = (agent(&w, "alice"), agent(&w, "cara"));
    w.set_relationship(a, c, 0.6, 0.6, 0.0).unwrap();
    w.set_record_events(true);
    let early = [("alice", "use:use_shower"), ("bob", "use:use_shower")];
    steps(&mut w, 15, &early);
    let all = [
        ("alice", "use:use_shower"),
        ("bob", "use:use_shower"),
        ("cara", "use:use_shower"),
    ];
    steps(&mut w, 15, &all);
    assert_eq!(w.state.agents[a].counters.showers, 1);
    let ev = drain_kind(&mut w, EventKind::QueueInteraction);
    assert_eq!(ev.len(), 1);
    let named = ev[0].other as usize;
    assert_eq!(
        holders(&w, "shower_1"),
        vec![named],
        "the handover event and relationship credit must name the agent that got the shower"
    );
    assert_eq!(named, c, "alice hands over to the waiter she likes");
}

/// alice, bob and cara all in range of the stove (W, S and E of it).
fn at_stove() -> World {
    let mut w = town();
    for (name, pos) in [("alice", [3, 1]), ("bob", [4, 2]), ("cara", [5, 1])] {
        let i = agent(&w, name);
        w.state.agents[i].pos = pos;
    }
    w
}

#[test]
fn ghost_step_moves_a_stalled_holder_to_the_back() {
    let mut w = at_stove();
    let (a, b, c) = (agent(&w, "alice"), agent(&w, "bob"), agent(&w, "cara"));
    w.set_record_events(true);
    let cook = [
        ("alice", "use:cook_meal"),
        ("bob", "use:cook_meal"),
        ("cara", "use:cook_meal"),
    ];
    step(&mut w, &cook);
    assert_eq!(holders(&w, "stove_1"), vec![a]);
    assert_eq!(waiting(&w, "stove_1"), vec![b, c]);

    // The power goes out: alice's cooking fails, bob takes the stove but cannot start.
    w.perturbation_trigger("blackout", 0, Some(50), None)
        .unwrap();
    let stalled = [("bob", "use:cook_meal"), ("cara", "use:cook_meal")];
    step(&mut w, &stalled);
    assert!(w.state.agents[a].activity.is_idle());
    assert_eq!(holders(&w, "stove_1"), vec![b]);
    assert_eq!(w.state.agents[b].activity.phase, Phase::Holding);
    step(&mut w, &stalled);
    assert_eq!(total(&w, EventKind::QueueGhostStep), 0);
    // Third stalled tick with cara waiting: bob steps back, cara holds.
    step(&mut w, &stalled);
    assert_eq!(total(&w, EventKind::QueueGhostStep), 1);
    assert_eq!(holders(&w, "stove_1"), vec![c]);
    assert_eq!(waiting(&w, "stove_1"), vec![b]);
    assert_eq!(w.state.agents[b].activity.phase, Phase::Waiting);
    assert_eq!(
        w.state.agents[b].activity.affordance as usize,
        aff(&w, "cook_meal")
    );
    let ev = w.state.events.drain();
    let ghost: Vec<_> = ev
        .iter()
        .filter(|e| e.kind == EventKind::QueueGhostStep)
        .collect();
    assert_eq!((ghost[0].agent, ghost[0].other), (b as i32, c as i32));
    let conflicts: Vec<_> = ev
        .iter()
        .filter(|e| e.kind == EventKind::QueueConflict)
        .collect();
    assert_eq!(conflicts.len(), 1);
    // Intensity = ghost_step_boost 1.5 + queue_length_boost 0.25 * (2 in the queue - 1).
    assert_close(f64::from(conflicts[0].value), 1.75, 1e-6);
    let inc = 0.15 * 1.75;
    assert_close(f64::from(rivalry(&w, b, c)), inc, 1e-6);
    assert_close(f64::from(rivalry(&w, c, b)), inc, 1e-6);
    // The queue keeps rotating while the power is out.
    steps(&mut w, 3, &stalled);
    assert_eq!(total(&w, EventKind::QueueGhostStep), 2);
    assert_eq!(holders(&w, "stove_1"), vec![b]);
    assert_close(f64::from(rivalry(&w, b, c)), 2.0 * inc, 1e-6);
}

#[test]
fn ghost_step_never_removes_a_running_holder() {
    let mut w = at_stove();
    let a = agent(&w, "alice");
    let cook = [
        ("alice", "use:cook_meal"),
        ("bob", "use:cook_meal"),
        ("cara", "use:cook_meal"),
    ];
    // Cooking takes 6 ticks with two waiters, twice ghost_step_after.
    for _ in 0..5 {
        step(&mut w, &cook);
        assert_eq!(holders(&w, "stove_1"), vec![a]);
        assert_eq!(w.state.objects[obj(&w, "stove_1")].holders[0].stalled, 0);
    }
    assert_eq!(total(&w, EventKind::QueueGhostStep), 0);
    step(&mut w, &cook);
    assert_eq!(w.state.agents[a].counters.meals_cooked, 1);
    assert_eq!(total(&w, EventKind::QueueGhostStep), 0);
    assert_eq!(total(&w, EventKind::QueueConflict), 0);

    // A long sleep with someone waiting is never pre-empted either.
    let mut w = town();
    let (a, b) = (agent(&w, "alice"), agent(&w, "bob"));
    w.state.agents[a].pos = [2, 7];
    w.state.agents[b].pos = [1, 6];
    let bed1 = obj(&w, "bed_1");
    // Only one bed is usable for bob: give him a cooldown on bed_2.
    let n = w.n_agents();
    let bed2 = obj(&w, "bed_2");
    w.state.cooldowns[bed2 * n + b] = 1000;
    step(&mut w, &[("alice", "use:rest_sleep")]);
    assert_eq!(w.state.agents[a].activity.object as usize, bed1);
    for _ in 0..19 {
        step(
            &mut w,
            &[("alice", "use:rest_sleep"), ("bob", "use:rest_sleep")],
        );
    }
    assert_eq!(w.state.agents[b].activity.object as usize, bed1);
    assert_eq!(w.state.agents[a].counters.sleeps, 1);
    assert_eq!(total(&w, EventKind::QueueGhostStep), 0);
}

fn impatient(patience: u32) -> Value {
    let mut v = base();
    set(&mut v, "/queue_fairness/patience_ticks", json!(patience));
    v
}

/// alice showers from tick 0; bob waits from tick 0. Returns the world after `ticks` ticks.
fn wait_behind_alice(v: &Value, ticks: usize) -> World {
    let mut w = at_shower(v);
    w.set_record_events(true);
    steps(
        &mut w,
        ticks,
        &[("alice", "use:use_shower"), ("bob", "use:use_shower")],
    );
    w
}

#[test]
fn one_queue_conflict_is_one_event_and_one_rivalry_update_each_way() {
    let mut w = wait_behind_alice(&impatient(3), 4);
    let (a, b) = (agent(&w, "alice"), agent(&w, "bob"));
    let ev = drain_kind(&mut w, EventKind::QueueConflict);
    assert_eq!(ev.len(), 1, "waiting longer does not repeat the conflict");
    assert_eq!((ev[0].agent, ev[0].other), (b as i32, a as i32));
    assert_eq!(ev[0].tick, 3, "after patience_ticks of waiting");
    // wait_boost 0.4 + queue_length_boost 0.25 * (2 - 1).
    assert_close(f64::from(ev[0].value), 0.65, 1e-6);
    let inc = 0.15 * 0.65;
    assert_close(f64::from(rivalry(&w, a, b)), inc, 1e-6);
    assert_close(f64::from(rivalry(&w, b, a)), inc, 1e-6);
    assert_eq!(w.kpis().queue_conflicts, 1);
}

#[test]
fn conflict_intensity_is_clamped() {
    let mut v = impatient(3);
    set(&mut v, "/conflict/intensity_max", json!(0.5));
    let mut w = wait_behind_alice(&v, 4);
    let (a, b) = (agent(&w, "alice"), agent(&w, "bob"));
    let ev = drain_kind(&mut w, EventKind::QueueConflict);
    assert_close(f64::from(ev[0].value), 0.5, 1e-6);
    assert_close(f64::from(rivalry(&w, a, b)), 0.15 * 0.5, 1e-6);

    let mut v = impatient(3);
    set(&mut v, "/conflict/wait_boost", json!(0.0));
    set(&mut v, "/conflict/queue_length_boost", json!(0.0));
    set(&mut v, "/conflict/intensity_min", json!(0.2));
    let mut w = wait_behind_alice(&v, 4);
    let ev = drain_kind(&mut w, EventKind::QueueConflict);
    assert_close(f64::from(ev[0].value), 0.2, 1e-6);
    assert_close(f64::from(rivalry(&w, b, a)), 0.15 * 0.2, 1e-6);
}

#[test]
fn personality_modifies_each_side_of_a_conflict_separately() {
    // bob is industrious: unforgiving (-0.1: rivalry x1.05) and ambitious (0.5: rivalry x1.15).
    let mut v = impatient(3);
    set(&mut v, "/agents/1/personality", json!("industrious"));
    let w = wait_behind_alice(&v, 4);
    let (a, b) = (agent(&w, "alice"), agent(&w, "bob"));
    let inc = 0.15 * 0.65;
    assert_close(f64::from(rivalry(&w, a, b)), inc, 1e-6);
    assert_close(f64::from(rivalry(&w, b, a)), inc * 1.05 * 1.15, 1e-6);

    set(&mut v, "/relationships/personality_modifiers", json!(false));
    let w = wait_behind_alice(&v, 4);
    assert_close(f64::from(rivalry(&w, b, a)), inc, 1e-6);
}
