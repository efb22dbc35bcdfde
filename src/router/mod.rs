//! The router: batch assignment (capability scores, optional load awareness, strategy) and
//! per-request routing with atomic admission under live load and capacity rules.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::adaptive::AdaptiveScorer;
use crate::balancer::{choose_here, BalancerConfig, Candidate, Decision, Policy};
use crate::capability::{
    check_unique_ids, cost_matrix, score_of_cost, AgentProfile, ModelProfile, ScoreWeights,
};
use crate::capacity::{ActionKind, CapacityManager, RuleClocks};
use crate::error::{Error, Result};
use crate::health::{Health, HealthConfig, RetryBudget, RetryBudgetConfig};
use crate::limits::Demand;
use crate::load::{Admit, LoadTracker, ModelState};
use crate::perf::{PerfConfig, PerformanceTracker, SeriesHandle};
use crate::strategy::Strategy;

/// Router settings; the fleet is fixed at construction.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    pub strategy: Strategy,
    pub load_balancing: bool,
    /// w in the load-weighted score `capability × (1 − w × utilization)`, within [0, 1].
    pub load_weight: f64,
    pub weights: ScoreWeights,
    /// How `route` picks for one request when load balancing is on.
    pub policy: Policy,
}

/// The model chosen for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Route {
    pub model: usize,
    /// True when every eligible model was full and the request waits in this one's queue.
    pub queued: bool,
    pub score: f64,
}

/// Score vectors of recently seen agents, so routing one request costs no profile lowering.
const SCORE_CACHE_LIMIT: usize = 4096;

/// The shared trackers a router reads and feeds; several routers may share each of them.
#[derive(Debug, Clone)]
pub struct Feeds {
    pub load: Arc<LoadTracker>,
    pub capacity: Option<Arc<CapacityManager>>,
    /// Created on the load tracker's clock when absent (the adaptive scorer's when given).
    pub performance: Option<Arc<PerformanceTracker>>,
    /// When given, scores become `w_c × capability + w_p × performance + w_l × load`.
    pub adaptive: Option<Arc<AdaptiveScorer>>,
    /// Outlier ejection and cooldowns (`crate::health`).
    pub health: HealthConfig,
}

impl Feeds {
    pub fn with_load(load: Arc<LoadTracker>) -> Self {
        Feeds {
            load,
            capacity: None,
            performance: None,
            adaptive: None,
            health: HealthConfig::default(),
        }
    }

    /// The tracker a router reads: the one given as `load`, else the capacity manager's (the
    /// same one when both are given), else a new in-process one on the system clock.
    pub fn load_for(
        load: Option<Arc<LoadTracker>>,
        capacity: Option<&Arc<CapacityManager>>,
    ) -> Result<Arc<LoadTracker>> {
        match (load, capacity.map(|c| c.tracker().clone())) {
            (Some(t), Some(c)) if !Arc::ptr_eq(&t, &c) => Err(Error::invalid(
                "capacity",
                "reads a different LoadTracker than the one given as load",
            )),
            (Some(t), _) | (None, Some(t)) => Ok(t),
            (None, None) => Ok(Arc::new(LoadTracker::new(
                60.0,
                crate::load::system_clock(),
            )?)),
        }
    }
}

/// Router keywords kept one release from before a Router took a `LoadTracker` as `load`.
pub const LEGACY_TRACKER_KEYWORDS: [&str; 7] = [
    "tracker",
    "clock",
    "stale_after_s",
    "backend",
    "lease_ttl_s",
    "fail_mode",
    "timeout_s",
];

/// The deprecation warning for one of [`LEGACY_TRACKER_KEYWORDS`]; None for any other word.
pub fn legacy_keyword_warning(keyword: &str) -> Option<String> {
    let advice = match keyword {
        "tracker" => "pass the LoadTracker as load= instead".to_string(),
        k if LEGACY_TRACKER_KEYWORDS.contains(&k) => {
            format!("give {k} to a LoadTracker and pass it as load= instead")
        }
        _ => return None,
    };
    Some(format!("Router({keyword}=...) is deprecated: {advice}"))
}

/// Assigns batches and routes single requests over a fixed fleet, reading live load from a
/// (possibly shared) `LoadTracker` and, optionally, scaling rules from a `CapacityManager`.
#[derive(Debug)]
pub struct Router {
    pub models: Vec<ModelProfile>,
    pub config: RouterConfig,
    tracker: Arc<LoadTracker>,
    states: Vec<Arc<ModelState>>,
    capacity: Option<(Arc<CapacityManager>, Vec<Arc<RuleClocks>>)>,
    performance: Arc<PerformanceTracker>,
    perf_handles: Vec<SeriesHandle>,
    adaptive: Option<Arc<AdaptiveScorer>>,
    /// The policies' tunables, validated once (load_weight from the config).
    balancer: BalancerConfig,
    health: Arc<Health>,
    retry_budget: RetryBudget,
    score_cache: RwLock<ScoreCache>,
    /// The fleet's hash ring for cache affinity, and its load bound ε.
    ring: affinity::Ring,
    affinity_epsilon: f64,
}

/// Agent id → (the profile the scores were computed for, scores per model).
type ScoreCache = HashMap<String, (AgentProfile, Arc<[f64]>)>;

impl Router {
    /// Registers every model's capacity with the load tracker.
    pub fn new(models: Vec<ModelProfile>, config: RouterConfig, feeds: Feeds) -> Result<Self> {
        let Feeds {
            load: tracker,
            capacity,
            performance,
            adaptive,
            health,
        } = feeds;
        let performance =
            match (performance, &adaptive) {
                (Some(p), Some(a)) if !Arc::ptr_eq(&p, a.tracker()) => return Err(Error::invalid(
                    "adaptive",
                    "learns from a different PerformanceTracker than the one given as performance",
                )),
                (Some(p), _) => p,
                (None, Some(a)) => a.tracker().clone(),
                (None, None) => Arc::new(PerformanceTracker::new(
                    PerfConfig::default(),
                    tracker.clock().clone(),
                )?),
            };
        if models.is_empty() {
            return Err(Error::invalid("models", "must contain at least one Model"));
        }
        check_unique_ids("models", models.iter().map(|m| m.id.as_str()))?;
        let balancer = BalancerConfig::new(config.load_weight, 1.0)?;
        let states = models
            .iter()
            .map(|m| Ok(tracker.set_capacity(&m.id, m.capacity()?)))
            .collect::<Result<Vec<_>>>()?;
        let capacity = capacity.map(|cm| {
            let clocks = models.iter().map(|m| cm.clocks_for(&m.id)).collect();
            (cm, clocks)
        });
        let health = Arc::new(Health::new(models.len(), health, tracker.now())?);
        let ids: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
        let ring = affinity::Ring::new(&ids);
        let perf_handles = models
            .iter()
            .map(|m| performance.model_handle(&m.id))
            .collect();
        Ok(Router {
            models,
            config,
            tracker,
            states,
            capacity,
            performance,
            perf_handles,
            adaptive,
            balancer,
            health,
            retry_budget: RetryBudget::new(RetryBudgetConfig::default())?,
            score_cache: RwLock::new(HashMap::new()),
            ring,
            affinity_epsilon: affinity::DEFAULT_EPSILON,
        })
    }

    /// The router with cache affinity's load bound ε (a replica above (1 + ε) × the average
    /// load passes a key on); finite and >= 0.
    pub fn with_affinity_epsilon(mut self, epsilon: f64) -> Result<Self> {
        if !(epsilon.is_finite() && epsilon >= 0.0) {
            let reason = format!("must be a finite number >= 0, got {epsilon}");
            return Err(Error::invalid("affinity_epsilon", reason));
        }
        self.affinity_epsilon = epsilon;
        Ok(self)
    }

    pub fn affinity_epsilon(&self) -> f64 {
        self.affinity_epsilon
    }

    /// `admit_tokens` with cache affinity: among the models able to serve the agent and open
    /// now (a free slot, within their token limits), the one `key` hashes to on the ring,
    /// passed on along the ring while it holds more than (1 + ε) × the average load
    /// (consistent hashing with bounded loads). When none is open, the policy decides as
    /// `admit_tokens` does (queue, or a refusal with its hint).
    pub fn admit_affine(
        &self,
        agent: &AgentProfile,
        demand: Demand,
        key: &str,
    ) -> Result<(Route, Flight)> {
        let scores = self.sized_scores(agent, demand.tokens)?;
        let policy = if self.config.load_balancing {
            self.config.policy
        } else {
            Policy::CapabilityOnly
        };
        let cands = self.candidates(&scores, policy, demand);
        let loads: Vec<u64> = cands.iter().map(|c| c.active + c.queued).collect();
        let open = |j: usize| {
            let c = &cands[j];
            c.is_feasible() && c.accepting && c.has_free_slot()
        };
        if let Some(j) = self
            .ring
            .choose_bounded(key, &loads, self.affinity_epsilon, open)
        {
            let now = self.tracker.now();
            let state = &self.states[j];
            if let Admit::Granted(ticket) = state.acquire_tokens(true, demand.tokens, now)? {
                if self.health.all_healthy() || self.health.claim(j, now) {
                    let feedback = Some(self.feedback(j, Some(&agent.id)));
                    let clock = self.tracker.clock().clone();
                    let flight = Flight::started_at(state.clone(), clock, ticket, feedback, now);
                    let route = Route {
                        model: j,
                        queued: flight.queued(),
                        score: scores[j],
                    };
                    return Ok((route, flight));
                }
                state.release_ticket(&ticket, now);
            }
        }
        // Nothing open on the ring (or a lost race): the policy's admission.
        self.admit_scored(agent, &scores, demand)
    }

    pub fn tracker(&self) -> &Arc<LoadTracker> {
        &self.tracker
    }

    pub fn state(&self, model: usize) -> &Arc<ModelState> {
        &self.states[model]
    }

    pub fn performance(&self) -> &Arc<PerformanceTracker> {
        &self.performance
    }

    pub fn adaptive(&self) -> Option<&Arc<AdaptiveScorer>> {
        self.adaptive.as_ref()
    }

    pub fn perf_handle(&self, model: usize) -> &SeriesHandle {
        &self.perf_handles[model]
    }

    /// One finished request: latency EWMA for routing, statistics for feedback and alerts.
    pub fn record(
        &self,
        model: usize,
        agent: Option<&str>,
        latency_ms: f64,
        success: bool,
    ) -> Result<()> {
        self.record_outcome(model, agent, latency_ms, Outcome::from_success(success))
    }

    /// `record` with what the request's outcome was: the caller's errors (`ClientError`,
    /// `ContextLength`) leave the model's statistics alone; every outcome informs its health.
    pub fn record_outcome(
        &self,
        model: usize,
        agent: Option<&str>,
        latency_ms: f64,
        outcome: Outcome,
    ) -> Result<()> {
        let now = self.tracker.now();
        crate::perf::check_latency(latency_ms)?;
        if !outcome.is_callers() {
            self.performance.record_at(
                &self.models[model].id,
                agent,
                latency_ms,
                outcome.is_success(),
                now,
            )?;
            self.states[model].record_latency(latency_ms, now);
        }
        self.health.observe(model, outcome.verdict(), now);
        Ok(())
    }

    /// Outlier ejection and cooldowns of the fleet, by model index.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// The adaptive scorer's per-model offset: its score is linear in capability,
    /// `w_c × capability + offset[j]`, so one call prices a whole batch.
    fn adaptive_terms(&self) -> Result<Option<(f64, Vec<f64>)>> {
        let Some(adaptive) = &self.adaptive else {
            return Ok(None);
        };
        let ids: Vec<&str> = self.models.iter().map(|m| m.id.as_str()).collect();
        let offsets = adaptive.scores(&ids, &vec![0.0; ids.len()])?;
        Ok(Some((adaptive.weights().capability, offsets)))
    }

    /// Capability scores adjusted by the adaptive scorer when there is one.
    fn adapt(&self, scores: &mut [f64]) -> Result<()> {
        if let Some((w_cap, offsets)) = self.adaptive_terms()? {
            let m = self.models.len();
            for (idx, s) in scores.iter_mut().enumerate() {
                if *s > f64::NEG_INFINITY {
                    *s = w_cap * *s + offsets[idx % m];
                }
            }
        }
        Ok(())
    }

    pub fn capacity_manager(&self) -> Option<&Arc<CapacityManager>> {
        self.capacity.as_ref().map(|(cm, _)| cm)
    }

    /// Live load of every model, in model order.
    pub fn loads(&self) -> Vec<LoadSnapshot> {
        let now = self.tracker.now();
        self.states
            .iter()
            .map(|s| {
                let (active, queued) = s.counts();
                let tokens = s.token_load(now);
                LoadSnapshot {
                    active,
                    queued,
                    tokens,
                }
            })
            .collect()
    }

    /// Capability scores (−inf = cannot serve) of one agent on every model.
    pub fn scores_for(&self, agent: &AgentProfile) -> Result<Arc<[f64]>> {
        let cache = self.score_cache.read().unwrap_or_else(|e| e.into_inner());
        if let Some((profile, scores)) = cache.get(&agent.id) {
            if profile == agent {
                return Ok(scores.clone());
            }
        }
        drop(cache);
        let models: Vec<&ModelProfile> = self.models.iter().collect();
        let cost = cost_matrix(&[agent], &models, &self.config.weights)?;
        let scores: Arc<[f64]> = cost.iter().map(|&c| score_of_cost(c)).collect();
        let mut cache = self.score_cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= SCORE_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(agent.id.clone(), (agent.clone(), scores.clone()));
        Ok(scores)
    }

    /// Applies the capacity rules: reject_new refuses the model; redistribute lets it accept
    /// only when no other model is open (handled by marking it last in line).
    fn candidates(&self, scores: &[f64], policy: Policy, demand: Demand) -> Vec<Candidate> {
        // Only `predictive` and token limits read the clock: the others skip it.
        let limited = self.states.iter().any(|s| s.limiter().is_limited());
        let now = if policy == Policy::Predictive || limited {
            self.tracker.now()
        } else {
            f64::NAN
        };
        let mut cands: Vec<Candidate> = self
            .states
            .iter()
            .zip(scores)
            .map(|(state, &score)| Candidate::for_demand(state, score, now, demand))
            .collect();
        if !self.health.all_healthy() {
            // One clock reading per decision: reuse the one already taken, if any.
            let now = if now.is_nan() {
                self.tracker.now()
            } else {
                now
            };
            let open = self.health.available(now);
            for (c, open) in cands.iter_mut().zip(open) {
                c.accepting &= open;
            }
        }
        if let Some((cm, clocks)) = &self.capacity {
            let mut redistribute = Vec::new();
            for (j, (state, clock)) in self.states.iter().zip(clocks).enumerate() {
                match cm.evaluate(state, clock).map(|a| a.action) {
                    Some(ActionKind::RejectNew) => cands[j].accepting = false,
                    Some(ActionKind::Redistribute) => redistribute.push(j),
                    _ => {}
                }
            }
            let others_open = (0..cands.len()).any(|j| {
                !redistribute.contains(&j)
                    && cands[j].accepting
                    && cands[j].is_feasible()
                    && cands[j].has_free_slot()
            });
            if others_open {
                for j in redistribute {
                    cands[j].accepting = false;
                }
            }
        }
        cands
    }

    /// Picks one model for one request of `agent` under live load (capability only when load
    /// balancing is off). Nothing is reserved: pair with tracking, or use `admit`.
    pub fn route(&self, agent: &AgentProfile) -> Result<Route> {
        self.route_tokens(agent, Demand::default())
    }

    /// `route` for a request of `tokens` (prompt + expected output): models whose RPM, TPM or
    /// tokens in flight cannot take it now are passed over, and models it can never fit
    /// (bigger than their TPM or token capacity) cannot serve it.
    pub fn route_tokens(&self, agent: &AgentProfile, demand: Demand) -> Result<Route> {
        let scores = self.sized_scores(agent, demand.tokens)?;
        self.decide(agent, &scores, demand)
    }

    fn routing_scores(&self, agent: &AgentProfile) -> Result<Arc<[f64]>> {
        let scores = self.scores_for(agent)?;
        if self.adaptive.is_none() {
            return Ok(scores);
        }
        let mut adapted = scores.to_vec();
        self.adapt(&mut adapted)?;
        Ok(adapted.into())
    }

    /// `routing_scores` with the models a request of `tokens` can never fit ruled out; an
    /// input error naming the limit when that leaves none of those able to serve the agent.
    fn sized_scores(&self, agent: &AgentProfile, tokens: u64) -> Result<Arc<[f64]>> {
        let scores = self.routing_scores(agent)?;
        let too_big = |j: usize| self.models[j].limits.too_big(tokens);
        if tokens == 0 || (0..scores.len()).all(|j| too_big(j).is_none()) {
            return Ok(scores);
        }
        let mut sized = scores.to_vec();
        // The largest limit refusing it: what the message names.
        let mut refused: Option<(usize, &str, u64)> = None;
        for (j, s) in sized.iter_mut().enumerate() {
            if let Some((name, value)) = too_big(j).filter(|_| *s > f64::NEG_INFINITY) {
                if refused.is_none_or(|(_, _, v)| value > v) {
                    refused = Some((j, name, value));
                }
                *s = f64::NEG_INFINITY;
            }
        }
        match refused {
            Some((j, name, value)) if sized.iter().all(|s| *s == f64::NEG_INFINITY) => {
                let reason = format!(
                    "a request of {tokens} tokens can never be admitted: it exceeds a limit of \
                     every model able to serve agent {:?} (the largest: {name} of {value} on \
                     {:?})",
                    agent.id, self.models[j].id
                );
                Err(Error::invalid("tokens", reason))
            }
            _ => Ok(sized.into()),
        }
    }

    fn decide(&self, agent: &AgentProfile, scores: &[f64], demand: Demand) -> Result<Route> {
        let tokens = demand.tokens;
        let policy = if self.config.load_balancing {
            self.config.policy
        } else {
            Policy::CapabilityOnly
        };
        let cands = self.candidates(scores, policy, demand);
        let decision = choose_here(policy, &cands, &self.balancer);
        let who = || {
            // Name the token limits that refuse the request, so the caller knows which.
            let limited: Vec<String> = (0..cands.len())
                .filter(|&j| cands[j].is_feasible() && !cands[j].fits_limits())
                .map(|j| self.models[j].id.clone())
                .collect();
            if limited.is_empty() {
                format!("agent {:?}", agent.id)
            } else {
                format!(
                    "agent {:?} ({tokens} tokens; at their rpm/tpm/max_tokens_in_flight \
                     limits: {})",
                    agent.id,
                    limited.join(", ")
                )
            }
        };
        let (model, queued) = match decision.into_result(who) {
            Err(Error::NoCapacity {
                message,
                retry_after_s,
            }) if !self.health.all_healthy() => {
                // A model that is out comes back at a known time: that may be sooner.
                let now = self.tracker.now();
                let back = self.health.earliest_return(now).map(|t| (t - now).max(0.0));
                let retry_after_s = back.map_or(retry_after_s, |b| b.min(retry_after_s));
                return Err(Error::NoCapacity {
                    message,
                    retry_after_s,
                });
            }
            other => other?,
        };
        Ok(Route {
            model,
            queued,
            score: scores[model],
        })
    }

    /// Routes and reserves in one step: the chosen model's slot (or queue place) is taken
    /// atomically — across replicas when the tracker has a shared backend — so concurrent
    /// callers can never push a model past its limits, whatever the routing mode. With load
    /// balancing off the request goes to the best-scoring model or is refused when that model
    /// and its queue are full.
    pub fn admit(&self, agent: &AgentProfile) -> Result<(Route, Flight)> {
        self.admit_tokens(agent, Demand::default())
    }

    /// `admit` of a request of `tokens` (prompt + max output): one atomic decision over
    /// concurrency, queue, RPM, TPM and tokens in flight on the chosen model.
    pub fn admit_tokens(&self, agent: &AgentProfile, demand: Demand) -> Result<(Route, Flight)> {
        let scores = self.sized_scores(agent, demand.tokens)?;
        self.admit_scored(agent, &scores, demand)
    }

    /// `admit` for a retry: passes over the models in `avoid` (unless nothing else could serve
    /// the agent) and, after a context-length error, every model whose context window is not
    /// larger than `context_above`.
    pub fn admit_avoiding(
        &self,
        agent: &AgentProfile,
        avoid: &[usize],
        context_above: Option<u64>,
        demand: Demand,
    ) -> Result<(Route, Flight)> {
        let mut scores = self.sized_scores(agent, demand.tokens)?.to_vec();
        if let Some(window) = context_above {
            for (s, m) in scores.iter_mut().zip(&self.models) {
                if m.context_window <= window {
                    *s = f64::NEG_INFINITY;
                }
            }
            if scores.iter().all(|s| *s == f64::NEG_INFINITY) {
                return Err(Error::Infeasible(format!(
                    "no model able to serve agent {:?} has a context window above {window} tokens",
                    agent.id
                )));
            }
        }
        let others = scores
            .iter()
            .enumerate()
            .any(|(j, s)| *s > f64::NEG_INFINITY && !avoid.contains(&j));
        if others {
            for &j in avoid {
                scores[j] = f64::NEG_INFINITY;
            }
        }
        self.admit_scored(agent, &scores, demand)
    }

    /// Admits on one given model (a fallback named by the caller), within its limits.
    pub fn admit_on(
        &self,
        agent: &AgentProfile,
        model: usize,
        demand: Demand,
    ) -> Result<(Route, Flight)> {
        if let Some((limit, value)) = self.models[model].limits.too_big(demand.tokens) {
            let reason = format!(
                "a request of {} tokens can never be admitted on {:?}: it exceeds its {limit} \
                 of {value}",
                demand.tokens, self.models[model].id
            );
            return Err(Error::invalid("tokens", reason));
        }
        let mut scores = vec![f64::NEG_INFINITY; self.models.len()];
        scores[model] = self.routing_scores(agent)?[model].max(0.0);
        self.admit_scored(agent, &scores, demand)
    }

    /// Counts one first attempt of a call in the retry budget.
    pub fn deposit(&self) {
        self.retry_budget.record_request(self.tracker.now());
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn try_retry(&self) -> bool {
        self.retry_budget.try_retry(self.tracker.now())
    }

    pub fn retry_budget(&self) -> &RetryBudget {
        &self.retry_budget
    }

    fn admit_scored(
        &self,
        agent: &AgentProfile,
        scores: &[f64],
        demand: Demand,
    ) -> Result<(Route, Flight)> {
        let tokens = demand.tokens;
        // Each retry follows a lost race for the last slot; the fleet is finite, so a few
        // attempts settle it, and the last answer is reported honestly. Capability-only routing
        // has one candidate, so one refusal is final.
        let rounds = if self.config.load_balancing { 8 } else { 1 };
        let mut last = None;
        let mut limited: Option<crate::limits::Refusal> = None;
        // A model whose limits refused the request (e.g. a shared window this replica had not
        // seen fill) is passed over in the next rounds while another can serve it.
        let mut passed_over: Option<Vec<f64>> = None;
        for round in 0..rounds {
            let scores_now = passed_over.as_deref().unwrap_or(scores);
            let route = match self.decide(agent, scores_now, demand) {
                // Shared counts are cached for a few ms: before refusing on them, read the
                // backend's own once (another replica may have just released).
                Err(Error::NoCapacity { .. }) if round == 0 && self.tracker.backend().is_some() => {
                    if let Some(backend) = self.tracker.backend() {
                        backend.refresh_counts();
                    }
                    self.decide(agent, scores_now, demand)?
                }
                other => other?,
            };
            let now = self.tracker.now();
            let state = &self.states[route.model];
            let ticket = match state.acquire_tokens(true, tokens, now)? {
                Admit::Granted(ticket) => Some(ticket),
                Admit::Full => None,
                Admit::Limited(refusal) => {
                    limited = Some(refusal);
                    let own = passed_over.get_or_insert_with(|| scores.to_vec());
                    let others =
                        (0..own.len()).any(|j| j != route.model && own[j] > f64::NEG_INFINITY);
                    if others {
                        own[route.model] = f64::NEG_INFINITY;
                    }
                    None
                }
            };
            if let Some(ticket) = ticket {
                if !self.health.all_healthy() && !self.health.claim(route.model, now) {
                    // Another request holds this model's one probe: a lost race, try again.
                    state.release_ticket(&ticket, now);
                    last = Some(route.model);
                    continue;
                }
                let feedback = Some(self.feedback(route.model, Some(&agent.id)));
                let flight = Flight::started_at(
                    state.clone(),
                    self.tracker.clock().clone(),
                    ticket,
                    feedback,
                    now,
                );
                let queued = flight.queued();
                return Ok((Route { queued, ..route }, flight));
            }
            last = Some(route.model);
        }
        let model = last.unwrap_or_default();
        // The hint: when the model could next take a request, from its own load and latency.
        let now = self.tracker.now();
        let cand = [Candidate::from_state(
            &self.states[model],
            scores[model],
            now,
        )];
        let mut retry_after_s = match choose_here(Policy::Predictive, &cand, &self.balancer) {
            Decision::NoCapacity { retry_after_s } => retry_after_s,
            _ => 0.0,
        };
        let what = match limited {
            Some(refusal) => {
                if refusal.retry_after_s.is_finite() {
                    retry_after_s = retry_after_s.max(refusal.retry_after_s);
                }
                format!("is at its {} limit", refusal.limit)
            }
            None => "and its queue are full".to_string(),
        };
        Err(Error::NoCapacity {
            message: format!(
                "no capacity for agent {:?}: {:?} {what}{}; retry after {retry_after_s:.3} s",
                agent.id,
                self.models[model].id,
                if rounds > 1 { " under contention" } else { "" },
            ),
            retry_after_s,
        })
    }

    /// Starts a request on a model the caller chose (an active slot whatever the limits), fed
    /// back like an admitted one when it ends.
    pub fn track(&self, model: usize, agent: Option<&str>) -> Result<Flight> {
        self.track_tokens(model, agent, 0)
    }

    /// `track` of a request of `tokens`: counted in the model's windows and tokens in flight
    /// whatever the limits (the caller already chose to send it).
    pub fn track_tokens(&self, model: usize, agent: Option<&str>, tokens: u64) -> Result<Flight> {
        let feedback = Some(self.feedback(model, agent));
        Flight::begin_tokens(
            self.states[model].clone(),
            self.tracker.clock().clone(),
            feedback,
            tokens,
        )
    }

    /// Where a finished request of `model` (and `agent`) reports its latency and outcome.
    pub fn feedback(&self, model: usize, agent: Option<&str>) -> Feedback {
        Feedback::new(
            self.performance.clone(),
            self.perf_handles[model].clone(),
            agent,
        )
        .with_health(self.health.clone(), model)
    }

    pub fn model_index(&self, id: &str) -> Result<usize> {
        self.models
            .iter()
            .position(|m| m.id == id)
            .ok_or_else(|| Error::UnknownModel(id.to_string()))
    }
}

pub mod affinity;
mod batch;
mod flight;
mod guard;
#[cfg(test)]
mod tests;

pub use batch::{Assignment, AssignmentOutcome, AssignmentResult, LoadSnapshot, Placement};
pub use flight::{Feedback, Flight, Landing, Outcome};
pub use guard::Guard;
