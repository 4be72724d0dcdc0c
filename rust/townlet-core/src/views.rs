//! Read-only views of one town for callers outside the systems (the Python binding, tools): the
//! names and "none" conventions of the world, decided once here rather than in each caller.

use crate::state::{Phase, ShiftState};
use crate::world::World;

/// One agent's employment as callers see it.
#[derive(Debug, Clone, PartialEq)]
pub struct EmploymentView<'a> {
    /// The job's name; `None` for an agent without a job.
    pub job: Option<&'a str>,
    /// `Idle` for an agent without a job.
    pub state: ShiftState,
    pub lateness_counter: u32,
    pub attendance_ratio: f32,
    pub wages_earned: f64,
    pub wages_withheld: f64,
}

impl World {
    /// The affordance agent `agent` is pursuing (`None` when idle) and where it is in that option.
    pub fn activity_view(&self, agent: usize) -> (Option<&str>, Phase) {
        let act = &self.state.agents[agent].activity;
        let affordance = usize::try_from(act.affordance)
            .ok()
            .map(|index| self.statics.affordances[index].id.as_str());
        (affordance, act.phase)
    }

    /// Agent `agent`'s job, shift state and employment counters.
    pub fn employment_view(&self, agent: usize) -> EmploymentView<'_> {
        let emp = &self.state.agents[agent].employment;
        let job = usize::try_from(self.statics.agent_jobs[agent])
            .ok()
            .map(|index| self.statics.jobs[index].name.as_str());
        EmploymentView {
            job,
            state: if job.is_some() {
                emp.state
            } else {
                ShiftState::Idle
            },
            lateness_counter: emp.lateness_counter,
            attendance_ratio: emp.attendance_ratio,
            wages_earned: emp.wages_earned,
            wages_withheld: emp.wages_withheld,
        }
    }

    /// Whether the power is on (no blackout running).
    pub fn power_on(&self) -> bool {
        self.state.power_out == 0
    }

    /// Whether the water is on (no outage running).
    pub fn water_on(&self) -> bool {
        self.state.water_out == 0
    }
}
