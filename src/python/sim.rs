//! simulate(), SimulationReport and PolicyResult. The simulation runs with the GIL released on
//! worker threads; the calling thread takes the GIL back only to report progress and to notice
//! Ctrl-C.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;

use numpy::PyArray1;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use super::errors::invalid;
use crate::balancer::Policy;
use crate::sim::{simulate_with_progress, PolicyResult, Scenario, SimulationReport};

/// One policy's measurements over the scenario's request stream.
#[pyclass(frozen, module = "modelrouter", name = "PolicyResult")]
pub struct PyPolicyResult {
    #[pyo3(get)]
    policy: &'static str,
    latencies: Py<PyArray1<f64>>,
    utilization: Vec<(String, f64)>,
    #[pyo3(get)]
    p50_ms: f64,
    #[pyo3(get)]
    p95_ms: f64,
    #[pyo3(get)]
    p99_ms: f64,
    #[pyo3(get)]
    mean_ms: f64,
    #[pyo3(get)]
    avg_utilization: f64,
    #[pyo3(get)]
    requests: u64,
    #[pyo3(get)]
    completed: u64,
    #[pyo3(get)]
    overload_failures: u64,
    #[pyo3(get)]
    rejected: u64,
    #[pyo3(get)]
    retries: u64,
    #[pyo3(get)]
    max_queue_length: u64,
    #[pyo3(get)]
    duration_s: f64,
    #[pyo3(get)]
    throughput_per_s: f64,
}

impl PyPolicyResult {
    fn new(py: Python<'_>, r: PolicyResult, model_ids: &[String]) -> PyResult<Self> {
        let latencies = PyArray1::from_vec(py, r.latencies_ms);
        // Read-only, like the frozen object that owns it.
        latencies.getattr("flags")?.setattr("writeable", false)?;
        Ok(PyPolicyResult {
            policy: r.policy.name(),
            latencies: latencies.unbind(),
            utilization: model_ids
                .iter()
                .cloned()
                .zip(r.per_model_utilization)
                .collect(),
            p50_ms: r.p50_ms,
            p95_ms: r.p95_ms,
            p99_ms: r.p99_ms,
            mean_ms: r.mean_ms,
            avg_utilization: r.avg_utilization,
            requests: r.requests,
            completed: r.completed,
            overload_failures: r.overload_failures,
            rejected: r.rejected,
            retries: r.retries,
            max_queue_length: r.max_queue_length,
            duration_s: r.duration_s,
            throughput_per_s: r.throughput_per_s,
        })
    }
}

#[pymethods]
impl PyPolicyResult {
    /// End-to-end latency of every completed request in ms (read-only float64 array).
    #[getter]
    fn latencies_ms<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.latencies.bind(py).clone()
    }

    /// Model id → time-averaged busy slots / max_concurrent; a fresh dict each call.
    #[getter]
    fn per_model_utilization<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (id, u) in &self.utilization {
            d.set_item(id, u)?;
        }
        Ok(d)
    }

    /// Every field except the latency samples (their count is `completed`).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("policy", self.policy)?;
        for (key, value) in [
            ("p50_ms", self.p50_ms),
            ("p95_ms", self.p95_ms),
            ("p99_ms", self.p99_ms),
            ("mean_ms", self.mean_ms),
            ("avg_utilization", self.avg_utilization),
            ("duration_s", self.duration_s),
            ("throughput_per_s", self.throughput_per_s),
        ] {
            d.set_item(key, value)?;
        }
        for (key, value) in [
            ("requests", self.requests),
            ("completed", self.completed),
            ("overload_failures", self.overload_failures),
            ("rejected", self.rejected),
            ("retries", self.retries),
            ("max_queue_length", self.max_queue_length),
        ] {
            d.set_item(key, value)?;
        }
        d.set_item("per_model_utilization", self.per_model_utilization(py)?)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "PolicyResult(policy={:?}, p99_ms={:.1}, completed={}, overload_failures={}, \
             rejected={})",
            self.policy, self.p99_ms, self.completed, self.overload_failures, self.rejected
        )
    }
}

/// Every policy's result on one scenario; `results` maps policy name → `PolicyResult`.
#[pyclass(frozen, module = "modelrouter", name = "SimulationReport")]
pub struct PySimulationReport {
    results: Vec<Py<PyPolicyResult>>,
    #[pyo3(get)]
    description: String,
    #[pyo3(get)]
    requests: u64,
    #[pyo3(get)]
    seed: u64,
    model_ids: Vec<String>,
    table: String,
    rows: Vec<[String; 11]>,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[pymethods]
impl PySimulationReport {
    #[getter]
    fn results<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for r in &self.results {
            d.set_item(r.get().policy, r.clone_ref(py))?;
        }
        Ok(d)
    }

    #[getter]
    fn model_ids(&self) -> Vec<String> {
        self.model_ids.clone()
    }

    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("description", &self.description)?;
        d.set_item("requests", self.requests)?;
        d.set_item("seed", self.seed)?;
        d.set_item("model_ids", &self.model_ids)?;
        let results = PyDict::new(py);
        for r in &self.results {
            results.set_item(r.get().policy, r.get().to_dict(py)?)?;
        }
        d.set_item("results", results)?;
        Ok(d)
    }

    /// Plain-text comparison of the policies, one row each.
    fn table(&self) -> String {
        self.table.clone()
    }

    fn _repr_html_(&self) -> String {
        let cell = |tag: &str, text: &str, i: usize| {
            let align = if i == 0 { "left" } else { "right" };
            format!(
                "<{tag} style=\"text-align:{align}\">{}</{tag}>",
                escape(text)
            )
        };
        let head: String = SimulationReport::HEADERS
            .iter()
            .enumerate()
            .map(|(i, h)| cell("th", h, i))
            .collect();
        let body: String = self
            .rows
            .iter()
            .map(|row| {
                let cells: String = row
                    .iter()
                    .enumerate()
                    .map(|(i, c)| cell("td", c, i))
                    .collect();
                format!("<tr>{cells}</tr>")
            })
            .collect();
        format!(
            "<p>{} — {} requests, seed {}</p><table><thead><tr>{head}</tr></thead>\
             <tbody>{body}</tbody></table>",
            escape(&self.description),
            self.requests,
            self.seed
        )
    }

    fn __repr__(&self) -> String {
        let names: Vec<&str> = self.results.iter().map(|r| r.get().policy).collect();
        format!(
            "SimulationReport(requests={}, seed={}, policies={:?})",
            self.requests, self.seed, names
        )
    }
}

/// A path, a shipped scenario name (no suffix, not an existing file) or a dict.
fn load_scenario(scenario: &Bound<'_, PyAny>) -> PyResult<Scenario> {
    let py = scenario.py();
    if scenario.cast::<PyDict>().is_ok() {
        let text: String = py
            .import("json")?
            .getattr("dumps")?
            .call1((scenario,))
            .and_then(|t| t.extract())
            .map_err(|e| invalid("scenario", format!("cannot be written as JSON ({e})")))?;
        return Ok(Scenario::from_json(&text, "scenario")?);
    }
    let mut path: PathBuf = py
        .import("os")?
        .getattr("fspath")?
        .call1((scenario,))
        .and_then(|p| p.extract())
        .map_err(|_| {
            invalid(
                "scenario",
                "expected a path, a shipped scenario name or a dict",
            )
        })?;
    if path.extension().is_none() && !path.exists() {
        let shipped: PathBuf = py
            .import("modelrouter.types")?
            .getattr("SCENARIO_DIR")?
            .extract()?;
        path = shipped.join(path).with_extension("json");
    }
    Ok(Scenario::from_file(&path)?)
}

fn policies(strategies: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<Policy>> {
    let Some(obj) = strategies else {
        return Ok(Policy::ALL.to_vec());
    };
    let names: Vec<String> = if obj.is_instance_of::<PyString>() {
        vec![obj.extract()?]
    } else {
        obj.extract()
            .map_err(|_| invalid("strategies", "expected a list of policy names"))?
    };
    if names.is_empty() {
        return Err(invalid("strategies", "must name at least one policy"));
    }
    names
        .iter()
        .map(|n| {
            n.parse::<Policy>().map_err(|e| {
                let reason = e.to_string();
                invalid("strategies", reason.trim_start_matches("policy: "))
            })
        })
        .collect()
}

fn count(obj: Option<&Bound<'_, PyAny>>, field: &str) -> PyResult<Option<u64>> {
    obj.map(|o| {
        o.extract::<u64>()
            .map_err(|_| invalid(field, format!("must be an integer >= 0, got {o}")))
    })
    .transpose()
}

/// Simulates a scenario's request stream under each routing policy and measures the outcome.
///
/// `scenario` is a JSON file, the name of a shipped scenario ("heterogeneous", "seed_overload",
/// "seed_assign_sim") or a dict with: `requests`, `arrival_rate_per_s` (Poisson), optional
/// `seed`, `max_retries` (3), `latency_ewma_alpha` (0.2), `balancer` {load_weight,
/// active_request_bias, default_latency_ms}, `weights` {required, preferred, context, cost};
/// `models`: Model fields plus `service` {"distribution": "lognormal", "median_ms", "sigma"} |
/// {"distribution": "exponential", "mean_ms"} | {"distribution": "deterministic", "ms"} and an
/// optional hidden `fail_above`; `agents`: Agent fields plus a mix `weight` (1).
/// `strategies` defaults to every policy; `seed` and `requests` override the scenario's;
/// `progress(fraction)` is called on the calling thread at most about a hundred times.
#[pyfunction]
#[pyo3(signature = (scenario, strategies=None, *, seed=None, requests=None, progress=None))]
fn simulate(
    py: Python<'_>,
    scenario: &Bound<'_, PyAny>,
    strategies: Option<&Bound<'_, PyAny>>,
    seed: Option<&Bound<'_, PyAny>>,
    requests: Option<&Bound<'_, PyAny>>,
    progress: Option<Bound<'_, PyAny>>,
) -> PyResult<PySimulationReport> {
    let mut sc = load_scenario(scenario)?;
    let policies = policies(strategies)?;
    if let Some(seed) = count(seed, "seed")? {
        sc.seed = seed;
    }
    if let Some(n) = count(requests, "requests")? {
        if n == 0 || n > crate::sim::MAX_REQUESTS {
            let reason = format!("must be in 1..={}, got {n}", crate::sim::MAX_REQUESTS);
            return Err(invalid("requests", reason));
        }
        sc.requests = n;
    }
    let callback = match progress {
        Some(p) if !p.is_callable() => return Err(invalid("progress", "must be callable")),
        Some(p) => Some(p.unbind()),
        None => None,
    };
    let mut failure: Option<PyErr> = None;
    let outcome = py.detach(|| {
        let (tx, rx) = mpsc::channel::<f64>();
        let stop = AtomicBool::new(false);
        thread::scope(|scope| {
            // The runs report to this (calling) thread, which alone touches Python: progress
            // callbacks run where the caller is, and Ctrl-C is only seen on the main thread.
            let worker = scope.spawn(|| {
                let tx = tx;
                simulate_with_progress(&sc, &policies, &|fraction| {
                    // A closed channel only means the caller stopped listening.
                    let _ = tx.send(fraction);
                    !stop.load(Ordering::Relaxed)
                })
            });
            for fraction in rx {
                if failure.is_some() {
                    continue;
                }
                let reported = Python::attach(|py| match &callback {
                    Some(cb) => cb.call1(py, (fraction,)).and_then(|_| py.check_signals()),
                    None => py.check_signals(),
                });
                if let Err(e) = reported {
                    failure = Some(e);
                    stop.store(true, Ordering::Relaxed);
                }
            }
            worker.join()
        })
    });
    if let Some(err) = failure {
        return Err(err);
    }
    let outcome =
        outcome.map_err(|_| PyRuntimeError::new_err("the simulation stopped unexpectedly"))?;
    // Stopping early happens only when the callback failed, and that error was returned.
    let (report, _) = outcome?;
    let (table, rows) = (report.table(), report.rows());
    let ids = &report.model_ids;
    let results = report
        .results
        .into_iter()
        .map(|r| Py::new(py, PyPolicyResult::new(py, r, ids)?))
        .collect::<PyResult<_>>()?;
    Ok(PySimulationReport {
        results,
        description: report.description,
        requests: report.requests,
        seed: report.seed,
        table,
        rows,
        model_ids: report.model_ids,
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyPolicyResult>()?;
    m.add_class::<PySimulationReport>()?;
    m.add_function(wrap_pyfunction!(simulate, m)?)?;
    Ok(())
}
