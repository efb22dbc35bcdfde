//! Criterion: the feedback loop. PerformanceTracker::record by id and through a handle (target
//! ≥ 10 M records/s on one thread), stats(), AdaptiveScorer::scores and AlertManager::evaluate.
use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use modelrouter::adaptive::{AdaptiveScorer, AdaptiveWeights};
use modelrouter::alerts::{AlertKind, AlertManager, AlertRule};
use modelrouter::load::{system_clock, Capacity, LoadTracker, ManualClock, SharedClock};
use modelrouter::perf::{PerfConfig, PerformanceTracker};

const BATCH: u64 = 1000;

fn latencies() -> Vec<f64> {
    // A fixed spread of plausible latencies (1 ms .. ~3 s), cheap to cycle through.
    (0..BATCH)
        .map(|i| 1.0 + ((i * 7919) % 3000) as f64)
        .collect()
}

fn record(c: &mut Criterion) {
    let lat = latencies();
    let mut g = c.benchmark_group("perf_record");
    g.throughput(Throughput::Elements(BATCH));
    for (name, clock) in [
        (
            "manual_clock",
            Arc::new(ManualClock::new(0.0)) as SharedClock,
        ),
        ("system_clock", system_clock()),
    ] {
        let t = PerformanceTracker::new(PerfConfig::default(), clock).unwrap();
        let ids: Vec<String> = (0..16).map(|j| format!("model-{j}")).collect();
        ids.iter()
            .for_each(|id| t.record(id, None, 1.0, true).unwrap());
        g.bench_function(format!("by_id_{name}"), |b| {
            b.iter(|| {
                for (i, &l) in lat.iter().enumerate() {
                    t.record(&ids[i & 15], None, l, i % 50 != 0).unwrap();
                }
            })
        });
    }
    let clock = Arc::new(ManualClock::new(0.0));
    let t = PerformanceTracker::new(PerfConfig::default(), clock).unwrap();
    t.record("m", Some("a"), 1.0, true).unwrap();
    g.bench_function("model_and_agent_manual_clock", |b| {
        b.iter(|| {
            for &l in &lat {
                t.record("m", Some("a"), l, true).unwrap();
            }
        })
    });
    let handle = t.model_handle("m");
    g.bench_function("handle_at_explicit_time", |b| {
        b.iter(|| {
            for &l in &lat {
                handle.record_at(l, true, 1.0).unwrap();
            }
        })
    });
    let windowed = PerfConfig {
        window_s: Some(60.0),
        recent_samples: 1024,
        ..PerfConfig::default()
    };
    let t = PerformanceTracker::new(windowed, Arc::new(ManualClock::new(0.0))).unwrap();
    let handle = t.model_handle("m");
    g.bench_function("handle_sliding_window", |b| {
        b.iter(|| {
            for (i, &l) in lat.iter().enumerate() {
                handle.record_at(l, true, i as f64 * 0.001).unwrap();
            }
        })
    });
    g.finish();
}

fn readers(c: &mut Criterion) {
    let clock = Arc::new(ManualClock::new(0.0));
    let tracker = Arc::new(PerformanceTracker::new(PerfConfig::default(), clock.clone()).unwrap());
    let load = Arc::new(LoadTracker::new(60.0, clock.clone()).unwrap());
    let ids: Vec<String> = (0..16).map(|j| format!("model-{j}")).collect();
    for (j, id) in ids.iter().enumerate() {
        load.set_capacity(id, Capacity::new(10, 5, 0.8).unwrap());
        for &l in &latencies() {
            tracker
                .record(id, None, l * (1.0 + j as f64 / 16.0), true)
                .unwrap();
        }
    }
    c.bench_function("perf_stats_one_model", |b| {
        b.iter(|| tracker.stats(black_box("model-3")).unwrap())
    });
    let scorer = AdaptiveScorer::new(
        AdaptiveWeights::default(),
        tracker.clone(),
        Some(load.clone()),
        30.0,
        clock.clone(),
    )
    .unwrap();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let caps = vec![0.7; ids.len()];
    c.bench_function("adaptive_scores_16_models", |b| {
        b.iter(|| {
            tracker.record("model-5", None, 120.0, true).unwrap();
            scorer.scores(&refs, &caps).unwrap()
        })
    });
    let rules = vec![
        AlertRule::simple(AlertKind::HighLatency, 2500.0).unwrap(),
        AlertRule::simple(AlertKind::LowSuccessRate, 0.9).unwrap(),
        AlertRule::simple(AlertKind::Overload, 0.9).unwrap(),
        AlertRule::simple(AlertKind::NoCapacity, 0.0).unwrap(),
    ];
    let alerts = AlertManager::new(rules, 300.0, Some(tracker), Some(load), 1000, clock).unwrap();
    c.bench_function("alerts_evaluate_16_models_4_rules", |b| {
        b.iter(|| alerts.evaluate(None))
    });
}

criterion_group!(benches, record, readers);
criterion_main!(benches);
