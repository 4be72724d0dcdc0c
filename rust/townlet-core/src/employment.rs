//! Daily jobs: shift windows repeat every day (tick of day), with arrival buffer, grace, late,
//! absent and departed-early states, wages per tick while present, withheld wages, one-off
//! penalties (never charged during grace), attendance over a window, coworker effects, and the
//! exit queue with its daily cap, review window and manual approve/defer.

use crate::events::EventKind;
use crate::social::Cause;
use crate::state::{Employment, ShiftState, TermReason};
use crate::world::World;

impl World {
    /// Is agent `i` within range of its job site?
    pub fn at_work(&self, i: usize) -> bool {
        let Some(job) = self.s.agent_jobs[i] else {
            return false;
        };
        self.st.agents[i].alive && self.s.dist_at(self.s.jobs[job].site, self.st.agents[i].pos) == 0
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
        let job = self.s.agent_jobs[i];
        (0..self.n_agents())
            .filter(|&j| j != i && self.s.agent_jobs[j] == job && self.at_work(j))
            .collect()
    }

    pub(crate) fn employment_tick(&mut self) {
        let tod = self.tick_of_day();
        let day = self.day();
        let tick = self.st.tick;
        let s = std::sync::Arc::clone(&self.s);
        let cfg = &s.cfg.employment;
        for i in 0..self.n_agents() {
            let Some(job) = self.s.agent_jobs[i] else {
                continue;
            };
            if !self.st.agents[i].alive {
                continue;
            }
            let j = &s.jobs[job];
            let present = self.at_work(i);
            if tod >= j.start && tod < j.end {
                if self.st.agents[i].emp.shift_day != day {
                    // A shift that never left its window (all day long) ends as the next begins.
                    if !self.st.agents[i].emp.finalized {
                        self.finalize_shift(i, j.end - j.start, j.site);
                    }
                    // A new shift: per-shift fields start afresh.
                    let e = &mut self.st.agents[i].emp;
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
                    self.emit(EventKind::ShiftStart, i as i32, -1, j.site as i32, 0.0);
                }
                let elapsed = tod - j.start;
                if present {
                    let a = &mut self.st.agents[i];
                    a.emp.last_seen = tick;
                    if !a.emp.arrived {
                        a.emp.arrived = true;
                        if elapsed < cfg.grace_ticks {
                            a.emp.arrived_on_time = true;
                            a.emp.state = ShiftState::OnTime;
                            a.flags.punctual = true;
                            self.emit(EventKind::ShiftOnTime, i as i32, -1, j.site as i32, 0.0);
                        } else if !a.emp.late_charged {
                            // Arriving exactly as grace ends: late, and charged like any late start.
                            a.emp.state = ShiftState::Late;
                            a.emp.late_charged = true;
                            a.emp.lateness_counter += 1;
                            self.charge_penalty(i, j.lateness_penalty);
                            self.emit(
                                EventKind::ShiftLateStart,
                                i as i32,
                                -1,
                                j.site as i32,
                                j.lateness_penalty as f32,
                            );
                        } else {
                            a.emp.state = ShiftState::Late;
                        }
                    } else if a.emp.state == ShiftState::Departed {
                        a.emp.state = ShiftState::Late;
                    }
                    let a = &mut self.st.agents[i];
                    a.wallet += j.wage;
                    a.flags.wage += j.wage;
                    a.emp.wages_earned += j.wage;
                    a.emp.present_ticks += 1;
                    self.st.stats.wages_paid += j.wage;
                } else {
                    self.st.agents[i].emp.wages_withheld += j.wage;
                    let e = &self.st.agents[i].emp;
                    let (arrived, late_charged, absent_charged, departed, last_seen) = (
                        e.arrived,
                        e.late_charged,
                        e.absent_charged,
                        e.departed,
                        e.last_seen,
                    );
                    if !arrived {
                        if elapsed >= cfg.grace_ticks && !late_charged {
                            self.st.agents[i].emp.late_charged = true;
                            self.st.agents[i].emp.state = ShiftState::Late;
                            self.st.agents[i].emp.lateness_counter += 1;
                            self.charge_penalty(i, j.lateness_penalty);
                            self.emit(
                                EventKind::ShiftLateStart,
                                i as i32,
                                -1,
                                j.site as i32,
                                j.lateness_penalty as f32,
                            );
                            if self.coworker_effect(i, j.site, EventKind::EmploymentHelpedWhenLate)
                            {
                                self.st.agents[i].emp.helped = true;
                            }
                        }
                        if elapsed >= cfg.absent_cutoff && !absent_charged {
                            self.st.agents[i].emp.absent_charged = true;
                            self.st.agents[i].emp.state = ShiftState::Absent;
                            self.st.agents[i].emp.absences.push(day);
                            self.charge_penalty(i, cfg.absence_penalty);
                            self.emit(
                                EventKind::ShiftAbsent,
                                i as i32,
                                -1,
                                j.site as i32,
                                cfg.absence_penalty as f32,
                            );
                            if self.coworker_effect(i, j.site, EventKind::EmploymentTookMyShift) {
                                self.st.agents[i].emp.taken = true;
                            }
                        }
                        if self.st.agents[i].emp.state == ShiftState::Late {
                            self.st.agents[i].emp.late_ticks_today += 1;
                            self.charge_penalty(i, cfg.late_tick_penalty);
                        }
                    } else if !departed
                        && tick.saturating_sub(last_seen) > u64::from(cfg.absence_slack)
                    {
                        self.st.agents[i].emp.departed = true;
                        self.st.agents[i].emp.state = ShiftState::Departed;
                        self.emit(
                            EventKind::ShiftDepartedEarly,
                            i as i32,
                            -1,
                            j.site as i32,
                            0.0,
                        );
                    }
                }
            } else if !self.st.agents[i].emp.finalized
                && (self.st.agents[i].emp.shift_day < day || tod >= j.end)
            {
                // `shift_day < day`: a shift that ended at midnight is finalised the next day.
                self.finalize_shift(i, j.end - j.start, j.site);
            } else if tod >= j.start.saturating_sub(cfg.arrival_buffer) && tod < j.start {
                self.st.agents[i].emp.state = ShiftState::PreShift;
            } else if self.st.agents[i].emp.state != ShiftState::PostShift || tod < j.start {
                self.st.agents[i].emp.state = ShiftState::Idle;
            }
        }
    }

    fn finalize_shift(&mut self, i: usize, scheduled: u32, site: usize) {
        let window = self.s.cfg.employment.attendance_window as usize;
        let e = &mut self.st.agents[i].emp;
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
        self.st.stats.shifts_scheduled += 1;
        if on_time {
            self.st.stats.shifts_on_time += 1;
        }
        self.emit(
            EventKind::ShiftEnd,
            i as i32,
            -1,
            site as i32,
            if on_time { 1.0 } else { 0.0 },
        );
    }

    /// Exit queue, run during lifecycle evaluation: enqueue chronic absentees, process manual
    /// approvals at once, and exit entries whose review window has passed (within the daily cap).
    pub(crate) fn exit_queue_tick(&mut self) {
        let cfg = self.s.cfg.employment.clone();
        if !cfg.enforce_job_loop {
            return;
        }
        let day = self.day();
        let tick = self.st.tick;
        if self.st.exits.day != day as u64 {
            self.st.exits.day = day as u64;
            self.st.exits.exits_today = 0;
        }
        for i in 0..self.n_agents() {
            let a = &mut self.st.agents[i];
            if !a.alive || self.s.agent_jobs[i].is_none() || a.emp.exit_pending {
                continue;
            }
            a.emp.absences.retain(|&d| d > day - 7);
            if a.emp.absences.len() as u32 >= cfg.max_absent_shifts {
                a.emp.exit_pending = true;
                self.st.exits.pending.push((i as u32, tick));
                let over = self.st.exits.pending.len() > cfg.exit_queue_limit as usize;
                self.emit(EventKind::EmploymentExitPending, i as i32, -1, -1, 0.0);
                if over {
                    self.emit(
                        EventKind::EmploymentExitQueueOverflow,
                        i as i32,
                        -1,
                        -1,
                        self.st.exits.pending.len() as f32,
                    );
                }
            }
        }
        let manual = std::mem::take(&mut self.st.exits.manual);
        for i in manual {
            self.process_exit(i as usize, 1.0);
        }
        let cap = cfg.daily_exit_cap;
        let due: Vec<u32> = self
            .st
            .exits
            .pending
            .iter()
            .filter(|(_, since)| tick - since >= u64::from(cfg.exit_review_window))
            .map(|(i, _)| *i)
            .collect();
        for i in due {
            if cap > 0 && self.st.exits.exits_today >= cap {
                break;
            }
            self.process_exit(i as usize, 0.0);
        }
    }

    fn process_exit(&mut self, i: usize, manual: f32) {
        self.st.exits.pending.retain(|(a, _)| *a as usize != i);
        if !self.st.agents[i].alive {
            return;
        }
        self.st.exits.exits_today += 1;
        self.emit(EventKind::EmploymentExitProcessed, i as i32, -1, -1, manual);
        self.terminate(i, TermReason::Eviction);
    }

    /// Console: request an immediate exit (processed at the next lifecycle evaluation).
    pub fn employment_exit_approve(&mut self, i: usize) -> bool {
        if !self.st.agents[i].alive || self.s.agent_jobs[i].is_none() {
            return false;
        }
        if !self.st.exits.manual.contains(&(i as u32)) {
            self.st.exits.manual.push(i as u32);
        }
        self.emit(
            EventKind::EmploymentExitManualRequest,
            i as i32,
            -1,
            -1,
            0.0,
        );
        true
    }

    /// Console: take an agent out of the exit queue and forgive its recorded absences.
    pub fn employment_exit_defer(&mut self, i: usize) -> bool {
        let was = self.st.exits.pending.iter().any(|(a, _)| *a as usize == i)
            || self.st.exits.manual.contains(&(i as u32));
        self.st.exits.pending.retain(|(a, _)| *a as usize != i);
        self.st.exits.manual.retain(|a| *a as usize != i);
        let e = &mut self.st.agents[i].emp;
        e.exit_pending = false;
        e.absences.clear();
        if was {
            self.emit(EventKind::EmploymentExitDeferred, i as i32, -1, -1, 0.0);
        }
        was
    }

    pub(crate) fn reset_employment(&mut self, i: usize) {
        self.st.agents[i].emp = Employment::new();
    }
}
