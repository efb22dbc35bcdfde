//! Tests that need a server are `#[ignore]`d, so a plain `cargo test` reports them as ignored
//! rather than passing them silently; tests/test_redis_rust.py runs them with `--ignored` and
//! `MODELROUTER_TEST_REDIS_URL` naming a server or, as `redis+cluster://…`, a Cluster (fresh model
//! ids keep runs apart). The rest use a port nobody listens on.

use super::*;

fn capacity(max_concurrent: u64, max_queue: u64) -> Capacity {
    Capacity::new(max_concurrent, max_queue, 1.0).unwrap()
}

const NEEDS_SERVER: &str = "MODELROUTER_TEST_REDIS_URL must name the Redis these tests run on";

fn server(ttl_s: f64) -> RedisBackend {
    let url = std::env::var("MODELROUTER_TEST_REDIS_URL").expect(NEEDS_SERVER);
    let config = RedisConfig::new(&url, ttl_s, FailMode::Closed, 1.0).unwrap();
    RedisBackend::new(config).unwrap()
}

fn fresh_model(tag: &str) -> String {
    format!("test-{tag}-{:x}", rand::random::<u64>())
}

/// Ports nobody listens on: one server, and a Cluster's seed nodes.
const DEAD_URLS: [&str; 2] = [
    "redis://127.0.0.1:1/0",
    "redis+cluster://127.0.0.1:1,127.0.0.1:2",
];

fn dead(url: &str, fail_mode: FailMode) -> RedisBackend {
    let config = RedisConfig::new(url, 5.0, fail_mode, 0.2).unwrap();
    RedisBackend::new(config).unwrap()
}

#[test]
fn bad_settings_name_their_field() {
    let field = |r: Result<RedisConfig>| match r {
        Err(Error::InvalidInput { field, .. }) => field,
        other => panic!("expected an input error, got {other:?}"),
    };
    assert_eq!(
        field(RedisConfig::new("http://x", 5.0, FailMode::Open, 1.0)),
        "backend"
    );
    assert_eq!(
        field(RedisConfig::new("redis://x", 0.0, FailMode::Open, 1.0)),
        "lease_ttl_s"
    );
    assert_eq!(
        field(RedisConfig::new("redis://x", f64::NAN, FailMode::Open, 1.0)),
        "lease_ttl_s"
    );
    assert_eq!(
        field(RedisConfig::new("redis://x", 5.0, FailMode::Open, 0.0)),
        "timeout_s"
    );
    assert!("sideways".parse::<FailMode>().is_err());
}

#[test]
fn tracker_settings_take_the_fail_mode_by_name() {
    let s = TrackerSettings::new(5.0, Some("redis://h/0"), 10.0, "closed", 0.2).unwrap();
    assert_eq!(s.fail_mode, FailMode::Closed);
    assert_eq!(s.backend.as_deref(), Some("redis://h/0"));
    assert_eq!(
        (s.stale_after_s, s.lease_ttl_s, s.timeout_s),
        (5.0, 10.0, 0.2)
    );
    let s = TrackerSettings::new(60.0, None, 30.0, "open", 0.5).unwrap();
    assert_eq!(s.fail_mode, TrackerSettings::default().fail_mode);
    let err = TrackerSettings::new(60.0, None, 30.0, "maybe", 0.5).unwrap_err();
    assert!(matches!(err, Error::InvalidInput { ref field, .. } if field == "fail_mode"));
}

#[test]
fn cluster_urls_list_their_nodes_and_bad_ones_name_the_backend() {
    assert_eq!(
        conn::cluster_nodes("redis+cluster://u:p@h1:7000,10.0.0.2:7001/").unwrap(),
        ["redis://u:p@h1:7000", "redis://u:p@10.0.0.2:7001"]
    );
    // Over TLS every node is a rediss:// one; the TLS options are split off before.
    assert_eq!(
        conn::cluster_nodes("rediss+cluster://u:p@h1:7000,h2:7001").unwrap(),
        ["rediss://u:p@h1:7000", "rediss://u:p@h2:7001"]
    );
    assert!(RedisConfig::new(
        "rediss+cluster://u:p@h1:7000,h2:7001?ssl_ca_certs=/ca.pem",
        5.0,
        FailMode::Open,
        1.0
    )
    .is_ok());
    for bad in [
        "redis+cluster://",
        "redis+cluster://h1",
        "redis+cluster://h1:7000,",
        "redis+cluster://h1:x",
        "redis+cluster://h1:0",
        "redis+cluster://:7000",
        "redis+cluster://h1:7000/1",
        "rediss+cluster://h1:7000/1",
        "rediss+cluster://h1:7000?ssl_cert_reqs=maybe",
        "redis+cluster://h1:7000?ssl_ca_certs=/ca.pem",
    ] {
        match RedisConfig::new(bad, 5.0, FailMode::Open, 1.0) {
            Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "backend", "{bad}"),
            other => panic!("{bad}: expected an input error, got {other:?}"),
        }
    }
    assert_eq!(
        redact("redis+cluster://u:secret@h:1,h:2"),
        "redis+cluster://u:***@h:1,h:2"
    );
}

/// The `log` records of this test binary (a process has one logger).
fn logged() -> &'static Mutex<Vec<(log::Level, String, String)>> {
    static RECORDS: std::sync::OnceLock<Mutex<Vec<(log::Level, String, String)>>> =
        std::sync::OnceLock::new();
    struct Capture;
    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, r: &log::Record<'_>) {
            let entry = (r.level(), r.target().to_string(), r.args().to_string());
            lock(logged()).push(entry);
        }
        fn flush(&self) {}
    }
    RECORDS.get_or_init(|| {
        let _ = log::set_logger(&Capture);
        log::set_max_level(log::LevelFilter::Info);
        Mutex::new(Vec::new())
    })
}

#[test]
fn losing_the_backend_is_logged_once_not_per_call() {
    let records = logged();
    let url = "redis://127.0.0.1:3/0"; // used by no other test: its records are this test's
    let open = dead(url, FailMode::Open);
    for _ in 0..3 {
        for _ in 0..5 {
            assert_eq!(
                open.acquire("m", capacity(1, 0), true),
                Ok(Admission::FallBack)
            );
        }
        // Past the fail-fast window: a real attempt that fails again, still no new record.
        std::thread::sleep(RETRY_AFTER + Duration::from_millis(20));
    }
    assert_eq!(open.status().fail_open_events, 15);
    let mine: Vec<_> = lock(records)
        .iter()
        .filter(|(_, _, message)| message.contains(url))
        .cloned()
        .collect();
    assert_eq!(mine.len(), 1, "{mine:?}");
    let (level, target, message) = &mine[0];
    assert_eq!(
        (*level, target.as_str()),
        (log::Level::Warn, crate::LOG_TARGET)
    );
    assert!(
        message.contains("fail_mode=open: limits now hold per replica"),
        "{message}"
    );
}

#[test]
fn passwords_are_redacted() {
    assert_eq!(redact("redis://u:secret@h:1/0"), "redis://u:***@h:1/0");
    assert_eq!(redact("redis://h:1/0"), "redis://h:1/0");
    assert_eq!(redact("rediss://:secret@h:1/0"), "rediss://:***@h:1/0");
    // Debug of every settings struct and of the backend masks it too.
    let url = "rediss://acl-user:secret@127.0.0.1:1/0?ssl_cert_reqs=none";
    let config = RedisConfig::new(url, 5.0, FailMode::Open, 0.2).unwrap();
    let settings = TrackerSettings::new(60.0, Some(url), 5.0, "open", 0.2).unwrap();
    let backend = RedisBackend::new(config.clone()).unwrap();
    for shown in [
        format!("{config:?}"),
        format!("{settings:?}"),
        format!("{backend:?}"),
        backend.status().backend,
    ] {
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("acl-user:***@"), "{shown}");
    }
    // A TLS option the URL gets wrong is named, the password is not.
    let err = RedisBackend::new(
        RedisConfig::new(
            "rediss://u:secret@h:1/0?ssl_ca_certs=/nonexistent.pem",
            5.0,
            FailMode::Open,
            0.2,
        )
        .unwrap(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("ssl_ca_certs") && !err.contains("secret"),
        "{err}"
    );
}

#[test]
fn an_unreachable_server_or_cluster_fails_open_or_closed_without_hanging() {
    for url in DEAD_URLS {
        let started = Instant::now();
        let open = dead(url, FailMode::Open);
        assert_eq!(
            open.acquire("m", capacity(1, 0), true),
            Ok(Admission::FallBack),
            "{url}"
        );
        assert_eq!(open.counts("m"), None);
        let status = open.status();
        assert!(!status.available && status.fail_open_events == 1 && status.errors >= 1);
        let closed = dead(url, FailMode::Closed);
        assert!(matches!(
            closed.acquire("m", capacity(1, 0), true),
            Err(Error::BackendUnavailable(_))
        ));
        closed.release("m", Slot::Active, "nobody");
        assert!(started.elapsed() < Duration::from_secs(5), "{url}");
    }
}

#[test]
#[ignore = "needs a Redis server: run by tests/test_redis_rust.py"]
fn admission_is_bounded_and_release_is_idempotent() {
    let b = server(30.0);
    let m = fresh_model("bounded");
    let granted = b.lease_many(&m, capacity(2, 1), true, 5).unwrap();
    let slots: Vec<Slot> = granted.iter().map(|(s, _)| *s).collect();
    assert_eq!(slots, [Slot::Active, Slot::Active, Slot::Queued]);
    assert_eq!(b.counts(&m), Some((2, 1)));
    assert_eq!(b.acquire(&m, capacity(2, 1), true), Ok(Admission::Refused));
    assert!(matches!(
        b.acquire(&m, capacity(2, 1), false),
        Ok(Admission::Leased(Slot::Active, _))
    ));
    b.release_many(&m, &granted);
    b.release_many(&m, &granted);
    assert_eq!(b.counts(&m), Some((1, 0)));
}

#[test]
#[ignore = "needs a Redis server: run by tests/test_redis_rust.py"]
fn unrenewed_leases_expire_and_renewal_keeps_live_ones() {
    let b = server(0.3);
    let m = fresh_model("expiry");
    let lease = b.lease_many(&m, capacity(4, 0), true, 1).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    // The renewer thread kept it alive past its first deadline.
    lock(&b.inner.counts).clear();
    assert_eq!(b.counts(&m), Some((1, 0)));
    // Forget it locally, as a crashed holder would: nothing renews it any more.
    lock(&b.inner.held).clear();
    std::thread::sleep(Duration::from_millis(500));
    lock(&b.inner.counts).clear();
    assert_eq!(b.counts(&m), Some((0, 0)));
    b.release_many(&m, &lease);
}

#[test]
fn after_an_error_the_backend_fails_fast_for_the_retry_window_then_tries_again() {
    let b = dead(DEAD_URLS[0], FailMode::Closed);
    let refused = |b: &RedisBackend| b.acquire("m", capacity(1, 0), true).is_err();
    assert!(refused(&b));
    let after_first = b.status().errors;
    assert!(after_first >= 1);
    let started = Instant::now();
    for _ in 0..100 {
        assert!(refused(&b));
    }
    // Inside the window nothing reaches the network: no new error, and no timeout paid.
    assert_eq!(b.status().errors, after_first);
    assert!(started.elapsed() < RETRY_AFTER);
    std::thread::sleep(RETRY_AFTER + Duration::from_millis(50));
    assert!(refused(&b));
    assert!(
        b.status().errors > after_first,
        "no new attempt after the window"
    );
}

#[test]
#[ignore = "needs a Redis server: run by tests/test_redis_rust.py"]
fn a_forgotten_lease_is_removed_and_can_never_be_admitted_later() {
    let b = server(30.0);
    let m = fresh_model("forget");
    let granted = b.lease_many(&m, capacity(4, 0), true, 1).unwrap();
    let late_id = b.inner.lease_id();
    // A held lease whose release was lost, and an admission given up on before it ran.
    b.inner
        .defer_forget(&m, vec![granted[0].1.clone(), late_id.clone()]);
    b.inner.flush_pending();
    assert_eq!(b.status().pending_releases, 0);
    assert_eq!(b.counts(&m), Some((0, 0)));
    // The admission arrives after all (a stalled server runs what was in its socket): refused.
    let [active, queued] = keys(&m);
    let codes: Vec<u64> = b
        .inner
        .round_trip(|con| {
            let mut call = b.inner.acquire.prepare_invoke();
            call.key(&active).key(&queued).key(cancelled_key(&m));
            call.arg(4).arg(0).arg(30_000).arg(0).arg(&late_id);
            call.invoke(con.like())
        })
        .unwrap();
    assert_eq!(codes, vec![0, 0, 0]);
    // Fresh ids are still admitted.
    assert_eq!(b.lease_many(&m, capacity(4, 0), true, 1).unwrap().len(), 1);
}
