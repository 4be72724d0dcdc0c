//! `draw_actions`: the collector's action draw (`townlet_core::draw`), into the caller's arrays.

use crate::arrays::c_order;
use crate::errors::value_err;
use numpy::{PyReadonlyArray2, PyReadwriteArray1, PyUntypedArrayMethods};
use pyo3::prelude::*;
use townlet_core::draw;

/// Draw one action per row of `logits` (rows, actions) float32 into `actions` (rows,) int64, with
/// its log-probability under the row's softmax into `log_probs` (rows,) float32. Row r's draw
/// depends on (`key`, r, its logits) alone; a logit of about -1e8 (masked) is never drawn, nor, with `masks`
/// (rows, actions) bool, an action it does not allow.
#[pyfunction]
#[pyo3(signature = (logits, key, actions, log_probs, masks = None))]
pub fn draw_actions(
    py: Python<'_>,
    logits: PyReadonlyArray2<'_, f32>,
    key: u64,
    mut actions: PyReadwriteArray1<'_, i64>,
    mut log_probs: PyReadwriteArray1<'_, f32>,
    masks: Option<PyReadonlyArray2<'_, bool>>,
) -> PyResult<()> {
    c_order(&[("logits", logits.is_c_contiguous())])?;
    if let Some(m) = &masks {
        c_order(&[("masks", m.is_c_contiguous())])?;
    }
    let width = logits.shape()[1];
    let l = logits.as_slice()?;
    let m = masks.as_ref().map(|m| m.as_slice()).transpose()?;
    let (a, p) = (actions.as_slice_mut()?, log_probs.as_slice_mut()?);
    py.detach(|| draw::draw_actions(l, width, key, a, p, m))
        .map_err(value_err)
}
