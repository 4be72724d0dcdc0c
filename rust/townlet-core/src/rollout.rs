//! Rollout storage and generalised advantage estimation.
//!
//! Transitions are aligned: row `t` holds the observation the acting policy saw (`o_t`), its mask,
//! the action it took, that action's log-probability and the value estimate `v(o_t)` (both from
//! the acting policy), and what the step returned: `r_t`, `terminated_t`, `truncated_t`. Slots in
//! which no agent was alive are marked invalid and carry no advantage. A truncated step
//! bootstraps from the value of its final observation; a terminated one does not bootstrap.

use crate::checks::check_len;

/// GAE(gamma, lambda) over `steps` x `agents` row-major arrays.
///
/// * `next_values`: v(o_{T}) per agent, the value of the observation after the last row.
/// * `bootstrap`: per row, v(final observation) where `truncated` (ignored elsewhere).
/// * `valid`: false where the slot held no live agent (its advantage and return are 0).
///
/// Writes `advantages` and `returns` (= advantages + values).
#[allow(clippy::too_many_arguments)]
pub fn compute_gae(
    steps: usize,
    agents: usize,
    rewards: &[f32],
    values: &[f32],
    terminated: &[bool],
    truncated: &[bool],
    valid: &[bool],
    bootstrap: &[f32],
    next_values: &[f32],
    gamma: f32,
    lambda: f32,
    advantages: &mut [f32],
    returns: &mut [f32],
) {
    let n = steps * agents;
    for (name, len) in [
        ("rewards", rewards.len()),
        ("values", values.len()),
        ("terminated", terminated.len()),
        ("truncated", truncated.len()),
        ("valid", valid.len()),
        ("bootstrap", bootstrap.len()),
        ("advantages", advantages.len()),
        ("returns", returns.len()),
    ] {
        assert_eq!(len, n, "{name} must have steps * agents elements");
    }
    assert_eq!(
        next_values.len(),
        agents,
        "next_values must have one value per agent"
    );
    for (j, &last) in next_values.iter().enumerate() {
        let mut gae_next = 0.0f32;
        let mut value_next = last;
        for t in (0..steps).rev() {
            let k = t * agents + j;
            if !valid[k] {
                advantages[k] = 0.0;
                returns[k] = 0.0;
                gae_next = 0.0;
                value_next = 0.0;
                continue;
            }
            let gae = if terminated[k] {
                rewards[k] - values[k]
            } else if truncated[k] {
                rewards[k] + gamma * bootstrap[k] - values[k]
            } else {
                rewards[k] + gamma * value_next - values[k] + gamma * lambda * gae_next
            };
            advantages[k] = gae;
            returns[k] = gae + values[k];
            gae_next = gae;
            value_next = values[k];
        }
    }
}

/// GAE(gamma, lambda) over training rows (one per live agent-step, in the order they were stepped), where
/// `compute_gae` works on the grid: row k's successor is `next_row[k]` (the same slot's row one tick later, in
/// the same episode; a later row) or, where there is none (-1), the return continues from `end_value[k]`
/// (v(final observation) where truncated, v(o_T) at the rollout's last tick, 0 where the episode ended or the
/// slot's next step was not alive). The same advantages as `compute_gae` over the grid the rows came from,
/// whatever `values` are: the learner recomputes them with its current critic (`ppo.overlap`).
///
/// Writes `advantages` and `returns` (= advantages + values); an error names a bad successor.
#[allow(clippy::too_many_arguments)]
pub fn gae_rows(
    rewards: &[f32],
    values: &[f32],
    next_row: &[i64],
    end_value: &[f32],
    gamma: f32,
    lambda: f32,
    advantages: &mut [f32],
    returns: &mut [f32],
) -> Result<(), String> {
    check_discounts(gamma, lambda)?;
    let n = rewards.len();
    for (name, len) in [
        ("values", values.len()),
        ("next_row", next_row.len()),
        ("end_value", end_value.len()),
        ("advantages", advantages.len()),
        ("returns", returns.len()),
    ] {
        check_len(name, len, n)?;
    }
    for k in (0..n).rev() {
        let next = next_row[k];
        let (value_next, gae_next) = if next < 0 {
            (end_value[k], 0.0)
        } else {
            let j = usize::try_from(next).unwrap_or(usize::MAX);
            if j <= k || j >= n {
                return Err(format!(
                    "next_row[{k}] = {next}: a successor must be a later row (< {n})"
                ));
            }
            (values[j], advantages[j])
        };
        let gae = rewards[k] + gamma * value_next - values[k] + gamma * lambda * gae_next;
        advantages[k] = gae;
        returns[k] = gae + values[k];
    }
    Ok(())
}

/// Both discounts must lie in [0, 1] (NaN is rejected too).
pub fn check_discounts(gamma: f32, lambda: f32) -> Result<(), String> {
    if !(0.0..=1.0).contains(&gamma) || !(0.0..=1.0).contains(&lambda) {
        return Err("gamma and gae_lambda must lie in [0, 1]".into());
    }
    Ok(())
}

/// Sizes of a rollout buffer: `steps` rows of `agents` slots, observations `obs_dim` wide and
/// masks `n_actions` wide. Every size is at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutDims {
    pub steps: usize,
    pub agents: usize,
    pub obs_dim: usize,
    pub n_actions: usize,
}

impl RolloutDims {
    pub fn new(
        steps: usize,
        agents: usize,
        obs_dim: usize,
        n_actions: usize,
    ) -> Result<Self, String> {
        if steps == 0 || agents == 0 || obs_dim == 0 || n_actions == 0 {
            return Err("steps, agents, obs_dim and n_actions must all be >= 1".into());
        }
        Ok(Self {
            steps,
            agents,
            obs_dim,
            n_actions,
        })
    }
}

/// A buffer's columns, borrowed from whoever owns the memory, row-major: `obs` is
/// (steps, agents, obs_dim), `masks` (steps, agents, n_actions), every other column (steps, agents).
pub struct Columns<'a> {
    pub obs: &'a mut [f32],
    pub masks: &'a mut [bool],
    pub actions: &'a mut [i64],
    pub log_probs: &'a mut [f32],
    pub values: &'a mut [f32],
    pub rewards: &'a mut [f32],
    pub terminated: &'a mut [bool],
    pub truncated: &'a mut [bool],
    pub valid: &'a mut [bool],
    pub bootstrap: &'a mut [f32],
    pub advantages: &'a mut [f32],
    pub returns: &'a mut [f32],
}

/// Who owns a buffer's columns: `Vec`s here (`VecColumns`); numpy arrays in the Python binding,
/// so that Python reads and writes them without copies. Every column must have the size `Columns`
/// documents for the buffer's `RolloutDims`.
pub trait Storage {
    fn with_columns<R>(&mut self, f: impl FnOnce(Columns<'_>) -> R) -> R;
}

/// Columns in plain vectors.
#[derive(Debug, Clone)]
pub struct VecColumns {
    pub obs: Vec<f32>,
    pub masks: Vec<bool>,
    pub actions: Vec<i64>,
    pub log_probs: Vec<f32>,
    pub values: Vec<f32>,
    pub rewards: Vec<f32>,
    pub terminated: Vec<bool>,
    pub truncated: Vec<bool>,
    pub valid: Vec<bool>,
    pub bootstrap: Vec<f32>,
    pub advantages: Vec<f32>,
    pub returns: Vec<f32>,
}

impl VecColumns {
    pub fn zeros(dims: RolloutDims) -> Self {
        let n = dims.steps * dims.agents;
        Self {
            obs: vec![0.0; n * dims.obs_dim],
            masks: vec![false; n * dims.n_actions],
            actions: vec![0; n],
            log_probs: vec![0.0; n],
            values: vec![0.0; n],
            rewards: vec![0.0; n],
            terminated: vec![false; n],
            truncated: vec![false; n],
            valid: vec![false; n],
            bootstrap: vec![0.0; n],
            advantages: vec![0.0; n],
            returns: vec![0.0; n],
        }
    }
}

impl Storage for VecColumns {
    fn with_columns<R>(&mut self, f: impl FnOnce(Columns<'_>) -> R) -> R {
        f(Columns {
            obs: &mut self.obs,
            masks: &mut self.masks,
            actions: &mut self.actions,
            log_probs: &mut self.log_probs,
            values: &mut self.values,
            rewards: &mut self.rewards,
            terminated: &mut self.terminated,
            truncated: &mut self.truncated,
            valid: &mut self.valid,
            bootstrap: &mut self.bootstrap,
            advantages: &mut self.advantages,
            returns: &mut self.returns,
        })
    }
}

/// Aligned rollout storage filled one step at a time, with GAE over the filled steps.
#[derive(Debug, Clone)]
pub struct RolloutBuffer<S = VecColumns> {
    dims: RolloutDims,
    len: usize,
    pub columns: S,
}

/// One step of data for every agent.
#[derive(Clone, Copy)]
pub struct Step<'a> {
    pub obs: &'a [f32],
    pub masks: &'a [bool],
    pub actions: &'a [i64],
    pub log_probs: &'a [f32],
    pub values: &'a [f32],
    pub rewards: &'a [f32],
    pub terminated: &'a [bool],
    pub truncated: &'a [bool],
    pub valid: &'a [bool],
    pub bootstrap: &'a [f32],
}

impl RolloutBuffer<VecColumns> {
    pub fn new(dims: RolloutDims) -> Self {
        Self::with_storage(dims, VecColumns::zeros(dims))
    }
}

impl<S: Storage> RolloutBuffer<S> {
    /// A buffer over `columns`, which must be sized for `dims` (see `Storage`).
    pub fn with_storage(dims: RolloutDims, columns: S) -> Self {
        Self {
            dims,
            len: 0,
            columns,
        }
    }

    pub fn dims(&self) -> RolloutDims {
        self.dims
    }

    /// Steps filled so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == self.dims.steps
    }

    /// Forget the filled steps; the storage is reused.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// An error unless there is room for one more step.
    pub fn check_room(&self) -> Result<(), String> {
        if self.is_full() {
            return Err(format!(
                "rollout buffer is full ({} steps); call clear()",
                self.dims.steps
            ));
        }
        Ok(())
    }

    /// Append one step; errors (storing nothing) when full or when a slice has the wrong length.
    pub fn add(&mut self, s: Step<'_>) -> Result<(), String> {
        self.check_room()?;
        let RolloutDims {
            agents: a,
            obs_dim: d,
            n_actions: k,
            ..
        } = self.dims;
        for (name, got, want) in [
            ("obs", s.obs.len(), a * d),
            ("masks", s.masks.len(), a * k),
            ("actions", s.actions.len(), a),
            ("log_probs", s.log_probs.len(), a),
            ("values", s.values.len(), a),
            ("rewards", s.rewards.len(), a),
            ("terminated", s.terminated.len(), a),
            ("truncated", s.truncated.len(), a),
            ("valid", s.valid.len(), a),
            ("bootstrap", s.bootstrap.len(), a),
        ] {
            check_len(name, got, want)?;
        }
        let t = self.len;
        self.columns.with_columns(|c| {
            c.obs[t * a * d..(t + 1) * a * d].copy_from_slice(s.obs);
            c.masks[t * a * k..(t + 1) * a * k].copy_from_slice(s.masks);
            let row = t * a..(t + 1) * a;
            c.actions[row.clone()].copy_from_slice(s.actions);
            c.log_probs[row.clone()].copy_from_slice(s.log_probs);
            c.values[row.clone()].copy_from_slice(s.values);
            c.rewards[row.clone()].copy_from_slice(s.rewards);
            c.terminated[row.clone()].copy_from_slice(s.terminated);
            c.truncated[row.clone()].copy_from_slice(s.truncated);
            c.valid[row.clone()].copy_from_slice(s.valid);
            c.bootstrap[row].copy_from_slice(s.bootstrap);
        });
        self.len += 1;
        Ok(())
    }

    /// GAE over the filled steps into `advantages` and `returns`; `next_values` = v(o_T) per agent.
    pub fn compute_gae(
        &mut self,
        next_values: &[f32],
        gamma: f32,
        lambda: f32,
    ) -> Result<(), String> {
        check_discounts(gamma, lambda)?;
        check_len("next_values", next_values.len(), self.dims.agents)?;
        let (len, agents) = (self.len, self.dims.agents);
        let n = len * agents;
        self.columns.with_columns(|c| {
            compute_gae(
                len,
                agents,
                &c.rewards[..n],
                &c.values[..n],
                &c.terminated[..n],
                &c.truncated[..n],
                &c.valid[..n],
                &c.bootstrap[..n],
                next_values,
                gamma,
                lambda,
                &mut c.advantages[..n],
                &mut c.returns[..n],
            )
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gae_rows_is_gae_over_the_grid_the_rows_came_from() {
        // 3 ticks x 2 slots: slot 1 dead at tick 1; slot 0 truncated at tick 0 (a new episode from tick 1).
        let (steps, agents) = (3, 2);
        let r = [1.0, 0.5, 0.2, 0.0, -0.3, 0.7];
        let v = [0.4, 0.1, 0.9, 0.0, 0.6, 0.3];
        let te = [false; 6];
        let tr = [true, false, false, false, false, false];
        let valid = [true, true, true, false, true, true];
        let boot = [0.8, 0.0, 0.0, 0.0, 0.0, 0.0];
        let next_values = [0.25, -0.5];
        let (mut adv, mut ret) = (vec![0.0; 6], vec![0.0; 6]);
        compute_gae(
            steps,
            agents,
            &r,
            &v,
            &te,
            &tr,
            &valid,
            &boot,
            &next_values,
            0.9,
            0.8,
            &mut adv,
            &mut ret,
        );
        // The live cells as rows: 0, 1, 2, 4, 5 (cell 3 dead).
        let cells = [0usize, 1, 2, 4, 5];
        let next_row = [-1, -1, 3, -1, -1]; // cell 0 truncated; cell 1's next is dead; cell 2 -> cell 4 (row 3)
        let end_value = [0.8, 0.0, 0.0, 0.25, -0.5];
        let rows = |a: &[f32]| cells.iter().map(|&c| a[c]).collect::<Vec<f32>>();
        let (mut adv_rows, mut ret_rows) = (vec![0.0; 5], vec![0.0; 5]);
        gae_rows(
            &rows(&r),
            &rows(&v),
            &next_row,
            &end_value,
            0.9,
            0.8,
            &mut adv_rows,
            &mut ret_rows,
        )
        .unwrap();
        for (k, &c) in cells.iter().enumerate() {
            assert!(
                (adv_rows[k] - adv[c]).abs() < 1e-6,
                "row {k}: {} vs {}",
                adv_rows[k],
                adv[c]
            );
            assert!((ret_rows[k] - ret[c]).abs() < 1e-6);
        }
        let mut bad = vec![0.0; 5];
        let err = gae_rows(
            &rows(&r),
            &rows(&v),
            &[1, -1, -1, -1, -1],
            &end_value,
            0.9,
            0.8,
            &mut bad,
            &mut [0.0; 5],
        );
        assert!(err.is_ok());
        let err = gae_rows(
            &rows(&r),
            &rows(&v),
            &[-1, 0, -1, -1, -1],
            &end_value,
            0.9,
            0.8,
            &mut bad,
            &mut [0.0; 5],
        );
        assert!(err.unwrap_err().contains("next_row[1] = 0"));
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        r: &[f32],
        v: &[f32],
        te: &[bool],
        tr: &[bool],
        boot: &[f32],
        next: f32,
        g: f32,
        l: f32,
    ) -> Vec<f32> {
        let n = r.len();
        let mut adv = vec![0.0; n];
        let mut ret = vec![0.0; n];
        compute_gae(
            n,
            1,
            r,
            v,
            te,
            tr,
            &vec![true; n],
            boot,
            &[next],
            g,
            l,
            &mut adv,
            &mut ret,
        );
        for k in 0..n {
            assert!((ret[k] - (adv[k] + v[k])).abs() < 1e-6);
        }
        adv
    }

    #[test]
    fn one_step_td_when_lambda_is_zero() {
        let adv = run(
            &[1.0, 2.0],
            &[0.5, 0.25],
            &[false; 2],
            &[false; 2],
            &[0.0; 2],
            4.0,
            0.9,
            0.0,
        );
        assert!((adv[0] - (1.0 + 0.9 * 0.25 - 0.5)).abs() < 1e-6);
        assert!((adv[1] - (2.0 + 0.9 * 4.0 - 0.25)).abs() < 1e-6);
    }

    #[test]
    fn monte_carlo_when_lambda_is_one() {
        let adv = run(
            &[1.0, 1.0, 1.0],
            &[0.0; 3],
            &[false, false, true],
            &[false; 3],
            &[0.0; 3],
            99.0,
            0.5,
            1.0,
        );
        assert!((adv[0] - (1.0 + 0.5 + 0.25)).abs() < 1e-6);
        assert!(
            (adv[2] - 1.0).abs() < 1e-6,
            "terminated: no bootstrap from next value"
        );
    }

    #[test]
    fn truncation_bootstraps_from_the_final_observation_and_cuts_the_trace() {
        let adv = run(
            &[0.0, 1.0, 5.0],
            &[0.0, 0.0, 0.0],
            &[false; 3],
            &[false, true, false],
            &[0.0, 10.0, 0.0],
            0.0,
            0.9,
            1.0,
        );
        assert!((adv[1] - (1.0 + 0.9 * 10.0)).abs() < 1e-5);
        assert!((adv[0] - 0.9 * adv[1]).abs() < 1e-5);
        assert!(
            (adv[2] - 5.0).abs() < 1e-6,
            "the step after a truncation starts a new episode"
        );
    }

    #[test]
    fn invalid_slots_carry_nothing_and_break_the_trace() {
        let mut adv = vec![0.0; 3];
        let mut ret = vec![0.0; 3];
        compute_gae(
            3,
            1,
            &[1.0, 7.0, 1.0],
            &[0.0; 3],
            &[true, false, false],
            &[false; 3],
            &[true, false, true],
            &[0.0; 3],
            &[0.0],
            0.9,
            0.95,
            &mut adv,
            &mut ret,
        );
        assert_eq!(adv[1], 0.0);
        assert!((adv[0] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn buffer_add_checks_lengths_and_capacity() {
        let mut b = RolloutBuffer::new(RolloutDims::new(1, 2, 3, 2).unwrap());
        let step = Step {
            obs: &[0.0; 6],
            masks: &[true; 4],
            actions: &[0, 1],
            log_probs: &[0.0; 2],
            values: &[0.0; 2],
            rewards: &[1.0, 2.0],
            terminated: &[false; 2],
            truncated: &[false; 2],
            valid: &[true; 2],
            bootstrap: &[0.0; 2],
        };
        assert!(b
            .add(Step {
                obs: &[0.0; 5],
                ..step
            })
            .unwrap_err()
            .contains("obs"));
        b.add(step).unwrap();
        assert!(b.is_full());
        b.compute_gae(&[0.0, 0.0], 0.99, 0.95).unwrap();
        assert_eq!(b.columns.advantages, vec![1.0, 2.0]);
    }
}
