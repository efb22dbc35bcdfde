//! Unit tests of `perf`.
use super::*;
use crate::load::ManualClock;

fn tracker(window_s: Option<f64>) -> (PerformanceTracker, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(0.0));
    let config = PerfConfig {
        window_s,
        recent_samples: 16,
    };
    (
        PerformanceTracker::new(config, clock.clone()).unwrap(),
        clock,
    )
}

#[test]
fn records_models_and_agents_separately() {
    let (t, _) = tracker(None);
    t.record("m", Some("a"), 10.0, true).unwrap();
    t.record("m", None, 30.0, false).unwrap();
    let s = t.stats("m").unwrap();
    assert_eq!((s.count, s.successes, s.failures), (2, 1, 1));
    assert_eq!(s.success_rate, Some(0.5));
    assert_eq!(s.mean_ms, Some(20.0));
    assert_eq!((s.min_ms, s.max_ms), (Some(10.0), Some(30.0)));
    assert!((s.ewma_ms.unwrap() - 14.0).abs() < 1e-12);
    assert_eq!(t.agent_stats("a").unwrap().count, 1);
    assert!(matches!(t.stats("a"), Err(Error::UnknownModel(_))));
    assert_eq!(t.model_ids(), vec!["m".to_string()]);
}

#[test]
fn bad_latencies_are_refused_and_leave_no_trace() {
    let (t, _) = tracker(None);
    for bad in [f64::NAN, -1.0, f64::INFINITY] {
        assert!(matches!(
            t.record("m", None, bad, true),
            Err(Error::InvalidInput { .. })
        ));
    }
    assert!(t.stats("m").is_err());
    let config = PerfConfig {
        window_s: Some(0.0),
        recent_samples: 0,
    };
    assert!(PerformanceTracker::new(config, t.clock().clone()).is_err());
}

#[test]
fn merge_equals_recording_into_one() {
    let (a, _) = tracker(None);
    let (b, _) = tracker(None);
    let (one, _) = tracker(None);
    for i in 0..500 {
        let (latency, ok) = (1.0 + (i * 37 % 101) as f64 * 3.3, i % 7 != 0);
        let target = if i % 3 == 0 { &a } else { &b };
        target.record("m", Some("x"), latency, ok).unwrap();
        one.record("m", Some("x"), latency, ok).unwrap();
    }
    a.merge(&b).unwrap();
    let (merged, single) = (a.stats("m").unwrap(), one.stats("m").unwrap());
    assert_eq!(merged.count, single.count);
    assert_eq!(merged.p99_ms, single.p99_ms);
    assert_eq!(merged.p50_ms, single.p50_ms);
    assert_eq!(merged.failures, single.failures);
    assert!((merged.mean_ms.unwrap() - single.mean_ms.unwrap()).abs() < 1e-9);
    assert_eq!(a.agent_stats("x").unwrap().count, 500);
    assert!(a.merge(&a).is_err());
}

#[test]
fn sliding_window_forgets() {
    let (t, clock) = tracker(Some(60.0));
    t.record("m", None, 500.0, false).unwrap();
    clock.advance(30.0);
    t.record("m", None, 10.0, true).unwrap();
    assert_eq!(t.stats("m").unwrap().count, 2);
    clock.advance(45.0);
    let s = t.stats("m").unwrap();
    assert_eq!((s.count, s.max_ms), (1, Some(10.0)));
    clock.advance(60.0);
    let s = t.stats("m").unwrap();
    assert_eq!((s.count, s.p50_ms, s.success_rate), (0, None, None));
    assert_eq!(s.last_seen, Some(30.0));
}

#[test]
fn concurrent_records_are_all_counted() {
    let (t, _) = tracker(None);
    let handle = t.model_handle("m");
    std::thread::scope(|scope| {
        for k in 0..8 {
            let (t, handle) = (&t, handle.clone());
            scope.spawn(move || {
                for i in 0..5_000 {
                    t.record("m", Some(&format!("a{k}")), i as f64, true)
                        .unwrap();
                    handle.record(1.0, false).unwrap();
                }
            });
        }
    });
    let s = t.stats("m").unwrap();
    assert_eq!((s.successes, s.failures), (40_000, 40_000));
    assert_eq!(t.agent_ids().len(), 8);
}

#[test]
fn memory_grows_with_keys() {
    let (t, _) = tracker(None);
    let empty = t.memory_bytes();
    t.record("m", Some("a"), 1.0, true).unwrap();
    let two = t.memory_bytes() - empty;
    assert!(two > 2 * 13_000 && two < 2 * 32 * 1024, "{two}");
}
