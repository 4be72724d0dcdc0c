//! Rollout capture under the scripted expert, recorded straight into agent-major arrays.
//!
//! A capture needs, per agent slot, every tick's observation (split into its map and its
//! features), action mask, action, log-probability, reward, termination and liveness, laid out
//! agent-major (`(slots, T, ...)`), which is the layout of the per-agent sample files. Stepping
//! through [`VecWorld::step`] and copying its tick-major buffers would copy every observation
//! twice; here each observation is written once, by [`World::write_observation`], into its final
//! place.
//!
//! The loop is the one a caller would run through the binding, one tick at a time: the expert
//! chooses (`World::policy_actions`), an action masked by the mask the agent saw is applied as
//! `wait`, the town steps. The recorded action is the one chosen (as the binding's caller records
//! it). Towns are independent, so each town runs its ticks on its own.
//!
//! Row `t` of the observation-side arrays (`map`, `features`, `masks`, `alive`) holds what the
//! agent saw before acting at tick `t`; the outcome arrays (`actions`, `log_probs`, `rewards`,
//! `terminated`) what happened at tick `t`. A run may be split into consecutive calls
//! (`start..stop`, then `stop..`), so that a caller can consume finished rows while later ones
//! are stepped; the first call (`start == 0`) writes row 0 from the freshly reset towns. The
//! observation after the last row is not written: a capture of `T` ticks records `T` rows.
//!
//! The towns never autoreset inside a capture: every tick stepped must end before the towns'
//! `episode_ticks`, else the call is refused.

use crate::vec::VecWorld;
use crate::world::{Actions, World};

/// Agent-major capture arrays for `slots` agent slots (every town's) and `T` ticks.
pub struct Record<'a> {
    /// `(slots, T, map_len)`.
    pub map: &'a mut [f32],
    /// `(slots, T, n_features)`.
    pub features: &'a mut [f32],
    /// `(slots, T, n_actions)`.
    pub masks: &'a mut [bool],
    /// `(slots, T)`: the action the expert chose.
    pub actions: &'a mut [i64],
    /// `(slots, T)`.
    pub log_probs: &'a mut [f32],
    /// `(slots, T)`.
    pub rewards: &'a mut [f32],
    /// `(slots, T)`.
    pub terminated: &'a mut [bool],
    /// `(slots, T)`: whether the slot held a live agent when it observed row `t`.
    pub alive: &'a mut [bool],
}

impl Record<'_> {
    /// `T`, checking that every array has the size `slots` agents and the layout imply.
    fn ticks(&self, v: &VecWorld) -> Result<usize, String> {
        let slots = v.num_envs() * v.agents_per_env();
        let t = self.alive.len() / slots.max(1);
        let want = |name: &str, got: usize, per_row: usize| {
            if got == slots * t * per_row {
                Ok(())
            } else {
                Err(format!(
                    "{name} has {got} elements, expected {slots} x {t} x {per_row}"
                ))
            }
        };
        want("alive", self.alive.len(), 1)?;
        want("map", self.map.len(), v.layout.map_len())?;
        want("features", self.features.len(), v.layout.n_features())?;
        want("masks", self.masks.len(), v.n_actions())?;
        want("actions", self.actions.len(), 1)?;
        want("log_probs", self.log_probs.len(), 1)?;
        want("rewards", self.rewards.len(), 1)?;
        want("terminated", self.terminated.len(), 1)?;
        Ok(t)
    }
}

/// Step every town through ticks `start..stop` under the scripted expert, recording into `rec`
/// (rows `start..stop`, sized for `T >= stop` ticks), or, with `rec = None`, recording nothing
/// (observations are still built, into scratch rows: the same work without the capture arrays).
///
/// Every town must stand at tick `start` (a fresh reset for `start == 0`) and `stop` must stay
/// below `episode_ticks`, so no town autoresets inside the run.
pub fn run_expert(
    v: &mut VecWorld,
    start: usize,
    stop: usize,
    mut rec: Option<Record<'_>>,
) -> Result<(), String> {
    if start > stop {
        return Err(format!("start {start} is after stop {stop}"));
    }
    let total = match &rec {
        Some(r) => r.ticks(v)?,
        None => stop,
    };
    if stop > total {
        return Err(format!("stop {stop} is past the {total} recorded ticks"));
    }
    if stop as u64 >= v.episode_ticks {
        return Err(format!(
            "a capture of {stop} ticks needs episodes longer than that (episode_ticks is {})",
            v.episode_ticks
        ));
    }
    for (k, w) in v.towns.iter().enumerate() {
        if w.tick() != start as u64 {
            return Err(format!(
                "town {k} stands at tick {}, not at the start tick {start}",
                w.tick()
            ));
        }
    }
    let m = v.agents_per_env();
    let (ml, nf, na) = (v.layout.map_len(), v.layout.n_features(), v.n_actions());
    let layout = v.layout.as_ref();
    let mut scratch = Scratch::new(m, ml, nf, na);
    for (k, w) in v.towns.iter_mut().enumerate() {
        let slots = k * m..(k + 1) * m;
        match rec.as_mut() {
            Some(r) => {
                let mut rows = Rows {
                    r,
                    slots,
                    total,
                    dims: (ml, nf, na),
                };
                town_ticks(w, layout, start, stop, &mut rows, &mut scratch);
            }
            None => {
                let mut rows = ScratchRows { m, ml, nf, na };
                town_ticks(w, layout, start, stop, &mut rows, &mut scratch);
            }
        }
    }
    Ok(())
}

/// Per-town working space: the chosen and the applied actions, and scratch observation rows.
struct Scratch {
    chosen: Vec<u16>,
    applied: Vec<u16>,
    logp: Vec<f32>,
    map: Vec<f32>,
    features: Vec<f32>,
    masks: Vec<bool>,
}

impl Scratch {
    fn new(m: usize, ml: usize, nf: usize, na: usize) -> Self {
        Self {
            chosen: vec![0; m],
            applied: vec![0; m],
            logp: vec![0.0; m],
            map: vec![0.0; m * ml],
            features: vec![0.0; m * nf],
            masks: vec![false; m * na],
        }
    }
}

/// Where one town's rows go.
trait Sink {
    /// Row `t` of agent `i`: (map, features, mask), or `None` past the last recorded row.
    fn obs_row<'s>(
        &'s mut self,
        scratch: &'s mut Scratch,
        i: usize,
        t: usize,
    ) -> (&'s mut [f32], &'s mut [f32], &'s mut [bool]);
    fn mask_allows(&self, scratch: &Scratch, i: usize, t: usize, action: u16) -> bool;
    fn outcome(&mut self, i: usize, t: usize, chosen: u16, logp: f32, reward: f32, term: bool);
    fn alive(&mut self, i: usize, t: usize, alive: bool);
    /// Whether row `t` exists (`t < T`).
    fn has_row(&self, t: usize) -> bool;
    /// Whether a run from `start` must first write row `start` (else an earlier call wrote it).
    fn writes_first_row(&self, start: usize) -> bool;
}

struct Rows<'r, 'a> {
    r: &'r mut Record<'a>,
    slots: std::ops::Range<usize>,
    total: usize,
    dims: (usize, usize, usize),
}

impl Sink for Rows<'_, '_> {
    fn obs_row<'s>(
        &'s mut self,
        _scratch: &'s mut Scratch,
        i: usize,
        t: usize,
    ) -> (&'s mut [f32], &'s mut [f32], &'s mut [bool]) {
        let (ml, nf, na) = self.dims;
        let row = (self.slots.start + i) * self.total + t;
        (
            &mut self.r.map[row * ml..(row + 1) * ml],
            &mut self.r.features[row * nf..(row + 1) * nf],
            &mut self.r.masks[row * na..(row + 1) * na],
        )
    }
    fn mask_allows(&self, _scratch: &Scratch, i: usize, t: usize, action: u16) -> bool {
        let na = self.dims.2;
        let row = (self.slots.start + i) * self.total + t;
        self.r.masks[row * na + usize::from(action)]
    }
    fn outcome(&mut self, i: usize, t: usize, chosen: u16, logp: f32, reward: f32, term: bool) {
        let at = (self.slots.start + i) * self.total + t;
        self.r.actions[at] = i64::from(chosen);
        self.r.log_probs[at] = logp;
        self.r.rewards[at] = reward;
        self.r.terminated[at] = term;
    }
    fn alive(&mut self, i: usize, t: usize, alive: bool) {
        self.r.alive[(self.slots.start + i) * self.total + t] = alive;
    }
    fn has_row(&self, t: usize) -> bool {
        t < self.total
    }
    fn writes_first_row(&self, start: usize) -> bool {
        start == 0
    }
}

/// Records nothing: observations go to one scratch row per agent, overwritten every tick.
struct ScratchRows {
    m: usize,
    ml: usize,
    nf: usize,
    na: usize,
}

impl Sink for ScratchRows {
    fn obs_row<'s>(
        &'s mut self,
        scratch: &'s mut Scratch,
        i: usize,
        _t: usize,
    ) -> (&'s mut [f32], &'s mut [f32], &'s mut [bool]) {
        debug_assert!(i < self.m);
        (
            &mut scratch.map[i * self.ml..(i + 1) * self.ml],
            &mut scratch.features[i * self.nf..(i + 1) * self.nf],
            &mut scratch.masks[i * self.na..(i + 1) * self.na],
        )
    }
    fn mask_allows(&self, scratch: &Scratch, i: usize, _t: usize, action: u16) -> bool {
        scratch.masks[i * self.na + usize::from(action)]
    }
    fn outcome(&mut self, _: usize, _: usize, _: u16, _: f32, _: f32, _: bool) {}
    fn alive(&mut self, _: usize, _: usize, _: bool) {}
    fn has_row(&self, _t: usize) -> bool {
        true
    }
    fn writes_first_row(&self, _start: usize) -> bool {
        // The scratch rows live for one call only.
        true
    }
}

/// One town through ticks `start..stop`.
fn town_ticks<S: Sink>(
    w: &mut World,
    layout: &crate::obs::ObsLayout,
    start: usize,
    stop: usize,
    sink: &mut S,
    scratch: &mut Scratch,
) {
    let m = w.n_agents();
    if start < stop && sink.writes_first_row(start) {
        for i in 0..m {
            // Right after a reset every slot is live (as `reset` reports it).
            let live = start == 0 || w.state.agents[i].alive;
            sink.alive(i, start, live);
            let (map, feats, mask) = sink.obs_row(scratch, i, start);
            w.write_observation(layout, i, map, feats, mask);
        }
    }
    for t in start..stop {
        let mut chosen = std::mem::take(&mut scratch.chosen);
        let mut logp = std::mem::take(&mut scratch.logp);
        w.policy_actions(&mut chosen, &mut logp);
        for (i, &c) in chosen.iter().enumerate() {
            // A masked action (by the mask the agent saw) is applied as `wait`.
            let allowed = sink.mask_allows(scratch, i, t, c);
            scratch.applied[i] = if allowed { c } else { 0 };
        }
        let applied = std::mem::take(&mut scratch.applied);
        let next_row = sink.has_row(t + 1);
        // A terminated agent's next row is its real last observation (marked not alive).
        w.step_observing(Actions::Given(&applied), |w, i| {
            if next_row {
                sink.alive(i, t + 1, false);
                let (map, feats, mask) = sink.obs_row(scratch, i, t + 1);
                w.write_observation(layout, i, map, feats, mask);
            }
        });
        scratch.applied = applied;
        for (i, ag) in w.state.agents.iter().enumerate() {
            sink.outcome(
                i,
                t,
                chosen[i],
                logp[i],
                w.rewards()[i],
                ag.terminated.is_some(),
            );
        }
        scratch.chosen = chosen;
        scratch.logp = logp;
        if next_row {
            for i in 0..m {
                if w.state.agents[i].terminated.is_some() {
                    continue;
                }
                sink.alive(i, t + 1, w.state.agents[i].alive);
                let (map, feats, mask) = sink.obs_row(scratch, i, t + 1);
                w.write_observation(layout, i, map, feats, mask);
            }
        }
    }
}
