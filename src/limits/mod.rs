//! Token-aware limits of one model: requests per minute, tokens per minute (exact sliding 60-s
//! windows, see [`window`]) and tokens in flight (what a self-hosted server's KV cache holds).
//!
//! A [`Limiter`] lives in each `ModelState`. With no limit set it costs one relaxed atomic read
//! per admission. With limits, each admission checks and records under the model's lock, while
//! routing reads lock-free cached figures (re-read under the lock only once an entry may have
//! left the window), so a router deciding over many models stays fast.
//!
//! Accounting of one request: at admission it records 1 request and its *reserved* tokens
//! (prompt + max output, as providers estimate) in the windows and holds them in flight; its
//! usage, once known (`reconcile`), replaces the reservation in the TPM window (as providers
//! count) and in flight; at its end the tokens in flight go back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::load::AtomicF64;

pub mod quota;
pub mod timing;
pub mod window;
pub use quota::{Quota, Spend};
pub use timing::TokenTiming;
pub use window::{Window, MERGE_S, WINDOW_S};

/// A model's token-aware limits; None = unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Limits {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub max_tokens_in_flight: Option<u64>,
}

/// Names of the limits, the one list (bindings, REST, messages).
pub const LIMIT_NAMES: [&str; 3] = ["rpm", "tpm", "max_tokens_in_flight"];

impl Limits {
    pub const NONE: Limits = Limits {
        rpm: None,
        tpm: None,
        max_tokens_in_flight: None,
    };

    /// Limits as Python passes them: each None or an integer >= 1.
    pub fn new(
        rpm: Option<i64>,
        tpm: Option<i64>,
        max_tokens_in_flight: Option<i64>,
    ) -> Result<Self> {
        let check = |field: &str, v: Option<i64>| -> Result<Option<u64>> {
            match v {
                None => Ok(None),
                Some(v) if v >= 1 => Ok(Some(v as u64)),
                Some(v) => Err(Error::invalid(
                    field,
                    format!("must be None (unlimited) or >= 1, got {v}"),
                )),
            }
        };
        Ok(Limits {
            rpm: check("rpm", rpm)?,
            tpm: check("tpm", tpm)?,
            max_tokens_in_flight: check("max_tokens_in_flight", max_tokens_in_flight)?,
        })
    }

    pub fn is_unlimited(&self) -> bool {
        *self == Limits::NONE
    }

    /// The limit a request of `tokens` can never fit under, if any: (name, limit).
    pub fn too_big(&self, tokens: u64) -> Option<(&'static str, u64)> {
        [
            ("tpm", self.tpm),
            ("max_tokens_in_flight", self.max_tokens_in_flight),
        ]
        .into_iter()
        .find_map(|(name, limit)| limit.filter(|&l| tokens > l).map(|l| (name, l)))
    }

    /// The highest of the token-side fractions in use (0 without limits): tokens in flight of
    /// `max_tokens_in_flight`, the RPM window of `rpm`, the TPM window of `tpm`.
    pub fn fraction(&self, load: &TokenLoad) -> f64 {
        let part = |used: u64, limit: Option<u64>| limit.map_or(0.0, |l| used as f64 / l as f64);
        part(load.in_flight, self.max_tokens_in_flight)
            .max(part(load.requests_in_window, self.rpm))
            .max(part(load.tokens_in_window, self.tpm))
    }
}

/// The size of one request: `tokens` reserved (prompt + max output) and the output tokens
/// expected (what `predictive` prices with the model's per-token time; 0 = unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Demand {
    pub tokens: u64,
    pub output_tokens: u64,
}

impl Demand {
    /// A request of `prompt_tokens` that may write `max_output_tokens`: both are reserved.
    pub fn request(prompt_tokens: u64, max_output_tokens: u64) -> Self {
        Demand {
            tokens: prompt_tokens.saturating_add(max_output_tokens),
            output_tokens: max_output_tokens,
        }
    }

    pub fn tokens(tokens: u64) -> Self {
        Demand {
            tokens,
            output_tokens: 0,
        }
    }
}

/// Token-side load of one model now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct TokenLoad {
    pub in_flight: u64,
    pub requests_in_window: u64,
    pub tokens_in_window: u64,
}

/// The input error for a token count given by a caller (`field` names it).
pub fn tokens_arg(field: &str, value: i64) -> Result<u64> {
    u64::try_from(value)
        .map_err(|_| Error::invalid(field, format!("must be an integer >= 0, got {value}")))
}

/// What a request holds in its model's limiter: its tokens in flight and where it was
/// recorded in the windows (for reconciliation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reservation {
    pub tokens: u64,
    pub seq: u64,
    pub at: f64,
}

/// Why the limits refuse a request now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Refusal {
    pub limit: &'static str,
    /// Seconds until the window frees enough; NaN for tokens in flight (they free when
    /// requests end, which only the latency estimate can guess).
    pub retry_after_s: f64,
}

#[derive(Debug, Default)]
struct Windows {
    requests: Window,
    tokens: Window,
    seq: u64,
}

/// The limits and accounts of one model.
#[derive(Debug, Default)]
pub struct Limiter {
    /// rpm, tpm, max_tokens_in_flight; 0 = unlimited (a limit is >= 1). Atomics, so routing
    /// reads them without a lock.
    limits: [AtomicU64; 3],
    /// True when some limit is set: without one, admission takes no lock.
    limited: std::sync::atomic::AtomicBool,
    windows: Mutex<Windows>,
    in_flight: AtomicU64,
    /// Lock-free reading of the windows for routing, refreshed at every change.
    cached_requests: AtomicU64,
    cached_tokens: AtomicU64,
    /// When the oldest entry of either window expires (+inf when empty): before then the
    /// cached figures are exact upper bounds.
    next_expiry: AtomicF64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Critical sections leave whole values; a poisoned lock still holds a consistent one.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Limiter {
    pub fn new(limits: Limits) -> Self {
        let l = Limiter {
            next_expiry: AtomicF64::new(f64::INFINITY),
            ..Limiter::default()
        };
        l.set_limits(limits);
        l
    }

    pub fn limits(&self) -> Limits {
        let get = |k: usize| Some(self.limits[k].load(Ordering::Acquire)).filter(|v| *v > 0);
        Limits {
            rpm: get(0),
            tpm: get(1),
            max_tokens_in_flight: get(2),
        }
    }

    pub fn set_limits(&self, limits: Limits) {
        let _w = lock(&self.windows);
        let values = [limits.rpm, limits.tpm, limits.max_tokens_in_flight];
        for (slot, v) in self.limits.iter().zip(values) {
            slot.store(v.unwrap_or(0), Ordering::Release);
        }
        self.limited
            .store(!limits.is_unlimited(), Ordering::Release);
    }

    pub fn is_limited(&self) -> bool {
        self.limited.load(Ordering::Acquire)
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Token-side load now (windows purged when an entry may have expired).
    pub fn load(&self, now: f64) -> TokenLoad {
        if now >= self.next_expiry.load() {
            let mut w = lock(&self.windows);
            self.purge(&mut w, now);
        }
        TokenLoad {
            in_flight: self.in_flight(),
            requests_in_window: self.cached_requests.load(Ordering::Acquire),
            tokens_in_window: self.cached_tokens.load(Ordering::Acquire),
        }
    }

    fn purge(&self, w: &mut Windows, now: f64) {
        w.requests.purge(now);
        w.tokens.purge(now);
        self.publish(w);
    }

    fn publish(&self, w: &Windows) {
        self.cached_requests
            .store(w.requests.sum(), Ordering::Release);
        self.cached_tokens.store(w.tokens.sum(), Ordering::Release);
        let next = w.requests.next_expiry().min(w.tokens.next_expiry());
        self.next_expiry.store(next);
    }

    /// Why a request of `tokens` would be refused now, if it would (a routing estimate; the
    /// admission decides under the lock).
    pub fn check(&self, tokens: u64, now: f64) -> Option<Refusal> {
        if !self.is_limited() {
            return None;
        }
        self.check_load(&self.load(now), tokens, now)
    }

    /// `check` given a reading of `load` taken at `now`.
    pub fn check_load(&self, load: &TokenLoad, tokens: u64, now: f64) -> Option<Refusal> {
        let limits = self.limits();
        let over = |used: u64, extra: u64, limit: Option<u64>| {
            limit.is_some_and(|l| used.saturating_add(extra) > l)
        };
        let blocked = over(load.requests_in_window, 1, limits.rpm)
            || over(load.tokens_in_window, tokens, limits.tpm)
            || over(load.in_flight, tokens, limits.max_tokens_in_flight);
        if !blocked {
            return None;
        }
        let w = lock(&self.windows);
        Self::refusal(&limits, &w, self.in_flight(), tokens, now)
    }

    /// The refusal of a request of `tokens` under the lock; None when everything fits.
    fn refusal(
        limits: &Limits,
        w: &Windows,
        in_flight: u64,
        tokens: u64,
        now: f64,
    ) -> Option<Refusal> {
        let mut worst: Option<Refusal> = None;
        let mut note = |limit, wait: f64| {
            // The longest known wait wins; an unknown one (NaN) only when nothing else blocks.
            if worst.is_none_or(|r| r.retry_after_s.is_nan() || wait > r.retry_after_s) {
                worst = Some(Refusal {
                    limit,
                    retry_after_s: wait,
                });
            }
        };
        if let Some(rpm) = limits.rpm {
            if !w.requests.fits(1, rpm) {
                note("rpm", w.requests.wait_s(1, rpm, now));
            }
        }
        if let Some(tpm) = limits.tpm {
            if !w.tokens.fits(tokens, tpm) {
                note("tpm", w.tokens.wait_s(tokens, tpm, now));
            }
        }
        if let Some(max) = limits.max_tokens_in_flight {
            if in_flight.saturating_add(tokens) > max {
                note("max_tokens_in_flight", f64::NAN);
            }
        }
        worst
    }

    /// Admits a request of `tokens` in one atomic step with `take_slot` (the concurrency and
    /// queue decision): the limits are checked and recorded under the lock only if the slot
    /// was granted, so nothing is ever recorded for a refused request. `bounded = false`
    /// records whatever the limits (a tracked request the caller already sent).
    pub fn admit<T>(
        &self,
        tokens: u64,
        bounded: bool,
        now: f64,
        take_slot: impl FnOnce() -> Option<T>,
    ) -> std::result::Result<Option<(T, Reservation)>, Refusal> {
        if !self.is_limited() {
            let Some(slot) = take_slot() else {
                return Ok(None);
            };
            self.in_flight.fetch_add(tokens, Ordering::AcqRel);
            let reservation = Reservation {
                tokens,
                seq: 0,
                at: now,
            };
            return Ok(Some((slot, reservation)));
        }
        let limits = self.limits();
        let mut w = lock(&self.windows);
        self.purge(&mut w, now);
        if bounded {
            if let Some(refusal) = Self::refusal(&limits, &w, self.in_flight(), tokens, now) {
                return Err(refusal);
            }
        }
        let Some(slot) = take_slot() else {
            return Ok(None);
        };
        w.seq += 1;
        let seq = w.seq;
        let at = w.requests.record(1, now, seq);
        w.tokens.record(tokens, now, seq);
        self.in_flight.fetch_add(tokens, Ordering::AcqRel);
        self.publish(&w);
        Ok(Some((slot, Reservation { tokens, seq, at })))
    }

    /// Holds `tokens` in flight for a request admitted elsewhere (a shared backend that
    /// enforces the windows itself).
    pub fn hold(&self, tokens: u64, now: f64) -> Reservation {
        self.in_flight.fetch_add(tokens, Ordering::AcqRel);
        Reservation {
            tokens,
            seq: 0,
            at: now,
        }
    }

    /// Usage reported for an admitted request: the TPM window counts `used` instead of what
    /// was reserved, and the tokens in flight become `used`. Returns the new reservation.
    pub fn reconcile(&self, r: Reservation, used: u64, now: f64) -> Reservation {
        let delta = used as i64 - r.tokens as i64;
        if delta == 0 {
            return r;
        }
        if self.is_limited() && r.seq > 0 {
            let mut w = lock(&self.windows);
            w.tokens.adjust(r.seq, r.at, delta, now);
            self.publish(&w);
        }
        self.add_in_flight(delta);
        Reservation { tokens: used, ..r }
    }

    fn add_in_flight(&self, delta: i64) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.saturating_add_signed(delta))
            });
    }

    /// Gives the request's tokens in flight back (its window entries stay for 60 s).
    pub fn release(&self, r: &Reservation) {
        if r.tokens > 0 {
            self.add_in_flight(-(r.tokens as i64));
        }
    }

    /// How many entries the windows hold (bounded: see `window`).
    pub fn entries(&self) -> usize {
        let w = lock(&self.windows);
        w.requests.len() + w.tokens.len()
    }
}

#[cfg(test)]
mod tests;
