//! Dynamic world state: plain structs in contiguous vectors indexed by small integer ids.
//! Everything here is serialised into snapshots and hashed by `World::world_hash`.

use crate::events::EventLog;
use crate::ids::{NONE, NO_DAY};
use crate::rng::Rng;
use serde::{Deserialize, Serialize};

/// Where an agent is within its current `use:` option.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Idle,
    /// Walking to the target object.
    Walking,
    /// In range and in the object's wait list.
    Waiting,
    /// Holds a reservation but has not started (e.g. the power is out).
    Holding,
    /// The affordance is running.
    Running,
}

impl Phase {
    pub const NAMES: [&'static str; 5] = ["idle", "walking", "waiting", "holding", "running"];
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// The affordance pursued (`ids::NONE` when idle).
    #[serde(rename = "aff")]
    pub affordance: i32,
    /// The object it is pursued at (`ids::NONE` when idle).
    #[serde(rename = "obj")]
    pub object: i32,
    pub phase: Phase,
    pub remaining: u32,
    pub since: u64,
}

impl Activity {
    pub const IDLE: Activity = Activity {
        affordance: NONE,
        object: NONE,
        phase: Phase::Idle,
        remaining: 0,
        since: 0,
    };
    pub fn is_idle(&self) -> bool {
        self.phase == Phase::Idle
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShiftState {
    Idle,
    PreShift,
    OnTime,
    Late,
    Absent,
    Departed,
    PostShift,
}

impl ShiftState {
    pub const NAMES: [&'static str; 7] = [
        "idle",
        "pre_shift",
        "on_time",
        "late",
        "absent",
        "departed",
        "post_shift",
    ];
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Employment {
    pub state: ShiftState,
    /// Day index of the shift these per-shift fields describe (-1: none yet).
    pub shift_day: i64,
    pub finalized: bool,
    pub arrived: bool,
    pub arrived_on_time: bool,
    pub present_ticks: u32,
    pub last_seen: u64,
    pub late_charged: bool,
    pub absent_charged: bool,
    pub departed: bool,
    pub helped: bool,
    pub taken: bool,
    pub lateness_counter: u32,
    pub late_ticks_today: u32,
    pub wages_withheld: f64,
    pub wages_earned: f64,
    pub attendance: Vec<f32>,
    pub attendance_ratio: f32,
    /// Day indices of absences (kept for seven days).
    pub absences: Vec<i64>,
    pub exit_pending: bool,
}

impl Employment {
    pub fn new() -> Self {
        Self {
            state: ShiftState::Idle,
            shift_day: NO_DAY,
            finalized: true,
            arrived: false,
            arrived_on_time: false,
            present_ticks: 0,
            last_seen: 0,
            late_charged: false,
            absent_charged: false,
            departed: false,
            helped: false,
            taken: false,
            lateness_counter: 0,
            late_ticks_today: 0,
            wages_withheld: 0.0,
            wages_earned: 0.0,
            attendance: Vec::new(),
            attendance_ratio: 1.0,
            absences: Vec::new(),
            exit_pending: false,
        }
    }
}

impl Default for Employment {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TermReason {
    Faint,
    Eviction,
    Killed,
}

impl TermReason {
    pub fn name(self) -> &'static str {
        match self {
            TermReason::Faint => "faint",
            TermReason::Eviction => "eviction",
            TermReason::Killed => "killed",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentCounters {
    pub meals_eaten: u32,
    pub meals_cooked: u32,
    pub showers: u32,
    pub sleeps: u32,
    pub chats_ok: u32,
    pub chats_failed: u32,
    pub spent: f64,
    pub penalties: f64,
}

/// Things that happened to one agent during the current tick (read by rewards and telemetry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TickFlags {
    pub wage: f64,
    /// Employment penalties charged this tick (the full amounts, whatever the wallet held).
    #[serde(default)]
    pub penalty: f64,
    pub punctual: bool,
    pub chat_quality: f32,
    pub chat_failed_speaker: bool,
    pub chat_failed_listener: bool,
    /// The partner of this tick's successful chat, or -1.
    pub chat_partner: i32,
    /// Walked away from a queue held by someone this agent avoids.
    pub avoided: bool,
    pub invalid_action: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    pub name: String,
    /// 1 for the original agent; each respawn adds one (`alice#2`).
    pub generation: u32,
    pub alive: bool,
    pub respawn_at: u64,
    pub pos: [i32; 2],
    pub home: [i32; 2],
    pub needs: [f32; 3],
    pub wallet: f64,
    #[serde(rename = "act")]
    pub activity: Activity,
    pub hunger_low_ticks: u32,
    pub chat_ready_at: u64,
    pub last_action: u16,
    pub last_action_ok: bool,
    pub ctx_reset: bool,
    pub identity_slot: i32,
    pub spawned_at: u64,
    #[serde(rename = "emp")]
    pub employment: Employment,
    pub counters: AgentCounters,
    pub terminated: Option<TermReason>,
    pub flags: TickFlags,
    /// Reward accumulated since the agent's (re)spawn (for the per-episode clip).
    pub episode_reward: f32,
}

impl Default for TickFlags {
    fn default() -> Self {
        Self {
            wage: 0.0,
            penalty: 0.0,
            punctual: false,
            chat_quality: 0.0,
            chat_failed_speaker: false,
            chat_failed_listener: false,
            chat_partner: NONE,
            avoided: false,
            invalid_action: false,
        }
    }
}

impl Agent {
    pub fn display_id(&self) -> String {
        if self.generation <= 1 {
            self.name.clone()
        } else {
            format!("{}#{}", self.name, self.generation)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Waiter {
    pub agent: u32,
    pub joined: u64,
    pub conflicted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    pub agent: u32,
    pub since: u64,
    pub stalled: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectState {
    pub stock: Vec<u32>,
    pub waiting: Vec<Waiter>,
    pub holders: Vec<Holder>,
}

/// One directed relationship tie (owner -> other).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Tie {
    pub trust: f32,
    pub familiarity: f32,
    pub rivalry: f32,
    pub present: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivePerturbation {
    pub id: u32,
    pub spec: usize,
    pub started: u64,
    pub ends: u64,
    pub magnitude: f64,
    pub participants: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingPerturbation {
    pub id: u32,
    pub spec: usize,
    pub starts: u64,
    pub duration: Option<u32>,
    pub magnitude: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerturbationState {
    pub active: Vec<ActivePerturbation>,
    pub pending: Vec<PendingPerturbation>,
    pub spec_ready_at: Vec<u64>,
    pub window_start: u64,
    pub window_counts: Vec<u32>,
    pub global_ready_at: u64,
    pub agent_ready_at: Vec<u64>,
    pub next_id: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentitySlots {
    pub holder: Vec<i32>,
    pub released_at: Vec<Option<u64>>,
    pub allocations: u64,
    pub forced_reuse: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitQueue {
    pub pending: Vec<(u32, u64)>,
    pub manual: Vec<u32>,
    pub exits_today: u32,
    pub day: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub ticks: u64,
    pub agent_steps: u64,
    pub self_sufficiency_sum: f64,
    pub shifts_scheduled: u64,
    pub shifts_on_time: u64,
    pub faints: u64,
    pub evictions: u64,
    pub invalid_actions: u64,
    pub wages_paid: f64,
    pub spent: f64,
    pub penalties: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub tick: u64,
    pub agents: Vec<Agent>,
    pub objects: Vec<ObjectState>,
    /// Per (object, agent): first tick at which the agent may request the object again.
    pub cooldowns: Vec<u64>,
    /// Dense n x n relationship ties, row = owner.
    pub ties: Vec<Tie>,
    /// Baseline prices (the config's, as changed by console `price`); spikes multiply these.
    pub base_prices: Vec<f64>,
    pub prices: Vec<f64>,
    pub power_out: u32,
    pub water_out: u32,
    pub mortality: bool,
    pub perturb: PerturbationState,
    pub identity: IdentitySlots,
    pub exits: ExitQueue,
    pub rng_world: Rng,
    pub rng_perturb: Rng,
    pub rng_social: Rng,
    pub rng_policy: Rng,
    pub events: EventLog,
    pub stats: Stats,
}
