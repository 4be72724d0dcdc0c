//! The scripted expert: a rule-based policy that acts through the same discrete action space as
//! learned policies. With `behavior.temperature > 0` it samples from a softmax around its choice,
//! so its log-probabilities are real.

use crate::actions::{A_MOVE0, A_WAIT};
use crate::config::AffordanceKind;
use crate::grid::{DIRS, UNREACHABLE};
use crate::personality::PROFILES;
use crate::state::Phase;
use crate::world::World;

/// A waiter gives up on a queue after this many ticks and reconsiders.
const MAX_WAIT: u64 = 240;

/// Why the expert chose its action (`World::expert_motives`): leisure, a chat or going home with nothing due.
pub const MOTIVE_LEISURE: u8 = 0;
/// A duty other than the shift: a need to tend, sleep, an activity under way.
pub const MOTIVE_DUTY: u8 = 1;
/// The shift: setting off for work, queueing there or working.
pub const MOTIVE_SHIFT: u8 = 2;

impl World {
    /// The expert's action for agent `i` and its log-probability.
    pub(crate) fn expert_act(&mut self, i: usize) -> (usize, f32) {
        let choice = self.expert_choice(i);
        let tau = self.statics.config.behavior.temperature;
        if tau <= 0.0 {
            return (choice, 0.0);
        }
        let mut mask = std::mem::take(&mut self.scratch_mask);
        self.action_mask(i, &mut mask);
        mask[choice] = true;
        let others: Vec<usize> = (0..mask.len())
            .filter(|&a| mask[a] && a != choice)
            .collect();
        self.scratch_mask = mask;
        let off = (-1.0 / f64::from(tau)).exp();
        let z = 1.0 + others.len() as f64 * off;
        let u = self.state.rng_policy.next_f64() * z;
        if u < 1.0 || others.is_empty() {
            return (choice, (-z.ln()) as f32);
        }
        let k = (((u - 1.0) / off) as usize).min(others.len() - 1);
        (others[k], (off.ln() - z.ln()) as f32)
    }

    fn in_sleep_window(&self) -> bool {
        let [a, b] = self.statics.config.sleep_window();
        let t = self.tick_of_day();
        if a <= b {
            t >= a && t < b
        } else {
            t >= a || t < b
        }
    }

    /// Ticks before the shift start at which agent `i` should set off, and whether it is due now.
    fn work_due(&self, i: usize) -> bool {
        let job = self.statics.agent_jobs[i];
        if job < 0 {
            return false;
        }
        let j = &self.statics.jobs[job as usize];
        let d = self.statics.dist_at(j.site, self.state.agents[i].pos);
        let travel = if d == UNREACHABLE { 0 } else { u32::from(d) };
        let tod = self.tick_of_day();
        tod + travel + 10 >= j.start && tod < j.end
    }

    fn step_along(&self, field: &[u16], pos: [i32; 2]) -> Option<usize> {
        let here = field[self.statics.grid.idx(pos[0], pos[1])];
        if here == 0 || here == UNREACHABLE {
            return None;
        }
        for (d, (dx, dy)) in DIRS.iter().enumerate() {
            let (x, y) = (pos[0] + dx, pos[1] + dy);
            if self.statics.grid.walkable(x, y) && field[self.statics.grid.idx(x, y)] < here {
                return Some(A_MOVE0 + d);
            }
        }
        None
    }

    fn expert_choice(&mut self, i: usize) -> usize {
        self.expert_motive[i] = MOTIVE_DUTY;
        let a = &self.state.agents[i];
        let b = &self.statics.config.behavior;
        let needs = a.needs;
        let critical = (0..3)
            .filter(|&k| needs[k] < b.critical)
            .min_by(|&x, &y| needs[x].total_cmp(&needs[y]));
        let work_due = self.work_due(i);

        if !a.activity.is_idle() {
            let aff = a.activity.affordance as usize;
            let interrupt = match self.statics.affordances[aff].kind {
                AffordanceKind::Work => critical.is_some_and(|k| needs[k] < 0.5 * b.critical),
                AffordanceKind::Sleep => {
                    (work_due && needs[2] > 0.5) || critical.is_some_and(|k| k != 2)
                }
                _ => false,
            } || (a.activity.phase == Phase::Waiting
                && self.state.tick - a.activity.since > MAX_WAIT);
            if !interrupt {
                if self.statics.affordances[aff].kind == AffordanceKind::Work {
                    self.expert_motive[i] = MOTIVE_SHIFT;
                }
                return self.statics.use_action(aff);
            }
            if a.activity.phase == Phase::Running {
                // A running affordance is left through `release`; the next tick picks anew.
                return self.statics.release_action;
            }
        }

        if let Some(k) = critical {
            if let Some(act) = self.tend(i, k) {
                return act;
            }
        }
        if work_due {
            self.expert_motive[i] = MOTIVE_SHIFT;
            if let Some(w) = self.statics.work_aff {
                if self.find_target(i, w).is_some() {
                    return self.statics.use_action(w);
                }
            }
            let j = &self.statics.jobs[self.statics.agent_jobs[i] as usize];
            if let Some(m) = self.step_along(&self.statics.dist[j.site], self.state.agents[i].pos) {
                return m;
            }
            return A_WAIT;
        }
        if self.in_sleep_window() && needs[2] < 0.9 {
            if let Some(act) = self.tend(i, 2) {
                return act;
            }
        }
        let thr = b.thresholds.to_array();
        let mut order = [0usize, 1, 2];
        order.sort_by(|&x, &y| (needs[x] - thr[x]).total_cmp(&(needs[y] - thr[y])));
        for k in order {
            if needs[k] < thr[k] {
                if let Some(act) = self.tend(i, k) {
                    return act;
                }
            }
        }
        // Leisure from here: nothing is due.
        self.expert_motive[i] = MOTIVE_LEISURE;
        if let Some(act) = self.maybe_chat(i) {
            return act;
        }
        // Nothing to do: go home (where housemates are) and wait there.
        self.step_along(&self.statics.home_dist[i], self.state.agents[i].pos)
            .unwrap_or(A_WAIT)
    }

    /// The best `use:` action for need `k`: gain per tick of travel, queueing and use, minus price.
    /// When the stock an affordance consumes has run out, the affordance producing it stands in.
    fn tend(&self, i: usize, k: usize) -> Option<usize> {
        let pos = self.state.agents[i].pos;
        let mut best: Option<(f32, usize)> = None;
        let mut consider = |score: f32, aff: usize| {
            if best.is_none_or(|(b, _)| score > b) {
                best = Some((score, aff));
            }
        };
        for (aff, af) in self.statics.affordances.iter().enumerate() {
            let gain = af.per_tick[k] * af.duration.max(1) as f32;
            if gain <= 0.0 || af.needs_shift {
                continue;
            }
            if let Some(o) = self.find_target(i, aff) {
                let d = f32::from(self.statics.dist_at(o, pos));
                let q = (self.state.objects[o].waiting.len() + self.state.objects[o].holders.len())
                    as f32;
                consider(
                    gain / (d + 0.25 * af.duration as f32 + 6.0 * q + 5.0)
                        - 0.02 * self.price(aff) as f32,
                    aff,
                );
            } else {
                for &(stock, _) in &af.consumes {
                    for (p, pf) in self.statics.affordances.iter().enumerate() {
                        if pf.produces.iter().any(|&(s, _)| s == stock) {
                            if let Some(o) = self.find_target(i, p) {
                                let d = f32::from(self.statics.dist_at(o, pos));
                                consider(
                                    0.5 * gain / (d + pf.duration as f32 + 5.0)
                                        - 0.02 * self.price(p) as f32,
                                    p,
                                );
                            }
                        }
                    }
                }
            }
        }
        best.map(|(_, aff)| self.statics.use_action(aff))
    }

    fn maybe_chat(&mut self, i: usize) -> Option<usize> {
        let a = &self.state.agents[i];
        if a.chat_ready_at > self.state.tick {
            return None;
        }
        let p = &PROFILES[self.statics.agent_profiles[i]];
        let propensity = self.statics.config.behavior.chat_propensity
            * p.chat_preference
            * (1.0 + p.extroversion);
        let mut partners = Vec::with_capacity(8);
        self.chat_partners(i, &mut partners);
        if partners.is_empty() || self.state.rng_policy.next_f64() as f32 >= propensity {
            return None;
        }
        // The guardrail: never address someone we avoid.
        let mut best: Option<(f32, usize)> = None;
        for (slot, &j) in partners.iter().enumerate() {
            if self.avoids(i, j) {
                continue;
            }
            let t = self.tie(i, j);
            let score = t.trust + t.familiarity - t.rivalry - 0.01 * slot as f32;
            if best.is_none_or(|(b, _)| score > b) {
                best = Some((score, slot));
            }
        }
        best.map(|(_, slot)| self.statics.chat_offset + slot)
    }
}
