//! Criterion: the lock-free counters behind track() and the per-request routing decision.
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use modelrouter::balancer::Policy;
use modelrouter::capability::{AgentProfile, ModelProfile, ScoreWeights};
use modelrouter::load::{Capacity, LoadTracker, ManualClock};
use modelrouter::router::{Feeds, Outcome, Router, RouterConfig};
use modelrouter::strategy::Strategy;

fn fleet(n: usize) -> Vec<ModelProfile> {
    (0..n)
        .map(|j| {
            let caps = vec![
                ("code".to_string(), 0.5 + 0.03 * j as f64),
                ("chat".to_string(), 0.9 - 0.02 * j as f64),
            ];
            ModelProfile::new(format!("m{j}"), caps, 32768, 64, 16, 0.8, 0.1 * j as f64).unwrap()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let clock = Arc::new(ManualClock::new(0.0));
    let tracker = Arc::new(LoadTracker::new(60.0, clock).unwrap());
    let state = tracker.set_capacity("m", Capacity::new(10, 0, 0.8).unwrap());
    c.bench_function("load_update_pair", |b| {
        b.iter(|| {
            state.add_active(1, 0.0).unwrap();
            state.add_active(-1, 0.0).unwrap();
        })
    });
    for policy in [Policy::Weighted, Policy::PowerOfTwo, Policy::Predictive] {
        let config = RouterConfig {
            strategy: Strategy::Optimal,
            load_balancing: true,
            load_weight: 0.5,
            weights: ScoreWeights::default(),
            policy,
        };
        let router = Router::new(fleet(16), config, Feeds::with_load(tracker.clone())).unwrap();
        let agent = AgentProfile::new("a".into(), vec![("code".into(), 0.4)], vec![], 0).unwrap();
        c.bench_function(&format!("route_16_models_{}", policy.name()), |b| {
            b.iter(|| router.route(&agent).unwrap())
        });
        if policy == Policy::Weighted {
            // The whole lifecycle as callers run it: admit, then end (slot back, latency EWMA,
            // PerformanceTracker for the model and the agent).
            c.bench_function("admit_end_16_models_weighted", |b| {
                b.iter(|| router.admit(&agent).unwrap().1.end(Outcome::Ok))
            });
            c.bench_function("track_end_pair", |b| {
                b.iter(|| router.track(0, None).unwrap().end(Outcome::Ok))
            });
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
