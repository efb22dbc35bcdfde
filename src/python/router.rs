//! Router, AssignmentResult and Assignment.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use std::sync::Arc;

use super::adaptive::PyAdaptiveScorer;
use super::capability::{weights_or_default, PyAgent, PyModel, PyScoreWeights};
use super::capacity::PyCapacityManager;
use super::errors::invalid;
use super::load::{
    clock_from, new_tracker, BackendArgs, PyInFlight, PyLoadTracker, PyManualClock, PyModelLoad,
};
use super::perf::PyPerformanceTracker;
use crate::balancer::Policy;
use crate::capability::AgentProfile;
use crate::load::LoadTracker;
use crate::router::{Feeds, Router, RouterConfig};
use crate::strategy::Strategy;

/// One agent's placement.
#[pyclass(frozen, eq, module = "modelrouter", name = "Assignment")]
#[derive(Clone, PartialEq)]
pub struct PyAssignment {
    #[pyo3(get)]
    agent_id: String,
    #[pyo3(get)]
    model_id: String,
    #[pyo3(get)]
    score: f64,
}

#[pymethods]
impl PyAssignment {
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("agent_id", &self.agent_id)?;
        d.set_item("model_id", &self.model_id)?;
        d.set_item("score", self.score)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "Assignment(agent_id={:?}, model_id={:?}, score={:.6})",
            self.agent_id, self.model_id, self.score
        )
    }
}

/// What `Router.assign` decided. `to_dict()` is the body of POST auto-assign-all.
#[pyclass(frozen, module = "modelrouter", name = "AssignmentResult")]
pub struct PyAssignmentResult {
    assignments: Vec<Py<PyAssignment>>,
    #[pyo3(get)]
    total_score: f64,
    #[pyo3(get)]
    strategy_used: &'static str,
    #[pyo3(get)]
    load_balancing_enabled: bool,
    #[pyo3(get)]
    models_filtered: usize,
    #[pyo3(get)]
    avg_utilization: f64,
    unassigned: Vec<String>,
}

#[pymethods]
impl PyAssignmentResult {
    /// A fresh list each call, so the frozen result cannot be changed through it.
    #[getter]
    fn assignments(&self, py: Python<'_>) -> Vec<Py<PyAssignment>> {
        self.assignments.iter().map(|a| a.clone_ref(py)).collect()
    }

    #[getter]
    fn unassigned(&self) -> Vec<String> {
        self.unassigned.clone()
    }

    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let rows = PyList::empty(py);
        for a in &self.assignments {
            rows.append(a.get().to_dict(py)?)?;
        }
        d.set_item("assignments", rows)?;
        d.set_item("total_score", self.total_score)?;
        d.set_item("strategy_used", self.strategy_used)?;
        d.set_item("load_balancing_enabled", self.load_balancing_enabled)?;
        d.set_item("models_filtered", self.models_filtered)?;
        d.set_item("avg_utilization", self.avg_utilization)?;
        d.set_item("unassigned", &self.unassigned)?;
        Ok(d)
    }

    fn __len__(&self) -> usize {
        self.assignments.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "AssignmentResult(strategy_used={:?}, assigned={}, unassigned={}, total_score={:.6})",
            self.strategy_used,
            self.assignments.len(),
            self.unassigned.len(),
            self.total_score
        )
    }
}

/// Assigns agents to a fixed fleet of models with one of three strategies, and routes single
/// requests under live load.
#[pyclass(frozen, module = "modelrouter", name = "Router")]
pub struct PyRouter {
    core: Router,
}

fn agent_from(obj: &Bound<'_, PyAny>) -> PyResult<PyAgent> {
    obj.extract::<PyAgent>()
        .map_err(|_| invalid("agent", "expected an Agent"))
}

/// The tracker a router reads: the one given, the capacity manager's, or a new one.
fn resolve_tracker(
    tracker: Option<&Bound<'_, PyLoadTracker>>,
    capacity: Option<&Bound<'_, PyCapacityManager>>,
    clock: Option<&Bound<'_, PyManualClock>>,
    stale_after_s: f64,
    backend: &BackendArgs<'_>,
) -> PyResult<Arc<LoadTracker>> {
    let from_capacity = capacity.map(|c| c.get().0.tracker().clone());
    if backend.url.is_some() && (tracker.is_some() || capacity.is_some()) {
        return Err(invalid(
            "backend",
            "give it to the LoadTracker passed as tracker, not to the Router as well",
        ));
    }
    match (tracker.map(|t| t.get().0.clone()), from_capacity) {
        (Some(t), Some(c)) if !Arc::ptr_eq(&t, &c) => Err(invalid(
            "capacity",
            "reads a different LoadTracker than the one given as tracker",
        )),
        (Some(t), _) | (None, Some(t)) => {
            if clock.is_some() {
                return Err(invalid("clock", "the given tracker already has a clock"));
            }
            Ok(t)
        }
        (None, None) => new_tracker(stale_after_s, clock_from(clock), backend),
    }
}

#[pymethods]
impl PyRouter {
    #[new]
    #[pyo3(signature = (models, strategy="optimal", load_balancing=true, load_weight=0.5,
                        *, policy="weighted", weights=None, tracker=None, capacity=None,
                        performance=None, adaptive=None, clock=None, stale_after_s=60.0,
                        backend=None, lease_ttl_s=30.0, fail_mode="open", timeout_s=0.5))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        models: &Bound<'_, PyAny>,
        strategy: &str,
        load_balancing: bool,
        load_weight: f64,
        policy: &str,
        weights: Option<PyScoreWeights>,
        tracker: Option<&Bound<'_, PyLoadTracker>>,
        capacity: Option<&Bound<'_, PyCapacityManager>>,
        performance: Option<&Bound<'_, PyPerformanceTracker>>,
        adaptive: Option<&Bound<'_, PyAdaptiveScorer>>,
        clock: Option<&Bound<'_, PyManualClock>>,
        stale_after_s: f64,
        backend: Option<&str>,
        lease_ttl_s: f64,
        fail_mode: &str,
        timeout_s: f64,
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
        let backend = BackendArgs {
            url: backend,
            lease_ttl_s,
            fail_mode,
            timeout_s,
        };
        let tracker = resolve_tracker(tracker, capacity, clock, stale_after_s, &backend)?;
        let feeds = Feeds {
            load: tracker,
            capacity: capacity.map(|c| c.get().0.clone()),
            performance: performance.map(|p| p.get().0.clone()),
            adaptive: adaptive.map(|a| a.get().0.clone()),
        };
        let models = models.into_iter().map(|m| m.0).collect();
        let core = Router::new(models, config, feeds)?;
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
    #[getter]
    fn policy(&self) -> &'static str {
        self.core.config.policy.name()
    }
    #[getter]
    fn tracker(&self) -> PyLoadTracker {
        PyLoadTracker(self.core.tracker().clone())
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
    fn route(&self, py: Python<'_>, agent: &Bound<'_, PyAny>) -> PyResult<String> {
        let agent = agent_from(agent)?;
        let route = py.detach(|| self.core.route(&agent.0))?;
        Ok(self.core.models[route.model].id.clone())
    }

    /// Routes and reserves atomically: `with router.request(agent) as r: call(r.model_id)`.
    /// The slot (or queue place) is given back on exit, exception or cancellation.
    fn request(&self, py: Python<'_>, agent: &Bound<'_, PyAny>) -> PyResult<PyInFlight> {
        let agent = agent_from(agent)?;
        let (_, flight) = py.detach(|| self.core.admit(&agent.0))?;
        Ok(PyInFlight::flying(flight))
    }

    /// `with router.track(model_id):` counts one active request on the model for the block
    /// and records its latency and outcome (failed when the block raises or `mark_failed()`).
    #[pyo3(signature = (model_id, agent_id=None))]
    fn track(&self, model_id: &str, agent_id: Option<&str>) -> PyResult<PyInFlight> {
        let j = self.core.model_index(model_id)?;
        let feedback = self.core.feedback(j, agent_id);
        let clock = self.core.tracker().clock().clone();
        Ok(PyInFlight::pending(
            self.core.state(j).clone(),
            clock,
            Some(feedback),
        ))
    }

    /// Records one finished request observed outside `track`.
    #[pyo3(signature = (model_id, latency_ms, success=true, agent_id=None))]
    fn record(
        &self,
        model_id: &str,
        latency_ms: f64,
        success: bool,
        agent_id: Option<&str>,
    ) -> PyResult<()> {
        let j = self.core.model_index(model_id)?;
        Ok(self.core.record(j, agent_id, latency_ms, success)?)
    }

    /// The model's live load (stale or not); KeyError for an unknown id.
    fn load(&self, py: Python<'_>, model_id: &str) -> PyResult<PyModelLoad> {
        let j = self.core.model_index(model_id)?;
        Ok(PyModelLoad(py.detach(|| self.core.state(j).snapshot())))
    }

    /// Assigns each agent at most one model; agents that fit nowhere are listed in `unassigned`.
    fn assign(&self, py: Python<'_>, agents: &Bound<'_, PyAny>) -> PyResult<PyAssignmentResult> {
        let agents: Vec<PyAgent> = agents
            .extract()
            .map_err(|_| invalid("agents", "expected a list of Agent objects"))?;
        let outcome = py.detach(|| {
            let profiles: Vec<&AgentProfile> = agents.iter().map(|a| &a.0).collect();
            self.core.assign(&profiles)
        })?;
        let rows = outcome
            .placements
            .iter()
            .map(|p| {
                let row = PyAssignment {
                    agent_id: agents[p.agent].0.id.clone(),
                    model_id: self.core.models[p.model].id.clone(),
                    score: p.score,
                };
                Py::new(py, row)
            })
            .collect::<PyResult<_>>()?;
        let unassigned = outcome.unassigned.iter().map(|&i| agents[i].0.id.clone());
        Ok(PyAssignmentResult {
            assignments: rows,
            total_score: outcome.total_score,
            strategy_used: outcome.strategy.name(),
            load_balancing_enabled: outcome.load_balancing,
            models_filtered: outcome.models_filtered,
            avg_utilization: outcome.avg_utilization,
            unassigned: unassigned.collect(),
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "Router({} models, strategy={:?}, load_balancing={}, load_weight={})",
            self.core.models.len(),
            self.core.config.strategy.name(),
            self.core.config.load_balancing,
            self.core.config.load_weight
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyAssignment>()?;
    m.add_class::<PyAssignmentResult>()?;
    m.add_class::<PyRouter>()?;
    Ok(())
}
