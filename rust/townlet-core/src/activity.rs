//! Applying actions and options, and running affordances (queues are in `queues`).
//!
//! A `use:<affordance>` action is an option: walk to the nearest usable object of the affordance's
//! type, join its queue, start, and hold until done. Choosing it again continues it; choosing any
//! other action abandons it.

use crate::actions::{A_MOVE0, A_WAIT, MAX_AFFORDANCES, NUM_MOVES};
use crate::config::AffordanceKind;
use crate::events::EventKind;
use crate::grid::{DIRS, UNREACHABLE};
use crate::ids::NONE;
use crate::state::*;
use crate::world::{chebyshev, World};

impl World {
    // -- targets and masks ----------------------------------------------------------------------

    /// Is agent `i` inside (or about to enter) its job's shift window?
    pub(crate) fn shift_open(&self, i: usize) -> bool {
        let job = self.statics.agent_jobs[i];
        if job < 0 {
            return false;
        }
        let j = &self.statics.jobs[job as usize];
        let tod = self.tick_of_day();
        let open = j
            .start
            .saturating_sub(self.statics.config.employment.arrival_buffer);
        tod >= open && tod < j.end
    }

    /// Requirements that can come and go (utilities, shift) for affordance `aff`.
    pub(crate) fn transient_ok(&self, i: usize, aff: usize, obj: usize) -> bool {
        let af = &self.statics.affordances[aff];
        if af.needs_power && self.state.power_out > 0 {
            return false;
        }
        if af.needs_water && self.state.water_out > 0 {
            return false;
        }
        if af.needs_shift {
            let job = self.statics.agent_jobs[i];
            if job < 0 || self.statics.jobs[job as usize].site != obj || !self.shift_open(i) {
                return false;
            }
        }
        true
    }

    /// Requirements that will not fix themselves: stock, money, room for produced stock.
    pub(crate) fn lasting_ok(&self, i: usize, aff: usize, obj: usize) -> bool {
        let af = &self.statics.affordances[aff];
        let stock = &self.state.objects[obj].stock;
        if af.consumes.iter().any(|&(k, n)| stock[k] < n) {
            return false;
        }
        if self.state.agents[i].wallet < self.price(aff) {
            return false;
        }
        if let Some(t) = af.produces_into {
            if self
                .produce_target(t, self.statics.objects[obj].pos, &af.produces)
                .is_none()
            {
                return false;
            }
        }
        true
    }

    /// The object agent `i` would head for with `use:aff`, if any is usable now.
    pub fn find_target(&self, i: usize, aff: usize) -> Option<usize> {
        let a = &self.state.agents[i];
        let n = self.n_agents();
        let tick = self.state.tick;
        let mut best: Option<(u32, usize)> = None;
        for &o in &self.statics.affordances[aff].objects {
            if self.state.cooldowns[o * n + i] > tick {
                continue;
            }
            let d = self.statics.dist_at(o, a.pos);
            if d == UNREACHABLE || !self.transient_ok(i, aff, o) || !self.lasting_ok(i, aff, o) {
                continue;
            }
            let os = &self.state.objects[o];
            let busy = (os.holders.len() + os.waiting.len())
                .saturating_sub(self.statics.types[self.statics.objects[o].type_idx].capacity - 1);
            let score = u32::from(d) + 4 * busy as u32;
            if best.is_none_or(|(b, _)| score < b) {
                best = Some((score, o));
            }
        }
        best.map(|b| b.1)
    }

    /// Agent slots filling the chat slots of agent `i`: others within range, nearest first.
    pub fn chat_partners(&self, i: usize, out: &mut Vec<usize>) {
        out.clear();
        let a = &self.state.agents[i];
        let range = self.statics.config.actions.chat_range as i32;
        for (j, b) in self.state.agents.iter().enumerate() {
            if j != i && b.alive && chebyshev(a.pos, b.pos) <= range {
                out.push(j);
            }
        }
        out.sort_by_key(|&j| (chebyshev(a.pos, self.state.agents[j].pos), j));
        out.truncate(self.statics.chat_slots());
    }

    /// Each affordance's target for agent `i` now (`find_target`), into `out` (one per affordance).
    pub fn targets(&self, i: usize, out: &mut [Option<usize>]) {
        for (aff, t) in out
            .iter_mut()
            .enumerate()
            .take(self.statics.affordances.len())
        {
            *t = self.find_target(i, aff);
        }
    }

    /// How many other live agents are within chat range of agent `i`.
    pub fn nearby_agents(&self, i: usize) -> usize {
        let pos = self.state.agents[i].pos;
        let range = self.statics.config.actions.chat_range as i32;
        self.state
            .agents
            .iter()
            .enumerate()
            .filter(|&(j, b)| j != i && b.alive && chebyshev(pos, b.pos) <= range)
            .count()
    }

    /// Fill `mask` (one bool per action) with the actions valid for agent `i` now.
    pub fn action_mask(&self, i: usize, mask: &mut [bool]) {
        let mut targets = [None; MAX_AFFORDANCES];
        self.targets(i, &mut targets);
        self.action_mask_from(i, &targets, mask);
    }

    /// `action_mask` with the affordance targets already computed.
    pub fn action_mask_from(&self, i: usize, targets: &[Option<usize>], mask: &mut [bool]) {
        mask.iter_mut().for_each(|m| *m = false);
        mask[A_WAIT] = true;
        let a = &self.state.agents[i];
        if !a.alive {
            return;
        }
        if a.activity.phase == Phase::Running {
            // Committed: continue it, wait (which also continues it) or release it.
            mask[self.statics.use_action(a.activity.affordance as usize)] = true;
            mask[self.statics.release_action] = true;
            return;
        }
        for (d, (dx, dy)) in DIRS.iter().enumerate() {
            mask[A_MOVE0 + d] = self.statics.grid.walkable(a.pos[0] + dx, a.pos[1] + dy);
        }
        for aff in 0..self.statics.affordances.len() {
            mask[self.statics.use_action(aff)] =
                a.activity.affordance == aff as i32 || targets[aff].is_some();
        }
        if a.chat_ready_at <= self.state.tick {
            let filled = self.nearby_agents(i);
            for k in 0..filled.min(self.statics.chat_slots()) {
                mask[self.statics.chat_offset + k] = true;
            }
        }
        mask[self.statics.release_action] = matches!(
            a.activity.phase,
            Phase::Waiting | Phase::Holding | Phase::Running
        );
    }

    // -- applying one action --------------------------------------------------------------------

    pub(crate) fn apply_action(&mut self, i: usize, action: usize) {
        let ok = self.apply_action_inner(i, action);
        let a = &mut self.state.agents[i];
        a.last_action = action as u16;
        a.last_action_ok = ok;
        if !ok {
            a.flags.invalid_action = true;
            self.state.stats.invalid_actions += 1;
        }
    }

    fn apply_action_inner(&mut self, i: usize, action: usize) -> bool {
        let current = self.state.agents[i].activity;
        if let Some(aff) = self.statics.action_aff(action) {
            if current.affordance == aff as i32 {
                self.advance_option(i);
                return true;
            }
        }
        // `wait` takes no new decision: a running affordance runs on, a queue place or
        // reservation is kept, a walk pauses.
        if action == A_WAIT {
            return true;
        }
        // A running affordance is left only through `release` (the mask says so too).
        if current.phase == Phase::Running && action != self.statics.release_action {
            return false;
        }
        let had_activity = !current.is_idle();
        if had_activity {
            self.abandon(i);
        }
        if (A_MOVE0..A_MOVE0 + NUM_MOVES).contains(&action) {
            let (dx, dy) = DIRS[action - A_MOVE0];
            let a = &mut self.state.agents[i];
            let (nx, ny) = (a.pos[0] + dx, a.pos[1] + dy);
            if self.statics.grid.walkable(nx, ny) {
                a.pos = [nx, ny];
                return true;
            }
            return false;
        }
        if let Some(aff) = self.statics.action_aff(action) {
            return match self.find_target(i, aff) {
                Some(obj) => {
                    let tick = self.state.tick;
                    self.state.agents[i].activity = Activity {
                        affordance: aff as i32,
                        object: obj as i32,
                        phase: Phase::Walking,
                        remaining: 0,
                        since: tick,
                    };
                    self.advance_option(i);
                    true
                }
                None => false,
            };
        }
        if action == self.statics.release_action {
            // Valid exactly when the mask allows it: something was queued, held or running.
            return matches!(
                current.phase,
                Phase::Waiting | Phase::Holding | Phase::Running
            );
        }
        if action >= self.statics.chat_offset
            && action < self.statics.chat_offset + self.statics.chat_slots()
        {
            let mut partners = Vec::with_capacity(8);
            self.chat_partners(i, &mut partners);
            let k = action - self.statics.chat_offset;
            if self.state.agents[i].chat_ready_at > self.state.tick || k >= partners.len() {
                return false;
            }
            self.chat(i, partners[k]);
            return true;
        }
        false
    }

    /// Move the option of agent `i` one tick forward (walk, queue, start).
    pub(crate) fn advance_option(&mut self, i: usize) {
        let act = self.state.agents[i].activity;
        let obj = act.object as usize;
        match act.phase {
            Phase::Idle | Phase::Waiting | Phase::Running => {}
            Phase::Walking => {
                let pos = self.state.agents[i].pos;
                let d = self.statics.dist_at(obj, pos);
                if d == 0 {
                    self.request(i, obj);
                } else if d == UNREACHABLE {
                    self.state.agents[i].activity = Activity::IDLE;
                } else {
                    for (dx, dy) in DIRS {
                        let (nx, ny) = (pos[0] + dx, pos[1] + dy);
                        if self.statics.grid.walkable(nx, ny)
                            && self.statics.dist_at(obj, [nx, ny]) < d
                        {
                            self.state.agents[i].pos = [nx, ny];
                            break;
                        }
                    }
                    // Arriving in range this tick: queue up straight away.
                    if self.statics.dist_at(obj, self.state.agents[i].pos) == 0 {
                        self.request(i, obj);
                    }
                }
            }
            Phase::Holding => self.try_start(i),
        }
    }

    // -- running affordances ---------------------------------------------------------------------

    pub(crate) fn affordances_tick(&mut self) {
        for i in 0..self.n_agents() {
            let a = &self.state.agents[i];
            if !a.alive || a.activity.phase != Phase::Running {
                continue;
            }
            let (aff, obj) = (a.activity.affordance as usize, a.activity.object as usize);
            let af = &self.statics.affordances[aff];
            if af.duration == 0 {
                if !self.transient_ok(i, aff, obj) {
                    self.finish(i);
                    continue;
                }
            } else if (af.needs_power && self.state.power_out > 0)
                || (af.needs_water && self.state.water_out > 0)
            {
                self.utility_fail(i);
                continue;
            }
            let per_tick = af.per_tick;
            let duration = af.duration;
            let a = &mut self.state.agents[i];
            for (v, d) in a.needs.iter_mut().zip(per_tick) {
                *v = (*v + d).clamp(0.0, 1.0);
            }
            if duration > 0 {
                a.activity.remaining -= 1;
                if a.activity.remaining == 0 {
                    self.finish(i);
                }
            }
        }
    }

    /// A running affordance loses its utility (blackout or water outage).
    pub(crate) fn utility_fail(&mut self, i: usize) {
        let act = self.state.agents[i].activity;
        self.emit(
            EventKind::AffordanceFail,
            i as i32,
            NONE,
            act.object,
            act.affordance as f32,
        );
        if self.statics.affordances[act.affordance as usize].kind == AffordanceKind::Shower {
            self.emit(
                EventKind::ShowerPowerOutage,
                i as i32,
                NONE,
                act.object,
                0.0,
            );
        }
        self.release(i, false);
    }

    /// The object of type `t` nearest to `from` with room for `produce`.
    fn produce_target(&self, t: usize, from: [i32; 2], produce: &[(usize, u32)]) -> Option<usize> {
        let max = &self.statics.types[t].max_stock;
        let mut best: Option<(i32, usize)> = None;
        for (o, info) in self.statics.objects.iter().enumerate() {
            if info.type_idx != t {
                continue;
            }
            let room = produce
                .iter()
                .all(|&(k, n)| max[k] == 0 || self.state.objects[o].stock[k] + n <= max[k]);
            let d = (info.pos[0] - from[0]).abs() + (info.pos[1] - from[1]).abs();
            if room && best.is_none_or(|(b, _)| d < b) {
                best = Some((d, o));
            }
        }
        best.map(|b| b.1)
    }

    fn finish(&mut self, i: usize) {
        let act = self.state.agents[i].activity;
        let (aff, obj) = (act.affordance as usize, act.object as usize);
        let af = &self.statics.affordances[aff];
        let kind = af.kind;
        if !af.produces.is_empty() {
            let into = match af.produces_into {
                Some(t) => self.produce_target(t, self.statics.objects[obj].pos, &af.produces),
                None => Some(obj),
            };
            if let Some(target) = into {
                for &(k, n) in &af.produces {
                    self.state.objects[target].stock[k] += n;
                }
            }
        }
        self.emit(
            EventKind::AffordanceFinish,
            i as i32,
            NONE,
            obj as i32,
            aff as f32,
        );
        let c = &mut self.state.agents[i].counters;
        match kind {
            AffordanceKind::Shower => {
                c.showers += 1;
                self.emit(EventKind::ShowerComplete, i as i32, NONE, obj as i32, 0.0);
            }
            AffordanceKind::Sleep => {
                c.sleeps += 1;
                self.emit(EventKind::SleepComplete, i as i32, NONE, obj as i32, 0.0);
            }
            AffordanceKind::Cook => {
                c.meals_cooked += 1;
                self.emit(EventKind::MealCooked, i as i32, NONE, obj as i32, 0.0);
            }
            AffordanceKind::Meal => {
                c.meals_eaten += 1;
                self.shared_meals(i);
            }
            AffordanceKind::Work | AffordanceKind::Other => {}
        }
        self.release(i, true);
    }

    /// Agents eating at overlapping times within chat range share a meal (each pair once: the
    /// first of the two to finish records it).
    fn shared_meals(&mut self, i: usize) {
        let range = self.statics.config.actions.chat_range as i32;
        let pos = self.state.agents[i].pos;
        for j in 0..self.n_agents() {
            let b = &self.state.agents[j];
            if j == i || !b.alive || b.activity.phase != Phase::Running {
                continue;
            }
            if self.statics.affordances[b.activity.affordance as usize].kind == AffordanceKind::Meal
                && chebyshev(pos, b.pos) <= range
            {
                self.emit(
                    EventKind::SharedMeal,
                    i as i32,
                    j as i32,
                    b.activity.object,
                    0.0,
                );
                self.update_pair(i, j, 0.10, 0.25, 0.0, crate::social::Cause::SharedMeal);
            }
        }
    }
}
