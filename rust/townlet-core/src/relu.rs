//! The learner's ReLU backward in bfloat16, in one pass.
//!
//! A hidden layer of the policy (python/townlet/training/network_bf16.py, `linear_relu`) computes
//! `out = relu(x @ w^T + b)` in bfloat16. Its backward needs the gradient masked where the output was not positive
//! (torch's `threshold_backward`) and that gradient's column sums (the bias's gradient). Torch runs each as its own
//! pass over memory, and its bfloat16 elementwise kernels run at a fraction of memory speed; here they are one pass,
//! on the bits. (The hidden layer under the float32 heads has its own pass, `heads::heads_backward`.)

/// The gradient through `relu`: `dst[i]` is `grad[i]` (bfloat16 bits) where `out[i]`, the layer's output in
/// bfloat16 bits, is positive, else zero (torch's `threshold_backward(grad, out, 0)`, the same bits); `col_sums[c]`
/// is the sum of column `c` of `dst` in float32, row by row in order. `grad`, `out` and `dst` hold `rows * cols`
/// values with `cols = col_sums.len()`. Errors name the slice whose length is wrong; nothing is written then.
pub fn relu_backward(
    grad: &[u16],
    out: &[u16],
    dst: &mut [u16],
    col_sums: &mut [f32],
) -> Result<(), String> {
    let cols = col_sums.len();
    if cols == 0 || !out.len().is_multiple_of(cols) {
        return Err(format!(
            "out has {} values, not a whole number of rows of {cols}",
            out.len()
        ));
    }
    if dst.len() != out.len() {
        return Err(format!(
            "dst has {} values, expected {} (as out)",
            dst.len(),
            out.len()
        ));
    }
    if grad.len() != out.len() {
        return Err(format!(
            "grad has {} values, expected {} (as out)",
            grad.len(),
            out.len()
        ));
    }
    col_sums.fill(0.0);
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: this CPU has AVX2, checked just above.
        unsafe { backward_avx2(grad, out, dst, col_sums) };
        return Ok(());
    }
    backward(grad, out, dst, col_sums);
    Ok(())
}

/// `backward` compiled for AVX2 (16 values a step where the baseline build takes 8).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn backward_avx2(grad: &[u16], out: &[u16], dst: &mut [u16], col_sums: &mut [f32]) {
    backward(grad, out, dst, col_sums)
}

/// The checked arguments' pass, row by row.
#[inline(always)]
fn backward(grad: &[u16], out: &[u16], dst: &mut [u16], col_sums: &mut [f32]) {
    let cols = col_sums.len();
    for ((o, g), d) in out
        .chunks_exact(cols)
        .zip(grad.chunks_exact(cols))
        .zip(dst.chunks_exact_mut(cols))
    {
        mask_row(o, g.iter().copied(), d, col_sums);
    }
}

/// One row: `d[c] = g[c]` where `o[c]` is positive (its bits, as a signed integer, above zero:
/// the sign bit clear and not +0), else 0; `sums[c] += d[c]`. Branch-free, so that it vectorises.
#[inline(always)]
pub(crate) fn mask_row(o: &[u16], g: impl Iterator<Item = u16>, d: &mut [u16], sums: &mut [f32]) {
    for (((&o, g), d), s) in o.iter().zip(g).zip(d.iter_mut()).zip(sums.iter_mut()) {
        let keep = ((o as i16) > 0) as u16;
        let m = g & keep.wrapping_neg();
        *d = m;
        *s += f32::from_bits((m as u32) << 16);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slabs::bf16_bits;

    fn bits(x: f32) -> u16 {
        bf16_bits(x)
    }

    #[test]
    fn masks_where_the_output_is_not_positive_and_sums_columns() {
        // 3 rows of 2: outputs positive, zero, negative zero, positive, positive, NaN-free.
        let out = [
            bits(1.0),
            bits(0.0),
            0x8000,
            bits(2.0),
            bits(0.5),
            bits(3.0),
        ];
        let grad = [
            bits(0.5),
            bits(7.0),
            bits(9.0),
            bits(-1.5),
            bits(0.25),
            bits(1.0),
        ];
        let (mut dst, mut sums) = ([0xFFFF_u16; 6], [9.0_f32; 2]);
        relu_backward(&grad, &out, &mut dst, &mut sums).unwrap();
        assert_eq!(dst, [bits(0.5), 0, 0, bits(-1.5), bits(0.25), bits(1.0)]);
        assert_eq!(sums, [0.75, -0.5]);
    }

    #[test]
    fn refuses_lengths_that_do_not_fit() {
        let out = [0_u16; 6];
        let (mut dst, mut sums) = ([0_u16; 6], [0.0_f32; 4]);
        let err = relu_backward(&[0; 6], &out, &mut dst, &mut sums).unwrap_err();
        assert!(err.contains("not a whole number of rows of 4"), "{err}");
        let mut sums = [0.0_f32; 3];
        let err = relu_backward(&[0; 5], &out, &mut dst, &mut sums).unwrap_err();
        assert!(err.contains("grad has 5 values, expected 6"), "{err}");
        let err = relu_backward(&[0; 6], &out, &mut dst[..4], &mut sums).unwrap_err();
        assert!(err.contains("dst has 4 values"), "{err}");
    }
}
