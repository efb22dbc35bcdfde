//! Capacitated assignment by min-cost flow on the agents → models graph.
//! TO BE IMPLEMENTED (helper): see the contract on `assign_capacitated`.

use crate::error::{Error, Result};

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

/// Contract: `cost` is row-major `n_agents × n_models`, +inf = forbidden, NaN/−inf → InvalidInput
/// naming "cost"; `capacities.len() == n_models` else InvalidInput naming "capacities".
pub fn assign_capacitated(
    cost: &[f64],
    n_agents: usize,
    n_models: usize,
    capacities: &[usize],
    policy: UnassignedPolicy,
) -> Result<CapacitatedAssignment> {
    let _ = (cost, n_agents, n_models, capacities, policy);
    Err(Error::Infeasible("not implemented".into()))
}
