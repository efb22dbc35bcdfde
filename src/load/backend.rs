//! Where in-flight counts live when several router replicas share them (e.g. Redis, see
//! `crate::shared`). Without a backend a `ModelState` counts in its own atomics.

use std::fmt;

use super::{Capacity, Slot};
use crate::error::Result;

/// What a replica does when the shared backend cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Admit against this process's own counts and record a fail-open event.
    Open,
    /// Refuse with `Error::BackendUnavailable`.
    Closed,
}

impl FailMode {
    pub fn name(self) -> &'static str {
        match self {
            FailMode::Open => "open",
            FailMode::Closed => "closed",
        }
    }
}

impl std::str::FromStr for FailMode {
    type Err = crate::error::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "open" => Ok(FailMode::Open),
            "closed" => Ok(FailMode::Closed),
            other => Err(crate::error::Error::invalid(
                "fail_mode",
                format!("expected \"open\" or \"closed\", got {other:?}"),
            )),
        }
    }
}

/// The answer of a shared admission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Admitted in the backend under this lease.
    Leased(Slot, String),
    /// The model and its queue are full across every replica.
    Refused,
    /// The backend is unreachable and the fail mode is open: admit locally.
    FallBack,
}

/// Health and counters of a shared backend, for alerts and dashboards.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendStatus {
    pub backend: String,
    pub available: bool,
    pub fail_mode: FailMode,
    pub lease_ttl_s: f64,
    pub held_leases: u64,
    /// Admissions made on local counts because the backend was unreachable.
    pub fail_open_events: u64,
    /// Failed round trips of any kind.
    pub errors: u64,
    /// Held leases found expired on renewal (e.g. the backend was away longer than the TTL).
    pub lost_leases: u64,
    pub last_error: Option<String>,
}

/// Shared in-flight counts. Errors are `Error::BackendUnavailable` (fail closed) only.
pub trait LoadBackend: Send + Sync + fmt::Debug {
    /// Admits one request atomically across replicas; `bounded = false` counts it whatever
    /// the limits (tracked requests, routing without load balancing).
    fn acquire(&self, model: &str, capacity: Capacity, bounded: bool) -> Result<Admission>;
    /// Gives a lease back; idempotent, never fails (an unreachable backend lets it expire).
    fn release(&self, model: &str, slot: Slot, lease: &str);
    /// (active, queued) across replicas; None when the backend is unreachable.
    fn counts(&self, model: &str) -> Option<(u64, u64)>;
    fn status(&self) -> BackendStatus;
}

/// What an admitted request holds: its counter and, with a shared backend, its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub slot: Slot,
    pub lease: Option<String>,
}

impl Ticket {
    pub fn local(slot: Slot) -> Self {
        Ticket { slot, lease: None }
    }
}
