//! Townlet core: a deterministic town simulation for training agents.
//!
//! Pure Rust, no Python. `World` owns one town: static data compiled from a validated config
//! (`Statics`, shared between towns) and plain dynamic state (`State`) that the systems update in
//! the prior system's tick order.

pub mod actions;
pub mod activity;
pub mod capture;
pub mod checks;
pub mod config;
pub mod console;
pub mod digest;
pub mod draw;
pub mod economy;
pub mod employment;
pub mod events;
pub mod expert;
pub mod grid;
pub mod heads;
pub mod ids;
pub mod lifecycle;
pub mod load;
pub mod obs;
pub mod personality;
pub mod perturb;
pub mod ppo_loss;
pub mod queues;
pub mod relu;
pub mod reward_parts;
pub mod rewards;
pub mod rng;
pub mod rollout;
pub mod slabs;
pub mod snapshot;
pub mod social;
pub mod spec;
pub mod state;
pub mod statics;
pub mod validate;
pub mod vec;
pub mod views;
pub mod world;

pub use config::{ConfigError, WorldConfig};
pub use events::{Event, EventKind};
pub use load::parse_world_config;
pub use statics::Statics;
pub use world::{Actions, Kpis, World};

#[cfg(test)]
mod tests;
