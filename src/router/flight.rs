//! One request from admission to its end: the `Flight`.
//!
//! The lifecycle, in one place:
//! ```text
//! admit (Router::admit / Flight::begin)   one atomic decision: a slot, a queue place or a refusal
//!   └─ Flight                             owns its ticket (and lease), model, agent, start time
//!        └─ end(outcome)                  exactly once; dropping a Flight ends it as Cancelled
//!             ├─ the slot (or lease) goes back to the LoadTracker
//!             ├─ the latency EWMA the load-aware policies read
//!             └─ PerformanceTracker (per model, per agent) → AdaptiveScorer → the next admit
//! ```
//! Rust callers (the simulator, benches) and the Python `InFlight` go through this one type, so
//! counts and statistics can never drift apart by path.

use std::sync::Arc;

use crate::error::Result;
use crate::health::{Health, Verdict};
use crate::load::{Admit, ModelState, SharedClock, Slot, Ticket};
use crate::perf::{PerformanceTracker, SeriesHandle};

/// How a request ended. `Cancelled` is what a dropped Flight records: its caller went away
/// (exception, task cancellation, garbage collection) before saying how it went. `Failed` is a
/// failure nobody classified; the other kinds say what failed (issue 13's outcomes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    Ok,
    /// 429: the model asked to be left alone for `retry_after_s` (when it said).
    RateLimited {
        retry_after_s: Option<f64>,
    },
    ServerError,
    Timeout,
    /// The prompt did not fit the model's context: the caller's request, not the model.
    ContextLength,
    /// The caller's fault (4xx): never counted against the model.
    ClientError,
    Cancelled,
    Failed,
}

impl Outcome {
    /// The kinds by name: the one list the bindings, the classifier and the stubs read.
    pub const KINDS: [&'static str; 8] = [
        "ok",
        "rate_limited",
        "server_error",
        "timeout",
        "context_length",
        "client_error",
        "cancelled",
        "failed",
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::RateLimited { .. } => "rate_limited",
            Outcome::ServerError => "server_error",
            Outcome::Timeout => "timeout",
            Outcome::ContextLength => "context_length",
            Outcome::ClientError => "client_error",
            Outcome::Cancelled => "cancelled",
            Outcome::Failed => "failed",
        }
    }

    /// An outcome by kind name; `retry_after_s` only goes with `rate_limited`.
    pub fn parse(kind: &str, retry_after_s: Option<f64>) -> crate::error::Result<Self> {
        use crate::error::Error;
        if let Some(r) = retry_after_s {
            if !(r.is_finite() && r >= 0.0) {
                let reason = format!("must be a finite number >= 0, got {r}");
                return Err(Error::invalid("retry_after_s", reason));
            }
            if kind != "rate_limited" {
                let reason = format!("only goes with kind \"rate_limited\", not {kind:?}");
                return Err(Error::invalid("retry_after_s", reason));
            }
        }
        Ok(match kind {
            "ok" => Outcome::Ok,
            "rate_limited" => Outcome::RateLimited { retry_after_s },
            "server_error" => Outcome::ServerError,
            "timeout" => Outcome::Timeout,
            "context_length" => Outcome::ContextLength,
            "client_error" => Outcome::ClientError,
            "cancelled" => Outcome::Cancelled,
            "failed" => Outcome::Failed,
            other => {
                let kinds = Self::KINDS.join(", ");
                let reason = format!("unknown outcome kind {other:?}; expected one of {kinds}");
                return Err(Error::invalid("kind", reason));
            }
        })
    }

    /// A classifier's reading of a failed call: a Retry-After on another kind (a 503's) is
    /// dropped, since only a rate limit takes a model out until then.
    pub fn classified(kind: &str, retry_after_s: Option<f64>) -> crate::error::Result<Self> {
        Self::parse(kind, retry_after_s.filter(|_| kind == "rate_limited"))
    }

    /// What the success rate counts: only `Ok` is a success.
    pub fn is_success(self) -> bool {
        self == Outcome::Ok
    }

    /// The caller's doing (a client error, a prompt too long): the model's statistics and
    /// health are left alone.
    pub fn is_callers(self) -> bool {
        matches!(self, Outcome::ClientError | Outcome::ContextLength)
    }

    /// What the outcome says of the model's health.
    pub fn verdict(self) -> Verdict {
        match self {
            Outcome::Ok => Verdict::Ok,
            Outcome::RateLimited { retry_after_s } => Verdict::RateLimited { retry_after_s },
            Outcome::ServerError | Outcome::Timeout | Outcome::Failed => Verdict::ServerError,
            Outcome::ContextLength | Outcome::ClientError | Outcome::Cancelled => Verdict::Neutral,
        }
    }

    /// `Ok` when the caller reported success, else `Failed`.
    pub fn from_success(success: bool) -> Self {
        if success {
            Outcome::Ok
        } else {
            Outcome::Failed
        }
    }
}

/// Where a finished request's latency and outcome go besides the model's latency EWMA.
#[derive(Clone)]
pub struct Feedback {
    performance: Arc<PerformanceTracker>,
    /// The model's series, so ending a request without an agent hashes no id.
    series: SeriesHandle,
    agent: Option<Arc<str>>,
    /// The router's health of its fleet and this model's index in it.
    health: Option<(Arc<Health>, usize)>,
}

impl Feedback {
    pub fn new(
        performance: Arc<PerformanceTracker>,
        series: SeriesHandle,
        agent: Option<&str>,
    ) -> Self {
        Feedback {
            performance,
            series,
            agent: agent.map(Arc::from),
            health: None,
        }
    }

    /// Also reports each outcome to the fleet's health (ejections, cooldowns, probes).
    pub fn with_health(mut self, health: Arc<Health>, model: usize) -> Self {
        self.health = Some((health, model));
        self
    }

    pub fn agent(&self) -> Option<&str> {
        self.agent.as_deref()
    }

    fn record(&self, model: &str, latency_ms: f64, outcome: Outcome, now: f64) {
        if let Some((health, index)) = &self.health {
            health.observe(*index, outcome.verdict(), now);
        }
        if outcome.is_callers() {
            return; // the caller's doing: not the model's latency or success rate
        }
        let success = outcome.is_success();
        // The Flight measured a finite, non-negative latency: nothing here can be rejected.
        let _ = match &self.agent {
            None => self.series.record_at(latency_ms, success, now),
            Some(agent) => self
                .performance
                .record_at(model, Some(agent), latency_ms, success, now),
        };
    }
}

/// One admitted request. Holds its slot (or queue place, or shared lease) until it ends, which
/// happens exactly once: by `end`, by `end_all`, or by `Drop` (as `Cancelled`).
pub struct Flight {
    state: Arc<ModelState>,
    clock: SharedClock,
    ticket: Ticket,
    started: f64,
    feedback: Option<Feedback>,
    ended: bool,
    /// (prompt, completion) tokens, once reported.
    usage: Option<(u64, u64)>,
    /// Milliseconds from the start to the first token, once the caller saw it (a stream).
    first_token_ms: Option<f64>,
}

/// What ending a Flight measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Landing {
    pub latency_ms: f64,
    pub outcome: Outcome,
    pub ended_at: f64,
}

impl Flight {
    /// A request already admitted under `ticket` (by the router or a batch acquire).
    pub fn admitted(
        state: Arc<ModelState>,
        clock: SharedClock,
        ticket: Ticket,
        feedback: Option<Feedback>,
    ) -> Self {
        let started = clock.now();
        Self::started_at(state, clock, ticket, feedback, started)
    }

    /// `admitted`, started at `started` (a clock reading the caller already has).
    pub fn started_at(
        state: Arc<ModelState>,
        clock: SharedClock,
        ticket: Ticket,
        feedback: Option<Feedback>,
        started: f64,
    ) -> Self {
        Flight {
            state,
            clock,
            ticket,
            started,
            feedback,
            ended: false,
            usage: None,
            first_token_ms: None,
        }
    }

    /// Starts a tracked request on one model: an active slot whatever the limits (a lease with
    /// a shared backend). Fails only when the backend is away and fails closed.
    pub fn begin(
        state: Arc<ModelState>,
        clock: SharedClock,
        feedback: Option<Feedback>,
    ) -> Result<Self> {
        Self::begin_tokens(state, clock, feedback, 0)
    }

    /// `begin` of a request of `tokens`, counted in the model's windows and tokens in flight.
    pub fn begin_tokens(
        state: Arc<ModelState>,
        clock: SharedClock,
        feedback: Option<Feedback>,
        tokens: u64,
    ) -> Result<Self> {
        let now = clock.now();
        let ticket = match state.acquire_tokens(false, tokens, now)? {
            Admit::Granted(ticket) => Some(ticket),
            Admit::Full | Admit::Limited(_) => None,
        };
        let ticket = ticket.ok_or_else(|| {
            // An unbounded acquire always admits; refusing is reported, never a panic.
            crate::error::Error::NoCapacity {
                message: format!("{:?} refused an unbounded request", state.id),
                retry_after_s: 0.0,
            }
        })?;
        // The admission's clock reading is the start: one read, not two.
        Ok(Flight::started_at(state, clock, ticket, feedback, now))
    }

    /// Up to `n` requests of one model admitted at once (one round trip with a shared
    /// backend), slots first, then queue places; fewer when the model fills up.
    pub fn admit_many(
        state: &Arc<ModelState>,
        clock: &SharedClock,
        n: usize,
        feedback: Option<Feedback>,
    ) -> Result<Vec<Flight>> {
        let tickets = state.acquire_many(true, n, clock.now())?;
        Ok(tickets
            .into_iter()
            .map(|t| Flight::admitted(state.clone(), clock.clone(), t, feedback.clone()))
            .collect())
    }

    pub fn model_id(&self) -> &str {
        &self.state.id
    }
    pub fn state(&self) -> &Arc<ModelState> {
        &self.state
    }
    pub fn agent(&self) -> Option<&str> {
        self.feedback.as_ref().and_then(Feedback::agent)
    }
    /// True when the request waits in the model's queue rather than holding a slot.
    pub fn queued(&self) -> bool {
        self.ticket.slot == Slot::Queued
    }
    /// The shared backend's lease; None for in-process counts (or a fail-open admission).
    pub fn lease_id(&self) -> Option<&str> {
        self.ticket.lease.as_deref()
    }
    pub fn started(&self) -> f64 {
        self.started
    }

    /// Tokens this request holds in flight (its reservation, or its usage once reported).
    pub fn tokens(&self) -> u64 {
        self.ticket.reservation.map_or(0, |r| r.tokens)
    }

    /// The request's actual usage, as the provider counts it: the model's TPM window counts
    /// `prompt + completion` instead of the reservation, and so do its tokens in flight until
    /// the end. Also teaches the model's per-token time (see `ModelState::record_usage`).
    pub fn set_usage(&mut self, prompt: u64, completion: u64) {
        let used = prompt.saturating_add(completion);
        let now = self.clock.now();
        let held = self
            .ticket
            .reservation
            .unwrap_or(crate::limits::Reservation {
                tokens: 0,
                seq: 0,
                at: self.started,
            });
        self.ticket.reservation = Some(self.state.limiter().reconcile(held, used, now));
        if let (Some(backend), Some(lease)) = (self.state.backend(), &self.ticket.lease) {
            if self.state.limiter().is_limited() {
                backend.reconcile(&self.state.id, lease, used);
            }
        }
        self.usage = Some((prompt, completion));
    }

    /// The first token (or chunk) of the answer arrived now: the model learns its time to
    /// first token at once, and the per-token time at a successful end with usage. Only the
    /// first report counts; returns the time to first token in ms.
    pub fn first_token(&mut self) -> f64 {
        let ms = ((self.clock.now() - self.started) * 1000.0).max(0.0);
        self.learn_first_token(ms)
    }

    /// `first_token` with a time the caller measured (e.g. a client library's own), in ms
    /// from the request's start; InvalidInput unless finite and ≥ 0.
    pub fn first_token_after(&mut self, ttft_ms: f64) -> crate::error::Result<f64> {
        if !ttft_ms.is_finite() || ttft_ms < 0.0 {
            return Err(crate::error::Error::invalid(
                "ttft_ms",
                format!("must be a finite number of ms >= 0, got {ttft_ms}"),
            ));
        }
        Ok(self.learn_first_token(ttft_ms))
    }

    fn learn_first_token(&mut self, ms: f64) -> f64 {
        if let Some(first) = self.first_token_ms {
            return first;
        }
        self.first_token_ms = Some(ms);
        self.state.record_first_token(ms);
        ms
    }

    /// Milliseconds from the start to the first token; None until `first_token`.
    pub fn time_to_first_token_ms(&self) -> Option<f64> {
        self.first_token_ms
    }

    /// Ends the request: gives the slot back and records latency and outcome.
    pub fn end(mut self, outcome: Outcome) -> Landing {
        let landing = self.land(outcome);
        self.state.release_ticket(&self.ticket, landing.ended_at);
        landing
    }

    /// Ends every flight with `outcome`, giving each model's tickets back together (one round
    /// trip per model with a shared backend). Returns how many it ended.
    pub fn end_all(flights: Vec<Flight>, outcome: Outcome) -> usize {
        let count = flights.len();
        let mut by_model: Vec<(Arc<ModelState>, Vec<Ticket>, f64)> = Vec::new();
        for mut flight in flights {
            let at = flight.land(outcome).ended_at;
            let ticket = flight.ticket.clone();
            match by_model
                .iter_mut()
                .find(|(s, ..)| Arc::ptr_eq(s, &flight.state))
            {
                Some((_, tickets, latest)) => {
                    tickets.push(ticket);
                    *latest = latest.max(at);
                }
                None => by_model.push((flight.state.clone(), vec![ticket], at)),
            }
        }
        for (state, tickets, at) in by_model {
            state.release_tickets(&tickets, at);
        }
        count
    }

    /// Records the end once and marks the flight ended; the caller gives the ticket back.
    fn land(&mut self, outcome: Outcome) -> Landing {
        self.ended = true;
        let now = self.clock.now();
        let latency_ms = ((now - self.started) * 1000.0).max(0.0);
        if !outcome.is_callers() {
            self.state.record_latency(latency_ms, now);
        }
        if let (Some((_, completion)), true) = (self.usage, outcome.is_success()) {
            self.state
                .record_usage(completion, latency_ms, self.first_token_ms);
        }
        if let Some(feedback) = &self.feedback {
            feedback.record(&self.state.id, latency_ms, outcome, now);
        }
        Landing {
            latency_ms,
            outcome,
            ended_at: now,
        }
    }
}

impl std::fmt::Debug for Feedback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feedback")
            .field("agent", &self.agent)
            .finish()
    }
}

impl std::fmt::Debug for Flight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flight")
            .field("model", &self.state.id)
            .field("agent", &self.agent())
            .field("ticket", &self.ticket)
            .field("started", &self.started)
            .field("ended", &self.ended)
            .finish()
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        if !self.ended {
            let at = self.land(Outcome::Cancelled).ended_at;
            self.state.release_ticket(&self.ticket, at);
        }
    }
}
