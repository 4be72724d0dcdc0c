//! Core records as Python dicts: KPIs, drained events, the observation spec.

use numpy::ndarray::Array1;
use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use townlet_core::spec::ObsSpec;
use townlet_core::{Event, Kpis};

pub fn kpi_dict<'py>(py: Python<'py>, k: &Kpis) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("self_sufficiency", k.self_sufficiency)?;
    d.set_item("on_time_rate", k.on_time_rate)?;
    d.set_item("relationship_coverage", k.relationship_coverage)?;
    d.set_item("shifts_scheduled", k.shifts_scheduled)?;
    d.set_item("shifts_on_time", k.shifts_on_time)?;
    d.set_item("faints", k.faints)?;
    d.set_item("evictions", k.evictions)?;
    d.set_item("queue_conflicts", k.queue_conflicts)?;
    d.set_item("chat_success", k.chat_success)?;
    d.set_item("chat_failure", k.chat_failure)?;
    d.set_item("shared_meals", k.shared_meals)?;
    d.set_item("invalid_actions", k.invalid_actions)?;
    Ok(d)
}

/// Events as columns: tick, kind, agent, other, object, value (-1 = none).
pub fn event_columns<'py>(py: Python<'py>, ev: &[Event]) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(
        "tick",
        Array1::from_iter(ev.iter().map(|e| e.tick)).into_pyarray(py),
    )?;
    d.set_item(
        "kind",
        Array1::from_iter(ev.iter().map(|e| e.kind as u16)).into_pyarray(py),
    )?;
    d.set_item(
        "agent",
        Array1::from_iter(ev.iter().map(|e| e.agent)).into_pyarray(py),
    )?;
    d.set_item(
        "other",
        Array1::from_iter(ev.iter().map(|e| e.other)).into_pyarray(py),
    )?;
    d.set_item(
        "object",
        Array1::from_iter(ev.iter().map(|e| e.object)).into_pyarray(py),
    )?;
    d.set_item(
        "value",
        Array1::from_iter(ev.iter().map(|e| e.value)).into_pyarray(py),
    )?;
    Ok(d)
}

/// The observation metadata record (the keys `observation_metadata()` gives in Python).
pub fn spec_dict<'py>(py: Python<'py>, s: &ObsSpec) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("variant", s.variant.name())?;
    d.set_item("map_shape", s.map_shape.to_vec())?;
    d.set_item("map_channels", s.map_channels.clone())?;
    d.set_item("feature_names", s.feature_names.clone())?;
    d.set_item("n_features", s.n_features())?;
    d.set_item("obs_dim", s.obs_dim)?;
    d.set_item("action_names", s.action_names.clone())?;
    d.set_item("observation_schema_version", s.observation_schema_version)?;
    d.set_item("action_space_version", s.action_space_version)?;
    d.set_item("config_id", s.config_id.clone())?;
    d.set_item("manifest_checksum", s.manifest_checksum.clone())?;
    Ok(d)
}
