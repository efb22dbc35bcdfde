//! AdaptiveScorer: capability, performance and load in one score (formula in `crate::adaptive`).

use std::sync::Arc;

use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::arrays::vector;
use super::errors::invalid;
use super::load::{clock_from, PyLoadTracker, PyManualClock};
use super::perf::PyPerformanceTracker;
use crate::adaptive::{AdaptiveScorer, AdaptiveWeights};
use crate::perf::{PerfConfig, PerformanceTracker};

/// `score = w_c·capability + w_p·performance + w_l·load` (weights normalised to sum 1), where
/// performance falls at once with latency spikes and failures and recovers over `half_life_s`.
#[pyclass(frozen, module = "modelrouter", name = "AdaptiveScorer")]
pub struct PyAdaptiveScorer(pub Arc<AdaptiveScorer>);

fn weights_from(w: &[f64]) -> PyResult<AdaptiveWeights> {
    match *w {
        [capability, performance, load] => Ok(AdaptiveWeights {
            capability,
            performance,
            load,
        }),
        _ => Err(invalid(
            "weights",
            format!(
                "must be three numbers (capability, performance, load), got {}",
                w.len()
            ),
        )),
    }
}

#[pymethods]
impl PyAdaptiveScorer {
    /// Without `tracker` the scorer owns a new PerformanceTracker (see `.tracker`); without
    /// `clock` it uses the tracker's clock.
    #[new]
    #[pyo3(signature = (weights=vec![0.5, 0.3, 0.2], *, tracker=None, load=None, half_life_s=30.0, clock=None))]
    fn new(
        weights: Vec<f64>,
        tracker: Option<&Bound<'_, PyPerformanceTracker>>,
        load: Option<&Bound<'_, PyLoadTracker>>,
        half_life_s: f64,
        clock: Option<&Bound<'_, PyManualClock>>,
    ) -> PyResult<Self> {
        let weights = weights_from(&weights)?;
        let (tracker, clock) = match (tracker, clock) {
            (Some(t), Some(c)) => (t.get().0.clone(), clock_from(Some(c))),
            (Some(t), None) => (t.get().0.clone(), t.get().0.clock().clone()),
            (None, c) => {
                let clock = clock_from(c);
                let t = PerformanceTracker::new(PerfConfig::default(), clock.clone())?;
                (Arc::new(t), clock)
            }
        };
        let load = load.map(|l| l.get().0.clone());
        Ok(PyAdaptiveScorer(Arc::new(AdaptiveScorer::new(
            weights,
            tracker,
            load,
            half_life_s,
            clock,
        )?)))
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

    /// The PerformanceTracker the scorer learns from.
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
    ) -> PyResult<Bound<'py, PyDict>> {
        let b = py.detach(|| self.0.breakdown(model_id, capability))?;
        let d = PyDict::new(py);
        d.set_item("capability", b.capability)?;
        d.set_item("performance", b.performance)?;
        d.set_item("success", b.success)?;
        d.set_item("latency_factor", b.latency_factor)?;
        d.set_item("latency_ms", Some(b.latency_ms).filter(|l| !l.is_nan()))?;
        d.set_item("load", b.load)?;
        d.set_item("cold", b.cold)?;
        d.set_item("score", b.score)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        let (c, p, l) = self.weights();
        format!(
            "AdaptiveScorer(weights=({c:.3}, {p:.3}, {l:.3}), half_life_s={})",
            self.0.half_life_s()
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyAdaptiveScorer>()?;
    Ok(())
}
