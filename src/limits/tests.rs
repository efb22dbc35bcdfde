use std::sync::{Arc, Mutex};

use super::*;

/// Every window `(t - 60, t]` of an admitted log, checked by brute force: the sums over the
/// windows ending at each admission (the only places a window's sum can peak).
pub(crate) fn worst_window(log: &[(f64, u64)]) -> u64 {
    log.iter()
        .map(|&(t, _)| {
            log.iter()
                .filter(|&&(s, _)| s > t - WINDOW_S && s <= t)
                .map(|&(_, n)| n)
                .sum::<u64>()
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn limits_validate_and_name_the_field() {
    assert_eq!(Limits::new(None, None, None).unwrap(), Limits::NONE);
    let err = Limits::new(None, Some(0), None).unwrap_err();
    assert!(err.to_string().starts_with("tpm: "), "{err}");
    let err = Limits::new(Some(-3), None, None).unwrap_err();
    assert!(err.to_string().starts_with("rpm: "), "{err}");
    let l = Limits::new(Some(10), Some(1000), Some(500)).unwrap();
    assert_eq!(l.too_big(501), Some(("max_tokens_in_flight", 500)));
    assert_eq!(l.too_big(1001), Some(("tpm", 1000)));
    assert_eq!(l.too_big(500), None);
}

#[test]
fn rpm_is_exact_at_the_boundary() {
    let l = Limiter::new(Limits::new(Some(3), None, None).unwrap());
    for t in [0.0, 10.0, 20.0] {
        assert!(l.admit(0, true, t, || Some(())).unwrap().is_some());
    }
    let refused = l.admit(0, true, 59.999, || Some(())).unwrap_err();
    assert_eq!(refused.limit, "rpm");
    assert!((refused.retry_after_s - 0.001).abs() < 1e-9, "{refused:?}");
    // At 60.0 the first request has left the window (60, ...]: exactly one more fits.
    assert!(l.admit(0, true, 60.0, || Some(())).unwrap().is_some());
    assert!(l.admit(0, true, 60.0, || Some(())).is_err());
}

#[test]
fn a_refused_slot_records_nothing_and_unbounded_records_anyway() {
    let l = Limiter::new(Limits::new(Some(1), Some(100), None).unwrap());
    assert_eq!(l.admit(50, true, 0.0, || None::<()>), Ok(None));
    assert_eq!(l.load(0.0), TokenLoad::default());
    assert!(l.admit(100, true, 0.0, || Some(())).unwrap().is_some());
    assert!(l.admit(1, true, 1.0, || Some(())).is_err());
    assert!(l.admit(1, false, 1.0, || Some(())).unwrap().is_some());
    assert_eq!(l.load(1.0).tokens_in_window, 101);
}

#[test]
fn reconciliation_counts_actual_usage_and_frees_in_flight() {
    let l = Limiter::new(Limits::new(None, Some(1000), Some(800)).unwrap());
    let (_, r) = l.admit(700, true, 0.0, || Some(())).unwrap().unwrap();
    assert_eq!(
        l.check(200, 0.0).map(|r| r.limit),
        Some("max_tokens_in_flight")
    );
    let r = l.reconcile(r, 300, 1.0);
    assert_eq!(
        l.load(1.0),
        TokenLoad {
            in_flight: 300,
            requests_in_window: 1,
            tokens_in_window: 300
        }
    );
    assert_eq!(l.check(500, 1.0), None);
    l.release(&r);
    assert_eq!(l.load(1.0).in_flight, 0);
    // The window keeps the 300 for 60 s: 701 does not fit, and waits for t = 60.
    let refused = l.admit(701, true, 2.0, || Some(())).unwrap_err();
    assert_eq!(refused.limit, "tpm");
    assert!((refused.retry_after_s - 58.0).abs() < 1e-9);
}

#[test]
fn threads_racing_never_overshoot_any_window() {
    let l = Arc::new(Limiter::new(
        Limits::new(Some(500), Some(10_000), None).unwrap(),
    ));
    let clock = Arc::new(crate::load::ManualClock::new(0.0));
    let log = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|s| {
        for k in 0..32u64 {
            let (l, clock, log) = (l.clone(), clock.clone(), log.clone());
            s.spawn(move || {
                use crate::load::Clock;
                let mut mine = Vec::new();
                for i in 0..400u64 {
                    let tokens = 1 + (k * 7919 + i * 104_729) % 700;
                    if k == 0 && i % 5 == 0 {
                        clock.advance(7.5);
                    }
                    let now = clock.now();
                    if let Ok(Some((_, r))) = l.admit(tokens, true, now, || Some(())) {
                        mine.push((r.at, tokens));
                    }
                }
                log.lock().unwrap().extend(mine);
            });
        }
    });
    let log = log.lock().unwrap();
    assert!(worst_window(&log) <= 10_000);
    let requests: Vec<(f64, u64)> = log.iter().map(|&(t, _)| (t, 1)).collect();
    assert!(worst_window(&requests) <= 500);
    assert!(log.len() > 200, "{}", log.len());
}
