//! `linear_sum_assignment`: a drop-in for `scipy.optimize.linear_sum_assignment`.

use numpy::{PyArray1, PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::Error;
use crate::lap;

type Indices<'py> = Bound<'py, PyArray1<i64>>;

/// Solve the linear sum assignment problem (scipy-compatible).
///
/// Returns `(row_ind, col_ind)` (int64, `row_ind` sorted) minimising, or with `maximize`
/// maximising, `cost_matrix[row_ind, col_ind].sum()`. `+inf` (`-inf` when maximising) forbids a
/// pair; raises `InfeasibleError` when no full assignment avoids them.
#[pyfunction]
#[pyo3(
    signature = (cost_matrix, maximize = None),
    text_signature = "(cost_matrix, maximize=False)"
)]
fn linear_sum_assignment<'py>(
    py: Python<'py>,
    cost_matrix: &Bound<'py, PyAny>,
    maximize: Option<&Bound<'py, PyAny>>,
) -> PyResult<(Indices<'py>, Indices<'py>)> {
    // scipy parses `maximize` with "p": any object, judged by truthiness.
    let maximize = maximize
        .map(|m| m.is_truthy())
        .transpose()?
        .unwrap_or(false);
    let array = float_matrix(cost_matrix)?;
    let shape = array.shape().to_vec();
    if shape.len() != 2 {
        let message = format!("expected a matrix (2-D array), got a {} array", shape.len());
        return Err(Error::invalid_verbatim("cost_matrix", message).into());
    }
    let view = array.try_readonly()?;
    let cost = view.as_slice()?;
    let result = py.detach(|| lap::linear_sum_assignment(cost, shape[0], shape[1], maximize))?;
    let to_array = |ix: Vec<usize>| PyArray1::from_iter(py, ix.into_iter().map(|x| x as i64));
    Ok((to_array(result.rows), to_array(result.cols)))
}

/// C-contiguous, aligned float64 version of `obj`, converted the way scipy's
/// `PyArray_ContiguousFromAny` does: sequences and scalars through `numpy.asarray`, existing
/// arrays only by a 'safe' cast (so complex, object and string arrays raise `TypeError` instead
/// of being truncated). A float64 array that is already fine is used as is, without a copy.
fn float_matrix<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArrayDyn<f64>>> {
    let array = match obj.cast::<PyArrayDyn<f64>>() {
        Ok(array) => array.clone(),
        Err(_) => as_float64(obj)?,
    };
    if array.is_c_contiguous() && array.is_aligned() {
        return Ok(array);
    }
    Ok(array
        .call_method1("copy", ("C",))?
        .cast_into::<PyArrayDyn<f64>>()?)
}

fn as_float64<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArrayDyn<f64>>> {
    let py = obj.py();
    let np = py.import("numpy")?;
    let float64 = np.getattr("float64")?;
    if obj.is_instance(&np.getattr("ndarray")?)? {
        let dtype = obj.getattr("dtype")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("casting", "safe")?;
        let safe = np.call_method("can_cast", (&dtype, &float64), Some(&kwargs))?;
        if !safe.is_truthy()? {
            return Err(PyTypeError::new_err(format!(
                "Cannot cast array data from {} to dtype('float64') according to the rule 'safe'",
                dtype.repr()?
            )));
        }
    }
    let kwargs = PyDict::new(py);
    kwargs.set_item("dtype", float64)?;
    kwargs.set_item("order", "C")?;
    let array = np.call_method("asarray", (obj,), Some(&kwargs))?;
    Ok(array.cast_into::<PyArrayDyn<f64>>()?)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(linear_sum_assignment, m)?)
}
