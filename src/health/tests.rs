//! Envoy's outlier-detection rules, step by step on an explicit clock.
use super::*;

fn health(models: usize) -> Health {
    Health::new(models, HealthConfig::default(), 0.0).unwrap()
}

fn errors(h: &Health, model: usize, n: u32, now: f64) {
    for _ in 0..n {
        h.observe(model, Verdict::ServerError, now);
    }
}

#[test]
fn consecutive_errors_eject_and_a_success_resets_the_run() {
    let h = health(4);
    errors(&h, 0, 4, 1.0);
    h.observe(0, Verdict::Ok, 1.0);
    errors(&h, 0, 4, 1.0);
    assert_eq!(h.of(0, 1.0).state, State::Healthy);
    assert_eq!(
        h.observe(0, Verdict::ServerError, 1.0),
        Some(State::Ejected)
    );
    let m = h.of(0, 1.0);
    assert_eq!((m.ejections, m.until), (1, Some(31.0)));
    assert_eq!(m.reason.as_deref(), Some("5 consecutive errors"));
    assert_eq!(h.available(1.0), vec![false, true, true, true]);
    assert_eq!(h.earliest_return(1.0), Some(31.0));
    assert!(!h.all_healthy());
}

#[test]
fn one_probe_at_a_time_decides_after_the_ejection() {
    let h = health(4);
    errors(&h, 0, 5, 0.0);
    assert_eq!(h.of(0, 29.9).state, State::Ejected);
    assert_eq!(h.of(0, 30.0).state, State::Probing);
    assert!(h.available(30.0)[0]);
    assert!(h.claim(0, 30.0));
    assert!(
        !h.claim(0, 30.0),
        "a second probe while the first is in flight"
    );
    assert!(!h.available(30.0)[0]);
    // The probe fails: ejected again, for twice the base time.
    assert_eq!(
        h.observe(0, Verdict::ServerError, 31.0),
        Some(State::Ejected)
    );
    assert_eq!(h.of(0, 31.0).until, Some(31.0 + 60.0));
    // The next probe succeeds: healthy.
    assert!(h.claim(0, 91.0));
    assert_eq!(h.observe(0, Verdict::Ok, 92.0), Some(State::Healthy));
    assert!(h.available(92.0)[0]);
    assert!(h.all_healthy());
}

#[test]
fn ejection_time_grows_with_each_ejection_is_capped_and_decays_while_healthy() {
    let config = HealthConfig {
        max_ejection_s: 70.0,
        ..HealthConfig::default()
    };
    let h = Health::new(4, config, 0.0).unwrap();
    let mut now = 0.0;
    for expected in [30.0, 60.0, 70.0, 70.0] {
        errors(&h, 0, 5, now);
        let until = h.of(0, now).until.unwrap();
        assert_eq!(until - now, expected);
        now = until;
        assert!(h.claim(0, now));
        h.observe(0, Verdict::Ok, now); // back, healthy
    }
    // Four ejections: multiplier 4. Healthy for 3 intervals (30 s): down to 1.
    now += 30.0;
    h.of(0, now);
    errors(&h, 0, 5, now);
    assert_eq!(h.of(0, now).until.unwrap() - now, 60.0); // multiplier 1 + 1 = 2
}

#[test]
fn a_failure_rate_over_an_interval_ejects_once_the_volume_is_there() {
    let h = health(4);
    // 19 requests, 12 failed but never 5 in a row: below the minimum volume of 20.
    for i in 0..19 {
        let v = if i % 3 == 2 {
            Verdict::Ok
        } else {
            Verdict::ServerError
        };
        h.observe(1, v, 1.0);
    }
    assert_eq!(h.of(1, 1.0).state, State::Healthy);
    // The 20th: 13 of 20 failed > 50 %.
    assert_eq!(
        h.observe(1, Verdict::ServerError, 1.0),
        Some(State::Ejected)
    );
    assert!(h
        .of(1, 1.0)
        .reason
        .unwrap()
        .contains("of 20 requests failed"));
    // A new interval starts the count again.
    let h = health(4);
    for _ in 0..9 {
        h.observe(2, Verdict::Ok, 0.0);
        h.observe(2, Verdict::ServerError, 0.0);
    }
    h.observe(2, Verdict::Ok, 0.0); // 19 requests, 9 failed
                                    // Counted with the old interval this would be 13 of 23 failed: ejected. A new interval
                                    // started at 10 s, so these are 4 of 4, below the minimum volume.
    for _ in 0..4 {
        h.observe(2, Verdict::ServerError, 10.5);
    }
    assert_eq!(h.of(2, 10.5).state, State::Healthy);
}

#[test]
fn at_most_the_ejection_share_is_ejected_at_once_and_at_least_one() {
    let h = health(4); // 50 %: two of four
    for m in 0..4 {
        errors(&h, m, 5, 0.0);
    }
    let states: Vec<State> = (0..4).map(|m| h.of(m, 0.0).state).collect();
    assert_eq!(states.iter().filter(|&&s| s == State::Ejected).count(), 2);
    let one = Health::new(1, HealthConfig::default(), 0.0).unwrap();
    errors(&one, 0, 5, 0.0);
    assert_eq!(one.of(0, 0.0).state, State::Ejected);
}

#[test]
fn in_panic_every_model_is_used() {
    let h = health(4);
    errors(&h, 0, 5, 0.0);
    errors(&h, 1, 5, 0.0);
    h.observe(
        2,
        Verdict::RateLimited {
            retry_after_s: Some(5.0),
        },
        0.0,
    );
    // One of four available < 50 %: health is ignored.
    assert_eq!(h.available(0.0), vec![true; 4]);
    assert_eq!(h.available(5.0), vec![false, false, true, true]); // the cooldown ended
}

#[test]
fn rate_limits_cool_down_until_retry_after_without_an_ejection() {
    let h = health(4);
    let v = Verdict::RateLimited {
        retry_after_s: Some(2.5),
    };
    assert_eq!(h.observe(3, v, 10.0), Some(State::CoolingDown));
    let m = h.of(3, 10.0);
    assert_eq!((m.until, m.ejections), (Some(12.5), 0));
    assert_eq!(h.of(3, 12.49).state, State::CoolingDown);
    assert_eq!(h.of(3, 12.5).state, State::Probing);
    h.observe(
        1,
        Verdict::RateLimited {
            retry_after_s: None,
        },
        0.0,
    );
    assert_eq!(
        h.of(1, 0.0).until,
        Some(HealthConfig::default().default_cooldown_s)
    );
}

#[test]
fn the_callers_errors_never_count_against_the_model() {
    let h = health(2);
    errors(&h, 0, 4, 0.0);
    for _ in 0..100 {
        h.observe(0, Verdict::Neutral, 0.0);
    }
    assert_eq!(h.of(0, 0.0).consecutive_errors, 4);
    assert_eq!(h.of(0, 0.0).state, State::Healthy);
}

#[test]
fn bad_settings_name_their_field() {
    for (config, field) in [
        (
            HealthConfig {
                consecutive_errors: 0,
                ..HealthConfig::default()
            },
            "consecutive_errors",
        ),
        (
            HealthConfig {
                interval_s: f64::NAN,
                ..HealthConfig::default()
            },
            "interval_s",
        ),
        (
            HealthConfig {
                failure_rate: 1.5,
                ..HealthConfig::default()
            },
            "failure_rate",
        ),
        (
            HealthConfig {
                max_ejection_s: 1.0,
                ..HealthConfig::default()
            },
            "max_ejection_s",
        ),
        (
            HealthConfig {
                panic_threshold: -0.1,
                ..HealthConfig::default()
            },
            "panic_threshold",
        ),
    ] {
        match Health::new(2, config, 0.0) {
            Err(Error::InvalidInput { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected InvalidInput for {field}, got {other:?}"),
        }
    }
}

/// 32 threads failing and succeeding at once on 4 models: at every instant (read under all
/// locks at once) no more than the ejection share is out, and both counters match the states.
#[test]
fn concurrent_outcomes_never_corrupt_health() {
    let h = health(4);
    let cap = 2; // max_ejection_percent 0.5 of 4
    let check = |h: &Health| {
        let (views, unhealthy, ejected) = h.snapshot();
        let out = views.iter().filter(|v| v.state == State::Ejected).count();
        let not_healthy = views.iter().filter(|v| v.state != State::Healthy).count();
        assert!(out <= cap, "{out} models ejected at once");
        assert_eq!(ejected, out, "ejected counter");
        assert_eq!(unhealthy, not_healthy, "unhealthy counter");
    };
    let ejections = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for t in 0..32u32 {
            let (h, ejections) = (&h, &ejections);
            scope.spawn(move || {
                for i in 0..2_000u32 {
                    let model = ((t + i) % 4) as usize;
                    let now = f64::from(i) * 0.01;
                    let v = match (t + i) % 7 {
                        0 | 3 => Verdict::Ok,
                        5 if t % 8 == 0 => Verdict::RateLimited {
                            retry_after_s: Some(0.5),
                        },
                        _ => Verdict::ServerError,
                    };
                    if h.observe(model, v, now) == Some(State::Ejected) {
                        ejections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    let open = h.available(now);
                    assert_eq!(open.len(), 4);
                    if i % 64 == 0 {
                        check(h);
                    }
                }
            });
        }
    });
    check(&h);
    // The run did eject (so the share was contended), and time frees every slot.
    assert!(ejections.into_inner() > 0);
    for m in 0..4 {
        h.of(m, 1e6);
    }
    assert_eq!(h.snapshot().2, 0);
}

/// The share holds across models: with the cap used up, a third model's failures do not
/// eject it, and once an ejection's time is over the slot is free again without any call
/// touching that model.
#[test]
fn ejection_share_is_freed_when_an_ejection_ends() {
    let h = health(4);
    let n = HealthConfig::default().consecutive_errors;
    errors(&h, 0, n, 0.0);
    errors(&h, 1, n, 1.0);
    errors(&h, 2, n, 1.0);
    let states: Vec<State> = (0..3).map(|m| h.snapshot().0[m].state).collect();
    assert_eq!(states, [State::Ejected, State::Ejected, State::Healthy]);
    let back = h.snapshot().0[0].until.unwrap();
    errors(&h, 2, n, back + 0.001);
    let (views, _, ejected) = h.snapshot();
    let states: Vec<State> = views.iter().map(|v| v.state).collect();
    assert_eq!(
        states[..3],
        [State::Probing, State::Ejected, State::Ejected]
    );
    assert_eq!(ejected, 2);
}

// -- the retry budget, against a hand-computed oracle ----------------------------------------

fn budget(percent: f64, min_per_s: f64, ttl_s: f64) -> RetryBudget {
    RetryBudget::new(RetryBudgetConfig {
        percent,
        min_per_s,
        ttl_s,
    })
    .unwrap()
}

#[test]
fn retries_are_at_most_the_share_of_recent_requests_plus_the_floor() {
    // 20 % of 100 requests + 1/s × 10 s = 30 retries in the window, and not one more.
    let b = budget(0.2, 1.0, 10.0);
    for _ in 0..100 {
        b.record_request(0.5);
    }
    assert_eq!(b.balance(0.5), 30.0);
    let granted = (0..50).filter(|_| b.try_retry(0.5)).count();
    assert_eq!(granted, 30);
    assert_eq!(b.totals_since_start(), (30, 20));
    assert_eq!(b.balance(0.5), 0.0);
    // The deposits and withdrawals of second 0 leave the window at second 10.
    assert_eq!(b.balance(9.9), 0.0);
    assert_eq!(b.balance(10.0), 10.0); // only the floor is left
    assert!(b.try_retry(10.0));
}

#[test]
fn a_quiet_fleet_may_still_retry_at_the_floor_and_an_outage_never_multiplies_load() {
    let b = budget(0.2, 0.0, 10.0);
    assert!(!b.try_retry(0.0), "no floor and no traffic: no retries");
    // Under an outage every request fails and wants a retry: at most 20 % extra load.
    let mut retries = 0;
    for i in 0..10_000u32 {
        let now = f64::from(i) * 0.001;
        b.record_request(now);
        retries += usize::from(b.try_retry(now));
    }
    assert_eq!(retries, 2_000);
}

#[test]
fn bad_budget_settings_name_their_field() {
    let field = |c: RetryBudgetConfig| match RetryBudget::new(c) {
        Err(Error::InvalidInput { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    let d = RetryBudgetConfig::default();
    assert_eq!(
        field(RetryBudgetConfig { percent: -0.1, ..d }),
        "retry_percent"
    );
    assert_eq!(
        field(RetryBudgetConfig {
            min_per_s: f64::NAN,
            ..d
        }),
        "min_retries_per_s"
    );
    assert_eq!(
        field(RetryBudgetConfig { ttl_s: 0.5, ..d }),
        "retry_window_s"
    );
}
