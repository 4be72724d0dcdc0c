//! `ppo_loss`: PPO's objective over one minibatch and its gradient in one pass (`townlet_core::ppo_loss`).

use crate::arrays::c_order;
use crate::errors::value_err;
use numpy::{
    PyReadonlyArray1, PyReadonlyArray2, PyReadwriteArray1, PyReadwriteArray2, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use townlet_core::ppo_loss::{self as core_loss, LossRows, LossSettings};

/// The loss over a minibatch's rows from the network's `logits` (rows, actions) float32 (before the mask) and
/// `values` (rows,), with the rollout's `masks` (rows, actions) bool, `actions` (rows,) int64, `log_probs`,
/// `proximal` (or None), `advantages`, `returns` and `old_values` (rows,) float32, and the expert's actions
/// (rows,) int64 with `expert_ok` (rows,) float32 (or None): writes d loss / d logits into `grad_logits` (rows,
/// actions) and d loss / d values into `grad_values` (rows,), and returns the terms as a dict (`loss`,
/// `pg_loss`, `v_loss`, `entropy`, `imitation`, `approx_kl`, `clipfrac`, `adv_mean`, `adv_std`).
#[pyfunction]
#[pyo3(signature = (
    logits, values, masks, actions, log_probs, proximal, advantages, returns, old_values, expert, expert_ok,
    *, clip_coef, value_clip, norm_adv, ent_coef, vf_coef, kickstart_coef, grad_logits, grad_values
))]
#[allow(clippy::too_many_arguments)]
pub fn ppo_loss<'py>(
    py: Python<'py>,
    logits: PyReadonlyArray2<'py, f32>,
    values: PyReadonlyArray1<'py, f32>,
    masks: PyReadonlyArray2<'py, bool>,
    actions: PyReadonlyArray1<'py, i64>,
    log_probs: PyReadonlyArray1<'py, f32>,
    proximal: Option<PyReadonlyArray1<'py, f32>>,
    advantages: PyReadonlyArray1<'py, f32>,
    returns: PyReadonlyArray1<'py, f32>,
    old_values: PyReadonlyArray1<'py, f32>,
    expert: Option<PyReadonlyArray1<'py, i64>>,
    expert_ok: Option<PyReadonlyArray1<'py, f32>>,
    clip_coef: f32,
    value_clip: Option<f32>,
    norm_adv: bool,
    ent_coef: f32,
    vf_coef: f32,
    kickstart_coef: f32,
    mut grad_logits: PyReadwriteArray2<'py, f32>,
    mut grad_values: PyReadwriteArray1<'py, f32>,
) -> PyResult<Bound<'py, PyDict>> {
    for (name, shape) in [
        ("masks", masks.shape()),
        ("grad_logits", grad_logits.shape()),
    ] {
        if shape != logits.shape() {
            return Err(value_err(format!(
                "{name} has shape {shape:?}, logits {:?}",
                logits.shape()
            )));
        }
    }
    c_order(&[
        ("logits", logits.is_c_contiguous()),
        ("masks", masks.is_c_contiguous()),
        ("grad_logits", grad_logits.is_c_contiguous()),
    ])?;
    let expert = match (&expert, &expert_ok) {
        (Some(e), Some(ok)) => Some((e.as_slice()?, ok.as_slice()?)),
        (None, None) => None,
        _ => return Err(value_err("expert and expert_ok come together")),
    };
    let rows = LossRows {
        logits: logits.as_slice()?,
        masks: masks.as_slice()?,
        actions: actions.as_slice()?,
        log_probs: log_probs.as_slice()?,
        proximal: proximal.as_ref().map(|p| p.as_slice()).transpose()?,
        advantages: advantages.as_slice()?,
        returns: returns.as_slice()?,
        old_values: old_values.as_slice()?,
        values: values.as_slice()?,
        expert,
    };
    let settings = LossSettings {
        clip_coef,
        value_clip,
        norm_adv,
        ent_coef,
        vf_coef,
        kickstart_coef,
    };
    let (gl, gv) = (grad_logits.as_slice_mut()?, grad_values.as_slice_mut()?);
    let t = py
        .detach(|| core_loss::ppo_loss(&rows, &settings, gl, gv))
        .map_err(value_err)?;
    let out = PyDict::new(py);
    for (k, v) in [
        ("loss", t.loss),
        ("pg_loss", t.pg_loss),
        ("v_loss", t.v_loss),
        ("entropy", t.entropy),
        ("imitation", t.imitation),
        ("approx_kl", t.approx_kl),
        ("clipfrac", t.clipfrac),
        ("adv_mean", t.adv_mean),
        ("adv_std", t.adv_std),
    ] {
        out.set_item(k, v)?;
    }
    Ok(out)
}
