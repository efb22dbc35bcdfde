//! What the bindings share: anything array-like becomes a contiguous f64 buffer, with errors
//! that name the argument; core `Serialize` values become Python objects (the one serde →
//! Python converter); renamed arguments warn; getters of core fields are generated.

use numpy::{PyArray1, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::errors::invalid;

/// The one serde → Python converter: a core struct becomes a dict (field names as keys), a
/// sequence a list, `None` stays `None`. Every `to_dict()` goes through here.
pub fn to_py<'py, T: serde::Serialize + ?Sized>(
    py: Python<'py>,
    value: &T,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(pythonize::pythonize(py, value)?)
}

/// Named values (capability levels, per-model utilization) as a fresh dict, in stored order.
pub fn levels_to_py<'py>(py: Python<'py>, pairs: &[(String, f64)]) -> PyResult<Bound<'py, PyAny>> {
    Ok(crate::ser::pairs_as_map(
        pairs,
        pythonize::Pythonizer::new(py),
    )?)
}

/// `numpy.asarray(obj, dtype="float64")`, with conversion failures reported against `field`.
fn as_float64<'py>(obj: &Bound<'py, PyAny>, field: &str) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    let kwargs = PyDict::new(py);
    kwargs.set_item("dtype", "float64")?;
    py.import("numpy")?
        .getattr("asarray")?
        .call((obj,), Some(&kwargs))
        .map_err(|e| invalid(field, format!("cannot be read as a float64 array ({e})")))
}

/// A contiguous row-major copy of a 2-D array-like, with its shape.
pub fn matrix(obj: &Bound<'_, PyAny>, field: &str) -> PyResult<(Vec<f64>, usize, usize)> {
    let arr = as_float64(obj, field)?;
    let arr = arr
        .cast_into::<numpy::PyArrayDyn<f64>>()
        .map_err(|_| invalid(field, "is not an array"))?;
    if arr.ndim() != 2 {
        return Err(invalid(
            field,
            format!("expected a 2-D array, got {} dimension(s)", arr.ndim()),
        ));
    }
    let (rows, cols) = (arr.shape()[0], arr.shape()[1]);
    let data = arr.readonly().as_array().iter().copied().collect();
    Ok((data, rows, cols))
}

/// A 1-D array-like of exactly `len` values.
pub fn vector(obj: &Bound<'_, PyAny>, field: &str, len: usize) -> PyResult<Vec<f64>> {
    let arr = as_float64(obj, field)?;
    let arr = arr
        .cast_into::<numpy::PyArrayDyn<f64>>()
        .map_err(|_| invalid(field, "is not an array"))?;
    if arr.ndim() != 1 || arr.len() != len {
        return Err(invalid(
            field,
            format!("expected shape ({len},), got {:?}", arr.shape()),
        ));
    }
    Ok(arr.readonly().as_array().iter().copied().collect())
}

/// A row-major buffer as a `rows × cols` float64 numpy array (no copy).
pub fn to_matrix<'py>(
    py: Python<'py>,
    data: Vec<f64>,
    rows: usize,
    cols: usize,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(PyArray1::from_vec(py, data)
        .reshape([rows, cols])?
        .into_any())
}

/// An argument renamed in the public API: the value under its new name, or under the old one
/// with a DeprecationWarning naming the new one (kept one release). Both is an input error.
pub fn renamed<T>(
    py: Python<'_>,
    function: &str,
    (new, new_value): (&str, Option<T>),
    (old, old_value): (&str, Option<T>),
) -> PyResult<Option<T>> {
    match (new_value, old_value) {
        (Some(_), Some(_)) => Err(invalid(
            old,
            format!("is the deprecated name of {new}; give only {new}"),
        )),
        (None, Some(value)) => {
            let message = format!("{function}({old}=...) is deprecated; use {new}=... instead");
            deprecated(py, &message, 1)?;
            Ok(Some(value))
        }
        (value, None) => Ok(value),
    }
}

/// A DeprecationWarning pointing `stacklevel` frames up.
pub fn deprecated(py: Python<'_>, message: &str, stacklevel: i32) -> PyResult<()> {
    let message = std::ffi::CString::new(message)?;
    let category = py.get_type::<pyo3::exceptions::PyDeprecationWarning>();
    PyErr::warn(py, &category, &message, stacklevel)
}

/// `#[pymethods]` of a class wrapping a core value (`self.0`, or a named field): a read-only
/// getter per listed `Copy` field of that value, then (after `calls`) one per listed method of
/// it that takes no argument, then the methods written out as usual. A `///` line before a
/// listed name becomes its docstring.
macro_rules! pymethods_with_getters {
    ($class:ty, $inner:tt { $($(#[$fdoc:meta])* $field:ident: $ty:ty),* $(,)? }
     calls { $($(#[$cdoc:meta])* $call:ident: $cty:ty),* $(,)? } $($methods:tt)*) => {
        #[pyo3::pymethods]
        impl $class {
            $(
                $(#[$fdoc])*
                #[getter]
                fn $field(&self) -> $ty {
                    self.$inner.$field
                }
            )*
            $(
                $(#[$cdoc])*
                #[getter]
                fn $call(&self) -> $cty {
                    self.$inner.$call()
                }
            )*
            $($methods)*
        }
    };
    ($class:ty, $inner:tt { $($(#[$fdoc:meta])* $field:ident: $ty:ty),* $(,)? } $($methods:tt)*) => {
        $crate::python::arrays::pymethods_with_getters! {
            $class, $inner { $($(#[$fdoc])* $field: $ty),* } calls {} $($methods)*
        }
    };
}
pub(crate) use pymethods_with_getters;
