//! Module-level functions over a world config (JSON text): validation and what its towns look
//! like, without building a town.

use crate::convert::spec_dict;
use crate::errors::config_err;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::sync::Arc;
use townlet_core::{parse_world_config, Statics};

/// The validated config's static data, shared by every town built from it.
pub fn statics(config_json: &str) -> PyResult<Arc<Statics>> {
    Ok(Arc::new(Statics::build(
        parse_world_config(config_json).map_err(config_err)?,
    )))
}

/// Validate a resolved world config; raises ConfigError naming the key path.
#[pyfunction]
pub fn validate_config(config_json: &str) -> PyResult<()> {
    parse_world_config(config_json)
        .map(|_| ())
        .map_err(config_err)
}

/// The action names a world config defines, in action-space order.
#[pyfunction]
pub fn config_action_names(config_json: &str) -> PyResult<Vec<String>> {
    let cfg = parse_world_config(config_json).map_err(config_err)?;
    Ok(townlet_core::actions::action_names(&cfg))
}

/// The observation layout of a config's towns, as the dict `observation_metadata()` gives:
/// variant, map_shape, map_channels, feature_names, n_features, obs_dim, action_names,
/// observation_schema_version, action_space_version, config_id, manifest_checksum.
#[pyfunction]
pub fn obs_spec<'py>(py: Python<'py>, config_json: &str) -> PyResult<Bound<'py, PyDict>> {
    let cfg = parse_world_config(config_json).map_err(config_err)?;
    let spec = py.detach(|| townlet_core::spec::obs_spec(cfg));
    spec_dict(py, &spec)
}
