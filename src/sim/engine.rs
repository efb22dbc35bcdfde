//! One policy's run: an event loop over a min-heap of completions and client retries, with
//! arrivals generated lazily in time order. Every request is routed by `balancer::choose` on
//! the live state, so what is measured is what the router does.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

use rand::{rngs::SmallRng, Rng, SeedableRng};

use super::report::PolicyResult;
use super::scenario::{Scenario, ServiceTime};
use super::Ticker;
use crate::balancer::{choose, Candidate, Decision, Policy};

/// A client waits at least this long before retrying, so a zero hint cannot spin.
const MIN_RETRY_MS: f64 = 1.0;

/// What the run needs from the scenario, computed once and shared by every policy.
pub(super) struct Prepared<'a> {
    pub scenario: &'a Scenario,
    /// `scores[agent * n_models + model]`, −inf where the agent cannot use the model.
    pub scores: Vec<f64>,
    /// Running sums of the agent weights, for drawing an agent by binary search.
    pub cumulative: Vec<f64>,
}

/// One request as the arrival stream made it; `u` and `z` fix its size on any model.
#[derive(Clone, Copy)]
struct Request {
    agent: u32,
    arrival_ms: f64,
    u: f64,
    z: f64,
}

enum Kind {
    Done {
        model: u32,
        arrival_ms: f64,
        service_ms: f64,
    },
    Retry {
        request: Request,
        attempts: u32,
    },
}

struct Event {
    time: f64,
    /// Insertion order: equal times pop first-in first-out, so runs are reproducible.
    seq: u64,
    kind: Kind,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Event {
    /// Reversed, so that `BinaryHeap` pops the earliest event.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .time
            .total_cmp(&self.time)
            .then(other.seq.cmp(&self.seq))
    }
}

/// SplitMix64: independent seeds for the separate random streams of one run.
pub(super) fn stream_seed(seed: u64, stream: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The request stream, identical for every policy (common random numbers).
struct Arrivals {
    rng: SmallRng,
    mean_gap_ms: f64,
    spare_normal: Option<f64>,
}

impl Arrivals {
    fn gap(&mut self) -> f64 {
        -self.mean_gap_ms * (1.0 - self.rng.random::<f64>()).ln()
    }

    /// Box–Muller; the second normal of each pair is kept for the next request.
    fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare_normal.take() {
            return z;
        }
        let r = (-2.0 * (1.0 - self.rng.random::<f64>()).ln()).sqrt();
        let theta = std::f64::consts::TAU * self.rng.random::<f64>();
        self.spare_normal = Some(r * theta.sin());
        r * theta.cos()
    }

    fn request(&mut self, arrival_ms: f64, cumulative: &[f64]) -> Request {
        let total = cumulative[cumulative.len() - 1];
        let x = self.rng.random::<f64>() * total;
        let agent = cumulative
            .partition_point(|&c| c <= x)
            .min(cumulative.len() - 1);
        let u = self.rng.random::<f64>();
        let z = self.normal();
        Request {
            agent: agent as u32,
            arrival_ms,
            u,
            z,
        }
    }
}

struct ModelState {
    active: u64,
    /// Waiting requests: (arrival time, service time on this model).
    queue: VecDeque<(f64, f64)>,
    /// Observed service latency (EWMA), NaN until the first completion.
    latency_ms: f64,
    /// Simulated time of that observation.
    latency_at: f64,
    busy_area: f64,
    last_change: f64,
}

struct Sim<'a> {
    prep: &'a Prepared<'a>,
    policy: Policy,
    rng: SmallRng,
    models: Vec<ModelState>,
    cands: Vec<Candidate>,
    heap: BinaryHeap<Event>,
    seq: u64,
    latencies: Vec<f64>,
    overload_failures: u64,
    rejected: u64,
    retries: u64,
    max_queue: u64,
}

impl Sim<'_> {
    fn push(&mut self, time: f64, kind: Kind) {
        self.seq += 1;
        self.heap.push(Event {
            time,
            seq: self.seq,
            kind,
        });
    }

    fn set_active(&mut self, j: usize, now: f64, delta: i64) {
        let m = &mut self.models[j];
        m.busy_area += m.active as f64 * (now - m.last_change);
        m.last_change = now;
        m.active = m.active.wrapping_add_signed(delta);
    }

    fn service(&self, j: usize, r: &Request) -> f64 {
        let law: ServiceTime = self.prep.scenario.models[j].service;
        law.sample(r.u, r.z)
    }

    /// Starts a request now, unless the deployment breaks above its hidden limit.
    fn start(&mut self, j: usize, now: f64, arrival_ms: f64, service_ms: f64) {
        if let Some(limit) = self.prep.scenario.models[j].fail_above {
            if self.models[j].active >= limit {
                self.overload_failures += 1;
                return;
            }
        }
        self.set_active(j, now, 1);
        let done = Kind::Done {
            model: j as u32,
            arrival_ms,
            service_ms,
        };
        self.push(now + service_ms, done);
    }

    /// A request sent to model `j`: it runs on a free slot, else waits in the FIFO queue,
    /// else it is an overload failure.
    fn admit(&mut self, j: usize, now: f64, r: &Request) {
        let service_ms = self.service(j, r);
        let profile = &self.prep.scenario.models[j].profile;
        let state = &mut self.models[j];
        if state.active < profile.max_concurrent && state.queue.is_empty() {
            self.start(j, now, r.arrival_ms, service_ms);
        } else if (state.queue.len() as u64) < profile.max_queue {
            state.queue.push_back((r.arrival_ms, service_ms));
            self.max_queue = self.max_queue.max(state.queue.len() as u64);
        } else {
            self.overload_failures += 1;
        }
    }

    fn route(&mut self, r: Request, attempts: u32, now: f64) {
        let n = self.models.len();
        let row = &self.prep.scores[r.agent as usize * n..][..n];
        for (j, c) in self.cands.iter_mut().enumerate() {
            let m = &self.models[j];
            c.score = row[j];
            c.active = m.active;
            c.queued = m.queue.len() as u64;
            c.latency_ms = m.latency_ms;
            c.latency_age_ms = if m.latency_ms.is_nan() {
                0.0
            } else {
                now - m.latency_at
            };
        }
        let scenario = self.prep.scenario;
        match choose(self.policy, &self.cands, &scenario.balancer, &mut self.rng) {
            Decision::Run(j) | Decision::Queue(j) => self.admit(j, now, &r),
            Decision::NoCapacity { retry_after_s } if attempts < scenario.max_retries => {
                self.retries += 1;
                let wait = (retry_after_s * 1000.0).max(MIN_RETRY_MS);
                let kind = Kind::Retry {
                    request: r,
                    attempts: attempts + 1,
                };
                self.push(now + wait, kind);
            }
            Decision::NoCapacity { .. } | Decision::NoEligibleModel => self.rejected += 1,
        }
    }

    fn complete(&mut self, j: usize, now: f64, arrival_ms: f64, service_ms: f64) {
        self.set_active(j, now, -1);
        self.latencies.push(now - arrival_ms);
        let alpha = self.prep.scenario.latency_ewma_alpha;
        let m = &mut self.models[j];
        m.latency_ms = if m.latency_ms.is_nan() {
            service_ms
        } else {
            alpha * service_ms + (1.0 - alpha) * m.latency_ms
        };
        m.latency_at = now;
        let max_concurrent = self.prep.scenario.models[j].profile.max_concurrent;
        while self.models[j].active < max_concurrent {
            let Some((arrival, service)) = self.models[j].queue.pop_front() else {
                break;
            };
            self.start(j, now, arrival, service);
        }
    }
}

/// Runs the whole request stream under one policy. Stops early (partial result) when the
/// ticker reports cancellation.
pub(super) fn run(prep: &Prepared<'_>, policy: Policy, ticker: &Ticker<'_>) -> PolicyResult {
    let sc = prep.scenario;
    let n_requests = sc.requests;
    let models = sc.models.iter().map(|m| ModelState {
        active: 0,
        queue: VecDeque::with_capacity(m.profile.max_queue.min(1 << 16) as usize),
        latency_ms: f64::NAN,
        latency_at: 0.0,
        busy_area: 0.0,
        last_change: 0.0,
    });
    let cands = sc.models.iter().map(|m| Candidate {
        score: f64::NEG_INFINITY,
        active: 0,
        queued: 0,
        max_concurrent: m.profile.max_concurrent,
        max_queue: m.profile.max_queue,
        target_utilization: m.profile.target_utilization,
        latency_ms: f64::NAN,
        latency_age_ms: 0.0,
        accepting: true,
    });
    let mut sim = Sim {
        prep,
        policy,
        rng: SmallRng::seed_from_u64(stream_seed(sc.seed, 2 + policy as u64)),
        models: models.collect(),
        cands: cands.collect(),
        heap: BinaryHeap::with_capacity(1024),
        seq: 0,
        latencies: Vec::with_capacity(n_requests as usize),
        overload_failures: 0,
        rejected: 0,
        retries: 0,
        max_queue: 0,
    };
    let mut arrivals = Arrivals {
        rng: SmallRng::seed_from_u64(stream_seed(sc.seed, 1)),
        mean_gap_ms: 1000.0 / sc.arrival_rate_per_s,
        spare_normal: None,
    };
    let chunk = (n_requests / 200).max(1);
    let (mut issued, mut reported) = (0u64, 0u64);
    let mut next_arrival = arrivals.gap();
    let mut now = 0.0;
    loop {
        let from_heap = match sim.heap.peek() {
            Some(e) => issued == n_requests || e.time <= next_arrival,
            None if issued == n_requests => break,
            None => false,
        };
        if from_heap {
            let Some(event) = sim.heap.pop() else { break };
            now = event.time;
            match event.kind {
                Kind::Done {
                    model,
                    arrival_ms,
                    service_ms,
                } => sim.complete(model as usize, now, arrival_ms, service_ms),
                Kind::Retry { request, attempts } => sim.route(request, attempts, now),
            }
            continue;
        }
        now = next_arrival;
        let request = arrivals.request(now, &prep.cumulative);
        sim.route(request, 0, now);
        issued += 1;
        next_arrival = now + arrivals.gap();
        if issued - reported >= chunk {
            if !ticker.advance(issued - reported) {
                break;
            }
            reported = issued;
        }
    }
    ticker.advance(issued - reported);
    for j in 0..sim.models.len() {
        sim.set_active(j, now, 0);
    }
    PolicyResult::new(
        policy,
        sim.latencies,
        sim.models.iter().zip(&sc.models).map(|(m, spec)| {
            let slots = spec.profile.max_concurrent as f64;
            if now > 0.0 {
                m.busy_area / (slots * now)
            } else {
                0.0
            }
        }),
        issued,
        [
            sim.overload_failures,
            sim.rejected,
            sim.retries,
            sim.max_queue,
        ],
        now / 1000.0,
    )
}
