//! Discrete-event simulator of requests routed to a fleet: Poisson arrivals from a weighted
//! agent mix, capability scores from `cost_matrix`, per-request routing by
//! `balancer::choose` on live load (active, queued, observed latency), FIFO queues, service
//! times drawn per model, client retries after `NoCapacity`. One run per policy over the same
//! request stream (same arrival times, agents and request sizes), so policies differ only in
//! where they send work.
//!
//! Outcomes of a request: completed, an *overload failure* (sent to a model with neither a free
//! slot nor queue room, or started above the model's hidden `fail_above` limit), *rejected*
//! (no eligible model, or still no capacity after `max_retries` retries), or *failed* (its last
//! call failed from an injected fault). The four add up to the request count.
//!
//! **Faults.** A model may list `faults`, each over a window `[from_s, to_s)` of simulated time
//! and judged when a call *starts* (a queued call meets the faults of its start time):
//! `outage` (every call fails after `fail_after_ms`, default 0: refused; longer: a time-out),
//! `errors` (a call fails with probability `error_rate`, after `fail_after_ms` or by default its
//! own service time), `rate_limit` (a call is answered 429 with probability `error_rate`,
//! default 1, after `fail_after_ms`, default 0, with an optional `retry_after_s`), `slowdown`
//! (service times × `factor` ≥ 1). Slowdowns apply first; then the first failing fault in
//! scenario order decides. A failed call holds its slot until it fails and does not feed the
//! observed latency.
//!
//! **Failure handling** (`failure_handling`; by default all three when any model has faults,
//! else only `none`), one run per policy and mode, keyed `policy` / `policy+eject` /
//! `policy+eject_retry`:
//! - `none`: a failed call fails its request.
//! - `eject`: one core [`crate::health::Health`] per run (default settings; its clock in
//!   seconds = simulated ms / 1000) hears every call's end (ok, server error, 429 with its
//!   Retry-After); before each choice, models it does not make available get
//!   `Candidate.accepting = false`, as in the live router, and the chosen one's probe is
//!   claimed. A failed call still fails its request.
//! - `eject_retry`: also, a call failed by an injected fault (not an overload failure, which
//!   the router's own load rules cause) is retried at once on another model (the failed one is
//!   passed over unless no other feasible model accepts) while the request has retries left
//!   (`max_retries`, shared with no-capacity retries) and the core
//!   [`crate::health::RetryBudget`] (20 % of the requests + 10 per second over 10 s), which
//!   hears every arrival, allows it. The request's latency includes its failed calls.
//!
//! *Wasted calls* are the calls that failed (injected faults, retried or not, and overload
//! failures); `failure_retries` the retries after failed calls; `success_rate` completed /
//! requests. Every mode of a policy draws the same random numbers, and faults draw from their
//! own stream, so a fault outside its window changes nothing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use crate::balancer::Policy;
use crate::capability::cost_matrix;
use crate::error::{parse_choice, Error, Result};

mod engine;
mod raw;
mod report;
mod scenario;
#[cfg(test)]
mod tests;
pub mod tokens;

pub use report::{
    escape_html, percentile, percentiles, run_name, thousands, PolicyResult, PolicySummary,
    SimulationReport,
};
pub use scenario::{
    Fault, FaultKind, Handling, Scenario, ServiceTime, SimAgent, SimModel, MAX_REQUESTS,
};

/// Reports progress at most once per whole percent and carries a cancellation request back to
/// the runs.
pub(crate) struct Ticker<'a> {
    total: u64,
    done: AtomicU64,
    last_percent: Mutex<u64>,
    cancelled: AtomicBool,
    callback: &'a (dyn Fn(f64) -> bool + Sync),
}

impl Ticker<'_> {
    /// Records `n` more routed arrivals; false once the callback asked to stop.
    fn advance(&self, n: u64) -> bool {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        let percent = done.saturating_mul(100) / self.total.max(1);
        // A poisoned lock only means another run's callback panicked; keep counting.
        let mut last = self.last_percent.lock().unwrap_or_else(|e| e.into_inner());
        if percent > *last {
            *last = percent;
            if !(self.callback)(done as f64 / self.total.max(1) as f64) {
                self.cancelled.store(true, Ordering::Relaxed);
            }
        }
        !self.cancelled.load(Ordering::Relaxed)
    }
}

/// Why [`simulate_reporting`] returned without a report.
#[derive(Debug)]
pub enum Stopped<E> {
    /// The progress callback failed (the runs were cancelled); its error.
    Caller(E),
    /// The scenario could not be simulated.
    Error(Error),
    /// A run panicked.
    Panicked,
}

/// Runs [`simulate_with_progress`] on a worker thread and hands every progress fraction to
/// `report` on the calling thread, so that a caller tied to its own thread (an interpreter
/// whose callbacks and signals belong there) handles each one itself. The first error from
/// `report` cancels the runs and is returned.
pub fn simulate_reporting<E>(
    scenario: &Scenario,
    policies: &[Policy],
    mut report: impl FnMut(f64) -> std::result::Result<(), E>,
) -> std::result::Result<SimulationReport, Stopped<E>> {
    let (tx, rx) = std::sync::mpsc::channel::<f64>();
    let stop = AtomicBool::new(false);
    let mut failure = None;
    let outcome = std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            let tx = tx;
            simulate_with_progress(scenario, policies, &|fraction| {
                // A closed channel only means the caller stopped listening.
                let _ = tx.send(fraction);
                !stop.load(Ordering::Relaxed)
            })
        });
        for fraction in rx {
            if failure.is_none() {
                if let Err(e) = report(fraction) {
                    failure = Some(e);
                    stop.store(true, Ordering::Relaxed);
                }
            }
        }
        worker.join()
    });
    if let Some(e) = failure {
        return Err(Stopped::Caller(e));
    }
    // Stopping early happens only when `report` failed, and that error was returned.
    match outcome {
        Ok(Ok((report, _))) => Ok(report),
        Ok(Err(e)) => Err(Stopped::Error(e)),
        Err(_) => Err(Stopped::Panicked),
    }
}

/// Policy names as the caller gave them (`field` names the argument): `None` means every
/// policy; an empty list or an unknown name is an input error that lists the valid names.
pub fn parse_policies(field: &str, names: Option<&[String]>) -> Result<Vec<Policy>> {
    let Some(names) = names else {
        return Ok(Policy::ALL.to_vec());
    };
    if names.is_empty() {
        return Err(Error::invalid(field, "must name at least one policy"));
    }
    names
        .iter()
        .map(|n| parse_choice(field, "policy", n, &Policy::ALL, Policy::name))
        .collect()
}

/// Runs every policy (in parallel, each deterministic given the scenario's seed) with no
/// progress reporting.
pub fn simulate(scenario: &Scenario, policies: &[Policy]) -> Result<SimulationReport> {
    simulate_with_progress(scenario, policies, &|_| true).map(|r| r.0)
}

/// Like [`simulate`], calling `progress(fraction)` at most about a hundred times; when it
/// returns false the runs stop early and the second value is false (results are partial).
pub fn simulate_with_progress(
    scenario: &Scenario,
    policies: &[Policy],
    progress: &(dyn Fn(f64) -> bool + Sync),
) -> Result<(SimulationReport, bool)> {
    let mut unique: Vec<Policy> = Vec::with_capacity(policies.len());
    for &p in policies {
        if !unique.contains(&p) {
            unique.push(p);
        }
    }
    let agents: Vec<_> = scenario.agents.iter().map(|a| &a.profile).collect();
    let models: Vec<_> = scenario.models.iter().map(|m| &m.profile).collect();
    let scores = cost_matrix(&agents, &models, &scenario.weights)?
        .into_iter()
        .map(|c| {
            if c.is_finite() {
                1.0 - c
            } else {
                f64::NEG_INFINITY
            }
        })
        .collect();
    let cumulative = scenario
        .agents
        .iter()
        .scan(0.0, |sum, a| {
            *sum += a.weight;
            Some(*sum)
        })
        .collect();
    let ring = scenario.affinity.map(|a| {
        let ids: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
        let keys = (0..a.sessions).map(|s| format!("session-{s}")).collect();
        (crate::router::affinity::Ring::new(&ids), keys)
    });
    let prep = engine::Prepared {
        scenario,
        scores,
        cumulative,
        ring,
    };
    let runs: Vec<(Policy, Handling)> = unique
        .iter()
        .flat_map(|&p| scenario.failure_handling.iter().map(move |&h| (p, h)))
        .collect();
    let ticker = Ticker {
        total: scenario.requests.saturating_mul(runs.len() as u64),
        done: AtomicU64::new(0),
        last_percent: Mutex::new(0),
        cancelled: AtomicBool::new(false),
        callback: progress,
    };
    let results = runs
        .par_iter()
        .map(|&(p, h)| engine::run(&prep, p, h, &ticker))
        .collect();
    let report = SimulationReport {
        description: scenario.description.clone(),
        model_ids: models.iter().map(|m| m.id.clone()).collect(),
        requests: scenario.requests,
        seed: scenario.seed,
        results,
    };
    Ok((report, !ticker.cancelled.load(Ordering::Relaxed)))
}
