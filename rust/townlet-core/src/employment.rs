//! Daily jobs: shift windows repeat every day (tick of day), with arrival buffer, grace, late,
//! absent and departed-early states, wages per tick while present, withheld wages, one-off
//! penalties (never charged during grace), attendance over a window, coworker effects, and the
//! exit queue with its daily cap, review window and manual approve/defer.

use crate::events::EventKind;
use crate::ids::{NONE, NO_DAY};
use crate::social::Cause;
use crate::state::{Employment, ShiftState, TermReason};
use crate::world::World;

impl World {
    /// Is agent `i` within range of its job site?
    pub fn at_work(&self, i: usize) -> bool {
        let job = self.statics.agent_jobs[i];
        job >= 0
            && self.state.agents[i].alive
            && self.statics.dist_at(
                self.statics.jobs[job as usize].site,
                self.state.agents[i].pos,
            ) == 0
    }

    /// Late help or shift takeover: one event and one relationship update per coworker present.
    fn coworker_effect(&mut self, i: usize, site: usize, kind: EventKind) -> bool {
        let (cause, trust, fam, riv) = match kind {
            EventKind::EmploymentHelpedWhenLate => (Cause::LateHelp, 0.2, 0.1, -0.1),
            _ => (Cause::ShiftTaken, -0.1, 0.0, 0.3),
        };
        let coworkers = self.coworkers_present(i);
        for &c in &coworkers {
            self.emit(kind, i as i32, c as i32, site as i32, 0.0);
            self.update_pair(i, c, trust, fam, riv, cause);
        }
        !coworkers.is_empty()
    }

    fn coworkers_present(&self, i: usize) -> Vec<usize> {
        let job = self.statics.agent_jobs[i];
        (0..self.n_agents())
            .filter(|&j| j != i && self.statics.agent_jobs[j] == job && self.at_work(j))
            .collect()
    }

    pub(crate) fn employment_tick(&mut self) {
        let tod = self.tick_of_day();
        let day = self.day();
        let tick = self.state.tick;
        let s = std::sync::Arc::clone(&self.statics);
        let cfg = &s.config.employment;
        for i in 0..self.n_agents() {
            let job = self.statics.agent_jobs[i];
            if job < 0 {
                continue;
            }
            let j = &s.jobs[job as usize];
            if !self.state.agents[i].alive {
                // An empty slot misses its shift: counted, as absent, when the shift begins.
                let e = &mut self.state.agents[i].employment;
                if tod >= j.start && tod < j.end && e.shift_day != day {
                    e.shift_day = day;
                    e.finalized = true;
                    self.state.stats.shifts_scheduled += 1;
                }
                continue;
            }
            let present = self.at_work(i);
            if tod >= j.start && tod < j.end {
                if self.state.agents[i].employment.shift_day != day {
                    // A shift that never left its window (all day long) ends as the next begins.
                    if !self.state.agents[i].employment.finalized {
                        self.finalize_shift(i, j.end - j.start, j.site);
                    }
                    // A new shift: per-shift fields start afresh.
                    let e = &mut self.state.agents[i].employment;
                    e.shift_day = day;
                    e.finalized = false;
                    e.arrived = false;
                    e.arrived_on_time = false;
                    e.present_ticks = 0;
                    e.late_charged = false;
                    e.absent_charged = false;
                    e.departed = false;
                    e.helped = false;
                    e.taken = false;
                    e.late_ticks_today = 0;
                    e.state = ShiftState::OnTime;
                    self.emit(EventKind::ShiftStart, i as i32, NONE, j.site as i32, 0.0);
                }
                let elapsed = tod - j.start;
                if present {
                    let a = &mut self.state.agents[i];
                    a.employment.last_seen = tick;
                    if !a.employment.arrived {
                        a.employment.arrived = true;
                        if elapsed < cfg.grace_ticks {
                            a.employment.arrived_on_time = true;
                            a.employment.state = ShiftState::OnTime;
                            a.flags.punctual = true;
                            self.emit(EventKind::ShiftOnTime, i as i32, NONE, j.site as i32, 0.0);
                        } else if !a.employment.late_charged {
                            // Arriving exactly as grace ends: late, and charged like any late start.
                            a.employment.state = ShiftState::Late;
                            a.employment.late_charged = true;
                            a.employment.lateness_counter += 1;
                            self.charge_penalty(i, j.lateness_penalty);
                            self.emit(
                                EventKind::ShiftLateStart,
                                i as i32,
                                NONE,
                                j.site as i32,
                                j.lateness_penalty as f32,
                            );
                        } else {
                            a.employment.state = ShiftState::Late;
                        }
                    } else if a.employment.state == ShiftState::Departed {
                        a.employment.state = ShiftState::Late;
                    }
                    let a = &mut self.state.agents[i];
                    a.wallet += j.wage;
                    a.flags.wage += j.wage;
                    a.employment.wages_earned += j.wage;
                    a.employment.present_ticks += 1;
                    self.state.stats.wages_paid += j.wage;
                } else {
                    self.state.agents[i].employment.wages_withheld += j.wage;
                    let e = &self.state.agents[i].employment;
                    let (arrived, late_charged, absent_charged, departed, last_seen) = (
                        e.arrived,
                        e.late_charged,
                        e.absent_charged,
                        e.departed,
                        e.last_seen,
                    );
                    if !arrived {
                        if elapsed >= cfg.grace_ticks && !late_charged {
                            self.state.agents[i].employment.late_charged = true;
                            self.state.agents[i].employment.state = ShiftState::Late;
                            self.state.agents[i].employment.lateness_counter += 1;
                            self.charge_penalty(i, j.lateness_penalty);
                            self.emit(
                                EventKind::ShiftLateStart,
                                i as i32,
                                NONE,
                                j.site as i32,
                                j.lateness_penalty as f32,
                            );
                            if self.coworker_effect(i, j.site, EventKind::EmploymentHelpedWhenLate)
                            {
                                self.state.agents[i].employment.helped = true;
                            }
                        }
                        if elapsed >= cfg.absent_cutoff && !absent_charged {
                            self.state.agents[i].employment.absent_charged = true;
                            self.state.agents[i].employment.state = ShiftState::Absent;
                            self.state.agents[i].employment.absences.push(day);
                            self.charge_penalty(i, cfg.absence_penalty);
                            self.emit(
                                EventKind::ShiftAbsent,
                                i as i32,
                                NONE,
                                j.site as i32,
                                cfg.absence_penalty as f32,
                            );
                            if self.coworker_effect(i, j.site, EventKind::EmploymentTookMyShift) {
                                self.state.agents[i].employment.taken = true;
                            }
                        }
                        if self.state.agents[i].employment.state == ShiftState::Late {
                            self.state.agents[i].employment.late_ticks_today += 1;
                            self.charge_penalty(i, cfg.late_tick_penalty);
                        }
                    } else if !departed
                        && tick.saturating_sub(last_seen) > u64::from(cfg.absence_slack)
                    {
                        self.state.agents[i].employment.departed = true;
                        self.state.agents[i].employment.state = ShiftState::Departed;
                        self.emit(
                            EventKind::ShiftDepartedEarly,
                            i as i32,
                            NONE,
                            j.site as i32,
                            0.0,
                        );
                    }
                }
            } else if !self.state.agents[i].employment.finalized
                && (self.state.agents[i].employment.shift_day < day || tod >= j.end)
            {
                // `shift_day < day`: a shift that ended at midnight is finalised the next day.
                self.finalize_shift(i, j.end - j.start, j.site);
            } else if tod >= j.start.saturating_sub(cfg.arrival_buffer) && tod < j.start {
                self.state.agents[i].employment.state = ShiftState::PreShift;
            } else if self.state.agents[i].employment.state != ShiftState::PostShift
                || tod < j.start
            {
                self.state.agents[i].employment.state = ShiftState::Idle;
            }
        }
    }

    fn finalize_shift(&mut self, i: usize, scheduled: u32, site: usize) {
        let window = self.statics.config.employment.attendance_window as usize;
        let e = &mut self.state.agents[i].employment;
        e.finalized = true;
        e.state = ShiftState::PostShift;
        e.attendance
            .push(e.present_ticks as f32 / scheduled.max(1) as f32);
        if e.attendance.len() > window {
            let drop = e.attendance.len() - window;
            e.attendance.drain(..drop);
        }
        e.attendance_ratio = e.attendance.iter().sum::<f32>() / e.attendance.len() as f32;
        let on_time = e.arrived_on_time;
        self.state.stats.shifts_scheduled += 1;
        if on_time {
            self.state.stats.shifts_on_time += 1;
        }
        self.emit(
            EventKind::ShiftEnd,
            i as i32,
            NONE,
            site as i32,
            if on_time { 1.0 } else { 0.0 },
        );
    }

    /// Exit queue, run during lifecycle evaluation: enqueue chronic absentees, process manual
    /// approvals at once, and exit entries whose review window has passed (within the daily cap).
    pub(crate) fn exit_queue_tick(&mut self) {
        let cfg = self.statics.config.employment.clone();
        if !cfg.enforce_job_loop {
            return;
        }
        let day = self.day();
        let tick = self.state.tick;
        if self.state.exits.day != day as u64 {
            self.state.exits.day = day as u64;
            self.state.exits.exits_today = 0;
        }
        for i in 0..self.n_agents() {
            let a = &mut self.state.agents[i];
            if !a.alive || self.statics.agent_jobs[i] < 0 || a.employment.exit_pending {
                continue;
            }
            a.employment.absences.retain(|&d| d > day - 7);
            if a.employment.absences.len() as u32 >= cfg.max_absent_shifts {
                a.employment.exit_pending = true;
                self.state.exits.pending.push((i as u32, tick));
                let over = self.state.exits.pending.len() > cfg.exit_queue_limit as usize;
                self.emit(EventKind::EmploymentExitPending, i as i32, NONE, NONE, 0.0);
                if over {
                    self.emit(
                        EventKind::EmploymentExitQueueOverflow,
                        i as i32,
                        NONE,
                        NONE,
                        self.state.exits.pending.len() as f32,
                    );
                }
            }
        }
        let manual = std::mem::take(&mut self.state.exits.manual);
        for i in manual {
            self.process_exit(i as usize, 1.0);
        }
        let cap = cfg.daily_exit_cap;
        let due: Vec<u32> = self
            .state
            .exits
            .pending
            .iter()
            .filter(|(_, since)| tick - since >= u64::from(cfg.exit_review_window))
            .map(|(i, _)| *i)
            .collect();
        for i in due {
            if cap > 0 && self.state.exits.exits_today >= cap {
                break;
            }
            self.process_exit(i as usize, 0.0);
        }
    }

    fn process_exit(&mut self, i: usize, manual: f32) {
        self.state.exits.pending.retain(|(a, _)| *a as usize != i);
        if !self.state.agents[i].alive {
            return;
        }
        self.state.exits.exits_today += 1;
        self.emit(
            EventKind::EmploymentExitProcessed,
            i as i32,
            NONE,
            NONE,
            manual,
        );
        self.terminate(i, TermReason::Eviction);
    }

    /// Console: request an immediate exit (processed at the next lifecycle evaluation).
    pub fn employment_exit_approve(&mut self, i: usize) -> bool {
        if !self.state.agents[i].alive || self.statics.agent_jobs[i] < 0 {
            return false;
        }
        if !self.state.exits.manual.contains(&(i as u32)) {
            self.state.exits.manual.push(i as u32);
        }
        self.emit(
            EventKind::EmploymentExitManualRequest,
            i as i32,
            NONE,
            NONE,
            0.0,
        );
        true
    }

    /// Console: take an agent out of the exit queue and forgive its recorded absences.
    pub fn employment_exit_defer(&mut self, i: usize) -> bool {
        let was = self
            .state
            .exits
            .pending
            .iter()
            .any(|(a, _)| *a as usize == i)
            || self.state.exits.manual.contains(&(i as u32));
        self.state.exits.pending.retain(|(a, _)| *a as usize != i);
        self.state.exits.manual.retain(|a| *a as usize != i);
        let e = &mut self.state.agents[i].employment;
        e.exit_pending = false;
        e.absences.clear();
        if was {
            self.emit(EventKind::EmploymentExitDeferred, i as i32, NONE, NONE, 0.0);
        }
        was
    }

    /// A removed agent's employment starts afresh; a shift it had begun and not finished counts, as
    /// absent, and stays counted (the slot's successor does not start that day's shift anew).
    pub(crate) fn reset_employment(&mut self, i: usize) {
        let open = {
            let e = &self.state.agents[i].employment;
            (self.statics.agent_jobs[i] >= 0 && !e.finalized && e.shift_day != NO_DAY)
                .then_some(e.shift_day)
        };
        let mut fresh = Employment::new();
        if let Some(day) = open {
            self.state.stats.shifts_scheduled += 1;
            fresh.shift_day = day;
            fresh.finalized = true;
        }
        self.state.agents[i].employment = fresh;
    }
}
