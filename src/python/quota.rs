//! `Quota` / `QuotaSpend`: a caller's own RPM/TPM quota (see `crate::limits::quota`).

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::errors::tokens;
use super::load::{clock_from, PyManualClock};
use crate::limits::{Limits, Quota, Spend};

/// RPM, TPM and tokens in flight of one caller (an API key), over exact sliding 60-s windows.
#[pyclass(frozen, module = "modelrouter", name = "Quota")]
pub struct PyQuota(Arc<Quota>);

/// What one admitted request holds of its quota; `with` (or `release`) gives it back.
#[pyclass(frozen, module = "modelrouter", name = "QuotaSpend")]
pub struct PyQuotaSpend(Spend);

#[pymethods]
impl PyQuota {
    #[new]
    #[pyo3(signature = (*, rpm=None, tpm=None, max_tokens_in_flight=None, clock=None))]
    fn new(
        #[pyo3(from_py_with = tokens::limit::rpm)] rpm: Option<i64>,
        #[pyo3(from_py_with = tokens::limit::tpm)] tpm: Option<i64>,
        #[pyo3(from_py_with = tokens::limit::max_tokens_in_flight)] max_tokens_in_flight: Option<
            i64,
        >,
        clock: Option<&Bound<'_, PyManualClock>>,
    ) -> PyResult<Self> {
        let limits = Limits::new(rpm, tpm, max_tokens_in_flight)?;
        Ok(PyQuota(Arc::new(Quota::new(limits, clock_from(clock)))))
    }

    /// Admits one request of `tokens` or raises `NoCapacityError` (with `retry_after_s`, when
    /// the windows free enough) — or `InvalidInputError` when it could never fit.
    #[pyo3(signature = (tokens=0))]
    fn admit(&self, #[pyo3(from_py_with = tokens::tokens)] tokens: u64) -> PyResult<PyQuotaSpend> {
        Ok(PyQuotaSpend(self.0.admit(tokens)?))
    }

    #[getter]
    fn rpm(&self) -> Option<u64> {
        self.0.limits().rpm
    }

    #[getter]
    fn tpm(&self) -> Option<u64> {
        self.0.limits().tpm
    }

    #[getter]
    fn max_tokens_in_flight(&self) -> Option<u64> {
        self.0.limits().max_tokens_in_flight
    }

    /// `{"requests_in_window", "tokens_in_window", "tokens_in_flight"}` now.
    fn load<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let load = self.0.load();
        let d = PyDict::new(py);
        d.set_item("requests_in_window", load.requests_in_window)?;
        d.set_item("tokens_in_window", load.tokens_in_window)?;
        d.set_item("tokens_in_flight", load.in_flight)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        let l = self.0.limits();
        let show = |v: Option<u64>| v.map_or("None".to_string(), |v| v.to_string());
        format!(
            "Quota(rpm={}, tpm={}, max_tokens_in_flight={})",
            show(l.rpm),
            show(l.tpm),
            show(l.max_tokens_in_flight)
        )
    }
}

#[pymethods]
impl PyQuotaSpend {
    /// The usage the provider counted: the TPM window takes it instead of the reservation.
    fn set_usage(
        &self,
        #[pyo3(from_py_with = tokens::prompt_tokens)] prompt_tokens: u64,
        #[pyo3(from_py_with = tokens::completion_tokens)] completion_tokens: u64,
    ) {
        self.0
            .reconcile(prompt_tokens.saturating_add(completion_tokens));
    }

    /// Gives the tokens in flight back (idempotent; the window entries stay for 60 s).
    fn release(&self) {
        self.0.release();
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.0.release();
        false
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyQuota>()?;
    m.add_class::<PyQuotaSpend>()?;
    Ok(())
}
