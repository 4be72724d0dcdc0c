//! Console operations: spawn into a vacant slot, forced chat, arranged meeting, possession, queue view.

use super::fixture::*;
use crate::events::EventKind;
use crate::world::chebyshev;

#[test]
fn spawn_brings_a_removed_agent_back_where_asked() {
    let mut w = town();
    let a = agent(&w, "alice");
    w.set_record_events(true);
    assert!(
        w.spawn(a, [2, 2], None, None).is_err(),
        "alive: nothing to spawn into"
    );
    assert!(w.kill(a));
    idle(&mut w, 1);
    assert!(!w.state.agents[a].alive);
    let before = w.world_hash();
    assert!(w.spawn(a, [0, 0], None, None).is_err(), "a wall");
    assert!(w.spawn(a, [2, 2], Some([2.0, 0.5, 0.5]), None).is_err());
    assert!(w.spawn(a, [2, 2], None, Some(f64::NAN)).is_err());
    assert_eq!(w.world_hash(), before, "refused spawns change nothing");
    w.spawn(a, [8, 6], Some([0.9, 0.8, 0.7]), Some(3.5))
        .unwrap();
    let ag = &w.state.agents[a];
    assert!(ag.alive && ag.ctx_reset);
    assert_eq!(
        (ag.pos, ag.needs, ag.wallet),
        ([8, 6], [0.9, 0.8, 0.7], 3.5)
    );
    assert_eq!(ag.display_id(), "alice#2");
    assert!(ag.identity_slot >= 0);
    let ev = drain_kind(&mut w, EventKind::AgentSpawned);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].agent, a as i32);
    // The respawn scheduled at removal does not fire on a living agent.
    idle(&mut w, 20);
    assert_eq!(w.state.agents[a].generation, 2);
    assert!(w.state.agents[a].alive);
    assert_eq!(total(&w, EventKind::AgentRespawn), 0);
}

#[test]
fn force_chat_is_a_successful_chat_without_a_draw() {
    let mut w = town();
    let (a, b) = (agent(&w, "alice"), agent(&w, "bob"));
    let rng = w.state.rng_social.clone();
    let q = w.force_chat(a, b, 0.8).unwrap();
    assert_eq!(q, 0.8);
    assert!(w.tie(a, b).trust > 0.0 && w.tie(b, a).familiarity > 0.0);
    assert_eq!(w.kpis().chat_success, 1);
    assert_eq!(w.state.rng_social, rng);
    assert!(w.force_chat(a, a, 0.5).is_err());
    assert!(w.kill(b));
    idle(&mut w, 1);
    assert!(w.force_chat(a, b, 0.5).is_err(), "the listener is gone");
    assert_eq!(w.kpis().chat_success, 1);
}

#[test]
fn arrange_meet_puts_two_agents_side_by_side() {
    let mut w = town();
    let (a, b) = (agent(&w, "alice"), agent(&w, "cara"));
    let (pa, pb) = w.arrange_meet(a, b, Some([3, 6])).unwrap();
    assert_eq!(pa, [3, 6]);
    assert_eq!(chebyshev(pa, pb), 1);
    assert_eq!(w.state.agents[a].pos, pa);
    assert_eq!(w.state.agents[b].pos, pb);
    assert!(w.state.agents[b].ctx_reset);
    assert!(w.arrange_meet(a, b, Some([0, 0])).is_err(), "a wall");
    assert!(w.arrange_meet(a, a, None).is_err());
    // Without a place, b comes to a.
    let (pa2, pb2) = w.arrange_meet(b, a, None).unwrap();
    assert_eq!(pa2, pb);
    assert_eq!(chebyshev(pa2, pb2), 1);
}

#[test]
fn a_possessed_agent_takes_the_operator_action_and_the_rest_the_policy() {
    let mut w = town();
    let mut twin = town();
    let a = agent(&w, "alice");
    let east = action(&w, "move_e");
    w.step_possessed(&[(a, east)]).unwrap();
    twin.step(crate::world::Actions::Policy);
    assert_eq!(w.last_actions[a], east);
    for i in 0..w.n_agents() {
        if i != a {
            assert_eq!(w.last_actions[i], twin.last_actions[i]);
        }
    }
    assert!(w.step_possessed(&[(99, 0)]).is_err());
    assert!(w.step_possessed(&[(a, 999)]).is_err());
    assert_eq!(w.tick(), 1, "refused: no tick");
    // No overrides: exactly the policy's tick.
    let mut x = town();
    let mut y = town();
    x.step_possessed(&[]).unwrap();
    y.step(crate::world::Actions::Policy);
    assert_eq!(x.world_hash(), y.world_hash());
}

#[test]
fn queue_view_lists_holders_waiters_and_cooldowns() {
    let mut w = town();
    let shower = obj(&w, "shower_1");
    let n = w.n_agents();
    let b = agent(&w, "bob");
    w.state.cooldowns[shower * n + b] = 30;
    let v = w.queue_view(shower);
    assert!(v.holders.is_empty() && v.waiting.is_empty());
    assert_eq!(v.cooldowns, vec![(b, 30)]);
}

#[test]
fn job_counters_read_the_agent_and_its_employment() {
    let mut w = town();
    let a = agent(&w, "alice");
    w.state.agents[a].counters.meals_cooked = 2;
    w.state.agents[a].counters.meals_eaten = 3;
    w.state.agents[a].employment.late_ticks_today = 4;
    w.state.agents[a].employment.absences = vec![1, 2];
    w.state.agents[a].employment.exit_pending = true;
    assert_eq!(w.job_counters(a), (2, 3, 4, 2, true));
}
