//! Capacitated assignment: each model takes up to `capacities[j]` agents, each agent at most one
//! model, by min-cost flow on agents → models without ever replicating a model per slot.
//!
//! The flow is solved exactly by successive shortest paths over the models (see `solver`).
//! Why inserting agents one at a time is exact: with the virtual "unassigned" node of unlimited
//! capacity every agent is always placed somewhere, so after `t` insertions the flow is a
//! min-cost flow of value `t` on the first `t` agents. A new agent has no residual arc into it,
//! so it lies on no negative cycle; the old flow stays optimal in the enlarged graph, and
//! augmenting along a shortest path keeps it optimal (the classic SSP argument).

mod lex;
mod pairs;
mod solver;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

use crate::error::{Error, Result};
use lex::Keys;
use solver::Solver;

/// What to optimise when not every agent can, or should, be placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnassignedPolicy {
    /// Place as many agents as possible, then minimise total cost among those placements
    /// (OR-Tools `SolveMaxFlowWithMinCost`).
    #[default]
    MaxCardinality,
    /// Minimise total cost over all partial placements: an agent is placed only when that
    /// lowers the total (useful with cost = −score); ties go to placing more agents.
    MinCost,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct CapacitatedAssignment {
    /// Model index per agent, −1 where the agent is not placed.
    pub model_of: Vec<i64>,
    /// Sum of cost over placed agents.
    pub total_cost: f64,
}

/// Path costs add up to ~2·(models+1) entries plus potentials; beyond this magnitude the costs
/// are rescaled by a power of two (exact) so no sum can overflow to ±inf.
const SAFE_MAGNITUDE: f64 = 1e250;

/// Largest model count for which the pair cache is kept: ~100 bytes per ordered pair of models
/// (a row per model that has members), so at most ~64 MB. Beyond it the search scans members
/// directly in O(n + m) memory.
const MAX_CACHED_MODELS: usize = 800;

/// Contract: `cost` is row-major `n_agents × n_models`, +inf = forbidden, NaN/−inf → InvalidInput
/// naming "cost"; `capacities.len() == n_models` else InvalidInput naming "capacities".
pub fn assign_capacitated(
    cost: &[f64],
    n_agents: usize,
    n_models: usize,
    capacities: &[usize],
    policy: UnassignedPolicy,
) -> Result<CapacitatedAssignment> {
    let cached = n_models <= MAX_CACHED_MODELS;
    assign_with(cost, n_agents, n_models, capacities, policy, cached)
}

/// Turns a score matrix to maximise into costs to minimise, in place. As in scipy, −inf
/// forbids a pair when maximising and +inf is meaningless: it is an input error naming the
/// entry (row, column) of the `n_models`-wide matrix.
pub fn negate_for_maximize(cost: &mut [f64], n_models: usize) -> Result<()> {
    if let Some(idx) = cost.iter().position(|&c| c == f64::INFINITY) {
        let (i, j) = (idx / n_models.max(1), idx % n_models.max(1));
        return Err(Error::invalid(
            "cost",
            format!("entry ({i}, {j}) is +inf; with maximize=True use -inf to forbid a pair"),
        ));
    }
    cost.iter_mut().for_each(|c| *c = -*c);
    Ok(())
}

fn negative_capacity(j: usize, c: impl std::fmt::Display) -> Error {
    Error::invalid(
        "capacities",
        format!("entry {j} is {c}, expected a non-negative integer"),
    )
}

/// Capacities given as signed integers; a negative entry is an input error naming it.
pub fn capacities_from_i64(values: &[i64]) -> Result<Vec<usize>> {
    values
        .iter()
        .enumerate()
        .map(|(j, &c)| usize::try_from(c).map_err(|_| negative_capacity(j, c)))
        .collect()
}

/// Capacities given as floats: integral values only (huge ones saturate: unlimited).
pub fn capacities_from_f64(values: &[f64]) -> Result<Vec<usize>> {
    values
        .iter()
        .enumerate()
        .map(|(j, &c)| {
            if c.fract() != 0.0 || c.is_nan() {
                Err(Error::invalid(
                    "capacities",
                    format!("entry {j} is {c}, expected an integer"),
                ))
            } else if c < 0.0 {
                Err(negative_capacity(j, c))
            } else {
                Ok(c as usize) // saturates: huge means unlimited
            }
        })
        .collect()
}

/// `assign_capacitated` with the search mode chosen by the caller (tests exercise both).
fn assign_with(
    cost: &[f64],
    n_agents: usize,
    n_models: usize,
    capacities: &[usize],
    policy: UnassignedPolicy,
    cached: bool,
) -> Result<CapacitatedAssignment> {
    let expected = n_agents.checked_mul(n_models).ok_or_else(|| {
        Error::invalid(
            "cost",
            format!("shape {n_agents} x {n_models} is too large"),
        )
    })?;
    if cost.len() != expected {
        return Err(Error::invalid(
            "cost",
            format!(
                "expected {expected} entries for {n_agents} agents x {n_models} models, got {}",
                cost.len()
            ),
        ));
    }
    if capacities.len() != n_models {
        return Err(Error::invalid(
            "capacities",
            format!(
                "expected {n_models} entries (one per model), got {}",
                capacities.len()
            ),
        ));
    }
    // No model: nothing to solve (and no per-agent solver state to allocate).
    if n_models == 0 {
        return Ok(CapacitatedAssignment {
            model_of: vec![-1; n_agents],
            total_cost: 0.0,
        });
    }
    if n_agents > u32::MAX as usize - 1 || n_models > u32::MAX as usize - 1 {
        return Err(Error::invalid(
            "cost",
            "more than 2^32 - 2 agents or models",
        ));
    }
    let mut max_abs = 0.0f64;
    for (idx, &c) in cost.iter().enumerate() {
        if c.is_nan() || c == f64::NEG_INFINITY {
            let what = if c.is_nan() { "NaN" } else { "-inf" };
            return Err(Error::invalid(
                "cost",
                format!(
                    "entry ({}, {}) is {what}; use +inf to forbid a pair",
                    idx / n_models,
                    idx % n_models
                ),
            ));
        }
        if c.is_finite() {
            max_abs = max_abs.max(c.abs());
        }
    }
    let work = rescaled(cost, max_abs);
    let keys = Keys::new(&work, n_models, policy);
    let mut solver = Solver::new(keys, n_agents, n_models, capacities, cached);
    for i in 0..n_agents {
        solver.insert(i)?;
    }
    let mut total_cost = 0.0;
    let model_of = solver
        .into_nodes()
        .into_iter()
        .enumerate()
        .map(|(i, node)| {
            let j = node as usize;
            if j < n_models {
                total_cost += cost[i * n_models + j];
                j as i64
            } else {
                -1
            }
        })
        .collect();
    Ok(CapacitatedAssignment {
        model_of,
        total_cost,
    })
}

/// Costs scaled by a power of two when huge, so sums stay finite; the solution is unchanged.
fn rescaled(cost: &[f64], max_abs: f64) -> Cow<'_, [f64]> {
    if max_abs <= SAFE_MAGNITUDE {
        return Cow::Borrowed(cost);
    }
    let mut factor = 1.0f64;
    while max_abs * factor > SAFE_MAGNITUDE {
        factor *= 0.5f64.powi(64);
    }
    Cow::Owned(cost.iter().map(|&c| c * factor).collect())
}
