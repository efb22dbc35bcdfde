//! Retry budget, after Finagle's: retries may add at most `percent` of the recent requests,
//! plus a small floor of `min_per_s` retries per second, so an outage can never multiply the
//! load on a fleet. "Recent" is a sliding window of `ttl_s` seconds in one-second bins.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RetryBudgetConfig {
    /// Retries allowed per request in the window (0.2: at most 20 % extra load).
    pub percent: f64,
    /// Retries allowed per second whatever the traffic, so a quiet fleet can still retry.
    pub min_per_s: f64,
    /// Window length in seconds.
    pub ttl_s: f64,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        RetryBudgetConfig {
            percent: 0.2,
            min_per_s: 10.0,
            ttl_s: 10.0,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Bin {
    second: i64,
    requests: u64,
    retries: u64,
}

/// Thread-safe; every call takes the clock time `now` in seconds.
#[derive(Debug)]
pub struct RetryBudget {
    config: RetryBudgetConfig,
    bins: Mutex<Vec<Bin>>,
    granted: AtomicU64,
    refused: AtomicU64,
}

impl RetryBudget {
    pub fn new(config: RetryBudgetConfig) -> Result<Self> {
        if !(config.percent.is_finite() && (0.0..=100.0).contains(&config.percent)) {
            let reason = format!(
                "must be a finite number in [0, 100], got {}",
                config.percent
            );
            return Err(Error::invalid("retry_percent", reason));
        }
        if !(config.min_per_s.is_finite() && config.min_per_s >= 0.0) {
            let reason = format!("must be a finite number >= 0, got {}", config.min_per_s);
            return Err(Error::invalid("min_retries_per_s", reason));
        }
        if !(config.ttl_s.is_finite() && (1.0..=3600.0).contains(&config.ttl_s)) {
            let reason = format!("must be between 1 and 3600 seconds, got {}", config.ttl_s);
            return Err(Error::invalid("retry_window_s", reason));
        }
        let n = config.ttl_s.ceil() as usize;
        Ok(RetryBudget {
            config,
            bins: Mutex::new(vec![
                Bin {
                    second: i64::MIN,
                    ..Bin::default()
                };
                n
            ]),
            granted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    pub fn config(&self) -> &RetryBudgetConfig {
        &self.config
    }

    fn with_bin<R>(&self, now: f64, f: impl FnOnce(&mut Vec<Bin>, usize) -> R) -> R {
        let mut bins = self.bins.lock().unwrap_or_else(|e| e.into_inner());
        let second = now.floor() as i64;
        let n = bins.len();
        let i = second.rem_euclid(n as i64) as usize;
        if bins[i].second != second {
            bins[i] = Bin {
                second,
                requests: 0,
                retries: 0,
            };
        }
        f(&mut bins, i)
    }

    /// (requests, retries) inside the window ending at `now`.
    fn totals(bins: &[Bin], now: f64) -> (u64, u64) {
        let second = now.floor() as i64;
        let oldest = second - bins.len() as i64 + 1;
        bins.iter()
            .filter(|b| b.second >= oldest && b.second <= second)
            .fold((0, 0), |(q, r), b| (q + b.requests, r + b.retries))
    }

    /// Counts one first attempt (a deposit).
    pub fn record_request(&self, now: f64) {
        self.with_bin(now, |bins, i| bins[i].requests += 1);
    }

    /// Retries still allowed now: `percent × requests + min_per_s × ttl_s − retries`, over the
    /// window (may be fractional; a retry needs at least 1).
    pub fn balance(&self, now: f64) -> f64 {
        self.with_bin(now, |bins, _| {
            let (requests, retries) = Self::totals(bins, now);
            self.config.percent * requests as f64 + self.config.min_per_s * self.config.ttl_s
                - retries as f64
        })
    }

    /// Retries granted and refused (the budget was spent) since the start, for metrics.
    pub fn totals_since_start(&self) -> (u64, u64) {
        (
            self.granted.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }

    /// Takes one retry from the budget; false (nothing taken) when it is spent.
    pub fn try_retry(&self, now: f64) -> bool {
        let granted = self.withdraw(now);
        let counter = if granted {
            &self.granted
        } else {
            &self.refused
        };
        counter.fetch_add(1, Ordering::Relaxed);
        granted
    }

    fn withdraw(&self, now: f64) -> bool {
        self.with_bin(now, |bins, i| {
            let (requests, retries) = Self::totals(bins, now);
            let allowed =
                self.config.percent * requests as f64 + self.config.min_per_s * self.config.ttl_s;
            if (retries as f64) + 1.0 <= allowed {
                bins[i].retries += 1;
                true
            } else {
                false
            }
        })
    }
}
