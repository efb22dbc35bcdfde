//! Health per model: outlier ejection and cooldowns, after Envoy's outlier detection.
//!
//! - **Consecutive errors**: `consecutive_errors` server errors in a row (5xx, timeouts,
//!   unclassified failures) eject the model.
//! - **Failure rate**: at the end of each `interval_s`, a model with at least `min_requests`
//!   outcomes in that interval and a failure share above `failure_rate` is ejected.
//! - **Ejection time** = `base_ejection_s` × how many times it was ejected, capped at
//!   `max_ejection_s`; the multiplier goes down by one for each `interval_s` it then stays
//!   healthy (Envoy's decrement).
//! - **Cooldown**: a rate-limited answer (429) takes the model out until its `Retry-After`
//!   (`default_cooldown_s` when none was given), without counting as an ejection.
//! - **Half-open**: when an ejection or cooldown ends, one request at a time probes the model;
//!   its outcome decides (ok: healthy again; an error: ejected again).
//! - **Max ejection share**: at most `max_ejection_percent` of the fleet is ejected at once
//!   (at least one model may be), and **panic**: when fewer than `panic_threshold` of the models
//!   are available, health is ignored and every model is used, so the fleet is never emptied.
//!
//! Client errors and context-length errors are the caller's, never counted against the model.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;

use crate::error::{Error, Result};

mod budget;
pub use budget::{RetryBudget, RetryBudgetConfig};

/// How a request ended, as far as the model's health is concerned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    Ok,
    /// 5xx, timeouts, connection errors and unclassified failures.
    ServerError,
    /// 429: out until `retry_after_s` (None: the configured default).
    RateLimited {
        retry_after_s: Option<f64>,
    },
    /// The caller's fault (4xx, context length, cancellation): no effect on health.
    Neutral,
}

/// The settings, with Envoy-like defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HealthConfig {
    pub consecutive_errors: u32,
    pub interval_s: f64,
    pub failure_rate: f64,
    pub min_requests: u32,
    pub base_ejection_s: f64,
    pub max_ejection_s: f64,
    pub max_ejection_percent: f64,
    pub panic_threshold: f64,
    pub default_cooldown_s: f64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            consecutive_errors: 5,
            interval_s: 10.0,
            failure_rate: 0.5,
            min_requests: 20,
            base_ejection_s: 30.0,
            max_ejection_s: 300.0,
            max_ejection_percent: 0.5,
            panic_threshold: 0.5,
            default_cooldown_s: 1.0,
        }
    }
}

impl HealthConfig {
    /// The settings by name, for callers that pass them as a mapping (the bindings).
    pub const NAMES: [&'static str; 9] = [
        "consecutive_errors",
        "interval_s",
        "failure_rate",
        "min_requests",
        "base_ejection_s",
        "max_ejection_s",
        "max_ejection_percent",
        "panic_threshold",
        "default_cooldown_s",
    ];

    /// Sets one setting by name (validated as a whole by `validate`).
    pub fn set(&mut self, name: &str, value: f64) -> Result<()> {
        let count = |v: f64| -> Result<u32> {
            if v.fract() == 0.0 && (0.0..=1e9).contains(&v) {
                Ok(v as u32)
            } else {
                Err(Error::invalid(
                    name,
                    format!("must be a whole number >= 0, got {v}"),
                ))
            }
        };
        match name {
            "consecutive_errors" => self.consecutive_errors = count(value)?,
            "interval_s" => self.interval_s = value,
            "failure_rate" => self.failure_rate = value,
            "min_requests" => self.min_requests = count(value)?,
            "base_ejection_s" => self.base_ejection_s = value,
            "max_ejection_s" => self.max_ejection_s = value,
            "max_ejection_percent" => self.max_ejection_percent = value,
            "panic_threshold" => self.panic_threshold = value,
            "default_cooldown_s" => self.default_cooldown_s = value,
            other => {
                let names = Self::NAMES.join(", ");
                let reason = format!("unknown setting {other:?}; expected one of {names}");
                return Err(Error::invalid("health", reason));
            }
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<()> {
        let positive = |field: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::invalid(
                    field,
                    format!("must be a finite number > 0, got {v}"),
                ))
            }
        };
        let share = |field: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::invalid(field, format!("must be in [0, 1], got {v}")))
            }
        };
        if self.consecutive_errors == 0 {
            return Err(Error::invalid("consecutive_errors", "must be >= 1"));
        }
        positive("interval_s", self.interval_s)?;
        positive("base_ejection_s", self.base_ejection_s)?;
        positive("max_ejection_s", self.max_ejection_s)?;
        positive("default_cooldown_s", self.default_cooldown_s)?;
        share("failure_rate", self.failure_rate)?;
        share("max_ejection_percent", self.max_ejection_percent)?;
        share("panic_threshold", self.panic_threshold)?;
        if self.max_ejection_s < self.base_ejection_s {
            return Err(Error::invalid(
                "max_ejection_s",
                "must be >= base_ejection_s",
            ));
        }
        Ok(())
    }
}

/// Where a model stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Healthy,
    Ejected,
    CoolingDown,
    /// Out time over: one request at a time may probe it.
    Probing,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Healthy => "healthy",
            State::Ejected => "ejected",
            State::CoolingDown => "cooling_down",
            State::Probing => "probing",
        }
    }
}

/// A reading of one model's health.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelHealth {
    pub state: State,
    /// Clock time the state began.
    pub since: f64,
    /// When an ejection or cooldown ends (None otherwise).
    pub until: Option<f64>,
    pub reason: Option<String>,
    pub ejections: u32,
    pub consecutive_errors: u32,
}

#[derive(Debug)]
struct Entry {
    view: ModelHealth,
    /// Ejection multiplier (Envoy's): +1 per ejection, −1 per healthy interval.
    multiplier: u32,
    /// When the multiplier was last brought down, or the model returned.
    healthy_from: f64,
    interval_start: f64,
    interval_ok: u32,
    interval_bad: u32,
    probe_in_flight: bool,
}

/// Health of a fixed fleet (by model index). Thread-safe; every method takes `now`.
#[derive(Debug)]
pub struct Health {
    config: HealthConfig,
    entries: Vec<Mutex<Entry>>,
    /// Models not healthy now: while zero, routing asks nothing else (no locks, no clock).
    unhealthy: AtomicUsize,
    /// Models ejected now. Reserved atomically under the ejecting model's lock, so concurrent
    /// failures on different models cannot eject more than `eject_cap` between them.
    ejected: AtomicUsize,
    eject_cap: usize,
}

fn lock(m: &Mutex<Entry>) -> MutexGuard<'_, Entry> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Health {
    pub fn new(models: usize, config: HealthConfig, now: f64) -> Result<Self> {
        config.validate()?;
        let entry = || {
            Mutex::new(Entry {
                view: ModelHealth {
                    state: State::Healthy,
                    since: now,
                    until: None,
                    reason: None,
                    ejections: 0,
                    consecutive_errors: 0,
                },
                multiplier: 0,
                healthy_from: now,
                interval_start: now,
                interval_ok: 0,
                interval_bad: 0,
                probe_in_flight: false,
            })
        };
        Ok(Health {
            entries: (0..models).map(|_| entry()).collect(),
            unhealthy: AtomicUsize::new(0),
            ejected: AtomicUsize::new(0),
            eject_cap: ((config.max_ejection_percent * models as f64).floor() as usize).max(1),
            config,
        })
    }

    /// True while every model is healthy: the common case costs one atomic load.
    pub fn all_healthy(&self) -> bool {
        self.unhealthy.load(Ordering::Acquire) == 0
    }

    pub fn config(&self) -> &HealthConfig {
        &self.config
    }

    /// Moves timed states on: an ejection or cooldown whose time is over becomes a probe.
    fn tick(&self, e: &mut Entry, now: f64) {
        if matches!(e.view.state, State::Ejected | State::CoolingDown)
            && e.view.until.is_some_and(|u| now >= u)
        {
            if e.view.state == State::Ejected {
                self.ejected.fetch_sub(1, Ordering::AcqRel);
            }
            e.view.state = State::Probing;
            e.view.since = now;
            e.view.until = None;
            e.probe_in_flight = false;
        }
        if e.view.state == State::Healthy && e.multiplier > 0 {
            let healthy_intervals = ((now - e.healthy_from) / self.config.interval_s).floor();
            if healthy_intervals >= 1.0 {
                let down = (healthy_intervals as u32).min(e.multiplier);
                e.multiplier -= down;
                e.healthy_from += f64::from(down) * self.config.interval_s;
            }
        }
    }

    pub fn of(&self, model: usize, now: f64) -> ModelHealth {
        let mut e = lock(&self.entries[model]);
        self.tick(&mut e, now);
        e.view.clone()
    }

    /// Which models may take a request now (in model order): healthy ones, and probing ones
    /// with no probe in flight. In panic (too few available) every model may.
    pub fn available(&self, now: f64) -> Vec<bool> {
        let open: Vec<bool> = self
            .entries
            .iter()
            .map(|m| {
                let mut e = lock(m);
                self.tick(&mut e, now);
                match e.view.state {
                    State::Healthy => true,
                    State::Probing => !e.probe_in_flight,
                    State::Ejected | State::CoolingDown => false,
                }
            })
            .collect();
        let n = open.len();
        let count = open.iter().filter(|&&o| o).count();
        if n > 0 && (count as f64) < self.config.panic_threshold * n as f64 {
            return vec![true; n]; // panic: health is ignored rather than the fleet emptied
        }
        open
    }

    /// The earliest time an unavailable model comes back (for retry hints); None if none is out.
    pub fn earliest_return(&self, now: f64) -> Option<f64> {
        self.entries
            .iter()
            .filter_map(|m| {
                let mut e = lock(m);
                self.tick(&mut e, now);
                e.view.until
            })
            .reduce(f64::min)
    }

    /// Claims the probe of a probing model for one admitted request; false if another request
    /// holds it. Healthy models need no claim.
    pub fn claim(&self, model: usize, now: f64) -> bool {
        let mut e = lock(&self.entries[model]);
        self.tick(&mut e, now);
        match e.view.state {
            State::Probing if e.probe_in_flight => false,
            State::Probing => {
                e.probe_in_flight = true;
                true
            }
            _ => true,
        }
    }

    /// Takes one of the ejection slots; false when the share is used up.
    fn reserve_ejection(&self) -> bool {
        self.ejected
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.eject_cap).then_some(n + 1)
            })
            .is_ok()
    }

    /// Records one outcome of `model` at `now`; returns the new state when it changed.
    pub fn observe(&self, model: usize, verdict: Verdict, now: f64) -> Option<State> {
        if matches!(verdict, Verdict::ServerError)
            && self.ejected.load(Ordering::Acquire) >= self.eject_cap
        {
            // The share looks used up: ejections whose time is over free their slot first.
            for m in &self.entries {
                self.tick(&mut lock(m), now);
            }
        }
        let mut e = lock(&self.entries[model]);
        self.tick(&mut e, now);
        let before = e.view.state;
        if now - e.interval_start >= self.config.interval_s {
            e.interval_start = now;
            e.interval_ok = 0;
            e.interval_bad = 0;
        }
        match verdict {
            Verdict::Neutral => e.probe_in_flight = false, // a probe that proved nothing
            Verdict::Ok => {
                e.interval_ok += 1;
                e.view.consecutive_errors = 0;
                if e.view.state == State::Probing {
                    e.view.state = State::Healthy;
                    e.view.since = now;
                    e.view.reason = None;
                    e.healthy_from = now;
                    e.probe_in_flight = false;
                }
            }
            Verdict::RateLimited { retry_after_s } => {
                let wait = retry_after_s.unwrap_or(self.config.default_cooldown_s);
                if e.view.state == State::Ejected {
                    self.ejected.fetch_sub(1, Ordering::AcqRel);
                }
                e.view.state = State::CoolingDown;
                e.view.since = now;
                e.view.until = Some(now + wait.max(0.0));
                e.view.reason = Some("rate limited (429)".into());
                e.probe_in_flight = false;
            }
            Verdict::ServerError => {
                e.interval_bad += 1;
                e.view.consecutive_errors += 1;
                let total = e.interval_ok + e.interval_bad;
                let reason = if e.view.state == State::Probing {
                    Some("the probe after an ejection failed".to_string())
                } else if e.view.consecutive_errors >= self.config.consecutive_errors {
                    Some(format!("{} consecutive errors", e.view.consecutive_errors))
                } else if total >= self.config.min_requests
                    && f64::from(e.interval_bad) > self.config.failure_rate * f64::from(total)
                {
                    Some(format!("{} of {} requests failed", e.interval_bad, total))
                } else {
                    None
                };
                if let Some(reason) = reason {
                    if e.view.state != State::Ejected && self.reserve_ejection() {
                        e.multiplier += 1;
                        e.view.ejections += 1;
                        let out = (self.config.base_ejection_s * f64::from(e.multiplier))
                            .min(self.config.max_ejection_s);
                        e.view.state = State::Ejected;
                        e.view.since = now;
                        e.view.until = Some(now + out);
                        e.view.reason = Some(reason);
                        e.view.consecutive_errors = 0;
                        e.probe_in_flight = false;
                        e.interval_ok = 0;
                        e.interval_bad = 0;
                    }
                }
                // Not ejected (the share is used up): the next request may probe again.
                e.probe_in_flight = false;
            }
        }
        let after = e.view.state;
        if (before == State::Healthy) != (after == State::Healthy) {
            if after == State::Healthy {
                self.unhealthy.fetch_sub(1, Ordering::AcqRel);
            } else {
                self.unhealthy.fetch_add(1, Ordering::AcqRel);
            }
        }
        (after != before).then_some(after)
    }
}

#[cfg(test)]
impl Health {
    /// Every model's view plus the two counters, all read under every lock at once (taken in
    /// model order; no other path holds two entry locks), so concurrent tests see one instant.
    fn snapshot(&self) -> (Vec<ModelHealth>, usize, usize) {
        let guards: Vec<_> = self.entries.iter().map(lock).collect();
        (
            guards.iter().map(|e| e.view.clone()).collect(),
            self.unhealthy.load(Ordering::Acquire),
            self.ejected.load(Ordering::Acquire),
        )
    }
}

#[cfg(test)]
mod tests;
