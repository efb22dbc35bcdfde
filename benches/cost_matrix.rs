//! Criterion: the rayon cost-matrix kernel on a dense 2000 × 200 × 32 batch.
use criterion::{criterion_group, criterion_main, Criterion};
use modelrouter::capability::{cost_matrix_dense, DenseProfiles, ScoreWeights};
use rand::{rngs::StdRng, Rng, SeedableRng};

fn bench(c: &mut Criterion) {
    let (n, m, k) = (2000, 200, 32);
    let mut rng = StdRng::seed_from_u64(1);
    let required: Vec<f64> = (0..n * k)
        .map(|_| {
            if rng.random::<f64>() < 0.125 {
                rng.random::<f64>() * 0.5
            } else {
                0.0
            }
        })
        .collect();
    let preferred: Vec<f64> = (0..n * k).map(|_| rng.random()).collect();
    let capabilities: Vec<f64> = (0..m * k).map(|_| rng.random()).collect();
    let profiles = DenseProfiles {
        n_agents: n,
        n_models: m,
        n_capabilities: k,
        required: &required,
        preferred: Some(&preferred),
        min_context: None,
        capabilities: &capabilities,
        context_window: None,
        cost_per_1k_tokens: None,
    };
    let weights = ScoreWeights::default();
    c.bench_function("cost_matrix_2000x200x32", |b| {
        b.iter(|| cost_matrix_dense(&profiles, &weights).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
