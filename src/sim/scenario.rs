//! The simulated world, read from JSON: a fleet with service-time laws and capacities, a
//! weighted agent mix and a Poisson request stream. Every error names the file and the field
//! path (`scenarios/x.json: models[1].service.median_ms: missing field`).

use std::path::Path;

use super::raw;
use super::tokens::{Affinity, AgentTokens, QuotaAdmission, TraceRow};
use crate::balancer::BalancerConfig;
use crate::capability::{AgentProfile, ModelProfile, ScoreWeights};
use crate::error::{Error, Result};

/// Every latency is kept for exact percentiles: this bounds the memory of one run (~400 MB).
pub const MAX_REQUESTS: u64 = 50_000_000;

/// How long one request occupies a slot on a model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ServiceTime {
    /// `median_ms · exp(sigma · Z)`: the heavy right tail of LLM response times.
    LogNormal { median_ms: f64, sigma: f64 },
    /// Memoryless, mean `mean_ms`: the M/M/c law the oracle tests need.
    Exponential { mean_ms: f64 },
    /// Always `ms`: for hand-checked tests.
    Deterministic { ms: f64 },
}

impl ServiceTime {
    /// Service time from a request's own draws: `u` uniform in [0, 1), `z` standard normal.
    /// Drawing them with the arrival gives every policy the same request sizes.
    #[inline]
    pub fn sample(&self, u: f64, z: f64) -> f64 {
        match *self {
            ServiceTime::LogNormal { median_ms, sigma } => median_ms * (sigma * z).exp(),
            ServiceTime::Exponential { mean_ms } => -mean_ms * (1.0 - u).ln(),
            ServiceTime::Deterministic { ms } => ms,
        }
    }

    pub fn mean_ms(&self) -> f64 {
        match *self {
            ServiceTime::LogNormal { median_ms, sigma } => median_ms * (sigma * sigma / 2.0).exp(),
            ServiceTime::Exponential { mean_ms } => mean_ms,
            ServiceTime::Deterministic { ms } => ms,
        }
    }
}

/// A deployment in the simulation: what the router sees plus what it cannot.
#[derive(Debug, Clone, PartialEq)]
pub struct SimModel {
    pub profile: ModelProfile,
    pub service: ServiceTime,
    /// The deployment's real limit when lower than it advertises; hidden from the router. A
    /// request started while this many are active fails.
    pub fail_above: Option<u64>,
    /// Injected faults, each active over its own window of simulated time.
    pub faults: Vec<Fault>,
    /// Generation time per output token: a call takes its service time (the time to first
    /// token) plus output tokens × this.
    pub ms_per_output_token: f64,
}

/// What an injected fault does to the calls that start inside its window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FaultKind {
    /// Every call fails (a server error) after `fail_after_ms`: 0 is a refused connection, a
    /// longer time a call that hangs until the client's time-out.
    Outage { fail_after_ms: f64 },
    /// Each call fails with probability `error_rate`, after `fail_after_ms` (None: after its
    /// own service time, a 5xx at the end of the work).
    Errors {
        error_rate: f64,
        fail_after_ms: Option<f64>,
    },
    /// Each call is answered 429 with probability `error_rate`, after `fail_after_ms`, with a
    /// `Retry-After` of `retry_after_s` (None: no header).
    RateLimit {
        error_rate: f64,
        retry_after_s: Option<f64>,
        fail_after_ms: f64,
    },
    /// Service times are multiplied by `factor` (>= 1).
    Slowdown { factor: f64 },
}

/// A fault of one model from `from_ms` (inclusive) to `to_ms` (exclusive), simulated time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fault {
    pub kind: FaultKind,
    pub from_ms: f64,
    pub to_ms: f64,
}

impl Fault {
    pub fn active(&self, now_ms: f64) -> bool {
        self.from_ms <= now_ms && now_ms < self.to_ms
    }
}

/// How the simulated client and router deal with failed calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Handling {
    /// A failed call fails its request; health is not tracked.
    None,
    /// The core `Health` (outlier ejection, 429 cooldowns, half-open probes) takes models out
    /// of routing; a failed call still fails its request.
    Eject,
    /// Ejection, and a failed call is retried at once on another model while the core
    /// `RetryBudget` allows it.
    EjectRetry,
}

impl Handling {
    pub const ALL: [Handling; 3] = [Handling::None, Handling::Eject, Handling::EjectRetry];

    pub fn name(self) -> &'static str {
        match self {
            Handling::None => "none",
            Handling::Eject => "eject",
            Handling::EjectRetry => "eject_retry",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimAgent {
    pub profile: AgentProfile,
    /// Share of the request stream, relative to the other agents.
    pub weight: f64,
    /// Prompt and output lengths of its requests; None = no tokens (unless a trace sizes them).
    pub tokens: Option<AgentTokens>,
}

/// A validated scenario; build one with [`Scenario::from_json`] or field by field in tests.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub description: String,
    pub requests: u64,
    pub arrival_rate_per_s: f64,
    pub seed: u64,
    /// `NoCapacity` answers a client retries before it gives up (then counted as rejected).
    pub max_retries: u32,
    /// Smoothing of the per-model observed latency the predictive policy reads.
    pub latency_ewma_alpha: f64,
    pub balancer: BalancerConfig,
    pub weights: ScoreWeights,
    pub models: Vec<SimModel>,
    pub agents: Vec<SimAgent>,
    /// Failure-handling modes each policy runs under (by default all three when any model has
    /// a fault, else only `None`).
    pub failure_handling: Vec<Handling>,
    /// What the router enforces of the models' `rpm`/`tpm` quotas (which their providers
    /// enforce anyway, answering 429).
    pub admission: QuotaAdmission,
    /// Replayed arrivals and sizes (the first `requests` rows); None = Poisson arrivals.
    pub trace: Option<Vec<TraceRow>>,
    /// Sessions and cache affinity; None = requests have no session.
    pub affinity: Option<Affinity>,
}

impl Scenario {
    /// Reads and validates a scenario file; errors start with the path.
    pub fn from_file(path: &Path) -> Result<Scenario> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            raw::bad(
                &source,
                "path",
                format!("cannot read the scenario file ({e})"),
            )
        })?;
        Scenario::from_json(&text, &source)
    }

    /// Parses scenario JSON; `source` (a path, or the argument name) starts every error.
    pub fn from_json(text: &str, source: &str) -> Result<Scenario> {
        raw::parse(text, source)
    }

    /// Replays the trace CSV at `path` (Azure's columns), arrivals `rate_scale` times as fast;
    /// the run covers its rows (at most `requests` of them).
    pub fn set_trace(&mut self, path: &Path, rate_scale: f64) -> Result<()> {
        let rows = super::tokens::read_trace(path, rate_scale)?;
        self.requests = self.requests.min(rows.len() as u64).max(1);
        self.trace = Some(rows);
        Ok(())
    }

    /// Overrides the request count (the `requests=` argument); 0 or more than
    /// [`MAX_REQUESTS`] is an input error naming `requests`.
    pub fn set_requests(&mut self, requests: u64) -> Result<()> {
        if requests == 0 || requests > MAX_REQUESTS {
            let reason = format!("must be in 1..={MAX_REQUESTS}, got {requests}");
            return Err(Error::invalid("requests", reason));
        }
        self.requests = requests;
        Ok(())
    }
}
