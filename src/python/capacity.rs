//! ScalingRule, ScalingAction and CapacityManager.

use std::sync::Arc;

use pyo3::prelude::*;

use super::arrays::{pymethods_with_getters, to_py};
use super::load::{clock_from, PyLoadTracker, PyManualClock};
use crate::capacity::{ActionKind, CapacityManager, ScalingAction, ScalingRule};

/// Fires `action` once utilization has stayed >= `threshold_utilization` for
/// `threshold_duration_s` seconds.
#[pyclass(
    frozen,
    eq,
    from_py_object,
    module = "modelrouter",
    name = "ScalingRule"
)]
#[derive(Clone, PartialEq)]
pub struct PyScalingRule(pub ScalingRule);

pymethods_with_getters! {
    PyScalingRule, 0 {
        threshold_utilization: f64, threshold_duration_s: f64,
    }
    #[new]
    #[pyo3(signature = (threshold_utilization, threshold_duration_s=0.0, action="alert_only"))]
    fn new(threshold_utilization: f64, threshold_duration_s: f64, action: &str) -> PyResult<Self> {
        Ok(PyScalingRule(ScalingRule::new(
            threshold_utilization,
            threshold_duration_s,
            action.parse::<ActionKind>()?,
        )?))
    }
    #[getter]
    fn action(&self) -> &'static str {
        self.0.action.name()
    }
    fn __repr__(&self) -> String {
        self.0.to_string()
    }
}

/// A rule firing for a model now.
#[pyclass(frozen, module = "modelrouter", name = "ScalingAction")]
pub struct PyScalingAction(pub ScalingAction);

pymethods_with_getters! {
    PyScalingAction, 0 {
        utilization: f64, since: f64, suggested_replicas: u64,
    }
    #[getter]
    fn model_id(&self) -> &str {
        &self.0.model_id
    }
    #[getter]
    fn action(&self) -> &'static str {
        self.0.action.name()
    }
    #[getter]
    fn rule(&self) -> PyScalingRule {
        PyScalingRule(self.0.rule)
    }
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.0)
    }
    fn __repr__(&self) -> String {
        self.0.to_string()
    }
}

/// Scaling rules evaluated against a LoadTracker.
#[pyclass(frozen, module = "modelrouter", name = "CapacityManager")]
pub struct PyCapacityManager(pub Arc<CapacityManager>);

#[pymethods]
impl PyCapacityManager {
    #[new]
    #[pyo3(signature = (rules, tracker=None, *, clock=None))]
    fn new(
        rules: Vec<PyScalingRule>,
        tracker: Option<&Bound<'_, PyLoadTracker>>,
        clock: Option<&Bound<'_, PyManualClock>>,
    ) -> PyResult<Self> {
        let rules = rules.into_iter().map(|r| r.0).collect();
        let tracker = tracker.map(|t| t.get().0.clone());
        let clock = clock.map(|c| clock_from(Some(c)));
        let core = CapacityManager::with_tracker_or_clock(rules, tracker, clock)?;
        Ok(PyCapacityManager(Arc::new(core)))
    }

    #[getter]
    fn tracker(&self) -> PyLoadTracker {
        PyLoadTracker(self.0.tracker().clone())
    }

    #[getter]
    fn rules(&self) -> Vec<PyScalingRule> {
        self.0.rules().iter().copied().map(PyScalingRule).collect()
    }

    /// The strongest action firing for `model_id` now, or None.
    fn check(&self, model_id: &str) -> PyResult<Option<PyScalingAction>> {
        Ok(self.0.check(model_id)?.map(PyScalingAction))
    }

    /// Every firing action across the tracker's models.
    fn check_all(&self) -> Vec<PyScalingAction> {
        self.0
            .check_all()
            .into_iter()
            .map(PyScalingAction)
            .collect()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyScalingRule>()?;
    m.add_class::<PyScalingAction>()?;
    m.add_class::<PyCapacityManager>()?;
    Ok(())
}
