//! The capture loop (`capture::run_expert`): what it records is what stepping through the vec API
//! (`expert_actions`, masking, `step`) gives, however the run is split, and bad calls are refused.

use super::fixture::lively;
use crate::capture::{run_expert, Record};
use crate::statics::Statics;
use crate::vec::{Buffers, VecWorld};
use std::sync::Arc;

fn vec_world(envs: usize, episode_ticks: u64) -> VecWorld {
    let cfg = crate::parse_world_config(&lively().to_string()).unwrap();
    VecWorld::new(Arc::new(Statics::build(cfg)), envs, 11, episode_ticks, 1).unwrap()
}

struct Arrays {
    map: Vec<f32>,
    features: Vec<f32>,
    masks: Vec<bool>,
    actions: Vec<i64>,
    log_probs: Vec<f32>,
    rewards: Vec<f32>,
    terminated: Vec<bool>,
    alive: Vec<bool>,
}

impl Arrays {
    fn new(v: &VecWorld, t: usize) -> Self {
        let n = v.num_envs() * v.agents_per_env();
        Self {
            map: vec![f32::NAN; n * t * v.layout.map_len()],
            features: vec![f32::NAN; n * t * v.layout.n_features()],
            masks: vec![false; n * t * v.n_actions()],
            actions: vec![-1; n * t],
            log_probs: vec![f32::NAN; n * t],
            rewards: vec![f32::NAN; n * t],
            terminated: vec![false; n * t],
            alive: vec![false; n * t],
        }
    }
    fn record(&mut self) -> Record<'_> {
        Record {
            map: &mut self.map,
            features: &mut self.features,
            masks: &mut self.masks,
            actions: &mut self.actions,
            log_probs: &mut self.log_probs,
            rewards: &mut self.rewards,
            terminated: &mut self.terminated,
            alive: &mut self.alive,
        }
    }
}

/// The same run through `VecWorld::expert_actions` + `VecWorld::step`, the way the binding's
/// caller steps, transposed into agent-major arrays.
fn reference(envs: usize, ticks: usize) -> (Arrays, String) {
    let mut v = vec_world(envs, ticks as u64 + 1);
    let n = v.num_envs() * v.agents_per_env();
    let (d, a, ml) = (v.obs_dim(), v.n_actions(), v.layout.map_len());
    let mut out = Arrays::new(&v, ticks);
    let (mut obs, mut masks) = (vec![0.0; n * d], vec![false; n * a]);
    let (mut fin, mut rew) = (vec![0.0; n * d], vec![0.0; n]);
    let (mut te, mut tr, mut inv) = (vec![false; n], vec![false; n], vec![false; n]);
    let mut alive = vec![true; n];
    v.reset(None, &mut obs, &mut masks);
    let (mut chosen, mut logp) = (vec![0u16; n], vec![0.0f32; n]);
    for t in 0..ticks {
        for i in 0..n {
            let row = i * ticks + t;
            out.map[row * ml..(row + 1) * ml].copy_from_slice(&obs[i * d..i * d + ml]);
            out.features[row * (d - ml)..(row + 1) * (d - ml)]
                .copy_from_slice(&obs[i * d + ml..(i + 1) * d]);
            out.masks[row * a..(row + 1) * a].copy_from_slice(&masks[i * a..(i + 1) * a]);
            out.alive[row] = alive[i];
        }
        v.expert_actions(&mut chosen, &mut logp);
        let applied: Vec<u16> = (0..n)
            .map(|i| {
                if masks[i * a + usize::from(chosen[i])] {
                    chosen[i]
                } else {
                    0
                }
            })
            .collect();
        v.step(
            &applied,
            Buffers {
                obs: &mut obs,
                masks: &mut masks,
                rewards: &mut rew,
                terminated: &mut te,
                truncated: &mut tr,
                final_obs: &mut fin,
                alive: &mut alive,
                invalid: &mut inv,
            },
        );
        for i in 0..n {
            let row = i * ticks + t;
            out.actions[row] = i64::from(chosen[i]);
            out.log_probs[row] = logp[i];
            out.rewards[row] = rew[i];
            out.terminated[row] = te[i];
        }
    }
    let hash = v.towns.iter().map(|w| w.world_hash()).collect();
    (out, hash)
}

fn assert_same(a: &Arrays, b: &Arrays) {
    let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a.map), bits(&b.map));
    assert_eq!(bits(&a.features), bits(&b.features));
    assert_eq!(a.masks, b.masks);
    assert_eq!(a.actions, b.actions);
    assert_eq!(bits(&a.log_probs), bits(&b.log_probs));
    assert_eq!(bits(&a.rewards), bits(&b.rewards));
    assert_eq!(a.terminated, b.terminated);
    assert_eq!(a.alive, b.alive);
}

#[test]
fn recording_matches_stepping_through_the_vec_api() {
    for envs in [1, 2] {
        let ticks = 60;
        let (want, want_hash) = reference(envs, ticks);
        let mut v = vec_world(envs, ticks as u64 + 1);
        let mut got = Arrays::new(&v, ticks);
        run_expert(&mut v, 0, ticks, Some(got.record())).unwrap();
        assert_same(&got, &want);
        let hash: String = v.towns.iter().map(|w| w.world_hash()).collect();
        assert_eq!(hash, want_hash);
    }
}

#[test]
fn a_run_split_into_chunks_records_the_same_rows() {
    let ticks = 50;
    let (want, _) = reference(2, ticks);
    let mut v = vec_world(2, ticks as u64 + 1);
    let mut got = Arrays::new(&v, ticks);
    for (a, b) in [(0, 0), (0, 7), (7, 8), (8, 31), (31, 50)] {
        run_expert(&mut v, a, b, Some(got.record())).unwrap();
    }
    assert_same(&got, &want);
}

#[test]
fn recording_nothing_steps_the_same_towns() {
    let ticks = 40;
    let (_, want_hash) = reference(2, ticks);
    let mut v = vec_world(2, ticks as u64 + 1);
    run_expert(&mut v, 0, ticks, None).unwrap();
    let hash: String = v.towns.iter().map(|w| w.world_hash()).collect();
    assert_eq!(hash, want_hash);
}

#[test]
fn refuses_bad_ranges_sizes_and_autoresets() {
    let mut v = vec_world(1, 10);
    let mut arr = Arrays::new(&v, 20);
    let err = run_expert(&mut v, 0, 10, Some(arr.record())).unwrap_err();
    assert!(err.contains("episode_ticks"), "{err}");
    let err = run_expert(&mut v, 3, 5, Some(arr.record())).unwrap_err();
    assert!(err.contains("not at the start tick"), "{err}");
    let err = run_expert(&mut v, 5, 3, None).unwrap_err();
    assert!(err.contains("after stop"), "{err}");
    let mut small = Arrays::new(&v, 4);
    let err = run_expert(&mut v, 0, 5, Some(small.record())).unwrap_err();
    assert!(err.contains("past the 4 recorded ticks"), "{err}");
    small.map.pop();
    let err = run_expert(&mut v, 0, 2, Some(small.record())).unwrap_err();
    assert!(err.starts_with("map has"), "{err}");
}
