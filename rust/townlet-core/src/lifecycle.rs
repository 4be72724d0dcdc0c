//! Lifecycle: faint after a sustained hunger crisis, eviction through the exit queue, removal from
//! every subsystem, respawn after a delay with lineage ids, identity slots, nightly reset.

use crate::events::EventKind;
use crate::ids::NONE;
use crate::state::{Activity, TermReason, Tie};
use crate::world::World;

impl World {
    pub(crate) fn lifecycle_evaluate(&mut self) {
        let thr = self.statics.config.needs.faint_threshold;
        let window = self.statics.config.needs.faint_window_ticks;
        for i in 0..self.n_agents() {
            let a = &mut self.state.agents[i];
            if !a.alive || a.terminated.is_some() {
                continue;
            }
            if a.needs[0] < thr {
                a.hunger_low_ticks += 1;
            } else {
                a.hunger_low_ticks = 0;
            }
            if self.state.mortality && a.hunger_low_ticks >= window {
                self.emit(EventKind::AgentFaint, i as i32, NONE, NONE, 0.0);
                self.terminate(i, TermReason::Faint);
            }
        }
        self.exit_queue_tick();
    }

    /// Mark agent `i` terminated this tick; it is removed at the end of the tick.
    pub fn terminate(&mut self, i: usize, why: TermReason) {
        let a = &mut self.state.agents[i];
        if !a.alive || a.terminated.is_some() {
            return;
        }
        a.terminated = Some(why);
        match why {
            TermReason::Faint => self.state.stats.faints += 1,
            TermReason::Eviction => self.state.stats.evictions += 1,
            TermReason::Killed => self.emit(EventKind::AgentKilled, i as i32, NONE, NONE, 0.0),
        }
    }

    /// Remove every terminated agent from every subsystem and schedule its respawn.
    pub(crate) fn finalize_terminated(&mut self) {
        let n = self.n_agents();
        let delay = u64::from(self.statics.config.lifecycle.respawn_delay_ticks);
        for i in 0..n {
            if self.state.agents[i].terminated.is_none() {
                continue;
            }
            self.abandon(i);
            for j in 0..n {
                self.state.ties[i * n + j] = Tie::default();
                self.state.ties[j * n + i] = Tie::default();
            }
            self.state.exits.pending.retain(|(a, _)| *a as usize != i);
            self.state.exits.manual.retain(|a| *a as usize != i);
            self.identity_release(i);
            self.reset_employment(i);
            let a = &mut self.state.agents[i];
            a.alive = false;
            a.activity = Activity::IDLE;
            a.respawn_at = self.state.tick + 1 + delay;
            self.emit(EventKind::AgentRemoved, i as i32, NONE, NONE, 0.0);
        }
    }

    pub(crate) fn process_respawns(&mut self) {
        let tick = self.state.tick;
        let lc = self.statics.config.lifecycle.clone();
        for i in 0..self.n_agents() {
            let a = &self.state.agents[i];
            if a.alive || a.respawn_at > tick {
                continue;
            }
            let home = a.home;
            self.revive(i, home, lc.respawn_needs.to_array(), lc.respawn_wallet);
            self.emit(
                EventKind::AgentRespawn,
                i as i32,
                NONE,
                NONE,
                self.state.agents[i].generation as f32,
            );
        }
    }

    /// Bring a removed agent's slot back at `pos` as its next generation (the respawn and the console's
    /// spawn); the caller emits the event.
    pub(crate) fn revive(&mut self, i: usize, pos: [i32; 2], needs: [f32; 3], wallet: f64) {
        let tick = self.state.tick;
        let a = &mut self.state.agents[i];
        a.generation += 1;
        a.alive = true;
        a.terminated = None;
        a.pos = pos;
        a.needs = needs;
        a.wallet = wallet;
        a.activity = Activity::IDLE;
        a.hunger_low_ticks = 0;
        a.chat_ready_at = 0;
        a.ctx_reset = true;
        a.spawned_at = tick;
        a.counters = Default::default();
        a.episode_reward = 0.0;
        let n = self.n_agents();
        for o in 0..self.state.objects.len() {
            self.state.cooldowns[o * n + i] = 0;
        }
        self.identity_allocate(i);
    }

    /// Allocate an identity slot: a never-used slot first, then the longest-released one whose
    /// cooldown has passed, else (counted as forced) the longest-released one.
    pub(crate) fn identity_allocate(&mut self, i: usize) {
        let tick = self.state.tick;
        let cooldown = u64::from(self.statics.config.identity.cooldown_ticks);
        let id = &mut self.state.identity;
        let free: Vec<usize> = (0..id.holder.len()).filter(|&k| id.holder[k] < 0).collect();
        let slot = if let Some(&k) = free.iter().find(|&&k| id.released_at[k].is_none()) {
            k
        } else {
            let oldest = free
                .iter()
                .copied()
                .min_by_key(|&k| (id.released_at[k], k))
                .expect("max_slots >= agents");
            let released = id.released_at[oldest].unwrap_or(0);
            if tick.saturating_sub(released) < cooldown {
                id.forced_reuse += 1;
                self.state.events.emit(
                    tick,
                    EventKind::IdentityForcedReuse,
                    i as i32,
                    NONE,
                    NONE,
                    oldest as f32,
                );
            }
            oldest
        };
        let id = &mut self.state.identity;
        id.holder[slot] = i as i32;
        id.allocations += 1;
        self.state.agents[i].identity_slot = slot as i32;
    }

    fn identity_release(&mut self, i: usize) {
        let slot = self.state.agents[i].identity_slot;
        if slot >= 0 {
            self.state.identity.holder[slot as usize] = -1;
            self.state.identity.released_at[slot as usize] = Some(self.state.tick);
            self.state.agents[i].identity_slot = -1;
        }
    }

    pub(crate) fn nightly_reset(&mut self) {
        if !self.statics.config.lifecycle.nightly_reset
            || self.tick_of_day() != 0
            || self.state.tick == 0
        {
            return;
        }
        for i in 0..self.n_agents() {
            if !self.state.agents[i].alive {
                continue;
            }
            self.abandon(i);
            let a = &mut self.state.agents[i];
            a.pos = a.home;
            for v in &mut a.needs {
                *v = v.max(0.5);
            }
            self.emit(EventKind::AgentNightlyReset, i as i32, NONE, NONE, 0.0);
        }
    }

    // -- console operations on agents ---------------------------------------------------------------

    pub fn teleport(&mut self, i: usize, x: i32, y: i32) -> Result<(), String> {
        if !self.state.agents[i].alive {
            return Err("agent is not alive".into());
        }
        if !self.statics.grid.walkable(x, y) {
            return Err(format!("[{x}, {y}] is not a walkable tile"));
        }
        self.abandon(i);
        self.state.agents[i].pos = [x, y];
        self.state.agents[i].ctx_reset = true;
        self.emit(EventKind::AgentTeleported, i as i32, NONE, NONE, 0.0);
        Ok(())
    }

    pub fn set_need(&mut self, i: usize, need: usize, value: f32) -> Result<(), String> {
        if need >= 3 {
            return Err(format!("need index {need} out of range"));
        }
        if !(0.0..=1.0).contains(&value) {
            return Err(format!("need value must be in [0, 1], got {value}"));
        }
        self.state.agents[i].needs[need] = value;
        Ok(())
    }

    /// Console: set the tie between two agents, both ways (values clamped to their ranges).
    pub fn set_relationship(
        &mut self,
        a: usize,
        b: usize,
        trust: f32,
        familiarity: f32,
        rivalry: f32,
    ) -> Result<(), String> {
        if a == b {
            return Err("an agent has no relationship with itself".to_string());
        }
        let n = self.n_agents();
        for (o, t) in [(a, b), (b, a)] {
            self.state.ties[o * n + t] = Tie {
                trust: trust.clamp(-1.0, 1.0),
                familiarity: familiarity.clamp(-1.0, 1.0),
                rivalry: rivalry.clamp(0.0, 1.0),
                present: true,
            };
        }
        // Console ties obey the same capacity as earned ones.
        self.prune(a);
        self.prune(b);
        Ok(())
    }

    /// Console: the agent is removed at the end of the next tick.
    pub fn kill(&mut self, i: usize) -> bool {
        let ok = self.state.agents[i].alive && self.state.agents[i].terminated.is_none();
        self.terminate(i, TermReason::Killed);
        ok
    }

    pub fn set_mortality(&mut self, on: bool) {
        self.state.mortality = on;
    }
}
