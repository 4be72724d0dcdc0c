//! World configuration: structs that mirror the YAML sections one to one.
//!
//! Python owns file loading (YAML, include resolution) and hands the world sections over as JSON.
//! This module owns their validation: every error carries the key path of the offending value.

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
#[serde(deny_unknown_fields)]
pub struct NeedDeltas {
    #[serde(default)]
    pub hunger: f32,
    #[serde(default)]
    pub hygiene: f32,
    #[serde(default)]
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

fn needs_half() -> Needs {
    Needs::splat(0.5)
}
fn needs_full() -> Needs {
    Needs::splat(0.8)
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorldSection {
    #[serde(default = "default_ticks_per_day")]
    pub ticks_per_day: u32,
    /// ASCII map: `#` wall, `.` floor. Rows top to bottom; y grows downwards.
    pub layout: String,
    pub objects: Vec<ObjectSpec>,
}

fn default_ticks_per_day() -> u32 {
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

/// The affordance manifest: object types and affordances.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(default = "one")]
    pub manifest_version: u32,
    pub object_types: BTreeMap<String, ObjectTypeSpec>,
    pub affordances: Vec<AffordanceSpec>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ObjectTypeSpec {
    #[serde(default = "one")]
    pub capacity: u32,
    #[serde(default)]
    pub stock: BTreeMap<String, u32>,
    #[serde(default)]
    pub max_stock: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Requirement {
    Power,
    Water,
    OnShift,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum AffordanceKind {
    Meal,
    Cook,
    Shower,
    Sleep,
    Work,
    #[default]
    Other,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AffordanceSpec {
    pub id: String,
    /// Object type (or list of types) this affordance runs on.
    pub object: OneOrMany,
    #[serde(default)]
    pub kind: AffordanceKind,
    /// Ticks to complete; 0 = continuous (runs while its requirements hold, e.g. a work shift).
    pub duration: u32,
    /// Need deltas over the whole duration (applied evenly per tick); per tick when continuous.
    #[serde(default)]
    pub effects: NeedDeltas,
    /// Economy key whose current price is charged once, at start.
    #[serde(default)]
    pub price: Option<String>,
    #[serde(default)]
    pub requires: Vec<Requirement>,
    /// Stock taken from the object at start.
    #[serde(default)]
    pub consumes: BTreeMap<String, u32>,
    /// Stock added at completion, into `produces_into` (nearest object of that type) or the object itself.
    #[serde(default)]
    pub produces: BTreeMap<String, u32>,
    #[serde(default)]
    pub produces_into: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PersonalitiesSection {
    #[serde(default = "default_distribution")]
    pub distribution: BTreeMap<String, f64>,
    #[serde(default)]
    pub overrides: BTreeMap<String, String>,
}

fn default_distribution() -> BTreeMap<String, f64> {
    BTreeMap::from([("balanced".to_string(), 1.0)])
}

impl Default for PersonalitiesSection {
    fn default() -> Self {
        Self {
            distribution: default_distribution(),
            overrides: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NeedsSection {
    #[serde(default = "default_decay")]
    pub decay: Needs,
    #[serde(default = "needs_full")]
    pub initial: Needs,
    /// Faint when hunger stays below this value ...
    #[serde(default = "default_faint_threshold")]
    pub faint_threshold: f32,
    /// ... for this many consecutive ticks.
    #[serde(default = "default_faint_window")]
    pub faint_window_ticks: u32,
}

fn default_decay() -> Needs {
    Needs {
        hunger: 0.0011,
        hygiene: 0.0005,
        energy: 0.0007,
    }
}
fn default_faint_threshold() -> f32 {
    0.05
}
fn default_faint_window() -> u32 {
    30
}

impl Default for NeedsSection {
    fn default() -> Self {
        Self {
            decay: default_decay(),
            initial: needs_full(),
            faint_threshold: default_faint_threshold(),
            faint_window_ticks: default_faint_window(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EconomySection {
    #[serde(default = "default_prices")]
    pub prices: BTreeMap<String, f64>,
    /// Named groups of price keys that price spikes may target.
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    #[serde(default = "default_wallet")]
    pub starting_wallet: f64,
    #[serde(default)]
    pub delivery: DeliverySection,
}

fn default_prices() -> BTreeMap<String, f64> {
    BTreeMap::from([
        ("meal_cost".to_string(), 0.4),
        ("ingredients_cost".to_string(), 0.15),
        ("cafe_meal_cost".to_string(), 0.8),
        ("shower_cost".to_string(), 0.1),
    ])
}
fn default_wallet() -> f64 {
    5.0
}

impl Default for EconomySection {
    fn default() -> Self {
        Self {
            prices: default_prices(),
            groups: BTreeMap::new(),
            starting_wallet: default_wallet(),
            delivery: DeliverySection::default(),
        }
    }
}

/// The grocer's delivery: once a day it restocks every object of `object_type` with `stock`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeliverySection {
    #[serde(default)]
    pub enabled: bool,
    /// Tick of the day of the delivery; by default 06:00 of however long the day is.
    #[serde(default)]
    pub tick_of_day: Option<u32>,
    #[serde(default = "default_delivery_type")]
    pub object_type: String,
    #[serde(default = "default_delivery_stock")]
    pub stock: String,
    #[serde(default = "default_delivery_amount")]
    pub amount: u32,
}

fn default_delivery_type() -> String {
    "fridge".into()
}
fn default_delivery_stock() -> String {
    "meals".into()
}
fn default_delivery_amount() -> u32 {
    4
}

impl Default for DeliverySection {
    fn default() -> Self {
        Self {
            enabled: false,
            tick_of_day: None,
            object_type: default_delivery_type(),
            stock: default_delivery_stock(),
            amount: default_delivery_amount(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Object id of the work site; being within range of it counts as present.
    pub site: String,
    /// Shift window as ticks of the day, [start, end).
    pub start: u32,
    pub end: u32,
    pub wage_rate: f64,
    #[serde(default = "default_lateness_penalty")]
    pub lateness_penalty: f64,
}

fn default_lateness_penalty() -> f64 {
    0.1
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmploymentSection {
    #[serde(default = "d5")]
    pub grace_ticks: u32,
    #[serde(default = "d30")]
    pub absent_cutoff: u32,
    #[serde(default = "d20")]
    pub absence_slack: u32,
    #[serde(default = "d0_005")]
    pub late_tick_penalty: f64,
    #[serde(default = "d0_2")]
    pub absence_penalty: f64,
    #[serde(default = "d3")]
    pub max_absent_shifts: u32,
    #[serde(default = "d3")]
    pub attendance_window: u32,
    #[serde(default = "d2")]
    pub daily_exit_cap: u32,
    #[serde(default = "d8")]
    pub exit_queue_limit: u32,
    #[serde(default = "d1440")]
    pub exit_review_window: u32,
    #[serde(default = "d20")]
    pub arrival_buffer: u32,
    #[serde(default = "dtrue")]
    pub enforce_job_loop: bool,
}

fn d0() -> u32 {
    0
}
fn d1() -> u32 {
    1
}
fn d2() -> u32 {
    2
}
fn d3() -> u32 {
    3
}
fn d4() -> u32 {
    4
}
fn d5() -> u32 {
    5
}
fn d6() -> u32 {
    6
}
fn d8() -> u32 {
    8
}
fn d20() -> u32 {
    20
}
fn d30() -> u32 {
    30
}
fn d60() -> u32 {
    60
}
fn d1440() -> u32 {
    1440
}
fn d0_005() -> f64 {
    0.005
}
fn d0_2() -> f64 {
    0.2
}
fn dtrue() -> bool {
    true
}

impl Default for EmploymentSection {
    fn default() -> Self {
        Self {
            grace_ticks: 5,
            absent_cutoff: 30,
            absence_slack: 20,
            late_tick_penalty: 0.005,
            absence_penalty: 0.2,
            max_absent_shifts: 3,
            attendance_window: 3,
            daily_exit_cap: 2,
            exit_queue_limit: 8,
            exit_review_window: 1440,
            arrival_buffer: 20,
            enforce_job_loop: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QueueFairnessSection {
    #[serde(default = "d60")]
    pub cooldown_ticks: u32,
    /// A holder that has not started its affordance for this many ticks while others wait is moved
    /// to the back of the queue (ghost step). A holder whose affordance is running is never moved.
    #[serde(default = "d3")]
    pub ghost_step_after: u32,
    #[serde(default = "default_age_weight")]
    pub age_priority_weight: f32,
    /// A waiter that has waited this long records one queue conflict with the holder.
    #[serde(default = "d30")]
    pub patience_ticks: u32,
}

fn default_age_weight() -> f32 {
    0.1
}

impl Default for QueueFairnessSection {
    fn default() -> Self {
        Self {
            cooldown_ticks: 60,
            ghost_step_after: 3,
            age_priority_weight: 0.1,
            patience_ticks: 30,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConflictSection {
    #[serde(default = "default_increment")]
    pub increment_per_conflict: f32,
    #[serde(default = "default_ghost_boost")]
    pub ghost_step_boost: f32,
    #[serde(default = "default_wait_boost")]
    pub wait_boost: f32,
    #[serde(default = "default_len_boost")]
    pub queue_length_boost: f32,
    #[serde(default = "default_intensity_min")]
    pub intensity_min: f32,
    #[serde(default = "default_intensity_max")]
    pub intensity_max: f32,
    #[serde(default = "default_avoid")]
    pub avoid_threshold: f32,
}

fn default_increment() -> f32 {
    0.15
}
fn default_ghost_boost() -> f32 {
    1.5
}
fn default_wait_boost() -> f32 {
    0.4
}
fn default_len_boost() -> f32 {
    0.25
}
fn default_intensity_min() -> f32 {
    0.1
}
fn default_intensity_max() -> f32 {
    5.0
}
fn default_avoid() -> f32 {
    0.7
}

impl Default for ConflictSection {
    fn default() -> Self {
        Self {
            increment_per_conflict: default_increment(),
            ghost_step_boost: default_ghost_boost(),
            wait_boost: default_wait_boost(),
            queue_length_boost: default_len_boost(),
            intensity_min: default_intensity_min(),
            intensity_max: default_intensity_max(),
            avoid_threshold: default_avoid(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TieDecay {
    #[serde(default)]
    pub trust: f32,
    #[serde(default)]
    pub familiarity: f32,
    #[serde(default)]
    pub rivalry: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RelationshipsSection {
    #[serde(default = "default_tie_decay")]
    pub decay: TieDecay,
    #[serde(default = "d6")]
    pub max_edges: u32,
    /// A tie whose every component is below this magnitude is dropped.
    #[serde(default = "default_eviction")]
    pub eviction_threshold: f32,
    /// Personality modifiers (forgiveness, extroversion, ambition) on relationship deltas.
    #[serde(default = "dtrue")]
    pub personality_modifiers: bool,
}

fn default_tie_decay() -> TieDecay {
    TieDecay {
        trust: 0.00002,
        familiarity: 0.00002,
        rivalry: 0.0002,
    }
}
fn default_eviction() -> f32 {
    0.01
}

impl Default for RelationshipsSection {
    fn default() -> Self {
        Self {
            decay: default_tie_decay(),
            max_edges: 6,
            eviction_threshold: default_eviction(),
            personality_modifiers: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PerturbationsSection {
    #[serde(default = "d1")]
    pub max_concurrent_events: u32,
    #[serde(default = "d0")]
    pub global_cooldown_ticks: u32,
    #[serde(default = "d0")]
    pub per_agent_cooldown_ticks: u32,
    #[serde(default = "d1440")]
    pub window_ticks: u32,
    #[serde(default = "d1")]
    pub max_events_per_window: u32,
    #[serde(default)]
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
        #[serde(default = "default_meet_target")]
        target: MeetTarget,
        location: String,
        #[serde(default = "d2")]
        max_participants: u32,
    },
}

impl PerturbationSpec {
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

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MeetTarget {
    TopRivals,
    Random,
}

fn default_meet_target() -> MeetTarget {
    MeetTarget::TopRivals
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LifecycleSection {
    #[serde(default = "dtrue")]
    pub mortality: bool,
    #[serde(default = "d60")]
    pub respawn_delay_ticks: u32,
    #[serde(default = "needs_half")]
    pub respawn_needs: Needs,
    #[serde(default = "default_respawn_wallet")]
    pub respawn_wallet: f64,
    #[serde(default)]
    pub nightly_reset: bool,
}

fn default_respawn_wallet() -> f64 {
    2.0
}

impl Default for LifecycleSection {
    fn default() -> Self {
        Self {
            mortality: true,
            respawn_delay_ticks: 60,
            respawn_needs: needs_half(),
            respawn_wallet: default_respawn_wallet(),
            nightly_reset: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IdentitySection {
    #[serde(default = "d64")]
    pub max_slots: u32,
    #[serde(default = "d2000")]
    pub cooldown_ticks: u32,
}

fn d64() -> u32 {
    64
}
fn d2000() -> u32 {
    2000
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
#[serde(deny_unknown_fields)]
pub struct BehaviorSection {
    /// The expert tends to a need once it falls below its threshold.
    #[serde(default = "default_thresholds")]
    pub thresholds: Needs,
    /// Below this a need is urgent and overrides everything, work included.
    #[serde(default = "default_critical")]
    pub critical: f32,
    /// Night window (ticks of day, may wrap midnight) during which the expert sleeps; by default
    /// 22:00 to 06:00 of however long the day is.
    #[serde(default)]
    pub sleep_window: Option<[u32; 2]>,
    #[serde(default = "d30")]
    pub chat_cooldown_ticks: u32,
    /// Base probability per idle tick that a balanced agent starts a chat with someone nearby.
    #[serde(default = "default_chat_propensity")]
    pub chat_propensity: f32,
    /// 0 = deterministic expert; > 0 = softmax over valid actions with this temperature.
    #[serde(default)]
    pub temperature: f32,
}

fn default_thresholds() -> Needs {
    Needs {
        hunger: 0.45,
        hygiene: 0.4,
        energy: 0.35,
    }
}
fn default_critical() -> f32 {
    0.2
}
fn default_chat_propensity() -> f32 {
    0.05
}

impl Default for BehaviorSection {
    fn default() -> Self {
        Self {
            thresholds: default_thresholds(),
            critical: default_critical(),
            sleep_window: None,
            chat_cooldown_ticks: 30,
            chat_propensity: default_chat_propensity(),
            temperature: 0.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ActionsSection {
    #[serde(default = "d4")]
    pub chat_slots: u32,
    /// Chebyshev distance within which another agent fills a chat slot.
    #[serde(default = "d2")]
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
#[serde(deny_unknown_fields)]
pub struct ScenarioSection {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub ticks: Option<u32>,
    /// Perturbations fired at fixed ticks (a scripted story), in addition to the random schedule.
    #[serde(default)]
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct ObservationsSection {
    #[serde(default)]
    pub variant: ObsVariant,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum SocialStage {
    #[serde(rename = "OFF")]
    Off,
    #[default]
    C1,
    C2,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RewardsSection {
    /// Weight of each squared need deficit (1 - need)^2, subtracted every tick.
    #[serde(default = "default_need_weights")]
    pub needs_weights: Needs,
    #[serde(default = "default_survival")]
    pub survival_tick: f32,
    /// Multiplies the wage actually paid this tick.
    #[serde(default = "default_wage_weight")]
    pub wage_weight: f32,
    /// Paid once, on the tick of an on-time arrival at work.
    #[serde(default = "default_punctuality")]
    pub punctuality_bonus: f32,
    #[serde(default)]
    pub social: SocialRewards,
    #[serde(default = "default_faint_penalty")]
    pub faint_penalty: f32,
    #[serde(default = "default_eviction_penalty")]
    pub eviction_penalty: f32,
    /// No positive reward on the termination tick nor for this many ticks after a (re)spawn.
    #[serde(default = "d10")]
    pub no_positive_within_death_ticks: u32,
    #[serde(default = "default_clip_tick")]
    pub clip_per_tick: f32,
    #[serde(default = "default_clip_episode")]
    pub clip_per_episode: f32,
}

fn d10() -> u32 {
    10
}
fn default_need_weights() -> Needs {
    Needs {
        hunger: 0.03,
        hygiene: 0.018,
        energy: 0.024,
    }
}
fn default_survival() -> f32 {
    0.02
}
fn default_wage_weight() -> f32 {
    1.0
}
fn default_punctuality() -> f32 {
    0.05
}
fn default_faint_penalty() -> f32 {
    -1.0
}
fn default_eviction_penalty() -> f32 {
    -2.0
}
fn default_clip_tick() -> f32 {
    2.0
}
fn default_clip_episode() -> f32 {
    50.0
}

impl Default for RewardsSection {
    fn default() -> Self {
        Self {
            needs_weights: default_need_weights(),
            survival_tick: default_survival(),
            wage_weight: default_wage_weight(),
            punctuality_bonus: default_punctuality(),
            social: SocialRewards::default(),
            faint_penalty: default_faint_penalty(),
            eviction_penalty: default_eviction_penalty(),
            no_positive_within_death_ticks: 10,
            clip_per_tick: default_clip_tick(),
            clip_per_episode: default_clip_episode(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SocialRewards {
    /// OFF: no social rewards; C1: chat rewards; C2: C1 plus a bonus for walking away from a
    /// queue held by someone one avoids.
    #[serde(default)]
    pub stage: SocialStage,
    #[serde(default = "default_c1_base")]
    pub c1_chat_base: f32,
    #[serde(default = "default_c1_trust")]
    pub c1_coeff_trust: f32,
    #[serde(default = "default_c1_fam")]
    pub c1_coeff_fam: f32,
    #[serde(default = "default_c2")]
    pub c2_avoid_conflict: f32,
}

fn default_c1_base() -> f32 {
    0.01
}
fn default_c1_trust() -> f32 {
    0.05
}
fn default_c1_fam() -> f32 {
    0.03
}
fn default_c2() -> f32 {
    0.005
}

impl Default for SocialRewards {
    fn default() -> Self {
        Self {
            stage: SocialStage::C1,
            c1_chat_base: default_c1_base(),
            c1_coeff_trust: default_c1_trust(),
            c1_coeff_fam: default_c1_fam(),
            c2_avoid_conflict: default_c2(),
        }
    }
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

// ---------------------------------------------------------------------------------------------
// Parsing with key paths

/// Parse and validate a world config from JSON text.
pub fn parse_world_config(json: &str) -> Result<WorldConfig, ConfigError> {
    let de = &mut serde_json::Deserializer::from_str(json);
    let cfg: WorldConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let (path, message) = humanize_serde_error(&path, &e.inner().to_string());
        ConfigError::new(path, message)
    })?;
    crate::validate::validate(&cfg)?;
    Ok(cfg)
}

/// Turn serde's wording into the project's: `expected integer >= 0, got "ten"`.
fn humanize_serde_error(path: &str, raw: &str) -> (String, String) {
    // serde_json appends " at line L column C"; the line is that of our generated JSON, not the YAML.
    let raw = match raw.rfind(" at line ") {
        Some(i) => &raw[..i],
        None => raw,
    };
    if let Some(rest) = raw.strip_prefix("unknown field `") {
        let key = rest.split('`').next().unwrap_or(rest);
        let expected = rest.split_once("expected ").map(|x| x.1).unwrap_or("");
        // serde_path_to_error already ends the path with the unknown key; never name it twice.
        let full = if path.is_empty() {
            key.to_string()
        } else if path == key || path.ends_with(&format!(".{key}")) {
            path.to_string()
        } else {
            format!("{path}.{key}")
        };
        let hint = if expected.is_empty() {
            String::new()
        } else {
            format!(" (expected {expected})")
        };
        return (full, format!("unknown key{hint}"));
    }
    if let Some(rest) = raw.strip_prefix("missing field `") {
        let key = rest.split('`').next().unwrap_or(rest);
        let full = if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        };
        return (full, "required key is missing".to_string());
    }
    if let Some(rest) = raw.strip_prefix("invalid type: ") {
        if let Some((got, expected)) = rest.split_once(", expected ") {
            return (
                path.to_string(),
                format!(
                    "expected {}, got {}",
                    expected_word(expected),
                    got_word(got)
                ),
            );
        }
    }
    if let Some(rest) = raw.strip_prefix("invalid value: ") {
        if let Some((got, expected)) = rest.split_once(", expected ") {
            return (
                path.to_string(),
                format!(
                    "expected {}, got {}",
                    expected_word(expected),
                    got_word(got)
                ),
            );
        }
    }
    if let Some(rest) = raw.strip_prefix("unknown variant `") {
        let (got, expected) = rest.split_once("`, expected ").unwrap_or((rest, "?"));
        return (
            path.to_string(),
            format!("unknown value \"{got}\" (expected {expected})"),
        );
    }
    (path.to_string(), raw.to_string())
}

fn expected_word(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "integer >= 0".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "integer".into(),
        "f32" | "f64" => "number".into(),
        "a boolean" => "true or false".into(),
        "a string" => "string".into(),
        "a sequence" => "list".into(),
        other if other.starts_with("struct ") || other.starts_with("a map") => "mapping".into(),
        other => other.to_string(),
    }
}

fn got_word(got: &str) -> String {
    // serde says `string "ten"`, `integer `-3``, `floating point `1.5``, `boolean `true``.
    if let Some(s) = got.strip_prefix("string ") {
        return s.to_string();
    }
    for prefix in ["integer ", "floating point ", "boolean "] {
        if let Some(s) = got.strip_prefix(prefix) {
            return s.trim_matches('`').to_string();
        }
    }
    got.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanizes_type_errors() {
        let (p, m) = humanize_serde_error(
            "queue_fairness.cooldown_ticks",
            "invalid type: string \"ten\", expected u32",
        );
        assert_eq!(p, "queue_fairness.cooldown_ticks");
        assert_eq!(m, "expected integer >= 0, got \"ten\"");
        let (_, m) = humanize_serde_error(
            "x",
            "invalid value: integer `-3`, expected u32 at line 1 column 9",
        );
        assert_eq!(m, "expected integer >= 0, got -3");
    }

    #[test]
    fn humanizes_unknown_and_missing_keys() {
        let (p, m) = humanize_serde_error(
            "needs",
            "unknown field `hungr`, expected one of `decay`, `initial`",
        );
        assert_eq!(p, "needs.hungr");
        assert!(m.starts_with("unknown key"));
        let (p, m) = humanize_serde_error("", "missing field `world`");
        assert_eq!(p, "world");
        assert_eq!(m, "required key is missing");
    }
}
