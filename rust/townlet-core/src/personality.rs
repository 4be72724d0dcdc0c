//! Built-in personality profiles (a fixed registry, as in the prior system).

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    pub extroversion: f32,
    pub forgiveness: f32,
    pub ambition: f32,
    /// Multipliers on need decay: hunger, hygiene, energy.
    pub need_decay: [f32; 3],
    /// Expert biases.
    pub chat_preference: f32,
    pub work_affinity: f32,
    pub conflict_tolerance: f32,
}

pub const PROFILES: [Profile; 4] = [
    Profile {
        name: "balanced",
        extroversion: 0.0,
        forgiveness: 0.0,
        ambition: 0.0,
        need_decay: [1.0, 1.0, 1.0],
        chat_preference: 1.0,
        work_affinity: 1.0,
        conflict_tolerance: 1.0,
    },
    Profile {
        name: "socialite",
        extroversion: 0.6,
        forgiveness: 0.1,
        ambition: -0.1,
        need_decay: [1.0, 1.1, 1.0],
        chat_preference: 1.3,
        work_affinity: 1.0,
        conflict_tolerance: 1.0,
    },
    Profile {
        name: "industrious",
        extroversion: -0.2,
        forgiveness: -0.1,
        ambition: 0.5,
        need_decay: [1.0, 1.0, 0.9],
        chat_preference: 1.0,
        work_affinity: 1.4,
        conflict_tolerance: 1.0,
    },
    Profile {
        name: "stoic",
        extroversion: -0.3,
        forgiveness: 0.5,
        ambition: -0.2,
        need_decay: [0.95, 1.0, 1.0],
        chat_preference: 1.0,
        work_affinity: 1.0,
        conflict_tolerance: 0.6,
    },
];

pub fn profile_index(name: &str) -> Option<usize> {
    PROFILES.iter().position(|p| p.name == name)
}

pub fn profile_names() -> Vec<&'static str> {
    PROFILES.iter().map(|p| p.name).collect()
}
