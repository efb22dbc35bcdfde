//! ManualClock, LoadTracker (in-process or shared through Redis) and ModelLoad.

use std::sync::Arc;

use pyo3::prelude::*;

use super::errors::{int, tokens};
use crate::limits::Limits;

use super::arrays::{pymethods_with_getters, to_py};
use super::capability::non_negative;
pub use super::inflight::PyInFlight;
use crate::load::{system_clock, Capacity, LoadTracker, ManualClock, ModelLoad, SharedClock};
use crate::redis_backend::TrackerSettings;
use crate::router::Guard;

/// A clock for tests and simulations: time moves only with `advance` / `set`.
#[pyclass(frozen, module = "modelrouter", name = "ManualClock")]
pub struct PyManualClock(pub Arc<ManualClock>);

#[pymethods]
impl PyManualClock {
    #[new]
    #[pyo3(signature = (start=0.0))]
    fn new(start: f64) -> PyResult<Self> {
        Ok(PyManualClock(Arc::new(ManualClock::try_new(start)?)))
    }
    fn now(&self) -> f64 {
        use crate::load::Clock;
        self.0.now()
    }
    fn advance(&self, seconds: f64) -> PyResult<()> {
        Ok(self.0.try_advance(seconds)?)
    }
    fn set(&self, t: f64) -> PyResult<()> {
        Ok(self.0.try_set(t)?)
    }
}

/// `clock=None` means the monotonic system clock.
pub fn clock_from(clock: Option<&Bound<'_, PyManualClock>>) -> SharedClock {
    match clock {
        Some(c) => c.get().0.clone(),
        None => system_clock(),
    }
}

/// A reading of one model's load.
#[pyclass(frozen, module = "modelrouter", name = "ModelLoad")]
pub struct PyModelLoad(pub ModelLoad);

pymethods_with_getters! {
    PyModelLoad, 0 { active_requests: u64, queue_depth: u64, last_updated: f64 }
    calls { utilization: f64, is_overloaded: bool, is_over_target: bool }
    #[getter]
    fn model_id(&self) -> &str {
        &self.0.model_id
    }
    /// EWMA of observed latencies; None before the first sample.
    #[getter]
    fn avg_latency_ms(&self) -> Option<f64> {
        self.0.latency()
    }
    #[getter]
    fn max_concurrent(&self) -> u64 {
        self.0.capacity.max_concurrent
    }
    #[getter]
    fn max_queue(&self) -> u64 {
        self.0.capacity.max_queue
    }
    #[getter]
    fn target_utilization(&self) -> f64 {
        self.0.capacity.target_utilization
    }
    #[getter]
    fn rpm(&self) -> Option<u64> {
        self.0.capacity.limits.rpm
    }
    #[getter]
    fn tpm(&self) -> Option<u64> {
        self.0.capacity.limits.tpm
    }
    #[getter]
    fn max_tokens_in_flight(&self) -> Option<u64> {
        self.0.capacity.limits.max_tokens_in_flight
    }
    /// Tokens held by requests in flight (reservations, or usage once reported).
    #[getter]
    fn tokens_in_flight(&self) -> u64 {
        self.0.tokens.in_flight
    }
    /// Requests admitted in the last 60 s (counted when the model has an RPM or TPM limit).
    #[getter]
    fn requests_in_window(&self) -> u64 {
        self.0.tokens.requests_in_window
    }
    /// Tokens admitted (reconciled to usage) in the last 60 s, as the TPM limit counts them.
    #[getter]
    fn tokens_in_window(&self) -> u64 {
        self.0.tokens.tokens_in_window
    }
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.0)
    }
    fn __repr__(&self) -> String {
        self.0.to_string()
    }
}

/// Live load per model. Thread-safe and lock-free on updates.
#[pyclass(frozen, module = "modelrouter", name = "LoadTracker")]
pub struct PyLoadTracker(pub Arc<LoadTracker>);

pymethods_with_getters! {
    PyLoadTracker, 0 {} calls { stale_after_s: f64 }
    #[new]
    #[pyo3(signature = (stale_after_s=60.0, *, clock=None, backend=None, lease_ttl_s=30.0,
                        fail_mode="open", timeout_s=0.5))]
    fn new(
        stale_after_s: f64,
        clock: Option<&Bound<'_, PyManualClock>>,
        backend: Option<&str>,
        lease_ttl_s: f64,
        fail_mode: &str,
        timeout_s: f64,
    ) -> PyResult<Self> {
        let settings =
            TrackerSettings::new(stale_after_s, backend, lease_ttl_s, fail_mode, timeout_s)?;
        Ok(PyLoadTracker(Arc::new(settings.build(clock_from(clock))?)))
    }

    /// Now on this tracker's clock (its ManualClock, else the core's monotonic clock).
    fn now(&self) -> f64 {
        self.0.now()
    }

    /// The shared backend's URL (password redacted), None for in-process counts.
    #[getter]
    fn backend(&self) -> Option<String> {
        self.0.backend().map(|b| b.status().backend)
    }

    /// Health of the shared backend: `available`, `fail_open_events` (admissions made on
    /// local counts while it was away), `errors`, `lost_leases`, `last_error`, ... None without one.
    fn backend_status<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let status = self.0.backend().map(|b| b.status());
        status.map(|s| to_py(py, &s)).transpose()
    }

    #[pyo3(signature = (model_id, max_concurrent, max_queue=0, target_utilization=0.8, *,
                        rpm=None, tpm=None, max_tokens_in_flight=None))]
    #[allow(clippy::too_many_arguments)]
    fn set_capacity(
        &self,
        model_id: &str,
        #[pyo3(from_py_with = int::max_concurrent)] max_concurrent: i64,
        #[pyo3(from_py_with = int::max_queue)] max_queue: i64,
        target_utilization: f64,
        #[pyo3(from_py_with = tokens::limit::rpm)] rpm: Option<i64>,
        #[pyo3(from_py_with = tokens::limit::tpm)] tpm: Option<i64>,
        #[pyo3(from_py_with = tokens::limit::max_tokens_in_flight)] max_tokens_in_flight: Option<
            i64,
        >,
    ) -> PyResult<()> {
        let limits = Limits::new(rpm, tpm, max_tokens_in_flight)?;
        let capacity = Capacity::new(
            non_negative("max_concurrent", max_concurrent)?,
            non_negative("max_queue", max_queue)?,
            target_utilization,
        )?
        .with_limits(limits);
        self.0.set_capacity(model_id, capacity);
        Ok(())
    }

    /// Adds `delta` to the active requests; returns the new count.
    fn update_load(
        &self,
        model_id: &str,
        #[pyo3(from_py_with = int::delta)] delta: i64,
    ) -> PyResult<u64> {
        Ok(self.0.update_load(model_id, delta)?)
    }

    /// Adds `delta` to the queue depth; returns the new depth.
    fn update_queue(
        &self,
        model_id: &str,
        #[pyo3(from_py_with = int::delta)] delta: i64,
    ) -> PyResult<u64> {
        Ok(self.0.update_queue(model_id, delta)?)
    }

    /// Overwrites counters from an external report; refreshes `last_updated`.
    #[pyo3(signature = (model_id, *, active_requests=None, queue_depth=None, avg_latency_ms=None))]
    fn set_load(
        &self,
        model_id: &str,
        #[pyo3(from_py_with = int::opt::active_requests)] active_requests: Option<i64>,
        #[pyo3(from_py_with = int::opt::queue_depth)] queue_depth: Option<i64>,
        avg_latency_ms: Option<f64>,
    ) -> PyResult<()> {
        let (active, queued) = (active_requests, queue_depth);
        Ok(self.0.set_load(model_id, active, queued, avg_latency_ms)?)
    }

    /// Feeds one observed latency into the model's EWMA.
    fn record_latency(&self, model_id: &str, latency_ms: f64) -> PyResult<()> {
        Ok(self.0.record_latency(model_id, latency_ms)?)
    }

    /// None when the model is unknown or its data is older than `stale_after_s`.
    fn current_load(&self, py: Python<'_>, model_id: &str) -> Option<PyModelLoad> {
        py.detach(|| self.0.current_load(model_id)).map(PyModelLoad)
    }

    fn is_overloaded(&self, py: Python<'_>, model_id: &str) -> PyResult<bool> {
        Ok(py.detach(|| self.0.is_overloaded(model_id))?)
    }

    fn is_over_target(&self, py: Python<'_>, model_id: &str) -> PyResult<bool> {
        Ok(py.detach(|| self.0.is_over_target(model_id))?)
    }

    fn model_ids(&self) -> Vec<String> {
        self.0.model_ids()
    }

    /// Every known model's load, stale or not, keyed by id.
    fn snapshot(&self, py: Python<'_>) -> PyResult<Vec<PyModelLoad>> {
        let loads = py.detach(|| self.0.snapshot())?;
        Ok(loads.into_iter().map(PyModelLoad).collect())
    }

    /// `with tracker.track(model_id, tokens=n):` holds one active request (and its tokens in
    /// flight, counted in the model's RPM/TPM windows) for the block.
    #[pyo3(signature = (model_id, *, tokens=0))]
    fn track(
        &self,
        model_id: &str,
        #[pyo3(from_py_with = tokens::tokens)] tokens: u64,
    ) -> PyResult<PyInFlight> {
        Ok(PyInFlight(Guard::track(&self.0, model_id, tokens)?))
    }

    /// Admits up to `n` requests of one model at once (one round trip with a shared backend),
    /// slots first, then queue places; fewer when the model fills up. Each is held already.
    fn acquire_many(
        &self,
        py: Python<'_>,
        model_id: &str,
        #[pyo3(from_py_with = int::n)] n: i64,
    ) -> PyResult<Vec<PyInFlight>> {
        let guards = py.detach(|| Guard::admit_many(&self.0, model_id, n))?;
        Ok(guards.into_iter().map(PyInFlight).collect())
    }

    /// Ends every request in `handles` still in flight (one round trip per model with a
    /// shared backend); returns how many it ended. Idempotent, like `InFlight.release`.
    #[pyo3(signature = (handles, success=true))]
    fn release_many(
        &self,
        py: Python<'_>,
        handles: Vec<PyRef<'_, PyInFlight>>,
        success: bool,
    ) -> usize {
        let guards: Vec<&Guard> = handles.iter().map(|h| &h.0).collect();
        py.detach(|| Guard::release_all(&guards, success))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyManualClock>()?;
    m.add_class::<PyModelLoad>()?;
    m.add_class::<PyLoadTracker>()?;
    Ok(())
}
