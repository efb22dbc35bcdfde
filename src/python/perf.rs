//! PerformanceTracker and Stats, with notebook exports (dicts, numpy arrays, HTML tables).

use std::sync::Arc;

use numpy::PyArray1;
use pyo3::prelude::*;

use super::errors::int;

use super::arrays::{pymethods_with_getters, to_py};
use super::capability::non_negative;
use super::load::{clock_from, PyManualClock};
use crate::perf::{Kind, LatencyHistogram, PerfConfig, PerformanceTracker, Stats};

/// A reading of one model or agent. Latency fields are None until a sample is in the window.
#[pyclass(frozen, module = "modelrouter", name = "Stats")]
pub struct PyStats(pub Stats);

pymethods_with_getters! {
    PyStats, 0 {
        count: u64, successes: u64, failures: u64, success_rate: Option<f64>,
        p50_ms: Option<f64>, p95_ms: Option<f64>, p99_ms: Option<f64>, mean_ms: Option<f64>,
        ewma_ms: Option<f64>, min_ms: Option<f64>, max_ms: Option<f64>,
        /// Clock time of the newest sample (None before the first).
        last_seen: Option<f64>,
    }
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.0)
    }
    fn _repr_html_(&self) -> String {
        self.0.html()
    }
    fn __repr__(&self) -> String {
        self.0.to_string()
    }
}

/// Since-start counts of one model under given latency bounds: a Prometheus histogram.
#[pyclass(frozen, module = "modelrouter", name = "LatencyHistogram")]
pub struct PyLatencyHistogram(pub LatencyHistogram);

pymethods_with_getters! {
    PyLatencyHistogram, 0 { count: u64, successes: u64, failures: u64, sum_ms: f64 }
    /// The upper bounds asked for (ms), ascending.
    #[getter]
    fn bounds_ms(&self) -> Vec<f64> {
        self.0.bounds_ms.clone()
    }
    /// Samples at or under each bound, cumulative (a sample < 1/128 above a bound may count).
    #[getter]
    fn counts(&self) -> Vec<u64> {
        self.0.cumulative.clone()
    }
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.0)
    }
    fn __repr__(&self) -> String {
        self.0.to_string()
    }
}

/// Latency and success statistics per model and per agent (HdrHistogram percentiles).
#[pyclass(frozen, module = "modelrouter", name = "PerformanceTracker")]
pub struct PyPerformanceTracker(pub Arc<PerformanceTracker>);

#[pymethods]
impl PyPerformanceTracker {
    #[new]
    #[pyo3(signature = (window_s=None, *, clock=None, recent_samples=1024, max_agents=10_000))]
    fn new(
        window_s: Option<f64>,
        clock: Option<&Bound<'_, PyManualClock>>,
        #[pyo3(from_py_with = int::recent_samples)] recent_samples: i64,
        #[pyo3(from_py_with = int::max_agents)] max_agents: i64,
    ) -> PyResult<Self> {
        let max_agents = non_negative("max_agents", max_agents)? as usize;
        let recent_samples = non_negative("recent_samples", recent_samples)? as usize;
        let config = PerfConfig {
            window_s,
            recent_samples,
            max_agents,
        };
        let core = PerformanceTracker::new(config, clock_from(clock))?;
        Ok(PyPerformanceTracker(Arc::new(core)))
    }

    /// Agent ids dropped (least recently seen first) to stay within `max_agents`.
    #[getter]
    fn evicted_agents(&self) -> u64 {
        self.0.evicted_agents()
    }
    /// How many agent ids have statistics now (at most `max_agents`).
    #[getter]
    fn agents_tracked(&self) -> usize {
        self.0.agent_count()
    }
    #[getter]
    fn max_agents(&self) -> usize {
        self.0.config().max_agents
    }
    #[getter]
    fn window_s(&self) -> Option<f64> {
        self.0.config().window_s
    }

    /// Records one request; NaN, infinite or negative latency raises ValueError.
    #[pyo3(signature = (model_id, latency_ms, success=true, agent_id=None))]
    fn record(
        &self,
        model_id: &str,
        latency_ms: f64,
        success: bool,
        agent_id: Option<&str>,
    ) -> PyResult<()> {
        Ok(self.0.record(model_id, agent_id, latency_ms, success)?)
    }

    fn stats(&self, model_id: &str) -> PyResult<PyStats> {
        Ok(PyStats(self.0.stats(model_id)?))
    }

    fn agent_stats(&self, agent_id: &str) -> PyResult<PyStats> {
        Ok(PyStats(self.0.agent_stats(agent_id)?))
    }

    /// Every model taken together over the window (all zero / None before any sample).
    fn fleet_stats(&self, py: Python<'_>) -> PyStats {
        PyStats(py.detach(|| self.0.aggregate(Kind::Model)))
    }

    /// Since-start counts of the model at or under each of `bounds_ms` (ascending, at most one
    /// hour), with its count, outcomes and latency sum; never windowed, so never decreasing.
    fn latency_histogram(
        &self,
        py: Python<'_>,
        model_id: &str,
        bounds_ms: Vec<f64>,
    ) -> PyResult<PyLatencyHistogram> {
        let h = py.detach(|| self.0.latency_histogram(Kind::Model, model_id, &bounds_ms))?;
        Ok(PyLatencyHistogram(h))
    }

    fn model_ids(&self) -> Vec<String> {
        self.0.model_ids()
    }

    fn agent_ids(&self) -> Vec<String> {
        self.0.agent_ids()
    }

    /// Adds everything `other` recorded, as if it had been recorded here.
    fn merge(&self, py: Python<'_>, other: &Bound<'_, PyPerformanceTracker>) -> PyResult<()> {
        let other = other.get().0.clone();
        Ok(py.detach(|| self.0.merge(&other))?)
    }

    /// Latencies (ms) of the model's most recent requests, oldest first.
    fn recent_latencies<'py>(
        &self,
        py: Python<'py>,
        model_id: &str,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let (_, latencies, _) = self.0.recent_columns(Kind::Model, model_id)?;
        Ok(PyArray1::from_vec(py, latencies))
    }

    /// (times, latencies_ms, successes) of the model's most recent requests, oldest first.
    #[allow(clippy::type_complexity)]
    fn recent<'py>(
        &self,
        py: Python<'py>,
        model_id: &str,
    ) -> PyResult<(
        Bound<'py, PyArray1<f64>>,
        Bound<'py, PyArray1<f64>>,
        Bound<'py, PyArray1<bool>>,
    )> {
        let (t, l, ok) = self.0.recent_columns(Kind::Model, model_id)?;
        let array = |v| PyArray1::from_vec(py, v);
        Ok((array(t), array(l), PyArray1::from_vec(py, ok)))
    }

    /// Bytes held by the tracker (histograms, counters, rings, ids, map tables).
    fn memory_bytes(&self) -> usize {
        self.0.memory_bytes()
    }

    /// `{"models": {id: stats}, "agents": {id: stats}}`.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &py.detach(|| self.0.snapshot()))
    }

    fn _repr_html_(&self, py: Python<'_>) -> String {
        py.detach(|| self.0.snapshot().html())
    }

    fn __repr__(&self) -> String {
        self.0.to_string()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyStats>()?;
    m.add_class::<PyPerformanceTracker>()?;
    m.add_class::<PyLatencyHistogram>()?;
    Ok(())
}
