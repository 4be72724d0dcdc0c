//! World events: compact records, counted per tick.

use serde::{Deserialize, Serialize};

macro_rules! event_kinds {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// Every kind of world event. Names follow the prior system's catalogue.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[repr(u16)]
        pub enum EventKind { $($variant),* }

        impl EventKind {
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant),*];
            pub const COUNT: usize = Self::ALL.len();
            pub fn name(self) -> &'static str {
                match self { $(EventKind::$variant => $name),* }
            }
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($name => Some(EventKind::$variant),)* _ => None }
            }
        }
    };
}

event_kinds! {
    AffordanceStart => "affordance_start",
    AffordanceFinish => "affordance_finish",
    AffordanceFail => "affordance_fail",
    AffordancePreconditionFail => "affordance_precondition_fail",
    ShowerComplete => "shower_complete",
    ShowerPowerOutage => "shower_power_outage",
    SleepComplete => "sleep_complete",
    MealCooked => "meal_cooked",
    SharedMeal => "shared_meal",
    QueueInteraction => "queue_interaction",
    QueueConflict => "queue_conflict",
    QueueGhostStep => "queue_ghost_step",
    QueueCooldown => "queue_cooldown",
    ChatSuccess => "chat_success",
    ChatFailure => "chat_failure",
    ShiftStart => "shift_start",
    ShiftOnTime => "shift_on_time",
    ShiftLateStart => "shift_late_start",
    ShiftAbsent => "shift_absent",
    ShiftDepartedEarly => "shift_departed_early",
    ShiftEnd => "shift_end",
    EmploymentHelpedWhenLate => "employment_helped_when_late",
    EmploymentTookMyShift => "employment_took_my_shift",
    EmploymentExitPending => "employment_exit_pending",
    EmploymentExitQueueOverflow => "employment_exit_queue_overflow",
    EmploymentExitManualRequest => "employment_exit_manual_request",
    EmploymentExitDeferred => "employment_exit_deferred",
    EmploymentExitProcessed => "employment_exit_processed",
    AgentNightlyReset => "agent_nightly_reset",
    AgentSpawned => "agent_spawned",
    AgentTeleported => "agent_teleported",
    AgentFaint => "agent_faint",
    AgentRemoved => "agent_removed",
    AgentKilled => "agent_killed",
    AgentRespawn => "agent_respawn",
    RelationshipEvicted => "relationship_evicted",
    StockReplenish => "stock_replenish",
    EconomyPriceUpdate => "economy_price_update",
    PerturbationStarted => "perturbation_started",
    PerturbationEnded => "perturbation_ended",
    PerturbationCancelled => "perturbation_cancelled",
    PerturbationPriceSpike => "perturbation_price_spike",
    PerturbationBlackout => "perturbation_blackout",
    PerturbationOutage => "perturbation_outage",
    PerturbationArrangedMeet => "perturbation_arranged_meet",
    ArrangedMeetRelocated => "arranged_meet_relocated",
    IdentityForcedReuse => "identity_forced_reuse",
}

/// One event: who (`agent`, `other`: agent slots or -1), where (`object`: object index or -1),
/// and one number whose meaning depends on the kind (intensity, quality, amount, ...).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub tick: u64,
    pub kind: EventKind,
    pub agent: i32,
    pub other: i32,
    pub object: i32,
    pub value: f32,
}

/// Per-tick counts, running totals and (when enabled) the event list awaiting a reader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventLog {
    /// Reader-side settings and buffer: not world state, so neither snapshotted nor hashed.
    #[serde(skip)]
    pub record: bool,
    #[serde(skip)]
    pub pending: Vec<Event>,
    pub tick_counts: Vec<u32>,
    /// Sum of this tick's event values per kind.
    #[serde(default)]
    pub tick_values: Vec<f32>,
    pub totals: Vec<u64>,
    /// Sum of the events' values per kind since the start (intensities, chat qualities, ...).
    pub value_totals: Vec<f64>,
    /// Events dropped because the pending list was full (reader too slow).
    pub dropped: u64,
}

/// Pending events kept at most; older reads must drain before more are recorded.
pub const MAX_PENDING_EVENTS: usize = 1 << 20;

impl EventLog {
    pub fn new(record: bool) -> Self {
        Self {
            record,
            pending: Vec::new(),
            tick_counts: vec![0; EventKind::COUNT],
            tick_values: vec![0.0; EventKind::COUNT],
            totals: vec![0; EventKind::COUNT],
            value_totals: vec![0.0; EventKind::COUNT],
            dropped: 0,
        }
    }

    #[inline]
    pub fn begin_tick(&mut self) {
        self.tick_counts.iter_mut().for_each(|c| *c = 0);
        self.tick_values.iter_mut().for_each(|v| *v = 0.0);
    }

    #[inline]
    pub fn emit(
        &mut self,
        tick: u64,
        kind: EventKind,
        agent: i32,
        other: i32,
        object: i32,
        value: f32,
    ) {
        let k = kind as usize;
        self.tick_counts[k] += 1;
        self.tick_values[k] += value;
        self.totals[k] += 1;
        self.value_totals[k] += f64::from(value);
        if self.record {
            if self.pending.len() < MAX_PENDING_EVENTS {
                self.pending.push(Event {
                    tick,
                    kind,
                    agent,
                    other,
                    object,
                    value,
                });
            } else {
                self.dropped += 1;
            }
        }
    }

    pub fn total(&self, kind: EventKind) -> u64 {
        self.totals[kind as usize]
    }

    pub fn drain(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NONE;

    #[test]
    fn names_round_trip() {
        for &k in EventKind::ALL {
            assert_eq!(EventKind::from_name(k.name()), Some(k));
        }
        assert_eq!(EventKind::from_name("nope"), None);
    }

    #[test]
    fn counts_and_records() {
        let mut log = EventLog::new(true);
        log.begin_tick();
        log.emit(3, EventKind::ChatSuccess, 0, 1, NONE, 0.7);
        log.emit(3, EventKind::ChatSuccess, 1, 0, NONE, 0.6);
        assert_eq!(log.tick_counts[EventKind::ChatSuccess as usize], 2);
        log.begin_tick();
        assert_eq!(log.tick_counts[EventKind::ChatSuccess as usize], 0);
        assert_eq!(log.total(EventKind::ChatSuccess), 2);
        assert_eq!(log.drain().len(), 2);
        assert!(log.pending.is_empty());
        let mut quiet = EventLog::new(false);
        quiet.emit(0, EventKind::QueueConflict, 0, 1, 0, 1.5);
        assert!(quiet.pending.is_empty());
        assert_eq!(quiet.total(EventKind::QueueConflict), 1);
    }
}
