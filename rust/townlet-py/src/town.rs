//! `Town`: one simulated town, stepped by the scripted policy or by given actions, with read
//! access to its state and the console operations.

use crate::arrays::{array2, c_order, check_len};
use crate::config::statics;
use crate::convert::{event_columns, kpi_dict};
use crate::errors::{config_err, index_err, snapshot_err, value_err};
use numpy::ndarray::{Array1, Array2};
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadwriteArray2, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::sync::Arc;
use townlet_core::actions;
use townlet_core::obs::ObsLayout;
use townlet_core::rewards::N_REWARD_COMPONENTS;
use townlet_core::state::Tie;
use townlet_core::vec::write_town;
use townlet_core::{Actions, EventKind, World};

/// Trust, familiarity and rivalry matrices.
type Ties<'py> = (
    Bound<'py, PyArray2<f32>>,
    Bound<'py, PyArray2<f32>>,
    Bound<'py, PyArray2<f32>>,
);

/// One simulated town.
#[pyclass(module = "townlet._core")]
pub struct Town {
    w: World,
    layout: Option<Arc<ObsLayout>>,
}

impl Town {
    /// The observation layout, built on first use.
    fn layout(&mut self) -> &Arc<ObsLayout> {
        let s = &self.w.statics;
        self.layout
            .get_or_insert_with(|| Arc::new(ObsLayout::build(s)))
    }

    fn agent(&self, index: usize) -> PyResult<usize> {
        if index >= self.w.n_agents() {
            return Err(index_err("agent index", index, self.w.n_agents()));
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
            Some(c) => Some(statics(c)?),
            None => None,
        };
        let mut w = World::from_snapshot(snapshot_json, expected).map_err(snapshot_err)?;
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
                    value_err(format!(
                        "actions must be a 1-D int64 numpy array with one action per agent ({}), got {got}",
                        self.w.n_agents(),
                    ))
                })?;
                if ticks != 1 {
                    return Err(value_err(
                        "given actions drive exactly one tick; pass ticks=1",
                    ));
                }
                let n = self.w.n_agents();
                let view = arr.as_slice()?;
                if view.len() != n {
                    return Err(value_err(format!(
                        "expected {n} actions (one per agent), got {}",
                        view.len()
                    )));
                }
                let mut acts = vec![0u16; n];
                actions::decode(view, self.w.statics.n_actions(), &mut acts).map_err(|e| {
                    value_err(format!(
                        "action {} for agent {} is outside [0, {})",
                        e.action, e.slot, e.n_actions
                    ))
                })?;
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
        let (n, a) = (self.w.n_agents(), self.w.statics.n_actions());
        let layout = Arc::clone(self.layout());
        let d = layout.map_len() + layout.n_features();
        let o = obs.as_slice_mut()?;
        let m = masks.as_slice_mut()?;
        check_len("obs", o.len(), n * d)?;
        check_len("masks", m.len(), n * a)?;
        write_town(&self.w, &layout, o, m);
        Ok(())
    }
    #[getter]
    fn ticks_per_day(&self) -> u32 {
        self.w.statics.config.world.ticks_per_day
    }
    #[getter]
    fn config_id(&self) -> String {
        self.w.statics.config.config_id.clone()
    }
    #[getter]
    fn seed(&self) -> u64 {
        self.w.statics.config.seed
    }
    #[getter]
    fn config_hash(&self) -> String {
        self.w.statics.config_hash.clone()
    }
    #[getter]
    fn manifest_checksum(&self) -> String {
        self.w.statics.manifest_checksum.clone()
    }
    #[getter]
    fn action_space_version(&self) -> &'static str {
        actions::ACTION_SPACE_VERSION
    }
    #[getter]
    fn grid_shape(&self) -> (i32, i32) {
        (self.w.statics.grid.height, self.w.statics.grid.width)
    }

    /// Current agent ids, with lineage suffixes after respawns (`alice#2`).
    fn agent_ids(&self) -> Vec<String> {
        self.w.state.agents.iter().map(|a| a.display_id()).collect()
    }
    fn action_names(&self) -> Vec<String> {
        self.w.statics.action_names.clone()
    }
    fn object_ids(&self) -> Vec<String> {
        self.w
            .statics
            .objects
            .iter()
            .map(|o| o.id.clone())
            .collect()
    }
    fn object_types(&self) -> Vec<String> {
        self.w
            .statics
            .objects
            .iter()
            .map(|o| self.w.statics.types[o.type_idx].name.clone())
            .collect()
    }
    fn object_positions<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<i32>> {
        let v: Vec<i32> = self.w.statics.objects.iter().flat_map(|o| o.pos).collect();
        array2(py, self.w.statics.objects.len(), 2, v)
    }
    fn stock_keys(&self) -> Vec<String> {
        self.w.statics.stock_keys.clone()
    }
    fn price_keys(&self) -> Vec<String> {
        self.w.statics.price_keys.clone()
    }
    fn event_names(&self) -> Vec<&'static str> {
        EventKind::ALL.iter().map(|k| k.name()).collect()
    }
    /// Walls as a (height, width) bool array.
    fn walls<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<bool>> {
        let g = &self.w.statics.grid;
        let v: Vec<bool> = (0..g.height)
            .flat_map(|y| (0..g.width).map(move |x| g.is_wall(x, y)))
            .collect();
        array2(py, g.height as usize, g.width as usize, v)
    }

    /// Needs (hunger, hygiene, energy) as an (agents, 3) float32 array.
    fn needs<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f32>> {
        let v: Vec<f32> = self.w.state.agents.iter().flat_map(|a| a.needs).collect();
        array2(py, self.w.n_agents(), 3, v)
    }
    /// Positions (x, y) as an (agents, 2) int32 array.
    fn positions<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<i32>> {
        let v: Vec<i32> = self.w.state.agents.iter().flat_map(|a| a.pos).collect();
        array2(py, self.w.n_agents(), 2, v)
    }
    fn wallets<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        Array1::from_iter(self.w.state.agents.iter().map(|a| a.wallet)).into_pyarray(py)
    }
    fn alive<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<bool>> {
        Array1::from_iter(self.w.state.agents.iter().map(|a| a.alive)).into_pyarray(py)
    }
    /// Shift state per agent as names (idle, pre_shift, on_time, late, absent, departed, post_shift).
    fn shift_states(&self) -> Vec<&'static str> {
        self.w
            .state
            .agents
            .iter()
            .map(|a| a.employment.state.name())
            .collect()
    }
    /// Current option per agent: (affordance id or "", phase name).
    fn activities(&self) -> Vec<(String, &'static str)> {
        (0..self.w.n_agents())
            .map(|i| {
                let (affordance, phase) = self.w.activity_view(i);
                (affordance.unwrap_or_default().to_string(), phase.name())
            })
            .collect()
    }
    /// Stock per object as an (objects, stock keys) uint32 array.
    fn object_stock<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<u32>> {
        let k = self.w.statics.stock_keys.len();
        let v: Vec<u32> = self
            .w
            .state
            .objects
            .iter()
            .flat_map(|o| o.stock.iter().copied())
            .collect();
        array2(py, self.w.state.objects.len(), k, v)
    }
    /// Holders and waiters per object as an (objects, 2) int64 array.
    fn queue_lengths<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<i64>> {
        let v: Vec<i64> = self
            .w
            .state
            .objects
            .iter()
            .flat_map(|o| [o.holders.len() as i64, o.waiting.len() as i64])
            .collect();
        array2(py, self.w.state.objects.len(), 2, v)
    }
    /// Holders of each object as agent indices.
    fn object_holders(&self) -> Vec<Vec<u32>> {
        self.w
            .state
            .objects
            .iter()
            .map(|o| o.holders.iter().map(|h| h.agent).collect())
            .collect()
    }
    fn prices<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        Array1::from_vec(self.w.state.prices.clone()).into_pyarray(py)
    }
    /// Relationship ties as three (agents, agents) float32 arrays: trust, familiarity, rivalry.
    fn relationships<'py>(&self, py: Python<'py>) -> Ties<'py> {
        let n = self.w.n_agents();
        let pick = |f: fn(&Tie) -> f32| array2(py, n, n, self.w.state.ties.iter().map(f).collect());
        (
            pick(|t| t.trust),
            pick(|t| t.familiarity),
            pick(|t| t.rivalry),
        )
    }
    /// Utilities: (power on, water on).
    fn utilities(&self) -> (bool, bool) {
        (self.w.power_on(), self.w.water_on())
    }
    /// Valid actions per agent as an (agents, actions) bool array.
    fn action_mask<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<bool>> {
        let (n, k) = (self.w.n_agents(), self.w.statics.n_actions());
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
            .state
            .agents
            .iter()
            .enumerate()
            .filter_map(|(i, a)| a.terminated.map(|r| (i, r.name())))
            .collect()
    }
    /// Event counts of the last tick, one per event name.
    fn event_counts<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u32>> {
        Array1::from_vec(self.w.state.events.tick_counts.clone()).into_pyarray(py)
    }
    /// Sums of event values (e.g. conflict intensity, chat quality) since the start.
    fn event_value_totals<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        Array1::from_vec(self.w.state.events.value_totals.clone()).into_pyarray(py)
    }
    /// Event counts since the start of the run.
    fn event_totals<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        Array1::from_vec(self.w.state.events.totals.clone()).into_pyarray(py)
    }
    #[getter]
    fn record_events(&self) -> bool {
        self.w.state.events.record
    }
    #[setter]
    fn set_record_events(&mut self, on: bool) {
        self.w.set_record_events(on);
    }
    /// Take the recorded events as columns: tick, kind, agent, other, object, value (-1 = none).
    fn drain_events<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let ev = self.w.state.events.drain();
        event_columns(py, &ev)
    }
    /// Events dropped because the pending list was full (drain more often).
    #[getter]
    fn events_dropped(&self) -> u64 {
        self.w.state.events.dropped
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
        array2(
            py,
            self.w.n_agents(),
            N_REWARD_COMPONENTS,
            self.w.reward_breakdown().to_vec(),
        )
    }
    /// Money flows since the start: (wages paid, spent on affordances, penalties).
    fn money_flows(&self) -> (f64, f64, f64) {
        let s = &self.w.state.stats;
        (s.wages_paid, s.spent, s.penalties)
    }
    /// Agent-ticks stepped so far (alive agents only).
    #[getter]
    fn agent_steps(&self) -> u64 {
        self.w.state.stats.agent_steps
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
        self.w.teleport(i, x, y).map_err(value_err)
    }
    fn set_need(&mut self, agent: usize, need: usize, value: f32) -> PyResult<()> {
        let i = self.agent(agent)?;
        self.w.set_need(i, need, value).map_err(value_err)
    }
    fn set_price(&mut self, key: &str, value: f64) -> PyResult<()> {
        self.w.set_price(key, value).map_err(value_err)
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
        self.w
            .set_relationship(a, b, trust, familiarity, rivalry)
            .map_err(value_err)
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
            .map_err(value_err)
    }
    fn perturbation_cancel(&mut self, event_id: u32) -> bool {
        self.w.perturbation_cancel(event_id)
    }
    /// Active perturbations: (event id, spec name, kind, started, ends, magnitude).
    fn perturbations_active(&self) -> Vec<(u32, String, &'static str, u64, u64, f64)> {
        self.w
            .state
            .perturb
            .active
            .iter()
            .map(|p| {
                let info = &self.w.statics.perturbations[p.spec];
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
        (
            self.w.state.exits.pending.clone(),
            self.w.state.exits.exits_today,
        )
    }
    /// Console: bring a removed agent's slot back now at (x, y); needs (hunger, hygiene, energy) and
    /// wallet default to the respawn values.
    #[pyo3(signature = (agent, x, y, needs = None, wallet = None))]
    fn spawn(
        &mut self,
        agent: usize,
        x: i32,
        y: i32,
        needs: Option<(f32, f32, f32)>,
        wallet: Option<f64>,
    ) -> PyResult<()> {
        let i = self.agent(agent)?;
        let needs = needs.map(|(hunger, hygiene, energy)| [hunger, hygiene, energy]);
        self.w.spawn(i, [x, y], needs, wallet).map_err(value_err)
    }
    /// Console: a successful chat of the given quality (clamped to [0.1, 1]); returns the quality.
    #[pyo3(signature = (speaker, listener, quality = 0.5))]
    fn force_chat(&mut self, speaker: usize, listener: usize, quality: f32) -> PyResult<f32> {
        let (a, b) = (self.agent(speaker)?, self.agent(listener)?);
        self.w.force_chat(a, b, quality).map_err(value_err)
    }
    /// Console: `a` to `at` (default: where it stands), `b` next to it; returns both positions.
    #[pyo3(signature = (a, b, at = None))]
    #[allow(clippy::type_complexity)]
    fn arrange_meet(
        &mut self,
        a: usize,
        b: usize,
        at: Option<(i32, i32)>,
    ) -> PyResult<((i32, i32), (i32, i32))> {
        let (a, b) = (self.agent(a)?, self.agent(b)?);
        let (pa, pb) = self
            .w
            .arrange_meet(a, b, at.map(|(x, y)| [x, y]))
            .map_err(value_err)?;
        Ok(((pa[0], pa[1]), (pb[0], pb[1])))
    }
    /// One tick under the scripted policy, the listed (agent, action) pairs replacing its choice.
    fn step_possessed(&mut self, py: Python<'_>, overrides: Vec<(usize, u16)>) -> PyResult<()> {
        let w = &mut self.w;
        py.detach(|| w.step_possessed(&overrides))
            .map_err(value_err)
    }
    /// Per agent: (meals cooked, meals eaten, late ticks today, absent shifts in 7 days, exit pending).
    fn job_counters(&self) -> Vec<(u32, u32, u32, u32, bool)> {
        (0..self.w.n_agents())
            .map(|i| self.w.job_counters(i))
            .collect()
    }
    /// Per object: (holders as (agent, since, stalled), waiting as (agent, joined, conflicted),
    /// cooldowns as (agent, until tick)).
    #[allow(clippy::type_complexity)]
    fn queue_view(
        &self,
    ) -> Vec<(
        Vec<(usize, u64, u32)>,
        Vec<(usize, u64, bool)>,
        Vec<(usize, u64)>,
    )> {
        (0..self.w.state.objects.len())
            .map(|o| {
                let v = self.w.queue_view(o);
                (v.holders, v.waiting, v.cooldowns)
            })
            .collect()
    }
    /// Employment per agent: (job or "", state, lateness counter, attendance ratio, wages earned, wages withheld).
    fn employment(&self) -> Vec<(String, &'static str, u32, f32, f64, f64)> {
        (0..self.w.n_agents())
            .map(|i| {
                let e = self.w.employment_view(i);
                (
                    e.job.unwrap_or_default().to_string(),
                    e.state.name(),
                    e.lateness_counter,
                    e.attendance_ratio,
                    e.wages_earned,
                    e.wages_withheld,
                )
            })
            .collect()
    }
}
