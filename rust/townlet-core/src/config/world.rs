//! The town itself (map, objects, agents), the action space's size, the scenario and the
//! observation variant.

use super::Needs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorldSection {
    #[serde(default = "minutes_per_day")]
    pub ticks_per_day: u32,
    /// ASCII map: `#` wall, `.` floor. Rows top to bottom; y grows downwards.
    pub layout: String,
    pub objects: Vec<ObjectSpec>,
}

/// One tick per minute unless the config says otherwise.
fn minutes_per_day() -> u32 {
    1440
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ObjectSpec {
    pub id: String,
    #[serde(rename = "type")]
    pub object_type: String,
    pub pos: [i32; 2],
    #[serde(default)]
    pub stock: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    pub id: String,
    pub home: [i32; 2],
    #[serde(default)]
    pub pos: Option<[i32; 2]>,
    #[serde(default)]
    pub personality: Option<String>,
    #[serde(default)]
    pub job: Option<String>,
    #[serde(default)]
    pub needs: Option<Needs>,
    #[serde(default)]
    pub wallet: Option<f64>,
    /// Scripted intentions: action names played one per tick from the start, after which the
    /// expert takes over (or the script repeats, with `script_loop`).
    #[serde(default)]
    pub script: Vec<String>,
    #[serde(default)]
    pub script_loop: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ActionsSection {
    pub chat_slots: u32,
    /// Chebyshev distance within which another agent fills a chat slot.
    pub chat_range: u32,
}

impl Default for ActionsSection {
    fn default() -> Self {
        Self {
            chat_slots: 4,
            chat_range: 2,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ScenarioSection {
    pub name: Option<String>,
    pub description: Option<String>,
    pub ticks: Option<u32>,
    /// Perturbations fired at fixed ticks (a scripted story), in addition to the random schedule.
    pub timeline: Vec<TimelineEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TimelineEntry {
    pub tick: u32,
    pub perturbation: String,
    #[serde(default)]
    pub duration: Option<u32>,
    #[serde(default)]
    pub magnitude: Option<f64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ObsVariant {
    #[default]
    Hybrid,
    Full,
    Compact,
}

impl ObsVariant {
    pub fn name(self) -> &'static str {
        match self {
            ObsVariant::Hybrid => "hybrid",
            ObsVariant::Full => "full",
            ObsVariant::Compact => "compact",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ObservationsSection {
    pub variant: ObsVariant,
    /// The egocentric map's side in tiles (odd), replacing the variant's (11, or 7 for `compact`).
    pub window: Option<usize>,
    /// An agent sees its observation only on ticks that are a multiple of this (a glimpse); on the
    /// other ticks its map and features are zeros except `ctx_reset` (its action mask is whole).
    /// 1, the default: every tick.
    pub glimpse_every: u32,
}

impl Default for ObservationsSection {
    fn default() -> Self {
        Self {
            variant: ObsVariant::default(),
            window: None,
            glimpse_every: 1,
        }
    }
}
