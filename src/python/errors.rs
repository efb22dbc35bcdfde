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
