//! The single mapping from the core `Error` onto the Python exception hierarchy, which is
//! defined in `modelrouter/errors.py` so that classes can inherit from both `RouterError` and
//! the matching builtin (`ValueError`, `KeyError`).

use pyo3::PyErr;

use crate::error::Error;

pyo3::import_exception!(modelrouter.errors, InvalidInputError);
pyo3::import_exception!(modelrouter.errors, InfeasibleError);
pyo3::import_exception!(modelrouter.errors, UnknownModelError);
pyo3::import_exception!(modelrouter.errors, NoCapacityError);
pyo3::import_exception!(modelrouter.errors, BackendUnavailableError);

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        match err {
            Error::InvalidInput { field, message } => InvalidInputError::new_err((message, field)),
            Error::Infeasible(message) => InfeasibleError::new_err(message),
            Error::UnknownModel(id) => UnknownModelError::new_err(id),
            Error::NoCapacity {
                message,
                retry_after_s,
            } => NoCapacityError::new_err((message, retry_after_s)),
            Error::BackendUnavailable(message) => BackendUnavailableError::new_err(message),
        }
    }
}

/// Shorthand for a Python-side input error naming `field`.
pub fn invalid(field: &str, reason: impl std::fmt::Display) -> PyErr {
    Error::invalid(field, reason).into()
}

/// Integer arguments read through `#[pyo3(from_py_with = int::NAME)]`: a Python int beyond
/// 64 bits is an input error naming the field (pyo3 alone raises a bare OverflowError).
pub mod int {
    use pyo3::exceptions::PyOverflowError;
    use pyo3::prelude::*;

    fn arg(obj: &Bound<'_, PyAny>, field: &str) -> PyResult<i64> {
        obj.extract::<i64>().map_err(|e| {
            if e.is_instance_of::<PyOverflowError>(obj.py()) {
                super::invalid(field, format!("must be below 2**63, got {obj}"))
            } else {
                e
            }
        })
    }

    macro_rules! fields {
        ($($name:ident),*) => {$(
            pub fn $name(obj: &Bound<'_, PyAny>) -> PyResult<i64> {
                arg(obj, stringify!($name))
            }
        )*};
    }
    fields!(
        context_window,
        max_concurrent,
        max_queue,
        min_context,
        delta,
        n
    );
    fields!(
        min_samples,
        history_limit,
        recent_samples,
        max_agents,
        retries
    );

    /// The same for arguments that may be None.
    pub mod opt {
        use pyo3::prelude::*;
        macro_rules! fields {
            ($($name:ident),*) => {$(
                pub fn $name(obj: &Bound<'_, PyAny>) -> PyResult<Option<i64>> {
                    if obj.is_none() { Ok(None) } else { super::$name(obj).map(Some) }
                }
            )*};
        }
        fields!(active_requests, queue_depth, limit);
    }
    fields!(active_requests, queue_depth, limit);
}

/// Token counts and token limits read through `#[pyo3(from_py_with = tokens::NAME)]`: only a
/// Python int is a count; a float, a string or a negative number is an input error naming the
/// field (a token count of 1.5 is a caller's bug, never rounded).
pub mod tokens {
    use pyo3::prelude::*;
    use pyo3::types::{PyBool, PyInt};

    fn count(obj: &Bound<'_, PyAny>, field: &str) -> PyResult<i64> {
        if !obj.is_instance_of::<PyInt>() || obj.is_instance_of::<PyBool>() {
            let got = obj
                .repr()
                .map_or_else(|_| "?".to_string(), |r| r.to_string());
            return Err(super::invalid(
                field,
                format!("must be an integer, got {got}"),
            ));
        }
        obj.extract::<i64>()
            .map_err(|_| super::invalid(field, format!("must be below 2**63, got {obj}")))
    }

    macro_rules! counts {
        ($($name:ident),*) => {$(
            pub fn $name(obj: &Bound<'_, PyAny>) -> PyResult<u64> {
                Ok(crate::limits::tokens_arg(stringify!($name), count(obj, stringify!($name))?)?)
            }
        )*};
    }
    counts!(tokens, max_output_tokens, prompt_tokens, completion_tokens);

    /// Limits: None (unlimited) or an integer (checked >= 1 by `Limits::new`).
    pub mod limit {
        use pyo3::prelude::*;
        macro_rules! limits {
            ($($name:ident),*) => {$(
                pub fn $name(obj: &Bound<'_, PyAny>) -> PyResult<Option<i64>> {
                    if obj.is_none() { Ok(None) } else { super::count(obj, stringify!($name)).map(Some) }
                }
            )*};
        }
        limits!(rpm, tpm, max_tokens_in_flight);
    }
}
