//! `InFlight`: the Python face of a core `Guard` (returned by `track()` and `request()`).

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use pyo3::types::PyBool;

use super::arrays::pymethods_with_getters;
use super::errors::tokens;
use crate::router::{Guard, Outcome};

/// One in-flight request: holds an active slot (or queue place) from enter until exit,
/// exception, cancellation or garbage collection — whichever comes first, exactly once.
#[pyclass(frozen, module = "modelrouter", name = "InFlight")]
pub struct PyInFlight(pub Guard);

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

pymethods_with_getters! {
    PyInFlight, 0 {}
    calls {
        model_id: &str,
        /// True when the request waits in the model's queue rather than holding a slot.
        queued: bool,
        /// The lease held in the shared backend; None for in-process counts (or fail-open).
        lease_id: Option<String>,
        released: bool,
    }

    /// Tokens the request holds in flight: its reservation, or its usage once reported.
    #[getter]
    fn tokens(&self) -> u64 {
        self.0.tokens()
    }

    /// The request's actual usage as the provider counts it: the model's TPM window counts
    /// `prompt_tokens + completion_tokens` instead of the reservation (freeing what was not
    /// used), and so do its tokens in flight until the request ends.
    fn set_usage(
        &self,
        #[pyo3(from_py_with = tokens::prompt_tokens)] prompt_tokens: u64,
        #[pyo3(from_py_with = tokens::completion_tokens)] completion_tokens: u64,
    ) {
        self.0.set_usage(prompt_tokens, completion_tokens);
    }

    /// The answer's first token (or stream chunk) arrived now, or `ttft_ms` after the start
    /// as the caller measured it: the model learns its time to first token at once, and with
    /// `set_usage` its time per output token at the end. Only the first report counts;
    /// returns the time to first token in ms (None before the request holds its slot or
    /// after it ended). ValueError unless `ttft_ms` is finite and >= 0.
    #[pyo3(signature = (ttft_ms=None))]
    fn first_token(&self, py: Python<'_>, ttft_ms: Option<f64>) -> PyResult<Option<f64>> {
        Ok(py.detach(|| self.0.first_token(ttft_ms))?)
    }

    /// Marks the request failed without raising (e.g. the model returned an error body).
    fn mark_failed(&self) {
        self.0.mark_failed();
    }

    /// Says how the request failed: `kind` is one of `modelrouter.OUTCOMES` (e.g.
    /// `"rate_limited"` with the provider's `retry_after_s`, `"server_error"`, `"timeout"`,
    /// `"client_error"`); the release reports it to the router's health and statistics.
    #[pyo3(signature = (kind, retry_after_s=None))]
    fn fail(&self, kind: &str, retry_after_s: Option<f64>) -> PyResult<()> {
        self.0.report(crate::router::Outcome::parse(kind, retry_after_s)?);
        Ok(())
    }

    /// `fail` with a classifier's outcome (`Router.call`): see `Outcome::classified`.
    fn _fail_classified(&self, kind: &str, retry_after_s: Option<f64>) -> PyResult<()> {
        self.0.report(crate::router::Outcome::classified(kind, retry_after_s)?);
        Ok(())
    }

    /// Ends the request now (idempotent); `with` does this for you.
    #[pyo3(signature = (success=true))]
    fn release(&self, py: Python<'_>, success: bool) {
        py.detach(|| self.0.finish(success));
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyResult<PyRef<'_, Self>> {
        let guard = &slf.0;
        slf.py().detach(|| guard.enter())?;
        Ok(slf)
    }

    #[pyo3(signature = (exc_type=None, exc=None, _tb=None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> bool {
        let outcome = exit_outcome(exc_type, exc);
        py.detach(|| self.0.finish_with(outcome));
        false
    }

    fn __aenter__(slf: Bound<'_, Self>) -> PyResult<Ready> {
        let guard = &slf.get().0;
        slf.py().detach(|| guard.enter())?;
        Ok(Ready(Some(slf.into_any().unbind())))
    }

    #[pyo3(signature = (exc_type=None, exc=None, _tb=None))]
    fn __aexit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> Ready {
        let outcome = exit_outcome(exc_type, exc);
        py.detach(|| self.0.finish_with(outcome));
        Ready(Some(PyBool::new(py, false).to_owned().into_any().unbind()))
    }

    fn __repr__(&self) -> String {
        self.0.to_string()
    }
}

/// How a `with` block ended: `ok` without an exception, else what `modelrouter.outcomes`
/// makes of the exception (HTTP status, Retry-After, context length...); `failed` when it
/// cannot tell. A Retry-After only goes with a rate limit.
fn exit_outcome(exc_type: Option<&Bound<'_, PyAny>>, exc: Option<&Bound<'_, PyAny>>) -> Outcome {
    if succeeded(exc_type) {
        return Outcome::Ok;
    }
    let Some(exc) = exc.filter(|e| !e.is_none()) else {
        return Outcome::Failed;
    };
    let classified = (|| -> PyResult<Outcome> {
        let outcome = exc
            .py()
            .import("modelrouter.outcomes")?
            .call_method1("classify", (exc,))?;
        let kind: String = outcome.getattr("kind")?.extract()?;
        let retry: Option<f64> = outcome.getattr("retry_after_s")?.extract()?;
        Ok(Outcome::classified(&kind, retry)?)
    })();
    classified.unwrap_or(Outcome::Failed)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyInFlight>()?;
    Ok(())
}
