//! Checks on the numpy arrays callers hand over, and small builders for the arrays handed back.

use crate::errors::value_err;
use numpy::ndarray::Array2;
use numpy::{Element, IntoPyArray, PyArray2};
use pyo3::prelude::*;

/// A 2-D or 3-D array handed over as a flat slice must be row-major: a Fortran-ordered array is
/// contiguous too, but its rows are not where the slice puts them.
pub fn c_order(arrays: &[(&str, bool)]) -> PyResult<()> {
    match arrays.iter().find(|(_, c)| !c) {
        Some((name, _)) => Err(value_err(format!(
            "{name} must be a C-ordered (row-major) contiguous array"
        ))),
        None => Ok(()),
    }
}

/// An error naming `name` unless it has `want` elements.
pub fn check_len(name: &str, got: usize, want: usize) -> PyResult<()> {
    townlet_core::checks::check_len(name, got, want).map_err(value_err)
}

/// An error naming `name` unless its shape is `want` (for the dims given) and it is C-ordered.
pub fn check_shape(
    name: &str,
    shape: &[usize],
    c_contiguous: bool,
    want: &[usize],
) -> PyResult<()> {
    if shape != want {
        return Err(value_err(format!(
            "{name} has shape {shape:?}, expected {want:?}"
        )));
    }
    // A Fortran-ordered array is contiguous too, but its rows are not where they belong.
    if !c_contiguous {
        return Err(value_err(format!("{name} must be C-contiguous")));
    }
    Ok(())
}

/// A new (rows, cols) array from row-major values.
pub fn array2<'py, T: Element>(
    py: Python<'py>,
    rows: usize,
    cols: usize,
    values: Vec<T>,
) -> Bound<'py, PyArray2<T>> {
    Array2::from_shape_vec((rows, cols), values)
        .expect("rows * cols values")
        .into_pyarray(py)
}
