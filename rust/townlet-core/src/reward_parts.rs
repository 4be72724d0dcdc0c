//! The columns of the reward breakdown, in order (the last is the total the agent receives).
//! A leaf module: `World` sizes its breakdown buffer from it, the `rewards` system fills it.

pub const REWARD_COMPONENTS: [&str; 12] = [
    "survival",
    "needs",
    "self_sufficiency",
    "wage",
    "punctuality",
    "work_penalty",
    "social_chat",
    "social_penalty",
    "social_avoidance",
    "terminal",
    "clip_adjustment",
    "total",
];
pub const N_REWARD_COMPONENTS: usize = REWARD_COMPONENTS.len();

/// Column indices of the breakdown.
pub const SURVIVAL: usize = 0;
pub const NEEDS: usize = 1;
pub const SELF_SUFFICIENCY: usize = 2;
pub const WAGE: usize = 3;
pub const PUNCTUALITY: usize = 4;
pub const WORK_PENALTY: usize = 5;
pub const SOCIAL_CHAT: usize = 6;
pub const SOCIAL_PENALTY: usize = 7;
pub const SOCIAL_AVOIDANCE: usize = 8;
pub const TERMINAL: usize = 9;
pub const CLIP_ADJUSTMENT: usize = 10;
pub const TOTAL: usize = 11;
