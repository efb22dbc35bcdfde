//! `InFlight`: the Python face of a core `Flight` (returned by `track()` and `request()`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use pyo3::types::PyBool;

use crate::load::{ModelState, SharedClock};
use crate::router::{Feedback, Flight, Outcome};

/// Where a guard is in its life. A pending guard (from `track()`) takes its slot on enter.
enum Phase {
    Pending(Arc<ModelState>, SharedClock, Option<Feedback>),
    Flying(Flight),
    Ended,
}

/// One in-flight request: holds an active slot (or queue place) from enter until exit,
/// exception, cancellation or garbage collection — whichever comes first, exactly once.
#[pyclass(frozen, module = "modelrouter", name = "InFlight")]
pub struct PyInFlight {
    model_id: String,
    phase: Mutex<Phase>,
    /// (queued, lease id), kept once admitted so they still read after the end.
    admitted: OnceLock<(bool, Option<String>)>,
    failed: AtomicBool,
}

impl PyInFlight {
    /// Takes its slot on `__enter__`.
    pub fn pending(state: Arc<ModelState>, clock: SharedClock, feedback: Option<Feedback>) -> Self {
        let model_id = state.id.clone();
        Self::new(model_id, Phase::Pending(state, clock, feedback))
    }

    /// Already admitted (by the router or a batch acquire).
    pub fn flying(flight: Flight) -> Self {
        let this = Self::new(flight.model_id().to_string(), Phase::Ended);
        this.note(&flight);
        *this.phase() = Phase::Flying(flight);
        this
    }

    fn new(model_id: String, phase: Phase) -> Self {
        PyInFlight {
            model_id,
            phase: Mutex::new(phase),
            admitted: OnceLock::new(),
            failed: AtomicBool::new(false),
        }
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        // Phase changes are single assignments: a poisoned lock still holds a whole value.
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn note(&self, flight: &Flight) {
        let lease = flight.lease_id().map(str::to_string);
        let _ = self.admitted.set((flight.queued(), lease));
    }

    /// Takes the slot of a pending guard (a lease round trip with a shared backend). The lock
    /// is held throughout, so a concurrent release waits and then gives the slot back.
    fn enter(&self) -> crate::error::Result<()> {
        let mut phase = self.phase();
        if !matches!(*phase, Phase::Pending(..)) {
            return Ok(()); // already in flight or ended: entering twice is a no-op
        }
        let Phase::Pending(state, clock, feedback) = std::mem::replace(&mut *phase, Phase::Ended)
        else {
            return Ok(());
        };
        // On error nothing is held: the guard stays ended, so exit gives nothing back.
        let flight = Flight::begin(state, clock, feedback)?;
        self.note(&flight);
        *phase = Phase::Flying(flight);
        Ok(())
    }

    /// The flight, if still flying; the guard is ended from here on.
    fn take(&self) -> Option<Flight> {
        match std::mem::replace(&mut *self.phase(), Phase::Ended) {
            Phase::Flying(flight) => Some(flight),
            _ => None,
        }
    }

    fn outcome(&self, success: bool) -> Outcome {
        Outcome::from_success(success && !self.failed.load(Ordering::Acquire))
    }

    fn finish(&self, success: bool) {
        if let Some(flight) = self.take() {
            flight.end(self.outcome(success));
        }
    }
}

/// Ends every request in `handles` still in flight, each model's slots going back together
/// (one round trip per model with a shared backend). Returns how many it ended.
pub fn release_all(handles: &[&PyInFlight], success: bool) -> usize {
    let (ok, failed): (Vec<_>, Vec<_>) = handles
        .iter()
        .filter_map(|h| h.take().map(|f| (f, h.outcome(success))))
        .partition(|(_, outcome)| *outcome == Outcome::Ok);
    let strip = |v: Vec<(Flight, Outcome)>| v.into_iter().map(|(f, _)| f).collect();
    Flight::end_all(strip(ok), Outcome::Ok) + Flight::end_all(strip(failed), Outcome::Failed)
}

/// An awaitable that is already done, so `__aenter__`/`__aexit__` need no event loop glue.
#[pyclass(module = "modelrouter")]
pub struct Ready(Option<Py<PyAny>>);

#[pymethods]
impl Ready {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }
    fn __next__(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let value = self.0.take().unwrap_or_else(|| py.None());
        Err(PyStopIteration::new_err((value,)))
    }
}

fn succeeded(exc_type: Option<&Bound<'_, PyAny>>) -> bool {
    exc_type.is_none_or(|t| t.is_none())
}

#[pymethods]
impl PyInFlight {
    #[getter]
    fn model_id(&self) -> &str {
        &self.model_id
    }
    /// True when the request waits in the model's queue rather than holding a slot.
    #[getter]
    fn queued(&self) -> bool {
        self.admitted.get().is_some_and(|(queued, _)| *queued)
    }
    /// The lease held in the shared backend; None for in-process counts (or fail-open).
    #[getter]
    fn lease_id(&self) -> Option<String> {
        self.admitted.get().and_then(|(_, lease)| lease.clone())
    }
    #[getter]
    fn released(&self) -> bool {
        matches!(*self.phase(), Phase::Ended)
    }

    /// Marks the request failed without raising (e.g. the model returned an error body).
    fn mark_failed(&self) {
        self.failed.store(true, Ordering::Release);
    }

    /// Ends the request now (idempotent); `with` does this for you.
    #[pyo3(signature = (success=true))]
    fn release(&self, py: Python<'_>, success: bool) {
        py.detach(|| self.finish(success));
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyResult<PyRef<'_, Self>> {
        let this: &PyInFlight = &slf;
        slf.py().detach(|| this.enter())?;
        Ok(slf)
    }

    #[pyo3(signature = (exc_type=None, _exc=None, _tb=None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> bool {
        let success = succeeded(exc_type);
        py.detach(|| self.finish(success));
        false
    }

    fn __aenter__(slf: Bound<'_, Self>) -> PyResult<Ready> {
        let this = slf.get();
        slf.py().detach(|| this.enter())?;
        Ok(Ready(Some(slf.into_any().unbind())))
    }

    #[pyo3(signature = (exc_type=None, _exc=None, _tb=None))]
    fn __aexit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> Ready {
        let success = succeeded(exc_type);
        py.detach(|| self.finish(success));
        Ready(Some(PyBool::new(py, false).to_owned().into_any().unbind()))
    }

    fn __repr__(&self) -> String {
        let phase = match *self.phase() {
            Phase::Pending(..) => "not entered",
            Phase::Flying(_) => "in flight",
            Phase::Ended => "released",
        };
        format!("InFlight({:?}, {phase})", self.model_id)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyInFlight>()?;
    Ok(())
}
