//! Queues and the conflicts they cause, and relationship ties.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct QueueFairnessSection {
    pub cooldown_ticks: u32,
    /// A holder that has not started its affordance for this many ticks while others wait is moved
    /// to the back of the queue (ghost step). A holder whose affordance is running is never moved.
    pub ghost_step_after: u32,
    pub age_priority_weight: f32,
    /// A waiter that has waited this long records one queue conflict with the holder.
    pub patience_ticks: u32,
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
#[serde(default, deny_unknown_fields)]
pub struct ConflictSection {
    pub increment_per_conflict: f32,
    pub ghost_step_boost: f32,
    pub wait_boost: f32,
    pub queue_length_boost: f32,
    pub intensity_min: f32,
    pub intensity_max: f32,
    pub avoid_threshold: f32,
}

impl Default for ConflictSection {
    fn default() -> Self {
        Self {
            increment_per_conflict: 0.15,
            ghost_step_boost: 1.5,
            wait_boost: 0.4,
            queue_length_boost: 0.25,
            intensity_min: 0.1,
            intensity_max: 5.0,
            avoid_threshold: 0.7,
        }
    }
}

/// Per-tick decay of each tie component. A component left out of a given `decay` does not decay
/// (0); the section's default decays all three (see `RelationshipsSection::default`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TieDecay {
    pub trust: f32,
    pub familiarity: f32,
    pub rivalry: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RelationshipsSection {
    pub decay: TieDecay,
    pub max_edges: u32,
    /// A tie whose every component is below this magnitude is dropped.
    pub eviction_threshold: f32,
    /// Personality modifiers (forgiveness, extroversion, ambition) on relationship deltas.
    pub personality_modifiers: bool,
}

impl Default for RelationshipsSection {
    fn default() -> Self {
        Self {
            decay: TieDecay {
                trust: 0.00002,
                familiarity: 0.00002,
                rivalry: 0.0002,
            },
            max_edges: 6,
            eviction_threshold: 0.01,
            personality_modifiers: true,
        }
    }
}
