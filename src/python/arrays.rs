//! numpy conversions shared by the bindings: anything array-like becomes a contiguous f64
//! buffer, with errors that name the argument.

use numpy::{PyArray1, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::errors::invalid;

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
