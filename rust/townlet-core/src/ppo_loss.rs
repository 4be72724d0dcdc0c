//! PPO's objective over one minibatch and its gradient, in one pass: from the network's logits (rows, actions)
//! and values (rows,) to the loss, its terms, and d loss / d logits and d loss / d values. Where autograd ran
//! some forty small passes (masking, log-softmax, the picked log-probability, the entropy, the ratio, the
//! clipped surrogate, the clipped value loss, the normalised advantages, the KL estimate), each over the
//! minibatch, and as many backward, the learner makes one call (`training/ppo.py`).
//!
//! The terms are those of `training/ppo_loss.py` (docs/training.md, "PPO details"), each a mean over the rows:
//! the clipped surrogate (the pessimistic bound of ratio x advantage and clipped ratio x advantage, each row
//! weighted when collecting ahead), the value loss (half the squared error to the returns, the worse of the
//! value and the value clipped around the rollout's estimate), the entropy of the masked softmax, and the
//! kickstarting cross-entropy to the expert's actions. A tie of the two sides of a max passes half the gradient
//! to each, and a clamp passes it at its bounds, as autograd does. Per-row values are computed in float32, the
//! means summed in float64.

/// The actions' logits are masked to this (`training/network.py`'s `MASKED_LOGIT`): a masked action's
/// probability is exactly zero and so is its gradient.
const MASKED: f32 = -1e8;

/// exp(x) for x <= 0 (a logit less the row's largest), to float32's precision (Cephes' `expf`: x = n ln 2 + r with
/// |r| <= ln 2 / 2, exp(r) by a degree-6 polynomial, 2^n written into the exponent), below -87 as exp(-87):
/// arithmetic alone, so that a loop of it runs on vector lanes, where the C library's `expf` is a call per value.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const ROUND: f32 = 12_582_912.0; // 1.5 x 2^23: adding it rounds to the nearest integer
    let x = x.clamp(-87.0, 0.0);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let scale =
        f32::from_bits(((shifted.to_bits() as i32 - ROUND.to_bits() as i32 + 127) << 23) as u32);
    (p * r * r + r + 1.0) * scale
}

/// One minibatch's rows: `logits` (rows x actions, row-major, before the mask) and `values` are the network's
/// outputs; the rest is the rollout's.
pub struct LossRows<'a> {
    pub logits: &'a [f32],
    pub masks: &'a [bool],
    pub actions: &'a [i64],
    /// The acting policy's log-probabilities of `actions`.
    pub log_probs: &'a [f32],
    /// Collecting ahead (`ppo.overlap`): the proximal policy's log-probabilities of `actions`: the ratio is then
    /// taken to them and each row weighted by exp(proximal - log_probs) (decoupled PPO).
    pub proximal: Option<&'a [f32]>,
    pub advantages: &'a [f32],
    pub returns: &'a [f32],
    /// The values the value loss clips around.
    pub old_values: &'a [f32],
    pub values: &'a [f32],
    /// Kickstarting: the expert's action per row and whether it counts (1.0) or not (0.0).
    pub expert: Option<(&'a [i64], &'a [f32])>,
}

/// The objective's settings (the config's `ppo:` section).
#[derive(Clone, Copy, Debug)]
pub struct LossSettings {
    pub clip_coef: f32,
    /// The value loss's clip around the rollout's values; None: unclipped.
    pub value_clip: Option<f32>,
    pub norm_adv: bool,
    pub ent_coef: f32,
    pub vf_coef: f32,
    pub kickstart_coef: f32,
}

/// The loss and its terms (means over the rows), with the statistics the update records.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossTerms {
    pub loss: f64,
    pub pg_loss: f64,
    pub v_loss: f64,
    pub entropy: f64,
    pub imitation: f64,
    pub approx_kl: f64,
    pub clipfrac: f64,
    /// The advantages' mean and standard deviation (n - 1) before normalising.
    pub adv_mean: f64,
    pub adv_std: f64,
}

/// The loss over `rows` and its gradient: `grad_logits` (rows x actions; zero where masked) and `grad_values`
/// (rows,). An error names an input of the wrong length, a row that allows no action, or an action its row's mask
/// does not allow.
pub fn ppo_loss(
    rows: &LossRows<'_>,
    settings: &LossSettings,
    grad_logits: &mut [f32],
    grad_values: &mut [f32],
) -> Result<LossTerms, String> {
    let n = rows.actions.len();
    if n == 0 {
        return Err("a minibatch of no rows".into());
    }
    if !rows.logits.len().is_multiple_of(n) || rows.logits.is_empty() {
        return Err(format!(
            "logits hold {} values, not a whole number of actions for each of {n} rows",
            rows.logits.len()
        ));
    }
    let a = rows.logits.len() / n;
    let mut lens = vec![
        ("masks", rows.masks.len(), n * a),
        ("grad_logits", grad_logits.len(), n * a),
        ("log_probs", rows.log_probs.len(), n),
        ("advantages", rows.advantages.len(), n),
        ("returns", rows.returns.len(), n),
        ("old_values", rows.old_values.len(), n),
        ("values", rows.values.len(), n),
        ("grad_values", grad_values.len(), n),
    ];
    if let Some(p) = rows.proximal {
        lens.push(("proximal", p.len(), n));
    }
    if let Some((e, ok)) = rows.expert {
        lens.push(("expert", e.len(), n));
        lens.push(("expert_ok", ok.len(), n));
    }
    if let Some((name, len, want)) = lens.into_iter().find(|(_, len, want)| len != want) {
        return Err(format!("{name} has {len} values, expected {want}"));
    }
    let inv = 1.0 / n as f64;

    // The advantages' mean and spread (torch's std: n - 1), then the normalised advantages' scale.
    let adv_mean = rows.advantages.iter().map(|&x| f64::from(x)).sum::<f64>() * inv;
    let adv_std = if n > 1 {
        let ss: f64 = rows
            .advantages
            .iter()
            .map(|&x| (f64::from(x) - adv_mean).powi(2))
            .sum();
        (ss / (n - 1) as f64).sqrt()
    } else {
        0.0
    };
    let normalise = settings.norm_adv && n > 1;
    let (shift, scale) = if normalise {
        (adv_mean as f32, (adv_std as f32 + 1e-8).recip())
    } else {
        (0.0, 1.0)
    };
    let imitation_rows = rows
        .expert
        .map_or(0.0, |(_, ok)| ok.iter().map(|&w| f64::from(w)).sum::<f64>());
    let imitation_scale = settings.kickstart_coef / imitation_rows.max(1.0) as f32;

    let mut terms = LossTerms {
        adv_mean,
        adv_std,
        ..LossTerms::default()
    };
    let (lo, hi) = (1.0 - settings.clip_coef, 1.0 + settings.clip_coef);
    let per_row = inv as f32;
    let (mut logp, mut prob) = (vec![0.0f32; a], vec![0.0f32; a]);
    for i in 0..n {
        let logits = &rows.logits[i * a..(i + 1) * a];
        let mask = &rows.masks[i * a..(i + 1) * a];
        let grad = &mut grad_logits[i * a..(i + 1) * a];
        // The masked log-softmax: max, then log of the sum of exponentials.
        let max = logits
            .iter()
            .zip(mask)
            .fold(f32::NEG_INFINITY, |max, (&l, &ok)| {
                max.max(if ok { l } else { f32::NEG_INFINITY })
            });
        if max == f32::NEG_INFINITY {
            return Err(format!("row {i}: its mask allows no action"));
        }
        // exp(logit - max) once per action (0 where masked), then the probabilities, their logarithms and the
        // entropy from them. Each loop without branches or calls, so that it runs on vector lanes.
        for ((p, &l), &ok) in prob.iter_mut().zip(logits).zip(mask) {
            let e = exp(l - max);
            *p = if ok { e } else { 0.0 };
        }
        let total: f32 = prob.iter().sum();
        let (log_total, inv_total) = (total.ln(), total.recip());
        for (((p, lp), &l), &ok) in prob.iter_mut().zip(logp.iter_mut()).zip(logits).zip(mask) {
            *p *= inv_total;
            *lp = if ok { (l - max) - log_total } else { MASKED };
        }
        let entropy = -prob
            .iter()
            .zip(&logp)
            .map(|(&p, &lp)| if p > 0.0 { p * lp } else { 0.0 })
            .sum::<f32>();
        let action = usize::try_from(rows.actions[i])
            .ok()
            .filter(|&k| k < a && mask[k])
            .ok_or_else(|| {
                format!(
                    "row {i}: action {} is not one its mask allows",
                    rows.actions[i]
                )
            })?;
        let new_logp = logp[action];
        let (reference, weight) = match rows.proximal {
            Some(p) => (p[i], (p[i] - rows.log_probs[i]).exp()),
            None => (rows.log_probs[i], 1.0),
        };
        let logratio = new_logp - reference;
        let ratio = logratio.exp();
        terms.approx_kl += f64::from((ratio - 1.0) - logratio);
        if (ratio - 1.0).abs() > settings.clip_coef {
            terms.clipfrac += 1.0;
        }
        let adv = if normalise {
            (rows.advantages[i] - shift) * scale
        } else {
            rows.advantages[i]
        };
        let unclipped = -adv * ratio;
        let clipped = -adv * ratio.clamp(lo, hi);
        terms.pg_loss += f64::from(unclipped.max(clipped) * weight);
        // d pg / d ratio: the unclipped side's where it is the larger (a tie is the same gradient: the clamp
        // passes it inside its bounds, and outside them a tie means a zero advantage).
        let g_ratio = if unclipped >= clipped {
            -adv * weight * per_row
        } else {
            0.0
        };
        let g_logp_action = g_ratio * ratio;
        terms.entropy += f64::from(entropy);

        // d loss / d logit_k = g_logp_action (1[k = action] - p_k)
        //                    + ent_coef / n * p_k (logp_k + H)            (minus the entropy bonus)
        //                    - imitation_scale * ok (1[k = expert] - p_k)  (kickstarting)
        let (expert, ok) = match rows.expert {
            Some((e, ok)) if ok[i] != 0.0 => {
                let k = usize::try_from(e[i])
                    .ok()
                    .filter(|&k| k < a && mask[k])
                    .ok_or_else(|| {
                        format!("row {i}: expert action {} is not one its mask allows", e[i])
                    })?;
                terms.imitation -= f64::from(ok[i] * logp[k]);
                (k, ok[i] * imitation_scale)
            }
            _ => (usize::MAX, 0.0),
        };
        let g_entropy = settings.ent_coef * per_row;
        let g_common = -g_logp_action + ok; // times p_k
                                            // A masked action's probability is 0, and so its gradient.
        let g_action = g_common + g_entropy * entropy;
        for ((g, &lp), &p) in grad.iter_mut().zip(&logp).zip(&prob) {
            *g = p * (g_action + g_entropy * lp);
        }
        grad[action] += g_logp_action;
        if expert < a {
            grad[expert] -= ok;
        }

        // The value loss: half the squared error, the worse of the value and its clipped counterpart.
        let (new, ret, old) = (rows.values[i], rows.returns[i], rows.old_values[i]);
        let err = new - ret;
        let g_value = match settings.value_clip {
            Some(c) => {
                let delta = new - old;
                let inside = (-c..=c).contains(&delta);
                let clipped_err = old + delta.clamp(-c, c) - ret;
                let (sq, sq_clipped) = (err * err, clipped_err * clipped_err);
                terms.v_loss += 0.5 * f64::from(sq.max(sq_clipped));
                let through_clipped = if inside { clipped_err } else { 0.0 };
                if sq > sq_clipped {
                    err
                } else if sq < sq_clipped {
                    through_clipped
                } else {
                    0.5 * (err + through_clipped)
                }
            }
            None => {
                terms.v_loss += 0.5 * f64::from(err * err);
                err
            }
        };
        grad_values[i] = settings.vf_coef * per_row * g_value;
    }
    terms.pg_loss *= inv;
    terms.v_loss *= inv;
    terms.entropy *= inv;
    terms.approx_kl *= inv;
    terms.clipfrac *= inv;
    terms.imitation /= imitation_rows.max(1.0);
    terms.loss = terms.pg_loss - f64::from(settings.ent_coef) * terms.entropy
        + f64::from(settings.vf_coef) * terms.v_loss
        + if rows.expert.is_some() {
            f64::from(settings.kickstart_coef) * terms.imitation
        } else {
            0.0
        };
    Ok(terms)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Case {
        logits: Vec<f32>,
        masks: Vec<bool>,
        actions: Vec<i64>,
        log_probs: Vec<f32>,
        proximal: Option<Vec<f32>>,
        advantages: Vec<f32>,
        returns: Vec<f32>,
        old_values: Vec<f32>,
        values: Vec<f32>,
        expert: Option<(Vec<i64>, Vec<f32>)>,
    }

    impl Case {
        fn new(rows: usize, a: usize, seed: u32) -> Case {
            let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
            let mut next = move || {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 2.0 - 1.0
            };
            let logits: Vec<f32> = (0..rows * a).map(|_| 2.0 * next()).collect();
            let masks: Vec<bool> = (0..rows * a).map(|k| k % a == 0 || next() > -0.4).collect();
            let actions: Vec<i64> = (0..rows)
                .map(|i| (0..a).rev().find(|&k| masks[i * a + k]).unwrap() as i64)
                .collect();
            let mut v = |scale: f32| (0..rows).map(|_| scale * next()).collect::<Vec<f32>>();
            let values = v(1.0);
            // Ratios and value moves away from the clips' corners (the gradient check's differences stay on
            // one side): inside the clip range, and well outside it on either side.
            let offsets = [0.1f32, -0.1, 1.0, -1.0];
            let log_probs = (0..rows)
                .map(|i| {
                    let (l, m) = (&logits[i * a..(i + 1) * a], &masks[i * a..(i + 1) * a]);
                    let total: f32 = l
                        .iter()
                        .zip(m)
                        .filter(|(_, &ok)| ok)
                        .map(|(x, _)| x.exp())
                        .sum();
                    l[actions[i] as usize] - total.ln() - offsets[i % 4]
                })
                .collect();
            let old_values = (0..rows)
                .map(|i| values[i] - 0.5 * offsets[(i + 1) % 4])
                .collect();
            // The errors to the returns away from where the clipped and unclipped squares tie.
            let errors = [0.6f32, -0.4, 0.9, -0.7];
            let returns = (0..rows).map(|i| values[i] - errors[(i / 2) % 4]).collect();
            Case {
                logits,
                masks,
                actions,
                log_probs,
                proximal: None,
                advantages: v(2.0),
                returns,
                old_values,
                values,
                expert: None,
            }
        }

        fn rows(&self) -> LossRows<'_> {
            LossRows {
                logits: &self.logits,
                masks: &self.masks,
                actions: &self.actions,
                log_probs: &self.log_probs,
                proximal: self.proximal.as_deref(),
                advantages: &self.advantages,
                returns: &self.returns,
                old_values: &self.old_values,
                values: &self.values,
                expert: self.expert.as_ref().map(|(e, ok)| (&e[..], &ok[..])),
            }
        }

        fn run(&self, s: &LossSettings) -> (LossTerms, Vec<f32>, Vec<f32>) {
            let mut gl = vec![0.0; self.logits.len()];
            let mut gv = vec![0.0; self.values.len()];
            let t = ppo_loss(&self.rows(), s, &mut gl, &mut gv).unwrap();
            (t, gl, gv)
        }
    }

    const SETTINGS: LossSettings = LossSettings {
        clip_coef: 0.2,
        value_clip: Some(0.2),
        norm_adv: true,
        ent_coef: 0.01,
        vf_coef: 0.5,
        kickstart_coef: 0.3,
    };

    /// The gradient against central differences of the loss (in float64 the loss is smooth away from the
    /// clips' corners, which these random rows do not sit on).
    fn check_gradient(case: &mut Case, s: &LossSettings) {
        let (_, gl, gv) = case.run(s);
        let h = 1e-2f32;
        // The loss's slope along one input (a logit or a value), by central differences.
        fn cell(c: &mut Case, logit: bool, k: usize) -> &mut f32 {
            if logit {
                &mut c.logits[k]
            } else {
                &mut c.values[k]
            }
        }
        let slope = |case: &mut Case, logit: bool, k: usize| {
            let x = *cell(case, logit, k);
            *cell(case, logit, k) = x + h;
            let up = case.run(s).0.loss;
            *cell(case, logit, k) = x - h;
            let down = case.run(s).0.loss;
            *cell(case, logit, k) = x;
            (up - down) / (2.0 * f64::from(h))
        };
        for (k, &g) in gl.iter().enumerate() {
            if !case.masks[k] {
                assert_eq!(g, 0.0);
                continue;
            }
            let numeric = slope(case, true, k);
            assert!(
                (numeric - f64::from(g)).abs() < 2e-4,
                "logit {k}: {numeric} vs {g}"
            );
        }
        for (i, &g) in gv.iter().enumerate() {
            let numeric = slope(case, false, i);
            assert!(
                (numeric - f64::from(g)).abs() < 2e-4,
                "value {i}: {numeric} vs {g}"
            );
        }
    }

    #[test]
    fn the_gradient_is_the_losss_slope() {
        for seed in 0..4 {
            let mut case = Case::new(6, 5, seed);
            check_gradient(&mut case, &SETTINGS);
            case.proximal = Some(case.log_probs.iter().map(|x| x + 0.02).collect());
            case.expert = Some((
                case.actions.iter().map(|&k| (k + 1) % 5).collect(),
                (0..6).map(|i| f32::from(u8::from(i % 2 == 0))).collect(),
            ));
            // The expert's action must be allowed where it counts: use the row's own action there.
            for i in 0..6 {
                let (e, ok) = case.expert.as_mut().unwrap();
                if !case.masks[i * 5 + e[i] as usize] {
                    ok[i] = 0.0;
                }
            }
            check_gradient(&mut case, &SETTINGS);
            let plain = LossSettings {
                value_clip: None,
                norm_adv: false,
                ..SETTINGS
            };
            check_gradient(&mut case, &plain);
        }
    }

    #[test]
    fn the_terms_are_the_textbook_ones_on_one_row() {
        // Two allowed actions of three, logits 0 and ln 3: probabilities 1/4 and 3/4.
        let case = Case {
            logits: vec![0.0, 3f32.ln(), 5.0],
            masks: vec![true, true, false],
            actions: vec![1],
            log_probs: vec![0.75f32.ln()],
            proximal: None,
            advantages: vec![2.0],
            returns: vec![1.0],
            old_values: vec![0.0],
            values: vec![0.5],
            expert: None,
        };
        let (t, gl, gv) = case.run(&SETTINGS);
        let h = -(0.25f64 * 0.25f64.ln() + 0.75 * 0.75f64.ln());
        assert!((t.entropy - h).abs() < 1e-6);
        assert!(t.approx_kl.abs() < 1e-6 && t.clipfrac == 0.0);
        assert!((t.pg_loss + 2.0).abs() < 1e-6, "{}", t.pg_loss); // ratio 1, one row: not normalised
                                                                  // The value moved 0.5 from 0 (clip 0.2): the clipped error (0.2 - 1)^2 = 0.64 > (0.5 - 1)^2 = 0.25,
                                                                  // so the clipped side counts and, outside its clamp, passes no gradient.
        assert!((t.v_loss - 0.32).abs() < 1e-6);
        assert_eq!(gv, vec![0.0]);
        assert_eq!(gl[2], 0.0);
        assert!(
            (t.loss - (t.pg_loss - f64::from(0.01f32) * t.entropy + 0.5 * t.v_loss)).abs() < 1e-12
        );
    }

    #[test]
    fn exp_is_exact_to_a_few_ulps() {
        let mut worst = 0.0f64;
        for k in 0..=870_000 {
            let x = -(k as f32) * 1e-4;
            let want = f64::from(x).exp();
            worst = worst.max((f64::from(exp(x)) - want).abs() / want);
        }
        assert!(worst < 3e-7, "relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-1e8), exp(-87.0));
    }

    #[test]
    fn bad_rows_are_named() {
        let mut case = Case::new(3, 4, 7);
        case.masks[4..8].fill(false);
        let mut gl = vec![0.0; 12];
        let mut gv = vec![0.0; 3];
        let err = ppo_loss(&case.rows(), &SETTINGS, &mut gl, &mut gv).unwrap_err();
        assert_eq!(err, "row 1: its mask allows no action");
        let mut case = Case::new(3, 4, 7);
        case.masks[2 * 4 + 3] = false;
        case.actions[2] = 3;
        let err = ppo_loss(&case.rows(), &SETTINGS, &mut gl, &mut gv).unwrap_err();
        assert_eq!(err, "row 2: action 3 is not one its mask allows");
        let err = ppo_loss(&case.rows(), &SETTINGS, &mut gl, &mut gv[..2]).unwrap_err();
        assert_eq!(err, "grad_values has 2 values, expected 3");
    }
}
