//! Generalised advantage estimation over a PPO-sized rollout (512 steps x 64 agents).

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use townlet_core::rollout::compute_gae;

fn gae(c: &mut Criterion) {
    let (steps, agents) = (512, 64);
    let n = steps * agents;
    // Deterministic pseudo-data with terminations, truncations and dead slots mixed in.
    let rewards: Vec<f32> = (0..n)
        .map(|k| ((k * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let values: Vec<f32> = (0..n)
        .map(|k| ((k * 53) % 97) as f32 / 20.0 - 2.0)
        .collect();
    let terminated: Vec<bool> = (0..n).map(|k| k % 997 == 0).collect();
    let truncated: Vec<bool> = (0..n).map(|k| k % 1440 == 1).collect();
    let valid: Vec<bool> = (0..n).map(|k| k % 211 != 0).collect();
    let bootstrap = values.clone();
    let next_values = vec![0.5f32; agents];
    let (mut adv, mut ret) = (vec![0.0f32; n], vec![0.0f32; n]);
    c.bench_function("gae/512x64", |b| {
        b.iter(|| {
            compute_gae(
                steps,
                agents,
                &rewards,
                &values,
                &terminated,
                &truncated,
                &valid,
                &bootstrap,
                &next_values,
                black_box(0.99),
                black_box(0.95),
                &mut adv,
                &mut ret,
            );
            black_box(adv[0])
        })
    });
}

criterion_group!(benches, gae);
criterion_main!(benches);
