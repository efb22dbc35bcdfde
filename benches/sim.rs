//! Criterion: the event loop on the shipped 16-model scenario, 200 000 requests per policy
//! (`benches/bench_sim.py` runs the full million through Python).
use criterion::{criterion_group, criterion_main, Criterion};
use modelrouter::balancer::Policy;
use modelrouter::sim::{simulate, Scenario};

fn bench(c: &mut Criterion) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/python/modelrouter/scenarios/heterogeneous.json"
    );
    let mut scenario = Scenario::from_file(path.as_ref()).expect("shipped scenario is valid");
    scenario.requests = 200_000;
    let mut group = c.benchmark_group("sim_heterogeneous_200k");
    group.sample_size(10);
    for policy in Policy::ALL {
        group.bench_function(policy.name(), |b| {
            b.iter(|| simulate(&scenario, &[policy]).expect("scores are valid"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
