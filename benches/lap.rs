//! Criterion benchmarks of the exact assignment solver on dense uniform matrices.
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use modelrouter::linear_sum_assignment;
use rand::{Rng, SeedableRng};

fn uniform(n: usize, m: usize) -> Vec<f64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    (0..n * m).map(|_| rng.random::<f64>()).collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("lap_uniform");
    group.sample_size(10);
    for (n, m) in [(200, 200), (1000, 1000), (200, 1000), (1000, 200)] {
        let cost = uniform(n, m);
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{n}x{m}")),
            &cost,
            |b, cost| b.iter(|| linear_sum_assignment(black_box(cost), n, m, false).unwrap()),
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
