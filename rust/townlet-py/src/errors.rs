//! Every mapping of a core error to a Python exception, in one place.
//!
//! * config validation (`townlet_core::ConfigError`) -> `ConfigError` with `.path` and `.detail`;
//! * a snapshot or town state that cannot be restored -> `SnapshotError`;
//! * a bad argument (shape, length, range, unknown name) -> `ValueError`;
//! * an agent or town index out of range -> `IndexError`.

use pyo3::create_exception;
use pyo3::exceptions::{PyIndexError, PyValueError};
use pyo3::prelude::*;

create_exception!(
    _core,
    ConfigError,
    PyValueError,
    "A world config failed validation; `.path` names the key."
);
create_exception!(
    _core,
    SnapshotError,
    PyValueError,
    "A snapshot could not be restored."
);

/// A config validation error, with the key path and the bare message as attributes.
pub fn config_err(e: townlet_core::ConfigError) -> PyErr {
    Python::attach(|py| {
        let err = ConfigError::new_err(e.to_string());
        let value = err.value(py);
        let _ = value.setattr("path", e.path.clone());
        let _ = value.setattr("detail", e.message.clone());
        err
    })
}

pub fn snapshot_err(message: String) -> PyErr {
    SnapshotError::new_err(message)
}

/// A rejected argument or operation: the core's message as a `ValueError`.
pub fn value_err(message: impl Into<String>) -> PyErr {
    PyValueError::new_err(message.into())
}

/// `what index` is not below `len`.
pub fn index_err(what: &str, index: usize, len: usize) -> PyErr {
    PyIndexError::new_err(format!("{what} {index} out of range (0..{len})"))
}
