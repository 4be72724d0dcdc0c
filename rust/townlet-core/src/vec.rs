//! Many towns stepped together, in parallel across towns, writing observations, masks, rewards,
//! terminations and truncations into caller-provided buffers.
//!
//! Contract (same-step autoreset): when a town reaches `episode_ticks`, every live agent of it is
//! truncated, its last observation is written to `final_obs` and that observation's action mask to
//! `final_masks()` (both belong to the ending episode), and the town is reset at once, so `obs` and
//! `masks` already hold the first observation and mask of the next episode. An agent that terminates (faint,
//! eviction) gets `terminated = true` and `alive = false` on that tick, and its real last
//! observation and that observation's mask in `obs`/`masks` and in `final_obs`/`final_masks` (unless
//! the town resets that tick: then in the final arrays only); from the next tick its slot reads as dead
//! (zero observation, only `wait` valid, reward 0) until it respawns in the same slot with
//! `ctx_reset` set. A masked (invalid) action is applied as `wait` and flagged in `invalid`.

use crate::actions;
use crate::checks::check_len;
use crate::events::EventKind;
use crate::obs::ObsLayout;
use crate::rng::Rng;
use crate::spec::ObsSpec;
use crate::state::State;
use crate::statics::Statics;
use crate::world::{Actions, Kpis, World};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub const VEC_STATE_FORMAT: &str = "townlet.vec_state";
pub const VEC_STATE_VERSION: u32 = 1;

/// Everything that changes while towns step: with the same config, restoring it continues the run
/// exactly where it was saved (the RNG streams live in each town's state).
#[derive(Serialize, Deserialize)]
struct VecState {
    format: String,
    version: u32,
    config_hash: String,
    seed: u64,
    episode_ticks: u64,
    episodes: Vec<u64>,
    towns: Vec<State>,
}

/// Output buffers for all towns, agent-major within each town.
pub struct Buffers<'a> {
    pub obs: &'a mut [f32],
    pub masks: &'a mut [bool],
    pub rewards: &'a mut [f32],
    pub terminated: &'a mut [bool],
    pub truncated: &'a mut [bool],
    pub final_obs: &'a mut [f32],
    pub alive: &'a mut [bool],
    pub invalid: &'a mut [bool],
}

pub struct VecWorld {
    pub statics: Arc<Statics>,
    pub layout: Arc<ObsLayout>,
    pub towns: Vec<World>,
    pub episodes: Vec<u64>,
    pub episode_ticks: u64,
    pub seed: u64,
    pool: Option<rayon::ThreadPool>,
    /// Per slot: the action applied in the step being taken (see `step_chosen`).
    applied: Vec<u16>,
    /// Per slot: whether the chosen action was masked (and the agent alive).
    masked: Vec<bool>,
    /// (slots, n_actions): the masks of the final observations of the last step (rows truncated).
    final_masks: Vec<bool>,
    /// Per town: the KPIs of the episode that ended in the last step (its town was reset), if one did.
    ended: Vec<Option<Kpis>>,
}

impl VecWorld {
    /// `threads` = 0 uses every core; 1 steps towns one after another on the calling thread.
    pub fn new(
        statics: Arc<Statics>,
        num_envs: usize,
        seed: u64,
        episode_ticks: u64,
        threads: usize,
    ) -> Result<Self, String> {
        if num_envs == 0 {
            return Err("num_envs must be >= 1".into());
        }
        if episode_ticks == 0 {
            return Err("episode_ticks must be >= 1".into());
        }
        let pool = if threads == 1 {
            None
        } else {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .map_err(|e| e.to_string())?,
            )
        };
        let layout = Arc::new(ObsLayout::build(&statics));
        let mut v = Self {
            statics,
            layout,
            towns: Vec::new(),
            episodes: vec![0; num_envs],
            episode_ticks,
            seed,
            pool,
            applied: Vec::new(),
            masked: Vec::new(),
            final_masks: Vec::new(),
            ended: vec![None; num_envs],
        };
        v.towns = (0..num_envs).map(|k| v.fresh_town(k)).collect();
        let slots = v.num_slots();
        v.applied = vec![0; slots];
        v.masked = vec![false; slots];
        v.final_masks = vec![false; slots * v.n_actions()];
        Ok(v)
    }

    pub fn num_envs(&self) -> usize {
        self.towns.len()
    }
    pub fn agents_per_env(&self) -> usize {
        self.statics.n_agents()
    }
    /// Agent slots over all towns.
    pub fn num_slots(&self) -> usize {
        self.num_envs() * self.agents_per_env()
    }
    pub fn obs_dim(&self) -> usize {
        self.layout.map_len() + self.layout.n_features()
    }
    pub fn n_actions(&self) -> usize {
        self.statics.n_actions()
    }
    /// (slots, n_actions), row-major: the action masks that go with `final_obs` of the last step,
    /// valid in the rows that step truncated (the ending episode's, not the next one's).
    pub fn final_masks(&self) -> &[bool] {
        &self.final_masks
    }

    /// Per town: the KPIs of the episode that ended in the last step, read just before the reset.
    pub fn ended_kpis(&self) -> &[Option<Kpis>] {
        &self.ended
    }

    /// Town `k`'s episode `e` gets its own streams: a SeedSequence-style split of (seed, k, e).
    fn fresh_town(&self, k: usize) -> World {
        let episode = self.episodes[k];
        let town_seed = if episode == 0 {
            self.seed
        } else {
            Rng::stream(self.seed, k as u64, &format!("episode-{episode}")).next_u64()
        };
        World::new_seeded(Arc::clone(&self.statics), town_seed, k as u64)
    }

    /// Reset every town (optionally with a new seed) and write first observations and masks.
    pub fn reset(&mut self, seed: Option<u64>, obs: &mut [f32], masks: &mut [bool]) {
        if let Some(s) = seed {
            self.seed = s;
        }
        self.episodes.iter_mut().for_each(|e| *e = 0);
        self.ended.iter_mut().for_each(|e| *e = None);
        self.towns = (0..self.num_envs()).map(|k| self.fresh_town(k)).collect();
        let (m, d, a) = (self.agents_per_env(), self.obs_dim(), self.n_actions());
        let layout = &self.layout;
        for (k, w) in self.towns.iter().enumerate() {
            write_town(
                w,
                layout,
                &mut obs[k * m * d..(k + 1) * m * d],
                &mut masks[k * m * a..(k + 1) * m * a],
            );
        }
    }

    /// Step every town one tick with `actions` (one per agent slot, all towns).
    pub fn step(&mut self, actions: &[u16], out: Buffers<'_>) {
        let (m, d, a) = (self.agents_per_env(), self.obs_dim(), self.n_actions());
        let outs: Vec<TownOut<'_>> = out
            .obs
            .chunks_mut(m * d)
            .zip(out.masks.chunks_mut(m * a))
            .zip(out.rewards.chunks_mut(m))
            .zip(out.terminated.chunks_mut(m))
            .zip(out.truncated.chunks_mut(m))
            .zip(out.final_obs.chunks_mut(m * d))
            .zip(out.alive.chunks_mut(m))
            .zip(out.invalid.chunks_mut(m))
            .zip(self.final_masks.chunks_mut(m * a))
            .zip(self.ended.iter_mut())
            .map(
                |(
                    (
                        (
                            (
                                (((((obs, masks), rewards), terminated), truncated), final_obs),
                                alive,
                            ),
                            invalid,
                        ),
                        final_masks,
                    ),
                    ended,
                )| TownOut {
                    obs,
                    masks,
                    rewards,
                    terminated,
                    truncated,
                    final_obs,
                    final_masks,
                    alive,
                    invalid,
                    ended,
                },
            )
            .collect();
        let ctx = StepCtx {
            statics: &self.statics,
            layout: &self.layout,
            seed: self.seed,
            episode_ticks: self.episode_ticks,
        };
        match &self.pool {
            None => {
                for (k, (((w, ep), act), o)) in self
                    .towns
                    .iter_mut()
                    .zip(self.episodes.iter_mut())
                    .zip(actions.chunks(m))
                    .zip(outs)
                    .enumerate()
                {
                    ctx.step_town(k, w, ep, act, o);
                }
            }
            Some(pool) => pool.install(|| {
                self.towns
                    .par_iter_mut()
                    .zip(self.episodes.par_iter_mut())
                    .zip(actions.par_chunks(m))
                    .zip(outs.into_par_iter())
                    .enumerate()
                    .for_each(|(k, (((w, ep), act), o))| ctx.step_town(k, w, ep, act, o));
            }),
        }
    }

    /// Step every town one tick with the actions the policy chose (one per slot, as the caller
    /// hands them over), checking every length first. The masked-action rule applies: `out.masks`
    /// still holds the masks the agents saw, and a masked action is applied as `wait` and, for a
    /// live agent (`out.alive` as of that observation), flagged in `out.invalid`.
    pub fn step_chosen(&mut self, chosen: &[i64], out: Buffers<'_>) -> Result<(), String> {
        let n = self.num_slots();
        let (d, k) = (self.obs_dim(), self.n_actions());
        check_len("actions", chosen.len(), n)?;
        actions::decode(chosen, k, &mut self.applied)
            .map_err(|e| format!("action {} is outside [0, {})", e.action, e.n_actions))?;
        check_len("masks", out.masks.len(), n * k)?;
        check_len("alive", out.alive.len(), n)?;
        actions::apply_masks(&mut self.applied, out.masks, out.alive, &mut self.masked);
        for (name, got, want) in [
            ("obs", out.obs.len(), n * d),
            ("masks", out.masks.len(), n * k),
            ("rewards", out.rewards.len(), n),
            ("terminated", out.terminated.len(), n),
            ("truncated", out.truncated.len(), n),
            ("final_obs", out.final_obs.len(), n * d),
            ("alive", out.alive.len(), n),
            ("invalid", out.invalid.len(), n),
        ] {
            check_len(name, got, want)?;
        }
        let applied = std::mem::take(&mut self.applied);
        let invalid = out.invalid;
        self.step(
            &applied,
            Buffers {
                invalid: &mut *invalid,
                ..out
            },
        );
        self.applied = applied;
        for (dst, &flag) in invalid.iter_mut().zip(&self.masked) {
            *dst |= flag;
        }
        Ok(())
    }

    /// Step `ticks` ticks with the same actions into scratch buffers (no masked-action rule): the
    /// Rust-only baseline that benchmarks measure call overhead against.
    pub fn step_repeat(&mut self, chosen: &[i64], ticks: u64) -> Result<(), String> {
        let n = self.num_slots();
        let (d, k) = (self.obs_dim(), self.n_actions());
        check_len("actions", chosen.len(), n)?;
        actions::decode(chosen, k, &mut self.applied)
            .map_err(|e| format!("action {} is outside [0, {})", e.action, e.n_actions))?;
        let applied = std::mem::take(&mut self.applied);
        let mut obs = vec![0.0f32; n * d];
        let mut final_obs = vec![0.0f32; n * d];
        let mut masks = vec![false; n * k];
        let mut rewards = vec![0.0f32; n];
        let (mut terminated, mut truncated, mut alive, mut invalid) = (
            vec![false; n],
            vec![false; n],
            vec![false; n],
            vec![false; n],
        );
        for _ in 0..ticks {
            self.step(
                &applied,
                Buffers {
                    obs: &mut obs,
                    masks: &mut masks,
                    rewards: &mut rewards,
                    terminated: &mut terminated,
                    truncated: &mut truncated,
                    final_obs: &mut final_obs,
                    alive: &mut alive,
                    invalid: &mut invalid,
                },
            );
        }
        self.applied = applied;
        Ok(())
    }

    /// Event counts and summed event values of the last step for every town, row-major
    /// `(towns, event kinds)` in `EventKind::ALL` order.
    pub fn write_event_counts(&self, counts: &mut [u32], values: &mut [f32]) -> Result<(), String> {
        let kinds = EventKind::COUNT;
        check_len("counts", counts.len(), self.num_envs() * kinds)?;
        check_len("values", values.len(), self.num_envs() * kinds)?;
        for ((w, c), v) in self
            .towns
            .iter()
            .zip(counts.chunks_mut(kinds))
            .zip(values.chunks_mut(kinds))
        {
            c.copy_from_slice(&w.state.events.tick_counts);
            v.copy_from_slice(&w.state.events.tick_values);
        }
        Ok(())
    }

    /// The observation and action layout of these towns.
    pub fn obs_spec(&self) -> ObsSpec {
        ObsSpec::new(&self.statics, &self.layout)
    }

    /// The state of every town and the episode counters as a versioned JSON document (without the
    /// config, which the restoring side must already have: it is checked by hash).
    pub fn state_json(&self) -> String {
        let st = VecState {
            format: VEC_STATE_FORMAT.into(),
            version: VEC_STATE_VERSION,
            config_hash: self.statics.config_hash.clone(),
            seed: self.seed,
            episode_ticks: self.episode_ticks,
            episodes: self.episodes.clone(),
            towns: self.towns.iter().map(|w| w.state.clone()).collect(),
        };
        serde_json::to_string(&st).expect("vec state serialises")
    }

    /// Restore `state_json` output taken with the same config, number of towns and episode length,
    /// then write every agent's observation, mask and liveness as `step` would have.
    pub fn load_state_json(
        &mut self,
        json: &str,
        obs: &mut [f32],
        masks: &mut [bool],
        alive: &mut [bool],
    ) -> Result<(), String> {
        let head: serde_json::Value =
            serde_json::from_str(json).map_err(|e| format!("not a JSON document: {e}"))?;
        let format = head.get("format").and_then(|v| v.as_str()).unwrap_or("");
        if format != VEC_STATE_FORMAT {
            return Err(format!(
                "not a Townlet town state (format is {format:?}, expected {VEC_STATE_FORMAT:?})"
            ));
        }
        let version = head.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
        if version != u64::from(VEC_STATE_VERSION) {
            return Err(format!(
                "town state version {version} is not supported by this build (it reads version {VEC_STATE_VERSION})"
            ));
        }
        let st: VecState =
            serde_json::from_value(head).map_err(|e| format!("malformed town state: {e}"))?;
        if st.config_hash != self.statics.config_hash {
            return Err(format!(
                "town state was saved with config hash {} but this config hashes to {}",
                &st.config_hash[..12.min(st.config_hash.len())],
                &self.statics.config_hash[..12]
            ));
        }
        if st.towns.len() != self.num_envs() || st.episodes.len() != self.num_envs() {
            return Err(format!(
                "town state holds {} towns, this run steps {}",
                st.towns.len(),
                self.num_envs()
            ));
        }
        if st.episode_ticks != self.episode_ticks {
            return Err(format!(
                "town state was saved with episodes of {} ticks, this run uses {}",
                st.episode_ticks, self.episode_ticks
            ));
        }
        let towns = st
            .towns
            .into_iter()
            .enumerate()
            .map(|(k, s)| {
                World::with_state(Arc::clone(&self.statics), k as u64, s)
                    .map_err(|e| format!("town {k}: state does not match the config ({e})"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.towns = towns;
        self.episodes = st.episodes;
        self.ended.iter_mut().for_each(|e| *e = None);
        self.seed = st.seed;
        self.observe(obs, masks, alive);
        Ok(())
    }

    /// Write every agent's current observation, mask and liveness.
    pub fn observe(&self, obs: &mut [f32], masks: &mut [bool], alive: &mut [bool]) {
        let (m, d, a) = (self.agents_per_env(), self.obs_dim(), self.n_actions());
        for (k, w) in self.towns.iter().enumerate() {
            write_town(
                w,
                &self.layout,
                &mut obs[k * m * d..(k + 1) * m * d],
                &mut masks[k * m * a..(k + 1) * m * a],
            );
            for (i, ag) in w.state.agents.iter().enumerate() {
                alive[k * m + i] = ag.alive;
            }
        }
    }

    /// The scripted expert's actions (and log-probabilities) for every agent slot of every town.
    pub fn expert_actions(&mut self, actions: &mut [u16], logp: &mut [f32]) {
        let m = self.agents_per_env();
        for (k, w) in self.towns.iter_mut().enumerate() {
            w.policy_actions(
                &mut actions[k * m..(k + 1) * m],
                &mut logp[k * m..(k + 1) * m],
            );
        }
    }

    /// Why the expert chose each slot's action in the last `expert_actions` (`World::expert_motives`).
    pub fn expert_motives(&self, out: &mut [u8]) {
        let m = self.agents_per_env();
        for (k, w) in self.towns.iter().enumerate() {
            let dst = &mut out[k * m..(k + 1) * m];
            dst.fill(crate::expert::MOTIVE_DUTY);
            for (d, &l) in dst.iter_mut().zip(w.expert_motives()) {
                *d = l;
            }
        }
    }
}

/// One town's share of the output buffers.
struct TownOut<'a> {
    obs: &'a mut [f32],
    masks: &'a mut [bool],
    rewards: &'a mut [f32],
    terminated: &'a mut [bool],
    truncated: &'a mut [bool],
    final_obs: &'a mut [f32],
    final_masks: &'a mut [bool],
    alive: &'a mut [bool],
    invalid: &'a mut [bool],
    ended: &'a mut Option<Kpis>,
}

struct StepCtx<'a> {
    statics: &'a Arc<Statics>,
    layout: &'a ObsLayout,
    seed: u64,
    episode_ticks: u64,
}

impl StepCtx<'_> {
    fn step_town(
        &self,
        k: usize,
        w: &mut World,
        episode: &mut u64,
        actions: &[u16],
        o: TownOut<'_>,
    ) {
        let (d, a) = (
            self.layout.map_len() + self.layout.n_features(),
            w.statics.n_actions(),
        );
        // A row that terminates gets its real last observation, in `obs` and in `final_obs`.
        w.step_observing(Actions::Given(actions), |w, i| {
            write_row(w, self.layout, i, o.obs, o.masks);
            o.final_obs[i * d..(i + 1) * d].copy_from_slice(&o.obs[i * d..(i + 1) * d]);
            o.final_masks[i * a..(i + 1) * a].copy_from_slice(&o.masks[i * a..(i + 1) * a]);
        });
        for (i, ag) in w.state.agents.iter().enumerate() {
            o.rewards[i] = w.rewards()[i];
            o.terminated[i] = ag.terminated.is_some();
            o.invalid[i] = ag.flags.invalid_action;
            o.truncated[i] = false;
        }
        let mut reset = false;
        *o.ended = None;
        if w.tick() >= self.episode_ticks {
            for (i, ag) in w.state.agents.iter().enumerate() {
                o.truncated[i] = ag.alive && !o.terminated[i];
                if o.truncated[i] {
                    write_row(w, self.layout, i, o.final_obs, o.final_masks);
                }
            }
            *o.ended = Some(w.kpis());
            *episode += 1;
            let town_seed =
                Rng::stream(self.seed, k as u64, &format!("episode-{episode}")).next_u64();
            *w = World::new_seeded(Arc::clone(self.statics), town_seed, k as u64);
            reset = true;
        }
        for (i, ag) in w.state.agents.iter().enumerate() {
            o.alive[i] = ag.alive;
            // Without a reset, a row terminated this tick keeps its last observation.
            if reset || !o.terminated[i] {
                write_row(w, self.layout, i, o.obs, o.masks);
            }
        }
    }
}

/// Agent `i`'s observation and mask into its rows of one town's `obs` (agents, obs_dim) and
/// `masks` (agents, n_actions).
fn write_row(w: &World, layout: &ObsLayout, i: usize, obs: &mut [f32], masks: &mut [bool]) {
    let d = layout.map_len() + layout.n_features();
    let a = w.statics.n_actions();
    let (map, feats) = obs[i * d..(i + 1) * d].split_at_mut(layout.map_len());
    w.write_observation(layout, i, map, feats, &mut masks[i * a..(i + 1) * a]);
}

/// Observations and masks of every agent of one town: `obs` (agents, obs_dim) and `masks`
/// (agents, n_actions), row-major.
pub fn write_town(w: &World, layout: &ObsLayout, obs: &mut [f32], masks: &mut [bool]) {
    for i in 0..w.n_agents() {
        write_row(w, layout, i, obs, masks);
    }
}
