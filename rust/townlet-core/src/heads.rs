//! The policy's two float32 heads over its bfloat16 hidden layer, forward and backward, one pass over the rows each.
//!
//! The conflict-aware network's hidden layer `h = relu(z @ hidden^T + b)` (rows x 2 * half, bfloat16: the actor's
//! half, then the critic's; python/townlet/training/network_bf16.py, `HiddenHeads`) feeds two float32 linear heads:
//! `logits = actor @ policy^T + policy_bias` (rows x actions) and `values = critic @ value^T + value_bias` (rows,).
//! Torch ran the forward as a conversion of `h` to float32 and two small products, and the backward as four small
//! products, the ReLU's mask and the hidden layer's bias sums, each a pass over memory. At these shapes (128 inputs,
//! a few tens of outputs) a product runs at a small fraction of the machine's speed.
//!
//! Every sum runs in a fixed order, each step a fused multiply-add (`f32::mul_add`, correctly rounded whichever
//! instructions compute it), so the results do not depend on the CPU's vector width or on the row count.

use crate::checks::check_len;
use crate::relu::mask_row;
use crate::slabs::bf16_bits;

/// The heads' float32 weights, row-major as torch holds them.
#[derive(Clone, Copy, Debug)]
pub struct HeadWeights<'a> {
    /// actions x half.
    pub policy: &'a [f32],
    /// actions.
    pub policy_bias: &'a [f32],
    /// half (the value head's one row).
    pub value: &'a [f32],
    pub value_bias: f32,
}

/// The heads' weight gradients (`HeadWeights`' shapes), overwritten.
#[derive(Debug)]
pub struct HeadGrads<'a> {
    pub policy: &'a mut [f32],
    pub policy_bias: &'a mut [f32],
    pub value: &'a mut [f32],
    pub value_bias: &'a mut f32,
}

/// The hidden layer's shape, checked against the weights (`policy` for `actions` actions, `value`, whose length is the
/// heads' inputs): (rows, half). No rows is a shape too (nothing to compute).
fn shape(
    h: &[u16],
    rows: usize,
    actions: usize,
    policy: &[f32],
    value: &[f32],
) -> Result<(usize, usize), String> {
    let half = value.len();
    if half == 0 || actions == 0 {
        return Err(format!(
            "heads of {half} inputs and {actions} actions: nothing to compute"
        ));
    }
    check_len("policy", policy.len(), actions * half)?;
    check_len("h", h.len(), rows * 2 * half)?;
    Ok((rows, half))
}

/// The value of bfloat16 bits.
#[inline(always)]
fn f32_of(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// The heads' outputs from the hidden layer `h` (bfloat16 bits, rows x 2 * half): `logits` (rows x actions) and
/// `values` (rows,). Errors name the slice whose length is wrong (`checks::check_len`); nothing is written then.
pub fn heads_forward(
    h: &[u16],
    w: &HeadWeights<'_>,
    logits: &mut [f32],
    values: &mut [f32],
) -> Result<(), String> {
    let actions = w.policy_bias.len();
    let (rows, half) = shape(h, values.len(), actions, w.policy, w.value)?;
    check_len("logits", logits.len(), rows * actions)?;
    // The policy's weight in blocks of `LANES` actions, each transposed (half x LANES, zero past the last action), so
    // that a row's logits are multiply-adds of each of its actor's values by a row of a block: the actions on vector
    // lanes.
    let mut wt = vec![0.0_f32; actions.div_ceil(LANES) * half * LANES];
    for (a, row) in w.policy.chunks_exact(half).enumerate() {
        let block = &mut wt[a / LANES * half * LANES..];
        for (k, &x) in row.iter().enumerate() {
            block[k * LANES + a % LANES] = x;
        }
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: this CPU has AVX2 and FMA, checked just above.
        unsafe { forward_avx2(h, w, &wt, logits, values) };
        return Ok(());
    }
    forward(h, w, &wt, logits, values);
    Ok(())
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn forward_avx2(
    h: &[u16],
    w: &HeadWeights<'_>,
    wt: &[f32],
    logits: &mut [f32],
    values: &mut [f32],
) {
    forward(h, w, wt, logits, values)
}

/// Vector lanes: the actions a block of the policy's weight holds, and the value head's partial sums.
const LANES: usize = 16;
/// Rows computed together: their sums are independent, so the multiply-adds of one row need not wait for the last.
const ROWS: usize = 4;

#[inline(always)]
fn forward(h: &[u16], w: &HeadWeights<'_>, wt: &[f32], logits: &mut [f32], values: &mut [f32]) {
    let rows = values.len();
    let full = rows / ROWS * ROWS;
    for r0 in (0..full).step_by(ROWS) {
        forward_rows::<ROWS>(h, w, wt, logits, values, r0);
    }
    for r0 in full..rows {
        forward_rows::<1>(h, w, wt, logits, values, r0);
    }
}

/// Rows `r0..r0 + R`. Each logit sums its row's actor values in order (the same sums whatever `R`).
#[inline(always)]
fn forward_rows<const R: usize>(
    h: &[u16],
    w: &HeadWeights<'_>,
    wt: &[f32],
    logits: &mut [f32],
    values: &mut [f32],
    r0: usize,
) {
    let (half, actions) = (w.value.len(), w.policy_bias.len());
    let row = |i: usize| &h[(r0 + i) * 2 * half..(r0 + i + 1) * 2 * half];
    let actor: [&[u16]; R] = std::array::from_fn(|i| &row(i)[..half]);
    for (b, block) in wt.chunks_exact(half * LANES).enumerate() {
        let mut acc = [[0.0_f32; LANES]; R];
        for (k, wk) in block.chunks_exact(LANES).enumerate() {
            let wk: &[f32; LANES] = wk.try_into().expect("a block's row holds LANES weights");
            for (acc, x) in acc.iter_mut().zip(&actor) {
                let x = f32_of(x[k]);
                for (s, &wv) in acc.iter_mut().zip(wk) {
                    *s = x.mul_add(wv, *s);
                }
            }
        }
        let first = b * LANES;
        let n = LANES.min(actions - first);
        for (i, acc) in acc.iter().enumerate() {
            let out = &mut logits[(r0 + i) * actions + first..][..n];
            for ((o, &s), &bias) in out.iter_mut().zip(acc).zip(&w.policy_bias[first..]) {
                *o = s + bias;
            }
        }
    }
    for i in 0..R {
        values[r0 + i] = dot(&row(i)[half..], w.value) + w.value_bias;
    }
}

/// sum_k f32(x[k]) * y[k], in `LANES` partial sums (the kth into lane k mod LANES) added lane by lane in order.
#[inline(always)]
fn dot(x: &[u16], y: &[f32]) -> f32 {
    let mut lanes = [0.0_f32; LANES];
    let (xc, yc) = (x.chunks_exact(LANES), y.chunks_exact(LANES));
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (xs, ys) in xc.zip(yc) {
        for ((l, &a), &b) in lanes.iter_mut().zip(xs).zip(ys) {
            *l = f32_of(a).mul_add(b, *l);
        }
    }
    for ((l, &a), &b) in lanes.iter_mut().zip(xr).zip(yr) {
        *l = f32_of(a).mul_add(b, *l);
    }
    lanes.iter().sum()
}

/// The heads' backward from `g_logits` (rows x actions) and `g_values` (rows,), the gradients of the loss with
/// respect to their outputs: the gradient with respect to the hidden layer's pre-activation, in bfloat16 bits
/// (`g_hidden`, rows x 2 * half: each head's float32 gradient through its weight, rounded to bfloat16, zero where
/// `h` was not positive), its column sums in float32 (`hidden_bias`, the hidden layer's bias gradient, summed row
/// by row), and the heads' own weight gradients (`grads`, sums over the rows in order). Errors name the slice whose
/// length is wrong; nothing is written then. (`policy` and `value` are the heads' weights, as `HeadWeights`'; the
/// biases take no part.)
pub fn heads_backward(
    g_logits: &[f32],
    g_values: &[f32],
    h: &[u16],
    (policy, value): (&[f32], &[f32]),
    g_hidden: &mut [u16],
    hidden_bias: &mut [f32],
    grads: HeadGrads<'_>,
) -> Result<(), String> {
    let actions = grads.policy_bias.len();
    let (rows, half) = shape(h, g_values.len(), actions, policy, value)?;
    check_len("g_logits", g_logits.len(), rows * actions)?;
    check_len("g_hidden", g_hidden.len(), h.len())?;
    check_len("hidden_bias", hidden_bias.len(), 2 * half)?;
    check_len("grad policy", grads.policy.len(), actions * half)?;
    check_len("grad value", grads.value.len(), half)?;
    let job = Backward {
        g_logits,
        g_values,
        h,
        policy,
        value,
    };
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: this CPU has AVX2 and FMA, checked just above.
        unsafe { backward_avx2(&job, g_hidden, hidden_bias, grads) };
        return Ok(());
    }
    backward(&job, g_hidden, hidden_bias, grads);
    Ok(())
}

/// `heads_backward`'s checked inputs.
struct Backward<'a> {
    g_logits: &'a [f32],
    g_values: &'a [f32],
    h: &'a [u16],
    policy: &'a [f32],
    value: &'a [f32],
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn backward_avx2(
    job: &Backward<'_>,
    g_hidden: &mut [u16],
    hidden_bias: &mut [f32],
    grads: HeadGrads<'_>,
) {
    backward(job, g_hidden, hidden_bias, grads)
}

#[inline(always)]
fn backward(
    job: &Backward<'_>,
    g_hidden: &mut [u16],
    hidden_bias: &mut [f32],
    grads: HeadGrads<'_>,
) {
    let half = job.value.len();
    hidden_bias.fill(0.0);
    grads.policy.fill(0.0);
    grads.policy_bias.fill(0.0);
    grads.value.fill(0.0);
    *grads.value_bias = 0.0;
    // ROWS rows' float32 actor and critic values, and one row's float32 gradient of the actor's half.
    let mut scratch = Scratch {
        actor: vec![0.0; ROWS * half],
        critic: vec![0.0; ROWS * half],
        g_actor: vec![0.0; half],
    };
    let rows = job.g_values.len();
    let full = rows / ROWS * ROWS;
    let mut grads = grads;
    for r0 in (0..full).step_by(ROWS) {
        backward_rows::<ROWS>(job, r0, g_hidden, hidden_bias, &mut grads, &mut scratch);
    }
    for r0 in full..rows {
        backward_rows::<1>(job, r0, g_hidden, hidden_bias, &mut grads, &mut scratch);
    }
}

/// `backward_rows`' buffers.
struct Scratch {
    actor: Vec<f32>,
    critic: Vec<f32>,
    g_actor: Vec<f32>,
}

/// Rows `r0..r0 + R` of the backward. Each weight gradient adds the rows' products in row order (the same sums
/// whatever `R`).
#[inline(always)]
fn backward_rows<const R: usize>(
    job: &Backward<'_>,
    r0: usize,
    g_hidden: &mut [u16],
    hidden_bias: &mut [f32],
    grads: &mut HeadGrads<'_>,
    scratch: &mut Scratch,
) {
    let (half, actions) = (job.value.len(), grads.policy_bias.len());
    let (sums_actor, sums_critic) = hidden_bias.split_at_mut(half);
    for i in 0..R {
        let r = r0 + i;
        let gl = &job.g_logits[r * actions..(r + 1) * actions];
        let gv = job.g_values[r];
        let (actor, critic) = job.h[r * 2 * half..(r + 1) * 2 * half].split_at(half);
        let (a32, c32) = (
            &mut scratch.actor[i * half..][..half],
            &mut scratch.critic[i * half..][..half],
        );
        for ((a32, c32), (&a, &c)) in a32
            .iter_mut()
            .zip(c32.iter_mut())
            .zip(actor.iter().zip(critic))
        {
            *a32 = f32_of(a);
            *c32 = f32_of(c);
        }
        // Through the weights: g_actor = gl @ policy, g_critic = gv * value; rounded, masked and summed.
        through_policy(gl, job.policy, &mut scratch.g_actor);
        let (out_actor, out_critic) = g_hidden[r * 2 * half..(r + 1) * 2 * half].split_at_mut(half);
        let g_actor = scratch.g_actor.iter().map(|&x| bf16_bits(x));
        mask_row(actor, g_actor, out_actor, sums_actor);
        let g_critic = job.value.iter().map(|&v| bf16_bits(gv * v));
        mask_row(critic, g_critic, out_critic, sums_critic);
    }
    // The weights' gradients: policy += gl^T actor, value += gv critic, the R rows in order.
    let gl: [&[f32]; R] =
        std::array::from_fn(|i| &job.g_logits[(r0 + i) * actions..(r0 + i + 1) * actions]);
    let gv: [f32; R] = std::array::from_fn(|i| job.g_values[r0 + i]);
    for (a, (gp, gb)) in grads
        .policy
        .chunks_exact_mut(half)
        .zip(grads.policy_bias.iter_mut())
        .enumerate()
    {
        for (i, a32) in scratch.actor.chunks_exact(half).take(R).enumerate() {
            let g = gl[i][a];
            for (s, &x) in gp.iter_mut().zip(a32) {
                *s = g.mul_add(x, *s);
            }
            *gb += g;
        }
    }
    for (&g, c32) in gv.iter().zip(scratch.critic.chunks_exact(half)) {
        for (s, &x) in grads.value.iter_mut().zip(c32) {
            *s = g.mul_add(x, *s);
        }
    }
    for &g in &gv {
        *grads.value_bias += g;
    }
}

/// out[k] = sum_a gl[a] * policy[a][k] (policy: actions x half), the actions in order; `K` units at a time, so that
/// their sums stay in registers.
#[inline(always)]
fn through_policy(gl: &[f32], policy: &[f32], out: &mut [f32]) {
    const K: usize = 64;
    let half = out.len();
    let full = half / K * K;
    for kb in (0..full).step_by(K) {
        let mut acc = [0.0_f32; K];
        for (&g, p) in gl.iter().zip(policy.chunks_exact(half)) {
            for (s, &pv) in acc.iter_mut().zip(&p[kb..kb + K]) {
                *s = g.mul_add(pv, *s);
            }
        }
        out[kb..kb + K].copy_from_slice(&acc);
    }
    for (k, o) in out.iter_mut().enumerate().skip(full) {
        let mut s = 0.0_f32;
        for (&g, p) in gl.iter().zip(policy.chunks_exact(half)) {
            s = g.mul_add(p[k], s);
        }
        *o = s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small case: `rows` rows, `half` units per head, `actions` actions; values from a fixed sequence, some of
    /// `h` zero (the ReLU's cut).
    struct Case {
        h: Vec<u16>,
        policy: Vec<f32>,
        policy_bias: Vec<f32>,
        value: Vec<f32>,
        value_bias: f32,
        g_logits: Vec<f32>,
        g_values: Vec<f32>,
    }

    fn seq(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    impl Case {
        fn new(rows: usize, half: usize, actions: usize) -> Case {
            let h = seq(rows * 2 * half, 1)
                .into_iter()
                .map(|x| bf16_bits(x.max(0.0)))
                .collect();
            Case {
                h,
                policy: seq(actions * half, 2),
                policy_bias: seq(actions, 3),
                value: seq(half, 4),
                value_bias: 0.25,
                g_logits: seq(rows * actions, 5),
                g_values: seq(rows, 6),
            }
        }

        fn weights(&self) -> HeadWeights<'_> {
            HeadWeights {
                policy: &self.policy,
                policy_bias: &self.policy_bias,
                value: &self.value,
                value_bias: self.value_bias,
            }
        }
    }

    /// The backward's outputs for `rows` rows, `half` units and `actions` actions, each filled with `fill` (a call
    /// overwrites them).
    #[derive(Debug, PartialEq)]
    struct Outs {
        g_hidden: Vec<u16>,
        sums: Vec<f32>,
        policy: Vec<f32>,
        policy_bias: Vec<f32>,
        value: Vec<f32>,
        value_bias: f32,
    }

    impl Outs {
        fn new(rows: usize, half: usize, actions: usize, fill: f32) -> Outs {
            Outs {
                g_hidden: vec![bf16_bits(fill); rows * 2 * half],
                sums: vec![fill; 2 * half],
                policy: vec![fill; actions * half],
                policy_bias: vec![fill; actions],
                value: vec![fill; half],
                value_bias: fill,
            }
        }

        /// `c`'s backward into these: `heads_backward`, or with `plain` the pass without the vector build.
        fn backward(&mut self, c: &Case, plain: bool) -> Result<(), String> {
            let grads = HeadGrads {
                policy: &mut self.policy,
                policy_bias: &mut self.policy_bias,
                value: &mut self.value,
                value_bias: &mut self.value_bias,
            };
            if plain {
                let job = Backward {
                    g_logits: &c.g_logits,
                    g_values: &c.g_values,
                    h: &c.h,
                    policy: &c.policy,
                    value: &c.value,
                };
                backward(&job, &mut self.g_hidden, &mut self.sums, grads);
                return Ok(());
            }
            let weights = (c.policy.as_slice(), c.value.as_slice());
            heads_backward(
                &c.g_logits,
                &c.g_values,
                &c.h,
                weights,
                &mut self.g_hidden,
                &mut self.sums,
                grads,
            )
        }
    }

    #[test]
    fn the_forward_is_the_two_products() {
        let (rows, half, actions) = (5, 20, 3);
        let c = Case::new(rows, half, actions);
        let (mut logits, mut values) = (vec![0.0; rows * actions], vec![0.0; rows]);
        heads_forward(&c.h, &c.weights(), &mut logits, &mut values).unwrap();
        for r in 0..rows {
            let row: Vec<f64> = c.h[r * 2 * half..(r + 1) * 2 * half]
                .iter()
                .map(|&b| f64::from(f32_of(b)))
                .collect();
            for a in 0..actions {
                let want: f64 = (0..half)
                    .map(|k| row[k] * f64::from(c.policy[a * half + k]))
                    .sum::<f64>()
                    + f64::from(c.policy_bias[a]);
                assert!(
                    (f64::from(logits[r * actions + a]) - want).abs() < 1e-5,
                    "row {r} action {a}"
                );
            }
            let want: f64 = (0..half)
                .map(|k| row[half + k] * f64::from(c.value[k]))
                .sum::<f64>()
                + 0.25;
            assert!((f64::from(values[r]) - want).abs() < 1e-5, "row {r} value");
        }
    }

    #[test]
    fn the_backward_is_the_chain_rule() {
        let (rows, half, actions) = (7, 70, 4); // 64 units in registers, 6 after
        let c = Case::new(rows, half, actions);
        let mut o = Outs::new(rows, half, actions, 9.0);
        o.backward(&c, false).unwrap();
        let (g_hidden, sums, gp, gpb, gv, gvb) = (
            o.g_hidden,
            o.sums,
            o.policy,
            o.policy_bias,
            o.value,
            o.value_bias,
        );
        let hv = |r: usize, k: usize| f64::from(f32_of(c.h[r * 2 * half + k]));
        let mut want_sums = vec![0.0_f64; 2 * half];
        for r in 0..rows {
            for k in 0..2 * half {
                let g = if k < half {
                    (0..actions)
                        .map(|a| {
                            f64::from(c.g_logits[r * actions + a])
                                * f64::from(c.policy[a * half + k])
                        })
                        .sum::<f64>()
                } else {
                    f64::from(c.g_values[r]) * f64::from(c.value[k - half])
                };
                let g = if hv(r, k) > 0.0 { g } else { 0.0 };
                let got = f64::from(f32_of(g_hidden[r * 2 * half + k]));
                // bfloat16 keeps 8 bits: within half a step of the exact value.
                assert!(
                    (got - g).abs() <= g.abs() / 256.0 + 1e-30,
                    "row {r} unit {k}: {got} vs {g}"
                );
                want_sums[k] += got;
            }
        }
        for (k, (&s, &w)) in sums.iter().zip(&want_sums).enumerate() {
            assert!((f64::from(s) - w).abs() < 1e-4, "bias sum {k}");
        }
        for a in 0..actions {
            let b: f64 = (0..rows)
                .map(|r| f64::from(c.g_logits[r * actions + a]))
                .sum();
            assert!((f64::from(gpb[a]) - b).abs() < 1e-5);
            for k in 0..half {
                let want: f64 = (0..rows)
                    .map(|r| f64::from(c.g_logits[r * actions + a]) * hv(r, k))
                    .sum();
                assert!(
                    (f64::from(gp[a * half + k]) - want).abs() < 1e-5,
                    "policy {a} {k}"
                );
            }
        }
        for (k, &got) in gv.iter().enumerate() {
            let want: f64 = (0..rows)
                .map(|r| f64::from(c.g_values[r]) * hv(r, half + k))
                .sum();
            assert!((f64::from(got) - want).abs() < 1e-5, "value {k}");
        }
        let vb: f64 = c.g_values.iter().map(|&x| f64::from(x)).sum();
        assert!((f64::from(gvb) - vb).abs() < 1e-5);
    }

    #[test]
    fn the_vector_build_and_the_plain_one_agree_to_the_bit() {
        let (rows, half, actions) = (9, 40, 17);
        let c = Case::new(rows, half, actions);
        let w = c.weights();
        let mut wt = vec![0.0; actions.div_ceil(LANES) * half * LANES];
        for a in 0..actions {
            for k in 0..half {
                wt[a / LANES * half * LANES + k * LANES + a % LANES] = c.policy[a * half + k];
            }
        }
        let (mut l1, mut v1) = (vec![0.0; rows * actions], vec![0.0; rows]);
        forward(&c.h, &w, &wt, &mut l1, &mut v1);
        let (mut l2, mut v2) = (vec![0.0; rows * actions], vec![0.0; rows]);
        heads_forward(&c.h, &w, &mut l2, &mut v2).unwrap();
        assert_eq!((l1, v1), (l2, v2));
    }

    #[test]
    fn the_backwards_vector_build_and_plain_one_agree_to_the_bit() {
        let (rows, half, actions) = (6, 130, 5);
        let c = Case::new(rows, half, actions);
        let run = |plain: bool| {
            let mut o = Outs::new(rows, half, actions, 0.0);
            o.backward(&c, plain).unwrap();
            o
        };
        assert_eq!(run(true), run(false));
    }

    #[test]
    fn bad_shapes_are_named() {
        let c = Case::new(3, 8, 2);
        let w = c.weights();
        let (mut logits, mut values) = (vec![0.0; 6], vec![0.0; 3]);
        let err = heads_forward(&c.h[..47], &w, &mut logits, &mut values).unwrap_err();
        assert!(err.contains("h has 47 elements, expected 48"), "{err}");
        let err = heads_forward(&c.h, &w, &mut logits[..5], &mut values).unwrap_err();
        assert!(err.contains("logits has 5 elements, expected 6"), "{err}");
        let short = HeadWeights {
            policy: &c.policy[..15],
            ..w
        };
        let err = heads_forward(&c.h, &short, &mut logits, &mut values).unwrap_err();
        assert!(err.contains("policy has 15 elements, expected 16"), "{err}");
        // No rows: nothing to compute, and the backward's sums are zero.
        heads_forward(&[], &w, &mut [], &mut []).unwrap();
        let empty = Case {
            h: vec![],
            g_logits: vec![],
            g_values: vec![],
            ..Case::new(1, 8, 2)
        };
        let mut o = Outs::new(0, 8, 2, 9.0);
        o.backward(&empty, false).unwrap();
        assert_eq!(o, Outs::new(0, 8, 2, 0.0));
        let mut o = Outs::new(3, 8, 2, 0.0);
        o.sums.truncate(15);
        let err = o.backward(&c, false).unwrap_err();
        assert!(
            err.contains("hidden_bias has 15 elements, expected 16"),
            "{err}"
        );
    }
}
