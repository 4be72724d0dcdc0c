//! Thin pyo3 glue: config in, numpy arrays out, errors mapped to Python exceptions in one place
//! (`errors`). No rules of the world live here; the GIL is released around every tick batch.
//!
//! One file per exposed class: `town` (Town), `vec_town` (VecTown), `rollout` (RolloutBuffer and
//! `compute_gae`), `slabs` (`slab_rows` and `relu_backward(_halves)`, the learner's bfloat16 passes), `draw`
//! (`draw_actions`, the collector's action draw), `ppo` (`ppo_loss`, the update's objective and its
//! gradient), `digest` (`crc32s` and `sha256_hex`, the capture's checksums); module-level config functions in
//! `config`; array checks in `arrays`; dicts built from core records in `convert`.

mod arrays;
mod config;
mod convert;
mod digest;
mod draw;
mod errors;
mod ppo;
mod rollout;
mod slabs;
mod town;
mod vec_town;

use pyo3::prelude::*;
use townlet_core::actions::ACTION_SPACE_VERSION;
use townlet_core::expert::{MOTIVE_DUTY, MOTIVE_LEISURE, MOTIVE_SHIFT};
use townlet_core::obs::OBSERVATION_SCHEMA_VERSION;
use townlet_core::rewards::REWARD_COMPONENTS;
use townlet_core::world::SNAPSHOT_VERSION;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<town::Town>()?;
    m.add_class::<vec_town::VecTown>()?;
    m.add_class::<rollout::RolloutBuffer>()?;
    m.add("OBSERVATION_SCHEMA_VERSION", OBSERVATION_SCHEMA_VERSION)?;
    m.add("REWARD_COMPONENTS", REWARD_COMPONENTS.to_vec())?;
    m.add_function(wrap_pyfunction!(config::validate_config, m)?)?;
    m.add_function(wrap_pyfunction!(rollout::compute_gae, m)?)?;
    m.add_function(wrap_pyfunction!(rollout::gae_rows, m)?)?;
    m.add_function(wrap_pyfunction!(slabs::slab_rows, m)?)?;
    m.add_function(wrap_pyfunction!(slabs::relu_backward, m)?)?;
    m.add_function(wrap_pyfunction!(slabs::heads_forward, m)?)?;
    m.add_function(wrap_pyfunction!(slabs::heads_backward, m)?)?;
    m.add_function(wrap_pyfunction!(draw::draw_actions, m)?)?;
    m.add_function(wrap_pyfunction!(ppo::ppo_loss, m)?)?;
    m.add_function(wrap_pyfunction!(digest::crc32s, m)?)?;
    m.add_function(wrap_pyfunction!(digest::sha256_hex, m)?)?;
    m.add_function(wrap_pyfunction!(config::config_action_names, m)?)?;
    m.add_function(wrap_pyfunction!(config::obs_spec, m)?)?;
    m.add("ConfigError", m.py().get_type::<errors::ConfigError>())?;
    m.add("SnapshotError", m.py().get_type::<errors::SnapshotError>())?;
    m.add("ACTION_SPACE_VERSION", ACTION_SPACE_VERSION)?;
    m.add("SNAPSHOT_VERSION", SNAPSHOT_VERSION)?;
    m.add("MOTIVE_LEISURE", MOTIVE_LEISURE)?;
    m.add("MOTIVE_DUTY", MOTIVE_DUTY)?;
    m.add("MOTIVE_SHIFT", MOTIVE_SHIFT)?;
    Ok(())
}
