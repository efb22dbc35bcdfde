//! The simulated world, read from JSON: a fleet with service-time laws and capacities, a
//! weighted agent mix and a Poisson request stream. Every error names the file and the field
//! path (`scenarios/x.json: models[1].service.median_ms: missing field`).

use std::path::Path;

use super::raw;
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
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimAgent {
    pub profile: AgentProfile,
    /// Share of the request stream, relative to the other agents.
    pub weight: f64,
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
