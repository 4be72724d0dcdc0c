//! Relationships (one ledger of directed ties with trust, familiarity and rivalry), chat, and
//! queue conflicts.

use crate::events::EventKind;
use crate::ids::NONE;
use crate::personality::PROFILES;
use crate::state::Tie;
use crate::world::World;

/// Why a relationship changes; personality modifiers depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    ChatSuccess,
    ChatFailure,
    SharedMeal,
    Handover,
    LateHelp,
    ShiftTaken,
    Conflict,
    Console,
}

impl World {
    /// Apply the same deltas to a->b and b->a, each adjusted by its owner's personality.
    pub(crate) fn update_pair(
        &mut self,
        a: usize,
        b: usize,
        trust: f32,
        fam: f32,
        riv: f32,
        cause: Cause,
    ) {
        if a == b {
            return;
        }
        self.update_tie(a, b, trust, fam, riv, cause);
        self.update_tie(b, a, trust, fam, riv, cause);
    }

    fn update_tie(
        &mut self,
        owner: usize,
        other: usize,
        mut trust: f32,
        mut fam: f32,
        mut riv: f32,
        cause: Cause,
    ) {
        if self.statics.config.relationships.personality_modifiers && cause != Cause::Console {
            let p = &PROFILES[self.statics.agent_profiles[owner]];
            // Forgiving owners take negative changes more lightly, unforgiving ones harder.
            let f = p.forgiveness;
            let scale = if f >= 0.0 {
                1.0 - 0.5 * f
            } else {
                1.0 + 0.5 * f.abs()
            };
            if trust < 0.0 {
                trust *= scale;
            }
            if fam < 0.0 {
                fam *= scale;
            }
            if riv > 0.0 {
                riv *= scale;
            }
            if cause == Cause::ChatSuccess {
                fam += 0.02 * p.extroversion;
            }
            if cause == Cause::Conflict && riv > 0.0 {
                riv *= 1.0 + 0.3 * p.ambition;
            }
        }
        let n = self.n_agents();
        let t = &mut self.state.ties[owner * n + other];
        t.trust = (t.trust + trust).clamp(-1.0, 1.0);
        t.familiarity = (t.familiarity + fam).clamp(-1.0, 1.0);
        t.rivalry = (t.rivalry + riv).clamp(0.0, 1.0);
        t.present = true;
        self.prune(owner);
    }

    /// Keep at most `max_edges` ties per owner, dropping the weakest (friends and rivals both count
    /// as strong).
    pub(crate) fn prune(&mut self, owner: usize) {
        let n = self.n_agents();
        let max = self.statics.config.relationships.max_edges as usize;
        loop {
            let row = &self.state.ties[owner * n..(owner + 1) * n];
            let count = row.iter().filter(|t| t.present).count();
            if count <= max {
                return;
            }
            let weakest = row
                .iter()
                .enumerate()
                .filter(|(_, t)| t.present)
                .min_by(|(_, x), (_, y)| strength(x).total_cmp(&strength(y)))
                .map(|(j, _)| j)
                .expect("count > max >= 1");
            self.state.ties[owner * n + weakest] = Tie::default();
            self.emit(
                crate::events::EventKind::RelationshipEvicted,
                owner as i32,
                weakest as i32,
                NONE,
                0.0,
            );
        }
    }

    /// Relationship decay toward zero; a tie that fades below the eviction threshold is dropped.
    pub(crate) fn relationships_tick(&mut self) {
        let d = self.statics.config.relationships.decay;
        let eps = self.statics.config.relationships.eviction_threshold;
        for t in self.state.ties.iter_mut().filter(|t| t.present) {
            t.trust = toward_zero(t.trust, d.trust);
            t.familiarity = toward_zero(t.familiarity, d.familiarity);
            t.rivalry = toward_zero(t.rivalry, d.rivalry);
            if t.trust.abs() < eps && t.familiarity.abs() < eps && t.rivalry < eps {
                *t = Tie::default();
            }
        }
    }

    /// Does `a` avoid `b` (rivalry at or above the avoid threshold)?
    pub fn avoids(&self, a: usize, b: usize) -> bool {
        self.tie(a, b).rivalry >= self.statics.config.conflict.avoid_threshold
    }

    /// Agent `i` speaks to `j`. Rivals refuse; otherwise the listener's regard decides.
    pub(crate) fn chat(&mut self, i: usize, j: usize) {
        let tick = self.state.tick;
        self.state.agents[i].chat_ready_at =
            tick + u64::from(self.statics.config.behavior.chat_cooldown_ticks);
        let heard = *self.tie(j, i);
        let own = *self.tie(i, j);
        let ext_i = PROFILES[self.statics.agent_profiles[i]].extroversion;
        let ext_j = PROFILES[self.statics.agent_profiles[j]].extroversion;
        let listener_worst = self.state.agents[j]
            .needs
            .iter()
            .copied()
            .fold(1.0f32, f32::min);
        let p_ok = (0.6 + 0.25 * heard.trust + 0.1 * heard.familiarity + 0.2 * ext_j
            - 0.6 * heard.rivalry
            - if listener_worst < 0.15 { 0.3 } else { 0.0 })
        .clamp(0.05, 0.95);
        let u = self.state.rng_social.next_f64() as f32;
        let refused = self.avoids(i, j) || self.avoids(j, i);
        if !refused && u < p_ok {
            let noise = self.state.rng_social.next_f64() as f32 - 0.5;
            let q = (0.5 + 0.3 * ext_i + 0.2 * own.trust + 0.1 * own.familiarity
                - 0.2 * own.rivalry
                + 0.2 * noise)
                .clamp(0.1, 1.0);
            self.update_pair(i, j, 0.05 * q, 0.10 * q, 0.0, Cause::ChatSuccess);
            self.state.agents[i].flags.chat_quality += q;
            self.state.agents[j].flags.chat_quality += q;
            self.state.agents[i].flags.chat_partner = j as i32;
            self.state.agents[j].flags.chat_partner = i as i32;
            self.state.agents[i].counters.chats_ok += 1;
            self.emit(EventKind::ChatSuccess, i as i32, j as i32, NONE, q);
        } else {
            self.update_pair(i, j, 0.0, -0.05, 0.05, Cause::ChatFailure);
            self.state.agents[i].flags.chat_failed_speaker = true;
            self.state.agents[j].flags.chat_failed_listener = true;
            self.state.agents[i].counters.chats_failed += 1;
            self.emit(EventKind::ChatFailure, i as i32, j as i32, NONE, 0.0);
        }
    }

    /// One queue conflict: rivalry grows once, in both directions, and one event is recorded.
    pub(crate) fn queue_conflict(&mut self, a: usize, b: usize, obj: usize, intensity: f32) {
        let c = &self.statics.config.conflict;
        let intensity = intensity.clamp(c.intensity_min, c.intensity_max);
        let inc = c.increment_per_conflict * intensity;
        self.update_pair(a, b, 0.0, 0.0, inc, Cause::Conflict);
        self.emit(
            EventKind::QueueConflict,
            a as i32,
            b as i32,
            obj as i32,
            intensity,
        );
    }

    /// Strongest rivalry held by agent `i`, and how many others it avoids.
    pub fn rivalry_summary(&self, i: usize) -> (f32, u32) {
        let n = self.n_agents();
        let thr = self.statics.config.conflict.avoid_threshold;
        let row = &self.state.ties[i * n..(i + 1) * n];
        let max = row
            .iter()
            .filter(|t| t.present)
            .map(|t| t.rivalry)
            .fold(0.0, f32::max);
        let count = row.iter().filter(|t| t.present && t.rivalry >= thr).count() as u32;
        (max, count)
    }
}

fn strength(t: &Tie) -> f32 {
    t.trust.abs() + 0.5 * t.familiarity.abs() + t.rivalry
}

#[inline]
fn toward_zero(v: f32, step: f32) -> f32 {
    if v > 0.0 {
        (v - step).max(0.0)
    } else if v < 0.0 {
        (v + step).min(0.0)
    } else {
        0.0
    }
}
