//! The learner's bfloat16 passes, each into a caller's array with the GIL released: `slab_rows`
//! (its input rows gathered from float32 observations, `townlet_core::slabs`) and
//! `relu_backward` / `relu_backward_halves` (the gradient through a ReLU layer and its column
//! sums, `townlet_core::relu`).

use crate::arrays::c_order;
use crate::errors::value_err;
use numpy::{
    PyReadonlyArray1, PyReadonlyArray2, PyReadwriteArray1, PyReadwriteArray2, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use townlet_core::relu::{self, Grad};
use townlet_core::slabs::{self, Placement, SlabLayout};

/// Write observation `rows[k]` of `obs` (N, C*H*W + F) float32 as learner row `k` of `out`
/// (len(rows), out_rows*C*3*W + F) bfloat16 bits (uint16): each stride-2 output row's slab of
/// map rows, zero outside the map, then the features. `map_shape` = (C, H, W). `blocks`: every
/// row's slabs first, then every row's features (`townlet_core::slabs::Placement::Blocks`).
#[pyfunction]
#[pyo3(signature = (obs, rows, map_shape, out, blocks = false))]
pub fn slab_rows(
    py: Python<'_>,
    obs: PyReadonlyArray2<'_, f32>,
    rows: PyReadonlyArray1<'_, i64>,
    map_shape: (usize, usize, usize),
    mut out: PyReadwriteArray2<'_, u16>,
    blocks: bool,
) -> PyResult<()> {
    c_order(&[
        ("obs", obs.is_c_contiguous()),
        ("rows", rows.is_c_contiguous()),
        ("out", out.is_c_contiguous()),
    ])?;
    let (channels, height, width) = map_shape;
    let map_len = channels * height * width;
    let obs_dim = obs.shape()[1];
    if obs_dim < map_len {
        return Err(value_err(format!(
            "obs has {obs_dim} columns, fewer than the map's {map_len}"
        )));
    }
    let layout = SlabLayout {
        channels,
        height,
        width,
        features: obs_dim - map_len,
    };
    if out.shape()[1] != layout.row_len() {
        return Err(value_err(format!(
            "out has {} columns, expected {}",
            out.shape()[1],
            layout.row_len()
        )));
    }
    let (o, r, dst) = (obs.as_slice()?, rows.as_slice()?, out.as_slice_mut()?);
    let placement = if blocks {
        Placement::Blocks
    } else {
        Placement::Rows
    };
    py.detach(|| slabs::slab_rows(o, r, layout, placement, dst))
        .map_err(value_err)
}

/// The gradient through a ReLU layer: `dst = grad` where `out` (the layer's output) is positive,
/// else 0, and `col_sums` (float32, one per column) the columns' sums of `dst`. `grad`, `out`
/// and `dst` are (rows, cols) bfloat16 bits (uint16).
#[pyfunction]
pub fn relu_backward(
    py: Python<'_>,
    grad: PyReadonlyArray2<'_, u16>,
    out: PyReadonlyArray2<'_, u16>,
    mut dst: PyReadwriteArray2<'_, u16>,
    mut col_sums: PyReadwriteArray1<'_, f32>,
) -> PyResult<()> {
    layer_shapes(
        out.shape(),
        &[("grad", grad.shape()), ("dst", dst.shape())],
        col_sums.len(),
    )?;
    c_order(&[
        ("grad", grad.is_c_contiguous()),
        ("out", out.is_c_contiguous()),
        ("dst", dst.is_c_contiguous()),
    ])?;
    let (g, o) = (grad.as_slice()?, out.as_slice()?);
    let (d, s) = (dst.as_slice_mut()?, col_sums.as_slice_mut()?);
    py.detach(|| relu::relu_backward(Grad::Bf16(g), o, d, s))
        .map_err(value_err)
}

/// `relu_backward` of a float32 gradient given as two blocks side by side, `left` (rows,
/// cols_left) and `right` (rows, cols - cols_left), each value rounded to bfloat16 first.
#[pyfunction]
pub fn relu_backward_halves(
    py: Python<'_>,
    left: PyReadonlyArray2<'_, f32>,
    right: PyReadonlyArray2<'_, f32>,
    out: PyReadonlyArray2<'_, u16>,
    mut dst: PyReadwriteArray2<'_, u16>,
    mut col_sums: PyReadwriteArray1<'_, f32>,
) -> PyResult<()> {
    let (rows, cols) = (out.shape()[0], out.shape()[1]);
    let (l, r) = (left.shape(), right.shape());
    if l[0] != rows || r[0] != rows || l[1] + r[1] != cols {
        return Err(value_err(format!(
            "left {l:?} and right {r:?} do not make out's shape [{rows}, {cols}] side by side"
        )));
    }
    layer_shapes(out.shape(), &[("dst", dst.shape())], col_sums.len())?;
    c_order(&[
        ("left", left.is_c_contiguous()),
        ("right", right.is_c_contiguous()),
        ("out", out.is_c_contiguous()),
        ("dst", dst.is_c_contiguous()),
    ])?;
    let (gl, gr, o) = (left.as_slice()?, right.as_slice()?, out.as_slice()?);
    let (d, s) = (dst.as_slice_mut()?, col_sums.as_slice_mut()?);
    let grad = Grad::F32Halves {
        left: gl,
        right: gr,
    };
    py.detach(|| relu::relu_backward(grad, o, d, s))
        .map_err(value_err)
}

/// An error unless each named array has `out`'s shape and `out` has `cols` columns.
fn layer_shapes(out: &[usize], others: &[(&str, &[usize])], cols: usize) -> PyResult<()> {
    if out[1] != cols {
        return Err(value_err(format!(
            "out has {} columns, col_sums {cols}",
            out[1]
        )));
    }
    match others.iter().find(|(_, shape)| *shape != out) {
        Some((name, shape)) => Err(value_err(format!(
            "{name} has shape {shape:?}, out {out:?}"
        ))),
        None => Ok(()),
    }
}
