//! The scripted expert: its actions are always valid under the action mask, its log-probabilities
//! are those of a real distribution, and it looks after its agents.

use super::fixture::*;
use crate::events::EventKind;
use crate::expert::{MOTIVE_LEISURE, MOTIVE_SHIFT};
use crate::world::{Actions, World};
use serde_json::{json, Value};

fn with_temperature(t: f64) -> Value {
    let mut v = lively();
    set(&mut v, "/behavior/temperature", json!(t));
    v
}

/// Run the expert for `ticks` ticks, checking each action against the mask computed right before it
/// was chosen. Returns the world and how often the top choice and another action were taken.
fn checked_run(v: &Value, ticks: u64) -> (World, usize, usize) {
    let mut w = world(v);
    let n = w.n_agents();
    let tau = f64::from(w.statics.config.behavior.temperature);
    let mut acts = vec![0u16; n];
    let mut logp = vec![0f32; n];
    let (mut top_taken, mut other_taken) = (0, 0);
    for _ in 0..ticks {
        let masks: Vec<Vec<bool>> = (0..n).map(|i| mask(&w, i)).collect();
        w.policy_actions(&mut acts, &mut logp);
        for i in 0..n {
            let a = acts[i] as usize;
            assert!(
                masks[i][a],
                "tick {}: {} chose masked action {}",
                w.tick(),
                w.state.agents[i].name,
                w.statics.action_names[a]
            );
            let lp = f64::from(logp[i]);
            assert!(lp.is_finite() && lp <= 0.0, "log-prob {lp}");
            if !w.state.agents[i].alive {
                assert_eq!((a, lp), (0, 0.0));
            } else if tau == 0.0 {
                assert_eq!(lp, 0.0);
            } else {
                // Softmax with the top choice at logit 1 and every other valid action at 0.
                let m = masks[i].iter().filter(|&&x| x).count() as f64;
                let off = (-1.0 / tau).exp();
                let z = 1.0 + (m - 1.0) * off;
                let top = -z.ln();
                let other = off.ln() - z.ln();
                if (lp - top).abs() < 1e-5 {
                    top_taken += 1;
                } else {
                    assert!(
                        (lp - other).abs() < 1e-5,
                        "log-prob {lp} is neither {top} nor {other}"
                    );
                    other_taken += 1;
                }
            }
        }
        w.step(Actions::Given(&acts));
    }
    (w, top_taken, other_taken)
}

#[test]
fn greedy_expert_actions_are_always_valid() {
    let (w, _, _) = checked_run(&with_temperature(0.0), 800);
    assert!(w.state.events.total(EventKind::AffordanceFinish) > 10);
}

#[test]
fn sampling_expert_actions_are_valid_with_real_log_probs() {
    let (w, top, other) = checked_run(&with_temperature(0.7), 800);
    assert!(w.state.events.total(EventKind::AffordanceFinish) > 0);
    assert!(top > 100 && other > 100, "top {top} other {other}");
    // Nearly greedy at a low temperature.
    let (_, top, other) = checked_run(&with_temperature(0.05), 300);
    assert!(other * 100 < top, "top {top} other {other}");
}

#[test]
fn policy_steps_record_the_expert_log_probs() {
    let mut w = world(&with_temperature(1.0));
    let mut nonzero = 0;
    for _ in 0..100 {
        w.step(Actions::Policy);
        for &lp in &w.last_logp {
            assert!(lp.is_finite() && lp <= 0.0);
            nonzero += usize::from(lp < 0.0);
        }
    }
    assert!(nonzero > 300);
    let mut w = world(&with_temperature(0.0));
    w.run(100, Actions::Policy);
    assert!(w.last_logp.iter().all(|&lp| lp == 0.0));
}

#[test]
fn the_expert_eats_when_hungry_and_goes_to_work_on_time() {
    let mut w = world(&lively());
    let a = agent(&w, "alice");
    // Critically hungry: that comes before sleep (it is night) and work.
    w.state.agents[a].needs[0] = 0.15;
    for _ in 0..40 {
        w.step(Actions::Policy);
    }
    assert!(w.state.agents[a].counters.meals_eaten >= 1, "alice ate");
    while w.tick() < 3 * TPD {
        w.step(Actions::Policy);
    }
    // Three days, three workers: the expert arrives on time to most shifts.
    assert_eq!(w.state.stats.shifts_scheduled, 9);
    assert!(
        w.state.stats.shifts_on_time >= 7,
        "on time {} of 9",
        w.state.stats.shifts_on_time
    );
    assert_eq!(w.state.stats.faints, 0);
    assert!(w.kpis().self_sufficiency > 0.5);
}

#[test]
fn the_greedy_expert_never_addresses_an_agent_it_avoids() {
    let mut w = world(&lively());
    let n = w.n_agents();
    for a in 0..n {
        for b in a + 1..n {
            w.set_relationship(a, b, 0.0, 0.0, 1.0).unwrap();
        }
    }
    // Keep the rivalry up (it decays in the lively town) and put everyone together.
    for _ in 0..200 {
        for a in 0..n {
            for b in a + 1..n {
                w.set_relationship(a, b, 0.0, 0.0, 1.0).unwrap();
            }
        }
        w.step(Actions::Policy);
    }
    assert_eq!(w.kpis().chat_success + w.kpis().chat_failure, 0);
    // The same town without the rivalries does chat.
    let mut w = world(&lively());
    w.run(200, Actions::Policy);
    assert!(w.kpis().chat_success + w.kpis().chat_failure > 0);
}

#[test]
fn balanced_experts_do_chat() {
    let mut v = base();
    set(&mut v, "/behavior/chat_propensity", json!(0.05));
    let mut w = world(&v);
    w.run(2 * TPD, Actions::Policy);
    let k = w.kpis();
    assert!(k.chat_success + k.chat_failure > 0, "{k:?}");
}

#[test]
fn the_expert_says_why_it_acts() {
    // Leisure (a chat, or going home with nothing due) is never an activity under way or a dead agent, and every
    // chat the expert starts is leisure; the shift is setting off for work, queueing there or working, and every
    // `use:` of the work affordance is the shift. `kickstart_on` reads these motives.
    let mut w = world(&with_temperature(0.0));
    let n = w.n_agents();
    let chat0 = w
        .statics
        .action_names
        .iter()
        .position(|a| a.starts_with("chat:"))
        .unwrap();
    let work = w.statics.use_action(w.statics.work_aff.unwrap());
    let (mut acts, mut logp) = (vec![0u16; n], vec![0f32; n]);
    let mut seen = [0usize; 3];
    let mut chats = 0;
    for _ in 0..2 * TPD {
        w.policy_actions(&mut acts, &mut logp);
        assert_eq!(w.expert_motives().len(), n);
        for (i, (&a, &why)) in acts.iter().zip(w.expert_motives()).enumerate() {
            let a = usize::from(a);
            seen[usize::from(why)] += 1;
            if why == MOTIVE_LEISURE {
                assert!(w.state.agents[i].alive && w.state.agents[i].activity.is_idle());
            }
            if a >= chat0 && a < chat0 + w.statics.config.actions.chat_slots as usize {
                chats += 1;
                assert_eq!(why, MOTIVE_LEISURE, "a chat is leisure");
            }
            if a == work {
                assert_eq!(why, MOTIVE_SHIFT, "working is the shift");
            }
        }
        w.step(Actions::Given(&acts));
    }
    assert!(
        seen.iter().all(|&k| k > 50),
        "leisure, duty, shift: {seen:?}"
    );
    assert!(chats > 0);
}
