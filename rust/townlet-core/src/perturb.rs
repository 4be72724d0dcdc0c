//! The perturbation scheduler (prices themselves are in `economy`): price spikes,
//! blackouts, water outages and arranged meets, drawn per tick with probability per day, with
//! cooldowns, a concurrency cap and a per-window cap; triggerable and cancellable by console.

use crate::config::{MeetTarget, PerturbationSpec};
use crate::events::EventKind;
use crate::ids::NONE;
use crate::state::{ActivePerturbation, Activity, PendingPerturbation, Phase};
use crate::world::World;

impl World {
    pub(crate) fn perturbations_tick(&mut self) {
        let tick = self.state.tick;
        let s = std::sync::Arc::clone(&self.statics);
        let cfg = &s.config.perturbations;
        if tick >= self.state.perturb.window_start + u64::from(cfg.window_ticks) {
            self.state.perturb.window_start = tick - tick % u64::from(cfg.window_ticks);
            self.state
                .perturb
                .window_counts
                .iter_mut()
                .for_each(|c| *c = 0);
        }
        let ended: Vec<u32> = self
            .state
            .perturb
            .active
            .iter()
            .filter(|p| p.ends <= tick)
            .map(|p| p.id)
            .collect();
        for id in ended {
            self.end_perturbation(id, EventKind::PerturbationEnded);
        }
        let due: Vec<PendingPerturbation> = self
            .state
            .perturb
            .pending
            .iter()
            .filter(|p| p.starts <= tick)
            .cloned()
            .collect();
        self.state.perturb.pending.retain(|p| p.starts > tick);
        for p in due {
            self.start_perturbation(p.id, p.spec, p.duration, p.magnitude);
        }
        if tick < self.state.perturb.global_ready_at {
            return;
        }
        let tpd = f64::from(self.statics.config.world.ticks_per_day);
        for s in 0..self.statics.perturbations.len() {
            if self.state.perturb.active.len() >= cfg.max_concurrent_events as usize {
                break;
            }
            let sched = self.statics.perturbations[s].spec.schedule();
            if sched.prob_per_day <= 0.0 {
                continue;
            }
            let u = self.state.rng_perturb.next_f64();
            if tick < self.state.perturb.spec_ready_at[s]
                || self.state.perturb.window_counts[s] >= cfg.max_events_per_window
            {
                continue;
            }
            if u < sched.prob_per_day / tpd {
                let id = self.state.perturb.next_id;
                self.state.perturb.next_id += 1;
                self.state.perturb.window_counts[s] += 1;
                self.state.perturb.global_ready_at = tick + u64::from(cfg.global_cooldown_ticks);
                self.start_perturbation(id, s, None, None);
                break;
            }
        }
    }

    fn start_perturbation(
        &mut self,
        id: u32,
        spec: usize,
        duration: Option<u32>,
        magnitude: Option<f64>,
    ) {
        let tick = self.state.tick;
        let info = self.statics.perturbations[spec].clone();
        let sched = info.spec.schedule();
        let duration = duration
            .unwrap_or_else(|| {
                self.state
                    .rng_perturb
                    .range_u32(sched.duration[0], sched.duration[1])
            })
            .max(1);
        self.state.perturb.spec_ready_at[spec] = tick + u64::from(sched.cooldown_ticks);
        let mut active = ActivePerturbation {
            id,
            spec,
            started: tick,
            ends: tick + u64::from(duration),
            magnitude: 1.0,
            participants: Vec::new(),
        };
        self.emit(EventKind::PerturbationStarted, NONE, NONE, NONE, id as f32);
        match &info.spec {
            PerturbationSpec::PriceSpike {
                magnitude: range, ..
            } => {
                active.magnitude = magnitude
                    .unwrap_or_else(|| self.state.rng_perturb.range_f64(range[0], range[1]));
                let m = active.magnitude;
                self.state.perturb.active.push(active);
                self.emit(
                    EventKind::PerturbationPriceSpike,
                    NONE,
                    NONE,
                    NONE,
                    m as f32,
                );
                self.recompute_prices();
                return;
            }
            PerturbationSpec::Blackout { .. } => {
                self.state.power_out += 1;
                self.emit(
                    EventKind::PerturbationBlackout,
                    NONE,
                    NONE,
                    NONE,
                    duration as f32,
                );
                self.fail_utility_users(true);
            }
            PerturbationSpec::Outage { .. } => {
                self.state.water_out += 1;
                self.emit(
                    EventKind::PerturbationOutage,
                    NONE,
                    NONE,
                    NONE,
                    duration as f32,
                );
                self.fail_utility_users(false);
            }
            PerturbationSpec::ArrangedMeet {
                target,
                max_participants,
                ..
            } => {
                active.participants = self.meet_participants(*target, *max_participants as usize);
                self.emit(
                    EventKind::PerturbationArrangedMeet,
                    NONE,
                    NONE,
                    NONE,
                    active.participants.len() as f32,
                );
                self.relocate_for_meet(&info.location_objects, &active.participants);
            }
        }
        self.state.perturb.active.push(active);
    }

    fn fail_utility_users(&mut self, power: bool) {
        for i in 0..self.n_agents() {
            let a = &self.state.agents[i];
            if !a.alive || a.activity.phase != Phase::Running {
                continue;
            }
            let af = &self.statics.affordances[a.activity.affordance as usize];
            if (power && af.needs_power) || (!power && af.needs_water) {
                self.utility_fail(i);
            }
        }
    }

    /// The strongest rival pair (honouring `top_rivals`), else a random draw.
    fn meet_participants(&mut self, target: MeetTarget, max: usize) -> Vec<u32> {
        let tick = self.state.tick;
        let n = self.n_agents();
        let eligible: Vec<usize> = (0..n)
            .filter(|&i| self.state.agents[i].alive && self.state.perturb.agent_ready_at[i] <= tick)
            .collect();
        let mut chosen: Vec<usize> = Vec::new();
        if target == MeetTarget::TopRivals {
            let mut best: Option<(f32, usize, usize)> = None;
            for &a in &eligible {
                for &b in &eligible {
                    let r = self.tie(a, b).rivalry;
                    if a != b && r > 0.0 && best.is_none_or(|(x, _, _)| r > x) {
                        best = Some((r, a, b));
                    }
                }
            }
            if let Some((_, a, b)) = best {
                chosen = vec![a, b];
            }
        }
        if chosen.is_empty() {
            let mut pool = eligible;
            while chosen.len() < max && !pool.is_empty() {
                let k = (self.state.rng_perturb.next_u64() % pool.len() as u64) as usize;
                chosen.push(pool.swap_remove(k));
            }
        }
        let cooldown = u64::from(self.statics.config.perturbations.per_agent_cooldown_ticks);
        for &i in &chosen {
            self.state.perturb.agent_ready_at[i] = tick + cooldown;
        }
        chosen.into_iter().map(|i| i as u32).collect()
    }

    fn relocate_for_meet(&mut self, objects: &[usize], who: &[u32]) {
        let Some(&obj) = objects.first() else { return };
        let pos = self.statics.objects[obj].pos;
        let tiles: Vec<[i32; 2]> = self
            .statics
            .grid
            .neighbours(pos[0], pos[1])
            .map(|(x, y)| [x, y])
            .collect();
        for (k, &i) in who.iter().enumerate() {
            let i = i as usize;
            self.abandon(i);
            self.state.agents[i].activity = Activity::IDLE;
            self.state.agents[i].pos = tiles[k % tiles.len()];
            self.state.agents[i].ctx_reset = true;
            self.emit(
                EventKind::ArrangedMeetRelocated,
                i as i32,
                NONE,
                obj as i32,
                0.0,
            );
        }
    }

    fn end_perturbation(&mut self, id: u32, why: EventKind) {
        let Some(idx) = self.state.perturb.active.iter().position(|p| p.id == id) else {
            return;
        };
        let p = self.state.perturb.active.remove(idx);
        match self.statics.perturbations[p.spec].spec {
            PerturbationSpec::PriceSpike { .. } => self.recompute_prices(),
            PerturbationSpec::Blackout { .. } => self.state.power_out -= 1,
            PerturbationSpec::Outage { .. } => self.state.water_out -= 1,
            PerturbationSpec::ArrangedMeet { .. } => {}
        }
        self.emit(why, NONE, NONE, NONE, id as f32);
    }

    /// Console: schedule perturbation `name` to start in `starts_in` ticks; returns its event id.
    pub fn perturbation_trigger(
        &mut self,
        name: &str,
        starts_in: u32,
        duration: Option<u32>,
        magnitude: Option<f64>,
    ) -> Result<u32, String> {
        self.schedule_perturbation(
            name,
            self.state.tick + u64::from(starts_in),
            duration,
            magnitude,
        )
    }

    /// Schedule perturbation `name` to start at tick `starts`.
    pub(crate) fn schedule_perturbation(
        &mut self,
        name: &str,
        starts: u64,
        duration: Option<u32>,
        magnitude: Option<f64>,
    ) -> Result<u32, String> {
        let spec = self
            .statics
            .perturbations
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| {
                let known: Vec<&str> = self
                    .statics
                    .perturbations
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect();
                format!(
                    "unknown perturbation \"{name}\" (configured: {})",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                )
            })?;
        if duration == Some(0) {
            return Err("duration must be >= 1".into());
        }
        if let Some(m) = magnitude {
            if !(m > 0.0 && m.is_finite()) {
                return Err(format!("magnitude must be a finite number > 0, got {m}"));
            }
        }
        let id = self.state.perturb.next_id;
        self.state.perturb.next_id += 1;
        self.state.perturb.pending.push(PendingPerturbation {
            id,
            spec,
            starts,
            duration,
            magnitude,
        });
        Ok(id)
    }

    /// Console: cancel a pending or active perturbation.
    pub fn perturbation_cancel(&mut self, id: u32) -> bool {
        if self.state.perturb.active.iter().any(|p| p.id == id) {
            self.end_perturbation(id, EventKind::PerturbationCancelled);
            return true;
        }
        let before = self.state.perturb.pending.len();
        self.state.perturb.pending.retain(|p| p.id != id);
        if self.state.perturb.pending.len() != before {
            self.emit(
                EventKind::PerturbationCancelled,
                NONE,
                NONE,
                NONE,
                id as f32,
            );
            return true;
        }
        false
    }
}
