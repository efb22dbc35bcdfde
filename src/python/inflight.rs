//! The in-flight guard returned by `track()` and `request()`.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use pyo3::types::PyBool;

use crate::load::{AtomicF64, ModelState, SharedClock, Slot, Ticket};

const NOT_ENTERED: u8 = 0;
const HELD: u8 = 1;
const RELEASED: u8 = 2;

/// Called with (model_id, latency_ms, success) when a tracked request ends.
pub type OnRelease = Arc<dyn Fn(&str, f64, bool) + Send + Sync>;

/// One in-flight request: holds an active slot (or queue place) from enter until exit,
/// exception, cancellation or garbage collection — whichever comes first, exactly once.
#[pyclass(frozen, module = "modelrouter", name = "InFlight")]
pub struct PyInFlight {
    state: Arc<ModelState>,
    clock: SharedClock,
    /// Set on enter (or at construction when admitted by the router).
    ticket: OnceLock<Ticket>,
    phase: AtomicU8,
    started: AtomicF64,
    failed: AtomicBool,
    on_release: Option<OnRelease>,
}

impl PyInFlight {
    /// Takes its slot on `__enter__`.
    pub fn pending(
        state: Arc<ModelState>,
        clock: SharedClock,
        on_release: Option<OnRelease>,
    ) -> Self {
        PyInFlight {
            state,
            clock,
            ticket: OnceLock::new(),
            phase: AtomicU8::new(NOT_ENTERED),
            started: AtomicF64::new(f64::NAN),
            failed: AtomicBool::new(false),
            on_release,
        }
    }

    /// Already holds `ticket` (admitted by the router).
    pub fn held(
        state: Arc<ModelState>,
        clock: SharedClock,
        ticket: Ticket,
        on_release: Option<OnRelease>,
    ) -> Self {
        let started = clock.now();
        PyInFlight {
            state,
            clock,
            ticket: OnceLock::from(ticket),
            phase: AtomicU8::new(HELD),
            started: AtomicF64::new(started),
            failed: AtomicBool::new(false),
            on_release,
        }
    }

    /// Takes an active slot (a lease with a shared backend); may do a network round trip.
    fn acquire(&self) -> crate::error::Result<()> {
        if self
            .phase
            .compare_exchange(NOT_ENTERED, HELD, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Ok(());
        }
        let now = self.clock.now();
        self.started.store(now);
        let admitted = self.state.acquire(false, now).and_then(|t| {
            // An unbounded acquire always admits; refusing is reported, never a panic.
            t.ok_or_else(|| crate::error::Error::NoCapacity {
                message: format!("{:?} refused an unbounded request", self.state.id),
                retry_after_s: 0.0,
            })
        });
        match admitted {
            Ok(ticket) => {
                let _ = self.ticket.set(ticket);
                Ok(())
            }
            Err(e) => {
                // Nothing is held: exit and garbage collection must not give anything back.
                self.phase.store(RELEASED, Ordering::Release);
                Err(e)
            }
        }
    }

    /// Gives the slot back once; records latency and outcome.
    fn finish(&self, success: bool) {
        if let Some((ticket, now)) = self.settle(success) {
            self.state.release_ticket(ticket, now);
        }
    }

    /// Ends the request once (latency, outcome) and hands its ticket over for release, so
    /// that many can go back together; None when already ended or never admitted.
    fn settle(&self, success: bool) -> Option<(&Ticket, f64)> {
        if self
            .phase
            .compare_exchange(HELD, RELEASED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return None;
        }
        let now = self.clock.now();
        let latency_ms = ((now - self.started.load()) * 1000.0).max(0.0);
        self.state.record_latency(latency_ms, now);
        if let Some(cb) = &self.on_release {
            cb(
                &self.state.id,
                latency_ms,
                success && !self.failed.load(Ordering::Acquire),
            );
        }
        self.ticket.get().map(|ticket| (ticket, now))
    }
}

/// Ends every request in `handles` still in flight, giving each model's tickets back in one
/// step (one round trip per model with a shared backend). Returns how many it ended.
pub fn release_all(handles: &[&PyInFlight], success: bool) -> usize {
    let mut by_model: Vec<(&Arc<ModelState>, Vec<Ticket>, f64)> = Vec::new();
    let mut ended = 0;
    for handle in handles {
        let Some((ticket, now)) = handle.settle(success) else {
            continue;
        };
        ended += 1;
        match by_model
            .iter_mut()
            .find(|(s, ..)| Arc::ptr_eq(s, &handle.state))
        {
            Some((_, tickets, at)) => {
                tickets.push(ticket.clone());
                *at = at.max(now);
            }
            None => by_model.push((&handle.state, vec![ticket.clone()], now)),
        }
    }
    for (state, tickets, now) in by_model {
        state.release_tickets(&tickets, now);
    }
    ended
}

impl Drop for PyInFlight {
    fn drop(&mut self) {
        self.finish(false);
    }
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

#[pymethods]
impl PyInFlight {
    #[getter]
    fn model_id(&self) -> &str {
        &self.state.id
    }
    /// True when the request waits in the model's queue rather than holding a slot.
    #[getter]
    fn queued(&self) -> bool {
        self.ticket.get().is_some_and(|t| t.slot == Slot::Queued)
    }
    /// The lease held in the shared backend; None for in-process counts (or fail-open).
    #[getter]
    fn lease_id(&self) -> Option<String> {
        self.ticket.get().and_then(|t| t.lease.clone())
    }
    #[getter]
    fn released(&self) -> bool {
        self.phase.load(Ordering::Acquire) == RELEASED
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
        slf.py().detach(|| this.acquire())?;
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
        let success = exc_type.is_none_or(|t| t.is_none());
        py.detach(|| self.finish(success));
        false
    }

    fn __aenter__(slf: Bound<'_, Self>) -> PyResult<Ready> {
        let this = slf.get();
        slf.py().detach(|| this.acquire())?;
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
        let success = exc_type.is_none_or(|t| t.is_none());
        py.detach(|| self.finish(success));
        Ready(Some(PyBool::new(py, false).to_owned().into_any().unbind()))
    }

    fn __repr__(&self) -> String {
        let phase = match self.phase.load(Ordering::Acquire) {
            NOT_ENTERED => "not entered",
            HELD => "in flight",
            _ => "released",
        };
        format!("InFlight({:?}, {phase})", self.state.id)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyInFlight>()?;
    Ok(())
}
