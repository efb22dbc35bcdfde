//! In-flight counts shared by router replicas through Redis.
//!
//! Per model two sorted sets, `{mr:<model>}:active` and `{mr:<model>}:queued`, hold leases:
//! member = lease id, score = deadline in ms on the Redis server's clock (`TIME`), never a
//! client's. One Lua script purges expired leases, checks the limits and adds the lease
//! atomically; release is a `ZREM` (idempotent). A holder renews only its own leases, from a
//! thread of the process that holds them, so a crashed replica's leases expire within the TTL
//! and nothing else extends them. The hash tag keeps a model's keys on one Cluster slot, so
//! every call (one model's keys) runs on one node of a Redis Cluster (`redis+cluster://`).
//! `rediss://` and `rediss+cluster://` do the same over TLS (see `tls.rs` for the options).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::{RedisResult, Script};

use crate::error::{Error, Result};
use crate::load::{Admission, BackendStatus, Capacity, FailMode, LoadBackend, Slot};
use crate::LOG_TARGET;

mod config;
mod conn;
mod limits;
mod renew;
mod scripts;
mod tls;

use config::redact;
pub use config::{RedisConfig, TrackerSettings};
pub use conn::CLUSTER_SCHEME;
use conn::{Client, Conn};

/// After a failed round trip the backend is not tried again for this long (fail fast).
const RETRY_AFTER: Duration = Duration::from_millis(500);
/// Readings of the shared counts are reused for this long.
const COUNTS_TTL: Duration = Duration::from_millis(5);

/// Shared load in Redis; cheap to clone (one pool of connections, one renewer thread).
#[derive(Debug, Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

/// model → lease id → slot, for the leases this process holds.
type Held = HashMap<String, HashMap<String, Slot>>;

struct Inner {
    client: Client,
    config: RedisConfig,
    display_url: String,
    ttl_ms: u64,
    timeout: Duration,
    /// The process these connections, leases and renewer belong to (reset after a fork).
    pid: AtomicU32,
    pool: Mutex<Vec<Conn>>,
    held: Mutex<Held>,
    /// model → lease ids to forget once the server answers again: releases that could not be
    /// sent, and acquisitions that timed out (the server may still run them).
    pending: Mutex<HashMap<String, Vec<String>>>,
    pending_len: AtomicU64,
    lost_releases: AtomicU64,
    counts: Mutex<HashMap<String, (Instant, u64, u64)>>,
    down_until: Mutex<Option<Instant>>,
    available: AtomicBool,
    renewer_pid: AtomicU32,
    /// Lease ids are `<pid>-<salt>-<seq>`: the pid tells a forked child's ids (its sequence
    /// goes on from the parent's) from the parent's, the salt this process's backends apart.
    id_salt: u64,
    seq: AtomicU64,
    fail_open_events: AtomicU64,
    errors: AtomicU64,
    lost_leases: AtomicU64,
    last_error: Mutex<Option<String>>,
    acquire: Script,
    renew: Script,
    read: Script,
    forget: Script,
    acquire_limited: Script,
    reconcile: Script,
    read_limited: Script,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("url", &self.display_url)
            .field("lease_ttl_s", &self.config.lease_ttl_s)
            .field("fail_mode", &self.config.fail_mode)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a single insert/remove/read: a poisoned lock is still whole.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn keys(model: &str) -> [String; 2] {
    [
        format!("{{mr:{model}}}:active"),
        format!("{{mr:{model}}}:queued"),
    ]
}

/// Lease ids given up on (see `scripts::FORGET`); same hash tag as the model's lease sets.
fn cancelled_key(model: &str) -> String {
    format!("{{mr:{model}}}:cancelled")
}

/// Most lease ids kept for forgetting after an outage; past it the oldest are dropped (they
/// expire on the server within one TTL anyway) and counted in `lost_releases`.
const MAX_PENDING: usize = 1_000_000;

fn key_of(model: &str, slot: Slot) -> String {
    let [active, queued] = keys(model);
    match slot {
        Slot::Active => active,
        Slot::Queued => queued,
    }
}

impl RedisBackend {
    pub fn new(config: RedisConfig) -> Result<Self> {
        let display_url = redact(&config.url);
        let timeout = Duration::from_secs_f64(config.timeout_s);
        let client = Client::open(&config.url, timeout, &display_url)?;
        let pid = std::process::id();
        let inner = Inner {
            client,
            display_url,
            ttl_ms: (config.lease_ttl_s * 1000.0).round() as u64,
            timeout,
            pid: AtomicU32::new(pid),
            pool: Mutex::new(Vec::new()),
            held: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            pending_len: AtomicU64::new(0),
            lost_releases: AtomicU64::new(0),
            counts: Mutex::new(HashMap::new()),
            down_until: Mutex::new(None),
            available: AtomicBool::new(true),
            renewer_pid: AtomicU32::new(0),
            id_salt: rand::random::<u64>(),
            seq: AtomicU64::new(0),
            fail_open_events: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            lost_leases: AtomicU64::new(0),
            last_error: Mutex::new(None),
            acquire: Script::new(scripts::ACQUIRE),
            renew: Script::new(scripts::RENEW),
            read: Script::new(scripts::READ),
            forget: Script::new(scripts::FORGET),
            acquire_limited: Script::new(limits::ACQUIRE_LIMITED),
            reconcile: Script::new(limits::RECONCILE),
            read_limited: Script::new(limits::READ_LIMITED),
            config,
        };
        Ok(RedisBackend {
            inner: Arc::new(inner),
        })
    }

    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// Admits `n` requests of one model in one round trip; refused ones are left out. Any
    /// error is an error here, whatever the fail mode (`LoadBackend::acquire_many` applies it).
    pub fn lease_many(
        &self,
        model: &str,
        capacity: Capacity,
        bounded: bool,
        n: usize,
    ) -> Result<Vec<(Slot, String)>> {
        let inner = &self.inner;
        inner.check_fork();
        let ids: Vec<String> = (0..n).map(|_| inner.lease_id()).collect();
        let [active, queued] = keys(model);
        let cancelled = cancelled_key(model);
        let reply: RedisResult<Vec<u64>> = inner.round_trip(|con| {
            let mut call = inner.acquire.prepare_invoke();
            call.key(&active).key(&queued).key(&cancelled);
            call.arg(capacity.max_concurrent)
                .arg(capacity.max_queue)
                .arg(inner.ttl_ms)
                .arg(u8::from(!bounded))
                .arg(&ids);
            call.invoke(con.like())
        });
        let reply = match reply {
            Ok(r) if r.len() == n + 2 => r,
            Ok(_) => return Err(Error::BackendUnavailable("malformed acquire reply".into())),
            Err(e) => {
                // The script may still run when the server comes back (a stall, not a crash):
                // these ids are forgotten, and refused by the script, once it answers again.
                if e.is_timeout() || e.is_connection_dropped() {
                    inner.defer_forget(model, ids);
                    self.ensure_renewer();
                }
                return Err(Error::BackendUnavailable(inner.unavailable(&e)));
            }
        };
        inner.remember_counts(model, reply[n], reply[n + 1]);
        let granted: Vec<(Slot, String)> = ids
            .into_iter()
            .zip(&reply[..n])
            .filter_map(|(id, &code)| match code {
                1 => Some((Slot::Active, id)),
                2 => Some((Slot::Queued, id)),
                _ => None,
            })
            .collect();
        if !granted.is_empty() {
            let mut held = lock(&inner.held);
            let mine = held.entry(model.to_string()).or_default();
            for (slot, id) in &granted {
                mine.insert(id.clone(), *slot);
            }
            drop(held);
            self.ensure_renewer();
        }
        Ok(granted)
    }

    /// Renews every lease this process holds (what the renewer thread does every TTL/3).
    pub fn renew_held(&self) {
        self.inner.renew_held();
    }
}

impl Inner {
    /// Called after `check_fork`, so `pid` is this process's.
    fn lease_id(&self) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let pid = self.pid.load(Ordering::Acquire);
        format!("{pid:x}-{:016x}-{n:x}", self.id_salt)
    }

    /// After a fork the child owns none of the parent's connections, leases or renewer.
    fn check_fork(&self) {
        let pid = std::process::id();
        if self.pid.swap(pid, Ordering::AcqRel) != pid {
            lock(&self.pool).clear();
            lock(&self.held).clear();
            lock(&self.pending).clear();
            self.pending_len.store(0, Ordering::Relaxed);
            lock(&self.counts).clear();
            self.renewer_pid.store(0, Ordering::Release);
        }
    }

    /// Keeps lease ids to forget once the server answers again (bounded: see MAX_PENDING).
    fn defer_forget(&self, model: &str, ids: Vec<String>) {
        let mut pending = lock(&self.pending);
        let mine = pending.entry(model.to_string()).or_default();
        self.pending_len
            .fetch_add(ids.len() as u64, Ordering::Relaxed);
        mine.extend(ids);
        let over = self.pending_len.load(Ordering::Relaxed) as usize;
        if over > MAX_PENDING && mine.len() > 1 {
            let drop_n = (over - MAX_PENDING).min(mine.len() - 1);
            mine.drain(..drop_n);
            self.pending_len.fetch_sub(drop_n as u64, Ordering::Relaxed);
            self.lost_releases
                .fetch_add(drop_n as u64, Ordering::Relaxed);
        }
    }

    /// Sends the deferred forgets, one script per model; what fails stays for the next try.
    pub(super) fn flush_pending(&self) {
        let batches: Vec<(String, Vec<String>)> = lock(&self.pending).drain().collect();
        for (model, ids) in batches {
            let [active, queued] = keys(&model);
            let cancelled = cancelled_key(&model);
            let sent: RedisResult<u64> = self.round_trip(|con| {
                self.forget
                    .prepare_invoke()
                    .key(&active)
                    .key(&queued)
                    .key(&cancelled)
                    .arg(self.ttl_ms.max(1000))
                    .arg(&ids)
                    .invoke(con.like())
            });
            match sent {
                Ok(_) => {
                    self.pending_len
                        .fetch_sub(ids.len() as u64, Ordering::Relaxed);
                    lock(&self.counts).remove(&model);
                }
                Err(_) => lock(&self.pending).entry(model).or_default().extend(ids),
            }
        }
    }

    fn record_error(&self, message: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_error) = Some(message);
    }

    /// Records the failure and words it for the caller.
    fn unavailable(&self, err: &redis::RedisError) -> String {
        format!(
            "shared load backend {} is unavailable: {err}",
            self.display_url
        )
    }

    /// One warning when the backend stops answering (the `available` flag's transition, never
    /// per call): what the fail mode now does to the limits.
    fn log_lost(&self, err: &redis::RedisError) {
        let consequence = match self.config.fail_mode {
            FailMode::Open => {
                "fail_mode=open: limits now hold per replica (this process's own counts) until \
                 it answers again"
            }
            FailMode::Closed => {
                "fail_mode=closed: requests are refused (BackendUnavailableError) until it \
                 answers again"
            }
        };
        log::warn!(
            target: LOG_TARGET,
            "shared load backend {} is unavailable ({err}); {consequence}",
            self.display_url
        );
    }

    /// One notice when the backend answers again after `log_lost`.
    fn log_regained(&self) {
        log::info!(
            target: LOG_TARGET,
            "shared load backend {} answers again; limits are shared across replicas again",
            self.display_url
        );
    }

    fn is_down(&self) -> bool {
        matches!(*lock(&self.down_until), Some(t) if Instant::now() < t)
    }

    /// One round trip on a pooled connection with timeouts; fails fast for a while after an
    /// error so that a dead server costs one timeout, not one per request.
    fn round_trip<T>(&self, f: impl Fn(&mut Conn) -> RedisResult<T>) -> RedisResult<T> {
        self.check_fork();
        if self.is_down() {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "backend marked down after a recent error; retrying shortly",
            )));
        }
        let pooled = lock(&self.pool).pop();
        let fresh = || {
            self.connect()
                .and_then(|mut con| f(&mut con).map(|v| (v, con)))
        };
        let result = match pooled {
            // A pooled connection may predate a server restart: one retry on a new connection
            // when it was found closed (never after a timeout, when the script may have run).
            Some(mut con) => match f(&mut con) {
                Err(e) if e.is_connection_dropped() && !e.is_timeout() => fresh(),
                other => other.map(|v| (v, con)),
            },
            None => fresh(),
        };
        match result {
            Ok((value, con)) => {
                lock(&self.pool).push(con);
                *lock(&self.down_until) = None;
                if !self.available.swap(true, Ordering::AcqRel) {
                    self.log_regained();
                }
                Ok(value)
            }
            Err(e) => {
                self.record_error(self.unavailable(&e));
                // Only an unreachable server makes the backend fail fast for a while. A server
                // that answered with an error (a Cluster slot in migration: ASK, TRYAGAIN) is
                // up: its other models must not be failed with it.
                if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                    *lock(&self.down_until) = Some(Instant::now() + RETRY_AFTER);
                    if self.available.swap(false, Ordering::AcqRel) {
                        self.log_lost(&e);
                    }
                }
                Err(e)
            }
        }
    }

    fn connect(&self) -> RedisResult<Conn> {
        self.client.connect(self.timeout)
    }

    fn remember_counts(&self, model: &str, active: u64, queued: u64) {
        lock(&self.counts).insert(model.to_string(), (Instant::now(), active, queued));
    }
}

impl LoadBackend for RedisBackend {
    fn acquire(&self, model: &str, capacity: Capacity, bounded: bool) -> Result<Admission> {
        Ok(match self.acquire_many(model, capacity, bounded, 1)? {
            Some(mut granted) => match granted.pop() {
                Some((slot, id)) => Admission::Leased(slot, id),
                None => Admission::Refused,
            },
            None => Admission::FallBack,
        })
    }

    fn acquire_many(
        &self,
        model: &str,
        capacity: Capacity,
        bounded: bool,
        n: usize,
    ) -> Result<Option<Vec<(Slot, String)>>> {
        match self.lease_many(model, capacity, bounded, n) {
            Ok(granted) => Ok(Some(granted)),
            Err(_) if self.inner.config.fail_mode == FailMode::Open => {
                self.inner.fail_open_events.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn release(&self, model: &str, slot: Slot, lease: &str) {
        self.release_many(model, &[(slot, lease.to_string())]);
    }

    /// Releases many leases of one model in one round trip (idempotent).
    fn release_many(&self, model: &str, leases: &[(Slot, String)]) {
        if leases.is_empty() {
            return;
        }
        let inner = &self.inner;
        {
            let mut held = lock(&inner.held);
            if let Some(mine) = held.get_mut(model) {
                for (_, id) in leases {
                    mine.remove(id);
                }
            }
        }
        lock(&inner.counts).remove(model);
        let removals: Vec<(String, Vec<&String>)> = [Slot::Active, Slot::Queued]
            .into_iter()
            .map(|slot| {
                let ids = leases.iter().filter(|(s, _)| *s == slot);
                (key_of(model, slot), ids.map(|(_, id)| id).collect())
            })
            .filter(|(_, ids): &(String, Vec<&String>)| !ids.is_empty())
            .collect();
        // An unreachable backend: the release is sent again once it answers (the renewer
        // flushes within one renewal interval), so capacity does not wait for the lease TTL.
        if inner.round_trip(|con| con.zrem_all(&removals)).is_err() {
            inner.defer_forget(model, leases.iter().map(|(_, id)| id.clone()).collect());
            self.ensure_renewer();
        }
    }

    fn acquire_tokens(
        &self,
        model: &str,
        capacity: Capacity,
        bounded: bool,
        tokens: u64,
    ) -> Result<Option<crate::load::TokenAdmission>> {
        match self.lease_limited(model, capacity, bounded, tokens) {
            Ok(a) => Ok(Some(limits::into_token_admission(a))),
            Err(_) if self.inner.config.fail_mode == FailMode::Open => {
                self.inner.fail_open_events.fetch_add(1, Ordering::Relaxed);
                Ok(Some(crate::load::TokenAdmission::FallBack))
            }
            Err(e) => Err(e),
        }
    }

    fn reconcile(&self, model: &str, lease: &str, used: u64) {
        self.reconcile_usage(model, lease, used);
    }

    fn token_counts(&self, model: &str) -> Option<(u64, u64, u64)> {
        RedisBackend::token_counts(self, model)
    }

    fn counts(&self, model: &str) -> Option<(u64, u64)> {
        let inner = &self.inner;
        if let Some(&(at, a, q)) = lock(&inner.counts).get(model) {
            if at.elapsed() < COUNTS_TTL {
                return Some((a, q));
            }
        }
        let [active, queued] = keys(model);
        let reply: RedisResult<(u64, u64)> = inner.round_trip(|con| {
            inner
                .read
                .prepare_invoke()
                .key(&active)
                .key(&queued)
                .invoke(con.like())
        });
        let (a, q) = reply.ok()?;
        inner.remember_counts(model, a, q);
        Some((a, q))
    }

    fn refresh_counts(&self) {
        lock(&self.inner.counts).clear();
    }

    fn status(&self) -> BackendStatus {
        let inner = &self.inner;
        BackendStatus {
            backend: inner.display_url.clone(),
            available: inner.available.load(Ordering::Acquire),
            fail_mode: inner.config.fail_mode,
            lease_ttl_s: inner.config.lease_ttl_s,
            held_leases: lock(&inner.held).values().map(|m| m.len() as u64).sum(),
            fail_open_events: inner.fail_open_events.load(Ordering::Relaxed),
            errors: inner.errors.load(Ordering::Relaxed),
            lost_leases: inner.lost_leases.load(Ordering::Relaxed),
            pending_releases: inner.pending_len.load(Ordering::Relaxed),
            lost_releases: inner.lost_releases.load(Ordering::Relaxed),
            last_error: lock(&inner.last_error).clone(),
        }
    }
}

#[cfg(test)]
mod tests;
