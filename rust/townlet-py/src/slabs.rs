//! `slab_rows`: the learner's bfloat16 input rows gathered from float32 observations
//! (`townlet_core::slabs`), written into a caller's array with the GIL released.

use crate::arrays::c_order;
use crate::errors::value_err;
use numpy::{PyReadonlyArray1, PyReadonlyArray2, PyReadwriteArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
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
