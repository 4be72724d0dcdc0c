//! Unit tests for every world system, on a small hand-built town (see `fixture`).

mod affordances;
mod capture;
mod config_errors;
mod console;
mod determinism;
mod employment;
mod expert;
mod fixture;
mod invariants;
mod lifecycle;
mod movement;
mod observations;
mod perturbations;
mod queues;
mod rewards;
mod social;
mod vec_state;
