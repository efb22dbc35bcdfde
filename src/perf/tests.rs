//! Unit tests of `perf`.
use super::*;
use crate::load::ManualClock;

fn tracker(window_s: Option<f64>) -> (PerformanceTracker, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(0.0));
    let config = PerfConfig {
        window_s,
        recent_samples: 16,
        ..PerfConfig::default()
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
        ..PerfConfig::default()
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
    t.record("m", None, 1.0, true).unwrap();
    let model = t.memory_bytes() - empty;
    t.record("m", Some("a"), 1.0, true).unwrap();
    let agent = t.memory_bytes() - empty - model;
    assert!(model > 13_000 && model < 32 * 1024, "{model}");
    // An agent's series is compact: coarser histogram, no ring of samples.
    assert!(agent < model / 4, "{agent} vs {model}");
}

#[test]
fn aggregate_pools_every_model_over_the_window() {
    let (t, clock) = tracker(Some(40.0));
    assert_eq!(t.aggregate(Kind::Model).count, 0);
    assert_eq!(t.aggregate(Kind::Model).p50_ms, None);
    let (single, _) = tracker(Some(40.0));
    for i in 0..300 {
        let (model, latency, ok) = (
            ["a", "b", "c"][i % 3],
            1.0 + (i * 13 % 97) as f64,
            i % 5 != 0,
        );
        t.record(model, Some("x"), latency, ok).unwrap();
        single.record("all", None, latency, ok).unwrap();
    }
    let (fleet, one) = (t.aggregate(Kind::Model), single.stats("all").unwrap());
    assert_eq!(
        (fleet.count, fleet.successes, fleet.failures),
        (300, 240, 60)
    );
    assert_eq!(
        (fleet.p50_ms, fleet.p95_ms, fleet.p99_ms),
        (one.p50_ms, one.p95_ms, one.p99_ms)
    );
    assert_eq!((fleet.min_ms, fleet.max_ms), (one.min_ms, one.max_ms));
    assert!((fleet.mean_ms.unwrap() - one.mean_ms.unwrap()).abs() < 1e-9);
    assert_eq!(t.aggregate(Kind::Agent).count, 300);
    // The EWMA of the fleet lies between the models' own.
    let ewmas: Vec<f64> = ["a", "b", "c"]
        .iter()
        .map(|m| t.stats(m).unwrap().ewma_ms.unwrap())
        .collect();
    let lo = ewmas.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = ewmas.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    assert!((lo..=hi).contains(&fleet.ewma_ms.unwrap()));
    // A new sample on one model after the rest left the window is all the fleet shows.
    clock.advance(50.0);
    t.record("b", None, 7.0, true).unwrap();
    let fleet = t.aggregate(Kind::Model);
    assert_eq!(
        (fleet.count, fleet.p99_ms, fleet.last_seen),
        (1, Some(7.0), Some(50.0))
    );
}

#[test]
fn latency_histogram_counts_at_or_under_each_bound() {
    let (t, _) = tracker(None);
    for latency in [3.0, 5.0, 40.0, 700.0, 99_999.0, 5e6] {
        t.record("m", None, latency, latency < 1000.0).unwrap();
    }
    let h = t
        .latency_histogram(Kind::Model, "m", &[0.0, 5.0, 50.0, 1000.0, 60_000.0])
        .unwrap();
    // A sample exactly on a bound (5 ms) counts under it; 5e6 ms is above every bound.
    assert_eq!(h.cumulative, vec![0, 2, 3, 4, 4]);
    // Even the top one: samples above the histogram's range are clamped into its top bucket.
    let top = t
        .latency_histogram(
            Kind::Model,
            "m",
            &[HIGHEST_BOUND_MS - 1.0, HIGHEST_BOUND_MS],
        )
        .unwrap();
    assert_eq!(top.cumulative, vec![5, 5]);
    t.record("m", None, HIGHEST_BOUND_MS, true).unwrap();
    let top = t
        .latency_histogram(Kind::Model, "m", &[HIGHEST_BOUND_MS])
        .unwrap();
    assert_eq!((top.cumulative[0], top.count), (6, 7));
    assert_eq!((h.count, h.successes, h.failures), (6, 4, 2));
    assert_eq!(h.sum_ms, 3.0 + 5.0 + 40.0 + 700.0 + 99_999.0 + 5e6);
    assert_eq!(h.bounds_ms, vec![0.0, 5.0, 50.0, 1000.0, 60_000.0]);
    let none = t.latency_histogram(Kind::Model, "m", &[]).unwrap();
    assert_eq!((none.cumulative.len(), none.count), (0, 7));
    assert!(matches!(
        t.latency_histogram(Kind::Model, "nope", &[1.0]),
        Err(Error::UnknownModel(_))
    ));
    for bad in [
        vec![5.0, 5.0],
        vec![10.0, 5.0],
        vec![f64::NAN],
        vec![-1.0],
        vec![HIGHEST_BOUND_MS * 2.0],
    ] {
        match t.latency_histogram(Kind::Model, "m", &bad) {
            Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "bounds_ms"),
            other => panic!("{bad:?} gave {other:?}"),
        }
    }
}

#[test]
fn latency_histogram_bounds_are_exact_to_the_resolution() {
    let (t, _) = tracker(None);
    let values: Vec<f64> = (0..2_000).map(|i| 0.5 + i as f64 * 0.731).collect();
    for &v in &values {
        t.record("m", None, v, true).unwrap();
    }
    let bounds = [1.0, 10.0, 100.0, 250.0, 1000.0];
    let h = t.latency_histogram(Kind::Model, "m", &bounds).unwrap();
    for (b, got) in bounds.iter().zip(&h.cumulative) {
        let exact = values.iter().filter(|&&v| v <= *b).count() as u64;
        let within = values
            .iter()
            .filter(|&&v| v <= b * (1.0 + 1.0 / 128.0))
            .count() as u64;
        assert!(
            (exact..=within).contains(got),
            "{b}: {got} not in {exact}..={within}"
        );
    }
}

#[test]
fn windowed_latency_histogram_keeps_everything_since_the_start() {
    let (t, clock) = tracker(Some(60.0));
    t.record("m", None, 20.0, true).unwrap();
    clock.advance(600.0);
    t.record("m", None, 200.0, false).unwrap();
    assert_eq!(t.stats("m").unwrap().count, 1);
    let h = t.latency_histogram(Kind::Model, "m", &[100.0]).unwrap();
    assert_eq!((h.cumulative[0], h.count, h.failures), (1, 2, 1));
    assert_eq!(h.sum_ms, 220.0);
    // Merging adds the since-start totals too.
    let (other, _) = tracker(Some(60.0));
    other.record("m", None, 50.0, true).unwrap();
    t.merge(&other).unwrap();
    let h = t.latency_histogram(Kind::Model, "m", &[100.0]).unwrap();
    assert_eq!((h.cumulative[0], h.count), (2, 3));
}

#[test]
fn agents_are_capped_least_recently_seen_first_and_evictions_counted() {
    let clock = Arc::new(ManualClock::new(0.0));
    let config = PerfConfig {
        max_agents: 100,
        ..PerfConfig::default()
    };
    let t = PerformanceTracker::new(config, clock.clone()).unwrap();
    for i in 0..100 {
        clock.set(i as f64);
        t.record("m", Some(&format!("a{i}")), 1.0, true).unwrap();
    }
    // a0 comes back: it is now the most recent, so a1..a10 go first.
    clock.set(100.0);
    t.record("m", Some("a0"), 1.0, true).unwrap();
    clock.set(101.0);
    t.record("m", Some("new"), 1.0, true).unwrap();
    assert_eq!(t.evicted_agents(), 10);
    let ids = t.agent_ids();
    assert_eq!((ids.len(), t.agent_count()), (91, 91));
    assert!(ids.contains(&"a0".to_string()) && ids.contains(&"new".to_string()));
    assert!((1..=10).all(|i| !ids.contains(&format!("a{i}"))));
    assert!(ids.contains(&"a11".to_string()));
    // Models are never evicted, and the model saw every request.
    assert_eq!(t.stats("m").unwrap().count, 102);
}

#[test]
fn memory_stays_bounded_whatever_the_number_of_agent_ids() {
    let clock = Arc::new(ManualClock::new(0.0));
    let config = PerfConfig {
        window_s: Some(300.0),
        max_agents: 1000,
        ..PerfConfig::default()
    };
    let t = PerformanceTracker::new(config, clock.clone()).unwrap();
    let mut peak = 0;
    for i in 0..20_000u32 {
        clock.set(f64::from(i) / 100.0);
        t.record("m", Some(&format!("agent-{i}")), 5.0, true)
            .unwrap();
        if i % 1000 == 999 {
            peak = peak.max(t.memory_bytes());
        }
    }
    assert!(t.agent_ids().len() <= 1000);
    assert_eq!(t.evicted_agents(), 20_000 - t.agent_ids().len() as u64);
    // Compact agent series: well under the ~80 KB a windowed model key costs.
    let per_agent = peak / 1000;
    assert!(per_agent < 16 * 1024, "{per_agent} bytes per agent");
}

#[test]
fn absurd_sizes_are_input_errors_not_aborts() {
    let clock = Arc::new(ManualClock::new(0.0));
    for (config, field) in [
        (
            PerfConfig {
                recent_samples: 1 << 31,
                ..PerfConfig::default()
            },
            "recent_samples",
        ),
        (
            PerfConfig {
                max_agents: 0,
                ..PerfConfig::default()
            },
            "max_agents",
        ),
    ] {
        match PerformanceTracker::new(config, clock.clone()) {
            Err(Error::InvalidInput { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap()
}

#[test]
fn stats_serialize_as_the_python_dict_and_display_as_the_repr() {
    let (t, _) = tracker(None);
    let empty = t.aggregate(Kind::Model);
    assert_eq!(
        json(&empty),
        r#"{"count":0,"successes":0,"failures":0,"success_rate":null,"p50_ms":null,"p95_ms":null,"p99_ms":null,"mean_ms":null,"ewma_ms":null,"min_ms":null,"max_ms":null,"last_seen":null}"#
    );
    assert_eq!(
        empty.to_string(),
        "Stats(count=0, success_rate=None, p50_ms=None, p95_ms=None, p99_ms=None)"
    );
    t.record("m", None, 10.0, true).unwrap();
    t.record("m", None, 30.0, false).unwrap();
    let s = t.stats("m").unwrap();
    let text = json(&s);
    assert!(text.starts_with(r#"{"count":2,"successes":1,"failures":1,"success_rate":0.5,"#));
    assert!(text.contains(r#""mean_ms":20.0,"#), "{text}");
    assert!(text.ends_with(r#""min_ms":10.0,"max_ms":30.0,"last_seen":0.0}"#));
    assert_eq!(
        s.to_string(),
        "Stats(count=2, success_rate=0.5, p50_ms=10.0, p95_ms=30.0, p99_ms=30.0)"
    );
}

#[test]
fn a_latency_histogram_serializes_its_cumulative_counts_as_counts() {
    let (t, _) = tracker(None);
    for v in [4.0, 20.0, 80.0] {
        t.record("m", None, v, v < 50.0).unwrap();
    }
    let h = t.latency_histogram(Kind::Model, "m", &[5.0, 50.0]).unwrap();
    assert_eq!(
        json(&h),
        r#"{"bounds_ms":[5.0,50.0],"counts":[1,2],"count":3,"successes":2,"failures":1,"sum_ms":104.0}"#
    );
    assert_eq!(
        h.to_string(),
        "LatencyHistogram(bounds_ms=[5.0, 50.0], counts=[1, 2], count=3, sum_ms=104.0)"
    );
}

#[test]
fn the_tracker_snapshot_is_the_python_dict_and_its_table_escapes_ids() {
    let (t, _) = tracker(Some(30.0));
    assert_eq!(
        t.to_string(),
        "PerformanceTracker(models=0, agents=0, window_s=30.0)"
    );
    let empty = t.snapshot();
    assert_eq!(json(&empty), r#"{"models":{},"agents":{}}"#);
    assert!(empty.html().ends_with("<tbody></tbody></table>"));
    t.record("<b>'m'&\"</b>", Some("coder"), 10.0, true)
        .unwrap();
    t.record("a", None, 10.0, false).unwrap();
    let snap = t.snapshot();
    let ids: Vec<&str> = snap.models.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["<b>'m'&\"</b>", "a"]);
    let text = json(&snap);
    let stats = json(&t.stats("a").unwrap());
    assert!(text.contains(&format!(r#""a":{stats}"#)), "{text}");
    assert!(text.ends_with(&format!(
        r#""agents":{{"coder":{}}}}}"#,
        json(&t.agent_stats("coder").unwrap())
    )));
    let html = snap.html();
    assert!(html.contains("<th>model &lt;b&gt;&#39;m&#39;&amp;&quot;&lt;/b&gt;</th><td>1</td><td>1.000</td><td>10.0</td>"));
    assert!(html.contains("<th>model a</th><td>1</td><td>0.000</td>"));
    assert!(html.contains("<th>agent coder</th>"));
    assert!(!html.contains("<b>"));
    assert_eq!(html.matches("<tr>").count(), 4);
    assert_eq!(
        t.to_string(),
        "PerformanceTracker(models=2, agents=1, window_s=30.0)"
    );
    let one = t.aggregate(Kind::Agent).html();
    assert!(one.starts_with("<table><thead><tr><th></th><th>count</th><th>success</th>"));
    assert!(one.contains("<tbody><tr><th></th><td>1</td><td>1.000</td>"));
    let none = tracker(None).0.aggregate(Kind::Model).html();
    assert!(none.contains("<tbody><tr><th></th><td>0</td><td>–</td><td>–</td>"));
}

#[test]
fn recent_samples_read_as_columns_oldest_first() {
    let (t, clock) = tracker(None);
    for (i, v) in [5.0, 6.5, 7.0].into_iter().enumerate() {
        clock.advance(1.0);
        t.record("m", None, v, i != 1).unwrap();
    }
    let (times, latencies, ok) = t.recent_columns(Kind::Model, "m").unwrap();
    assert_eq!(times, [1.0, 2.0, 3.0]);
    assert_eq!(latencies, [5.0, 6.5, 7.0]);
    assert_eq!(ok, [true, false, true]);
    assert!(matches!(
        t.recent_columns(Kind::Agent, "m"),
        Err(Error::UnknownModel(_))
    ));
}

/// Counts this thread's heap allocations, so a test can show a path allocates nothing.
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Counting;

    thread_local! {
        pub static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    }

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            ALLOCATIONS.with(|n| n.set(n.get() + 1));
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            ALLOCATIONS.with(|n| n.set(n.get() + 1));
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    pub fn during(f: impl FnOnce()) -> u64 {
        let before = ALLOCATIONS.with(Cell::get);
        f();
        ALLOCATIONS.with(Cell::get) - before
    }
}

/// The promise of `PerformanceTracker`: once a key exists, recording allocates nothing (model
/// and agent, windowed or not, through the tracker and through a model's handle).
#[test]
fn record_allocates_nothing_once_a_key_exists() {
    for window_s in [None, Some(60.0)] {
        let (t, clock) = tracker(window_s);
        let handle = t.model_handle("m");
        t.record("m", Some("a"), 1.0, true).unwrap();
        let n = counting::during(|| {
            for i in 0..10_000 {
                clock.set(f64::from(i) * 0.01); // crosses window bins too
                t.record("m", Some("a"), f64::from(i % 700), i % 3 != 0)
                    .unwrap();
                handle.record(5.0, true).unwrap();
            }
        });
        assert_eq!(
            n, 0,
            "{n} allocations in 20,000 records (window {window_s:?})"
        );
        // The counter works: a new key allocates.
        assert!(counting::during(|| t.record("new", None, 1.0, true).unwrap()) > 0);
    }
}
