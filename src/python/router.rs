//! Router, AssignmentResult and Assignment.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use super::capability::{weights_or_default, PyAgent, PyModel, PyScoreWeights};
use super::errors::invalid;
use crate::capability::AgentProfile;
use crate::router::{LoadSnapshot, Router, RouterConfig};
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

/// Assigns agents to a fixed fleet of models with one of three strategies.
#[pyclass(frozen, module = "modelrouter", name = "Router")]
pub struct PyRouter {
    core: Router,
}

#[pymethods]
impl PyRouter {
    #[new]
    #[pyo3(signature = (models, strategy="optimal", load_balancing=true, load_weight=0.5,
                        *, weights=None))]
    fn new(
        models: &Bound<'_, PyAny>,
        strategy: &str,
        load_balancing: bool,
        load_weight: f64,
        weights: Option<PyScoreWeights>,
    ) -> PyResult<Self> {
        let models: Vec<PyModel> = models
            .extract()
            .map_err(|_| invalid("models", "expected a list of Model objects"))?;
        let config = RouterConfig {
            strategy: strategy.parse::<Strategy>()?,
            load_balancing,
            load_weight,
            weights: weights_or_default(weights),
        };
        let core = Router::new(models.into_iter().map(|m| m.0).collect(), config)?;
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

    /// Assigns each agent at most one model; agents that fit nowhere are listed in `unassigned`.
    fn assign(&self, py: Python<'_>, agents: &Bound<'_, PyAny>) -> PyResult<PyAssignmentResult> {
        let agents: Vec<PyAgent> = agents
            .extract()
            .map_err(|_| invalid("agents", "expected a list of Agent objects"))?;
        let loads = vec![LoadSnapshot::default(); self.core.models.len()];
        let outcome = py.detach(|| {
            let profiles: Vec<&AgentProfile> = agents.iter().map(|a| &a.0).collect();
            self.core.assign(&profiles, &loads)
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
