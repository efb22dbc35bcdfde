//! Live load per model: lock-free counters, capacity, latency EWMA and staleness.
//!
//! Counters are atomics inside an `Arc<ModelState>`, so the router keeps direct handles to its
//! models and never hashes an id on the hot path; the tracker's map is only for lookups by id.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::ser::{Serialize, SerializeStruct, Serializer};

use crate::error::{non_negative, Error, Result};
use crate::limits::{Limiter, Refusal, TokenTiming};

mod backend;
mod clock;
pub use crate::limits::{Limits, TokenLoad};
pub use backend::{Admission, BackendStatus, FailMode, LoadBackend, Ticket, TokenAdmission};

pub use clock::{system_clock, AtomicF64, Clock, ManualClock, SharedClock, SystemClock};

/// The shared backend a tracker's models count in, if any.
pub type SharedBackend = Arc<dyn LoadBackend>;

/// Weight of the newest latency sample in the EWMA.
pub const LATENCY_EWMA_ALPHA: f64 = 0.2;

/// Capacity limits of one model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capacity {
    pub max_concurrent: u64,
    pub max_queue: u64,
    pub target_utilization: f64,
    /// RPM, TPM and tokens in flight (`crate::limits`); unlimited by default.
    pub limits: Limits,
}

impl Capacity {
    pub fn new(max_concurrent: u64, max_queue: u64, target_utilization: f64) -> Result<Self> {
        if max_concurrent == 0 {
            return Err(Error::invalid("max_concurrent", "must be >= 1"));
        }
        if !(target_utilization > 0.0 && target_utilization <= 1.0) {
            return Err(Error::invalid(
                "target_utilization",
                format!("must be in (0, 1], got {target_utilization}"),
            ));
        }
        Ok(Capacity {
            max_concurrent,
            max_queue,
            target_utilization,
            limits: Limits::NONE,
        })
    }

    pub fn with_limits(self, limits: Limits) -> Self {
        Capacity { limits, ..self }
    }

    /// utilization = the highest of active / max_concurrent and the token-side fractions
    /// (tokens in flight of max_tokens_in_flight, the RPM and TPM windows of their limits);
    /// may exceed 1. The one definition: the router, the balancer, batch assignment, alerts
    /// and the simulator all read it from here.
    pub fn utilization(&self, active: u64, tokens: &TokenLoad) -> f64 {
        let requests = active as f64 / self.max_concurrent as f64;
        if self.limits.is_unlimited() {
            return requests; // the common case: no token-side fraction to weigh
        }
        requests.max(self.limits.fraction(tokens))
    }

    /// Overloaded: more active requests than slots, or more queued than queue places.
    pub fn is_overloaded(&self, active: u64, queued: u64) -> bool {
        active > self.max_concurrent || queued > self.max_queue
    }

    /// Over target: utilization above `target_utilization`.
    pub fn is_over_target(&self, active: u64, tokens: &TokenLoad) -> bool {
        self.utilization(active, tokens) > self.target_utilization
    }
}

/// Shared live state of one model.
#[derive(Debug)]
pub struct ModelState {
    pub id: String,
    max_concurrent: AtomicU64,
    max_queue: AtomicU64,
    target_utilization: AtomicF64,
    active: AtomicU64,
    queued: AtomicU64,
    /// NaN until the first sample.
    latency_ewma_ms: AtomicF64,
    /// Clock time of the newest latency sample; NaN before the first.
    latency_at: AtomicF64,
    last_updated: AtomicF64,
    /// With a backend the local atomics count this process's requests only (the fallback
    /// when the backend is away); readings come from the backend.
    backend: Option<SharedBackend>,
    /// RPM/TPM windows and tokens in flight (this process's; see `crate::limits`).
    limiter: Limiter,
    /// The tracker's clock, so a reading sees the windows as of now.
    clock: Option<SharedClock>,
    /// Latency against output tokens, learned from finished requests with usage.
    timing: std::sync::Mutex<TokenTiming>,
    /// Its fit (TTFT ms, ms per output token), NaN until learned: read lock-free by routing.
    ttft_ms: AtomicF64,
    per_token_ms: AtomicF64,
}

/// A consistent-enough reading of one model (each field is read atomically).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelLoad {
    pub model_id: String,
    pub active_requests: u64,
    pub queue_depth: u64,
    pub avg_latency_ms: f64,
    pub last_updated: f64,
    pub capacity: Capacity,
    /// Tokens in flight and the RPM/TPM windows' contents.
    pub tokens: TokenLoad,
}

impl ModelLoad {
    pub fn utilization(&self) -> f64 {
        self.capacity
            .utilization(self.active_requests, &self.tokens)
    }
    pub fn is_overloaded(&self) -> bool {
        self.capacity
            .is_overloaded(self.active_requests, self.queue_depth)
    }
    pub fn is_over_target(&self) -> bool {
        self.capacity
            .is_over_target(self.active_requests, &self.tokens)
    }
    /// EWMA of observed latencies; `None` before the first sample.
    pub fn latency(&self) -> Option<f64> {
        Some(self.avg_latency_ms).filter(|l| !l.is_nan())
    }
}

/// Serializes as the Python `ModelLoad.to_dict()`: the counters, the capacity flattened, the
/// derived utilization and thresholds, and a NaN latency as null.
impl Serialize for ModelLoad {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let c = &self.capacity;
        let mut s = serializer.serialize_struct("ModelLoad", 17)?;
        s.serialize_field("model_id", &self.model_id)?;
        s.serialize_field("active_requests", &self.active_requests)?;
        s.serialize_field("queue_depth", &self.queue_depth)?;
        s.serialize_field("avg_latency_ms", &self.latency())?;
        s.serialize_field("utilization", &self.utilization())?;
        s.serialize_field("last_updated", &self.last_updated)?;
        s.serialize_field("max_concurrent", &c.max_concurrent)?;
        s.serialize_field("max_queue", &c.max_queue)?;
        s.serialize_field("target_utilization", &c.target_utilization)?;
        s.serialize_field("is_overloaded", &self.is_overloaded())?;
        s.serialize_field("is_over_target", &self.is_over_target())?;
        s.serialize_field("rpm", &c.limits.rpm)?;
        s.serialize_field("tpm", &c.limits.tpm)?;
        s.serialize_field("max_tokens_in_flight", &c.limits.max_tokens_in_flight)?;
        s.serialize_field("tokens_in_flight", &self.tokens.in_flight)?;
        s.serialize_field("requests_in_window", &self.tokens.requests_in_window)?;
        s.serialize_field("tokens_in_window", &self.tokens.tokens_in_window)?;
        s.end()
    }
}

/// `ModelLoad('id', active_requests=3, queue_depth=0, utilization=0.75)`: the Python repr
/// (utilization rounded to 3 decimals).
impl fmt::Display for ModelLoad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ModelLoad({}, active_requests={}, queue_depth={}, utilization={})",
            crate::display::py_str(&self.model_id),
            self.active_requests,
            self.queue_depth,
            crate::display::py_float((self.utilization() * 1e3).round() / 1e3)
        )
    }
}

/// Which counter an admitted request holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Active,
    Queued,
}

fn add_checked(counter: &AtomicU64, delta: i64, field: &str, id: &str) -> Result<u64> {
    let mut current = counter.load(Ordering::Acquire);
    loop {
        let next = current.checked_add_signed(delta).ok_or_else(|| {
            Error::invalid(
                "delta",
                format!("{field} of {id:?} is {current}; adding {delta} would make it negative"),
            )
        })?;
        match counter.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Ok(next),
            Err(seen) => current = seen,
        }
    }
}

/// Increments `counter` only while it is below `limit`; false when full.
fn add_below(counter: &AtomicU64, limit: u64) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
            (c < limit).then_some(c + 1)
        })
        .is_ok()
}

impl ModelState {
    pub fn new(id: String, capacity: Capacity, now: f64) -> Self {
        ModelState {
            id,
            max_concurrent: AtomicU64::new(capacity.max_concurrent),
            max_queue: AtomicU64::new(capacity.max_queue),
            target_utilization: AtomicF64::new(capacity.target_utilization),
            active: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            latency_ewma_ms: AtomicF64::new(f64::NAN),
            latency_at: AtomicF64::new(f64::NAN),
            last_updated: AtomicF64::new(now),
            backend: None,
            limiter: Limiter::new(capacity.limits),
            clock: None,
            timing: std::sync::Mutex::new(TokenTiming::default()),
            ttft_ms: AtomicF64::new(f64::NAN),
            per_token_ms: AtomicF64::new(f64::NAN),
        }
    }

    /// Learns from one finished request: `output_tokens` generated in `latency_ms`, the first
    /// of them after `ttft_ms` when the caller measured it (a stream).
    pub fn record_usage(&self, output_tokens: u64, latency_ms: f64, ttft_ms: Option<f64>) {
        self.learn(|timing| {
            timing.observe(output_tokens, latency_ms);
            if let Some(ttft) = ttft_ms {
                timing.observe_decode(output_tokens, latency_ms, ttft);
            }
        });
    }

    /// Learns one measured time to first token (as soon as it arrives, whatever the end).
    pub fn record_first_token(&self, ttft_ms: f64) {
        self.learn(|timing| timing.observe_ttft(ttft_ms));
    }

    fn learn(&self, update: impl FnOnce(&mut TokenTiming)) {
        let mut timing = self.timing.lock().unwrap_or_else(|e| e.into_inner());
        update(&mut timing);
        let (ttft, per_token) = timing.estimates();
        if let Some(ttft) = ttft {
            self.ttft_ms.store(ttft);
        }
        if let Some(per_token) = per_token {
            self.per_token_ms.store(per_token);
        }
    }

    /// (TTFT ms, ms per output token) as learned; each NaN before it is known.
    pub fn token_timing(&self) -> (f64, f64) {
        (self.ttft_ms.load(), self.per_token_ms.load())
    }

    /// Expected service time of a request generating `output_tokens`: TTFT + output × per-token
    /// time; NaN while unknown (no output length given, or not learned yet).
    pub fn service_ms(&self, output_tokens: u64) -> f64 {
        if output_tokens == 0 {
            return f64::NAN;
        }
        self.ttft_ms.load() + output_tokens as f64 * self.per_token_ms.load()
    }

    /// A model whose readings take the time from `clock` (its tracker's).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Now on the tracker's clock; the last update without one.
    fn now(&self) -> f64 {
        self.clock
            .as_ref()
            .map_or_else(|| self.last_updated(), |c| c.now())
    }

    /// RPM/TPM windows and tokens in flight of this model.
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// Token-side load now (this process's; see `snapshot` for the shared one).
    pub fn token_load(&self, now: f64) -> TokenLoad {
        self.limiter.load(now)
    }

    /// The windows and tokens in flight across replicas, when a backend shares them.
    fn shared_token_load(&self) -> Option<TokenLoad> {
        let backend = self
            .backend
            .as_ref()
            .filter(|_| self.limiter.is_limited())?;
        let (requests, tokens, in_flight) = backend.token_counts(&self.id)?;
        Some(TokenLoad {
            in_flight,
            requests_in_window: requests,
            tokens_in_window: tokens,
        })
    }

    /// A model whose in-flight counts are shared through `backend`.
    pub fn with_backend(mut self, backend: Option<SharedBackend>) -> Self {
        self.backend = backend;
        self
    }

    pub fn backend(&self) -> Option<&SharedBackend> {
        self.backend.as_ref()
    }

    /// (active, queued): the backend's (across replicas) when there is one and it answers,
    /// else this process's own counters.
    pub fn counts(&self) -> (u64, u64) {
        self.backend
            .as_ref()
            .and_then(|b| b.counts(&self.id))
            .unwrap_or_else(|| (self.local_active(), self.local_queued()))
    }

    /// This process's own active count (equal to `active()` without a backend).
    pub fn local_active(&self) -> u64 {
        self.active.load(Ordering::Acquire)
    }
    pub fn local_queued(&self) -> u64 {
        self.queued.load(Ordering::Acquire)
    }

    pub fn capacity(&self) -> Capacity {
        Capacity {
            max_concurrent: self.max_concurrent.load(Ordering::Acquire),
            max_queue: self.max_queue.load(Ordering::Acquire),
            target_utilization: self.target_utilization.load(),
            limits: self.limiter.limits(),
        }
    }

    pub fn set_capacity(&self, capacity: Capacity, now: f64) {
        if capacity.limits != self.limiter.limits() {
            self.limiter.set_limits(capacity.limits);
        }
        self.max_concurrent
            .store(capacity.max_concurrent, Ordering::Release);
        self.max_queue.store(capacity.max_queue, Ordering::Release);
        self.target_utilization.store(capacity.target_utilization);
        self.last_updated.store(now);
    }

    pub fn active(&self) -> u64 {
        self.counts().0
    }
    pub fn queued(&self) -> u64 {
        self.counts().1
    }
    pub fn latency_ms(&self) -> f64 {
        self.latency_ewma_ms.load()
    }
    /// Seconds since the newest latency sample (0 before the first, or when `now` is NaN).
    pub fn latency_age_s(&self, now: f64) -> f64 {
        let at = self.latency_at.load();
        if at.is_nan() {
            0.0
        } else {
            (now - at).max(0.0)
        }
    }
    pub fn last_updated(&self) -> f64 {
        self.last_updated.load()
    }

    /// Adds `delta` to the active count; going below zero is an error, never a wrap.
    pub fn add_active(&self, delta: i64, now: f64) -> Result<u64> {
        let v = add_checked(&self.active, delta, "active_requests", &self.id)?;
        self.last_updated.store(now);
        Ok(v)
    }

    pub fn add_queued(&self, delta: i64, now: f64) -> Result<u64> {
        let v = add_checked(&self.queued, delta, "queue_depth", &self.id)?;
        self.last_updated.store(now);
        Ok(v)
    }

    /// Overwrites counters from an external report (e.g. a deployment's own metrics).
    pub fn set_counts(&self, active: Option<u64>, queued: Option<u64>, now: f64) {
        if let Some(a) = active {
            self.active.store(a, Ordering::Release);
        }
        if let Some(q) = queued {
            self.queued.store(q, Ordering::Release);
        }
        self.last_updated.store(now);
    }

    pub fn record_latency(&self, latency_ms: f64, now: f64) {
        self.latency_ewma_ms.update(|old| {
            if old.is_nan() {
                latency_ms
            } else {
                old + LATENCY_EWMA_ALPHA * (latency_ms - old)
            }
        });
        self.latency_at.store(now);
        self.last_updated.store(now);
    }

    /// Admission in one atomic step: a free slot, else queue room, else refused.
    pub fn try_admit(&self, now: f64) -> Option<Slot> {
        let slot = if add_below(&self.active, self.max_concurrent.load(Ordering::Acquire)) {
            Slot::Active
        } else if add_below(&self.queued, self.max_queue.load(Ordering::Acquire)) {
            Slot::Queued
        } else {
            return None;
        };
        self.last_updated.store(now);
        Some(slot)
    }

    /// `try_admit` of a request of `tokens` under the model's token limits too, in one atomic
    /// decision (see `Limiter::admit`).
    pub fn try_admit_tokens(&self, tokens: u64, now: f64) -> Admit {
        match self
            .limiter
            .admit(tokens, true, now, || self.try_admit(now))
        {
            Ok(Some((slot, r))) => Admit::Granted(Ticket::local(slot).reserving(r)),
            Ok(None) => Admit::Full,
            Err(refusal) => Admit::Limited(refusal),
        }
    }

    /// Gives back what `try_admit` or a tracked request took. Saturates at zero so that an
    /// external `set_counts` reset can never make a release wrap.
    pub fn release(&self, slot: Slot, now: f64) {
        let _ = self
            .counter(slot)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                Some(c.saturating_sub(1))
            });
        self.last_updated.store(now);
    }

    /// Takes a slot (or a queue place; `bounded = false`: an active slot whatever the limits)
    /// in the backend when there is one, else — or when it is away and fails open — locally.
    /// None when full; `Error::BackendUnavailable` when the backend is away and fails closed.
    pub fn acquire(&self, bounded: bool, now: f64) -> Result<Option<Ticket>> {
        Ok(match self.acquire_tokens(bounded, 0, now)? {
            Admit::Granted(ticket) => Some(ticket),
            Admit::Full | Admit::Limited(_) => None,
        })
    }

    /// `acquire` of one request of `tokens` (prompt + max output): one atomic decision over
    /// concurrency, queue, RPM, TPM and tokens in flight. A request bigger than the model's
    /// TPM or token capacity is an input error naming the limit (it could never be admitted).
    pub fn acquire_tokens(&self, bounded: bool, tokens: u64, now: f64) -> Result<Admit> {
        if let Some((name, limit)) = self.capacity().limits.too_big(tokens) {
            if bounded {
                return Err(too_big(&format!("{:?}", self.id), tokens, name, limit));
            }
        }
        if let Some(backend) = &self.backend {
            if self.limiter.is_limited() {
                let capacity = self.capacity();
                match backend.acquire_tokens(&self.id, capacity, bounded, tokens)? {
                    Some(TokenAdmission::Leased(slot, lease)) => {
                        self.counter(slot).fetch_add(1, Ordering::AcqRel);
                        self.last_updated.store(now);
                        let ticket = Ticket {
                            slot,
                            lease: Some(lease),
                            reservation: None,
                        };
                        return Ok(Admit::Granted(
                            ticket.reserving(self.limiter.hold(tokens, now)),
                        ));
                    }
                    Some(TokenAdmission::Refused) => return Ok(Admit::Full),
                    Some(TokenAdmission::Limited(r)) => return Ok(Admit::Limited(r)),
                    Some(TokenAdmission::FallBack) | None => {}
                }
            }
            return self.acquire_tokens_shared(bounded, tokens, now);
        }
        if !bounded {
            let granted = self.limiter.admit(tokens, false, now, || {
                self.active.fetch_add(1, Ordering::AcqRel);
                Some(Slot::Active)
            });
            self.last_updated.store(now);
            return Ok(match granted {
                Ok(Some((slot, r))) => Admit::Granted(Ticket::local(slot).reserving(r)),
                _ => Admit::Full, // unreachable: unbounded admissions are never refused
            });
        }
        Ok(self.try_admit_tokens(tokens, now))
    }

    /// Shared admission (the backend's limits) — token windows are counted in this process.
    fn acquire_tokens_shared(&self, bounded: bool, tokens: u64, now: f64) -> Result<Admit> {
        let admitted = self.limiter.admit(tokens, bounded, now, || {
            self.acquire_slots(bounded, 1, now)
                .map(|mut t| t.pop())
                .transpose()
        });
        match admitted {
            Ok(Some((Ok(ticket), r))) => Ok(Admit::Granted(ticket.reserving(r))),
            Ok(Some((Err(e), r))) => {
                self.limiter.release(&r);
                Err(e)
            }
            Ok(None) => Ok(Admit::Full),
            Err(refusal) => Ok(Admit::Limited(refusal)),
        }
    }

    /// Up to `n` admissions at once (one round trip with a shared backend); fewer when the
    /// model and its queue fill up. Active slots come first, then queue places.
    pub fn acquire_many(&self, bounded: bool, n: usize, now: f64) -> Result<Vec<Ticket>> {
        if !self.limiter.is_limited() {
            return self.acquire_slots(bounded, n, now);
        }
        // Under RPM/TPM limits each request is one windowed decision.
        let mut tickets = Vec::new();
        for _ in 0..n {
            match self.acquire_tokens(bounded, 0, now) {
                Ok(Admit::Granted(t)) => tickets.push(t),
                Ok(_) => break,
                Err(e) => {
                    self.release_tickets(&tickets, now);
                    return Err(e);
                }
            }
        }
        Ok(tickets)
    }

    /// Slots and queue places only (no token limits): `acquire_many` without limits.
    fn acquire_slots(&self, bounded: bool, n: usize, now: f64) -> Result<Vec<Ticket>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        if let Some(backend) = &self.backend {
            if let Some(granted) = backend.acquire_many(&self.id, self.capacity(), bounded, n)? {
                for (slot, _) in &granted {
                    self.counter(*slot).fetch_add(1, Ordering::AcqRel);
                }
                self.last_updated.store(now);
                let tickets = granted.into_iter().map(|(slot, lease)| Ticket {
                    slot,
                    lease: Some(lease),
                    reservation: None,
                });
                return Ok(tickets.collect());
            }
        }
        if bounded {
            return Ok((0..n)
                .map_while(|_| self.try_admit(now).map(Ticket::local))
                .collect());
        }
        let delta = i64::try_from(n).map_err(|_| Error::invalid("n", "too many requests"))?;
        self.add_active(delta, now)?;
        Ok(vec![Ticket::local(Slot::Active); n])
    }

    /// Gives back what `acquire` took (its lease too).
    pub fn release_ticket(&self, ticket: &Ticket, now: f64) {
        self.release_tickets(std::slice::from_ref(ticket), now);
    }

    /// Gives back many tickets; their shared leases go back in one round trip.
    pub fn release_tickets(&self, tickets: &[Ticket], now: f64) {
        for ticket in tickets {
            self.release(ticket.slot, now);
            if let Some(r) = &ticket.reservation {
                self.limiter.release(r);
            }
        }
        if let Some(backend) = &self.backend {
            let leases: Vec<(Slot, String)> = tickets
                .iter()
                .filter_map(|t| t.lease.clone().map(|lease| (t.slot, lease)))
                .collect();
            if !leases.is_empty() {
                backend.release_many(&self.id, &leases);
            }
        }
    }

    fn counter(&self, slot: Slot) -> &AtomicU64 {
        match slot {
            Slot::Active => &self.active,
            Slot::Queued => &self.queued,
        }
    }

    pub fn snapshot(&self) -> ModelLoad {
        let (active, queued) = self.counts();
        ModelLoad {
            model_id: self.id.clone(),
            active_requests: active,
            queue_depth: queued,
            avg_latency_ms: self.latency_ms(),
            last_updated: self.last_updated(),
            capacity: self.capacity(),
            tokens: self
                .shared_token_load()
                .unwrap_or_else(|| self.limiter.load(self.now())),
        }
    }
}

/// What one admission decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Admit {
    Granted(Ticket),
    /// No slot and no queue place.
    Full,
    /// A token limit (RPM, TPM, tokens in flight) refuses the request now.
    Limited(Refusal),
}

/// The error for a request no window or capacity of the model can ever hold.
pub fn too_big(model: &str, tokens: u64, limit: &str, value: u64) -> Error {
    Error::invalid(
        "tokens",
        format!(
            "a request of {tokens} tokens can never be admitted on {model}: it exceeds its \
             {limit} of {value}"
        ),
    )
}

/// Load of every known model, with staleness.
#[derive(Debug)]
pub struct LoadTracker {
    models: RwLock<HashMap<String, Arc<ModelState>>>,
    stale_after_s: f64,
    clock: SharedClock,
    backend: Option<SharedBackend>,
}

impl LoadTracker {
    /// A tracker whose models share their in-flight counts through `backend`.
    pub fn with_backend(
        stale_after_s: f64,
        clock: SharedClock,
        backend: Option<SharedBackend>,
    ) -> Result<Self> {
        let mut t = LoadTracker::new(stale_after_s, clock)?;
        t.backend = backend;
        Ok(t)
    }

    pub fn backend(&self) -> Option<&SharedBackend> {
        self.backend.as_ref()
    }

    pub fn new(stale_after_s: f64, clock: SharedClock) -> Result<Self> {
        if stale_after_s.is_nan() || stale_after_s <= 0.0 {
            return Err(Error::invalid(
                "stale_after_s",
                format!("must be > 0, got {stale_after_s}"),
            ));
        }
        Ok(LoadTracker {
            models: RwLock::new(HashMap::new()),
            stale_after_s,
            clock,
            backend: None,
        })
    }

    pub fn now(&self) -> f64 {
        self.clock.now()
    }
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }
    pub fn stale_after_s(&self) -> f64 {
        self.stale_after_s
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<ModelState>>> {
        // A panic while holding the lock cannot leave the map half-written (inserts are single
        // calls), so a poisoned lock is still safe to use.
        self.models.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a model or changes its limits; returns its shared state.
    pub fn set_capacity(&self, id: &str, capacity: Capacity) -> Arc<ModelState> {
        let now = self.now();
        if let Some(state) = self.read().get(id) {
            state.set_capacity(capacity, now);
            return state.clone();
        }
        let mut map = self.models.write().unwrap_or_else(|e| e.into_inner());
        map.entry(id.to_string())
            .and_modify(|s| s.set_capacity(capacity, now))
            .or_insert_with(|| {
                let state = ModelState::new(id.to_string(), capacity, now);
                let state = state.with_clock(self.clock.clone());
                Arc::new(state.with_backend(self.backend.clone()))
            })
            .clone()
    }

    pub fn state(&self, id: &str) -> Result<Arc<ModelState>> {
        self.read()
            .get(id)
            .cloned()
            .ok_or_else(|| Error::UnknownModel(id.to_string()))
    }

    pub fn model_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.read().keys().cloned().collect();
        ids.sort();
        ids
    }

    pub fn update_load(&self, id: &str, delta: i64) -> Result<u64> {
        self.state(id)?.add_active(delta, self.now())
    }

    pub fn update_queue(&self, id: &str, delta: i64) -> Result<u64> {
        self.state(id)?.add_queued(delta, self.now())
    }

    /// Old local data is stale unless the shared backend answers for the model (its counts
    /// are live across replicas even when this replica has not touched the model lately).
    pub fn is_stale(&self, state: &ModelState) -> bool {
        if let Some(backend) = state.backend() {
            if backend.counts(&state.id).is_some() {
                return false;
            }
        }
        self.now() - state.last_updated() > self.stale_after_s
    }

    /// None when the model is unknown or its data is older than `stale_after_s`.
    pub fn current_load(&self, id: &str) -> Option<ModelLoad> {
        let state = self.read().get(id).cloned()?;
        (!self.is_stale(&state)).then(|| state.snapshot())
    }

    pub fn is_overloaded(&self, id: &str) -> Result<bool> {
        Ok(self.state(id)?.snapshot().is_overloaded())
    }

    pub fn is_over_target(&self, id: &str) -> Result<bool> {
        Ok(self.state(id)?.snapshot().is_over_target())
    }

    /// Every known model's load, stale or not, sorted by id.
    pub fn snapshot(&self) -> Result<Vec<ModelLoad>> {
        let ids = self.model_ids();
        ids.iter()
            .map(|id| Ok(self.state(id)?.snapshot()))
            .collect()
    }

    /// Feeds one observed latency into the model's EWMA.
    pub fn record_latency(&self, id: &str, latency_ms: f64) -> Result<()> {
        let state = self.state(id)?;
        state.record_latency(crate::perf::check_latency(latency_ms)?, self.now());
        Ok(())
    }

    /// Overwrites the counts given (each >= 0) from an external report, feeds the latency
    /// given into the EWMA, and refreshes `last_updated`. Nothing changes on an error.
    pub fn set_load(
        &self,
        id: &str,
        active_requests: Option<i64>,
        queue_depth: Option<i64>,
        avg_latency_ms: Option<f64>,
    ) -> Result<()> {
        let state = self.state(id)?;
        let count = |field, v: Option<i64>| v.map(|v| non_negative(field, v)).transpose();
        let active = count("active_requests", active_requests)?;
        let queued = count("queue_depth", queue_depth)?;
        let latency = avg_latency_ms.map(crate::perf::check_latency).transpose()?;
        let now = self.now();
        if let Some(l) = latency {
            state.record_latency(l, now);
        }
        state.set_counts(active, queued, now);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
