//! Exact rectangular linear assignment (Jonker–Volgenant shortest augmenting path).
//! TO BE IMPLEMENTED (helper): see the contract on `linear_sum_assignment`.

use crate::error::{Error, Result};

/// scipy-shaped result: `rows[k]` is assigned `cols[k]`; `rows` is sorted ascending.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assignment {
    pub rows: Vec<usize>,
    pub cols: Vec<usize>,
}

/// Minimum (or maximum) cost assignment of a row-major `n_rows × n_cols` matrix.
/// Contract (scipy.optimize.linear_sum_assignment): min(n_rows, n_cols) pairs; +inf forbidden
/// (−inf when maximizing); NaN / −inf → `Error::invalid_verbatim("cost_matrix",
/// "matrix contains invalid numeric entries")`; no full finite assignment →
/// `Error::Infeasible("cost matrix is infeasible")`.
pub fn linear_sum_assignment(
    cost: &[f64],
    n_rows: usize,
    n_cols: usize,
    maximize: bool,
) -> Result<Assignment> {
    let _ = (cost, n_rows, n_cols, maximize);
    Err(Error::Infeasible("not implemented".into()))
}
