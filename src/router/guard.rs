//! The `Guard`: a `Flight` that can be shared, entered late and released from any thread,
//! exactly once. The Python `InFlight` (from `track()`, `request()`, `acquire_many()`) is one.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use super::{Feedback, Flight, Outcome, Router};
use crate::error::{Error, Result};
use crate::load::{LoadTracker, ModelState, SharedClock};

/// Most requests one `admit_many` admits: one Lua script holds Redis for the whole batch.
pub const MAX_BATCH: i64 = 10_000;

/// Where a guard is in its life. A pending guard (from `track()`) takes its slot on enter.
enum Phase {
    /// The model, clock, feedback and tokens of a tracked request not yet entered.
    Pending(Arc<ModelState>, SharedClock, Option<Feedback>, u64),
    Flying(Flight),
    Ended,
}

/// One in-flight request: holds an active slot (or queue place) from `enter` (or admission)
/// until `finish`, `release_all` or drop, whichever comes first, exactly once.
pub struct Guard {
    model_id: String,
    phase: Mutex<Phase>,
    /// (queued, lease id), kept once admitted so they still read after the end.
    admitted: OnceLock<(bool, Option<String>)>,
    failed: AtomicBool,
    /// How the caller said it ended (`fail`), which wins over the success flag at release.
    reported: Mutex<Option<Outcome>>,
}

impl Guard {
    /// Takes its slot on `enter`.
    pub fn pending(state: Arc<ModelState>, clock: SharedClock, feedback: Option<Feedback>) -> Self {
        Self::pending_tokens(state, clock, feedback, 0)
    }

    /// `pending` for a request of `tokens` (counted in the model's windows on enter).
    pub fn pending_tokens(
        state: Arc<ModelState>,
        clock: SharedClock,
        feedback: Option<Feedback>,
        tokens: u64,
    ) -> Self {
        let model_id = state.id.clone();
        Self::new(model_id, Phase::Pending(state, clock, feedback, tokens))
    }

    /// Already admitted (by the router or a batch acquire).
    pub fn flying(flight: Flight) -> Self {
        let this = Self::new(flight.model_id().to_string(), Phase::Ended);
        this.note(&flight);
        *this.phase() = Phase::Flying(flight);
        this
    }

    /// A tracked request of one of the tracker's models, without feedback: takes an active
    /// slot on `enter`, whatever the limits.
    pub fn track(tracker: &LoadTracker, model_id: &str, tokens: u64) -> Result<Guard> {
        let state = tracker.state(model_id)?;
        let clock = tracker.clock().clone();
        Ok(Guard::pending_tokens(state, clock, None, tokens))
    }

    /// Up to `n` (at most [`MAX_BATCH`]) requests of one model admitted at once (one round
    /// trip with a shared backend), slots first, then queue places; fewer when it fills up.
    pub fn admit_many(tracker: &LoadTracker, model_id: &str, n: i64) -> Result<Vec<Guard>> {
        if !(0..=MAX_BATCH).contains(&n) {
            let message = format!("must be between 0 and {MAX_BATCH}, got {n}");
            return Err(Error::invalid("n", message));
        }
        let state = tracker.state(model_id)?;
        let flights = Flight::admit_many(&state, tracker.clock(), n as usize, None)?;
        Ok(flights.into_iter().map(Guard::flying).collect())
    }

    fn new(model_id: String, phase: Phase) -> Self {
        Guard {
            model_id,
            phase: Mutex::new(phase),
            admitted: OnceLock::new(),
            failed: AtomicBool::new(false),
            reported: Mutex::new(None),
        }
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        // Phase changes are single assignments: a poisoned lock still holds a whole value.
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn note(&self, flight: &Flight) {
        let lease = flight.lease_id().map(str::to_string);
        let _ = self.admitted.set((flight.queued(), lease));
    }

    pub fn model_id(&self) -> &str {
        &self.model_id
    }
    /// True when the request waits in the model's queue rather than holding a slot.
    pub fn queued(&self) -> bool {
        self.admitted.get().is_some_and(|(queued, _)| *queued)
    }
    /// The lease held in the shared backend; None for in-process counts (or fail-open).
    pub fn lease_id(&self) -> Option<String> {
        self.admitted.get().and_then(|(_, lease)| lease.clone())
    }
    pub fn released(&self) -> bool {
        matches!(*self.phase(), Phase::Ended)
    }
    /// Marks the request failed: it ends as `Failed` whatever success it is released with.
    pub fn mark_failed(&self) {
        self.failed.store(true, Ordering::Release);
    }

    /// Says how the request ended (e.g. `RateLimited` with the provider's Retry-After); the
    /// release then reports that outcome, whatever success it is given.
    pub fn report(&self, outcome: Outcome) {
        *self.reported.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
    }

    /// Takes the slot of a pending guard (a lease round trip with a shared backend). The lock
    /// is held throughout, so a concurrent release waits and then gives the slot back.
    /// Entering twice, or after the end, is a no-op.
    pub fn enter(&self) -> Result<()> {
        let mut phase = self.phase();
        if !matches!(*phase, Phase::Pending(..)) {
            return Ok(());
        }
        let Phase::Pending(state, clock, feedback, tokens) =
            std::mem::replace(&mut *phase, Phase::Ended)
        else {
            return Ok(());
        };
        // On error nothing is held: the guard stays ended, so finishing gives nothing back.
        let flight = Flight::begin_tokens(state, clock, feedback, tokens)?;
        self.note(&flight);
        *phase = Phase::Flying(flight);
        Ok(())
    }

    /// Reports the request's actual usage (see `Flight::set_usage`); a no-op once it ended
    /// or before it entered.
    pub fn set_usage(&self, prompt: u64, completion: u64) {
        if let Phase::Flying(flight) = &mut *self.phase() {
            flight.set_usage(prompt, completion);
        }
    }

    /// The answer's first token arrived now, or (`ttft_ms`) after that many ms as the caller
    /// measured it (see `Flight::first_token`); returns the time to it in ms, None before the
    /// request is admitted or after it ended.
    pub fn first_token(&self, ttft_ms: Option<f64>) -> crate::error::Result<Option<f64>> {
        match &mut *self.phase() {
            Phase::Flying(flight) => match ttft_ms {
                None => Ok(Some(flight.first_token())),
                Some(ms) => flight.first_token_after(ms).map(Some),
            },
            _ => Ok(None),
        }
    }

    /// Tokens the request holds in flight (0 once ended).
    pub fn tokens(&self) -> u64 {
        match &*self.phase() {
            Phase::Flying(flight) => flight.tokens(),
            _ => 0,
        }
    }

    /// The flight, if still flying; the guard is ended from here on.
    fn take(&self) -> Option<Flight> {
        match std::mem::replace(&mut *self.phase(), Phase::Ended) {
            Phase::Flying(flight) => Some(flight),
            _ => None,
        }
    }

    fn outcome(&self, success: bool) -> Outcome {
        if let Some(reported) = self.reported() {
            return reported;
        }
        Outcome::from_success(success && !self.failed.load(Ordering::Acquire))
    }

    /// Ends the request now with `outcome` (idempotent). A reported outcome wins, and an `Ok`
    /// of a request marked failed is `Failed`.
    pub fn finish_with(&self, outcome: Outcome) {
        if let Some(flight) = self.take() {
            let outcome = match outcome {
                Outcome::Ok => self.outcome(true),
                other => self.reported().unwrap_or(other),
            };
            flight.end(outcome);
        }
    }

    fn reported(&self) -> Option<Outcome> {
        *self.reported.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends the request now (idempotent): `Ok` when `success` and not marked failed.
    pub fn finish(&self, success: bool) {
        if let Some(flight) = self.take() {
            flight.end(self.outcome(success));
        }
    }

    /// Ends every guard still in flight, each model's slots going back together (one round
    /// trip per model with a shared backend). Returns how many it ended.
    pub fn release_all(guards: &[&Guard], success: bool) -> usize {
        let mut ended = 0;
        let mut by_kind: Vec<(Outcome, Vec<Flight>)> = Vec::new();
        for (flight, outcome) in guards
            .iter()
            .filter_map(|g| g.take().map(|f| (f, g.outcome(success))))
        {
            match by_kind.iter_mut().find(|(o, _)| *o == outcome) {
                Some((_, flights)) => flights.push(flight),
                None => by_kind.push((outcome, vec![flight])),
            }
        }
        for (outcome, flights) in by_kind {
            ended += Flight::end_all(flights, outcome);
        }
        ended
    }
}

/// `InFlight('m', state='in flight')` (or `'not entered'`, `'released'`): the Python repr.
impl fmt::Display for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match *self.phase() {
            Phase::Pending(..) => "not entered",
            Phase::Flying(_) => "in flight",
            Phase::Ended => "released",
        };
        write!(
            f,
            "InFlight({}, state={})",
            crate::display::py_str(&self.model_id),
            crate::display::py_str(phase)
        )
    }
}

impl Router {
    /// A tracked request of one of the router's models: takes an active slot on `enter`,
    /// whatever the limits, and records its latency and outcome (under `agent`, if any).
    pub fn guard(&self, model_id: &str, agent: Option<&str>, tokens: u64) -> Result<Guard> {
        let j = self.model_index(model_id)?;
        let clock = self.tracker().clock().clone();
        let feedback = Some(self.feedback(j, agent));
        Ok(Guard::pending_tokens(
            self.state(j).clone(),
            clock,
            feedback,
            tokens,
        ))
    }
}
