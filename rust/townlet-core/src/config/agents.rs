//! How agents live: personalities, needs, death and respawn, identity slots, and the scripted
//! expert's behaviour.

use super::Needs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PersonalitiesSection {
    pub distribution: BTreeMap<String, f64>,
    pub overrides: BTreeMap<String, String>,
}

impl Default for PersonalitiesSection {
    fn default() -> Self {
        Self {
            distribution: BTreeMap::from([("balanced".to_string(), 1.0)]),
            overrides: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NeedsSection {
    pub decay: Needs,
    pub initial: Needs,
    /// Faint when hunger stays below this value ...
    pub faint_threshold: f32,
    /// ... for this many consecutive ticks.
    pub faint_window_ticks: u32,
}

impl Default for NeedsSection {
    fn default() -> Self {
        Self {
            decay: Needs {
                hunger: 0.0011,
                hygiene: 0.0005,
                energy: 0.0007,
            },
            initial: Needs::splat(0.8),
            faint_threshold: 0.05,
            faint_window_ticks: 30,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LifecycleSection {
    pub mortality: bool,
    pub respawn_delay_ticks: u32,
    pub respawn_needs: Needs,
    pub respawn_wallet: f64,
    pub nightly_reset: bool,
}

impl Default for LifecycleSection {
    fn default() -> Self {
        Self {
            mortality: true,
            respawn_delay_ticks: 60,
            respawn_needs: Needs::splat(0.5),
            respawn_wallet: 2.0,
            nightly_reset: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IdentitySection {
    pub max_slots: u32,
    pub cooldown_ticks: u32,
}

impl Default for IdentitySection {
    fn default() -> Self {
        Self {
            max_slots: 64,
            cooldown_ticks: 2000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BehaviorSection {
    /// The expert tends to a need once it falls below its threshold.
    pub thresholds: Needs,
    /// Below this a need is urgent and overrides everything, work included.
    pub critical: f32,
    /// Night window (ticks of day, may wrap midnight) during which the expert sleeps; by default
    /// 22:00 to 06:00 of however long the day is.
    pub sleep_window: Option<[u32; 2]>,
    pub chat_cooldown_ticks: u32,
    /// Base probability per idle tick that a balanced agent starts a chat with someone nearby.
    pub chat_propensity: f32,
    /// 0 = deterministic expert; > 0 = softmax over valid actions with this temperature.
    pub temperature: f32,
}

impl Default for BehaviorSection {
    fn default() -> Self {
        Self {
            thresholds: Needs {
                hunger: 0.45,
                hygiene: 0.4,
                energy: 0.35,
            },
            critical: 0.2,
            sleep_window: None,
            chat_cooldown_ticks: 30,
            chat_propensity: 0.05,
            temperature: 0.0,
        }
    }
}
