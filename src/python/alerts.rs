//! AlertRule, Alert and AlertManager. Python sinks are core sinks that take the GIL for their
//! call; a raising sink is logged on `modelrouter.alerts` and skipped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use pyo3::prelude::*;

use super::errors::int;
use pyo3::types::PyDict;

use super::arrays::{pymethods_with_getters, to_py};
use super::capability::non_negative;
use super::errors::invalid;
use super::load::{clock_from, PyLoadTracker, PyManualClock};
use super::perf::PyPerformanceTracker;
use crate::alerts::{
    Alert, AlertKind, AlertManager, AlertRule, HealthSource, HistoryFilter, Severity,
};
use crate::health::State;

/// A threshold on one alert type, for one model or (model_id None) every model.
#[pyclass(frozen, eq, from_py_object, module = "modelrouter", name = "AlertRule")]
#[derive(Clone, PartialEq)]
pub struct PyAlertRule(pub AlertRule);

pymethods_with_getters! {
    PyAlertRule, 0 {
        threshold: f64, for_s: f64, min_samples: u64,
    }
    #[new]
    #[pyo3(signature = (r#type, threshold, *, severity="warning", for_s=0.0, model_id=None, min_samples=1))]
    fn new(
        r#type: &str,
        threshold: f64,
        severity: &str,
        for_s: f64,
        model_id: Option<String>,
        #[pyo3(from_py_with = int::min_samples)] min_samples: i64,
    ) -> PyResult<Self> {
        Ok(PyAlertRule(AlertRule::new(
            r#type.parse::<AlertKind>()?,
            threshold,
            severity.parse::<Severity>()?,
            for_s,
            model_id,
            non_negative("min_samples", min_samples)?,
        )?))
    }
    #[getter(r#type)]
    fn kind(&self) -> &'static str {
        self.0.kind.name()
    }
    #[getter]
    fn severity(&self) -> &'static str {
        self.0.severity.name()
    }
    #[getter]
    fn model_id(&self) -> Option<&str> {
        self.0.model_id.as_deref()
    }
    fn __repr__(&self) -> String {
        self.0.to_string()
    }
}

/// One notification: a newly firing alert, a repeat after the cooldown, or a resolved notice.
/// `id` names the episode (shared by its firing, repeats and resolved notice).
#[pyclass(frozen, module = "modelrouter", name = "Alert")]
pub struct PyAlert(pub Alert);

pymethods_with_getters! {
    PyAlert, 0 {
        id: u64, threshold: f64, started_at: f64, emitted_at: f64,
    }
    #[getter(r#type)]
    fn kind(&self) -> &'static str {
        self.0.kind.name()
    }
    #[getter]
    fn severity(&self) -> &'static str {
        self.0.severity.name()
    }
    /// None for a fleet-wide alert.
    #[getter]
    fn model_id(&self) -> Option<&str> {
        self.0.model_id.as_deref()
    }
    /// "firing" or "resolved".
    #[getter]
    fn state(&self) -> &'static str {
        self.0.state.name()
    }
    /// The value last observed; None when the data disappeared.
    #[getter]
    fn value(&self) -> Option<f64> {
        Some(self.0.value).filter(|v| !v.is_nan())
    }
    #[getter]
    fn message(&self) -> &str {
        &self.0.message
    }
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.0)
    }
    fn __repr__(&self) -> String {
        self.0.to_string()
    }
}

/// Evaluates alert rules over the trackers: pending → firing after `for_s`, repeats at most
/// once per `cooldown_s`, one resolved notice, bounded history, sinks.
#[pyclass(frozen, module = "modelrouter", name = "AlertManager")]
pub struct PyAlertManager {
    core: Arc<AlertManager>,
    /// Python sink calls that raised (the core counts panicking sinks itself).
    sink_errors: Arc<AtomicU64>,
}

/// Logs a sink's first failure (`err`, as an error with its traceback) or its recovery (`None`,
/// at info); logging itself failing must not break evaluation either.
fn log_sink_error(py: Python<'_>, sink: &Py<PyAny>, alert: &Alert, err: Option<PyErr>) {
    let logged = (|| -> PyResult<()> {
        let logger = py
            .import("logging")?
            .call_method1("getLogger", ("modelrouter.alerts",))?;
        let Some(err) = err else {
            logger.call_method1(
                "info",
                (
                    "alert sink %r delivers again (on %s)",
                    sink.bind(py),
                    &alert.message,
                ),
            )?;
            return Ok(());
        };
        let kwargs = PyDict::new(py);
        kwargs.set_item("exc_info", err.value(py))?;
        logger.call_method(
            "error",
            (
                "alert sink %r failed on %s; its failures are counted in sink_errors and not \
                 logged again until it delivers",
                sink.bind(py),
                &alert.message,
            ),
            Some(&kwargs),
        )?;
        Ok(())
    })();
    if let Err(e) = logged {
        e.write_unraisable(py, None);
    }
}

/// The health source of `model_ejected` rules: a Router (its `health()`) or a callable returning
/// the same `{model_id: {"state": ...}}` mapping. Read with the GIL at each evaluation; a source
/// that raises or answers something else is logged and reads as no data.
fn health_source(obj: &Bound<'_, PyAny>) -> PyResult<HealthSource> {
    let read = if obj.is_callable() {
        obj.clone().unbind()
    } else if let Ok(method) = obj.getattr("health") {
        method.unbind()
    } else {
        return Err(invalid(
            "health",
            "expected a Router or a callable returning {model_id: {\"state\": ...}}",
        ));
    };
    Ok(Arc::new(move || {
        Python::attach(|py| {
            let states = (|| -> PyResult<Vec<(String, State)>> {
                let answer = read.call0(py)?;
                let map = answer.bind(py).cast::<PyDict>()?.clone();
                let mut out = Vec::with_capacity(map.len());
                for (model, view) in map.iter() {
                    let state = view.get_item("state")?;
                    let state = match state.extract::<String>()?.as_str() {
                        "healthy" => State::Healthy,
                        "probing" => State::Probing,
                        "cooling_down" => State::CoolingDown,
                        "ejected" => State::Ejected,
                        other => return Err(invalid("health", format!("unknown state {other:?}"))),
                    };
                    out.push((model.extract::<String>()?, state));
                }
                Ok(out)
            })();
            states.unwrap_or_else(|err| {
                err.write_unraisable(py, None);
                Vec::new()
            })
        })
    }))
}

#[pymethods]
impl PyAlertManager {
    #[new]
    #[pyo3(signature = (rules, cooldown_s=300.0, *, performance=None, load=None, health=None, history_limit=1000, clock=None, on_alert=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        rules: Vec<PyAlertRule>,
        cooldown_s: f64,
        performance: Option<&Bound<'_, PyPerformanceTracker>>,
        load: Option<&Bound<'_, PyLoadTracker>>,
        health: Option<&Bound<'_, PyAny>>,
        #[pyo3(from_py_with = int::history_limit)] history_limit: i64,
        clock: Option<&Bound<'_, PyManualClock>>,
        on_alert: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let perf = performance.map(|p| p.get().0.clone());
        let load = load.map(|l| l.get().0.clone());
        let clock = match clock {
            Some(c) => clock_from(Some(c)),
            None => AlertManager::trackers_clock(perf.as_ref(), load.as_ref()),
        };
        let history_limit = usize::try_from(non_negative("history_limit", history_limit)?)
            .map_err(|_| invalid("history_limit", "is too large"))?;
        let rules = rules.into_iter().map(|r| r.0).collect();
        let health = health.map(health_source).transpose()?;
        let core =
            AlertManager::with_health(rules, cooldown_s, perf, load, health, history_limit, clock)?;
        let manager = PyAlertManager {
            core: Arc::new(core),
            sink_errors: Arc::new(AtomicU64::new(0)),
        };
        if let Some(cb) = on_alert {
            manager.push_sink(py, cb)?;
        }
        Ok(manager)
    }

    #[getter]
    fn rules(&self) -> Vec<PyAlertRule> {
        self.core.rules().iter().cloned().map(PyAlertRule).collect()
    }

    #[getter]
    fn cooldown_s(&self) -> f64 {
        self.core.cooldown_s()
    }

    /// Sink calls that raised (each was logged and skipped).
    #[getter]
    fn sink_errors(&self) -> u64 {
        self.sink_errors.load(Ordering::Relaxed) + self.core.sink_failures()
    }

    /// `sink(alert)` is called with every notification emitted by `evaluate`.
    fn add_sink(&self, py: Python<'_>, sink: Py<PyAny>) -> PyResult<()> {
        self.push_sink(py, sink)
    }

    /// Evaluates every rule at `now` (the clock when None); returns what this evaluation
    /// emitted: newly firing alerts, repeats after the cooldown and resolved notices. `now`
    /// drives pending/cooldown timing; the trackers still read their own clocks.
    #[pyo3(signature = (now=None))]
    fn evaluate(&self, py: Python<'_>, now: Option<f64>) -> PyResult<Vec<PyAlert>> {
        if let Some(t) = now.filter(|t| !t.is_finite()) {
            return Err(invalid("now", format!("must be finite, got {t}")));
        }
        let core = self.core.clone();
        let alerts = py.detach(move || core.evaluate(now));
        Ok(alerts.into_iter().map(PyAlert).collect())
    }

    /// Alerts firing now, with the time they were last emitted.
    fn active(&self) -> Vec<PyAlert> {
        self.core.active().into_iter().map(PyAlert).collect()
    }

    /// Past notifications, oldest first (the newest `limit` of the matches).
    #[pyo3(signature = (model_id=None, severity=None, r#type=None, limit=None))]
    fn history(
        &self,
        model_id: Option<&str>,
        severity: Option<&str>,
        r#type: Option<&str>,
        #[pyo3(from_py_with = int::opt::limit)] limit: Option<i64>,
    ) -> PyResult<Vec<PyAlert>> {
        let filter = HistoryFilter::parse(model_id, severity, r#type, limit)?;
        Ok(self
            .core
            .history(&filter)
            .into_iter()
            .map(PyAlert)
            .collect())
    }

    fn __repr__(&self) -> String {
        self.core.to_string()
    }
}

impl PyAlertManager {
    fn push_sink(&self, py: Python<'_>, sink: Py<PyAny>) -> PyResult<()> {
        if !sink.bind(py).is_callable() {
            return Err(invalid("sink", "must be callable"));
        }
        let errors = self.sink_errors.clone();
        // Logged once per transition: the first failure (with its traceback), then the first
        // success after failures; the failures in between are only counted (`sink_errors`).
        let failing = AtomicBool::new(false);
        self.core.add_sink(Arc::new(move |alert: &Alert| {
            Python::attach(|py| {
                let obj = Py::new(py, PyAlert(alert.clone()));
                match obj.and_then(|obj| sink.call1(py, (obj,))) {
                    Err(err) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        if !failing.swap(true, Ordering::AcqRel) {
                            log_sink_error(py, &sink, alert, Some(err));
                        }
                    }
                    Ok(_) if failing.swap(false, Ordering::AcqRel) => {
                        log_sink_error(py, &sink, alert, None);
                    }
                    Ok(_) => {}
                }
            })
        }));
        Ok(())
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyAlertRule>()?;
    m.add_class::<PyAlert>()?;
    m.add_class::<PyAlertManager>()?;
    Ok(())
}
