//! Thin pyo3 glue: config in, numpy arrays out, errors mapped to Python exceptions.
//! No game logic lives here; the GIL is released around every tick batch.

use numpy::ndarray::{Array1, Array2};
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArray3, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyReadwriteArray1, PyReadwriteArray2, PyReadwriteArray3, PyUntypedArrayMethods,
};
use pyo3::create_exception;
use pyo3::exceptions::{PyIndexError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::sync::Arc;
use townlet_core::obs::OBSERVATION_SCHEMA_VERSION;
use townlet_core::rewards::{N_REWARD_COMPONENTS, REWARD_COMPONENTS};
use townlet_core::state::{Phase, ShiftState};
use townlet_core::statics::ACTION_SPACE_VERSION;
use townlet_core::vec::{Buffers, VecWorld};
use townlet_core::{Actions, EventKind, Statics, World};

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

fn config_err(e: townlet_core::ConfigError) -> PyErr {
    Python::attach(|py| {
        let err = ConfigError::new_err(e.to_string());
        let value = err.value(py);
        let _ = value.setattr("path", e.path.clone());
        let _ = value.setattr("detail", e.message.clone());
        err
    })
}

/// Trust, familiarity and rivalry matrices.
type Ties<'py> = (
    Bound<'py, PyArray2<f32>>,
    Bound<'py, PyArray2<f32>>,
    Bound<'py, PyArray2<f32>>,
);

/// One simulated town.
#[pyclass(module = "townlet._core")]
struct Town {
    w: World,
    layout: Option<townlet_core::obs::ObsLayout>,
}

impl Town {
    fn agent(&self, index: usize) -> PyResult<usize> {
        if index >= self.w.n_agents() {
            return Err(PyIndexError::new_err(format!(
                "agent index {index} out of range (0..{})",
                self.w.n_agents()
            )));
        }
        Ok(index)
    }
}

#[pymethods]
impl Town {
    /// Build town `town` of the run described by `config_json` (the resolved world config).
    #[new]
    #[pyo3(signature = (config_json, town = 0, record_events = false))]
    fn new(config_json: &str, town: u64, record_events: bool) -> PyResult<Self> {
        let mut w = World::from_json(config_json, town).map_err(config_err)?;
        w.set_record_events(record_events);
        Ok(Self { w, layout: None })
    }

    /// Restore a snapshot. With `config_json`, the snapshot must have been taken with that config.
    #[staticmethod]
    #[pyo3(signature = (snapshot_json, config_json = None, record_events = false))]
    fn from_snapshot(
        snapshot_json: &str,
        config_json: Option<&str>,
        record_events: bool,
    ) -> PyResult<Self> {
        let expected = match config_json {
            Some(c) => Some(std::sync::Arc::new(townlet_core::Statics::build(
                townlet_core::parse_world_config(c).map_err(config_err)?,
            ))),
            None => None,
        };
        let mut w =
            World::from_snapshot(snapshot_json, expected).map_err(SnapshotError::new_err)?;
        w.set_record_events(record_events);
        Ok(Self { w, layout: None })
    }

    /// Advance `ticks` ticks with the scripted policy, or one tick with the given actions
    /// (one per agent slot). The GIL is released while the town runs.
    #[pyo3(signature = (ticks = 1, actions = None))]
    fn step(
        &mut self,
        py: Python<'_>,
        ticks: u64,
        actions: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        match actions {
            None => {
                let w = &mut self.w;
                py.detach(|| w.run(ticks, Actions::Policy));
            }
            Some(obj) => {
                let arr: PyReadonlyArray1<'_, i64> = obj.extract().map_err(|_| {
                    let attr = |name: &str| {
                        obj.getattr(name)
                            .and_then(|v| v.str().map(|s| s.to_string()))
                            .ok()
                    };
                    let got = match (attr("shape"), attr("dtype")) {
                        (Some(shape), Some(dtype)) => {
                            format!("an array with shape {shape} and dtype {dtype}")
                        }
                        _ => format!(
                            "a {}",
                            obj.get_type()
                                .name()
                                .map(|n| n.to_string())
                                .unwrap_or_default()
                        ),
                    };
                    PyValueError::new_err(format!(
                        "actions must be a 1-D int64 numpy array with one action per agent ({}), got {got}",
                        self.w.n_agents(),
                    ))
                })?;
                if ticks != 1 {
                    return Err(PyValueError::new_err(
                        "given actions drive exactly one tick; pass ticks=1",
                    ));
                }
                let n = self.w.n_agents();
                let n_actions = self.w.s.n_actions() as i64;
                let view = arr.as_slice()?;
                if view.len() != n {
                    return Err(PyValueError::new_err(format!(
                        "expected {n} actions (one per agent), got {}",
                        view.len()
                    )));
                }
                let mut acts = Vec::with_capacity(n);
                for (i, &a) in view.iter().enumerate() {
                    if a < 0 || a >= n_actions {
                        return Err(PyValueError::new_err(format!(
                            "action {a} for agent {i} is outside [0, {n_actions})"
                        )));
                    }
                    acts.push(a as u16);
                }
                let w = &mut self.w;
                py.detach(|| w.step(Actions::Given(&acts)));
            }
        }
        Ok(())
    }

    #[getter]
    fn tick(&self) -> u64 {
        self.w.tick()
    }
    #[getter]
    fn n_agents(&self) -> usize {
        self.w.n_agents()
    }
    /// Observation layout: (variant, (C, H, W), channel names, feature names).
    fn obs_spec(
        &mut self,
    ) -> (
        String,
        (usize, usize, usize),
        Vec<&'static str>,
        Vec<String>,
    ) {
        let s = std::sync::Arc::clone(&self.w.s);
        let layout = self
            .layout
            .get_or_insert_with(|| townlet_core::obs::ObsLayout::build(&s));
        let [c, h, w] = layout.map_shape();
        let variant = match layout.variant {
            townlet_core::config::ObsVariant::Hybrid => "hybrid",
            townlet_core::config::ObsVariant::Full => "full",
            townlet_core::config::ObsVariant::Compact => "compact",
        };
        (
            variant.to_string(),
            (c, h, w),
            layout.channels.clone(),
            layout.feature_names.clone(),
        )
    }
    /// Write every agent's observation (agents, obs_dim) and action mask (agents, actions).
    fn observe(
        &mut self,
        mut obs: PyReadwriteArray2<'_, f32>,
        mut masks: PyReadwriteArray2<'_, bool>,
    ) -> PyResult<()> {
        c_order(&[
            ("obs", obs.is_c_contiguous()),
            ("masks", masks.is_c_contiguous()),
        ])?;
        let s = std::sync::Arc::clone(&self.w.s);
        let layout = self
            .layout
            .get_or_insert_with(|| townlet_core::obs::ObsLayout::build(&s));
        let (n, a) = (self.w.n_agents(), s.n_actions());
        let d = layout.map_len() + layout.n_features();
        let o = obs.as_slice_mut()?;
        let m = masks.as_slice_mut()?;
        check_len("obs", o.len(), n * d)?;
        check_len("masks", m.len(), n * a)?;
        for i in 0..n {
            let (map, feats) = o[i * d..(i + 1) * d].split_at_mut(layout.map_len());
            self.w
                .write_observation(layout, i, map, feats, &mut m[i * a..(i + 1) * a]);
        }
        Ok(())
    }
    #[getter]
    fn ticks_per_day(&self) -> u32 {
        self.w.s.cfg.world.ticks_per_day
    }
    #[getter]
    fn config_id(&self) -> String {
        self.w.s.cfg.config_id.clone()
    }
    #[getter]
    fn seed(&self) -> u64 {
        self.w.s.cfg.seed
    }
    #[getter]
    fn config_hash(&self) -> String {
        self.w.s.config_hash.clone()
    }
    #[getter]
    fn manifest_checksum(&self) -> String {
        self.w.s.manifest_checksum.clone()
    }
    #[getter]
    fn action_space_version(&self) -> &'static str {
        ACTION_SPACE_VERSION
    }
    #[getter]
    fn grid_shape(&self) -> (i32, i32) {
        (self.w.s.grid.height, self.w.s.grid.width)
    }

    /// Current agent ids, with lineage suffixes after respawns (`alice#2`).
    fn agent_ids(&self) -> Vec<String> {
        self.w.st.agents.iter().map(|a| a.display_id()).collect()
    }
    fn action_names(&self) -> Vec<String> {
        self.w.s.action_names.clone()
    }
    fn object_ids(&self) -> Vec<String> {
        self.w.s.objects.iter().map(|o| o.id.clone()).collect()
    }
    fn object_types(&self) -> Vec<String> {
        self.w
            .s
            .objects
            .iter()
            .map(|o| self.w.s.types[o.type_idx].name.clone())
            .collect()
    }
    fn object_positions<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<i32>> {
        let v: Vec<i32> = self.w.s.objects.iter().flat_map(|o| o.pos).collect();
        Array2::from_shape_vec((self.w.s.objects.len(), 2), v)
            .expect("shape")
            .into_pyarray(py)
    }
    fn stock_keys(&self) -> Vec<String> {
        self.w.s.stock_keys.clone()
    }
    fn price_keys(&self) -> Vec<String> {
        self.w.s.price_keys.clone()
    }
    fn event_names(&self) -> Vec<&'static str> {
        EventKind::ALL.iter().map(|k| k.name()).collect()
    }
    /// Walls as a (height, width) bool array.
    fn walls<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<bool>> {
        let g = &self.w.s.grid;
        let v: Vec<bool> = (0..g.height)
            .flat_map(|y| (0..g.width).map(move |x| g.is_wall(x, y)))
            .collect();
        Array2::from_shape_vec((g.height as usize, g.width as usize), v)
            .expect("shape")
            .into_pyarray(py)
    }

    /// Needs (hunger, hygiene, energy) as an (agents, 3) float32 array.
    fn needs<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f32>> {
        let v: Vec<f32> = self.w.st.agents.iter().flat_map(|a| a.needs).collect();
        Array2::from_shape_vec((self.w.n_agents(), 3), v)
            .expect("shape")
            .into_pyarray(py)
    }
    /// Positions (x, y) as an (agents, 2) int32 array.
    fn positions<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<i32>> {
        let v: Vec<i32> = self.w.st.agents.iter().flat_map(|a| a.pos).collect();
        Array2::from_shape_vec((self.w.n_agents(), 2), v)
            .expect("shape")
            .into_pyarray(py)
    }
    fn wallets<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        Array1::from_iter(self.w.st.agents.iter().map(|a| a.wallet)).into_pyarray(py)
    }
    fn alive<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<bool>> {
        Array1::from_iter(self.w.st.agents.iter().map(|a| a.alive)).into_pyarray(py)
    }
    /// Shift state per agent as names (idle, pre_shift, on_time, late, absent, departed, post_shift).
    fn shift_states(&self) -> Vec<&'static str> {
        self.w
            .st
            .agents
            .iter()
            .map(|a| a.emp.state.name())
            .collect()
    }
    /// Current option per agent: (affordance id or "", phase name).
    fn activities(&self) -> Vec<(String, &'static str)> {
        self.w
            .st
            .agents
            .iter()
            .map(|a| {
                let aff = if a.act.aff >= 0 {
                    self.w.s.affs[a.act.aff as usize].id.clone()
                } else {
                    String::new()
                };
                let phase = match a.act.phase {
                    Phase::Idle => "idle",
                    Phase::Walking => "walking",
                    Phase::Waiting => "waiting",
                    Phase::Holding => "holding",
                    Phase::Running => "running",
                };
                (aff, phase)
            })
            .collect()
    }
    /// Stock per object as an (objects, stock keys) uint32 array.
    fn object_stock<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<u32>> {
        let k = self.w.s.stock_keys.len();
        let v: Vec<u32> = self
            .w
            .st
            .objects
            .iter()
            .flat_map(|o| o.stock.iter().copied())
            .collect();
        Array2::from_shape_vec((self.w.st.objects.len(), k), v)
            .expect("shape")
            .into_pyarray(py)
    }
    /// Holders and waiters per object as an (objects, 2) int64 array.
    fn queue_lengths<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<i64>> {
        let v: Vec<i64> = self
            .w
            .st
            .objects
            .iter()
            .flat_map(|o| [o.holders.len() as i64, o.waiting.len() as i64])
            .collect();
        Array2::from_shape_vec((self.w.st.objects.len(), 2), v)
            .expect("shape")
            .into_pyarray(py)
    }
    /// Holders of each object as agent indices.
    fn object_holders(&self) -> Vec<Vec<u32>> {
        self.w
            .st
            .objects
            .iter()
            .map(|o| o.holders.iter().map(|h| h.agent).collect())
            .collect()
    }
    fn prices<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        Array1::from_vec(self.w.st.prices.clone()).into_pyarray(py)
    }
    /// Relationship ties as three (agents, agents) float32 arrays: trust, familiarity, rivalry.
    fn relationships<'py>(&self, py: Python<'py>) -> Ties<'py> {
        let n = self.w.n_agents();
        let pick = |f: fn(&townlet_core::state::Tie) -> f32| {
            Array2::from_shape_vec((n, n), self.w.st.ties.iter().map(f).collect()).expect("shape")
        };
        (
            pick(|t| t.trust).into_pyarray(py),
            pick(|t| t.familiarity).into_pyarray(py),
            pick(|t| t.rivalry).into_pyarray(py),
        )
    }
    /// Utilities: (power on, water on).
    fn utilities(&self) -> (bool, bool) {
        (self.w.st.power_out == 0, self.w.st.water_out == 0)
    }
    /// Valid actions per agent as an (agents, actions) bool array.
    fn action_mask<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<bool>> {
        let (n, k) = (self.w.n_agents(), self.w.s.n_actions());
        let mut m = Array2::from_elem((n, k), false);
        for (i, mut row) in m.rows_mut().into_iter().enumerate() {
            self.w
                .action_mask(i, row.as_slice_mut().expect("contiguous row"));
        }
        m.into_pyarray(py)
    }
    /// Actions applied in the last tick, and their log-probabilities under the acting policy.
    fn last_actions<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        Array1::from_iter(self.w.last_actions.iter().map(|&a| i64::from(a))).into_pyarray(py)
    }
    fn last_log_probs<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        Array1::from_vec(self.w.last_logp.clone()).into_pyarray(py)
    }
    /// Agents terminated in the last tick: (agent index, reason) pairs.
    fn terminations(&self) -> Vec<(usize, &'static str)> {
        self.w
            .st
            .agents
            .iter()
            .enumerate()
            .filter_map(|(i, a)| a.terminated.map(|r| (i, r.name())))
            .collect()
    }
    /// Event counts of the last tick, one per event name.
    fn event_counts<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u32>> {
        Array1::from_vec(self.w.st.events.tick_counts.clone()).into_pyarray(py)
    }
    /// Sums of event values (e.g. conflict intensity, chat quality) since the start.
    fn event_value_totals<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        Array1::from_vec(self.w.st.events.value_totals.clone()).into_pyarray(py)
    }
    /// Event counts since the start of the run.
    fn event_totals<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        Array1::from_vec(self.w.st.events.totals.clone()).into_pyarray(py)
    }
    #[getter]
    fn record_events(&self) -> bool {
        self.w.st.events.record
    }
    #[setter]
    fn set_record_events(&mut self, on: bool) {
        self.w.set_record_events(on);
    }
    /// Take the recorded events as columns: tick, kind, agent, other, object, value (-1 = none).
    fn drain_events<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let ev = self.w.st.events.drain();
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
    /// Events dropped because the pending list was full (drain more often).
    #[getter]
    fn events_dropped(&self) -> u64 {
        self.w.st.events.dropped
    }
    fn kpis<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        kpi_dict(py, &self.w.kpis())
    }
    /// Rewards of the last tick, one per agent.
    fn rewards<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        Array1::from_vec(self.w.rewards().to_vec()).into_pyarray(py)
    }
    /// Reward breakdown of the last tick: (agents, components) float32.
    fn reward_breakdown<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f32>> {
        Array2::from_shape_vec(
            (self.w.n_agents(), N_REWARD_COMPONENTS),
            self.w.reward_breakdown().to_vec(),
        )
        .expect("shape")
        .into_pyarray(py)
    }
    /// Money flows since the start: (wages paid, spent on affordances, penalties).
    fn money_flows(&self) -> (f64, f64, f64) {
        let s = &self.w.st.stats;
        (s.wages_paid, s.spent, s.penalties)
    }
    /// Agent-ticks stepped so far (alive agents only).
    #[getter]
    fn agent_steps(&self) -> u64 {
        self.w.st.stats.agent_steps
    }
    fn world_hash(&self) -> String {
        self.w.world_hash()
    }
    fn snapshot(&self) -> String {
        self.w.snapshot_json()
    }

    // -- console operations (the console bus in Python calls these) --------------------------------

    fn teleport(&mut self, agent: usize, x: i32, y: i32) -> PyResult<()> {
        let i = self.agent(agent)?;
        self.w.teleport(i, x, y).map_err(PyValueError::new_err)
    }
    fn set_need(&mut self, agent: usize, need: usize, value: f32) -> PyResult<()> {
        let i = self.agent(agent)?;
        self.w
            .set_need(i, need, value)
            .map_err(PyValueError::new_err)
    }
    fn set_price(&mut self, key: &str, value: f64) -> PyResult<()> {
        self.w.set_price(key, value).map_err(PyValueError::new_err)
    }
    fn set_relationship(
        &mut self,
        a: usize,
        b: usize,
        trust: f32,
        familiarity: f32,
        rivalry: f32,
    ) -> PyResult<()> {
        let (a, b) = (self.agent(a)?, self.agent(b)?);
        if a == b {
            return Err(PyValueError::new_err(
                "an agent has no relationship with itself",
            ));
        }
        self.w.set_relationship(a, b, trust, familiarity, rivalry);
        Ok(())
    }
    fn kill(&mut self, agent: usize) -> PyResult<bool> {
        let i = self.agent(agent)?;
        Ok(self.w.kill(i))
    }
    fn set_mortality(&mut self, on: bool) {
        self.w.set_mortality(on);
    }
    #[pyo3(signature = (name, starts_in = 0, duration = None, magnitude = None))]
    fn perturbation_trigger(
        &mut self,
        name: &str,
        starts_in: u32,
        duration: Option<u32>,
        magnitude: Option<f64>,
    ) -> PyResult<u32> {
        self.w
            .perturbation_trigger(name, starts_in, duration, magnitude)
            .map_err(PyValueError::new_err)
    }
    fn perturbation_cancel(&mut self, event_id: u32) -> bool {
        self.w.perturbation_cancel(event_id)
    }
    /// Active perturbations: (event id, spec name, kind, started, ends, magnitude).
    fn perturbations_active(&self) -> Vec<(u32, String, &'static str, u64, u64, f64)> {
        self.w
            .st
            .perturb
            .active
            .iter()
            .map(|p| {
                let info = &self.w.s.perturbations[p.spec];
                (
                    p.id,
                    info.name.clone(),
                    info.spec.kind_name(),
                    p.started,
                    p.ends,
                    p.magnitude,
                )
            })
            .collect()
    }
    fn employment_exit_approve(&mut self, agent: usize) -> PyResult<bool> {
        let i = self.agent(agent)?;
        Ok(self.w.employment_exit_approve(i))
    }
    fn employment_exit_defer(&mut self, agent: usize) -> PyResult<bool> {
        let i = self.agent(agent)?;
        Ok(self.w.employment_exit_defer(i))
    }
    /// Exit queue: pending (agent index, enqueued tick), exits today.
    fn employment_exit_review(&self) -> (Vec<(u32, u64)>, u32) {
        (self.w.st.exits.pending.clone(), self.w.st.exits.exits_today)
    }
    /// Employment per agent: (job or "", state, lateness counter, attendance ratio, wages earned, wages withheld).
    fn employment(&self) -> Vec<(String, &'static str, u32, f32, f64, f64)> {
        self.w
            .st
            .agents
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let j = self.w.s.agent_jobs[i];
                let job = if j >= 0 {
                    self.w.s.jobs[j as usize].name.clone()
                } else {
                    String::new()
                };
                let state = if j >= 0 {
                    a.emp.state.name()
                } else {
                    ShiftState::Idle.name()
                };
                (
                    job,
                    state,
                    a.emp.lateness_counter,
                    a.emp.attendance_ratio,
                    a.emp.wages_earned,
                    a.emp.wages_withheld,
                )
            })
            .collect()
    }
}

fn statics(config_json: &str) -> PyResult<Arc<Statics>> {
    Ok(Arc::new(Statics::build(
        townlet_core::parse_world_config(config_json).map_err(config_err)?,
    )))
}

/// A 2-D or 3-D array handed over as a flat slice must be row-major: a Fortran-ordered array is
/// contiguous too, but its rows are not where the slice puts them.
fn c_order(arrays: &[(&str, bool)]) -> PyResult<()> {
    match arrays.iter().find(|(_, c)| !c) {
        Some((name, _)) => Err(PyValueError::new_err(format!(
            "{name} must be a C-ordered (row-major) contiguous array"
        ))),
        None => Ok(()),
    }
}

fn check_len(name: &str, got: usize, want: usize) -> PyResult<()> {
    if got != want {
        return Err(PyValueError::new_err(format!(
            "{name} has {got} elements, expected {want}"
        )));
    }
    Ok(())
}

impl VecTown {
    /// `obs` (slots, obs_dim) and `masks` (slots, n_actions) as flat row-major slices, checked.
    fn obs_masks<'a>(
        &self,
        obs: &'a mut PyReadwriteArray2<'_, f32>,
        masks: &'a mut PyReadwriteArray2<'_, bool>,
    ) -> PyResult<(&'a mut [f32], &'a mut [bool])> {
        c_order(&[
            ("obs", obs.is_c_contiguous()),
            ("masks", masks.is_c_contiguous()),
        ])?;
        let n = self.v.num_envs() * self.v.agents_per_env();
        let o = obs.as_slice_mut()?;
        let m = masks.as_slice_mut()?;
        check_len("obs", o.len(), n * self.v.obs_dim())?;
        check_len("masks", m.len(), n * self.v.n_actions())?;
        Ok((o, m))
    }

    fn town(&self, env: usize) -> PyResult<&World> {
        self.v.towns.get(env).ok_or_else(|| {
            PyIndexError::new_err(format!("env {env} out of range (0..{})", self.v.num_envs()))
        })
    }
}

/// N towns x M agents stepped in one call, in parallel across towns, writing into caller arrays.
#[pyclass(module = "townlet._core")]
struct VecTown {
    v: VecWorld,
    actions: Vec<u16>,
    masked: Vec<bool>,
}

#[pymethods]
impl VecTown {
    #[new]
    #[pyo3(signature = (config_json, num_envs, seed, episode_ticks, num_threads = 0))]
    fn new(
        config_json: &str,
        num_envs: usize,
        seed: u64,
        episode_ticks: u64,
        num_threads: usize,
    ) -> PyResult<Self> {
        let v = VecWorld::new(
            statics(config_json)?,
            num_envs,
            seed,
            episode_ticks,
            num_threads,
        )
        .map_err(PyValueError::new_err)?;
        let n = v.num_envs() * v.agents_per_env();
        Ok(Self {
            v,
            actions: vec![0; n],
            masked: vec![false; n],
        })
    }

    #[getter]
    fn num_envs(&self) -> usize {
        self.v.num_envs()
    }
    #[getter]
    fn agents_per_env(&self) -> usize {
        self.v.agents_per_env()
    }
    #[getter]
    fn obs_dim(&self) -> usize {
        self.v.obs_dim()
    }
    #[getter]
    fn n_actions(&self) -> usize {
        self.v.n_actions()
    }
    #[getter]
    fn map_shape(&self) -> (usize, usize, usize) {
        let [c, h, w] = self.v.layout.map_shape();
        (c, h, w)
    }
    #[getter]
    fn n_features(&self) -> usize {
        self.v.layout.n_features()
    }
    #[getter]
    fn episode_ticks(&self) -> u64 {
        self.v.episode_ticks
    }
    #[getter]
    fn seed(&self) -> u64 {
        self.v.seed
    }
    #[getter]
    fn variant(&self) -> &'static str {
        match self.v.layout.variant {
            townlet_core::config::ObsVariant::Hybrid => "hybrid",
            townlet_core::config::ObsVariant::Full => "full",
            townlet_core::config::ObsVariant::Compact => "compact",
        }
    }
    #[getter]
    fn config_hash(&self) -> String {
        self.v.statics.config_hash.clone()
    }
    #[getter]
    fn manifest_checksum(&self) -> String {
        self.v.statics.manifest_checksum.clone()
    }
    fn channel_names(&self) -> Vec<&'static str> {
        self.v.layout.channels.clone()
    }
    fn feature_names(&self) -> Vec<String> {
        self.v.layout.feature_names.clone()
    }
    fn action_names(&self) -> Vec<String> {
        self.v.statics.action_names.clone()
    }
    fn reward_components(&self) -> Vec<&'static str> {
        REWARD_COMPONENTS.to_vec()
    }

    /// Reset every town (optionally reseeding) and fill `obs` and `masks`.
    #[pyo3(signature = (obs, masks, seed = None))]
    fn reset(
        &mut self,
        py: Python<'_>,
        mut obs: PyReadwriteArray2<'_, f32>,
        mut masks: PyReadwriteArray2<'_, bool>,
        seed: Option<u64>,
    ) -> PyResult<()> {
        let (o, m) = self.obs_masks(&mut obs, &mut masks)?;
        let v = &mut self.v;
        py.detach(|| v.reset(seed, o, m));
        Ok(())
    }

    /// Step every town one tick. The GIL is released while towns run in parallel.
    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        py: Python<'_>,
        actions: PyReadonlyArray1<'_, i64>,
        mut obs: PyReadwriteArray2<'_, f32>,
        mut masks: PyReadwriteArray2<'_, bool>,
        mut rewards: PyReadwriteArray1<'_, f32>,
        mut terminated: PyReadwriteArray1<'_, bool>,
        mut truncated: PyReadwriteArray1<'_, bool>,
        mut final_obs: PyReadwriteArray2<'_, f32>,
        mut alive: PyReadwriteArray1<'_, bool>,
        mut invalid: PyReadwriteArray1<'_, bool>,
    ) -> PyResult<()> {
        c_order(&[
            ("obs", obs.is_c_contiguous()),
            ("masks", masks.is_c_contiguous()),
            ("final_obs", final_obs.is_c_contiguous()),
        ])?;
        let n = self.v.num_envs() * self.v.agents_per_env();
        let (d, k) = (self.v.obs_dim(), self.v.n_actions() as i64);
        let acts = actions.as_slice()?;
        check_len("actions", acts.len(), n)?;
        for (dst, &a) in self.actions.iter_mut().zip(acts) {
            if a < 0 || a >= k {
                return Err(PyValueError::new_err(format!(
                    "action {a} is outside [0, {k})"
                )));
            }
            *dst = a as u16;
        }
        // The masks the agents saw (still in `masks`) decide validity: a masked action is applied
        // as `wait` and, for a live agent, flagged invalid.
        {
            let m = masks.as_slice()?;
            let live = alive.as_slice()?;
            check_len("masks", m.len(), n * k as usize)?;
            check_len("alive", live.len(), n)?;
            for (i, (act, flag)) in self
                .actions
                .iter_mut()
                .zip(self.masked.iter_mut())
                .enumerate()
            {
                let allowed = m[i * k as usize + usize::from(*act)];
                *flag = !allowed && live[i];
                if !allowed {
                    *act = 0;
                }
            }
        }
        let out = Buffers {
            obs: obs.as_slice_mut()?,
            masks: masks.as_slice_mut()?,
            rewards: rewards.as_slice_mut()?,
            terminated: terminated.as_slice_mut()?,
            truncated: truncated.as_slice_mut()?,
            final_obs: final_obs.as_slice_mut()?,
            alive: alive.as_slice_mut()?,
            invalid: invalid.as_slice_mut()?,
        };
        check_len("obs", out.obs.len(), n * d)?;
        check_len("masks", out.masks.len(), n * k as usize)?;
        check_len("rewards", out.rewards.len(), n)?;
        check_len("terminated", out.terminated.len(), n)?;
        check_len("truncated", out.truncated.len(), n)?;
        check_len("final_obs", out.final_obs.len(), n * d)?;
        check_len("alive", out.alive.len(), n)?;
        check_len("invalid", out.invalid.len(), n)?;
        let (v, a) = (&mut self.v, &self.actions);
        py.detach(|| v.step(a, out));
        let inv = invalid.as_slice_mut()?;
        for (dst, &flag) in inv.iter_mut().zip(&self.masked) {
            *dst |= flag;
        }
        Ok(())
    }

    /// Step `ticks` ticks with the same actions, into internal buffers, without returning to
    /// Python in between: the Rust-only baseline that benchmarks measure call overhead against.
    fn step_repeat(
        &mut self,
        py: Python<'_>,
        actions: PyReadonlyArray1<'_, i64>,
        ticks: u64,
    ) -> PyResult<()> {
        let n = self.v.num_envs() * self.v.agents_per_env();
        let (d, k) = (self.v.obs_dim(), self.v.n_actions());
        let acts = actions.as_slice()?;
        check_len("actions", acts.len(), n)?;
        for (dst, &a) in self.actions.iter_mut().zip(acts) {
            if a < 0 || a >= k as i64 {
                return Err(PyValueError::new_err(format!(
                    "action {a} is outside [0, {k})"
                )));
            }
            *dst = a as u16;
        }
        let (v, a) = (&mut self.v, &self.actions);
        py.detach(|| {
            let mut obs = vec![0.0f32; n * d];
            let mut fin = vec![0.0f32; n * d];
            let mut masks = vec![false; n * k];
            let (mut r, mut te, mut tr, mut al, mut inv) = (
                vec![0.0f32; n],
                vec![false; n],
                vec![false; n],
                vec![false; n],
                vec![false; n],
            );
            for _ in 0..ticks {
                v.step(
                    a,
                    Buffers {
                        obs: &mut obs,
                        masks: &mut masks,
                        rewards: &mut r,
                        terminated: &mut te,
                        truncated: &mut tr,
                        final_obs: &mut fin,
                        alive: &mut al,
                        invalid: &mut inv,
                    },
                );
            }
        });
        Ok(())
    }

    /// Every town's state and the episode counters as JSON (without the config; see `load_state`).
    fn state_json(&self, py: Python<'_>) -> String {
        let v = &self.v;
        py.detach(|| v.state_json())
    }

    /// Restore `state_json` output taken with the same config, number of towns and episode length,
    /// and write the current observations, masks and liveness into the given arrays.
    fn load_state(
        &mut self,
        py: Python<'_>,
        state: &str,
        mut obs: PyReadwriteArray2<'_, f32>,
        mut masks: PyReadwriteArray2<'_, bool>,
        mut alive: PyReadwriteArray1<'_, bool>,
    ) -> PyResult<()> {
        let (o, m) = self.obs_masks(&mut obs, &mut masks)?;
        let l = alive.as_slice_mut()?;
        check_len(
            "alive",
            l.len(),
            self.v.num_envs() * self.v.agents_per_env(),
        )?;
        let v = &mut self.v;
        py.detach(|| v.load_state_json(state, o, m, l))
            .map_err(SnapshotError::new_err)
    }

    /// Capture ticks `start..stop` under the scripted expert straight into agent-major arrays
    /// `(slots, T, ...)`: `map` (map_len), `features`, `masks`, `actions` (chosen), `log_probs`,
    /// `rewards`, `terminated`, `alive`. Row `t` is what slot saw before acting at tick `t` and
    /// what that tick returned; a masked choice is applied as `wait` (as `step` does). Call with
    /// `start = 0` right after `reset`, then with consecutive ranges; `stop` must stay below
    /// `episode_ticks` (no autoreset). The GIL is released while the towns run.
    #[allow(clippy::too_many_arguments)]
    fn capture_expert(
        &mut self,
        py: Python<'_>,
        start: usize,
        stop: usize,
        mut map: PyReadwriteArray3<'_, f32>,
        mut features: PyReadwriteArray3<'_, f32>,
        mut masks: PyReadwriteArray3<'_, bool>,
        mut actions: PyReadwriteArray2<'_, i64>,
        mut log_probs: PyReadwriteArray2<'_, f32>,
        mut rewards: PyReadwriteArray2<'_, f32>,
        mut terminated: PyReadwriteArray2<'_, bool>,
        mut alive: PyReadwriteArray2<'_, bool>,
    ) -> PyResult<()> {
        let n = self.v.num_envs() * self.v.agents_per_env();
        let t = alive.shape()[1];
        let rows = [n, t];
        for (name, shape, c_order, width) in [
            (
                "map",
                map.shape(),
                map.is_c_contiguous(),
                Some(self.v.layout.map_len()),
            ),
            (
                "features",
                features.shape(),
                features.is_c_contiguous(),
                Some(self.v.layout.n_features()),
            ),
            (
                "masks",
                masks.shape(),
                masks.is_c_contiguous(),
                Some(self.v.n_actions()),
            ),
            ("actions", actions.shape(), actions.is_c_contiguous(), None),
            (
                "log_probs",
                log_probs.shape(),
                log_probs.is_c_contiguous(),
                None,
            ),
            ("rewards", rewards.shape(), rewards.is_c_contiguous(), None),
            (
                "terminated",
                terminated.shape(),
                terminated.is_c_contiguous(),
                None,
            ),
            ("alive", alive.shape(), alive.is_c_contiguous(), None),
        ] {
            let want: Vec<usize> = rows.iter().copied().chain(width).collect();
            if shape != want.as_slice() {
                return Err(PyValueError::new_err(format!(
                    "{name} has shape {shape:?}, expected {want:?}"
                )));
            }
            // A Fortran-ordered array is contiguous too, but its rows are not where they belong.
            if !c_order {
                return Err(PyValueError::new_err(format!(
                    "{name} must be C-contiguous"
                )));
            }
        }
        let rec = townlet_core::capture::Record {
            map: map.as_slice_mut()?,
            features: features.as_slice_mut()?,
            masks: masks.as_slice_mut()?,
            actions: actions.as_slice_mut()?,
            log_probs: log_probs.as_slice_mut()?,
            rewards: rewards.as_slice_mut()?,
            terminated: terminated.as_slice_mut()?,
            alive: alive.as_slice_mut()?,
        };
        let v = &mut self.v;
        py.detach(|| townlet_core::capture::run_expert(v, start, stop, Some(rec)))
            .map_err(PyValueError::new_err)
    }

    /// `capture_expert` over ticks `0..ticks` right after `reset`, recording nothing (every
    /// observation is still built): the stepping a capture does, without the capture.
    fn run_expert(&mut self, py: Python<'_>, ticks: usize) -> PyResult<()> {
        let v = &mut self.v;
        py.detach(|| townlet_core::capture::run_expert(v, 0, ticks, None))
            .map_err(PyValueError::new_err)
    }

    /// The scripted expert's actions and log-probabilities for every slot (advances its RNG only).
    fn expert_actions(
        &mut self,
        mut actions: PyReadwriteArray1<'_, i64>,
        mut logp: PyReadwriteArray1<'_, f32>,
    ) -> PyResult<()> {
        let n = self.v.num_envs() * self.v.agents_per_env();
        let a = actions.as_slice_mut()?;
        let l = logp.as_slice_mut()?;
        check_len("actions", a.len(), n)?;
        check_len("logp", l.len(), n)?;
        let mut buf = vec![0u16; n];
        self.v.expert_actions(&mut buf, l);
        for (dst, src) in a.iter_mut().zip(buf) {
            *dst = i64::from(src);
        }
        Ok(())
    }

    /// Reward breakdown of the last step for town `env`: (agents, components) float32.
    fn reward_breakdown<'py>(
        &self,
        py: Python<'py>,
        env: usize,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let w = self.town(env)?;
        Ok(Array2::from_shape_vec(
            (w.n_agents(), N_REWARD_COMPONENTS),
            w.reward_breakdown().to_vec(),
        )
        .expect("shape")
        .into_pyarray(py))
    }
    fn agent_ids(&self, env: usize) -> PyResult<Vec<String>> {
        Ok(self
            .town(env)?
            .st
            .agents
            .iter()
            .map(|a| a.display_id())
            .collect())
    }
    fn ctx_reset<'py>(&self, py: Python<'py>, env: usize) -> PyResult<Bound<'py, PyArray1<bool>>> {
        Ok(
            Array1::from_iter(self.town(env)?.st.agents.iter().map(|a| a.ctx_reset))
                .into_pyarray(py),
        )
    }
    fn town_tick(&self, env: usize) -> PyResult<u64> {
        Ok(self.town(env)?.tick())
    }
    fn episode(&self, env: usize) -> PyResult<u64> {
        self.town(env)?;
        Ok(self.v.episodes[env])
    }
    fn world_hash(&self, env: usize) -> PyResult<String> {
        Ok(self.town(env)?.world_hash())
    }
    /// Event counts since the start of town `env`'s current episode.
    fn event_totals<'py>(
        &self,
        py: Python<'py>,
        env: usize,
    ) -> PyResult<Bound<'py, PyArray1<u64>>> {
        Ok(Array1::from_vec(self.town(env)?.st.events.totals.clone()).into_pyarray(py))
    }
    /// Sums of event values (e.g. conflict intensity, chat quality) since the episode start.
    fn event_value_totals<'py>(
        &self,
        py: Python<'py>,
        env: usize,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        Ok(Array1::from_vec(self.town(env)?.st.events.value_totals.clone()).into_pyarray(py))
    }
    fn event_names(&self) -> Vec<&'static str> {
        EventKind::ALL.iter().map(|k| k.name()).collect()
    }
    /// Sums of event values of the last step for town `env` (e.g. conflict intensity).
    fn event_tick_values<'py>(
        &self,
        py: Python<'py>,
        env: usize,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        Ok(Array1::from_vec(self.town(env)?.st.events.tick_values.clone()).into_pyarray(py))
    }
    /// Event counts of the last step for town `env`.
    fn event_counts<'py>(
        &self,
        py: Python<'py>,
        env: usize,
    ) -> PyResult<Bound<'py, PyArray1<u32>>> {
        Ok(Array1::from_vec(self.town(env)?.st.events.tick_counts.clone()).into_pyarray(py))
    }
    fn kpis<'py>(&self, py: Python<'py>, env: usize) -> PyResult<Bound<'py, PyDict>> {
        kpi_dict(py, &self.town(env)?.kpis())
    }
}

fn kpi_dict<'py>(py: Python<'py>, k: &townlet_core::Kpis) -> PyResult<Bound<'py, PyDict>> {
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

/// Aligned rollout storage (steps x agents) kept in numpy arrays that Python reads without copies,
/// filled one step at a time, with GAE computed in Rust.
#[pyclass(module = "townlet._core")]
struct RolloutBuffer {
    steps: usize,
    agents: usize,
    obs_dim: usize,
    n_actions: usize,
    len: usize,
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

fn copy_row<T: numpy::Element + Copy>(
    py: Python<'_>,
    dst: &Py<PyArray2<T>>,
    t: usize,
    src: &[T],
    name: &str,
) -> PyResult<()> {
    let arr = dst.bind(py);
    let mut rw = arr.readwrite();
    let slice = rw.as_slice_mut()?;
    let a = src.len();
    if slice.len() < (t + 1) * a {
        return Err(PyValueError::new_err(format!("{name} row does not fit")));
    }
    slice[t * a..(t + 1) * a].copy_from_slice(src);
    Ok(())
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
        if steps == 0 || agents == 0 || obs_dim == 0 || n_actions == 0 {
            return Err(PyValueError::new_err(
                "steps, agents, obs_dim and n_actions must all be >= 1",
            ));
        }
        let z2f = || PyArray2::<f32>::zeros(py, [steps, agents], false).unbind();
        let z2b = || PyArray2::<bool>::zeros(py, [steps, agents], false).unbind();
        Ok(Self {
            steps,
            agents,
            obs_dim,
            n_actions,
            len: 0,
            obs: PyArray3::<f32>::zeros(py, [steps, agents, obs_dim], false).unbind(),
            masks: PyArray3::<bool>::zeros(py, [steps, agents, n_actions], false).unbind(),
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
        })
    }

    #[getter]
    fn steps(&self) -> usize {
        self.steps
    }
    #[getter]
    fn agents(&self) -> usize {
        self.agents
    }
    #[getter]
    fn obs_dim(&self) -> usize {
        self.obs_dim
    }
    #[getter]
    fn n_actions(&self) -> usize {
        self.n_actions
    }
    fn __len__(&self) -> usize {
        self.len
    }
    #[getter]
    fn full(&self) -> bool {
        self.len == self.steps
    }
    fn clear(&mut self) {
        self.len = 0;
    }

    /// Append one step (every array has one row per agent; obs (agents, obs_dim), masks
    /// (agents, n_actions)). `bootstrap` holds v(final observation) where `truncated`.
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        py: Python<'_>,
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
        if self.len == self.steps {
            return Err(PyValueError::new_err(format!(
                "rollout buffer is full ({} steps); call clear()",
                self.steps
            )));
        }
        let (a, d, k, t) = (self.agents, self.obs_dim, self.n_actions, self.len);
        check_len("obs", obs.as_slice()?.len(), a * d)?;
        check_len("masks", masks.as_slice()?.len(), a * k)?;
        for (name, len) in [
            ("actions", actions.as_slice()?.len()),
            ("log_probs", log_probs.as_slice()?.len()),
            ("values", values.as_slice()?.len()),
            ("rewards", rewards.as_slice()?.len()),
            ("terminated", terminated.as_slice()?.len()),
            ("truncated", truncated.as_slice()?.len()),
            ("valid", valid.as_slice()?.len()),
            ("bootstrap", bootstrap.as_slice()?.len()),
        ] {
            check_len(name, len, a)?;
        }
        {
            let arr = self.obs.bind(py);
            let mut rw = arr.readwrite();
            rw.as_slice_mut()?[t * a * d..(t + 1) * a * d].copy_from_slice(obs.as_slice()?);
        }
        {
            let arr = self.masks.bind(py);
            let mut rw = arr.readwrite();
            rw.as_slice_mut()?[t * a * k..(t + 1) * a * k].copy_from_slice(masks.as_slice()?);
        }
        copy_row(py, &self.actions, t, actions.as_slice()?, "actions")?;
        copy_row(py, &self.log_probs, t, log_probs.as_slice()?, "log_probs")?;
        copy_row(py, &self.values, t, values.as_slice()?, "values")?;
        copy_row(py, &self.rewards, t, rewards.as_slice()?, "rewards")?;
        copy_row(
            py,
            &self.terminated,
            t,
            terminated.as_slice()?,
            "terminated",
        )?;
        copy_row(py, &self.truncated, t, truncated.as_slice()?, "truncated")?;
        copy_row(py, &self.valid, t, valid.as_slice()?, "valid")?;
        copy_row(py, &self.bootstrap, t, bootstrap.as_slice()?, "bootstrap")?;
        self.len += 1;
        Ok(())
    }

    /// GAE over the filled steps; `next_values` = v(o_T) per agent. Fills `advantages`, `returns`.
    fn compute_gae(
        &self,
        py: Python<'_>,
        next_values: PyReadonlyArray1<'_, f32>,
        gamma: f32,
        gae_lambda: f32,
    ) -> PyResult<()> {
        if !(0.0..=1.0).contains(&gamma) || !(0.0..=1.0).contains(&gae_lambda) {
            return Err(PyValueError::new_err(
                "gamma and gae_lambda must lie in [0, 1]",
            ));
        }
        let next = next_values.as_slice()?;
        check_len("next_values", next.len(), self.agents)?;
        let n = self.len * self.agents;
        let r = self.rewards.bind(py).readonly();
        let v = self.values.bind(py).readonly();
        let te = self.terminated.bind(py).readonly();
        let tr = self.truncated.bind(py).readonly();
        let va = self.valid.bind(py).readonly();
        let bo = self.bootstrap.bind(py).readonly();
        let adv_arr = self.advantages.bind(py);
        let ret_arr = self.returns.bind(py);
        let mut adv = adv_arr.readwrite();
        let mut ret = ret_arr.readwrite();
        townlet_core::rollout::compute_gae(
            self.len,
            self.agents,
            &r.as_slice()?[..n],
            &v.as_slice()?[..n],
            &te.as_slice()?[..n],
            &tr.as_slice()?[..n],
            &va.as_slice()?[..n],
            &bo.as_slice()?[..n],
            next,
            gamma,
            gae_lambda,
            &mut adv.as_slice_mut()?[..n],
            &mut ret.as_slice_mut()?[..n],
        );
        Ok(())
    }

    #[getter]
    fn obs<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray3<f32>> {
        self.obs.bind(py).clone()
    }
    #[getter]
    fn masks<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray3<bool>> {
        self.masks.bind(py).clone()
    }
    #[getter]
    fn actions<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<i64>> {
        self.actions.bind(py).clone()
    }
    #[getter]
    fn log_probs<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f32>> {
        self.log_probs.bind(py).clone()
    }
    #[getter]
    fn values<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f32>> {
        self.values.bind(py).clone()
    }
    #[getter]
    fn rewards<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f32>> {
        self.rewards.bind(py).clone()
    }
    #[getter]
    fn terminated<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<bool>> {
        self.terminated.bind(py).clone()
    }
    #[getter]
    fn truncated<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<bool>> {
        self.truncated.bind(py).clone()
    }
    #[getter]
    fn valid<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<bool>> {
        self.valid.bind(py).clone()
    }
    #[getter]
    fn bootstrap<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f32>> {
        self.bootstrap.bind(py).clone()
    }
    #[getter]
    fn advantages<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f32>> {
        self.advantages.bind(py).clone()
    }
    #[getter]
    fn returns<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f32>> {
        self.returns.bind(py).clone()
    }
}

/// (advantages, returns).
type AdvantagesReturns<'py> = (Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<f32>>);

/// GAE over (steps, agents) arrays, the same code the RolloutBuffer runs; returns
/// (advantages, returns). See RolloutBuffer.compute_gae for the semantics.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn compute_gae<'py>(
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
            return Err(PyValueError::new_err(format!(
                "{name} has shape {s:?}, expected [{steps}, {agents}]"
            )));
        }
    }
    check_len("next_values", next_values.as_slice()?.len(), agents)?;
    if !(0.0..=1.0).contains(&gamma) || !(0.0..=1.0).contains(&gae_lambda) {
        return Err(PyValueError::new_err(
            "gamma and gae_lambda must lie in [0, 1]",
        ));
    }
    let mut adv = vec![0.0f32; steps * agents];
    let mut ret = vec![0.0f32; steps * agents];
    townlet_core::rollout::compute_gae(
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
        Array2::from_shape_vec((steps, agents), adv)
            .expect("shape")
            .into_pyarray(py),
        Array2::from_shape_vec((steps, agents), ret)
            .expect("shape")
            .into_pyarray(py),
    ))
}

/// Validate a resolved world config; raises ConfigError naming the key path.
#[pyfunction]
fn validate_config(config_json: &str) -> PyResult<()> {
    townlet_core::parse_world_config(config_json)
        .map(|_| ())
        .map_err(config_err)
}

/// The action names a world config defines, in action-space order.
#[pyfunction]
fn config_action_names(config_json: &str) -> PyResult<Vec<String>> {
    let cfg = townlet_core::parse_world_config(config_json).map_err(config_err)?;
    Ok(townlet_core::validate::action_names(&cfg))
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Town>()?;
    m.add_class::<VecTown>()?;
    m.add_class::<RolloutBuffer>()?;
    m.add("OBSERVATION_SCHEMA_VERSION", OBSERVATION_SCHEMA_VERSION)?;
    m.add("REWARD_COMPONENTS", REWARD_COMPONENTS.to_vec())?;
    m.add_function(wrap_pyfunction!(validate_config, m)?)?;
    m.add_function(wrap_pyfunction!(compute_gae, m)?)?;
    m.add_function(wrap_pyfunction!(config_action_names, m)?)?;
    m.add("ConfigError", m.py().get_type::<ConfigError>())?;
    m.add("SnapshotError", m.py().get_type::<SnapshotError>())?;
    m.add("ACTION_SPACE_VERSION", ACTION_SPACE_VERSION)?;
    m.add("SNAPSHOT_VERSION", townlet_core::world::SNAPSHOT_VERSION)?;
    Ok(())
}
