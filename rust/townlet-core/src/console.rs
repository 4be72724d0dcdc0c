//! Operator (console) operations that no system performs by itself: spawn into a vacant slot, a forced
//! chat, an arranged meeting, a tick with possessed agents, and a view of the queues. They run only when
//! an operator calls them.

use crate::events::EventKind;
use crate::ids::NONE;
use crate::social::Cause;
use crate::world::{Actions, World};

/// One object's queue as the console shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueView {
    /// (agent, holding since tick, ticks stalled).
    pub holders: Vec<(usize, u64, u32)>,
    /// (agent, joined at tick, conflicted), in queue order.
    pub waiting: Vec<(usize, u64, bool)>,
    /// (agent, may request again at tick) for the agents still cooling down.
    pub cooldowns: Vec<(usize, u64)>,
}

impl World {
    fn check_agent(&self, i: usize) -> Result<(), String> {
        if i >= self.n_agents() {
            return Err(format!(
                "agent index {i} out of range (0..{})",
                self.n_agents()
            ));
        }
        Ok(())
    }

    fn check_alive(&self, i: usize) -> Result<(), String> {
        self.check_agent(i)?;
        let a = &self.state.agents[i];
        if !a.alive || a.terminated.is_some() {
            return Err(format!("agent {} is not alive", a.display_id()));
        }
        Ok(())
    }

    /// Console: bring the vacant slot `i` (its agent was removed) back now at `pos`, as its next
    /// generation, with the given needs and wallet (default: the respawn values). Emits `agent_spawned`.
    pub fn spawn(
        &mut self,
        i: usize,
        pos: [i32; 2],
        needs: Option<[f32; 3]>,
        wallet: Option<f64>,
    ) -> Result<(), String> {
        self.check_agent(i)?;
        if self.state.agents[i].alive {
            return Err(format!(
                "agent {} is alive: only a removed agent's slot can be spawned into",
                self.state.agents[i].display_id()
            ));
        }
        if !self.statics.grid.walkable(pos[0], pos[1]) {
            return Err(format!("[{}, {}] is not a walkable tile", pos[0], pos[1]));
        }
        if let Some(n) = needs {
            if n.iter().any(|v| !(0.0..=1.0).contains(v)) {
                return Err("needs must be in [0, 1]".into());
            }
        }
        if wallet.is_some_and(|w| !w.is_finite() || w < 0.0) {
            return Err("wallet must be a finite amount >= 0".into());
        }
        let lc = &self.statics.config.lifecycle;
        let needs = needs.unwrap_or(lc.respawn_needs.to_array());
        let wallet = wallet.unwrap_or(lc.respawn_wallet);
        self.revive(i, pos, needs, wallet);
        let generation = self.state.agents[i].generation as f32;
        self.emit(EventKind::AgentSpawned, i as i32, NONE, NONE, generation);
        Ok(())
    }

    /// Console: `speaker` and `listener` have a successful chat of quality `quality` (in [0.1, 1]),
    /// wherever they are; no random draw. Returns the quality applied.
    pub fn force_chat(
        &mut self,
        speaker: usize,
        listener: usize,
        quality: f32,
    ) -> Result<f32, String> {
        self.check_alive(speaker)?;
        self.check_alive(listener)?;
        if speaker == listener {
            return Err("an agent cannot chat with itself".into());
        }
        if !quality.is_finite() {
            return Err("quality must be a number".into());
        }
        let q = quality.clamp(0.1, 1.0);
        self.state.agents[speaker].chat_ready_at =
            self.state.tick + u64::from(self.statics.config.behavior.chat_cooldown_ticks);
        self.update_pair(
            speaker,
            listener,
            0.05 * q,
            0.10 * q,
            0.0,
            Cause::ChatSuccess,
        );
        self.state.agents[speaker].counters.chats_ok += 1;
        self.emit(
            EventKind::ChatSuccess,
            speaker as i32,
            listener as i32,
            NONE,
            q,
        );
        Ok(q)
    }

    /// Console: bring `a` and `b` together: `a` moves to `at` (default: where it stands), `b` to the
    /// nearest walkable tile next to it (scanned in a fixed order). Both drop what they were doing.
    /// Returns their new positions.
    pub fn arrange_meet(
        &mut self,
        a: usize,
        b: usize,
        at: Option<[i32; 2]>,
    ) -> Result<([i32; 2], [i32; 2]), String> {
        self.check_alive(a)?;
        self.check_alive(b)?;
        if a == b {
            return Err("an agent cannot meet itself".into());
        }
        let spot = at.unwrap_or(self.state.agents[a].pos);
        if !self.statics.grid.walkable(spot[0], spot[1]) {
            return Err(format!("[{}, {}] is not a walkable tile", spot[0], spot[1]));
        }
        let grid = &self.statics.grid;
        let near = (1i32..=3)
            .flat_map(|r| (-r..=r).flat_map(move |dy| (-r..=r).map(move |dx| (r, dx, dy))))
            .filter(|&(r, dx, dy)| dx.abs().max(dy.abs()) == r)
            .map(|(_, dx, dy)| [spot[0] + dx, spot[1] + dy])
            .find(|p| grid.walkable(p[0], p[1]))
            .ok_or_else(|| format!("no walkable tile near [{}, {}]", spot[0], spot[1]))?;
        for (i, p) in [(a, spot), (b, near)] {
            self.abandon(i);
            self.state.agents[i].pos = p;
            self.state.agents[i].ctx_reset = true;
            self.emit(EventKind::AgentTeleported, i as i32, NONE, NONE, 0.0);
        }
        Ok((spot, near))
    }

    /// One tick under the scripted policy, except that each listed agent takes the given action (a
    /// possessed agent). Agents and actions are checked first; nothing happens on an error.
    pub fn step_possessed(&mut self, overrides: &[(usize, u16)]) -> Result<(), String> {
        for &(i, a) in overrides {
            self.check_agent(i)?;
            if usize::from(a) >= self.statics.n_actions() {
                return Err(format!(
                    "action {a} out of range (0..{})",
                    self.statics.n_actions()
                ));
            }
        }
        self.step(Actions::PolicyExcept(overrides));
        Ok(())
    }

    /// The job record the console shows beside `employment_view`: (meals cooked, meals eaten, late ticks
    /// today, absent shifts in the last seven days, exit pending).
    pub fn job_counters(&self, i: usize) -> (u32, u32, u32, u32, bool) {
        let a = &self.state.agents[i];
        let e = &a.employment;
        (
            a.counters.meals_cooked,
            a.counters.meals_eaten,
            e.late_ticks_today,
            e.absences.len() as u32,
            e.exit_pending,
        )
    }

    /// The queue of object `o`: holders, waiters, and the agents whose request cooldown runs.
    pub fn queue_view(&self, o: usize) -> QueueView {
        let n = self.n_agents();
        let obj = &self.state.objects[o];
        let tick = self.state.tick;
        QueueView {
            holders: obj
                .holders
                .iter()
                .map(|h| (h.agent as usize, h.since, h.stalled))
                .collect(),
            waiting: obj
                .waiting
                .iter()
                .map(|w| (w.agent as usize, w.joined, w.conflicted))
                .collect(),
            cooldowns: (0..n)
                .filter(|&i| self.state.cooldowns[o * n + i] > tick)
                .map(|i| (i, self.state.cooldowns[o * n + i]))
                .collect(),
        }
    }
}
