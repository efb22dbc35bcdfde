//! Unit tests of `alerts`.
use std::sync::atomic::AtomicUsize;

use super::*;
use crate::load::{Capacity, ManualClock};
use crate::perf::PerfConfig;

struct Fixture {
    clock: Arc<ManualClock>,
    perf: Arc<PerformanceTracker>,
    load: Arc<LoadTracker>,
}

fn fixture() -> Fixture {
    let clock = Arc::new(ManualClock::new(0.0));
    let config = PerfConfig {
        window_s: Some(10.0),
        recent_samples: 8,
        ..PerfConfig::default()
    };
    Fixture {
        perf: Arc::new(PerformanceTracker::new(config, clock.clone()).unwrap()),
        load: Arc::new(LoadTracker::new(60.0, clock.clone()).unwrap()),
        clock,
    }
}

fn manager(f: &Fixture, rules: Vec<AlertRule>, cooldown_s: f64) -> AlertManager {
    AlertManager::new(
        rules,
        cooldown_s,
        Some(f.perf.clone()),
        Some(f.load.clone()),
        100,
        f.clock.clone(),
    )
    .unwrap()
}

fn latency_rule(for_s: f64) -> AlertRule {
    AlertRule::new(
        AlertKind::HighLatency,
        500.0,
        Severity::Error,
        for_s,
        None,
        1,
    )
    .unwrap()
}

/// Records `latency` for `model` and evaluates one second later.
fn tick(f: &Fixture, m: &AlertManager, model: &str, latency: f64) -> Vec<Alert> {
    f.perf.record(model, None, latency, true).unwrap();
    f.clock.advance(1.0);
    m.evaluate(None)
}

#[test]
fn pending_until_for_s_then_firing_then_resolved_once() {
    let f = fixture();
    let m = manager(&f, vec![latency_rule(3.0)], 300.0);
    assert!(tick(&f, &m, "a", 900.0).is_empty()); // pending since t=1
    assert!(tick(&f, &m, "a", 900.0).is_empty());
    assert!(tick(&f, &m, "a", 900.0).is_empty());
    let fired = tick(&f, &m, "a", 900.0); // t=4: held 3 s
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].state, AlertState::Firing);
    assert_eq!((fired[0].started_at, fired[0].emitted_at), (1.0, 4.0));
    assert_eq!(m.active().len(), 1);
    // Window of 10 s: the slow samples leave it and the condition clears.
    f.clock.advance(20.0);
    let resolved = tick(&f, &m, "a", 100.0);
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].state, AlertState::Resolved);
    assert_eq!(resolved[0].id, fired[0].id);
    assert!(tick(&f, &m, "a", 100.0).is_empty());
    assert!(m.active().is_empty());
    assert_eq!(m.history(&HistoryFilter::default()).len(), 2);
}

#[test]
fn a_flap_shorter_than_for_s_sends_nothing() {
    let f = fixture();
    let m = manager(&f, vec![latency_rule(5.0)], 300.0);
    assert!(tick(&f, &m, "a", 900.0).is_empty());
    f.clock.advance(15.0); // slow samples expire: the condition stops holding
    assert!(tick(&f, &m, "a", 100.0).is_empty());
    f.clock.advance(15.0);
    assert!(tick(&f, &m, "a", 900.0).is_empty()); // pending anew, not carried over
    assert!(m.history(&HistoryFilter::default()).is_empty());
}

#[test]
fn cooldown_stops_repeats_but_never_hides_a_new_alert() {
    let f = fixture();
    let m = manager(&f, vec![latency_rule(0.0)], 5.0);
    assert_eq!(tick(&f, &m, "a", 900.0).len(), 1);
    for _ in 0..4 {
        assert!(tick(&f, &m, "a", 900.0).is_empty());
    }
    // Another model firing inside a's cooldown is still sent.
    let other = tick(&f, &m, "b", 900.0);
    assert_eq!(other.len(), 2, "{other:?}"); // a's repeat (5 s passed) and b's first notice
    let b = other
        .iter()
        .find(|x| x.model_id.as_deref() == Some("b"))
        .unwrap();
    let a = other
        .iter()
        .find(|x| x.model_id.as_deref() == Some("a"))
        .unwrap();
    assert_ne!(a.id, b.id);
    assert_eq!(m.active().len(), 2);
}

#[test]
fn refiring_after_resolve_is_sent_despite_the_cooldown() {
    let f = fixture();
    let m = manager(&f, vec![latency_rule(0.0)], 1e9);
    let first = tick(&f, &m, "a", 900.0);
    f.clock.advance(20.0);
    assert_eq!(tick(&f, &m, "a", 100.0)[0].state, AlertState::Resolved);
    f.clock.advance(20.0);
    let again = tick(&f, &m, "a", 900.0);
    assert_eq!(again.len(), 1);
    assert!(again[0].id > first[0].id);
}

#[test]
fn load_rules_fleet_capacity_and_staleness() {
    let f = fixture();
    f.load.set_capacity("a", Capacity::new(2, 1, 0.5).unwrap());
    let rules = vec![
        AlertRule::simple(AlertKind::Overload, 0.9).unwrap(),
        AlertRule::simple(AlertKind::OverTargetUtilization, 1.0).unwrap(),
        AlertRule::simple(AlertKind::NoCapacity, 0.0).unwrap(),
        AlertRule::simple(AlertKind::StaleData, 30.0).unwrap(),
    ];
    let m = manager(&f, rules, 300.0);
    assert!(m.evaluate(None).is_empty());
    f.load.update_load("a", 2).unwrap();
    let kinds: Vec<AlertKind> = m.evaluate(None).iter().map(|a| a.kind).collect();
    assert_eq!(
        kinds,
        vec![AlertKind::Overload, AlertKind::OverTargetUtilization]
    );
    f.load.update_queue("a", 1).unwrap();
    let out = m.evaluate(None);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].kind, out[0].model_id.clone()),
        (AlertKind::NoCapacity, None)
    );
    f.clock.advance(45.0);
    let out = m.evaluate(None);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].kind, out[0].state),
        (AlertKind::StaleData, AlertState::Firing)
    );
    // Past stale_after_s the load counts as unknown: the load alerts resolve, once.
    f.clock.advance(20.0);
    let out = m.evaluate(None);
    assert_eq!(out.len(), 3, "{out:?}");
    assert!(out
        .iter()
        .all(|a| a.state == AlertState::Resolved && a.value.is_nan()));
    assert!(m.evaluate(None).is_empty());
    assert_eq!(m.active()[0].kind, AlertKind::StaleData);
}

#[test]
fn history_is_bounded_and_filtered() {
    let f = fixture();
    let rules = vec![
        latency_rule(0.0),
        AlertRule::new(
            AlertKind::LowSuccessRate,
            0.9,
            Severity::Critical,
            0.0,
            Some("b".into()),
            1,
        )
        .unwrap(),
    ];
    let m = AlertManager::new(rules, 0.0, Some(f.perf.clone()), None, 5, f.clock.clone()).unwrap();
    f.perf.record("b", None, 10.0, false).unwrap();
    for _ in 0..10 {
        tick(&f, &m, "a", 900.0);
    }
    let all = m.history(&HistoryFilter::default());
    assert_eq!(all.len(), 5);
    assert!(all.windows(2).all(|w| w[0].emitted_at <= w[1].emitted_at));
    let crit = HistoryFilter {
        severity: Some(Severity::Critical),
        ..Default::default()
    };
    assert!(m
        .history(&crit)
        .iter()
        .all(|a| a.model_id.as_deref() == Some("b")));
    let last = HistoryFilter {
        model_id: Some("a"),
        limit: Some(2),
        ..Default::default()
    };
    assert_eq!(m.history(&last).len(), 2);
}

#[test]
fn a_panicking_sink_loses_nothing() {
    let f = fixture();
    let m = manager(&f, vec![latency_rule(0.0)], 300.0);
    let calls = Arc::new(AtomicUsize::new(0));
    m.add_sink(Arc::new(|_: &Alert| panic!("sink down")));
    let c = calls.clone();
    m.add_sink(Arc::new(move |_: &Alert| {
        c.fetch_add(1, Ordering::Relaxed);
    }));
    let out = tick(&f, &m, "a", 900.0);
    assert_eq!(out.len(), 1);
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    assert_eq!(m.sink_failures(), 1);
    assert_eq!(m.history(&HistoryFilter::default()).len(), 1);
}

#[test]
fn rules_need_their_source() {
    let f = fixture();
    let r = AlertManager::new(
        vec![AlertRule::simple(AlertKind::Overload, 1.0).unwrap()],
        300.0,
        Some(f.perf.clone()),
        None,
        10,
        f.clock.clone(),
    );
    assert!(matches!(r, Err(Error::InvalidInput { .. })));
    assert!(AlertManager::new(vec![], f64::NAN, None, None, 10, f.clock.clone()).is_err());
}

#[test]
fn alerts_serialize_as_the_python_dict_and_display_as_the_repr() {
    let f = fixture();
    let m = manager(&f, vec![latency_rule(0.0)], 300.0);
    let fired = tick(&f, &m, "a", 900.0).remove(0);
    let value = serde_json::to_value(&fired).unwrap();
    assert_eq!(value["type"], "high_latency");
    assert_eq!(value["severity"], "error");
    assert_eq!(value["state"], "firing");
    assert_eq!(value["model_id"], "a");
    assert_eq!(value["threshold"], 500.0);
    assert_eq!(value["id"], fired.id);
    assert_eq!(value["message"], fired.message.as_str());
    let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 10);
    assert_eq!(
        fired.to_string(),
        format!(
            "Alert(id={}, message='[error] high_latency on \"a\": p95 latency 900.0 ms > 500 ms')",
            fired.id
        )
    );
    // A value that disappeared is null, not NaN; a fleet-wide alert has a null model_id.
    let gone = Alert {
        value: f64::NAN,
        model_id: None,
        ..fired
    };
    let value = serde_json::to_value(&gone).unwrap();
    assert!(value["value"].is_null() && value["model_id"].is_null());
    assert_eq!(
        m.to_string(),
        "AlertManager(rules=1, cooldown_s=300.0, active=1)"
    );
}

#[test]
fn rule_repr_spells_model_ids_the_python_way() {
    let mut rule = latency_rule(2.5);
    assert_eq!(
        rule.to_string(),
        "AlertRule('high_latency', 500.0, severity='error', for_s=2.5, model_id=None)"
    );
    rule.model_id = Some("m".into());
    assert!(rule.to_string().ends_with("model_id='m')"));
}

#[test]
fn history_filters_parse_names_and_limits() {
    let filter = HistoryFilter::parse(Some("m"), Some("critical"), Some("overload"), Some(2));
    let filter = filter.unwrap();
    assert_eq!(filter.severity, Some(Severity::Critical));
    assert_eq!(filter.kind, Some(AlertKind::Overload));
    assert_eq!((filter.model_id, filter.limit), (Some("m"), Some(2)));
    let field = |e: Error| match e {
        Error::InvalidInput { field, .. } => field,
        other => panic!("{other:?}"),
    };
    let bad = HistoryFilter::parse(None, Some("loud"), None, None).unwrap_err();
    assert_eq!(field(bad), "severity");
    let bad = HistoryFilter::parse(None, None, Some("slow"), None).unwrap_err();
    assert_eq!(field(bad), "type");
    let bad = HistoryFilter::parse(None, None, None, Some(-1)).unwrap_err();
    assert_eq!(field(bad), "limit");
}

#[test]
fn a_manager_without_a_clock_reads_the_trackers_clock() {
    let f = fixture();
    f.clock.advance(42.0);
    let only_load = AlertManager::trackers_clock(None, Some(&f.load));
    assert_eq!(only_load.now(), 42.0);
    let both = AlertManager::trackers_clock(Some(&f.perf), Some(&f.load));
    assert_eq!(both.now(), 42.0);
    let system = AlertManager::trackers_clock(None, None);
    assert!(system.now() >= 0.0 && system.now() != 42.0);
}

#[test]
fn model_ejected_fires_while_out_and_resolves_when_healthy_again() {
    use crate::health::{Health, HealthConfig, Verdict};
    use crate::load::Clock;
    let f = fixture();
    let health = Arc::new(Health::new(2, HealthConfig::default(), 0.0).unwrap());
    let (h, clock) = (health.clone(), f.clock.clone());
    let source: HealthSource = Arc::new(move || {
        let now = clock.now();
        ["a", "b"]
            .iter()
            .enumerate()
            .map(|(j, m)| (m.to_string(), h.of(j, now).state))
            .collect()
    });
    let rule = AlertRule::new(AlertKind::ModelEjected, 0.0, Severity::Error, 0.0, None, 1).unwrap();
    assert!(AlertManager::new(vec![rule.clone()], 0.0, None, None, 10, f.clock.clone()).is_err());
    let m = AlertManager::with_health(
        vec![rule],
        1e9,
        None,
        None,
        Some(source),
        10,
        f.clock.clone(),
    )
    .unwrap();
    assert!(m.evaluate(None).is_empty());
    for _ in 0..5 {
        health.observe(1, Verdict::ServerError, f.clock.now());
    }
    let fired = m.evaluate(None);
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].model_id.as_deref(), Some("b"));
    assert_eq!(fired[0].state, AlertState::Firing);
    assert!(
        fired[0].message.contains("state ejected"),
        "{}",
        fired[0].message
    );
    // Ejection over: one probe succeeds and the model is healthy again.
    f.clock.advance(31.0);
    assert!(health.claim(1, f.clock.now()));
    health.observe(1, Verdict::Ok, f.clock.now());
    let resolved = m.evaluate(None);
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    assert_eq!(resolved[0].state, AlertState::Resolved);
    assert_eq!(resolved[0].id, fired[0].id);
}

#[test]
fn an_active_alert_reads_the_current_value_and_the_history_what_was_emitted() {
    let f = fixture();
    let rule = AlertRule::new(AlertKind::Overload, 0.5, Severity::Warning, 0.0, None, 1).unwrap();
    let m = manager(&f, vec![rule], 300.0);
    let s = f.load.set_capacity("m", Capacity::new(10, 0, 0.8).unwrap());
    s.add_active(6, 0.0).unwrap();
    let fired = m.evaluate(None);
    assert_eq!(fired.len(), 1);
    assert!(fired[0].message.ends_with("utilization 0.60 > 0.5"));
    s.add_active(3, 0.0).unwrap();
    f.clock.advance(1.0);
    assert!(m.evaluate(None).is_empty()); // within the cooldown: no new notification
    let active = m.active();
    assert_eq!(active[0].value, 0.9);
    assert!(
        active[0].message.ends_with("utilization 0.90 > 0.5"),
        "{}",
        active[0].message
    );
    assert_eq!((active[0].started_at, active[0].emitted_at), (0.0, 0.0));
    let history = m.history(&HistoryFilter::default());
    assert!(history[0].message.ends_with("utilization 0.60 > 0.5"));
}
