//! Agent, Model, ScoreWeights and cost_matrix.

use std::collections::HashMap;

use pyo3::prelude::*;

use super::errors::{int, tokens};
use crate::limits::Limits;

use super::arrays::{self, levels_to_py, pymethods_with_getters, to_py};
use super::errors::invalid;
use crate::capability::{
    cost_matrix as named_cost_matrix, AgentProfile, DenseArrays, ModelProfile, ScoreWeights,
    MODEL_DEFAULTS as D,
};

/// Non-negative integer argument, so that −1 is a ValueError naming the field, not an
/// OverflowError.
pub fn non_negative(field: &str, value: i64) -> PyResult<u64> {
    Ok(crate::error::non_negative(field, value)?)
}

fn entries(map: Option<HashMap<String, f64>>) -> Vec<(String, f64)> {
    map.map_or_else(Vec::new, |m| m.into_iter().collect())
}

/// A model deployment: capability levels in [0, 1], context window, capacity and price.
#[pyclass(frozen, eq, from_py_object, module = "modelrouter", name = "Model")]
#[derive(Clone, PartialEq)]
pub struct PyModel(pub ModelProfile);

pymethods_with_getters! {
    PyModel, 0 {
        context_window: u64, max_concurrent: u64, max_queue: u64, target_utilization: f64, cost_per_1k_tokens: f64,
    }
    /// The defaults are the core's `MODEL_DEFAULTS`; the text signature only shows them
    /// (tests/test_registry.py checks that it agrees).
    #[new]
    #[pyo3(signature = (id, capabilities=None, *, context_window=D.context_window as i64,
                        max_concurrent=D.max_concurrent as i64, max_queue=D.max_queue as i64,
                        target_utilization=D.target_utilization,
                        cost_per_1k_tokens=D.cost_per_1k_tokens, rpm=None, tpm=None,
                        max_tokens_in_flight=None),
           text_signature = "(id, capabilities=None, *, context_window=8192, max_concurrent=10, \
                             max_queue=0, target_utilization=0.8, cost_per_1k_tokens=0.0, \
                             rpm=None, tpm=None, max_tokens_in_flight=None)")]
    #[allow(clippy::too_many_arguments)]
    fn new(
        id: String,
        capabilities: Option<HashMap<String, f64>>,
        #[pyo3(from_py_with = int::context_window)] context_window: i64,
        #[pyo3(from_py_with = int::max_concurrent)] max_concurrent: i64,
        #[pyo3(from_py_with = int::max_queue)] max_queue: i64,
        target_utilization: f64,
        cost_per_1k_tokens: f64,
        #[pyo3(from_py_with = tokens::limit::rpm)] rpm: Option<i64>,
        #[pyo3(from_py_with = tokens::limit::tpm)] tpm: Option<i64>,
        #[pyo3(from_py_with = tokens::limit::max_tokens_in_flight)] max_tokens_in_flight: Option<
            i64,
        >,
    ) -> PyResult<Self> {
        let limits = Limits::new(rpm, tpm, max_tokens_in_flight)?;
        Ok(PyModel(ModelProfile::new(
            id,
            entries(capabilities),
            non_negative("context_window", context_window)?,
            non_negative("max_concurrent", max_concurrent)?,
            non_negative("max_queue", max_queue)?,
            target_utilization,
            cost_per_1k_tokens,
        )?
        .with_limits(limits)))
    }

    #[getter]
    fn id(&self) -> &str {
        &self.0.id
    }
    /// Requests per sliding minute; None = unlimited.
    #[getter]
    fn rpm(&self) -> Option<u64> {
        self.0.limits.rpm
    }
    /// Tokens (prompt + output) per sliding minute; None = unlimited.
    #[getter]
    fn tpm(&self) -> Option<u64> {
        self.0.limits.tpm
    }
    /// Tokens the deployment holds at once (its KV cache); None = unlimited.
    #[getter]
    fn max_tokens_in_flight(&self) -> Option<u64> {
        self.0.limits.max_tokens_in_flight
    }
    #[getter]
    fn capabilities<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        levels_to_py(py, &self.0.capabilities)
    }
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.0)
    }
    fn __repr__(&self) -> String {
        self.0.to_string()
    }
    fn _repr_html_(&self) -> String {
        self.0.html()
    }
}

/// An agent's needs: required capabilities with minimum levels, weighted preferences, context.
#[pyclass(frozen, eq, from_py_object, module = "modelrouter", name = "Agent")]
#[derive(Clone, PartialEq)]
pub struct PyAgent(pub AgentProfile);

pymethods_with_getters! {
    PyAgent, 0 {
        min_context: u64,
    }
    #[new]
    #[pyo3(signature = (id, required=None, preferred=None, *, min_context=0))]
    fn new(
        id: String,
        required: Option<HashMap<String, f64>>,
        preferred: Option<HashMap<String, f64>>,
        #[pyo3(from_py_with = int::min_context)] min_context: i64,
    ) -> PyResult<Self> {
        Ok(PyAgent(AgentProfile::new(
            id,
            entries(required),
            entries(preferred),
            non_negative("min_context", min_context)?,
        )?))
    }

    #[getter]
    fn id(&self) -> &str {
        &self.0.id
    }
    #[getter]
    fn required<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        levels_to_py(py, &self.0.required)
    }
    #[getter]
    fn preferred<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        levels_to_py(py, &self.0.preferred)
    }
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.0)
    }
    fn __repr__(&self) -> String {
        self.0.to_string()
    }
    fn _repr_html_(&self) -> String {
        self.0.html()
    }
}

/// Weights of the score's terms (see `cost_matrix`).
#[pyclass(
    frozen,
    eq,
    from_py_object,
    module = "modelrouter",
    name = "ScoreWeights"
)]
#[derive(Clone, Copy, PartialEq)]
pub struct PyScoreWeights(pub ScoreWeights);

pymethods_with_getters! {
    PyScoreWeights, 0 {
        required: f64, preferred: f64, context: f64, cost: f64,
    }
    #[new]
    #[pyo3(signature = (required=0.6, preferred=0.3, context=0.1, cost=0.0))]
    fn new(required: f64, preferred: f64, context: f64, cost: f64) -> PyResult<Self> {
        Ok(PyScoreWeights(ScoreWeights::new(
            required, preferred, context, cost,
        )?))
    }
    fn __repr__(&self) -> String {
        self.0.to_string()
    }
}

pub fn weights_or_default(weights: Option<PyScoreWeights>) -> ScoreWeights {
    weights.map_or_else(ScoreWeights::default, |w| w.0)
}

/// Cost matrix (agents × models): 1 − score, +inf where a requirement is unmet.
/// Takes lists of `Agent` and `Model`, or dense arrays (agents × k minimum levels,
/// models × k capability levels) plus optional per-row extras.
#[pyfunction]
#[pyo3(signature = (agents, models, *, weights=None, preferred=None, min_context=None,
                    context_window=None, cost_per_1k_tokens=None))]
#[allow(clippy::too_many_arguments)]
fn cost_matrix<'py>(
    py: Python<'py>,
    agents: &Bound<'py, PyAny>,
    models: &Bound<'py, PyAny>,
    weights: Option<PyScoreWeights>,
    preferred: Option<&Bound<'py, PyAny>>,
    min_context: Option<&Bound<'py, PyAny>>,
    context_window: Option<&Bound<'py, PyAny>>,
    cost_per_1k_tokens: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let weights = weights_or_default(weights);
    if let (Ok(agents), Ok(models)) = (
        agents.extract::<Vec<PyAgent>>(),
        models.extract::<Vec<PyModel>>(),
    ) {
        let extras = [
            ("preferred", preferred.is_some()),
            ("min_context", min_context.is_some()),
            ("context_window", context_window.is_some()),
            ("cost_per_1k_tokens", cost_per_1k_tokens.is_some()),
        ];
        if let Some((name, _)) = extras.iter().find(|(_, given)| *given) {
            return Err(invalid(
                name,
                "only applies to dense array input; Agent/Model objects carry it themselves",
            ));
        }
        let (n, m) = (agents.len(), models.len());
        let cost = py.detach(|| {
            let a: Vec<&AgentProfile> = agents.iter().map(|a| &a.0).collect();
            let mm: Vec<&ModelProfile> = models.iter().map(|m| &m.0).collect();
            named_cost_matrix(&a, &mm, &weights)
        })?;
        return arrays::to_matrix(py, cost, n, m);
    }
    let agents = arrays::matrix(agents, "agents")?;
    let models = arrays::matrix(models, "models")?;
    let (n, m) = (agents.1, models.1);
    let vector = |v: Option<&Bound<'py, PyAny>>, field, len| {
        v.map(|v| arrays::vector(v, field, len)).transpose()
    };
    let arrays = DenseArrays {
        preferred: preferred
            .map(|p| arrays::matrix(p, "preferred"))
            .transpose()?,
        min_context: vector(min_context, "min_context", n)?,
        context_window: vector(context_window, "context_window", m)?,
        cost_per_1k_tokens: vector(cost_per_1k_tokens, "cost_per_1k_tokens", m)?,
        agents,
        models,
    };
    let cost = py.detach(|| arrays.cost_matrix(&weights))?;
    arrays::to_matrix(py, cost, n, m)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("MODEL_DEFAULTS", to_py(m.py(), &D)?)?;
    m.add_class::<PyModel>()?;
    m.add_class::<PyAgent>()?;
    m.add_class::<PyScoreWeights>()?;
    m.add_function(wrap_pyfunction!(cost_matrix, m)?)?;
    Ok(())
}
