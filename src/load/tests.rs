use super::*;

fn tracker() -> (LoadTracker, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(100.0));
    (LoadTracker::new(60.0, clock.clone()).unwrap(), clock)
}

#[test]
fn counts_utilization_and_thresholds() {
    let (t, _) = tracker();
    t.set_capacity("m", Capacity::new(10, 5, 0.8).unwrap());
    assert_eq!(t.update_load("m", 9).unwrap(), 9);
    let load = t.current_load("m").unwrap();
    assert!((load.utilization() - 0.9).abs() < 1e-12);
    assert!(t.is_over_target("m").unwrap());
    assert!(!t.is_overloaded("m").unwrap());
    t.update_load("m", 2).unwrap();
    assert!(t.is_overloaded("m").unwrap());
    t.update_load("m", -11).unwrap();
    t.update_queue("m", 6).unwrap();
    assert!(t.is_overloaded("m").unwrap());
}

#[test]
fn going_negative_is_an_error_and_leaves_the_count() {
    let (t, _) = tracker();
    t.set_capacity("m", Capacity::new(1, 0, 1.0).unwrap());
    t.update_load("m", 1).unwrap();
    assert!(matches!(
        t.update_load("m", -2),
        Err(Error::InvalidInput { .. })
    ));
    assert_eq!(t.state("m").unwrap().active(), 1);
    assert!(matches!(t.update_load("x", 1), Err(Error::UnknownModel(_))));
}

#[test]
fn stale_data_is_unknown() {
    let (t, clock) = tracker();
    t.set_capacity("m", Capacity::new(4, 0, 0.8).unwrap());
    clock.advance(60.0);
    assert!(t.current_load("m").is_some());
    clock.advance(0.5);
    assert!(t.current_load("m").is_none());
    t.update_load("m", 1).unwrap();
    assert_eq!(t.current_load("m").unwrap().active_requests, 1);
    assert!(t.current_load("unknown").is_none());
}

#[test]
fn admission_fills_slots_then_queue_then_refuses() {
    let (t, _) = tracker();
    let s = t.set_capacity("m", Capacity::new(2, 1, 1.0).unwrap());
    assert_eq!(s.try_admit(0.0), Some(Slot::Active));
    assert_eq!(s.try_admit(0.0), Some(Slot::Active));
    assert_eq!(s.try_admit(0.0), Some(Slot::Queued));
    assert_eq!(s.try_admit(0.0), None);
    s.release(Slot::Queued, 0.0);
    s.release(Slot::Active, 0.0);
    assert_eq!((s.active(), s.queued()), (1, 0));
}

#[test]
fn concurrent_updates_lose_nothing() {
    let (t, _) = tracker();
    let s = t.set_capacity("m", Capacity::new(1000, 0, 1.0).unwrap());
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..10_000 {
                    s.add_active(1, 0.0).unwrap();
                    s.add_active(-1, 0.0).unwrap();
                }
                s.add_active(1, 0.0).unwrap();
            });
        }
    });
    assert_eq!(s.active(), 8);
}

#[test]
fn latency_ewma_starts_at_the_first_sample() {
    let (t, _) = tracker();
    let s = t.set_capacity("m", Capacity::new(1, 0, 1.0).unwrap());
    assert!(s.latency_ms().is_nan());
    s.record_latency(100.0, 0.0);
    s.record_latency(200.0, 0.0);
    assert!((s.latency_ms() - 120.0).abs() < 1e-12);
}

#[test]
fn bad_settings_are_rejected() {
    let clock: SharedClock = Arc::new(ManualClock::new(0.0));
    assert!(LoadTracker::new(0.0, clock.clone()).is_err());
    assert!(LoadTracker::new(f64::NAN, clock).is_err());
    assert!(Capacity::new(0, 0, 0.5).is_err());
    assert!(Capacity::new(1, 0, 0.0).is_err());
}

#[test]
fn a_batch_admits_what_one_at_a_time_would() {
    for (max_c, max_q, held, n) in [(3, 1, 0, 10), (3, 1, 2, 1), (3, 0, 3, 4), (5, 2, 4, 3)] {
        let (batched, _) = tracker();
        let (single, _) = tracker();
        let mut one_by_one = Vec::new();
        for t in [&batched, &single] {
            t.set_capacity("m", Capacity::new(max_c, max_q, 1.0).unwrap());
            t.update_load("m", held as i64).unwrap();
        }
        let s = single.state("m").unwrap();
        for _ in 0..n {
            match s.acquire(true, 0.0).unwrap() {
                Some(ticket) => one_by_one.push(ticket),
                None => break,
            }
        }
        let b = batched.state("m").unwrap();
        let tickets = b.acquire_many(true, n, 0.0).unwrap();
        assert_eq!(
            tickets, one_by_one,
            "{max_c}/{max_q}, {held} held, {n} asked"
        );
        assert_eq!(b.counts(), s.counts());
        b.release_tickets(&tickets, 0.0);
        assert_eq!(b.counts(), (held, 0));
    }
    let (t, _) = tracker();
    let s = t.set_capacity("m", Capacity::new(1, 0, 1.0).unwrap());
    assert_eq!(s.acquire_many(false, 3, 0.0).unwrap().len(), 3);
    assert_eq!(s.counts(), (3, 0));
    assert!(s.acquire_many(true, 0, 0.0).unwrap().is_empty());
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap()
}

#[test]
fn a_load_reading_serializes_as_the_python_dict_and_displays_as_its_repr() {
    let (t, clock) = tracker();
    let s = t.set_capacity("m\"x", Capacity::new(4, 2, 0.5).unwrap());
    s.add_active(3, 100.0).unwrap();
    let load = t.current_load("m\"x").unwrap();
    assert_eq!(
        json(&load),
        r#"{"model_id":"m\"x","active_requests":3,"queue_depth":0,"avg_latency_ms":null,"utilization":0.75,"last_updated":100.0,"max_concurrent":4,"max_queue":2,"target_utilization":0.5,"is_overloaded":false,"is_over_target":true,"rpm":null,"tpm":null,"max_tokens_in_flight":null,"tokens_in_flight":0,"requests_in_window":0,"tokens_in_window":0}"#
    );
    assert_eq!(load.latency(), None);
    assert_eq!(
        load.to_string(),
        r#"ModelLoad('m"x', active_requests=3, queue_depth=0, utilization=0.75)"#
    );
    clock.advance(1.0);
    s.record_latency(12.5, clock.now());
    s.add_queued(3, clock.now()).unwrap();
    let load = t.current_load("m\"x").unwrap();
    assert_eq!(load.latency(), Some(12.5));
    let text = json(&load);
    assert!(text.contains(r#""avg_latency_ms":12.5"#), "{text}");
    assert!(text.contains(r#""is_overloaded":true"#), "{text}");
    assert!(text.contains(r#""last_updated":101.0"#), "{text}");
}

#[test]
fn backend_status_serializes_with_the_fail_mode_by_name() {
    for mode in FailMode::ALL {
        assert_eq!(json(&mode), format!("\"{}\"", mode.name()));
    }
    let status = BackendStatus {
        backend: "redis://:***@h:6379/0".into(),
        available: false,
        fail_mode: FailMode::Closed,
        lease_ttl_s: 30.0,
        held_leases: 2,
        fail_open_events: 3,
        errors: 4,
        lost_leases: 5,
        pending_releases: 6,
        lost_releases: 7,
        last_error: Some("timed out".into()),
    };
    assert_eq!(
        json(&status),
        r#"{"backend":"redis://:***@h:6379/0","available":false,"fail_mode":"closed","lease_ttl_s":30.0,"held_leases":2,"fail_open_events":3,"errors":4,"lost_leases":5,"pending_releases":6,"lost_releases":7,"last_error":"timed out"}"#
    );
    let healthy = BackendStatus {
        last_error: None,
        ..status
    };
    assert!(json(&healthy).ends_with(r#""last_error":null}"#));
}

#[test]
fn an_external_report_sets_counts_and_latency_or_nothing() {
    let (t, clock) = tracker();
    t.set_capacity("b", Capacity::new(4, 2, 0.8).unwrap());
    t.set_capacity("a", Capacity::new(4, 2, 0.8).unwrap());
    clock.advance(5.0);
    t.set_load("a", Some(3), None, Some(40.0)).unwrap();
    let a = t.state("a").unwrap().snapshot();
    assert_eq!(
        (a.active_requests, a.queue_depth, a.last_updated),
        (3, 0, 105.0)
    );
    assert_eq!(a.latency(), Some(40.0));
    t.record_latency("a", 50.0).unwrap();
    assert_eq!(t.state("a").unwrap().latency_ms(), 42.0);
    for (active, queued, latency, field) in [
        (Some(-1), Some(1), None, "active_requests"),
        (None, Some(-2), Some(1.0), "queue_depth"),
        (Some(1), Some(1), Some(f64::NAN), "latency_ms"),
    ] {
        let err = t.set_load("a", active, queued, latency).unwrap_err();
        assert!(matches!(err, Error::InvalidInput { field: ref f, .. } if f == field));
    }
    let after = t.state("a").unwrap().snapshot();
    assert_eq!((after.active_requests, after.queue_depth), (3, 0));
    assert_eq!(after.latency(), Some(42.0));
    assert!(matches!(
        t.record_latency("a", -1.0),
        Err(Error::InvalidInput { .. })
    ));
    assert!(matches!(
        t.set_load("x", Some(-1), None, None),
        Err(Error::UnknownModel(_))
    ));
    assert!(matches!(
        t.record_latency("x", 1.0),
        Err(Error::UnknownModel(_))
    ));
    // Stale or not, every model, by id.
    clock.advance(3600.0);
    let ids: Vec<String> = t
        .snapshot()
        .unwrap()
        .into_iter()
        .map(|l| l.model_id)
        .collect();
    assert_eq!(ids, ["a", "b"]);
}

#[test]
fn a_manual_clock_only_moves_forward_by_finite_steps() {
    let clock = ManualClock::new(1.0);
    clock.try_advance(0.5).unwrap();
    clock.try_advance(0.0).unwrap();
    for bad in [-0.1, f64::NAN, f64::INFINITY] {
        let err = clock.try_advance(bad).unwrap_err();
        assert!(matches!(err, Error::InvalidInput { ref field, .. } if field == "seconds"));
    }
    assert_eq!(clock.now(), 1.5);
}

#[test]
fn a_manual_clock_refuses_non_finite_times() {
    let clock = ManualClock::try_new(5.0).unwrap();
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert!(
            matches!(clock.try_set(bad), Err(Error::InvalidInput { field, .. }) if field == "t")
        );
        assert!(ManualClock::try_new(bad).is_err());
    }
    assert_eq!(clock.now(), 5.0);
    clock.try_set(-3.0).unwrap(); // any finite time: tests may start anywhere
    assert_eq!(clock.now(), -3.0);
}
