//! The columns of the reward breakdown, in order (the last is the total the agent receives).
//! A leaf module: `World` sizes its breakdown buffer from it, the `rewards` system fills it.

pub const REWARD_COMPONENTS: [&str; 11] = [
    "survival",
    "needs",
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
