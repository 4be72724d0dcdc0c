//! World configuration: structs that mirror the YAML sections one to one.
//!
//! Python owns file loading (YAML, include resolution) and hands the world sections over as JSON;
//! `load::parse_world_config` parses it and `validate` checks it, every error carrying the key
//! path of the offending value. These are plain types: they depend on nothing else in the crate.
//!
//! Defaults: a section whose keys are all optional derives them from its `Default` impl
//! (`#[serde(default)]` on the struct), so each default value is written once.

mod agents;
mod economy;
mod manifest;
mod perturbations;
mod rewards;
mod social;
mod world;

pub use agents::*;
pub use economy::*;
pub use manifest::*;
pub use perturbations::*;
pub use rewards::*;
pub use social::*;
pub use world::*;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A configuration error with the dotted key path of the offending value.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

pub const NEED_NAMES: [&str; 3] = ["hunger", "hygiene", "energy"];

/// A value for every need: all three keys are required.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Needs {
    pub hunger: f32,
    pub hygiene: f32,
    pub energy: f32,
}

/// Changes to needs (affordance effects): a missing need means no change.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct NeedDeltas {
    pub hunger: f32,
    pub hygiene: f32,
    pub energy: f32,
}

impl NeedDeltas {
    pub fn to_array(self) -> [f32; 3] {
        [self.hunger, self.hygiene, self.energy]
    }
}

impl Needs {
    pub const fn splat(v: f32) -> Self {
        Self {
            hunger: v,
            hygiene: v,
            energy: v,
        }
    }
    pub fn to_array(self) -> [f32; 3] {
        [self.hunger, self.hygiene, self.energy]
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorldConfig {
    pub config_id: String,
    #[serde(default)]
    pub seed: u64,
    pub world: WorldSection,
    pub agents: Vec<AgentSpec>,
    pub affordances: Manifest,
    #[serde(default)]
    pub personalities: PersonalitiesSection,
    #[serde(default)]
    pub needs: NeedsSection,
    #[serde(default)]
    pub economy: EconomySection,
    #[serde(default)]
    pub jobs: BTreeMap<String, JobSpec>,
    #[serde(default)]
    pub employment: EmploymentSection,
    #[serde(default)]
    pub queue_fairness: QueueFairnessSection,
    #[serde(default)]
    pub conflict: ConflictSection,
    #[serde(default)]
    pub relationships: RelationshipsSection,
    #[serde(default)]
    pub perturbations: PerturbationsSection,
    #[serde(default)]
    pub lifecycle: LifecycleSection,
    #[serde(default)]
    pub identity: IdentitySection,
    #[serde(default)]
    pub behavior: BehaviorSection,
    #[serde(default)]
    pub actions: ActionsSection,
    #[serde(default)]
    pub scenario: ScenarioSection,
    #[serde(default)]
    pub observations: ObservationsSection,
    #[serde(default)]
    pub rewards: RewardsSection,
}

impl WorldConfig {
    /// A time of day given on the 1440-minute clock, on this config's clock.
    fn scaled(&self, minute: u32) -> u32 {
        (u64::from(minute) * u64::from(self.world.ticks_per_day) / 1440) as u32
    }

    pub fn sleep_window(&self) -> [u32; 2] {
        self.behavior
            .sleep_window
            .unwrap_or([self.scaled(1320), self.scaled(360)])
    }

    pub fn delivery_tick(&self) -> u32 {
        self.economy
            .delivery
            .tick_of_day
            .unwrap_or(self.scaled(360))
    }
}
