//! Injectable clocks and the atomic f64 behind lock-free gauges.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::error::{Error, Result};

/// Seconds on some monotonic scale. Injectable so tests move time instead of sleeping.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> f64;
}

/// Seconds since the first use in this process (monotonic).
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> f64 {
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_secs_f64()
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicF64);

impl ManualClock {
    pub fn new(start: f64) -> Self {
        ManualClock(AtomicF64::new(start))
    }
    pub fn set(&self, t: f64) {
        self.0.store(t);
    }
    pub fn advance(&self, dt: f64) {
        self.0.update(|t| t + dt);
    }
    /// `advance`, refusing to go back or to jump by a non-finite amount.
    pub fn try_advance(&self, seconds: f64) -> Result<()> {
        if !(seconds.is_finite() && seconds >= 0.0) {
            let message = format!("must be a finite number >= 0, got {seconds}");
            return Err(Error::invalid("seconds", message));
        }
        self.advance(seconds);
        Ok(())
    }
    /// `set`, refusing a non-finite time (a NaN clock would make every age and rate NaN).
    pub fn try_set(&self, t: f64) -> Result<()> {
        if !t.is_finite() {
            return Err(Error::invalid(
                "t",
                format!("must be a finite number, got {t}"),
            ));
        }
        self.set(t);
        Ok(())
    }
    /// A clock starting at `start`, which must be finite.
    pub fn try_new(start: f64) -> Result<Self> {
        if !start.is_finite() {
            let message = format!("must be a finite number, got {start}");
            return Err(Error::invalid("start", message));
        }
        Ok(ManualClock::new(start))
    }
}

impl Clock for ManualClock {
    fn now(&self) -> f64 {
        self.0.load()
    }
}

pub type SharedClock = Arc<dyn Clock>;

pub fn system_clock() -> SharedClock {
    Arc::new(SystemClock)
}

/// An f64 in an `AtomicU64`, for lock-free gauges.
#[derive(Debug, Default)]
pub struct AtomicF64(AtomicU64);

impl AtomicF64 {
    pub fn new(v: f64) -> Self {
        AtomicF64(AtomicU64::new(v.to_bits()))
    }
    pub fn load(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Acquire))
    }
    pub fn store(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Release);
    }
    pub fn update(&self, f: impl Fn(f64) -> f64) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |bits| {
                Some(f(f64::from_bits(bits)).to_bits())
            });
    }
}
