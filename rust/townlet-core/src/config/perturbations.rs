//! Perturbations: price spikes, blackouts, water outages and arranged meetings, and how often
//! they may fire.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PerturbationsSection {
    pub max_concurrent_events: u32,
    pub global_cooldown_ticks: u32,
    pub per_agent_cooldown_ticks: u32,
    pub window_ticks: u32,
    pub max_events_per_window: u32,
    pub events: BTreeMap<String, PerturbationSpec>,
}

impl Default for PerturbationsSection {
    fn default() -> Self {
        Self {
            max_concurrent_events: 1,
            global_cooldown_ticks: 0,
            per_agent_cooldown_ticks: 0,
            window_ticks: 1440,
            max_events_per_window: 1,
            events: BTreeMap::new(),
        }
    }
}

/// Common scheduling fields of every perturbation spec.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Schedule {
    #[serde(default)]
    pub prob_per_day: f64,
    #[serde(default)]
    pub cooldown_ticks: u32,
    pub duration: [u32; 2],
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PerturbationSpec {
    PriceSpike {
        #[serde(default)]
        prob_per_day: f64,
        #[serde(default)]
        cooldown_ticks: u32,
        duration: [u32; 2],
        magnitude: [f64; 2],
        #[serde(default)]
        targets: Vec<String>,
    },
    Blackout {
        #[serde(default)]
        prob_per_day: f64,
        #[serde(default)]
        cooldown_ticks: u32,
        duration: [u32; 2],
    },
    Outage {
        #[serde(default)]
        prob_per_day: f64,
        #[serde(default)]
        cooldown_ticks: u32,
        duration: [u32; 2],
    },
    ArrangedMeet {
        #[serde(default)]
        prob_per_day: f64,
        #[serde(default)]
        cooldown_ticks: u32,
        duration: [u32; 2],
        #[serde(default)]
        target: MeetTarget,
        location: String,
        #[serde(default = "PerturbationSpec::default_max_participants")]
        max_participants: u32,
    },
}

impl PerturbationSpec {
    fn default_max_participants() -> u32 {
        2
    }

    pub fn schedule(&self) -> Schedule {
        match self {
            PerturbationSpec::PriceSpike {
                prob_per_day,
                cooldown_ticks,
                duration,
                ..
            }
            | PerturbationSpec::Blackout {
                prob_per_day,
                cooldown_ticks,
                duration,
            }
            | PerturbationSpec::Outage {
                prob_per_day,
                cooldown_ticks,
                duration,
            }
            | PerturbationSpec::ArrangedMeet {
                prob_per_day,
                cooldown_ticks,
                duration,
                ..
            } => Schedule {
                prob_per_day: *prob_per_day,
                cooldown_ticks: *cooldown_ticks,
                duration: *duration,
            },
        }
    }
    pub fn kind_name(&self) -> &'static str {
        match self {
            PerturbationSpec::PriceSpike { .. } => "price_spike",
            PerturbationSpec::Blackout { .. } => "blackout",
            PerturbationSpec::Outage { .. } => "outage",
            PerturbationSpec::ArrangedMeet { .. } => "arranged_meet",
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum MeetTarget {
    #[default]
    TopRivals,
    Random,
}
