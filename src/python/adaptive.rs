//! AdaptiveScorer: capability, performance and load in one score (formula in `crate::adaptive`).

use std::sync::Arc;

use numpy::PyArray1;
use pyo3::prelude::*;

use super::arrays::{renamed, to_py, vector};
use super::load::{clock_from, PyLoadTracker, PyManualClock};
use super::perf::PyPerformanceTracker;
use crate::adaptive::{AdaptiveScorer, AdaptiveWeights};

/// `score = w_c·capability + w_p·performance + w_l·load` (weights normalised to sum 1), where
/// performance falls at once with latency spikes and failures and recovers over `half_life_s`.
#[pyclass(frozen, module = "modelrouter", name = "AdaptiveScorer")]
pub struct PyAdaptiveScorer(pub Arc<AdaptiveScorer>);

#[pymethods]
impl PyAdaptiveScorer {
    /// Without `performance` (a PerformanceTracker; `tracker` is its deprecated alias) the
    /// scorer owns a new one (see `.tracker`); without `clock` it uses the tracker's clock.
    #[new]
    #[pyo3(signature = (weights=vec![0.5, 0.3, 0.2], *, performance=None, load=None, half_life_s=30.0, clock=None, tracker=None))]
    fn new(
        py: Python<'_>,
        weights: Vec<f64>,
        performance: Option<&Bound<'_, PyPerformanceTracker>>,
        load: Option<&Bound<'_, PyLoadTracker>>,
        half_life_s: f64,
        clock: Option<&Bound<'_, PyManualClock>>,
        tracker: Option<&Bound<'_, PyPerformanceTracker>>,
    ) -> PyResult<Self> {
        let performance = renamed(
            py,
            "AdaptiveScorer",
            ("performance", performance),
            ("tracker", tracker),
        )?;
        let weights = AdaptiveWeights::from_slice(&weights)?;
        let (tracker, load) = (
            performance.map(|t| t.get().0.clone()),
            load.map(|l| l.get().0.clone()),
        );
        let clock = clock.map(|c| clock_from(Some(c)));
        let core =
            AdaptiveScorer::with_tracker_or_clock(weights, tracker, load, half_life_s, clock)?;
        Ok(PyAdaptiveScorer(Arc::new(core)))
    }

    /// Normalised (capability, performance, load) weights.
    #[getter]
    fn weights(&self) -> (f64, f64, f64) {
        let w = self.0.weights();
        (w.capability, w.performance, w.load)
    }

    #[getter]
    fn half_life_s(&self) -> f64 {
        self.0.half_life_s()
    }

    /// The PerformanceTracker the scorer learns from (given as `performance=`).
    #[getter]
    fn tracker(&self) -> PyPerformanceTracker {
        PyPerformanceTracker(self.0.tracker().clone())
    }

    #[getter]
    fn load(&self) -> Option<PyLoadTracker> {
        self.0.load_tracker().cloned().map(PyLoadTracker)
    }

    /// Shorthand for `scorer.tracker.record(...)`.
    #[pyo3(signature = (model_id, latency_ms, success=true, agent_id=None))]
    fn record(
        &self,
        model_id: &str,
        latency_ms: f64,
        success: bool,
        agent_id: Option<&str>,
    ) -> PyResult<()> {
        Ok(self
            .0
            .tracker()
            .record(model_id, agent_id, latency_ms, success)?)
    }

    /// Score of one model; `capability` may be -inf (infeasible), which stays -inf.
    fn score(&self, py: Python<'_>, model_id: &str, capability: f64) -> PyResult<f64> {
        Ok(py.detach(|| self.0.score(model_id, capability))?)
    }

    /// Scores of many models in one call: float64 array aligned with `model_ids`.
    fn scores<'py>(
        &self,
        py: Python<'py>,
        model_ids: Vec<String>,
        capabilities: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let caps = vector(capabilities, "capabilities", model_ids.len())?;
        let ids: Vec<&str> = model_ids.iter().map(String::as_str).collect();
        let out = py.detach(|| self.0.scores(&ids, &caps))?;
        Ok(PyArray1::from_vec(py, out))
    }

    /// The performance component alone, in (0, 1]; cold models get the fleet's typical value.
    fn performance(&self, py: Python<'_>, model_id: &str) -> f64 {
        py.detach(|| self.0.performance(model_id))
    }

    /// Every component and input of one model's score, for inspection.
    #[pyo3(signature = (model_id, capability=0.0))]
    fn explain<'py>(
        &self,
        py: Python<'py>,
        model_id: &str,
        capability: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let breakdown = py.detach(|| self.0.breakdown(model_id, capability))?;
        to_py(py, &breakdown)
    }

    fn __repr__(&self) -> String {
        self.0.to_string()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyAdaptiveScorer>()?;
    Ok(())
}
