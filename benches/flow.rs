//! Capacitated assignment on a capability-shaped instance: 2000 agents × 50 models, capacity
//! 40 each (total capacity exactly the number of agents, so the last agents push long chains).
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use modelrouter::{assign_capacitated, UnassignedPolicy};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// cost = −(needs · capabilities) + small noise, as the router builds it.
fn instance(n: usize, m: usize, dims: usize, seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let needs: Vec<f64> = (0..n * dims).map(|_| rng.random()).collect();
    let caps: Vec<f64> = (0..m * dims).map(|_| rng.random()).collect();
    let mut cost = vec![0.0; n * m];
    for i in 0..n {
        for j in 0..m {
            let dot: f64 = (0..dims)
                .map(|d| needs[i * dims + d] * caps[j * dims + d])
                .sum();
            cost[i * m + j] = -dot + 0.1 * rng.random::<f64>();
        }
    }
    cost
}

fn bench(c: &mut Criterion) {
    let (n, m) = (2000, 50);
    let cost = instance(n, m, 16, 42);
    let capacities = vec![n / m; m];
    let mut group = c.benchmark_group("assign_capacitated_2000x50");
    for (name, policy) in [
        ("max_cardinality", UnassignedPolicy::MaxCardinality),
        ("min_cost", UnassignedPolicy::MinCost),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| assign_capacitated(black_box(&cost), n, m, &capacities, policy).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
