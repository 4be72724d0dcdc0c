//! `RolloutBuffer`: the core's rollout buffer with its columns in numpy arrays, so that Python
//! reads (and may write) them without copies; and `compute_gae` over caller arrays.

use crate::arrays::{array2, c_order, check_len};
use crate::errors::value_err;
use numpy::{
    PyArray1, PyArray2, PyArray3, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use townlet_core::rollout::{self, Columns, RolloutDims, Step, Storage};

/// The buffer's columns as numpy arrays (see `townlet_core::rollout::Columns` for the shapes).
struct NumpyColumns {
    obs: Py<PyArray3<f32>>,
    masks: Py<PyArray3<bool>>,
    actions: Py<PyArray2<i64>>,
    log_probs: Py<PyArray2<f32>>,
    values: Py<PyArray2<f32>>,
    rewards: Py<PyArray2<f32>>,
    terminated: Py<PyArray2<bool>>,
    truncated: Py<PyArray2<bool>>,
    valid: Py<PyArray2<bool>>,
    bootstrap: Py<PyArray2<f32>>,
    advantages: Py<PyArray2<f32>>,
    returns: Py<PyArray2<f32>>,
}

impl NumpyColumns {
    fn zeros(py: Python<'_>, d: RolloutDims) -> Self {
        let (steps, agents) = (d.steps, d.agents);
        let z2f = || PyArray2::<f32>::zeros(py, [steps, agents], false).unbind();
        let z2b = || PyArray2::<bool>::zeros(py, [steps, agents], false).unbind();
        Self {
            obs: PyArray3::<f32>::zeros(py, [steps, agents, d.obs_dim], false).unbind(),
            masks: PyArray3::<bool>::zeros(py, [steps, agents, d.n_actions], false).unbind(),
            actions: PyArray2::<i64>::zeros(py, [steps, agents], false).unbind(),
            log_probs: z2f(),
            values: z2f(),
            rewards: z2f(),
            terminated: z2b(),
            truncated: z2b(),
            valid: z2b(),
            bootstrap: z2f(),
            advantages: z2f(),
            returns: z2f(),
        }
    }
}

impl Storage for NumpyColumns {
    fn with_columns<R>(&mut self, f: impl FnOnce(Columns<'_>) -> R) -> R {
        Python::attach(|py| {
            // The arrays were created C-ordered here and numpy cannot reshape them in place.
            let (mut obs, mut masks) = (
                self.obs.bind(py).readwrite(),
                self.masks.bind(py).readwrite(),
            );
            let mut actions = self.actions.bind(py).readwrite();
            let mut bools =
                [&self.terminated, &self.truncated, &self.valid].map(|a| a.bind(py).readwrite());
            let mut floats = [
                &self.log_probs,
                &self.values,
                &self.rewards,
                &self.bootstrap,
                &self.advantages,
                &self.returns,
            ]
            .map(|a| a.bind(py).readwrite());
            let [terminated, truncated, valid] = bools
                .each_mut()
                .map(|a| a.as_slice_mut().expect(CONTIGUOUS));
            let [log_probs, values, rewards, bootstrap, advantages, returns] = floats
                .each_mut()
                .map(|a| a.as_slice_mut().expect(CONTIGUOUS));
            f(Columns {
                obs: obs.as_slice_mut().expect(CONTIGUOUS),
                masks: masks.as_slice_mut().expect(CONTIGUOUS),
                actions: actions.as_slice_mut().expect(CONTIGUOUS),
                log_probs,
                values,
                rewards,
                terminated,
                truncated,
                valid,
                bootstrap,
                advantages,
                returns,
            })
        })
    }
}

const CONTIGUOUS: &str = "buffer arrays are C-contiguous";

/// Aligned rollout storage (steps x agents) kept in numpy arrays that Python reads without copies,
/// filled one step at a time, with GAE computed in Rust.
#[pyclass(module = "townlet._core")]
pub struct RolloutBuffer {
    buf: rollout::RolloutBuffer<NumpyColumns>,
}

#[pymethods]
impl RolloutBuffer {
    #[new]
    fn new(
        py: Python<'_>,
        steps: usize,
        agents: usize,
        obs_dim: usize,
        n_actions: usize,
    ) -> PyResult<Self> {
        let dims = RolloutDims::new(steps, agents, obs_dim, n_actions).map_err(value_err)?;
        Ok(Self {
            buf: rollout::RolloutBuffer::with_storage(dims, NumpyColumns::zeros(py, dims)),
        })
    }

    #[getter]
    fn steps(&self) -> usize {
        self.buf.dims().steps
    }
    #[getter]
    fn agents(&self) -> usize {
        self.buf.dims().agents
    }
    #[getter]
    fn obs_dim(&self) -> usize {
        self.buf.dims().obs_dim
    }
    #[getter]
    fn n_actions(&self) -> usize {
        self.buf.dims().n_actions
    }
    fn __len__(&self) -> usize {
        self.buf.len()
    }
    #[getter]
    fn full(&self) -> bool {
        self.buf.is_full()
    }
    fn clear(&mut self) {
        self.buf.clear();
    }

    /// Append one step (every array has one row per agent; obs (agents, obs_dim), masks
    /// (agents, n_actions)). `bootstrap` holds v(final observation) where `truncated`.
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        obs: PyReadonlyArray2<'_, f32>,
        masks: PyReadonlyArray2<'_, bool>,
        actions: PyReadonlyArray1<'_, i64>,
        log_probs: PyReadonlyArray1<'_, f32>,
        values: PyReadonlyArray1<'_, f32>,
        rewards: PyReadonlyArray1<'_, f32>,
        terminated: PyReadonlyArray1<'_, bool>,
        truncated: PyReadonlyArray1<'_, bool>,
        valid: PyReadonlyArray1<'_, bool>,
        bootstrap: PyReadonlyArray1<'_, f32>,
    ) -> PyResult<()> {
        c_order(&[
            ("obs", obs.is_c_contiguous()),
            ("masks", masks.is_c_contiguous()),
        ])?;
        self.buf.check_room().map_err(value_err)?;
        let step = Step {
            obs: obs.as_slice()?,
            masks: masks.as_slice()?,
            actions: actions.as_slice()?,
            log_probs: log_probs.as_slice()?,
            values: values.as_slice()?,
            rewards: rewards.as_slice()?,
            terminated: terminated.as_slice()?,
            truncated: truncated.as_slice()?,
            valid: valid.as_slice()?,
            bootstrap: bootstrap.as_slice()?,
        };
        self.buf.add(step).map_err(value_err)
    }

    /// GAE over the filled steps; `next_values` = v(o_T) per agent. Fills `advantages`, `returns`.
    fn compute_gae(
        &mut self,
        next_values: PyReadonlyArray1<'_, f32>,
        gamma: f32,
        gae_lambda: f32,
    ) -> PyResult<()> {
        rollout::check_discounts(gamma, gae_lambda).map_err(value_err)?;
        self.buf
            .compute_gae(next_values.as_slice()?, gamma, gae_lambda)
            .map_err(value_err)
    }

    #[getter]
    fn obs<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray3<f32>> {
        self.buf.columns.obs.bind(py).clone()
    }
    #[getter]
    fn masks<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray3<bool>> {
        self.buf.columns.masks.bind(py).clone()
    }
    #[getter]
    fn actions<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<i64>> {
        self.buf.columns.actions.bind(py).clone()
    }
    #[getter]
    fn log_probs<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f32>> {
        self.buf.columns.log_probs.bind(py).clone()
    }
    #[getter]
    fn values<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f32>> {
        self.buf.columns.values.bind(py).clone()
    }
    #[getter]
    fn rewards<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f32>> {
        self.buf.columns.rewards.bind(py).clone()
    }
    #[getter]
    fn terminated<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<bool>> {
        self.buf.columns.terminated.bind(py).clone()
    }
    #[getter]
    fn truncated<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<bool>> {
        self.buf.columns.truncated.bind(py).clone()
    }
    #[getter]
    fn valid<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<bool>> {
        self.buf.columns.valid.bind(py).clone()
    }
    #[getter]
    fn bootstrap<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f32>> {
        self.buf.columns.bootstrap.bind(py).clone()
    }
    #[getter]
    fn advantages<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f32>> {
        self.buf.columns.advantages.bind(py).clone()
    }
    #[getter]
    fn returns<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f32>> {
        self.buf.columns.returns.bind(py).clone()
    }
}

/// (advantages, returns).
type AdvantagesReturns<'py> = (Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<f32>>);

/// GAE over (steps, agents) arrays, the same code the RolloutBuffer runs; returns
/// (advantages, returns). See RolloutBuffer.compute_gae for the semantics.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn compute_gae<'py>(
    py: Python<'py>,
    rewards: PyReadonlyArray2<'py, f32>,
    values: PyReadonlyArray2<'py, f32>,
    terminated: PyReadonlyArray2<'py, bool>,
    truncated: PyReadonlyArray2<'py, bool>,
    valid: PyReadonlyArray2<'py, bool>,
    bootstrap: PyReadonlyArray2<'py, f32>,
    next_values: PyReadonlyArray1<'py, f32>,
    gamma: f32,
    gae_lambda: f32,
) -> PyResult<AdvantagesReturns<'py>> {
    c_order(&[
        ("rewards", rewards.is_c_contiguous()),
        ("values", values.is_c_contiguous()),
        ("terminated", terminated.is_c_contiguous()),
        ("truncated", truncated.is_c_contiguous()),
        ("valid", valid.is_c_contiguous()),
        ("bootstrap", bootstrap.is_c_contiguous()),
    ])?;
    let shape = rewards.shape().to_vec();
    let (steps, agents) = (shape[0], shape[1]);
    for (name, s) in [
        ("values", values.shape()),
        ("terminated", terminated.shape()),
        ("truncated", truncated.shape()),
        ("valid", valid.shape()),
        ("bootstrap", bootstrap.shape()),
    ] {
        if s != [steps, agents] {
            return Err(value_err(format!(
                "{name} has shape {s:?}, expected [{steps}, {agents}]"
            )));
        }
    }
    check_len("next_values", next_values.as_slice()?.len(), agents)?;
    rollout::check_discounts(gamma, gae_lambda).map_err(value_err)?;
    let mut adv = vec![0.0f32; steps * agents];
    let mut ret = vec![0.0f32; steps * agents];
    rollout::compute_gae(
        steps,
        agents,
        rewards.as_slice()?,
        values.as_slice()?,
        terminated.as_slice()?,
        truncated.as_slice()?,
        valid.as_slice()?,
        bootstrap.as_slice()?,
        next_values.as_slice()?,
        gamma,
        gae_lambda,
        &mut adv,
        &mut ret,
    );
    Ok((
        array2(py, steps, agents, adv),
        array2(py, steps, agents, ret),
    ))
}

type RowsAdvantagesReturns<'py> = (Bound<'py, PyArray1<f32>>, Bound<'py, PyArray1<f32>>);

/// GAE over training rows (`townlet_core::rollout::gae_rows`): `rewards`, `values`, `end_values` (rows,)
/// float32 and `next_row` (rows,) int64; returns (advantages, returns) (rows,).
#[pyfunction]
pub fn gae_rows<'py>(
    py: Python<'py>,
    rewards: PyReadonlyArray1<'py, f32>,
    values: PyReadonlyArray1<'py, f32>,
    next_row: PyReadonlyArray1<'py, i64>,
    end_values: PyReadonlyArray1<'py, f32>,
    gamma: f32,
    gae_lambda: f32,
) -> PyResult<RowsAdvantagesReturns<'py>> {
    let (r, v, next, end) = (
        rewards.as_slice()?,
        values.as_slice()?,
        next_row.as_slice()?,
        end_values.as_slice()?,
    );
    let mut adv = vec![0.0f32; r.len()];
    let mut ret = vec![0.0f32; r.len()];
    py.detach(|| rollout::gae_rows(r, v, next, end, gamma, gae_lambda, &mut adv, &mut ret))
        .map_err(value_err)?;
    Ok((PyArray1::from_vec(py, adv), PyArray1::from_vec(py, ret)))
}
