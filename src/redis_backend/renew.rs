//! Lease renewal: a thread of the holding process renews only that process's leases, every
//! TTL/3, and stops with the backend (or the process), so leaked leases expire. The same tick
//! sends the releases that could not be sent while the server was away.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use redis::RedisResult;

use super::{key_of, lock, Inner, RedisBackend};
use crate::load::Slot;

impl RedisBackend {
    pub(super) fn ensure_renewer(&self) {
        let pid = std::process::id();
        if self.inner.renewer_pid.swap(pid, Ordering::AcqRel) == pid {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let period = Duration::from_millis((self.inner.ttl_ms / 3).max(10));
        let spawned = std::thread::Builder::new()
            .name("modelrouter-lease-renewer".into())
            .spawn(move || renew_loop(weak, period));
        if spawned.is_err() {
            self.inner.renewer_pid.store(0, Ordering::Release);
        }
    }
}

/// Renews until the backend is dropped; a dead process renews nothing, so its leases expire.
fn renew_loop(weak: Weak<Inner>, period: Duration) {
    let step = period.min(Duration::from_millis(50));
    let mut last = Instant::now();
    loop {
        std::thread::sleep(step);
        let Some(inner) = weak.upgrade() else { return };
        if inner.renewer_pid.load(Ordering::Acquire) != std::process::id() {
            return;
        }
        if last.elapsed() >= period {
            last = Instant::now();
            inner.renew_held();
        }
    }
}

impl Inner {
    pub(super) fn renew_held(&self) {
        if self.pending_len.load(Ordering::Relaxed) > 0 {
            self.flush_pending();
        }
        let held: Vec<(String, Vec<(String, Slot)>)> = lock(&self.held)
            .iter()
            .filter(|(_, m)| !m.is_empty())
            .map(|(model, m)| {
                (
                    model.clone(),
                    m.iter().map(|(k, s)| (k.clone(), *s)).collect(),
                )
            })
            .collect();
        for (model, leases) in held {
            for slot in [Slot::Active, Slot::Queued] {
                let ids: Vec<&String> = leases
                    .iter()
                    .filter(|(_, s)| *s == slot)
                    .map(|(id, _)| id)
                    .collect();
                if ids.is_empty() {
                    continue;
                }
                let key = key_of(&model, slot);
                let lost: RedisResult<Vec<String>> = self.round_trip(|con| {
                    self.renew
                        .prepare_invoke()
                        .key(&key)
                        .arg(self.ttl_ms)
                        .arg(&ids)
                        .invoke(con.like())
                });
                if let Ok(lost) = lost {
                    let mut all = lock(&self.held);
                    if let Some(mine) = all.get_mut(&model) {
                        for id in &lost {
                            if mine.remove(id).is_some() {
                                self.lost_leases.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            }
        }
    }
}
