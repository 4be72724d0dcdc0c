//! `VecTown`: N towns x M agents stepped in one call, in parallel across towns, writing into
//! caller arrays (the training and capture hot path).

use crate::arrays::{array2, c_order, check_len, check_shape};
use crate::config::statics;
use crate::convert::{kpi_dict, spec_dict};
use crate::errors::{index_err, snapshot_err, value_err};
use numpy::ndarray::Array1;
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadwriteArray1, PyReadwriteArray2,
    PyReadwriteArray3, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use townlet_core::rewards::{N_REWARD_COMPONENTS, REWARD_COMPONENTS};
use townlet_core::vec::{Buffers, VecWorld};
use townlet_core::{EventKind, World};

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
        let n = self.v.num_slots();
        let o = obs.as_slice_mut()?;
        let m = masks.as_slice_mut()?;
        check_len("obs", o.len(), n * self.v.obs_dim())?;
        check_len("masks", m.len(), n * self.v.n_actions())?;
        Ok((o, m))
    }

    fn town(&self, env: usize) -> PyResult<&World> {
        self.v
            .towns
            .get(env)
            .ok_or_else(|| index_err("env", env, self.v.num_envs()))
    }
}

/// N towns x M agents stepped in one call, in parallel across towns, writing into caller arrays.
#[pyclass(module = "townlet._core")]
pub struct VecTown {
    v: VecWorld,
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
        .map_err(value_err)?;
        Ok(Self { v })
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
        self.v.layout.variant.name()
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

    /// Step every town one tick. The GIL is released while towns run in parallel. Returns whether
    /// any slot terminated or was truncated (so the caller reads `final_masks` only then).
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
    ) -> PyResult<bool> {
        c_order(&[
            ("obs", obs.is_c_contiguous()),
            ("masks", masks.is_c_contiguous()),
            ("final_obs", final_obs.is_c_contiguous()),
        ])?;
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
        let (v, acts) = (&mut self.v, actions.as_slice()?);
        py.detach(|| v.step_chosen(acts, out)).map_err(value_err)?;
        Ok(terminated.as_slice()?.contains(&true) || truncated.as_slice()?.contains(&true))
    }

    /// Copy into `out` (slots, n_actions) the action masks of the last step's final observations:
    /// in the rows that step truncated, the mask that goes with `final_obs` (the ending episode's).
    fn final_masks(&self, mut out: PyReadwriteArray2<'_, bool>) -> PyResult<()> {
        c_order(&[("out", out.is_c_contiguous())])?;
        let dst = out.as_slice_mut()?;
        let src = self.v.final_masks();
        check_len("out", dst.len(), src.len())?;
        dst.copy_from_slice(src);
        Ok(())
    }

    /// The towns whose episode ended in the last step, each with the KPIs of that episode (read just
    /// before its reset): `[(town, kpis), ...]`, empty on most steps.
    fn ended_kpis<'py>(&self, py: Python<'py>) -> PyResult<Vec<(usize, Bound<'py, PyDict>)>> {
        self.v
            .ended_kpis()
            .iter()
            .enumerate()
            .filter_map(|(k, e)| e.as_ref().map(|kpis| (k, kpis)))
            .map(|(k, kpis)| Ok((k, kpi_dict(py, kpis)?)))
            .collect()
    }

    /// Step `ticks` ticks with the same actions, into internal buffers, without returning to
    /// Python in between: the Rust-only baseline that benchmarks measure call overhead against.
    fn step_repeat(
        &mut self,
        py: Python<'_>,
        actions: PyReadonlyArray1<'_, i64>,
        ticks: u64,
    ) -> PyResult<()> {
        let (v, acts) = (&mut self.v, actions.as_slice()?);
        py.detach(|| v.step_repeat(acts, ticks)).map_err(value_err)
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
        check_len("alive", l.len(), self.v.num_slots())?;
        let v = &mut self.v;
        py.detach(|| v.load_state_json(state, o, m, l))
            .map_err(snapshot_err)
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
        let n = self.v.num_slots();
        let t = alive.shape()[1];
        let (map_len, n_features, n_actions) = (
            self.v.layout.map_len(),
            self.v.layout.n_features(),
            self.v.n_actions(),
        );
        check_shape("map", map.shape(), map.is_c_contiguous(), &[n, t, map_len])?;
        check_shape(
            "features",
            features.shape(),
            features.is_c_contiguous(),
            &[n, t, n_features],
        )?;
        check_shape(
            "masks",
            masks.shape(),
            masks.is_c_contiguous(),
            &[n, t, n_actions],
        )?;
        for (name, shape, c_contiguous) in [
            ("actions", actions.shape(), actions.is_c_contiguous()),
            ("log_probs", log_probs.shape(), log_probs.is_c_contiguous()),
            ("rewards", rewards.shape(), rewards.is_c_contiguous()),
            (
                "terminated",
                terminated.shape(),
                terminated.is_c_contiguous(),
            ),
            ("alive", alive.shape(), alive.is_c_contiguous()),
        ] {
            check_shape(name, shape, c_contiguous, &[n, t])?;
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
            .map_err(value_err)
    }

    /// `capture_expert` over ticks `0..ticks` right after `reset`, recording nothing (every
    /// observation is still built): the stepping a capture does, without the capture.
    fn run_expert(&mut self, py: Python<'_>, ticks: usize) -> PyResult<()> {
        let v = &mut self.v;
        py.detach(|| townlet_core::capture::run_expert(v, 0, ticks, None))
            .map_err(value_err)
    }

    /// The scripted expert's actions and log-probabilities for every slot (advances its RNG only).
    fn expert_actions(
        &mut self,
        mut actions: PyReadwriteArray1<'_, i64>,
        mut logp: PyReadwriteArray1<'_, f32>,
    ) -> PyResult<()> {
        let n = self.v.num_slots();
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

    /// Why the expert chose each slot's action in the last `expert_actions`: 0 leisure (a chat, or going home with
    /// nothing due), 1 a duty (a need, sleep, an activity under way), 2 the shift (setting off, queueing, working).
    fn expert_motives(&self, mut out: PyReadwriteArray1<'_, u8>) -> PyResult<()> {
        let o = out.as_slice_mut()?;
        check_len("out", o.len(), self.v.num_slots())?;
        self.v.expert_motives(o);
        Ok(())
    }

    /// Reward breakdown of the last step for town `env`: (agents, components) float32.
    fn reward_breakdown<'py>(
        &self,
        py: Python<'py>,
        env: usize,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let w = self.town(env)?;
        Ok(array2(
            py,
            w.n_agents(),
            N_REWARD_COMPONENTS,
            w.reward_breakdown().to_vec(),
        ))
    }
    fn agent_ids(&self, env: usize) -> PyResult<Vec<String>> {
        Ok(self
            .town(env)?
            .state
            .agents
            .iter()
            .map(|a| a.display_id())
            .collect())
    }
    fn ctx_reset<'py>(&self, py: Python<'py>, env: usize) -> PyResult<Bound<'py, PyArray1<bool>>> {
        Ok(
            Array1::from_iter(self.town(env)?.state.agents.iter().map(|a| a.ctx_reset))
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
        Ok(Array1::from_vec(self.town(env)?.state.events.totals.clone()).into_pyarray(py))
    }
    /// Sums of event values (e.g. conflict intensity, chat quality) since the episode start.
    fn event_value_totals<'py>(
        &self,
        py: Python<'py>,
        env: usize,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        Ok(Array1::from_vec(self.town(env)?.state.events.value_totals.clone()).into_pyarray(py))
    }
    fn event_names(&self) -> Vec<&'static str> {
        EventKind::ALL.iter().map(|k| k.name()).collect()
    }
    /// Event counts and summed event values of the last step for every town, written into
    /// `counts` (uint32) and `values` (float32), both (num_envs, event kinds) in `event_names()`
    /// order: one call per step instead of one per town.
    fn write_event_counts(
        &self,
        mut counts: PyReadwriteArray2<'_, u32>,
        mut values: PyReadwriteArray2<'_, f32>,
    ) -> PyResult<()> {
        c_order(&[
            ("counts", counts.is_c_contiguous()),
            ("values", values.is_c_contiguous()),
        ])?;
        self.v
            .write_event_counts(counts.as_slice_mut()?, values.as_slice_mut()?)
            .map_err(value_err)
    }
    /// The observation layout of these towns (the dict `_core.obs_spec` gives).
    fn obs_spec<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        spec_dict(py, &self.v.obs_spec())
    }
    fn kpis<'py>(&self, py: Python<'py>, env: usize) -> PyResult<Bound<'py, PyDict>> {
        kpi_dict(py, &self.town(env)?.kpis())
    }
}
