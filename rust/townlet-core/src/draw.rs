//! The collector's action draw: one action per row of a policy's logits, with its log-probability.
//!
//! Each row's action is drawn by inverse CDF from one uniform number: the first action whose running
//! sum of exp(logit - max) exceeds u times the row's total. The uniforms come from a xoshiro256++
//! stream seeded from the caller's key and the row, so a draw depends on (key, row, logits) alone.
//! A masked action (its logit at the policy's masked value, about -1e8) has probability exactly 0
//! and is never drawn.

use crate::rng::Rng;

/// The uniform of row `row` for the draw keyed `key`: splitmix64 of the pair seeds a xoshiro stream.
fn uniform(key: u64, row: u64) -> f64 {
    let mut z = key ^ row.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut seed = [0u64; 4];
    for word in &mut seed {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = z;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        *word = x ^ (x >> 31);
    }
    Rng::from_state(seed).next_f64()
}

/// Draw one action per row of `logits` (rows x `actions`, row-major) into `out_actions`, with its
/// log-probability under the row's softmax into `out_logp`. `masks` (as `logits`), when given: only the actions
/// it allows, as though the others' logits were the masked value (the same draws and log-probabilities, without
/// the pass that writes them).
pub fn draw_actions(
    logits: &[f32],
    actions: usize,
    key: u64,
    out_actions: &mut [i64],
    out_logp: &mut [f32],
    masks: Option<&[bool]>,
) -> Result<(), String> {
    let rows = out_actions.len();
    if actions == 0 || logits.len() != rows * actions || out_logp.len() != rows {
        return Err(format!(
            "logits has {} values, actions and log-probs {} and {} rows of {actions}",
            logits.len(),
            rows,
            out_logp.len()
        ));
    }
    if masks.is_some_and(|m| m.len() != logits.len()) {
        return Err(format!(
            "masks has {} values, logits {}",
            masks.map_or(0, <[bool]>::len),
            logits.len()
        ));
    }
    let mut weights = vec![0f64; actions];
    let all = vec![true; actions];
    for (row, l) in logits.chunks_exact(actions).enumerate() {
        let allowed = masks.map_or(all.as_slice(), |m| &m[row * actions..(row + 1) * actions]);
        let max = l
            .iter()
            .zip(allowed)
            .filter(|(x, &ok)| ok && x.is_finite())
            .fold(f32::NEG_INFINITY, |m, (&x, _)| m.max(x));
        if max == f32::NEG_INFINITY {
            return Err(format!("row {row} of the logits has no finite value"));
        }
        let mut total = 0f64;
        for ((w, &x), &ok) in weights.iter_mut().zip(l).zip(allowed) {
            *w = if ok && x.is_finite() {
                f64::from(x - max).exp()
            } else {
                0.0
            };
            total += *w;
        }
        let target = uniform(key, row as u64) * total;
        let mut running = 0f64;
        // The last action of positive weight, should rounding leave the running sum short.
        let mut chosen = weights.iter().rposition(|&w| w > 0.0).unwrap_or(0);
        for (a, &w) in weights.iter().enumerate() {
            running += w;
            if w > 0.0 && target < running {
                chosen = a;
                break;
            }
        }
        out_actions[row] = chosen as i64;
        out_logp[row] = (f64::from(l[chosen] - max) - total.ln()) as f32;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_follow_the_softmax_and_skip_masked_actions() {
        let row = [0.5f32, -1e8, 1.5, 0.0];
        let z: f64 = row
            .iter()
            .map(|&x| if x > -1e7 { f64::from(x).exp() } else { 0.0 })
            .sum();
        let rows = 40_000;
        let logits: Vec<f32> = row.iter().copied().cycle().take(rows * 4).collect();
        let (mut acts, mut logp) = (vec![0i64; rows], vec![0f32; rows]);
        draw_actions(&logits, 4, 11, &mut acts, &mut logp, None).unwrap();
        let mut counts = [0usize; 4];
        for (&a, &lp) in acts.iter().zip(&logp) {
            counts[a as usize] += 1;
            let want = (f64::from(row[a as usize]).exp() / z).ln() as f32;
            assert!((lp - want).abs() < 1e-6, "{lp} vs {want}");
        }
        assert_eq!(counts[1], 0);
        for a in [0, 2, 3] {
            let p = f64::from(row[a]).exp() / z;
            let sd = (rows as f64 * p * (1.0 - p)).sqrt();
            let got = counts[a] as f64;
            assert!(
                (got - rows as f64 * p).abs() < 5.0 * sd,
                "action {a}: {got} of {rows}, p {p}"
            );
        }
    }

    #[test]
    fn a_mask_draws_as_the_masked_value_would() {
        // Raw logits with a mask give the draws and log-probabilities of the same logits at -1e8 where masked.
        let rows = 500;
        let raw: Vec<f32> = (0..rows * 5)
            .map(|i| ((i * 13) % 7) as f32 * 0.4 - 1.0)
            .collect();
        let masks: Vec<bool> = (0..rows * 5)
            .map(|i| i % 5 == 0 || (i * 7) % 3 != 0)
            .collect();
        let masked: Vec<f32> = raw
            .iter()
            .zip(&masks)
            .map(|(&x, &ok)| if ok { x } else { -1e8 })
            .collect();
        let run = |logits: &[f32], m: Option<&[bool]>| {
            let (mut a, mut l) = (vec![0i64; rows], vec![0f32; rows]);
            draw_actions(logits, 5, 9, &mut a, &mut l, m).unwrap();
            (a, l)
        };
        let (with_mask, plain) = (run(&raw, Some(&masks)), run(&masked, None));
        assert_eq!(with_mask, plain);
        assert!(with_mask
            .0
            .iter()
            .enumerate()
            .all(|(r, &a)| masks[r * 5 + a as usize]));
        let (mut a, mut l) = (vec![0i64; rows], vec![0f32; rows]);
        let err = draw_actions(&raw, 5, 9, &mut a, &mut l, Some(&masks[1..])).unwrap_err();
        assert!(err.contains("masks has"), "{err}");
    }

    #[test]
    fn a_key_fixes_the_draw_and_another_changes_it() {
        let logits: Vec<f32> = (0..64 * 8).map(|i| ((i * 7) % 5) as f32 * 0.3).collect();
        let run = |key| {
            let (mut a, mut l) = (vec![0i64; 64], vec![0f32; 64]);
            draw_actions(&logits, 8, key, &mut a, &mut l, None).unwrap();
            a
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn bad_shapes_and_empty_rows_are_errors() {
        let (mut a, mut l) = (vec![0i64; 2], vec![0f32; 2]);
        assert!(draw_actions(&[0.0; 5], 3, 0, &mut a, &mut l, None).is_err());
        let logits = [0.0, 1.0, f32::NEG_INFINITY, f32::NAN];
        assert_eq!(
            draw_actions(&logits, 2, 0, &mut a, &mut l, None),
            Err("row 1 of the logits has no finite value".to_string())
        );
    }
}
