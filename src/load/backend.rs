//! Where in-flight counts live when several router replicas share them (e.g. Redis, see
//! `crate::redis_backend`). Without a backend a `ModelState` counts in its own atomics.

use std::fmt;

use serde::Serialize;

use super::{Capacity, Slot};
use crate::error::Result;
use crate::limits::{Refusal, Reservation};

/// What a replica does when the shared backend cannot be reached. Serializes as its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Admit against this process's own counts and record a fail-open event.
    Open,
    /// Refuse with `Error::BackendUnavailable`.
    Closed,
}

impl FailMode {
    pub const ALL: [FailMode; 2] = [FailMode::Open, FailMode::Closed];

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
        crate::error::parse_choice("fail_mode", "fail mode", s, &FailMode::ALL, FailMode::name)
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

/// The answer of a shared token-aware admission (`LoadBackend::acquire_tokens`).
#[derive(Debug, Clone, PartialEq)]
pub enum TokenAdmission {
    Leased(Slot, String),
    /// The model and its queue are full across every replica.
    Refused,
    /// A shared RPM, TPM or tokens-in-flight limit refuses it now.
    Limited(Refusal),
    /// The backend is unreachable and the fail mode is open: admit locally.
    FallBack,
}

/// Health and counters of a shared backend, for alerts and dashboards. Serializes as the
/// Python `LoadTracker.backend_status()` dict.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    /// Releases (and timed-out acquisitions) waiting for the backend to answer again.
    pub pending_releases: u64,
    /// Deferred releases dropped past the bound (their leases expire within one TTL).
    pub lost_releases: u64,
    pub last_error: Option<String>,
}

/// Shared in-flight counts. Errors are `Error::BackendUnavailable` (fail closed) only.
pub trait LoadBackend: Send + Sync + fmt::Debug {
    /// Admits one request atomically across replicas; `bounded = false` counts it whatever
    /// the limits (tracked requests, routing without load balancing).
    fn acquire(&self, model: &str, capacity: Capacity, bounded: bool) -> Result<Admission>;
    /// Gives a lease back; idempotent, never fails (an unreachable backend lets it expire).
    fn release(&self, model: &str, slot: Slot, lease: &str);
    /// Admits up to `n` requests in one step (Redis: one round trip); refused ones are left
    /// out. None: the backend is unreachable and fails open, so the caller admits locally.
    fn acquire_many(
        &self,
        model: &str,
        capacity: Capacity,
        bounded: bool,
        n: usize,
    ) -> Result<Option<Vec<(Slot, String)>>> {
        let mut granted = Vec::new();
        for _ in 0..n {
            match self.acquire(model, capacity, bounded) {
                Ok(Admission::Leased(slot, lease)) => granted.push((slot, lease)),
                Ok(Admission::Refused) => break,
                Ok(Admission::FallBack) if granted.is_empty() => return Ok(None),
                Ok(Admission::FallBack) => break,
                Err(e) => {
                    // All or nothing on error: nothing may stay leased that nobody holds.
                    self.release_many(model, &granted);
                    return Err(e);
                }
            }
        }
        Ok(Some(granted))
    }
    /// Gives many leases of one model back in one step (Redis: one round trip).
    fn release_many(&self, model: &str, leases: &[(Slot, String)]) {
        for (slot, lease) in leases {
            self.release(model, *slot, lease);
        }
    }
    /// Admits one request of `tokens` atomically across replicas under the model's RPM, TPM
    /// and tokens-in-flight limits (`capacity.limits`) as well. None: this backend does not
    /// share token limits (the caller then enforces them in-process).
    fn acquire_tokens(
        &self,
        _model: &str,
        _capacity: Capacity,
        _bounded: bool,
        _tokens: u64,
    ) -> Result<Option<TokenAdmission>> {
        Ok(None)
    }
    /// Counts `used` tokens for the request under `lease` in the shared TPM window and tokens
    /// in flight (best effort).
    fn reconcile(&self, _model: &str, _lease: &str, _used: u64) {}
    /// (requests in window, tokens in window, tokens in flight) across replicas, when shared.
    fn token_counts(&self, _model: &str) -> Option<(u64, u64, u64)> {
        None
    }
    /// (active, queued) across replicas; None when the backend is unreachable.
    fn counts(&self, model: &str) -> Option<(u64, u64)>;
    /// Drops any short-lived cache of `counts`, so the next reading is the backend's own.
    fn refresh_counts(&self) {}
    fn status(&self) -> BackendStatus;
}

/// What an admitted request holds: its counter, with a shared backend its lease, and its
/// tokens in the model's limiter.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticket {
    pub slot: Slot,
    pub lease: Option<String>,
    pub reservation: Option<Reservation>,
}

impl Ticket {
    pub fn local(slot: Slot) -> Self {
        Ticket {
            slot,
            lease: None,
            reservation: None,
        }
    }

    /// The ticket holding `reservation` in its model's limiter (none when it holds nothing:
    /// no tokens and no window entry).
    pub fn reserving(self, reservation: Reservation) -> Self {
        let holds = reservation.tokens > 0 || reservation.seq > 0;
        Ticket {
            reservation: holds.then_some(reservation),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::error::Error;
    use crate::load::{LoadTracker, ManualClock};

    /// A backend answering from a script of canned replies.
    #[derive(Debug, Default)]
    struct Fake {
        replies: Mutex<Vec<Result<Admission>>>,
        released: Mutex<Vec<String>>,
        counts: Option<(u64, u64)>,
    }

    impl LoadBackend for Fake {
        fn acquire(&self, _: &str, _: Capacity, _: bool) -> Result<Admission> {
            self.replies.lock().unwrap().remove(0)
        }
        fn release(&self, _: &str, _: Slot, lease: &str) {
            self.released.lock().unwrap().push(lease.to_string());
        }
        fn counts(&self, _: &str) -> Option<(u64, u64)> {
            self.counts
        }
        fn status(&self) -> BackendStatus {
            unimplemented!()
        }
    }

    #[test]
    fn models_admit_through_the_backend_and_fall_back_locally() {
        let fake = Arc::new(Fake {
            replies: Mutex::new(vec![
                Ok(Admission::Leased(Slot::Active, "l1".into())),
                Ok(Admission::Refused),
                Ok(Admission::FallBack),
                Ok(Admission::FallBack),
                Err(Error::BackendUnavailable("down".into())),
            ]),
            counts: Some((7, 1)),
            ..Fake::default()
        });
        let clock = Arc::new(ManualClock::new(0.0));
        let t = LoadTracker::with_backend(60.0, clock.clone(), Some(fake.clone())).unwrap();
        let s = t.set_capacity("m", Capacity::new(1, 0, 1.0).unwrap());
        let leased = s.acquire(true, 0.0).unwrap().unwrap();
        assert_eq!(leased.lease.as_deref(), Some("l1"));
        assert_eq!(s.acquire(true, 0.0).unwrap(), None);
        // Falling back, the local count (which includes the leased request) is the limit.
        assert_eq!(s.acquire(true, 0.0).unwrap(), None);
        assert_eq!(
            s.acquire(false, 0.0).unwrap(),
            Some(Ticket::local(Slot::Active))
        );
        assert!(matches!(
            s.acquire(true, 0.0),
            Err(Error::BackendUnavailable(_))
        ));
        assert_eq!((s.local_active(), s.counts()), (2, (7, 1)));
        s.release_ticket(&leased, 0.0);
        assert_eq!(*fake.released.lock().unwrap(), ["l1"]);
        // Shared counts are live: never stale while the backend answers.
        clock.advance(600.0);
        assert_eq!(t.current_load("m").unwrap().active_requests, 7);
    }

    #[test]
    fn batches_lease_until_refused_and_give_back_in_one_call() {
        let fake = Arc::new(Fake {
            replies: Mutex::new(vec![
                Ok(Admission::Leased(Slot::Active, "l1".into())),
                Ok(Admission::Leased(Slot::Queued, "l2".into())),
                Ok(Admission::Refused),
                Ok(Admission::Leased(Slot::Active, "l3".into())),
                Err(Error::BackendUnavailable("down".into())),
                Ok(Admission::FallBack),
            ]),
            ..Fake::default()
        });
        let clock = Arc::new(ManualClock::new(0.0));
        let t = LoadTracker::with_backend(60.0, clock, Some(fake.clone())).unwrap();
        let s = t.set_capacity("m", Capacity::new(2, 0, 1.0).unwrap());
        let batch = s.acquire_many(true, 5, 0.0).unwrap();
        let leases: Vec<_> = batch.iter().map(|t| t.lease.as_deref().unwrap()).collect();
        assert_eq!(leases, ["l1", "l2"]);
        assert_eq!((s.local_active(), s.counts().1), (1, 1));
        // A failure mid-batch gives back what the batch had leased, and holds nothing.
        assert!(matches!(
            s.acquire_many(true, 2, 0.0),
            Err(Error::BackendUnavailable(_))
        ));
        assert_eq!(*fake.released.lock().unwrap(), ["l3"]);
        // Failing open, the batch is admitted on local counts (1 of 2 slots already held).
        assert_eq!(
            s.acquire_many(true, 3, 0.0).unwrap(),
            [Ticket::local(Slot::Active)]
        );
        s.release_tickets(&batch, 0.0);
        assert_eq!(*fake.released.lock().unwrap(), ["l3", "l1", "l2"]);
        assert_eq!(s.local_active(), 1);
    }
}
