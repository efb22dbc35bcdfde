//! `assign_capacitated` binding: numpy conversion and validation here, the solve in
//! `crate::flow` with the GIL released.

use numpy::{
    PyArray1, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use super::errors::invalid;
use crate::flow::{
    assign_capacitated as solve, assign_capacitated_counts as solve_counts, capacities_from_f64,
    capacities_from_i64, counts_from_f64, counts_from_i64, negate_for_maximize, UnassignedPolicy,
};

/// Model index per agent (-1 = not placed); model `j` takes at most `capacities[j]` agents.
///
/// `cost[i, j]` is agent `i` on model `j`; `+inf` forbids the pair (`-inf` with
/// `maximize=True`, which maximises the total instead). Exact min-cost flow.
///
/// When not every agent fits: place as many agents as possible, then minimise the total cost
/// among those placements. With `allow_unassigned=True` an agent is placed only when that
/// lowers the total (minimum total cost over all partial placements; ties go to placing more
/// agents) -- use it with costs that can be negative, e.g. `-score`.
///
/// `counts` (agent types): row `t` of `cost` stands for `counts[t]` identical agents; the
/// result has `sum(counts)` entries, type by type, and within a type the models ascend (then
/// -1). Without `counts`, identical rows are collapsed the same way when there are few
/// distinct ones (so inside `Router.assign` when agent profiles repeat).
#[pyfunction]
#[pyo3(signature = (cost, capacities, *, counts = None, maximize = false, allow_unassigned = false))]
fn assign_capacitated<'py>(
    py: Python<'py>,
    cost: &Bound<'py, PyAny>,
    capacities: &Bound<'py, PyAny>,
    counts: Option<&Bound<'py, PyAny>>,
    maximize: bool,
    allow_unassigned: bool,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let (n_agents, n_models, mut flat) = cost_matrix(cost)?;
    let caps = capacity_vector(capacities)?;
    let counts = counts
        .filter(|c| !c.is_none())
        .map(count_vector)
        .transpose()?;
    if maximize {
        negate_for_maximize(&mut flat, n_models)?;
    }
    let policy = if allow_unassigned {
        UnassignedPolicy::MinCost
    } else {
        UnassignedPolicy::MaxCardinality
    };
    let res = match counts {
        None => py.detach(|| solve(&flat, n_agents, n_models, &caps, policy))?,
        Some(counts) => {
            if counts.len() != n_agents {
                return Err(invalid(
                    "counts",
                    format!(
                        "expected {n_agents} entries (one per row of cost), got {}",
                        counts.len()
                    ),
                ));
            }
            py.detach(|| solve_counts(&flat, &counts, n_models, &caps, policy))?
        }
    };
    Ok(PyArray1::from_vec(py, res.model_of))
}

/// Integer 1-D array-like of agents per type; negatives are an input error naming "counts".
fn count_vector(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u64>> {
    let arr = as_array(obj, "counts")?;
    if arr.ndim() != 1 {
        return Err(invalid(
            "counts",
            format!("expected a 1-D array, got {} dimension(s)", arr.ndim()),
        ));
    }
    let dtype = arr.dtype();
    let values: Vec<usize> = match dtype.kind() {
        b'i' | b'u' => counts_from_i64("counts", &contiguous::<i64>(&arr, "int64")?)?,
        b'f' => counts_from_f64("counts", &contiguous::<f64>(&arr, "float64")?)?,
        _ => {
            return Err(invalid(
                "counts",
                format!("expected integer entries, got dtype {dtype}"),
            ))
        }
    };
    Ok(values.into_iter().map(|c| c as u64).collect())
}

/// `np.asarray(obj)`, with conversion failures reported as an input error naming `field`.
fn as_array<'py>(obj: &Bound<'py, PyAny>, field: &str) -> PyResult<Bound<'py, PyUntypedArray>> {
    let np = obj.py().import("numpy")?;
    let arr = np
        .call_method1("asarray", (obj,))
        .map_err(|e| invalid(field, format!("cannot convert to an array ({e})")))?;
    arr.cast_into::<PyUntypedArray>()
        .map_err(|_| invalid(field, "cannot convert to an array"))
}

/// Contiguous copy as `dtype`; the solve then owns its data while the GIL is released.
fn contiguous<'py, T: numpy::Element + Copy>(
    arr: &Bound<'py, PyUntypedArray>,
    dtype: &str,
) -> PyResult<Vec<T>> {
    let np = arr.py().import("numpy")?;
    let conv = np.call_method1("ascontiguousarray", (arr, dtype))?;
    let typed = conv.cast_into::<PyArrayDyn<T>>()?;
    let view = typed.readonly();
    Ok(view.as_array().iter().copied().collect())
}

/// Numeric 2-D array-like → (rows, cols, row-major float64 copy).
fn cost_matrix(obj: &Bound<'_, PyAny>) -> PyResult<(usize, usize, Vec<f64>)> {
    let arr = as_array(obj, "cost")?;
    if arr.ndim() != 2 {
        return Err(invalid(
            "cost",
            format!("expected a 2-D array, got {} dimension(s)", arr.ndim()),
        ));
    }
    let dtype = arr.dtype();
    if !matches!(dtype.kind(), b'b' | b'i' | b'u' | b'f') {
        return Err(invalid(
            "cost",
            format!("expected numeric entries, got dtype {dtype}"),
        ));
    }
    let (rows, cols) = (arr.shape()[0], arr.shape()[1]);
    Ok((rows, cols, contiguous::<f64>(&arr, "float64")?))
}

/// Integer 1-D array-like → capacities; integral floats are accepted, negatives are not.
fn capacity_vector(obj: &Bound<'_, PyAny>) -> PyResult<Vec<usize>> {
    let arr = as_array(obj, "capacities")?;
    if arr.ndim() != 1 {
        return Err(invalid(
            "capacities",
            format!("expected a 1-D array, got {} dimension(s)", arr.ndim()),
        ));
    }
    let dtype = arr.dtype();
    match dtype.kind() {
        b'i' => Ok(capacities_from_i64(&contiguous::<i64>(&arr, "int64")?)?),
        // Anything beyond usize is as good as unlimited.
        b'u' => Ok(contiguous::<u64>(&arr, "uint64")?
            .into_iter()
            .map(|c| usize::try_from(c).unwrap_or(usize::MAX))
            .collect()),
        b'f' => Ok(capacities_from_f64(&contiguous::<f64>(&arr, "float64")?)?),
        _ => Err(invalid(
            "capacities",
            format!("expected integer entries, got dtype {dtype}"),
        )),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(assign_capacitated, m)?)
}
