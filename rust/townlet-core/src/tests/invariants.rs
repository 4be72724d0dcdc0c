//! Invariants over long runs, with random valid actions and with the expert: needs in range,
//! capacity, one queue place per agent, phases that agree with queue membership, money that adds up.

use super::fixture::*;
use crate::state::Phase;
use crate::world::{Actions, World};
use serde_json::{json, Value};

/// Check every structural invariant of the state; `ctx` names the run and tick on failure.
fn check(w: &World, ctx: &str) {
    let n = w.n_agents();
    let mut places = vec![0usize; n];
    for (o, os) in w.state.objects.iter().enumerate() {
        let info = &w.statics.objects[o];
        let cap = w.statics.types[info.type_idx].capacity;
        assert!(os.holders.len() <= cap, "{ctx}: {} over capacity", info.id);
        for (k, &s) in os.stock.iter().enumerate() {
            let max = w.statics.types[info.type_idx].max_stock[k];
            assert!(max == 0 || s <= max, "{ctx}: {} stock {s} > {max}", info.id);
        }
        for h in &os.holders {
            places[h.agent as usize] += 1;
            let act = w.state.agents[h.agent as usize].activity;
            assert!(
                act.object as usize == o && matches!(act.phase, Phase::Holding | Phase::Running),
                "{ctx}: holder {} of {} has activity {act:?}",
                h.agent,
                info.id
            );
        }
        for x in &os.waiting {
            places[x.agent as usize] += 1;
            let act = w.state.agents[x.agent as usize].activity;
            assert!(
                act.object as usize == o && act.phase == Phase::Waiting,
                "{ctx}: waiter {} of {} has activity {act:?}",
                x.agent,
                info.id
            );
        }
    }
    for (i, a) in w.state.agents.iter().enumerate() {
        assert!(
            places[i] <= 1,
            "{ctx}: agent {i} is in {} queues",
            places[i]
        );
        let queued = matches!(
            a.activity.phase,
            Phase::Waiting | Phase::Holding | Phase::Running
        );
        assert_eq!(
            places[i],
            usize::from(queued),
            "{ctx}: agent {i} phase {:?} vs queue places",
            a.activity.phase
        );
        if a.activity.phase == Phase::Running {
            let af = &w.statics.affordances[a.activity.affordance as usize];
            assert!(af.duration == 0 || a.activity.remaining >= 1, "{ctx}");
        }
        if !a.activity.is_idle() {
            let aff = a.activity.affordance as usize;
            assert!(
                w.statics.affordances[aff]
                    .objects
                    .contains(&(a.activity.object as usize)),
                "{ctx}"
            );
        }
        for &v in &a.needs {
            assert!((0.0..=1.0).contains(&v), "{ctx}: need {v}");
        }
        assert!(a.wallet >= -1e-9, "{ctx}: wallet {}", a.wallet);
        assert!(
            w.statics.grid.walkable(a.pos[0], a.pos[1]),
            "{ctx}: agent {i} in a wall"
        );
        if !a.alive {
            assert!(a.activity.is_idle(), "{ctx}: the dead do nothing");
            assert_eq!(a.identity_slot, -1, "{ctx}");
            for j in 0..n {
                assert!(!w.tie(i, j).present && !w.tie(j, i).present, "{ctx}");
            }
        } else {
            let slot = a.identity_slot;
            assert!(
                slot >= 0 && w.state.identity.holder[slot as usize] == i as i32,
                "{ctx}"
            );
        }
        let present = (0..n).filter(|&j| w.tie(i, j).present).count();
        assert!(
            present <= w.statics.config.relationships.max_edges as usize,
            "{ctx}"
        );
    }
    for t in &w.state.ties {
        assert!((-1.0..=1.0).contains(&t.trust) && (-1.0..=1.0).contains(&t.familiarity));
        assert!((0.0..=1.0).contains(&t.rivalry), "{ctx}");
    }
    let kinds = |name: &str| {
        w.state
            .perturb
            .active
            .iter()
            .filter(|p| w.statics.perturbations[p.spec].spec.kind_name() == name)
            .count() as u32
    };
    assert_eq!(w.state.power_out, kinds("blackout"), "{ctx}");
    assert_eq!(w.state.water_out, kinds("outage"), "{ctx}");
    assert!(
        w.state.perturb.active.len()
            <= w.statics.config.perturbations.max_concurrent_events as usize,
        "{ctx}"
    );
}

/// Money: the sum of wallets moves exactly by wages - spending - penalties, plus the wallet reset
/// of each respawn.
struct Ledger {
    wallets: f64,
    wages: f64,
    spent: f64,
    penalties: f64,
}

impl Ledger {
    fn new(w: &World) -> Self {
        Self {
            wallets: w.state.agents.iter().map(|a| a.wallet).sum(),
            wages: w.state.stats.wages_paid,
            spent: w.state.stats.spent,
            penalties: w.state.stats.penalties,
        }
    }

    /// Step `w` with `actions` and check the books.
    fn step(w: &mut World, actions: Actions<'_>, ctx: &str) {
        let before = Ledger::new(w);
        let old: Vec<(u32, f64)> = w
            .state
            .agents
            .iter()
            .map(|a| (a.generation, a.wallet))
            .collect();
        w.step(actions);
        let after = Ledger::new(w);
        let mut reset = 0.0;
        for (a, (gen, wallet)) in w.state.agents.iter().zip(old) {
            if a.generation != gen {
                reset += w.statics.config.lifecycle.respawn_wallet - wallet;
            }
        }
        let expected = before.wallets + (after.wages - before.wages)
            - (after.spent - before.spent)
            - (after.penalties - before.penalties)
            + reset;
        assert!(
            (after.wallets - expected).abs() < 1e-9,
            "{ctx}: wallets {} expected {expected}",
            after.wallets
        );
    }
}

fn random_run(v: &Value, seed: u64, ticks: u64) -> World {
    let mut w = world(v);
    let mut rng = TestRng::new(seed);
    let mut acts = vec![0u16; w.n_agents()];
    for t in 0..ticks {
        for (i, a) in acts.iter_mut().enumerate() {
            let m = mask(&w, i);
            // Mostly keep going with the current option (so that things finish), sometimes
            // switch to any valid action.
            let cur = w.state.agents[i].activity;
            *a = if !cur.is_idle() && rng.below(5) != 0 {
                w.statics.use_action(cur.affordance as usize) as u16
            } else {
                let valid: Vec<usize> = (0..m.len()).filter(|&x| m[x]).collect();
                valid[rng.below(valid.len())] as u16
            };
        }
        let ctx = format!("seed {seed} tick {t}");
        Ledger::step(&mut w, Actions::Given(&acts), &ctx);
        check(&w, &ctx);
    }
    w
}

/// The lively town with a tight relationship capacity, fragile agents and busy objects.
fn stressed() -> Value {
    let mut v = lively();
    set(&mut v, "/relationships/max_edges", json!(2));
    set(&mut v, "/needs/faint_window_ticks", json!(3));
    set(&mut v, "/identity/max_slots", json!(4));
    set(&mut v, "/lifecycle/nightly_reset", json!(true));
    set(&mut v, "/economy/starting_wallet", json!(1.0));
    v
}

#[test]
fn random_valid_actions_keep_every_invariant() {
    for seed in 1..=3 {
        let w = random_run(&lively(), seed, 1200);
        assert!(w.state.events.totals.iter().sum::<u64>() > 200);
        assert!(w.state.stats.spent > 0.0);
    }
}

#[test]
fn random_valid_actions_in_a_stressed_town_keep_every_invariant() {
    let w = random_run(&stressed(), 9, 1500);
    // Lives were lost and restarted along the way.
    assert!(w.state.stats.faints + w.state.stats.evictions > 0);
}

#[test]
fn the_expert_keeps_every_invariant() {
    for (v, temperature) in [(lively(), 0.0), (lively(), 0.3), (stressed(), 0.5)] {
        let mut v = v;
        set(&mut v, "/behavior/temperature", json!(temperature));
        let mut w = world(&v);
        for t in 0..1200 {
            let ctx = format!("expert t={temperature} tick {t}");
            Ledger::step(&mut w, Actions::Policy, &ctx);
            check(&w, &ctx);
        }
        assert!(w.state.stats.wages_paid > 0.0);
    }
}
