//! simulate(), SimulationReport and PolicyResult. The simulation runs with the GIL released on
//! worker threads; the calling thread takes the GIL back only to report progress and to notice
//! Ctrl-C. Summaries, reprs, the table and its HTML come from `crate::sim`.

use std::path::PathBuf;

use numpy::PyArray1;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use super::arrays::{levels_to_py, pymethods_with_getters, renamed, to_py};
use super::errors::invalid;
use crate::sim::tokens::QuotaAdmission;
use crate::sim::{
    parse_policies, run_name, simulate_reporting, PolicySummary, Scenario, SimulationReport,
    Stopped,
};

/// One policy's measurements over the scenario's request stream.
#[pyclass(frozen, module = "modelrouter", name = "PolicyResult")]
pub struct PyPolicyResult {
    r: PolicySummary,
    latencies: Py<PyArray1<f64>>,
}

pymethods_with_getters! {
    PyPolicyResult, r {
        p50_ms: f64, p95_ms: f64, p99_ms: f64, mean_ms: f64, avg_utilization: f64,
        duration_s: f64, throughput_per_s: f64, requests: u64, completed: u64,
        overload_failures: u64, rejected: u64, retries: u64, max_queue_length: u64,
        success_rate: f64, failed: u64, failure_retries: u64, wasted_calls: u64,
        ttft_p50_ms: f64, ttft_p95_ms: f64, ttft_p99_ms: f64, tokens_per_s: f64,
        quota_rejections: u64, cache_hit_rate: Option<f64>, max_mean_load: f64,
    }
    #[getter]
    fn policy(&self) -> &'static str {
        self.r.policy.name()
    }
    /// How failed calls were handled: "none", "eject" or "eject_retry".
    #[getter]
    fn handling(&self) -> &'static str {
        self.r.handling.name()
    }
    /// The key of this run in `SimulationReport.results`: the policy, plus `+handling` unless
    /// that is "none".
    #[getter]
    fn name(&self) -> String {
        run_name(self.r.policy, self.r.handling)
    }
    /// End-to-end latency of every completed request in ms (read-only float64 array).
    #[getter]
    fn latencies_ms<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.latencies.bind(py).clone()
    }
    /// Model id → time-averaged busy slots / max_concurrent; a fresh dict each call.
    #[getter]
    fn per_model_utilization<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        levels_to_py(py, &self.r.per_model_utilization)
    }
    /// Every field except the latency samples (their count is `completed`).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.r)
    }
    fn __repr__(&self) -> String {
        self.r.to_string()
    }
    fn _repr_html_(&self) -> String {
        self.r.html()
    }
}

/// Every policy's result on one scenario; `results` maps the run name (the policy, then
/// `+eject` or `+eject_retry` for runs with failure handling) → `PolicyResult`.
/// `report` keeps everything but the latency samples, which the results own.
#[pyclass(frozen, module = "modelrouter", name = "SimulationReport")]
pub struct PySimulationReport {
    report: SimulationReport,
    results: Vec<Py<PyPolicyResult>>,
}

pymethods_with_getters! {
    PySimulationReport, report { requests: u64, seed: u64 }
    #[getter]
    fn results<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for r in &self.results {
            d.set_item(r.get().name(), r.clone_ref(py))?;
        }
        Ok(d)
    }
    #[getter]
    fn description(&self) -> &str {
        &self.report.description
    }
    #[getter]
    fn model_ids(&self) -> Vec<String> {
        self.report.model_ids.clone()
    }
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.report)
    }
    /// Plain-text comparison of the policies, one row each.
    fn table(&self) -> String {
        self.report.table()
    }
    fn _repr_html_(&self) -> String {
        self.report.html()
    }
    fn __repr__(&self) -> String {
        self.report.to_string()
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
    let path: Bound<'_, PyAny> = py
        .import("os")?
        .getattr("fspath")?
        .call1((scenario,))
        .map_err(|_| {
            invalid(
                "scenario",
                "expected a path, a shipped scenario name or a dict",
            )
        })?;
    // A bare name is a shipped scenario; an unknown one is an error listing them.
    let path: PathBuf = py
        .import("modelrouter.types")?
        .getattr("scenario_path")?
        .call1((path,))?
        .extract()?;
    Ok(Scenario::from_file(&path)?)
}

/// A policy name or a list of them, as strings.
fn names(field: &str, obj: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if obj.is_instance_of::<PyString>() {
        return Ok(vec![obj.extract()?]);
    }
    obj.extract()
        .map_err(|_| invalid(field, "expected a list of policy names"))
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
/// optional hidden `fail_above` and `faults` [{"kind": "outage" | "errors" | "rate_limit" |
/// "slowdown", "from_s", "to_s", ...}]; `failure_handling` (a list of "none", "eject",
/// "eject_retry"; all three when a model has faults); `agents`: Agent fields plus a mix
/// `weight` (1). Shipped: also "outage".
/// Tokens: models take `rpm`, `tpm` (the provider's quota, answered 429 above it) and
/// `ms_per_output_token`; agents `prompt_tokens` and `output_tokens` {"median", "sigma"}
/// (lognormal); `admission` is what the router enforces of the quotas ("tokens": RPM and TPM,
/// "requests": RPM only, "none"); `trace` {"file", "rate_scale"} replays a CSV with Azure's
/// columns (TIMESTAMP, ContextTokens, GeneratedTokens).
/// `policies` (a name or a list; `strategies` is its deprecated alias) defaults to every
/// policy; `seed`, `requests`, `admission` and `trace` (with `trace_rate_scale`) override the
/// scenario's; `progress(fraction)` is called on the calling thread at most about a hundred
/// times.
#[pyfunction]
#[pyo3(signature = (scenario, policies=None, *, seed=None, requests=None, progress=None,
                    strategies=None, admission=None, trace=None, trace_rate_scale=1.0))]
#[allow(clippy::too_many_arguments)]
fn simulate(
    py: Python<'_>,
    scenario: &Bound<'_, PyAny>,
    policies: Option<&Bound<'_, PyAny>>,
    seed: Option<&Bound<'_, PyAny>>,
    requests: Option<&Bound<'_, PyAny>>,
    progress: Option<Bound<'_, PyAny>>,
    strategies: Option<&Bound<'_, PyAny>>,
    admission: Option<&str>,
    trace: Option<PathBuf>,
    trace_rate_scale: f64,
) -> PyResult<PySimulationReport> {
    let field = if strategies.is_some() {
        "strategies"
    } else {
        "policies"
    };
    let chosen = renamed(
        py,
        "simulate",
        ("policies", policies),
        ("strategies", strategies),
    )?;
    let mut sc = load_scenario(scenario)?;
    let names = chosen.map(|o| names(field, o)).transpose()?;
    let policies = parse_policies(field, names.as_deref())?;
    if let Some(seed) = count(seed, "seed")? {
        sc.seed = seed;
    }
    if let Some(n) = count(requests, "requests")? {
        sc.set_requests(n)?;
    }
    if let Some(name) = admission {
        sc.admission = crate::error::parse_choice(
            "admission",
            "admission",
            name,
            &QuotaAdmission::ALL,
            QuotaAdmission::name,
        )?;
    }
    if let Some(path) = trace {
        sc.set_trace(&path, trace_rate_scale)?;
    }
    let callback = match progress {
        Some(p) if !p.is_callable() => return Err(invalid("progress", "must be callable")),
        Some(p) => Some(p.unbind()),
        None => None,
    };
    // The runs report to this (calling) thread, which alone touches Python: progress
    // callbacks run where the caller is, and Ctrl-C is only seen on the main thread.
    let outcome = py.detach(|| {
        simulate_reporting(&sc, &policies, |fraction| {
            Python::attach(|py| match &callback {
                Some(cb) => cb.call1(py, (fraction,)).and_then(|_| py.check_signals()),
                None => py.check_signals(),
            })
        })
    });
    let mut report = match outcome {
        Ok(report) => report,
        Err(Stopped::Caller(e)) => return Err(e),
        Err(Stopped::Error(e)) => return Err(e.into()),
        Err(Stopped::Panicked) => {
            return Err(PyRuntimeError::new_err(
                "the simulation stopped unexpectedly",
            ))
        }
    };
    let results = report
        .results
        .iter_mut()
        .map(|r| {
            let latencies = PyArray1::from_vec(py, std::mem::take(&mut r.latencies_ms));
            // Read-only, like the frozen object that owns it.
            latencies.getattr("flags")?.setattr("writeable", false)?;
            let r = r.summary(&report.model_ids);
            let latencies = latencies.unbind();
            Py::new(py, PyPolicyResult { r, latencies })
        })
        .collect::<PyResult<_>>()?;
    Ok(PySimulationReport { report, results })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyPolicyResult>()?;
    m.add_class::<PySimulationReport>()?;
    m.add_function(wrap_pyfunction!(simulate, m)?)?;
    Ok(())
}
