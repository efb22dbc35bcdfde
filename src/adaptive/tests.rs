//! Unit tests of `adaptive`.
use super::*;
use crate::load::{Capacity, ManualClock};
use crate::perf::PerfConfig;

fn setup() -> (AdaptiveScorer, Arc<PerformanceTracker>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(0.0));
    let tracker = Arc::new(PerformanceTracker::new(PerfConfig::default(), clock.clone()).unwrap());
    let scorer = AdaptiveScorer::new(
        AdaptiveWeights::default(),
        tracker.clone(),
        None,
        10.0,
        clock.clone(),
    )
    .unwrap();
    (scorer, tracker, clock)
}

/// Picks the better of "a" and "b" `n` times, each pick served with the
/// latency and outcome `serve` gives; returns how often "a" was picked.
fn run(
    scorer: &AdaptiveScorer,
    tracker: &PerformanceTracker,
    clock: &ManualClock,
    capabilities: [f64; 2],
    n: usize,
    serve: impl Fn(&str) -> (f64, bool),
) -> usize {
    let mut picked_a = 0;
    for _ in 0..n {
        let s = scorer.scores(&["a", "b"], &capabilities).unwrap();
        let pick = if s[0] >= s[1] { "a" } else { "b" };
        picked_a += usize::from(pick == "a");
        let (latency, ok) = serve(pick);
        tracker.record(pick, None, latency, ok).unwrap();
        clock.advance(1.0);
    }
    picked_a
}

#[test]
fn cold_models_are_neither_perfect_nor_zero() {
    let (scorer, tracker, _) = setup();
    let p = scorer.performance("new");
    assert!(p > 0.0 && p < 1.0, "{p}");
    for _ in 0..50 {
        tracker.record("old", None, 100.0, true).unwrap();
    }
    let p = scorer.performance("new");
    assert!(p > 0.5 && p < 1.0, "{p}");
    assert!(scorer.breakdown("new", 0.5).unwrap().cold);
}

#[test]
fn a_spiking_model_is_avoided_then_retried_after_healing() {
    let (scorer, tracker, clock) = setup();
    // "a" is the more capable model, so it wins whenever its performance is near "b"'s.
    let caps = [0.9, 0.8];
    let healthy = |_: &str| (100.0, true);
    assert_eq!(run(&scorer, &tracker, &clock, caps, 20, healthy), 20);
    let sick = |m: &str| {
        if m == "a" {
            (2000.0, true)
        } else {
            (100.0, true)
        }
    };
    // One spike is enough: "a" is picked at most once in 20 decisions.
    assert!(run(&scorer, &tracker, &clock, caps, 20, sick) <= 1);
    // Healed: once the spike is a few half-lives old, "a" takes the traffic back.
    clock.advance(60.0);
    assert!(run(&scorer, &tracker, &clock, caps, 20, healthy) >= 19);
}

#[test]
fn a_model_that_keeps_failing_loses_its_traffic() {
    let (scorer, tracker, clock) = setup();
    let caps = [0.85, 0.8];
    let failing = |m: &str| (100.0, m != "a");
    // Failures count at once: within a few decisions "a" is dropped.
    let picked = run(&scorer, &tracker, &clock, caps, 30, failing);
    assert!(picked <= 3, "{picked}");
}

#[test]
fn failures_count_at_once_and_fade() {
    let (scorer, tracker, clock) = setup();
    for _ in 0..20 {
        tracker.record("a", None, 100.0, true).unwrap();
        tracker.record("b", None, 100.0, true).unwrap();
    }
    let before = scorer.performance("a");
    tracker.record("a", None, 100.0, false).unwrap();
    let after = scorer.performance("a");
    assert!(after < before && after < scorer.performance("b"));
    clock.advance(200.0);
    tracker.record("a", None, 100.0, true).unwrap();
    tracker.record("b", None, 100.0, true).unwrap();
    assert!((scorer.performance("a") - scorer.performance("b")).abs() < 0.01);
}

#[test]
fn load_and_weights_enter_the_score() {
    let clock = Arc::new(ManualClock::new(0.0));
    let tracker = Arc::new(PerformanceTracker::new(PerfConfig::default(), clock.clone()).unwrap());
    let load = Arc::new(LoadTracker::new(60.0, clock.clone()).unwrap());
    load.set_capacity("a", Capacity::new(10, 0, 0.8).unwrap());
    load.update_load("a", 5).unwrap();
    let w = AdaptiveWeights {
        capability: 0.0,
        performance: 0.0,
        load: 2.0,
    };
    let scorer = AdaptiveScorer::new(w, tracker, Some(load), 10.0, clock).unwrap();
    assert!((scorer.score("a", 0.9).unwrap() - 0.5).abs() < 1e-12);
    // Unknown to the LoadTracker: the mean of the known models.
    assert!((scorer.score("b", 0.9).unwrap() - 0.5).abs() < 1e-12);
    let s = scorer
        .scores(&["a", "b"], &[f64::NEG_INFINITY, 0.1])
        .unwrap();
    assert_eq!(s[0], f64::NEG_INFINITY);
    assert!(scorer.scores(&["a"], &[f64::NAN]).is_err());
    assert!(scorer.scores(&["a"], &[]).is_err());
}

#[test]
fn bad_settings_are_refused() {
    let (_, tracker, clock) = setup();
    let zero = AdaptiveWeights {
        capability: 0.0,
        performance: 0.0,
        load: 0.0,
    };
    assert!(AdaptiveScorer::new(zero, tracker.clone(), None, 1.0, clock.clone()).is_err());
    let w = AdaptiveWeights::default();
    assert!(AdaptiveScorer::new(w, tracker, None, 0.0, clock.clone()).is_err());
    let no_ring = PerfConfig {
        window_s: None,
        recent_samples: 0,
        ..PerfConfig::default()
    };
    let t = Arc::new(PerformanceTracker::new(no_ring, clock.clone()).unwrap());
    assert!(AdaptiveScorer::new(w, t, None, 1.0, clock).is_err());
}

#[test]
fn weights_from_a_slice_need_three_numbers() {
    let w = AdaptiveWeights::from_slice(&[1.0, 2.0, 1.0]).unwrap();
    assert_eq!((w.capability, w.performance, w.load), (1.0, 2.0, 1.0));
    for bad in [&[][..], &[1.0, 2.0][..], &[1.0, 1.0, 1.0, 1.0][..]] {
        let err = AdaptiveWeights::from_slice(bad).unwrap_err();
        assert_eq!(
            err,
            Error::invalid(
                "weights",
                format!(
                    "must be three numbers (capability, performance, load), got {}",
                    bad.len()
                )
            )
        );
    }
}

#[test]
fn breakdown_serializes_with_a_null_latency_while_cold_and_repr_shows_weights() {
    let (scorer, tracker, _clock) = setup();
    let cold = serde_json::to_value(scorer.breakdown("a", 0.5).unwrap()).unwrap();
    assert!(cold["latency_ms"].is_null());
    assert_eq!(cold["cold"], true);
    assert_eq!(cold["capability"], 0.5);
    let keys: Vec<&String> = cold.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 8);
    tracker.record("a", None, 120.0, true).unwrap();
    let warm = serde_json::to_value(scorer.breakdown("a", 0.5).unwrap()).unwrap();
    assert_eq!(warm["latency_ms"], 120.0);
    assert_eq!(warm["cold"], false);
    assert_eq!(
        scorer.to_string(),
        "AdaptiveScorer(weights=(0.5, 0.3, 0.2), half_life_s=10.0)"
    );
}

#[test]
fn a_tracker_without_recent_samples_is_refused_naming_performance() {
    let clock = Arc::new(ManualClock::new(0.0));
    let config = PerfConfig {
        recent_samples: 0,
        ..PerfConfig::default()
    };
    let tracker = Arc::new(PerformanceTracker::new(config, clock.clone()).unwrap());
    let err =
        AdaptiveScorer::new(AdaptiveWeights::default(), tracker, None, 1.0, clock).unwrap_err();
    assert!(matches!(err, Error::InvalidInput { ref field, .. } if field == "performance"));
}

#[test]
fn a_scorer_runs_on_the_clock_given_else_its_trackers_and_owns_a_tracker_when_given_none() {
    let w = AdaptiveWeights::default();
    let (_, tracker, tracker_clock) = setup();
    let own: SharedClock = Arc::new(ManualClock::new(500.0));
    tracker_clock.set(7.0);
    let s = AdaptiveScorer::with_tracker_or_clock(w, Some(tracker.clone()), None, 1.0, None);
    let s = s.unwrap();
    assert!(Arc::ptr_eq(s.tracker(), &tracker));
    assert_eq!(s.clock.now(), 7.0);
    let s = AdaptiveScorer::with_tracker_or_clock(
        w,
        Some(tracker.clone()),
        None,
        1.0,
        Some(own.clone()),
    );
    assert_eq!(s.unwrap().clock.now(), 500.0);
    let s = AdaptiveScorer::with_tracker_or_clock(w, None, None, 1.0, Some(own)).unwrap();
    assert!(!Arc::ptr_eq(s.tracker(), &tracker));
    assert_eq!((s.clock.now(), s.tracker().now()), (500.0, 500.0));
    assert_eq!(s.tracker().config(), PerfConfig::default());
    let s = AdaptiveScorer::with_tracker_or_clock(w, None, None, 1.0, None).unwrap();
    assert!(s.tracker().model_ids().is_empty());
    let err = AdaptiveScorer::with_tracker_or_clock(w, None, None, 0.0, None).unwrap_err();
    assert!(matches!(err, Error::InvalidInput { ref field, .. } if field == "half_life_s"));
}
