//! Lifecycle: faint after a sustained hunger crisis, removal from every subsystem, respawn with a
//! lineage id, identity slots with a reuse cooldown, mortality switch, kill, nightly reset.

use super::fixture::*;
use crate::events::EventKind;
use crate::state::{Phase, TermReason};
use serde_json::json;

#[test]
fn faint_needs_the_whole_window_below_the_threshold() {
    let mut w = town();
    let a = agent(&w, "alice");
    w.set_record_events(true);
    w.state.agents[a].needs[0] = 0.04;
    // faint_window_ticks = 5: ticks 0..3 count 1..4 low ticks.
    idle(&mut w, 4);
    assert!(w.state.agents[a].alive);
    assert_eq!(w.state.agents[a].hunger_low_ticks, 4);
    // One tick at the threshold resets the count.
    w.state.agents[a].needs[0] = 0.05;
    step(&mut w, &[]);
    assert_eq!(w.state.agents[a].hunger_low_ticks, 0);
    w.state.agents[a].needs[0] = 0.0;
    idle(&mut w, 4);
    assert!(w.state.agents[a].alive);
    step(&mut w, &[]);
    assert!(!w.state.agents[a].alive, "the fifth consecutive tick");
    let faint = drain_kind(&mut w, EventKind::AgentFaint);
    assert_eq!(faint.len(), 1);
    assert_eq!(faint[0].tick, 9);
    assert_eq!(w.state.stats.faints, 1);
    assert_eq!(w.kpis().faints, 1);
    assert_eq!(total(&w, EventKind::AgentRemoved), 1);
}

#[test]
fn without_mortality_nobody_faints() {
    let mut w = town();
    let a = agent(&w, "alice");
    w.state.agents[a].needs[0] = 0.0;
    w.set_mortality(false);
    idle(&mut w, 50);
    assert!(w.state.agents[a].alive);
    assert_eq!(total(&w, EventKind::AgentFaint), 0);

    let mut v = base();
    set(&mut v, "/lifecycle/mortality", json!(false));
    let mut w = world(&v);
    w.state.agents[a].needs[0] = 0.0;
    idle(&mut w, 50);
    assert!(w.state.agents[a].alive);
}

#[test]
fn removal_clears_queues_ties_exits_and_the_identity_slot() {
    let mut w = town();
    let (a, b, c) = (agent(&w, "alice"), agent(&w, "bob"), agent(&w, "cara"));
    let shower = obj(&w, "shower_1");
    w.state.agents[a].pos = [6, 1];
    w.state.agents[b].pos = [7, 2];
    let both = [("alice", "use:use_shower"), ("bob", "use:use_shower")];
    step(&mut w, &both);
    assert_eq!(w.state.agents[b].activity.phase, Phase::Waiting);
    w.set_relationship(a, b, 0.5, 0.5, 0.0).unwrap();
    w.set_relationship(a, c, 0.0, 0.0, 0.5).unwrap();
    w.state.exits.pending.push((a as u32, 0));
    let slot = w.state.agents[a].identity_slot as usize;
    assert_eq!(w.state.identity.holder[slot], a as i32);

    assert!(w.kill(a));
    assert!(!w.kill(a), "already on the way out");
    step(&mut w, &both);
    assert!(!w.state.agents[a].alive);
    assert_eq!(w.state.agents[a].terminated, Some(TermReason::Killed));
    assert_eq!(total(&w, EventKind::AgentKilled), 1);
    assert_eq!(total(&w, EventKind::AgentRemoved), 1);
    // Queues: alice's running shower failed and bob holds the shower now.
    assert!(w.state.agents[a].activity.is_idle());
    let holders: Vec<u32> = w.state.objects[shower]
        .holders
        .iter()
        .map(|h| h.agent)
        .collect();
    assert_eq!(holders, vec![b as u32]);
    for o in &w.state.objects {
        assert!(o.holders.iter().all(|h| h.agent != a as u32));
        assert!(o.waiting.iter().all(|x| x.agent != a as u32));
    }
    // Ties in both directions, the exit queue, the identity slot.
    for j in 0..w.n_agents() {
        assert!(!w.tie(a, j).present && !w.tie(j, a).present);
    }
    assert!(w.state.exits.pending.is_empty());
    assert_eq!(w.state.agents[a].identity_slot, -1);
    assert_eq!(w.state.identity.holder[slot], -1);
    assert_eq!(w.state.identity.released_at[slot], Some(1));
    // Killing is not a faint or an eviction.
    assert_eq!((w.state.stats.faints, w.state.stats.evictions), (0, 0));
    // The dead hold nothing and cannot be killed again.
    assert!(!w.kill(a));
    assert!(w.teleport(a, 5, 5).is_err());
}

#[test]
fn respawn_after_the_delay_as_the_next_generation_at_home() {
    let mut w = town();
    let a = agent(&w, "alice");
    w.state.agents[a].pos = [5, 3];
    w.state.agents[a].wallet = 9.0;
    w.set_record_events(true);
    w.kill(a);
    step(&mut w, &[]);
    // Removed at the end of tick 0; respawn_delay_ticks = 10.
    assert_eq!(w.state.agents[a].respawn_at, 11);
    idle_until(&mut w, 11);
    assert!(!w.state.agents[a].alive);
    assert_eq!(w.n_agents(), 4, "the slot stays");
    step(&mut w, &[]);
    let ag = &w.state.agents[a];
    assert!(ag.alive);
    assert_eq!(ag.generation, 2);
    assert_eq!(ag.display_id(), "alice#2");
    assert_eq!(ag.pos, ag.home);
    assert_eq!(ag.needs, [0.6, 0.6, 0.6]);
    assert_eq!(ag.wallet, 2.0);
    assert!(ag.ctx_reset);
    assert_eq!(ag.spawned_at, 11);
    assert_eq!(w.agent_index("alice#2"), Some(a));
    let ev = drain_kind(&mut w, EventKind::AgentRespawn);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].value, 2.0);
    // The next life is alice#3.
    w.kill(a);
    idle(&mut w, 12);
    assert_eq!(w.state.agents[a].display_id(), "alice#3");
}

#[test]
fn identity_slots_prefer_unused_then_cooled_down_slots() {
    let mut w = town();
    let ids = |w: &crate::world::World| -> Vec<i32> {
        w.state.agents.iter().map(|a| a.identity_slot).collect()
    };
    assert_eq!(ids(&w), vec![0, 1, 2, 3], "never-used slots first");
    // 6 slots, cooldown 100 ticks, respawn 11 ticks after the kill.
    let kill_and_respawn = |w: &mut crate::world::World, who: usize| {
        w.kill(who);
        idle(w, 12);
        assert!(w.state.agents[who].alive);
        w.state.agents[who].identity_slot
    };
    assert_eq!(kill_and_respawn(&mut w, 0), 4, "unused slot 4");
    assert_eq!(kill_and_respawn(&mut w, 1), 5, "unused slot 5");
    assert_eq!(w.state.identity.forced_reuse, 0);
    // No unused slot left: the longest-released one (slot 0, 24 ticks ago) is reused early.
    assert_eq!(kill_and_respawn(&mut w, 2), 0);
    assert_eq!(w.state.identity.forced_reuse, 1);
    assert_eq!(total(&w, EventKind::IdentityForcedReuse), 1);
    // Well past the cooldown, reuse is normal.
    idle(&mut w, 200);
    assert_eq!(kill_and_respawn(&mut w, 3), 1);
    assert_eq!(w.state.identity.forced_reuse, 1);
    assert_eq!(w.state.identity.allocations, 8);
    // Every living agent holds a distinct slot that records it.
    let mut slots = ids(&w);
    for (i, &s) in slots.iter().enumerate() {
        assert_eq!(w.state.identity.holder[s as usize], i as i32);
    }
    slots.sort_unstable();
    slots.dedup();
    assert_eq!(slots.len(), 4);
}

#[test]
fn respawn_clears_cooldowns_and_chat_readiness() {
    let mut w = town();
    let a = agent(&w, "alice");
    steps(&mut w, 4, &[("alice", "use:eat_meal")]);
    step(&mut w, &[("alice", "chat:0")]);
    let n = w.n_agents();
    let fridge = obj(&w, "fridge_1");
    assert!(w.state.cooldowns[fridge * n + a] > w.tick());
    w.kill(a);
    idle(&mut w, 12);
    assert!(w.state.agents[a].alive);
    assert_eq!(w.state.cooldowns[fridge * n + a], 0);
    assert_eq!(w.state.agents[a].chat_ready_at, 0);
    assert_eq!(w.state.agents[a].counters.meals_eaten, 0);
}

#[test]
fn nightly_reset_sends_everyone_home_rested_enough() {
    let mut v = base();
    set(&mut v, "/lifecycle/nightly_reset", json!(true));
    let mut w = world(&v);
    let (a, c) = (agent(&w, "alice"), agent(&w, "cara"));
    w.state.agents[a].pos = [6, 1];
    w.state.agents[a].needs = [0.2, 0.9, 0.4];
    idle_until(&mut w, TPD - 1);
    step(&mut w, &[("alice", "use:use_shower")]);
    assert_eq!(w.state.agents[a].activity.phase, Phase::Running);
    assert_eq!(total(&w, EventKind::AgentNightlyReset), 0);
    step(&mut w, &[("alice", "use:use_shower")]);
    assert_eq!(total(&w, EventKind::AgentNightlyReset), 4);
    assert!(w.state.agents[a].activity.is_idle());
    assert_eq!(w.state.agents[a].pos, w.state.agents[a].home);
    // Raised to at least 0.5 (hygiene already had more; the shower added one tick of 0.1).
    assert_eq!(w.state.agents[a].needs[0], 0.5);
    assert_eq!(w.state.agents[a].needs[2], 0.5);
    assert!(w.state.agents[a].needs[1] > 0.9);
    assert_eq!(w.state.agents[c].pos, w.state.agents[c].home);
    // Off by default.
    let mut w = town();
    idle(&mut w, TPD + 1);
    assert_eq!(total(&w, EventKind::AgentNightlyReset), 0);
}

#[test]
fn console_agent_operations_check_their_input() {
    let mut w = town();
    let a = agent(&w, "alice");
    assert!(w
        .teleport(a, 0, 0)
        .unwrap_err()
        .contains("not a walkable tile"));
    assert!(w.teleport(a, 2, 1).is_err(), "the fridge's tile");
    w.teleport(a, 8, 7).unwrap();
    assert_eq!(w.state.agents[a].pos, [8, 7]);
    assert!(w.state.agents[a].ctx_reset);
    assert!(w.set_need(a, 3, 0.5).is_err());
    assert!(w.set_need(a, 0, 1.5).is_err());
    w.set_need(a, 1, 0.25).unwrap();
    assert_eq!(w.state.agents[a].needs[1], 0.25);
}

#[test]
fn a_fainting_agent_is_shown_its_world_as_the_tick_ends_before_removal() {
    let mut w = town();
    let a = agent(&w, "alice");
    let layout = crate::obs::ObsLayout::build(&w.statics);
    let (m, f) = (layout.map_len(), layout.n_features());
    let feature = |name: &str| m + layout.feature_names.iter().position(|n| n == name).unwrap();
    w.state.agents[a].needs[0] = 0.0;
    idle(&mut w, 4);
    let energy = w.state.agents[a].needs[2];
    let mut seen = Vec::new();
    w.step_observing(
        crate::world::Actions::Given(&vec![0; w.n_agents()]),
        |w, i| {
            assert_eq!(
                w.tick(),
                5,
                "read as the tick ends, like every other observation"
            );
            let mut obs = vec![0.0; m + f];
            let mut mask = vec![false; w.statics.n_actions()];
            let (map, feats) = obs.split_at_mut(m);
            w.write_observation(&layout, i, map, feats, &mut mask);
            seen.push((i, obs, mask));
        },
    );
    assert!(!w.state.agents[a].alive, "fainted this tick");
    assert_eq!(seen.len(), 1);
    let (i, obs, mask) = &seen[0];
    assert_eq!(*i, a);
    assert!(obs[feature("need_hunger")].abs() < 1e-6);
    assert!((obs[feature("need_energy")] - energy).abs() < 0.05);
    assert!(
        obs[..m].iter().any(|&v| v != 0.0),
        "the map around it, not zeros"
    );
    assert!(
        mask.iter().filter(|&&v| v).count() > 1,
        "its real mask, not wait only"
    );
    // Once removed, its observation reads as zeros with only `wait` valid.
    let mut obs = vec![1.0; m + f];
    let mut mask = vec![true; w.statics.n_actions()];
    let (map, feats) = obs.split_at_mut(m);
    w.write_observation(&layout, a, map, feats, &mut mask);
    assert!(obs.iter().all(|&v| v == 0.0));
    assert_eq!(mask.iter().filter(|&&v| v).count(), 1);
}
