//! LoadBalancer: the router's per-request policies over caller-supplied scores.

use numpy::PyArray1;
use pyo3::prelude::*;

use super::arrays;
use super::load::PyLoadTracker;
use crate::balancer::{BalancerConfig, LoadBalancer};

#[pyclass(frozen, module = "modelrouter", name = "LoadBalancer")]
pub struct PyLoadBalancer(LoadBalancer);

#[pymethods]
impl PyLoadBalancer {
    #[new]
    #[pyo3(signature = (tracker, policy="weighted", load_weight=0.5, *, active_request_bias=1.0))]
    fn new(
        tracker: &Bound<'_, PyLoadTracker>,
        policy: &str,
        load_weight: f64,
        active_request_bias: f64,
    ) -> PyResult<Self> {
        let config = BalancerConfig::new(load_weight, active_request_bias)?;
        let tracker = tracker.get().0.clone();
        Ok(PyLoadBalancer(LoadBalancer::new(
            tracker,
            policy.parse()?,
            config,
        )))
    }

    #[getter]
    fn policy(&self) -> &'static str {
        self.0.policy.name()
    }
    #[getter]
    fn load_weight(&self) -> f64 {
        self.0.config.load_weight
    }

    /// The ids that are not overloaded (active > max_concurrent or queue > max_queue).
    fn filter(&self, model_ids: Vec<String>) -> PyResult<Vec<String>> {
        Ok(self.0.available(model_ids)?)
    }

    /// `score × (1 − load_weight × utilization)`, −inf for overloaded models.
    fn weighted_scores<'py>(
        &self,
        py: Python<'py>,
        model_ids: Vec<String>,
        scores: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let scores = arrays::vector(scores, "scores", model_ids.len())?;
        Ok(PyArray1::from_vec(
            py,
            self.0.weighted_scores(&model_ids, &scores)?,
        ))
    }

    /// One request's model under the policy; NoCapacityError / InfeasibleError as the router.
    fn choose(&self, model_ids: Vec<String>, scores: &Bound<'_, PyAny>) -> PyResult<String> {
        let scores = arrays::vector(scores, "scores", model_ids.len())?;
        let j = self.0.choose(&model_ids, &scores)?;
        Ok(model_ids[j].clone())
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyLoadBalancer>()
}
