//! Batched (pipelined) leases against a local Redis: one round trip admits or releases a
//! whole batch. Needs `MODELROUTER_TEST_REDIS_URL` and the `redis-backend` feature:
//! `MODELROUTER_TEST_REDIS_URL=redis://127.0.0.1:6379/0 cargo bench --features redis-backend --bench redis`
use std::time::Instant;

use modelrouter::load::{Capacity, FailMode, LoadBackend, Slot};
use modelrouter::redis_backend::{RedisBackend, RedisConfig};

fn main() {
    let Ok(url) = std::env::var("MODELROUTER_TEST_REDIS_URL") else {
        eprintln!("MODELROUTER_TEST_REDIS_URL is unset: skipping the Redis bench");
        return;
    };
    let config = RedisConfig::new(&url, 30.0, FailMode::Closed, 1.0).unwrap();
    let backend = RedisBackend::new(config).unwrap();
    let cap = Capacity::new(1_000_000, 0, 1.0).unwrap();
    let model = format!("bench-{}", std::process::id());
    println!("| Rust, one thread | per lease (acquire + release) | leases/s |");
    println!("|---|---:|---:|");
    let n = 20_000;
    let start = Instant::now();
    for _ in 0..n {
        match backend.acquire(&model, cap, true) {
            Ok(modelrouter::load::Admission::Leased(slot, id)) => {
                backend.release(&model, slot, &id)
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    report("one lease per round trip", start, n);
    for batch in [16, 64, 256] {
        let rounds = (n / batch).max(1);
        let start = Instant::now();
        for _ in 0..rounds {
            let leases: Vec<(Slot, String)> = backend.lease_many(&model, cap, true, batch).unwrap();
            assert_eq!(leases.len(), batch);
            backend.release_many(&model, &leases);
        }
        report(&format!("batches of {batch}"), start, rounds * batch);
    }
}

fn report(label: &str, start: Instant, leases: usize) {
    let secs = start.elapsed().as_secs_f64();
    println!(
        "| {label} | {:.2} µs | {:.0} |",
        secs * 1e6 / leases as f64,
        leases as f64 / secs
    );
}
