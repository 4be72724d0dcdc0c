//! One tick: a single town under the scripted expert, and 16 towns stepped together (one thread
//! and every core) with every agent waiting.

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use townlet_core::vec::VecWorld;
use townlet_core::{Actions, World};

fn tick(c: &mut Criterion) {
    let statics = common::default_town();
    let mut g = c.benchmark_group("tick");
    g.bench_function("town_expert", |b| {
        let mut w = World::new(statics.clone(), 0);
        b.iter(|| {
            w.step(Actions::Policy);
            black_box(w.tick())
        })
    });
    for threads in [1, 0] {
        let name = format!("vec16_wait_threads{threads}");
        g.bench_function(&name, |b| {
            let mut v = VecWorld::new(statics.clone(), 16, 7, 1440, threads).expect("vec world");
            let waits = vec![0i64; v.num_slots()];
            b.iter(|| v.step_repeat(black_box(&waits), 1).expect("valid actions"))
        });
    }
    g.finish();
}

criterion_group!(benches, tick);
criterion_main!(benches);
