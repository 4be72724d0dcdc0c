//! Rewards per agent per tick, with the full breakdown. Computed after lifecycle evaluation, in
//! this order: survival, needs deficit², the self-sufficiency bonus, wage paid this tick,
//! punctuality, employment penalties charged this tick, social (C1 chat, C2 avoidance); their sum
//! is clipped per tick; then the terminal penalty (outside the per-tick clip, so that a faint costs
//! what the config says), the post-death guard, and the per-episode clip.

use crate::config::SocialStage;
use crate::reward_parts::*;
use crate::state::TermReason;
use crate::world::{World, SELF_SUFFICIENT};

pub use crate::reward_parts::{N_REWARD_COMPONENTS, REWARD_COMPONENTS};

impl World {
    pub(crate) fn compute_rewards(&mut self) {
        let r = self.statics.config.rewards.clone();
        let w = r.needs_weights.to_array();
        let tick = self.state.tick;
        for i in 0..self.n_agents() {
            let parts =
                &mut self.reward_parts[i * N_REWARD_COMPONENTS..(i + 1) * N_REWARD_COMPONENTS];
            parts.iter_mut().for_each(|p| *p = 0.0);
            let a = &self.state.agents[i];
            if !a.alive {
                self.rewards[i] = 0.0;
                continue;
            }
            parts[SURVIVAL] = r.survival_tick;
            parts[NEEDS] = -(0..3)
                .map(|k| w[k] * (1.0 - a.needs[k]).powi(2))
                .sum::<f32>();
            if a.needs.iter().all(|&v| v > SELF_SUFFICIENT) {
                parts[SELF_SUFFICIENCY] = r.self_sufficiency_bonus;
            }
            parts[WAGE] = r.wage_weight * a.flags.wage as f32;
            parts[PUNCTUALITY] = if a.flags.punctual {
                r.punctuality_bonus
            } else {
                0.0
            };
            parts[WORK_PENALTY] = -r.wage_weight * a.flags.penalty as f32;
            if r.social.stage != SocialStage::Off {
                let needs_met = a.needs.iter().all(|&v| v >= r.social.c1_min_need);
                if a.flags.chat_quality > 0.0 && needs_met && a.flags.chat_partner >= 0 {
                    let n = self.state.agents.len();
                    let t = &self.state.ties[i * n + a.flags.chat_partner as usize];
                    let c = &r.social;
                    parts[SOCIAL_CHAT] = (c.c1_chat_base
                        + c.c1_coeff_trust * t.trust
                        + c.c1_coeff_fam * t.familiarity)
                        .max(0.0)
                        * a.flags.chat_quality;
                }
                let base = r.social.c1_chat_base;
                parts[SOCIAL_PENALTY] = -(if a.flags.chat_failed_speaker {
                    0.5 * base
                } else {
                    0.0
                }) - (if a.flags.chat_failed_listener {
                    0.25 * base
                } else {
                    0.0
                });
                if r.social.stage == SocialStage::C2 && a.flags.avoided {
                    parts[SOCIAL_AVOIDANCE] = r.social.c2_avoid_conflict;
                }
            }
            parts[TERMINAL] = match a.terminated {
                Some(TermReason::Faint) => r.faint_penalty,
                Some(TermReason::Eviction) => r.eviction_penalty,
                Some(TermReason::Killed) | None => 0.0,
            };
            let shaped: f32 = parts[..TERMINAL].iter().sum();
            let raw = shaped + parts[TERMINAL];
            let guarded = a.terminated.is_some()
                || (a.generation > 1
                    && tick - a.spawned_at < u64::from(r.no_positive_within_death_ticks));
            let mut total = shaped.clamp(-r.clip_per_tick, r.clip_per_tick) + parts[TERMINAL];
            if guarded {
                total = total.min(0.0);
            }
            let ep = a.episode_reward;
            let new_ep = (ep + total).clamp(-r.clip_per_episode, r.clip_per_episode);
            total = new_ep - ep;
            parts[CLIP_ADJUSTMENT] = total - raw;
            parts[TOTAL] = total;
            self.rewards[i] = total;
            self.state.agents[i].episode_reward = new_ep;
        }
    }

    /// Rewards of the last tick, one per agent slot.
    pub fn rewards(&self) -> &[f32] {
        &self.rewards
    }

    /// Reward breakdown of the last tick: agents x REWARD_COMPONENTS, row-major.
    pub fn reward_breakdown(&self) -> &[f32] {
        &self.reward_parts
    }
}
