//! The world: static data, dynamic state and the tick, in the prior system's order.

use crate::config::ConfigError;
use crate::events::{EventKind, EventLog};
use crate::ids::NONE;
use crate::load::parse_world_config;
use crate::rng::Rng;
use crate::state::*;
use crate::statics::Statics;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;

pub use crate::snapshot::{SNAPSHOT_FORMAT, SNAPSHOT_VERSION};

/// Where the actions of one tick come from.
#[derive(Debug, Clone, Copy)]
pub enum Actions<'a> {
    /// Scripted agents follow their script, every other agent the scripted expert.
    Policy,
    /// One action per agent slot (dead agents' entries are ignored).
    Given(&'a [u16]),
    /// The scripted policy, but the listed (agent slot, action) pairs replace its choice (the console's
    /// possession); a replaced action's log-probability is 0.
    PolicyExcept(&'a [(usize, u16)]),
}

#[derive(Debug, Clone)]
pub struct World {
    pub statics: Arc<Statics>,
    pub state: State,
    pub town: u64,
    /// Actions applied in the last tick and their log-probabilities under the acting policy.
    pub last_actions: Vec<u16>,
    pub last_logp: Vec<f32>,
    pub(crate) rewards: Vec<f32>,
    pub(crate) reward_parts: Vec<f32>,
    pub(crate) scratch_mask: Vec<bool>,
    /// Per agent: why the expert made its last choice in `policy_actions` (`expert::MOTIVE_*`). Not part of the state.
    pub(crate) expert_motive: Vec<u8>,
}

/// Key performance indicators of a run so far.
/// An alive agent is self-sufficient on a tick when each of its three needs is above this.
pub const SELF_SUFFICIENT: f32 = 0.3;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Kpis {
    pub self_sufficiency: f64,
    pub on_time_rate: f64,
    pub relationship_coverage: f64,
    pub shifts_scheduled: u64,
    pub shifts_on_time: u64,
    pub faints: u64,
    pub evictions: u64,
    pub queue_conflicts: u64,
    pub chat_success: u64,
    pub chat_failure: u64,
    pub shared_meals: u64,
    pub invalid_actions: u64,
}

impl World {
    pub fn from_json(config_json: &str, town: u64) -> Result<Self, ConfigError> {
        Ok(Self::new(
            Arc::new(Statics::build(parse_world_config(config_json)?)),
            town,
        ))
    }

    /// A fresh town `town` (its RNG streams are derived from the config seed and this index).
    pub fn new(statics: Arc<Statics>, town: u64) -> Self {
        let seed = statics.config.seed;
        Self::new_seeded(statics, seed, town)
    }

    /// A fresh town whose RNG streams derive from `seed` (instead of the config's) and `town`.
    pub fn new_seeded(statics: Arc<Statics>, seed: u64, town: u64) -> Self {
        let cfg = &statics.config;
        let n = statics.n_agents();
        let agents = cfg
            .agents
            .iter()
            .map(|a| Agent {
                name: a.id.clone(),
                generation: 1,
                alive: true,
                respawn_at: 0,
                pos: a.pos.unwrap_or(a.home),
                home: a.home,
                needs: a.needs.unwrap_or(cfg.needs.initial).to_array(),
                wallet: a.wallet.unwrap_or(cfg.economy.starting_wallet),
                activity: Activity::IDLE,
                hunger_low_ticks: 0,
                chat_ready_at: 0,
                last_action: 0,
                last_action_ok: true,
                ctx_reset: true,
                identity_slot: NONE,
                spawned_at: 0,
                employment: Employment::new(),
                counters: AgentCounters::default(),
                terminated: None,
                flags: TickFlags::default(),
                episode_reward: 0.0,
            })
            .collect();
        let objects = statics
            .objects
            .iter()
            .map(|o| ObjectState {
                stock: o.initial_stock.clone(),
                waiting: Vec::new(),
                holders: Vec::new(),
            })
            .collect();
        let n_specs = statics.perturbations.len();
        let slots = cfg.identity.max_slots as usize;
        let mut w = World {
            state: State {
                tick: 0,
                agents,
                objects,
                cooldowns: vec![0; statics.objects.len() * n],
                ties: vec![Tie::default(); n * n],
                base_prices: statics.base_prices.clone(),
                prices: statics.base_prices.clone(),
                power_out: 0,
                water_out: 0,
                mortality: cfg.lifecycle.mortality,
                perturb: PerturbationState {
                    active: Vec::new(),
                    pending: Vec::new(),
                    spec_ready_at: vec![0; n_specs],
                    window_start: 0,
                    window_counts: vec![0; n_specs],
                    global_ready_at: 0,
                    agent_ready_at: vec![0; n],
                    next_id: 1,
                },
                identity: IdentitySlots {
                    holder: vec![NONE; slots],
                    released_at: vec![None; slots],
                    allocations: 0,
                    forced_reuse: 0,
                },
                exits: ExitQueue {
                    pending: Vec::new(),
                    manual: Vec::new(),
                    exits_today: 0,
                    day: 0,
                },
                rng_world: Rng::stream(seed, town, "world"),
                rng_perturb: Rng::stream(seed, town, "perturbations"),
                rng_social: Rng::stream(seed, town, "social"),
                rng_policy: Rng::stream(seed, town, "policy"),
                events: EventLog::new(false),
                stats: Stats::default(),
            },
            town,
            last_actions: vec![0; n],
            last_logp: vec![0.0; n],
            rewards: vec![0.0; n],
            reward_parts: vec![0.0; n * crate::reward_parts::N_REWARD_COMPONENTS],
            scratch_mask: vec![false; statics.n_actions()],
            expert_motive: vec![crate::expert::MOTIVE_DUTY; n],
            statics,
        };
        for i in 0..n {
            w.identity_allocate(i);
        }
        let timeline = w.statics.config.scenario.timeline.clone();
        for t in timeline {
            w.schedule_perturbation(&t.perturbation, u64::from(t.tick), t.duration, t.magnitude)
                .expect("validated timeline entry");
        }
        w
    }

    pub fn n_agents(&self) -> usize {
        self.state.agents.len()
    }

    #[inline]
    pub fn tick(&self) -> u64 {
        self.state.tick
    }

    #[inline]
    pub fn tick_of_day(&self) -> u32 {
        (self.state.tick % u64::from(self.statics.config.world.ticks_per_day)) as u32
    }

    #[inline]
    pub fn day(&self) -> i64 {
        (self.state.tick / u64::from(self.statics.config.world.ticks_per_day)) as i64
    }

    #[inline]
    pub(crate) fn emit(
        &mut self,
        kind: EventKind,
        agent: i32,
        other: i32,
        object: i32,
        value: f32,
    ) {
        let t = self.state.tick;
        self.state.events.emit(t, kind, agent, other, object, value);
    }

    pub fn set_record_events(&mut self, on: bool) {
        self.state.events.record = on;
    }

    /// Advance `n` ticks.
    pub fn run(&mut self, n: u64, actions: Actions<'_>) {
        for _ in 0..n {
            self.step(actions);
        }
    }

    /// One tick, in order: respawns, perturbations, policy, actions, queues, affordances, need decay,
    /// employment, relationships, economy, nightly reset, lifecycle, KPIs, rewards, removal of the
    /// terminated.
    pub fn step(&mut self, actions: Actions<'_>) {
        self.step_observing(actions, |_, _| {});
    }

    /// [`World::step`], calling `last_seen(world, i)` for every agent terminated this tick while the
    /// world still holds it, as the world reads once the tick is over: the agent's real last
    /// observation can be written there (after the tick it is removed and reads as zeros).
    pub fn step_observing<F: FnMut(&World, usize)>(
        &mut self,
        actions: Actions<'_>,
        mut last_seen: F,
    ) {
        self.state.events.begin_tick();
        for a in &mut self.state.agents {
            a.flags = TickFlags::default();
            a.ctx_reset = false;
            // A terminated agent was removed at the end of the last tick; an alive one carries a
            // console kill that takes effect this tick.
            if !a.alive {
                a.terminated = None;
            }
        }
        self.process_respawns();
        self.perturbations_tick();
        self.choose_actions(actions);
        self.apply_actions();
        self.queues_tick();
        self.affordances_tick();
        self.decay_needs();
        self.employment_tick();
        self.relationships_tick();
        self.economy_tick();
        self.nightly_reset();
        self.lifecycle_evaluate();
        self.update_stats();
        self.compute_rewards();
        if self
            .state
            .agents
            .iter()
            .any(|a| a.alive && a.terminated.is_some())
        {
            // Observations are read after the tick: show the terminated their world at that time.
            self.state.tick += 1;
            for i in 0..self.n_agents() {
                if self.state.agents[i].alive && self.state.agents[i].terminated.is_some() {
                    last_seen(self, i);
                }
            }
            self.state.tick -= 1;
        }
        self.finalize_terminated();
        self.state.tick += 1;
    }

    fn choose_actions(&mut self, actions: Actions<'_>) {
        let n = self.n_agents();
        match actions {
            Actions::Given(given) => {
                assert_eq!(given.len(), n, "one action per agent slot");
                self.last_actions.copy_from_slice(given);
                self.last_logp.iter_mut().for_each(|l| *l = 0.0);
            }
            Actions::Policy => {
                let mut actions = std::mem::take(&mut self.last_actions);
                let mut logp = std::mem::take(&mut self.last_logp);
                self.policy_actions(&mut actions, &mut logp);
                self.last_actions = actions;
                self.last_logp = logp;
            }
            Actions::PolicyExcept(overrides) => {
                self.choose_actions(Actions::Policy);
                for &(i, a) in overrides {
                    self.last_actions[i] = a;
                    self.last_logp[i] = 0.0;
                }
            }
        }
    }

    /// The scripted policy's actions for every agent slot (script or expert; `wait` for the dead)
    /// and their log-probabilities. Advances the policy RNG stream, nothing else.
    pub fn policy_actions(&mut self, actions: &mut [u16], logp: &mut [f32]) {
        self.expert_motive.clear();
        self.expert_motive
            .resize(self.n_agents(), crate::expert::MOTIVE_DUTY);
        for i in 0..self.n_agents() {
            if !self.state.agents[i].alive {
                actions[i] = 0;
                logp[i] = 0.0;
                continue;
            }
            let script = &self.statics.scripts[i];
            let t = self.state.tick as usize;
            if !script.is_empty() && (t < script.len() || self.statics.script_loops[i]) {
                // A scripted intention is attempted only when the action is valid; else the agent waits.
                let want = usize::from(script[t % script.len()]);
                let mut mask = std::mem::take(&mut self.scratch_mask);
                self.action_mask(i, &mut mask);
                actions[i] = if mask[want] {
                    want as u16
                } else {
                    crate::actions::A_WAIT as u16
                };
                self.scratch_mask = mask;
                logp[i] = 0.0;
            } else {
                let (a, lp) = self.expert_act(i);
                actions[i] = a as u16;
                logp[i] = lp;
            }
        }
    }

    /// Why the expert chose each agent's action in the last `policy_actions` (`expert::MOTIVE_*`: leisure, a duty,
    /// the shift); a scripted intention or a dead agent counts as a duty.
    pub fn expert_motives(&self) -> &[u8] {
        &self.expert_motive
    }

    fn apply_actions(&mut self) {
        let n = self.n_agents();
        if n == 0 {
            return;
        }
        // Rotate who acts first so that no slot always wins a race for an object.
        let first = (self.state.tick as usize) % n;
        for k in 0..n {
            let i = (first + k) % n;
            if self.state.agents[i].alive {
                let a = self.last_actions[i] as usize;
                self.apply_action(i, a);
            }
        }
    }

    fn decay_needs(&mut self) {
        let decay = self.statics.config.needs.decay.to_array();
        for (i, a) in self.state.agents.iter_mut().enumerate() {
            if !a.alive {
                continue;
            }
            let mult = crate::personality::PROFILES[self.statics.agent_profiles[i]].need_decay;
            for k in 0..3 {
                a.needs[k] = (a.needs[k] - decay[k] * mult[k]).clamp(0.0, 1.0);
            }
        }
    }

    fn update_stats(&mut self) {
        let mut alive = 0u64;
        let mut ok = 0u64;
        for a in &self.state.agents {
            if a.alive {
                alive += 1;
                if a.needs.iter().all(|&v| v > SELF_SUFFICIENT) {
                    ok += 1;
                }
            }
        }
        let st = &mut self.state.stats;
        st.ticks += 1;
        st.agent_steps += alive;
        if alive > 0 {
            st.self_sufficiency_sum += ok as f64 / alive as f64;
        }
    }

    pub fn kpis(&self) -> Kpis {
        let st = &self.state.stats;
        let n = self.n_agents();
        let thr = 0.3;
        let covered = (0..n)
            .filter(|&i| {
                self.state.agents[i].alive
                    && (0..n).any(|j| {
                        let t = &self.state.ties[i * n + j];
                        t.present && (t.trust.abs() > thr || t.rivalry > thr)
                    })
            })
            .count();
        let alive = self.state.agents.iter().filter(|a| a.alive).count().max(1);
        let ev = &self.state.events;
        Kpis {
            self_sufficiency: if st.ticks > 0 {
                st.self_sufficiency_sum / st.ticks as f64
            } else {
                0.0
            },
            on_time_rate: if st.shifts_scheduled > 0 {
                st.shifts_on_time as f64 / st.shifts_scheduled as f64
            } else {
                0.0
            },
            relationship_coverage: covered as f64 / alive as f64,
            shifts_scheduled: st.shifts_scheduled,
            shifts_on_time: st.shifts_on_time,
            faints: st.faints,
            evictions: st.evictions,
            queue_conflicts: ev.total(EventKind::QueueConflict),
            chat_success: ev.total(EventKind::ChatSuccess),
            chat_failure: ev.total(EventKind::ChatFailure),
            shared_meals: ev.total(EventKind::SharedMeal),
            invalid_actions: st.invalid_actions,
        }
    }

    /// SHA-256 over the full dynamic state (agents, objects, queues, ledgers, RNG streams, scheduler,
    /// counters), as hex.
    pub fn world_hash(&self) -> String {
        let bytes = serde_json::to_vec(&self.state).expect("state serialises");
        let mut h = Sha256::new();
        h.update(self.statics.config_hash.as_bytes());
        h.update(self.town.to_le_bytes());
        h.update(&bytes);
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A town of `statics` holding `state` (the last tick's counters included, so that the world hash
    /// matches at once); an error when the state's sizes do not fit the config.
    pub fn with_state(statics: Arc<Statics>, town: u64, state: State) -> Result<Self, String> {
        let n = statics.n_agents();
        if state.agents.len() != n
            || state.ties.len() != n * n
            || state.objects.len() != statics.objects.len()
            || state.cooldowns.len() != n * statics.objects.len()
            || state.base_prices.len() != statics.base_prices.len()
            || state.prices.len() != statics.base_prices.len()
            || state.events.totals.len() != EventKind::COUNT
            || state.events.value_totals.len() != EventKind::COUNT
            || state.events.tick_counts.len() != EventKind::COUNT
            || state.events.tick_values.len() != EventKind::COUNT
        {
            return Err("agent, object or event counts differ".into());
        }
        let mut w = World::new(statics, town);
        w.state = state;
        Ok(w)
    }

    // -- helpers shared by the systems --------------------------------------------------------

    #[inline]
    pub(crate) fn tie(&self, a: usize, b: usize) -> &Tie {
        &self.state.ties[a * self.n_agents() + b]
    }

    #[inline]
    pub(crate) fn price(&self, aff: usize) -> f64 {
        self.statics.affordances[aff]
            .price
            .map(|p| self.state.prices[p])
            .unwrap_or(0.0)
    }

    /// Take a charge from a wallet, never below zero for penalties; returns the amount taken.
    pub(crate) fn charge_penalty(&mut self, i: usize, amount: f64) -> f64 {
        let a = &mut self.state.agents[i];
        a.flags.penalty += amount;
        let taken = amount.min(a.wallet.max(0.0));
        a.wallet -= taken;
        a.counters.penalties += taken;
        self.state.stats.penalties += taken;
        taken
    }

    pub fn agent_index(&self, id: &str) -> Option<usize> {
        self.state
            .agents
            .iter()
            .position(|a| a.display_id() == id || a.name == id)
    }
}

pub fn chebyshev(a: [i32; 2], b: [i32; 2]) -> i32 {
    (a[0] - b[0]).abs().max((a[1] - b[1]).abs())
}
