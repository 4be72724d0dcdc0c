//! `VecWorld` state save/restore: a restored run continues exactly as the original, across episode
//! boundaries, and mismatched states are refused with a reason.

use super::fixture::{lively, TestRng};
use crate::statics::Statics;
use crate::vec::{Buffers, VecWorld};
use std::sync::Arc;

struct Out {
    obs: Vec<f32>,
    masks: Vec<bool>,
    rewards: Vec<f32>,
    terminated: Vec<bool>,
    truncated: Vec<bool>,
    final_obs: Vec<f32>,
    alive: Vec<bool>,
    invalid: Vec<bool>,
}

impl Out {
    fn new(v: &VecWorld) -> Self {
        let n = v.num_envs() * v.agents_per_env();
        Self {
            obs: vec![0.0; n * v.obs_dim()],
            masks: vec![false; n * v.n_actions()],
            rewards: vec![0.0; n],
            terminated: vec![false; n],
            truncated: vec![false; n],
            final_obs: vec![0.0; n * v.obs_dim()],
            alive: vec![true; n],
            invalid: vec![false; n],
        }
    }
    fn step(&mut self, v: &mut VecWorld, actions: &[u16]) {
        v.step(
            actions,
            Buffers {
                obs: &mut self.obs,
                masks: &mut self.masks,
                rewards: &mut self.rewards,
                terminated: &mut self.terminated,
                truncated: &mut self.truncated,
                final_obs: &mut self.final_obs,
                alive: &mut self.alive,
                invalid: &mut self.invalid,
            },
        );
    }
    /// A random valid action for every slot, from the masks the agents see.
    fn actions(&self, v: &VecWorld, rng: &mut TestRng) -> Vec<u16> {
        let a = v.n_actions();
        (0..self.alive.len())
            .map(|i| {
                let valid: Vec<usize> = (0..a).filter(|&k| self.masks[i * a + k]).collect();
                valid[rng.below(valid.len())] as u16
            })
            .collect()
    }
}

fn vec_world(episode_ticks: u64, threads: usize) -> VecWorld {
    let cfg = crate::load::parse_world_config(&lively().to_string()).expect("fixture config");
    VecWorld::new(Arc::new(Statics::build(cfg)), 3, 11, episode_ticks, threads).expect("vec world")
}

#[test]
fn restored_state_continues_identically_across_episode_ends() {
    let mut a = vec_world(40, 1);
    let mut out_a = Out::new(&a);
    a.reset(None, &mut out_a.obs, &mut out_a.masks);
    let mut rng = TestRng::new(5);
    for _ in 0..57 {
        let acts = out_a.actions(&a, &mut rng);
        out_a.step(&mut a, &acts);
    }
    let saved = a.state_json();
    let mut b = vec_world(40, 2);
    let mut out_b = Out::new(&b);
    b.reset(Some(999), &mut out_b.obs, &mut out_b.masks);
    b.load_state_json(&saved, &mut out_b.obs, &mut out_b.masks, &mut out_b.alive)
        .expect("state restores");
    assert!(out_a.obs == out_b.obs, "observations after restore");
    assert!(out_a.masks == out_b.masks, "masks after restore");
    assert!(out_a.alive == out_b.alive, "liveness after restore");
    let mut rng_b = rng.clone();
    // Past two more episode boundaries (ticks 80 and 120).
    for _ in 0..70 {
        let acts = out_a.actions(&a, &mut rng);
        let acts_b = out_b.actions(&b, &mut rng_b);
        assert_eq!(acts, acts_b);
        out_a.step(&mut a, &acts);
        out_b.step(&mut b, &acts_b);
        assert!(out_a.obs == out_b.obs, "observations differ");
        assert!(out_a.rewards == out_b.rewards, "rewards differ");
        assert!(out_a.terminated == out_b.terminated, "terminations differ");
        assert!(out_a.truncated == out_b.truncated, "truncations differ");
        assert!(out_a.alive == out_b.alive, "liveness differs");
        // Every town ends its episode on the same tick, writing every row of `final_obs`.
        if out_a.truncated.iter().any(|&t| t) {
            assert!(
                out_a.final_obs == out_b.final_obs,
                "final observations differ"
            );
        }
    }
    assert_eq!(a.state_json(), b.state_json());
    assert_eq!(a.episodes, vec![3, 3, 3]);
}

#[test]
fn mismatched_states_are_refused() {
    let mut a = vec_world(40, 1);
    let saved = a.state_json();
    let mut out = Out::new(&a);
    let mut other_len = vec_world(50, 1);
    let err = other_len
        .load_state_json(&saved, &mut out.obs, &mut out.masks, &mut out.alive)
        .unwrap_err();
    assert!(err.contains("episodes of 40 ticks"), "{err}");
    let cfg = crate::load::parse_world_config(&lively().to_string()).expect("fixture config");
    let mut two = VecWorld::new(Arc::new(Statics::build(cfg)), 2, 11, 40, 1).expect("vec world");
    let err = two
        .load_state_json(&saved, &mut out.obs, &mut out.masks, &mut out.alive)
        .unwrap_err();
    assert!(err.contains("holds 3 towns"), "{err}");
    let mut other_cfg = lively();
    super::fixture::set(
        &mut other_cfg,
        "/needs/decay/hunger",
        serde_json::json!(0.005),
    );
    let cfg = crate::load::parse_world_config(&other_cfg.to_string()).expect("config");
    let mut changed =
        VecWorld::new(Arc::new(Statics::build(cfg)), 3, 11, 40, 1).expect("vec world");
    let err = changed
        .load_state_json(&saved, &mut out.obs, &mut out.masks, &mut out.alive)
        .unwrap_err();
    assert!(err.contains("config hash"), "{err}");
    let err = a
        .load_state_json(
            "{\"format\":\"x\"}",
            &mut out.obs,
            &mut out.masks,
            &mut out.alive,
        )
        .unwrap_err();
    assert!(err.contains("not a Townlet town state"), "{err}");
    let err = a
        .load_state_json(
            &saved.replace("\"version\":1", "\"version\":9"),
            &mut out.obs,
            &mut out.masks,
            &mut out.alive,
        )
        .unwrap_err();
    assert!(err.contains("version 9"), "{err}");
}

#[test]
fn chosen_actions_step_every_town_and_masked_ones_become_flagged_waits() {
    let mut v = vec_world(40, 1);
    let mut out = Out::new(&v);
    v.reset(None, &mut out.obs, &mut out.masks);
    let k = v.n_actions();
    // The last action of the space for every slot: whoever cannot take it waits, flagged.
    let chosen = vec![(k - 1) as i64; out.alive.len()];
    let allowed: Vec<bool> = (0..out.alive.len())
        .map(|i| out.masks[i * k + k - 1])
        .collect();
    let result = v.step_chosen(
        &chosen,
        Buffers {
            obs: &mut out.obs,
            masks: &mut out.masks,
            rewards: &mut out.rewards,
            terminated: &mut out.terminated,
            truncated: &mut out.truncated,
            final_obs: &mut out.final_obs,
            alive: &mut out.alive,
            invalid: &mut out.invalid,
        },
    );
    assert_eq!(result, Ok(()));
    assert!(v.towns.iter().all(|w| w.tick() == 1), "every town stepped");
    for (i, &ok) in allowed.iter().enumerate() {
        if !ok {
            assert!(out.invalid[i], "slot {i}: a masked choice is flagged");
        }
    }
    let bad = vec![k as i64; out.alive.len()];
    let err = v
        .step_chosen(
            &bad,
            Buffers {
                obs: &mut out.obs,
                masks: &mut out.masks,
                rewards: &mut out.rewards,
                terminated: &mut out.terminated,
                truncated: &mut out.truncated,
                final_obs: &mut out.final_obs,
                alive: &mut out.alive,
                invalid: &mut out.invalid,
            },
        )
        .unwrap_err();
    assert_eq!(err, format!("action {k} is outside [0, {k})"));
    assert!(
        v.towns.iter().all(|w| w.tick() == 1),
        "a rejected step steps nothing"
    );
}

#[test]
fn an_ending_episode_leaves_its_kpis_for_one_step() {
    let (mut v, mut longer) = (vec_world(40, 1), vec_world(1000, 1));
    let (mut out, mut out_l) = (Out::new(&v), Out::new(&longer));
    v.reset(None, &mut out.obs, &mut out.masks);
    longer.reset(None, &mut out_l.obs, &mut out_l.masks);
    let mut rng = TestRng::new(5);
    for t in 1..=41 {
        let actions = out.actions(&v, &mut rng);
        out.step(&mut v, &actions);
        if t <= 40 {
            out_l.step(&mut longer, &actions);
        }
        match t {
            40 => {
                // Read before the reset: the same as a town that keeps going shows at that tick.
                for (k, ended) in v.ended_kpis().iter().enumerate() {
                    assert_eq!(ended.as_ref(), Some(&longer.towns[k].kpis()), "town {k}");
                }
            }
            _ => assert!(v.ended_kpis().iter().all(Option::is_none), "tick {t}"),
        }
    }
}
