//! Queues and reservations: an agent in range of an object joins its wait list (or holds it
//! at once when there is room), holders start when their requirements hold, and the queue
//! fairness rules apply each tick (cooldowns after a release, ghost steps for stalled holders,
//! age priority, and conflicts recorded by impatient waiters).

use crate::events::EventKind;
use crate::ids::NONE;
use crate::personality::PROFILES;
use crate::social::Cause;
use crate::state::{Activity, Holder, Phase, Waiter};
use crate::world::World;

impl World {
    pub(crate) fn request(&mut self, i: usize, obj: usize) {
        let n = self.n_agents();
        let tick = self.state.tick;
        if self.state.cooldowns[obj * n + i] > tick {
            self.emit(EventKind::QueueCooldown, i as i32, NONE, obj as i32, 0.0);
            self.state.agents[i].activity = Activity::IDLE;
            return;
        }
        let cap = self.statics.types[self.statics.objects[obj].type_idx].capacity;
        let os = &mut self.state.objects[obj];
        if os.holders.len() < cap && os.waiting.is_empty() {
            os.holders.push(Holder {
                agent: i as u32,
                since: tick,
                stalled: 0,
            });
            self.state.agents[i].activity.phase = Phase::Holding;
            self.try_start(i);
        } else {
            os.waiting.push(Waiter {
                agent: i as u32,
                joined: tick,
                conflicted: false,
            });
            self.state.agents[i].activity.phase = Phase::Waiting;
        }
    }

    /// Start the affordance of a holder, or leave it holding (stalled) while a utility or the shift
    /// is not there yet, or give up when stock or money are missing.
    pub(crate) fn try_start(&mut self, i: usize) {
        let act = self.state.agents[i].activity;
        let (aff, obj) = (act.affordance as usize, act.object as usize);
        if !self.transient_ok(i, aff, obj) {
            return;
        }
        if !self.lasting_ok(i, aff, obj) {
            self.emit(
                EventKind::AffordancePreconditionFail,
                i as i32,
                NONE,
                obj as i32,
                aff as f32,
            );
            self.release(i, false);
            return;
        }
        let price = self.price(aff);
        let af = &self.statics.affordances[aff];
        for &(k, n) in &af.consumes {
            self.state.objects[obj].stock[k] -= n;
        }
        let a = &mut self.state.agents[i];
        a.wallet -= price;
        a.counters.spent += price;
        self.state.stats.spent += price;
        a.activity.phase = Phase::Running;
        a.activity.remaining = af.duration;
        a.activity.since = self.state.tick;
        if let Some(h) = self.state.objects[obj]
            .holders
            .iter_mut()
            .find(|h| h.agent == i as u32)
        {
            h.stalled = 0;
        }
        self.emit(
            EventKind::AffordanceStart,
            i as i32,
            NONE,
            obj as i32,
            aff as f32,
        );
    }

    /// Leave the current option. A running affordance counts as failed.
    pub(crate) fn abandon(&mut self, i: usize) {
        let act = self.state.agents[i].activity;
        match act.phase {
            Phase::Idle => {}
            Phase::Walking => self.state.agents[i].activity = Activity::IDLE,
            Phase::Waiting => {
                let obj = act.object as usize;
                let avoided = self.state.objects[obj]
                    .holders
                    .iter()
                    .any(|h| self.avoids(i, h.agent as usize));
                self.state.agents[i].flags.avoided |= avoided;
                self.release(i, false);
            }
            Phase::Holding => self.release(i, false),
            Phase::Running => {
                self.emit(
                    EventKind::AffordanceFail,
                    i as i32,
                    NONE,
                    act.object,
                    act.affordance as f32,
                );
                self.release(i, false);
            }
        }
    }

    /// Remove agent `i` from its object's queue or holders. Success sets the request cooldown and
    /// hands the reservation over, preferring a waiter the departing agent likes.
    pub(crate) fn release(&mut self, i: usize, success: bool) {
        let obj = self.state.agents[i].activity.object;
        self.state.agents[i].activity = Activity::IDLE;
        if obj < 0 {
            return;
        }
        let obj = obj as usize;
        let n = self.n_agents();
        let os = &mut self.state.objects[obj];
        let was_holder = os.holders.iter().any(|h| h.agent == i as u32);
        os.holders.retain(|h| h.agent != i as u32);
        os.waiting.retain(|w| w.agent != i as u32);
        if success {
            self.state.cooldowns[obj * n + i] =
                self.state.tick + u64::from(self.statics.config.queue_fairness.cooldown_ticks);
        }
        if success && was_holder && !self.state.objects[obj].waiting.is_empty() {
            // Relationship-preferred handover: the liked waiter moves to the head.
            let waiting = &self.state.objects[obj].waiting;
            let mut best: Option<(f32, usize)> = None;
            for (idx, w) in waiting.iter().enumerate() {
                let t = self.tie(i, w.agent as usize);
                let score = t.trust + t.familiarity - t.rivalry - 0.05 * idx as f32;
                if t.present && score > 0.0 && best.is_none_or(|(b, _)| score > b) {
                    best = Some((score, idx));
                }
            }
            if let Some((_, idx)) = best {
                if idx > 0 {
                    let w = self.state.objects[obj].waiting.remove(idx);
                    self.state.objects[obj].waiting.insert(0, w);
                }
            }
            let next = self.state.objects[obj].waiting[0].agent as usize;
            self.emit(
                EventKind::QueueInteraction,
                i as i32,
                next as i32,
                obj as i32,
                1.0,
            );
            self.update_pair(i, next, 0.05, 0.05, -0.05, Cause::Handover);
            // The handover is real: the chosen waiter takes the freed place (age priority orders
            // the rest of the wait list, it does not overrule the departing holder's choice).
            let w = self.state.objects[obj].waiting.remove(0);
            self.state.objects[obj].holders.push(Holder {
                agent: w.agent,
                since: self.state.tick,
                stalled: 0,
            });
            self.state.agents[next].activity.phase = Phase::Holding;
        }
        self.assign(obj);
    }

    /// Fill free capacity from the wait list: lowest (index - age weight * ticks waited) first.
    pub(crate) fn assign(&mut self, obj: usize) {
        let cap = self.statics.types[self.statics.objects[obj].type_idx].capacity;
        let w_age = self.statics.config.queue_fairness.age_priority_weight;
        let tick = self.state.tick;
        loop {
            let os = &self.state.objects[obj];
            if os.holders.len() >= cap || os.waiting.is_empty() {
                return;
            }
            let mut best = 0;
            let mut best_score = f32::INFINITY;
            for (idx, w) in os.waiting.iter().enumerate() {
                let score = idx as f32 - w_age * (tick - w.joined) as f32;
                if score < best_score {
                    best_score = score;
                    best = idx;
                }
            }
            let w = self.state.objects[obj].waiting.remove(best);
            self.state.objects[obj].holders.push(Holder {
                agent: w.agent,
                since: tick,
                stalled: 0,
            });
            self.state.agents[w.agent as usize].activity.phase = Phase::Holding;
        }
    }

    /// Queue system: assignment, ghost steps for stalled holders, and impatience conflicts.
    pub(crate) fn queues_tick(&mut self) {
        let qf = self.statics.config.queue_fairness.clone();
        let tick = self.state.tick;
        for obj in 0..self.state.objects.len() {
            self.assign(obj);
            if self.state.objects[obj].waiting.is_empty() {
                for h in &mut self.state.objects[obj].holders {
                    h.stalled = 0;
                }
                continue;
            }
            // Ghost step: only a holder whose affordance is not running can be stalled.
            let mut ghost: Option<usize> = None;
            for h in &mut self.state.objects[obj].holders {
                if self.state.agents[h.agent as usize].activity.phase == Phase::Holding {
                    h.stalled += 1;
                    if h.stalled >= qf.ghost_step_after && ghost.is_none() {
                        ghost = Some(h.agent as usize);
                    }
                } else {
                    h.stalled = 0;
                }
            }
            if let Some(g) = ghost {
                let rival = self.state.objects[obj].waiting[0].agent as usize;
                let len =
                    self.state.objects[obj].waiting.len() + self.state.objects[obj].holders.len();
                let aff = self.state.agents[g].activity.affordance;
                self.state.objects[obj]
                    .holders
                    .retain(|h| h.agent != g as u32);
                self.state.objects[obj].waiting.push(Waiter {
                    agent: g as u32,
                    joined: tick,
                    conflicted: true,
                });
                self.state.agents[g].activity = Activity {
                    affordance: aff,
                    object: obj as i32,
                    phase: Phase::Waiting,
                    remaining: 0,
                    since: tick,
                };
                self.emit(
                    EventKind::QueueGhostStep,
                    g as i32,
                    rival as i32,
                    obj as i32,
                    0.0,
                );
                let intensity = self.statics.config.conflict.ghost_step_boost
                    + self.statics.config.conflict.queue_length_boost * (len as f32 - 1.0);
                self.queue_conflict(g, rival, obj, intensity);
                self.assign(obj);
            }
            // Impatience: one conflict per wait, with the first holder.
            let Some(holder) = self.state.objects[obj]
                .holders
                .first()
                .map(|h| h.agent as usize)
            else {
                continue;
            };
            let len = self.state.objects[obj].waiting.len() + self.state.objects[obj].holders.len();
            for k in 0..self.state.objects[obj].waiting.len() {
                let w = self.state.objects[obj].waiting[k];
                let tolerance =
                    PROFILES[self.statics.agent_profiles[w.agent as usize]].conflict_tolerance;
                let patience = (qf.patience_ticks as f32 * tolerance) as u64;
                if !w.conflicted && tick - w.joined >= patience {
                    self.state.objects[obj].waiting[k].conflicted = true;
                    let intensity = self.statics.config.conflict.wait_boost
                        + self.statics.config.conflict.queue_length_boost * (len as f32 - 1.0);
                    self.queue_conflict(w.agent as usize, holder, obj, intensity);
                }
            }
        }
    }
}
