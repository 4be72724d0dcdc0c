//! The learner's bfloat16 passes, each into a caller's array with the GIL released: `slab_rows`
//! (its input rows gathered from float32 observations, `townlet_core::slabs`) and
//! `relu_backward` (the gradient through a ReLU layer and its column sums, `townlet_core::relu`),
//! and `heads_forward` / `heads_backward` (the float32 heads over the last hidden layer, `townlet_core::heads`).

use crate::arrays::{c_order, check_len, check_shape};
use crate::errors::value_err;
use numpy::{
    PyReadonlyArray1, PyReadonlyArray2, PyReadwriteArray1, PyReadwriteArray2, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use townlet_core::heads::{self, HeadGrads, HeadWeights};
use townlet_core::relu;
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
    let want = out.shape().to_vec();
    for (name, shape, c) in [
        ("out", out.shape(), out.is_c_contiguous()),
        ("grad", grad.shape(), grad.is_c_contiguous()),
        ("dst", dst.shape(), dst.is_c_contiguous()),
    ] {
        check_shape(name, shape, c, &want)?;
    }
    check_len("col_sums", col_sums.len(), want[1])?;
    let (g, o) = (grad.as_slice()?, out.as_slice()?);
    let (d, s) = (dst.as_slice_mut()?, col_sums.as_slice_mut()?);
    py.detach(|| relu::relu_backward(g, o, d, s))
        .map_err(value_err)
}

/// The policy's float32 heads over its bfloat16 hidden layer `h` (rows, 2 * half; bits as uint16): `logits`
/// (rows, actions) and `values` (rows,) from `policy` (actions, half), `policy_bias` (actions,), `value` (1, half)
/// and `value_bias` (1,) (`townlet_core::heads::heads_forward`).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn heads_forward(
    py: Python<'_>,
    h: PyReadonlyArray2<'_, u16>,
    policy: PyReadonlyArray2<'_, f32>,
    policy_bias: PyReadonlyArray1<'_, f32>,
    value: PyReadonlyArray2<'_, f32>,
    value_bias: PyReadonlyArray1<'_, f32>,
    mut logits: PyReadwriteArray2<'_, f32>,
    mut values: PyReadwriteArray1<'_, f32>,
) -> PyResult<()> {
    let (rows, half, actions) = (values.len(), value.shape()[1], policy_bias.len());
    for (name, shape, c, want) in [
        ("h", h.shape(), h.is_c_contiguous(), [rows, 2 * half]),
        (
            "policy",
            policy.shape(),
            policy.is_c_contiguous(),
            [actions, half],
        ),
        ("value", value.shape(), value.is_c_contiguous(), [1, half]),
        (
            "logits",
            logits.shape(),
            logits.is_c_contiguous(),
            [rows, actions],
        ),
    ] {
        check_shape(name, shape, c, &want)?;
    }
    check_len("value_bias", value_bias.len(), 1)?;
    let w = HeadWeights {
        policy: policy.as_slice()?,
        policy_bias: policy_bias.as_slice()?,
        value: value.as_slice()?,
        value_bias: value_bias.as_slice()?[0],
    };
    let hb = h.as_slice()?;
    let (l, v) = (logits.as_slice_mut()?, values.as_slice_mut()?);
    py.detach(|| heads::heads_forward(hb, &w, l, v))
        .map_err(value_err)
}

/// The heads' backward (`townlet_core::heads::heads_backward`): from `g_logits` (rows, actions) and `g_values`
/// (rows,), writes the hidden layer's masked bfloat16 gradient `g_hidden` (as `h`), its float32 column sums
/// `hidden_bias` (2 * half,), and the heads' weight gradients `g_policy`, `g_policy_bias`, `g_value` and
/// `g_value_bias` (the weights' shapes).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn heads_backward(
    py: Python<'_>,
    g_logits: PyReadonlyArray2<'_, f32>,
    g_values: PyReadonlyArray1<'_, f32>,
    h: PyReadonlyArray2<'_, u16>,
    policy: PyReadonlyArray2<'_, f32>,
    value: PyReadonlyArray2<'_, f32>,
    mut g_hidden: PyReadwriteArray2<'_, u16>,
    mut hidden_bias: PyReadwriteArray1<'_, f32>,
    mut g_policy: PyReadwriteArray2<'_, f32>,
    mut g_policy_bias: PyReadwriteArray1<'_, f32>,
    mut g_value: PyReadwriteArray2<'_, f32>,
    mut g_value_bias: PyReadwriteArray1<'_, f32>,
) -> PyResult<()> {
    let (rows, half, actions) = (g_values.len(), value.shape()[1], g_policy_bias.len());
    for (name, shape, c, want) in [
        (
            "g_logits",
            g_logits.shape(),
            g_logits.is_c_contiguous(),
            [rows, actions],
        ),
        ("h", h.shape(), h.is_c_contiguous(), [rows, 2 * half]),
        (
            "policy",
            policy.shape(),
            policy.is_c_contiguous(),
            [actions, half],
        ),
        ("value", value.shape(), value.is_c_contiguous(), [1, half]),
        (
            "g_hidden",
            g_hidden.shape(),
            g_hidden.is_c_contiguous(),
            [rows, 2 * half],
        ),
        (
            "g_policy",
            g_policy.shape(),
            g_policy.is_c_contiguous(),
            [actions, half],
        ),
        (
            "g_value",
            g_value.shape(),
            g_value.is_c_contiguous(),
            [1, half],
        ),
    ] {
        check_shape(name, shape, c, &want)?;
    }
    check_len("g_value_bias", g_value_bias.len(), 1)?;
    let weights = (policy.as_slice()?, value.as_slice()?);
    let (gl, gv, hb) = (g_logits.as_slice()?, g_values.as_slice()?, h.as_slice()?);
    let (gh, sums) = (g_hidden.as_slice_mut()?, hidden_bias.as_slice_mut()?);
    let grads = HeadGrads {
        policy: g_policy.as_slice_mut()?,
        policy_bias: g_policy_bias.as_slice_mut()?,
        value: g_value.as_slice_mut()?,
        value_bias: &mut g_value_bias.as_slice_mut()?[0],
    };
    py.detach(|| heads::heads_backward(gl, gv, hb, weights, gh, sums, grads))
        .map_err(value_err)
}
