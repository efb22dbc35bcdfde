//! A caller's own quota (an API key's, a tenant's): RPM, TPM and tokens in flight over the same
//! exact windows as a model's [`Limiter`], with no concurrency slot. The REST service keeps one
//! per API key, so that no single client can spend the fleet's quota.

use std::sync::{Arc, Mutex};

use super::{Limiter, Limits, Reservation, TokenLoad};
use crate::error::{Error, Result};
use crate::load::SharedClock;

/// One caller's limits and accounts. Thread-safe.
#[derive(Debug)]
pub struct Quota {
    limiter: Limiter,
    clock: SharedClock,
}

/// What one admitted request holds of its quota until released (or dropped).
#[derive(Debug)]
pub struct Spend {
    quota: Arc<Quota>,
    held: Mutex<Option<Reservation>>,
}

impl Quota {
    pub fn new(limits: Limits, clock: SharedClock) -> Self {
        Quota {
            limiter: Limiter::new(limits),
            clock,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limiter.limits()
    }

    pub fn load(&self) -> TokenLoad {
        self.limiter.load(self.clock.now())
    }

    /// Admits a request of `tokens` (prompt + max output) against the windows, or refuses it:
    /// `NoCapacity` with the seconds until the windows free enough, or an input error when it
    /// could never fit (above the TPM or the tokens-in-flight limit).
    pub fn admit(self: &Arc<Self>, tokens: u64) -> Result<Spend> {
        if let Some((limit, value)) = self.limits().too_big(tokens) {
            let reason =
                format!("a request of {tokens} tokens exceeds the quota's {limit} of {value}");
            return Err(Error::invalid("tokens", reason));
        }
        match self
            .limiter
            .admit(tokens, true, self.clock.now(), || Some(()))
        {
            Ok(Some(((), reservation))) => Ok(Spend {
                quota: Arc::clone(self),
                held: Mutex::new(Some(reservation)),
            }),
            Ok(None) => unreachable!("a quota takes no slot"),
            Err(refusal) => {
                // Tokens in flight free when requests end: no window says when.
                let wait = if refusal.retry_after_s.is_finite() {
                    refusal.retry_after_s
                } else {
                    1.0
                };
                Err(Error::NoCapacity {
                    message: format!("the caller's {} quota is spent for now", refusal.limit),
                    retry_after_s: wait,
                })
            }
        }
    }
}

impl Spend {
    fn held(&self) -> std::sync::MutexGuard<'_, Option<Reservation>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the provider counted: the TPM window and tokens in flight take `used` instead.
    pub fn reconcile(&self, used: u64) {
        let mut held = self.held();
        if let Some(r) = held.take() {
            *held = Some(
                self.quota
                    .limiter
                    .reconcile(r, used, self.quota.clock.now()),
            );
        }
    }

    /// Gives the tokens in flight back (the window entries stay for 60 s); idempotent.
    pub fn release(&self) {
        if let Some(r) = self.held().take() {
            self.quota.limiter.release(&r);
        }
    }
}

impl Drop for Spend {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::ManualClock;

    fn quota(limits: Limits) -> (Arc<Quota>, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(0.0));
        (Arc::new(Quota::new(limits, clock.clone())), clock)
    }

    #[test]
    fn rpm_is_exact_at_the_window_boundary() {
        let (q, clock) = quota(Limits::new(Some(3), None, None).unwrap());
        let spends: Vec<_> = (0..3).map(|_| q.admit(0).unwrap()).collect();
        let Err(Error::NoCapacity { retry_after_s, .. }) = q.admit(0) else {
            panic!("the fourth request in the minute must be refused");
        };
        assert!((retry_after_s - 60.0).abs() < 1e-6);
        drop(spends);
        clock.set(59.999);
        assert!(q.admit(0).is_err());
        clock.set(60.0005); // past MERGE_S: the first entries have left the window
        assert!(q.admit(0).is_ok());
    }

    #[test]
    fn tokens_reconcile_and_release() {
        let (q, _) = quota(Limits::new(None, Some(100), Some(50)).unwrap());
        let a = q.admit(40).unwrap();
        assert!(matches!(q.admit(20), Err(Error::NoCapacity { .. }))); // 60 in flight > 50
        a.reconcile(10);
        let b = q.admit(20).unwrap();
        assert_eq!(q.load().tokens_in_window, 30);
        assert_eq!(q.load().in_flight, 30);
        a.release();
        a.release(); // idempotent
        drop(b);
        assert_eq!(q.load().in_flight, 0);
        assert!(matches!(q.admit(101), Err(Error::InvalidInput { .. })));
    }

    #[test]
    fn threads_racing_never_overshoot_the_tpm() {
        let (q, _) = quota(Limits::new(None, Some(1000), None).unwrap());
        let admitted: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|_| {
                    let q = &q;
                    s.spawn(move || {
                        (0..50)
                            .filter_map(|_| q.admit(7).ok().map(std::mem::forget))
                            .count() as u64
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(admitted, 1000 / 7);
    }
}
