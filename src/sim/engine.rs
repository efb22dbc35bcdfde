//! One policy's run under one failure-handling mode: an event loop over a min-heap of call
//! ends and client retries, with arrivals generated lazily in time order. Every request is
//! routed by `balancer::choose` on the live state, so what is measured is what the router
//! does. With failure handling, the run owns one core `Health` (fed by every call's end, read
//! before each choice as the live router does) and, with retries, one core `RetryBudget`.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

use rand::{rngs::SmallRng, Rng, SeedableRng};

use super::report::PolicyResult;
use super::scenario::{FaultKind, Handling, Scenario, ServiceTime};
use super::tokens::{AffinityMode, QuotaAdmission};
use super::Ticker;
use crate::balancer::{choose, Candidate, Decision, Policy};
use crate::health::{Health, HealthConfig, RetryBudget, RetryBudgetConfig, Verdict};
use crate::limits::Window;
use crate::load::{Limits, TokenLoad};
use crate::router::affinity::Ring;

/// How long a provider takes to answer 429 to a call over its quota.
const QUOTA_REFUSAL_MS: f64 = 20.0;

/// A client waits at least this long before retrying, so a zero hint cannot spin.
const MIN_RETRY_MS: f64 = 1.0;

/// What the run needs from the scenario, computed once and shared by every policy.
pub(super) struct Prepared<'a> {
    pub scenario: &'a Scenario,
    /// `scores[agent * n_models + model]`, −inf where the agent cannot use the model.
    pub scores: Vec<f64>,
    /// Running sums of the agent weights, for drawing an agent by binary search.
    pub cumulative: Vec<f64>,
    /// The fleet's hash ring and the session keys, when the scenario has sessions.
    pub ring: Option<(Ring, Vec<String>)>,
}

/// One request as the arrival stream made it; `u` and `z` fix its size on any model.
#[derive(Clone, Copy)]
struct Request {
    agent: u32,
    arrival_ms: f64,
    u: f64,
    z: f64,
    /// Prompt and output tokens (0 when the scenario has no tokens).
    prompt: u64,
    output: u64,
    /// Its session (u32::MAX: none).
    session: u32,
}

impl Request {
    fn tokens(&self) -> u64 {
        self.prompt + self.output
    }
}

/// One call of a request to one model: the attempt number and its service time there.
#[derive(Clone, Copy)]
struct Call {
    request: Request,
    attempts: u32,
    service_ms: f64,
    /// Time to first token (the service law's draw; the rest is output generation).
    ttft_ms: f64,
    /// When the call started on the model (NaN while queued).
    started: f64,
}

enum Kind {
    /// A call ends: `failure` is None when it succeeded.
    Done {
        model: u32,
        call: Call,
        failure: Option<Verdict>,
    },
    /// A client retry; `avoid` is the model whose call just failed.
    Retry {
        request: Request,
        attempts: u32,
        avoid: Option<u32>,
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
    /// Token lengths come from their own stream, so scenarios without tokens draw as before.
    token_rng: SmallRng,
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

    fn token_normal(&mut self) -> f64 {
        let r = (-2.0 * (1.0 - self.token_rng.random::<f64>()).ln()).sqrt();
        r * (std::f64::consts::TAU * self.token_rng.random::<f64>()).cos()
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
            prompt: 0,
            output: 0,
            session: u32::MAX,
        }
    }
}

struct ModelState {
    active: u64,
    /// Waiting calls, first in first out.
    queue: VecDeque<Call>,
    /// Observed service latency (EWMA), NaN until the first completion.
    latency_ms: f64,
    /// Simulated time of that observation.
    latency_at: f64,
    busy_area: f64,
    last_change: f64,
    /// What the router counted (at admission) and what the provider counted (at the call's
    /// start) in the last 60 s: requests and tokens.
    router_windows: [Window; 2],
    provider_windows: [Window; 2],
}

struct Sim<'a> {
    prep: &'a Prepared<'a>,
    policy: Policy,
    rng: SmallRng,
    /// Draws whether a call inside an error or 429 window fails.
    fault_rng: SmallRng,
    /// Outlier ejection (modes other than `None`).
    health: Option<Health>,
    /// Retries after failed calls (`EjectRetry` only).
    budget: Option<RetryBudget>,
    models: Vec<ModelState>,
    cands: Vec<Candidate>,
    /// Per model: whether the router enforces an RPM or TPM limit on it (fixed for the run).
    router_limited: Vec<bool>,
    heap: BinaryHeap<Event>,
    seq: u64,
    latencies: Vec<f64>,
    overload_failures: u64,
    rejected: u64,
    retries: u64,
    max_queue: u64,
    /// Requests whose last call failed from an injected fault.
    failed: u64,
    /// Retries after a failed call.
    failure_retries: u64,
    /// Calls that failed (injected faults and overload failures).
    wasted_calls: u64,
    /// Time to first token of each completed request (from its arrival).
    ttfts: Vec<f64>,
    /// Prompt + output tokens of the completed requests.
    tokens_served: u64,
    /// Calls a provider refused (429) for being over its RPM/TPM quota.
    quota_rejections: u64,
    /// The model that last served each session, and how many calls found it (cache hits).
    last_model: Vec<u32>,
    cache_hits: u64,
    session_calls: u64,
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

    /// (time to first token, whole service time) of a request on model `j`.
    fn service(&self, j: usize, r: &Request) -> (f64, f64) {
        let spec = &self.prep.scenario.models[j];
        let law: ServiceTime = spec.service;
        let ttft = law.sample(r.u, r.z);
        (ttft, ttft + r.output as f64 * spec.ms_per_output_token)
    }

    /// Whether the provider of model `j` takes the call now (under its RPM and TPM over the
    /// last 60 s); records it when it does, else gives the seconds until it would.
    fn provider_takes(&mut self, j: usize, now: f64, r: &Request) -> std::result::Result<(), f64> {
        let limits = self.prep.scenario.models[j].profile.limits;
        if limits.rpm.is_none() && limits.tpm.is_none() {
            return Ok(());
        }
        let now_s = now / 1000.0;
        let [req, tok] = &mut self.models[j].provider_windows;
        req.purge(now_s);
        tok.purge(now_s);
        let mut wait = 0.0f64;
        if let Some(rpm) = limits.rpm {
            wait = wait.max(req.wait_s(1, rpm, now_s));
        }
        if let Some(tpm) = limits.tpm {
            wait = wait.max(tok.wait_s(r.tokens(), tpm, now_s));
        }
        if wait > 0.0 {
            return Err(wait);
        }
        req.record(1, now_s, 0);
        tok.record(r.tokens(), now_s, 0);
        Ok(())
    }

    /// Seconds until model `j` may admit request `r` under what the router enforces of its
    /// quota (0 = now), and the windows' load; records nothing. Only for `router_limited`
    /// models: the others keep no windows.
    fn router_wait_s(&mut self, j: usize, now: f64, r: &Request) -> (f64, TokenLoad) {
        let limits = self.cands[j].limits;
        let now_s = now / 1000.0;
        let [req, tok] = &mut self.models[j].router_windows;
        req.purge(now_s);
        tok.purge(now_s);
        let mut wait = limits.rpm.map_or(0.0, |rpm| req.wait_s(1, rpm, now_s));
        if let Some(tpm) = limits.tpm {
            wait = wait.max(tok.wait_s(r.tokens(), tpm, now_s));
        }
        let load = TokenLoad {
            in_flight: 0,
            requests_in_window: req.sum(),
            tokens_in_window: tok.sum(),
        };
        (wait, load)
    }

    /// Starts a call now, unless the deployment breaks above its hidden limit. The faults
    /// active now decide how it ends: slowdowns stretch it, then the first failing fault (in
    /// scenario order) makes it fail after that fault's time.
    fn start(&mut self, j: usize, now: f64, mut call: Call) {
        let spec = &self.prep.scenario.models[j];
        if let Some(limit) = spec.fail_above {
            if self.models[j].active >= limit {
                self.overload_failures += 1;
                self.wasted_calls += 1;
                return;
            }
        }
        call.started = now;
        if let Err(wait_s) = self.provider_takes(j, now, &call.request) {
            // Over the provider's quota: a 429 with its Retry-After, answered at once.
            self.quota_rejections += 1;
            self.set_active(j, now, 1);
            let failure = Some(Verdict::RateLimited {
                retry_after_s: Some(wait_s),
            });
            let done = Kind::Done {
                model: j as u32,
                call,
                failure,
            };
            self.push(now + QUOTA_REFUSAL_MS, done);
            return;
        }
        let spec = &self.prep.scenario.models[j];
        let mut failure = None;
        let mut took_ms = call.service_ms;
        if !spec.faults.is_empty() {
            for f in spec.faults.iter().filter(|f| f.active(now)) {
                if let FaultKind::Slowdown { factor } = f.kind {
                    call.service_ms *= factor;
                }
            }
            took_ms = call.service_ms;
            for f in spec.faults.iter().filter(|f| f.active(now)) {
                let (rate, verdict, after) = match f.kind {
                    FaultKind::Slowdown { .. } => continue,
                    FaultKind::Outage { fail_after_ms } => {
                        (1.0, Verdict::ServerError, fail_after_ms)
                    }
                    FaultKind::Errors {
                        error_rate,
                        fail_after_ms,
                    } => (
                        error_rate,
                        Verdict::ServerError,
                        fail_after_ms.unwrap_or(call.service_ms),
                    ),
                    FaultKind::RateLimit {
                        error_rate,
                        retry_after_s,
                        fail_after_ms,
                    } => (
                        error_rate,
                        Verdict::RateLimited { retry_after_s },
                        fail_after_ms,
                    ),
                };
                if rate >= 1.0 || self.fault_rng.random::<f64>() < rate {
                    failure = Some(verdict);
                    took_ms = after;
                    break;
                }
            }
        }
        self.set_active(j, now, 1);
        let done = Kind::Done {
            model: j as u32,
            call,
            failure,
        };
        self.push(now + took_ms, done);
    }

    /// A request sent to model `j`: it runs on a free slot, else waits in the FIFO queue,
    /// else it is an overload failure.
    fn admit(&mut self, j: usize, now: f64, r: &Request, attempts: u32) {
        let (mut ttft_ms, mut service_ms) = self.service(j, r);
        if let (Some(a), true) = (&self.prep.scenario.affinity, r.session != u32::MAX) {
            let last = &mut self.last_model[r.session as usize];
            self.session_calls += 1;
            if *last == j as u32 {
                // The session's prefix is in this model's cache: prefill mostly skipped.
                self.cache_hits += 1;
                service_ms -= ttft_ms * (1.0 - a.hit_ttft_factor);
                ttft_ms *= a.hit_ttft_factor;
            }
            *last = j as u32;
        }
        let call = Call {
            request: *r,
            attempts,
            service_ms,
            ttft_ms,
            started: f64::NAN,
        };
        if self.router_limited[j] {
            // Only models with limits keep windows (they are purged when read): no unbounded
            // log for a model the router never checks.
            let now_s = now / 1000.0;
            let [req, tok] = &mut self.models[j].router_windows;
            req.record(1, now_s, 0);
            tok.record(r.tokens(), now_s, 0);
        }
        let profile = &self.prep.scenario.models[j].profile;
        let state = &mut self.models[j];
        if state.active < profile.max_concurrent && state.queue.is_empty() {
            self.start(j, now, call);
        } else if (state.queue.len() as u64) < profile.max_queue {
            state.queue.push_back(call);
            self.max_queue = self.max_queue.max(state.queue.len() as u64);
        } else {
            self.overload_failures += 1;
            self.wasted_calls += 1;
        }
    }

    fn route(&mut self, r: Request, attempts: u32, now: f64, avoid: Option<u32>) {
        let n = self.models.len();
        let prep = self.prep;
        let row = &prep.scores[r.agent as usize * n..][..n];
        for (j, &score) in row.iter().enumerate() {
            let m = &self.models[j];
            let c = &mut self.cands[j];
            c.score = score;
            c.accepting = true;
            c.active = m.active;
            c.queued = m.queue.len() as u64;
            c.latency_ms = m.latency_ms;
            c.latency_age_ms = if m.latency_ms.is_nan() {
                0.0
            } else {
                now - m.latency_at
            };
            if self.router_limited[j] {
                let (wait, load) = self.router_wait_s(j, now, &r);
                (self.cands[j].limit_wait_s, self.cands[j].tokens) = (wait, load);
            }
            self.cands[j].refresh();
        }
        // As the live router: models its health takes out do not accept new work.
        if let Some(health) = self.health.as_ref().filter(|h| !h.all_healthy()) {
            for (c, open) in self.cands.iter_mut().zip(health.available(now / 1000.0)) {
                c.accepting &= open;
            }
        }
        // A retry goes elsewhere, unless no other model could take it.
        if let Some(a) = avoid.map(|a| a as usize) {
            let other =
                (0..n).any(|k| k != a && self.cands[k].is_feasible() && self.cands[k].accepting);
            if other {
                self.cands[a].accepting = false;
            }
        }
        let scenario = self.prep.scenario;
        if let (Some(a), Some((ring, keys)), true) =
            (&scenario.affinity, &self.prep.ring, r.session != u32::MAX)
        {
            let cands = &self.cands;
            let open = |j: usize| {
                let c = &cands[j];
                c.is_feasible() && c.accepting && c.has_free_slot()
            };
            let key = &keys[r.session as usize];
            let chosen = match a.mode {
                AffinityMode::None => None,
                AffinityMode::Consistent => ring.choose_plain(key, open),
                AffinityMode::Bounded => {
                    let loads: Vec<u64> = cands.iter().map(|c| c.active + c.queued).collect();
                    ring.choose_bounded(key, &loads, a.epsilon, open)
                }
            };
            if let Some(j) = chosen {
                if let Some(health) = &self.health {
                    health.claim(j, now / 1000.0);
                }
                self.admit(j, now, &r, attempts);
                return;
            }
        }
        match choose(self.policy, &self.cands, &scenario.balancer, &mut self.rng) {
            Decision::Run(j) | Decision::Queue(j) => {
                if let Some(health) = &self.health {
                    // Takes a probing model's one probe (single-threaded: never contended,
                    // except in panic, when health is ignored anyway).
                    health.claim(j, now / 1000.0);
                }
                self.admit(j, now, &r, attempts)
            }
            Decision::NoCapacity { retry_after_s } if attempts < scenario.max_retries => {
                self.retries += 1;
                let wait = (retry_after_s * 1000.0).max(MIN_RETRY_MS);
                let kind = Kind::Retry {
                    request: r,
                    attempts: attempts + 1,
                    avoid: None,
                };
                self.push(now + wait, kind);
            }
            Decision::NoCapacity { .. } | Decision::NoEligibleModel => self.rejected += 1,
        }
    }

    /// A call ends: a success is measured and feeds the observed latency; a failure is a
    /// wasted call, retried elsewhere when the mode and the budget allow, else its request
    /// fails. Either way the model's health hears of it, and the freed slot starts the queue.
    fn complete(&mut self, j: usize, now: f64, call: Call, failure: Option<Verdict>) {
        self.set_active(j, now, -1);
        let now_s = now / 1000.0;
        match failure {
            None => {
                self.latencies.push(now - call.request.arrival_ms);
                self.ttfts
                    .push(call.started + call.ttft_ms - call.request.arrival_ms);
                self.tokens_served += call.request.tokens();
                let alpha = self.prep.scenario.latency_ewma_alpha;
                let m = &mut self.models[j];
                m.latency_ms = if m.latency_ms.is_nan() {
                    call.service_ms
                } else {
                    alpha * call.service_ms + (1.0 - alpha) * m.latency_ms
                };
                m.latency_at = now;
                if let Some(health) = &self.health {
                    health.observe(j, Verdict::Ok, now_s);
                }
            }
            Some(verdict) => {
                self.wasted_calls += 1;
                if let Some(health) = &self.health {
                    health.observe(j, verdict, now_s);
                }
                let retry = call.attempts < self.prep.scenario.max_retries
                    && self.budget.as_ref().is_some_and(|b| b.try_retry(now_s));
                if retry {
                    self.failure_retries += 1;
                    let kind = Kind::Retry {
                        request: call.request,
                        attempts: call.attempts + 1,
                        avoid: Some(j as u32),
                    };
                    self.push(now, kind);
                } else {
                    self.failed += 1;
                }
            }
        }
        let max_concurrent = self.prep.scenario.models[j].profile.max_concurrent;
        while self.models[j].active < max_concurrent {
            let Some(next) = self.models[j].queue.pop_front() else {
                break;
            };
            self.start(j, now, next);
        }
    }
}

/// Runs the whole request stream under one policy. Stops early (partial result) when the
/// ticker reports cancellation.
pub(super) fn run(
    prep: &Prepared<'_>,
    policy: Policy,
    handling: Handling,
    ticker: &Ticker<'_>,
) -> PolicyResult {
    let sc = prep.scenario;
    let n_requests = sc.requests;
    let models = sc.models.iter().map(|m| ModelState {
        active: 0,
        queue: VecDeque::with_capacity(m.profile.max_queue.min(1 << 16) as usize),
        latency_ms: f64::NAN,
        latency_at: 0.0,
        busy_area: 0.0,
        last_change: 0.0,
        router_windows: Default::default(),
        provider_windows: Default::default(),
    });
    // What the router enforces is what its utilization counts; a model it enforces nothing
    // on keeps no windows, and its candidate's token fields stay zero.
    let enforced = |limits: Limits| match sc.admission {
        QuotaAdmission::Tokens => limits,
        QuotaAdmission::Requests => Limits {
            rpm: limits.rpm,
            ..Limits::NONE
        },
        QuotaAdmission::None => Limits::NONE,
    };
    let router_limited = sc
        .models
        .iter()
        .map(|m| {
            let l = enforced(m.profile.limits);
            l.rpm.is_some() || l.tpm.is_some()
        })
        .collect();
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
        limits: enforced(m.profile.limits),
        tokens: TokenLoad::default(),
        limit_wait_s: 0.0,
        service_ms: f64::NAN,
        util: 0.0,
    });
    let health = (handling != Handling::None).then(|| {
        Health::new(sc.models.len(), HealthConfig::default(), 0.0)
            .expect("the default health settings are valid")
    });
    let budget = (handling == Handling::EjectRetry).then(|| {
        RetryBudget::new(RetryBudgetConfig::default()).expect("the default retry budget is valid")
    });
    let mut sim = Sim {
        prep,
        policy,
        // Every mode of a policy draws the same numbers: modes differ only in their handling.
        rng: SmallRng::seed_from_u64(stream_seed(sc.seed, 2 + policy as u64)),
        fault_rng: SmallRng::seed_from_u64(stream_seed(sc.seed, 64 + policy as u64)),
        health,
        budget,
        models: models.collect(),
        cands: cands.collect(),
        router_limited,
        heap: BinaryHeap::with_capacity(1024),
        seq: 0,
        latencies: Vec::with_capacity(n_requests as usize),
        overload_failures: 0,
        rejected: 0,
        retries: 0,
        max_queue: 0,
        failed: 0,
        failure_retries: 0,
        wasted_calls: 0,
        ttfts: Vec::with_capacity(n_requests as usize),
        tokens_served: 0,
        quota_rejections: 0,
        last_model: vec![u32::MAX; sc.affinity.map_or(0, |a| a.sessions as usize)],
        cache_hits: 0,
        session_calls: 0,
    };
    let mut session_rng = SmallRng::seed_from_u64(stream_seed(sc.seed, 4));
    let mut arrivals = Arrivals {
        rng: SmallRng::seed_from_u64(stream_seed(sc.seed, 1)),
        mean_gap_ms: 1000.0 / sc.arrival_rate_per_s,
        spare_normal: None,
        token_rng: SmallRng::seed_from_u64(stream_seed(sc.seed, 3)),
    };
    let trace = sc.trace.as_deref();
    let chunk = (n_requests / 200).max(1);
    let (mut issued, mut reported) = (0u64, 0u64);
    let mut next_arrival = match trace {
        Some(rows) => rows[0].arrival_ms,
        None => arrivals.gap(),
    };
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
                    call,
                    failure,
                } => sim.complete(model as usize, now, call, failure),
                Kind::Retry {
                    request,
                    attempts,
                    avoid,
                } => sim.route(request, attempts, now, avoid),
            }
            continue;
        }
        now = next_arrival;
        let mut request = arrivals.request(now, &prep.cumulative);
        if let Some(rows) = trace {
            let row = rows[issued as usize];
            (request.prompt, request.output) = (row.prompt, row.output);
        } else if let Some(t) = &sc.agents[request.agent as usize].tokens {
            request.prompt = t.prompt.sample(arrivals.token_normal());
            request.output = t.output.sample(arrivals.token_normal());
        }
        if let Some(a) = &sc.affinity {
            // A skewed session mix: P(session < k) = (k / sessions)^(1/3), a few hot sessions.
            let u: f64 = session_rng.random();
            request.session = ((u * u * u * a.sessions as f64) as u32).min(a.sessions - 1);
        }
        if let Some(budget) = &sim.budget {
            budget.record_request(now / 1000.0);
        }
        sim.route(request, 0, now, None);
        issued += 1;
        next_arrival = match trace {
            Some(rows) => rows.get(issued as usize).map_or(now, |r| r.arrival_ms),
            None => now + arrivals.gap(),
        };
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
        handling,
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
        [sim.failed, sim.failure_retries, sim.wasted_calls],
        now / 1000.0,
    )
    .with_tokens(sim.ttfts, sim.tokens_served, sim.quota_rejections)
    .with_cache(sim.cache_hits, sim.session_calls)
}
