//! Router, AssignmentResult and Assignment.

use pyo3::conversion::FromPyObjectOwned;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use std::sync::Arc;

use super::adaptive::PyAdaptiveScorer;
use super::arrays::{deprecated, pymethods_with_getters, to_py};
use super::capability::{weights_or_default, PyAgent, PyModel, PyScoreWeights};
use super::capacity::PyCapacityManager;
use super::errors::{int, invalid, tokens};
use super::load::{clock_from, PyInFlight, PyLoadTracker, PyManualClock, PyModelLoad};
use super::perf::PyPerformanceTracker;
use crate::balancer::Policy;
use crate::capability::AgentProfile;
use crate::limits::Demand;
use crate::load::LoadTracker;
use crate::redis_backend::TrackerSettings;
use crate::router::{legacy_keyword_warning, Assignment, AssignmentResult, Feeds, Guard};
use crate::router::{Outcome, Router, RouterConfig};
use crate::strategy::Strategy;

/// One agent's placement.
#[pyclass(frozen, eq, module = "modelrouter", name = "Assignment")]
#[derive(Clone, PartialEq)]
pub struct PyAssignment(Assignment);

pymethods_with_getters! {
    PyAssignment, 0 { score: f64 }
    #[getter]
    fn agent_id(&self) -> &str {
        &self.0.agent_id
    }
    #[getter]
    fn model_id(&self) -> &str {
        &self.0.model_id
    }
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.0)
    }
    fn __repr__(&self) -> String {
        self.0.to_string()
    }
}

/// What `Router.assign` decided. `to_dict()` is the body of POST auto-assign-all.
#[pyclass(frozen, module = "modelrouter", name = "AssignmentResult")]
pub struct PyAssignmentResult {
    result: AssignmentResult,
    /// The rows as Python objects, made once so that each read returns the same ones.
    assignments: Vec<Py<PyAssignment>>,
}

pymethods_with_getters! {
    PyAssignmentResult, result {
        total_score: f64, load_balancing_enabled: bool, models_filtered: usize,
        avg_utilization: f64,
    }
    /// A fresh list each call, so the frozen result cannot be changed through it.
    #[getter]
    fn assignments(&self, py: Python<'_>) -> Vec<Py<PyAssignment>> {
        self.assignments.iter().map(|a| a.clone_ref(py)).collect()
    }
    #[getter]
    fn strategy_used(&self) -> &'static str {
        self.result.strategy_used.name()
    }
    #[getter]
    fn unassigned(&self) -> Vec<String> {
        self.result.unassigned.clone()
    }
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.result)
    }
    fn __len__(&self) -> usize {
        self.assignments.len()
    }
    fn __repr__(&self) -> String {
        self.result.to_string()
    }
    fn _repr_html_(&self) -> String {
        self.result.html()
    }
}

/// Assigns agents to a fixed fleet of models with one of three strategies, and routes single
/// requests under live load.
#[pyclass(frozen, module = "modelrouter", name = "Router")]
pub struct PyRouter {
    core: Router,
}

/// `Router(health={"consecutive_errors": 3, ...})`: the outlier-ejection settings by name.
fn health_config(given: Option<&Bound<'_, PyDict>>) -> PyResult<crate::health::HealthConfig> {
    let mut config = crate::health::HealthConfig::default();
    for (key, value) in given.into_iter().flat_map(|d| d.iter()) {
        let key: String = key
            .extract()
            .map_err(|_| invalid("health", "keys must be setting names"))?;
        let value: f64 = value
            .extract()
            .map_err(|_| invalid(&key, "expected a number"))?;
        config.set(&key, value)?;
    }
    Ok(config)
}

/// The agent, borrowed (a frozen class): routing one request copies no profile.
fn agent_from<'a, 'py>(obj: &'a Bound<'py, PyAny>) -> PyResult<&'a Bound<'py, PyAgent>> {
    obj.cast::<PyAgent>()
        .map_err(|_| invalid("agent", "expected an Agent"))
}

/// The value of `key` as a `T`; None when absent or None, an input error when not a `T`.
fn item<'py, T: FromPyObjectOwned<'py>>(
    d: &Bound<'py, PyDict>,
    key: &str,
    what: &str,
) -> PyResult<Option<T>> {
    let value = d.get_item(key)?.filter(|v| !v.is_none());
    let expected = || invalid(key, format!("expected {what}"));
    value
        .map(|v| v.extract().map_err(|_| expected()))
        .transpose()
}

/// The LoadTracker a router built with the deprecated keywords reads: the old `tracker=`, or
/// one built from the old tracker settings. Warns once per keyword given.
fn legacy_tracker(legacy: &Bound<'_, PyDict>) -> PyResult<Option<Arc<LoadTracker>>> {
    let py = legacy.py();
    for key in legacy.keys() {
        let key: String = key.extract()?;
        let Some(warning) = legacy_keyword_warning(&key) else {
            let message = format!("Router() got an unexpected keyword argument '{key}'");
            return Err(PyTypeError::new_err(message));
        };
        deprecated(py, &warning, 2)?;
    }
    if legacy.get_item("tracker")?.is_some_and(|t| !t.is_none()) && legacy.len() > 1 {
        let message = "give the tracker's settings to the tracker itself";
        return Err(invalid("tracker", message));
    }
    let tracker: Option<Bound<'_, PyLoadTracker>> = item(legacy, "tracker", "a LoadTracker")?;
    if let Some(tracker) = tracker {
        return Ok(Some(tracker.get().0.clone()));
    }
    if legacy.is_empty() {
        return Ok(None);
    }
    let d = TrackerSettings::default();
    let clock: Option<Bound<'_, PyManualClock>> = item(legacy, "clock", "a ManualClock")?;
    let number = |key, default| PyResult::Ok(item(legacy, key, "a number")?.unwrap_or(default));
    let text = |key| item::<String>(legacy, key, "a string");
    let settings = TrackerSettings::new(
        number("stale_after_s", d.stale_after_s)?,
        text("backend")?.as_deref(),
        number("lease_ttl_s", d.lease_ttl_s)?,
        text("fail_mode")?.as_deref().unwrap_or(d.fail_mode.name()),
        number("timeout_s", d.timeout_s)?,
    )?;
    Ok(Some(Arc::new(settings.build(clock_from(clock.as_ref()))?)))
}

#[pymethods]
impl PyRouter {
    #[new]
    #[pyo3(signature = (models, strategy="optimal", load_balancing=true, load_weight=0.5,
                        *, policy="weighted", weights=None, load=None, capacity=None,
                        performance=None, adaptive=None, health=None, affinity_epsilon=0.25,
                        **deprecated))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        models: &Bound<'_, PyAny>,
        strategy: &str,
        load_balancing: bool,
        load_weight: f64,
        policy: &str,
        weights: Option<PyScoreWeights>,
        load: Option<&Bound<'_, PyLoadTracker>>,
        capacity: Option<&Bound<'_, PyCapacityManager>>,
        performance: Option<&Bound<'_, PyPerformanceTracker>>,
        adaptive: Option<&Bound<'_, PyAdaptiveScorer>>,
        health: Option<&Bound<'_, PyDict>>,
        affinity_epsilon: f64,
        deprecated: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let models: Vec<PyModel> = models
            .extract()
            .map_err(|_| invalid("models", "expected a list of Model objects"))?;
        let config = RouterConfig {
            strategy: strategy.parse::<Strategy>()?,
            load_balancing,
            load_weight,
            weights: weights_or_default(weights),
            policy: policy.parse::<Policy>()?,
        };
        let legacy = deprecated.map(legacy_tracker).transpose()?.flatten();
        if legacy.is_some() && load.is_some() {
            return Err(invalid("load", "give the LoadTracker once, as load="));
        }
        let load = load.map(|t| t.get().0.clone()).or(legacy);
        let capacity = capacity.map(|c| c.get().0.clone());
        let feeds = Feeds {
            load: Feeds::load_for(load, capacity.as_ref())?,
            capacity,
            performance: performance.map(|p| p.get().0.clone()),
            adaptive: adaptive.map(|a| a.get().0.clone()),
            health: health_config(health)?,
        };
        let models = models.into_iter().map(|m| m.0).collect();
        let core = Router::new(models, config, feeds)?.with_affinity_epsilon(affinity_epsilon)?;
        Ok(PyRouter { core })
    }

    #[getter]
    fn models(&self) -> Vec<PyModel> {
        self.core.models.iter().cloned().map(PyModel).collect()
    }
    #[getter]
    fn strategy(&self) -> &'static str {
        self.core.config.strategy.name()
    }
    #[getter]
    fn load_balancing(&self) -> bool {
        self.core.config.load_balancing
    }
    #[getter]
    fn load_weight(&self) -> f64 {
        self.core.config.load_weight
    }
    /// Cache affinity's load bound: a replica above (1 + ε) × the average passes keys on.
    #[getter]
    fn affinity_epsilon(&self) -> f64 {
        self.core.affinity_epsilon()
    }
    #[getter]
    fn policy(&self) -> &'static str {
        self.core.config.policy.name()
    }
    /// The LoadTracker this router admits against (given as `load=`).
    #[getter]
    fn load_tracker(&self) -> PyLoadTracker {
        PyLoadTracker(self.core.tracker().clone())
    }
    /// Deprecated spelling of `load_tracker`.
    #[getter]
    fn tracker(&self, py: Python<'_>) -> PyResult<PyLoadTracker> {
        deprecated(
            py,
            "Router.tracker is deprecated: use Router.load_tracker",
            2,
        )?;
        Ok(self.load_tracker())
    }
    #[getter]
    fn performance(&self) -> PyPerformanceTracker {
        PyPerformanceTracker(self.core.performance().clone())
    }
    #[getter]
    fn adaptive(&self) -> Option<PyAdaptiveScorer> {
        self.core.adaptive().cloned().map(PyAdaptiveScorer)
    }
    #[getter]
    fn capacity(&self) -> Option<PyCapacityManager> {
        self.core.capacity_manager().cloned().map(PyCapacityManager)
    }

    /// The model id for one request of `agent` under live load. Raises NoCapacityError (with
    /// `retry_after_s`) when every eligible model and its queue are full, InfeasibleError when
    /// no model meets the agent's requirements. Reserves nothing: see `request`.
    /// `tokens` (prompt + expected output) passes over models whose RPM, TPM or tokens in
    /// flight cannot take the request now; ValueError when it exceeds every able model's TPM
    /// or token capacity.
    #[pyo3(signature = (agent, *, tokens=0))]
    fn route(
        &self,
        py: Python<'_>,
        agent: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = tokens::tokens)] tokens: u64,
    ) -> PyResult<String> {
        let agent = &agent_from(agent)?.get().0;
        let demand = Demand::tokens(tokens);
        let route = py.detach(|| self.core.route_tokens(agent, demand))?;
        Ok(self.core.models[route.model].id.clone())
    }

    /// Routes and reserves atomically: `with router.request(agent) as r: call(r.model_id)`.
    /// The slot (or queue place) is given back on exit, exception or cancellation. With
    /// `tokens` (the prompt's) and `max_output_tokens`, their sum is admitted in one atomic
    /// decision with concurrency and queue against the model's RPM, TPM and tokens in flight;
    /// report the usage with `InFlight.set_usage` to reconcile the TPM window.
    ///
    /// `affinity_key` (a session id, a prompt-prefix hash) prefers the model that served the
    /// key before, by consistent hashing with bounded loads: a model above (1 + ε) × the
    /// average load (`affinity_epsilon`) passes the key on along the ring.
    #[pyo3(signature = (agent, *, tokens=0, max_output_tokens=0, affinity_key=None))]
    fn request(
        &self,
        py: Python<'_>,
        agent: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = tokens::tokens)] tokens: u64,
        #[pyo3(from_py_with = tokens::max_output_tokens)] max_output_tokens: u64,
        affinity_key: Option<&str>,
    ) -> PyResult<PyInFlight> {
        let agent = &agent_from(agent)?.get().0;
        let demand = Demand::request(tokens, max_output_tokens);
        let (_, flight) = py.detach(|| match affinity_key {
            Some(key) => self.core.admit_affine(agent, demand, key),
            None => self.core.admit_tokens(agent, demand),
        })?;
        Ok(PyInFlight(Guard::flying(flight)))
    }

    /// For asyncio: `async with router.acquire(agent, timeout_s=2.0) as r:` (or `await`) admits
    /// like `request`, waiting for capacity up to `timeout_s` while yielding to the event loop,
    /// and runs shared-backend round trips on a worker thread (modelrouter/_aio.py).
    #[pyo3(signature = (agent, *, timeout_s=None, tokens=0, max_output_tokens=0))]
    fn acquire<'py>(
        slf: &Bound<'py, Self>,
        agent: &Bound<'py, PyAny>,
        timeout_s: Option<&Bound<'py, PyAny>>,
        #[pyo3(from_py_with = tokens::tokens)] tokens: u64,
        #[pyo3(from_py_with = tokens::max_output_tokens)] max_output_tokens: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        agent_from(agent)?;
        let py = slf.py();
        let acquisition = py.import("modelrouter._aio")?.getattr("Acquisition")?;
        acquisition.call1((slf, agent, timeout_s, tokens, max_output_tokens))
    }

    /// `fn(model_id)` under admission, with retries on another model and fallbacks: see
    /// `modelrouter._calls.call` (the retry loop is glue around the core's admission, health
    /// and retry budget). With `store`, every attempt is recorded there.
    #[pyo3(signature = (
        agent, r#fn, *, retries=2, fallbacks=None, timeout_s=None, store=None, tokens=0,
        max_output_tokens=0
    ))]
    #[allow(clippy::too_many_arguments)]
    fn call<'py>(
        slf: &Bound<'py, Self>,
        agent: &Bound<'py, PyAny>,
        r#fn: &Bound<'py, PyAny>,
        #[pyo3(from_py_with = int::retries)] retries: i64,
        fallbacks: Option<&Bound<'py, PyAny>>,
        timeout_s: Option<&Bound<'py, PyAny>>,
        store: Option<&Bound<'py, PyAny>>,
        #[pyo3(from_py_with = tokens::tokens)] tokens: u64,
        #[pyo3(from_py_with = tokens::max_output_tokens)] max_output_tokens: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let size = (tokens, max_output_tokens);
        let args = (slf, agent, r#fn, retries, fallbacks, timeout_s, store, size);
        slf.py()
            .import("modelrouter._calls")?
            .call_method1("call", args)
    }

    /// `await router.acall(agent, fn, ...)`: `call` for a coroutine function.
    #[pyo3(signature = (
        agent, r#fn, *, retries=2, fallbacks=None, timeout_s=None, store=None, tokens=0,
        max_output_tokens=0
    ))]
    #[allow(clippy::too_many_arguments)]
    fn acall<'py>(
        slf: &Bound<'py, Self>,
        agent: &Bound<'py, PyAny>,
        r#fn: &Bound<'py, PyAny>,
        #[pyo3(from_py_with = int::retries)] retries: i64,
        fallbacks: Option<&Bound<'py, PyAny>>,
        timeout_s: Option<&Bound<'py, PyAny>>,
        store: Option<&Bound<'py, PyAny>>,
        #[pyo3(from_py_with = tokens::tokens)] tokens: u64,
        #[pyo3(from_py_with = tokens::max_output_tokens)] max_output_tokens: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let size = (tokens, max_output_tokens);
        let args = (slf, agent, r#fn, retries, fallbacks, timeout_s, store, size);
        slf.py()
            .import("modelrouter._calls")?
            .call_method1("acall", args)
    }

    /// For `call`: admission avoiding the models in `avoid` and, after a context-length error,
    /// every model whose context window is not above `context_above`.
    /// Requests of `tokens` (the prompt's) and `max_output_tokens`, as for `request`.
    #[pyo3(signature = (agent, avoid, context_above=None, tokens=0, max_output_tokens=0))]
    fn _admit_avoiding(
        &self,
        py: Python<'_>,
        agent: &Bound<'_, PyAny>,
        avoid: Vec<String>,
        context_above: Option<u64>,
        #[pyo3(from_py_with = tokens::tokens)] tokens: u64,
        #[pyo3(from_py_with = tokens::max_output_tokens)] max_output_tokens: u64,
    ) -> PyResult<PyInFlight> {
        let agent = &agent_from(agent)?.get().0;
        let avoid = avoid
            .iter()
            .map(|id| self.core.model_index(id))
            .collect::<crate::error::Result<Vec<_>>>()?;
        let demand = Demand::request(tokens, max_output_tokens);
        let admitted = py.detach(|| {
            self.core
                .admit_avoiding(agent, &avoid, context_above, demand)
        });
        Ok(PyInFlight(Guard::flying(admitted?.1)))
    }

    /// For `call`: admission on one named model (a fallback, or a pinned model).
    #[pyo3(signature = (agent, model_id, tokens=0, max_output_tokens=0))]
    fn _admit_on(
        &self,
        py: Python<'_>,
        agent: &Bound<'_, PyAny>,
        model_id: &str,
        #[pyo3(from_py_with = tokens::tokens)] tokens: u64,
        #[pyo3(from_py_with = tokens::max_output_tokens)] max_output_tokens: u64,
    ) -> PyResult<PyInFlight> {
        let agent = &agent_from(agent)?.get().0;
        let j = self.core.model_index(model_id)?;
        let demand = Demand::request(tokens, max_output_tokens);
        let (_, flight) = py.detach(|| self.core.admit_on(agent, j, demand))?;
        Ok(PyInFlight(Guard::flying(flight)))
    }

    /// For `call`: counts a first attempt in the retry budget.
    fn _deposit(&self) {
        self.core.deposit();
    }

    /// Retries of `call`/`acall` since the start: `{"granted": n, "refused": n}` (refused: the
    /// retry budget was spent).
    fn retry_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (granted, refused) = self.core.retry_budget().totals_since_start();
        let d = PyDict::new(py);
        d.set_item("granted", granted)?;
        d.set_item("refused", refused)?;
        Ok(d)
    }

    /// For `call`: takes one retry from the budget; False when it is spent.
    fn _try_retry(&self) -> bool {
        self.core.try_retry()
    }

    /// Health of every model: `{model_id: {"state": "healthy" | "ejected" | "cooling_down" |
    /// "probing", "since", "until", "reason", "ejections", "consecutive_errors"}}`.
    fn health<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let now = self.core.tracker().now();
        let out = PyDict::new(py);
        for (j, m) in self.core.models.iter().enumerate() {
            out.set_item(&m.id, to_py(py, &self.core.health().of(j, now))?)?;
        }
        Ok(out)
    }

    /// One model's health (see `health`); KeyError for an unknown id.
    fn health_of<'py>(&self, py: Python<'py>, model_id: &str) -> PyResult<Bound<'py, PyAny>> {
        let j = self.core.model_index(model_id)?;
        to_py(py, &self.core.health().of(j, self.core.tracker().now()))
    }

    /// `with router.track(model_id):` counts one active request on the model for the block
    /// and records its latency and outcome (failed when the block raises or `mark_failed()`).
    #[pyo3(signature = (model_id, agent_id=None, *, tokens=0))]
    fn track(
        &self,
        model_id: &str,
        agent_id: Option<&str>,
        #[pyo3(from_py_with = tokens::tokens)] tokens: u64,
    ) -> PyResult<PyInFlight> {
        Ok(PyInFlight(self.core.guard(model_id, agent_id, tokens)?))
    }

    /// Records one finished request observed outside `track`; `outcome` (one of `OUTCOMES`,
    /// with `retry_after_s` for `rate_limited`) says how it failed, when it did.
    #[pyo3(signature = (model_id, latency_ms, success=true, agent_id=None, *, outcome=None,
                        retry_after_s=None))]
    fn record(
        &self,
        model_id: &str,
        latency_ms: f64,
        success: bool,
        agent_id: Option<&str>,
        outcome: Option<&str>,
        retry_after_s: Option<f64>,
    ) -> PyResult<()> {
        let j = self.core.model_index(model_id)?;
        let outcome = match outcome {
            None => Outcome::from_success(success),
            Some(kind) => Outcome::parse(kind, retry_after_s)?,
        };
        Ok(self.core.record_outcome(j, agent_id, latency_ms, outcome)?)
    }

    /// The model's live load (stale or not); KeyError for an unknown id.
    fn load(&self, py: Python<'_>, model_id: &str) -> PyResult<PyModelLoad> {
        let j = self.core.model_index(model_id)?;
        Ok(PyModelLoad(py.detach(|| self.core.state(j).snapshot())))
    }

    /// (TTFT ms, ms per output token) the model has learned: measured where streams reported
    /// their first token (`InFlight.first_token`), else fitted from latency and usage; NaN
    /// until known. `predictive` prices a request with them. KeyError for an unknown id.
    fn token_timing(&self, model_id: &str) -> PyResult<(f64, f64)> {
        let j = self.core.model_index(model_id)?;
        Ok(self.core.state(j).token_timing())
    }

    /// Assigns each agent at most one model; agents that fit nowhere are listed in `unassigned`.
    fn assign(&self, py: Python<'_>, agents: &Bound<'_, PyAny>) -> PyResult<PyAssignmentResult> {
        let agents: Vec<PyAgent> = agents
            .extract()
            .map_err(|_| invalid("agents", "expected a list of Agent objects"))?;
        let result = py.detach(|| {
            let profiles: Vec<&AgentProfile> = agents.iter().map(|a| &a.0).collect();
            self.core.assign_named(&profiles)
        })?;
        let assignments = result.assignments.iter().cloned();
        let assignments = assignments.map(|a| Py::new(py, PyAssignment(a)));
        Ok(PyAssignmentResult {
            assignments: assignments.collect::<PyResult<_>>()?,
            result,
        })
    }

    fn __repr__(&self) -> String {
        self.core.to_string()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyAssignment>()?;
    m.add_class::<PyAssignmentResult>()?;
    m.add_class::<PyRouter>()?;
    Ok(())
}
