//! PerformanceTracker and Stats, with notebook exports (dicts, numpy arrays, HTML tables).

use std::sync::Arc;

use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::errors::invalid;
use super::load::{clock_from, PyManualClock};
use crate::perf::{Kind, LatencyHistogram, PerfConfig, PerformanceTracker, Stats};

/// Minimal HTML escaping for ids shown in `_repr_html_` tables.
pub fn escape_html(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

const COLUMNS: [&str; 10] = [
    "count",
    "success",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "mean ms",
    "ewma ms",
    "min ms",
    "max ms",
    "last seen",
];

fn cell(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{v:.digits$}"))
}

/// One `<tr>` of the stats table.
fn html_row(label: &str, s: &Stats) -> String {
    let cells = [
        s.count.to_string(),
        cell(s.success_rate, 3),
        cell(s.p50_ms, 1),
        cell(s.p95_ms, 1),
        cell(s.p99_ms, 1),
        cell(s.mean_ms, 1),
        cell(s.ewma_ms, 1),
        cell(s.min_ms, 1),
        cell(s.max_ms, 1),
        cell(s.last_seen, 1),
    ];
    let tds: String = cells.iter().map(|c| format!("<td>{c}</td>")).collect();
    format!("<tr><th>{label}</th>{tds}</tr>")
}

fn html_table(rows: &[String]) -> String {
    let head: String = COLUMNS.iter().map(|c| format!("<th>{c}</th>")).collect();
    format!(
        "<table><thead><tr><th></th>{head}</tr></thead><tbody>{}</tbody></table>",
        rows.concat()
    )
}

fn stats_dict<'py>(py: Python<'py>, s: &Stats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("count", s.count)?;
    d.set_item("successes", s.successes)?;
    d.set_item("failures", s.failures)?;
    d.set_item("success_rate", s.success_rate)?;
    d.set_item("p50_ms", s.p50_ms)?;
    d.set_item("p95_ms", s.p95_ms)?;
    d.set_item("p99_ms", s.p99_ms)?;
    d.set_item("mean_ms", s.mean_ms)?;
    d.set_item("ewma_ms", s.ewma_ms)?;
    d.set_item("min_ms", s.min_ms)?;
    d.set_item("max_ms", s.max_ms)?;
    d.set_item("last_seen", s.last_seen)?;
    Ok(d)
}

/// A reading of one model or agent. Latency fields are None until a sample is in the window.
#[pyclass(frozen, module = "modelrouter", name = "Stats")]
pub struct PyStats(pub Stats);

#[pymethods]
impl PyStats {
    #[getter]
    fn count(&self) -> u64 {
        self.0.count
    }
    #[getter]
    fn successes(&self) -> u64 {
        self.0.successes
    }
    #[getter]
    fn failures(&self) -> u64 {
        self.0.failures
    }
    #[getter]
    fn success_rate(&self) -> Option<f64> {
        self.0.success_rate
    }
    #[getter]
    fn p50_ms(&self) -> Option<f64> {
        self.0.p50_ms
    }
    #[getter]
    fn p95_ms(&self) -> Option<f64> {
        self.0.p95_ms
    }
    #[getter]
    fn p99_ms(&self) -> Option<f64> {
        self.0.p99_ms
    }
    #[getter]
    fn mean_ms(&self) -> Option<f64> {
        self.0.mean_ms
    }
    #[getter]
    fn ewma_ms(&self) -> Option<f64> {
        self.0.ewma_ms
    }
    #[getter]
    fn min_ms(&self) -> Option<f64> {
        self.0.min_ms
    }
    #[getter]
    fn max_ms(&self) -> Option<f64> {
        self.0.max_ms
    }
    /// Clock time of the newest sample (None before the first).
    #[getter]
    fn last_seen(&self) -> Option<f64> {
        self.0.last_seen
    }
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        stats_dict(py, &self.0)
    }
    fn _repr_html_(&self) -> String {
        html_table(&[html_row("", &self.0)])
    }
    fn __repr__(&self) -> String {
        format!(
            "Stats(count={}, success_rate={}, p50_ms={}, p95_ms={}, p99_ms={})",
            self.0.count,
            cell(self.0.success_rate, 3),
            cell(self.0.p50_ms, 1),
            cell(self.0.p95_ms, 1),
            cell(self.0.p99_ms, 1)
        )
    }
}

/// Since-start counts of one model under given latency bounds: a Prometheus histogram.
#[pyclass(frozen, module = "modelrouter", name = "LatencyHistogram")]
pub struct PyLatencyHistogram(pub LatencyHistogram);

#[pymethods]
impl PyLatencyHistogram {
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
    #[getter]
    fn count(&self) -> u64 {
        self.0.count
    }
    #[getter]
    fn successes(&self) -> u64 {
        self.0.successes
    }
    #[getter]
    fn failures(&self) -> u64 {
        self.0.failures
    }
    #[getter]
    fn sum_ms(&self) -> f64 {
        self.0.sum_ms
    }
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("bounds_ms", &self.0.bounds_ms)?;
        d.set_item("counts", &self.0.cumulative)?;
        d.set_item("count", self.0.count)?;
        d.set_item("successes", self.0.successes)?;
        d.set_item("failures", self.0.failures)?;
        d.set_item("sum_ms", self.0.sum_ms)?;
        Ok(d)
    }
    fn __repr__(&self) -> String {
        format!(
            "LatencyHistogram(bounds_ms={:?}, counts={:?}, count={}, sum_ms={:?})",
            self.0.bounds_ms, self.0.cumulative, self.0.count, self.0.sum_ms
        )
    }
}

/// Latency and success statistics per model and per agent (HdrHistogram percentiles).
#[pyclass(frozen, module = "modelrouter", name = "PerformanceTracker")]
pub struct PyPerformanceTracker(pub Arc<PerformanceTracker>);

impl PyPerformanceTracker {
    fn all(&self, py: Python<'_>) -> [(Kind, Vec<(String, Stats)>); 2] {
        py.detach(|| [Kind::Model, Kind::Agent].map(|kind| (kind, self.0.all_stats(kind))))
    }
}

#[pymethods]
impl PyPerformanceTracker {
    #[new]
    #[pyo3(signature = (window_s=None, *, clock=None, recent_samples=1024, max_agents=10_000))]
    fn new(
        window_s: Option<f64>,
        clock: Option<&Bound<'_, PyManualClock>>,
        recent_samples: i64,
        max_agents: i64,
    ) -> PyResult<Self> {
        let max_agents = usize::try_from(max_agents)
            .map_err(|_| invalid("max_agents", format!("must be >= 1, got {max_agents}")))?;
        let recent_samples = usize::try_from(recent_samples).map_err(|_| {
            invalid(
                "recent_samples",
                format!("must be >= 0, got {recent_samples}"),
            )
        })?;
        let config = PerfConfig {
            window_s,
            recent_samples,
            max_agents,
        };
        Ok(PyPerformanceTracker(Arc::new(PerformanceTracker::new(
            config,
            clock_from(clock),
        )?)))
    }

    /// Agent ids dropped (least recently seen first) to stay within `max_agents`.
    #[getter]
    fn evicted_agents(&self) -> u64 {
        self.0.evicted_agents()
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
        let samples = self.0.recent(Kind::Model, model_id)?;
        let latencies = samples.iter().map(|s| f64::from(s.latency_ms)).collect();
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
        let samples = self.0.recent(Kind::Model, model_id)?;
        let t = samples.iter().map(|s| s.t).collect();
        let l = samples.iter().map(|s| f64::from(s.latency_ms)).collect();
        let ok = samples.iter().map(|s| s.success).collect();
        Ok((
            PyArray1::from_vec(py, t),
            PyArray1::from_vec(py, l),
            PyArray1::from_vec(py, ok),
        ))
    }

    /// Bytes held by the tracker (histograms, counters, rings, ids, map tables).
    fn memory_bytes(&self) -> usize {
        self.0.memory_bytes()
    }

    /// `{"models": {id: stats}, "agents": {id: stats}}`.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        for (kind, entries) in self.all(py) {
            let d = PyDict::new(py);
            for (id, s) in &entries {
                d.set_item(id, stats_dict(py, s)?)?;
            }
            let key = if kind == Kind::Model {
                "models"
            } else {
                "agents"
            };
            out.set_item(key, d)?;
        }
        Ok(out)
    }

    fn _repr_html_(&self, py: Python<'_>) -> String {
        let rows: Vec<String> = self
            .all(py)
            .iter()
            .flat_map(|(kind, entries)| {
                let prefix = if *kind == Kind::Model {
                    "model"
                } else {
                    "agent"
                };
                entries
                    .iter()
                    .map(move |(id, s)| html_row(&format!("{prefix} {}", escape_html(id)), s))
            })
            .collect();
        html_table(&rows)
    }

    fn __repr__(&self) -> String {
        format!(
            "PerformanceTracker(models={}, agents={}, window_s={:?})",
            self.0.model_ids().len(),
            self.0.agent_ids().len(),
            self.0.config().window_s
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyStats>()?;
    m.add_class::<PyPerformanceTracker>()?;
    m.add_class::<PyLatencyHistogram>()?;
    Ok(())
}
