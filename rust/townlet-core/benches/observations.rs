//! Observations and action masks of every agent of one town, written into caller buffers.

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use townlet_core::obs::ObsLayout;
use townlet_core::vec::write_town;
use townlet_core::{Actions, World};

fn observations(c: &mut Criterion) {
    let statics = common::default_town();
    let layout = ObsLayout::build(&statics);
    let mut w = World::new(statics.clone(), 0);
    // Mid-morning of the first day: agents spread over the town, queues forming.
    w.run(480, Actions::Policy);
    let (n, d, k) = (
        w.n_agents(),
        layout.map_len() + layout.n_features(),
        statics.n_actions(),
    );
    let mut obs = vec![0.0f32; n * d];
    let mut masks = vec![false; n * k];
    c.bench_function("observations/town", |b| {
        b.iter(|| {
            write_town(&w, &layout, &mut obs, &mut masks);
            black_box(obs[0])
        })
    });
}

criterion_group!(benches, observations);
criterion_main!(benches);
