//! Batch assignment: capability scores, optional load awareness and adaptive scores, then a
//! strategy over the free slots.

use std::fmt;

use serde::Serialize;

use super::Router;
use crate::balancer::weighted_score;
use crate::capability::{cost_matrix, score_of_cost, AgentProfile, ModelProfile};
use crate::display::{html_table, py_bool, py_float, py_str, py_str_list};
use crate::error::{Error, Result};
use crate::load::{Capacity, TokenLoad};
use crate::strategy::{assign, Strategy};

/// Live load of one model as the router sees it when it decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadSnapshot {
    pub active: u64,
    pub queued: u64,
    /// Tokens in flight and the RPM/TPM windows (all 0 for a model without limits).
    pub tokens: TokenLoad,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Placement {
    pub agent: usize,
    pub model: usize,
    pub score: f64,
}

/// What `Router::assign` decided, with the fleet statistics the REST body reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssignmentOutcome {
    pub placements: Vec<Placement>,
    pub total_score: f64,
    pub strategy: Strategy,
    pub load_balancing: bool,
    pub models_filtered: usize,
    pub avg_utilization: f64,
    pub unassigned: Vec<usize>,
}

/// One agent's placement by id. Serializes as the Python `Assignment.to_dict()`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assignment {
    pub agent_id: String,
    pub model_id: String,
    pub score: f64,
}

/// An `AssignmentOutcome` by ids. Serializes as the Python `AssignmentResult.to_dict()`, the
/// body of POST auto-assign-all.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssignmentResult {
    pub assignments: Vec<Assignment>,
    pub total_score: f64,
    pub strategy_used: Strategy,
    pub load_balancing_enabled: bool,
    pub models_filtered: usize,
    pub avg_utilization: f64,
    pub unassigned: Vec<String>,
}

impl AssignmentOutcome {
    /// The outcome with agents and models named: `agents` as given to `assign`, `models` the
    /// router's fleet.
    pub fn named(&self, agents: &[&AgentProfile], models: &[ModelProfile]) -> AssignmentResult {
        let assignments = self.placements.iter().map(|p| Assignment {
            agent_id: agents[p.agent].id.clone(),
            model_id: models[p.model].id.clone(),
            score: p.score,
        });
        AssignmentResult {
            assignments: assignments.collect(),
            total_score: self.total_score,
            strategy_used: self.strategy,
            load_balancing_enabled: self.load_balancing,
            models_filtered: self.models_filtered,
            avg_utilization: self.avg_utilization,
            unassigned: self
                .unassigned
                .iter()
                .map(|&i| agents[i].id.clone())
                .collect(),
        }
    }
}

/// `Assignment(agent_id='a', model_id='m', score=0.9)`: the Python repr.
impl fmt::Display for Assignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Assignment(agent_id={}, model_id={}, score={})",
            py_str(&self.agent_id),
            py_str(&self.model_id),
            py_float(self.score)
        )
    }
}

/// `AssignmentResult(strategy_used='optimal', assigned=2, unassigned=['c'], total_score=1.7)`:
/// the Python repr.
impl fmt::Display for AssignmentResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AssignmentResult(strategy_used={}, assigned={}, unassigned={}, total_score={})",
            py_str(self.strategy_used.name()),
            self.assignments.len(),
            py_str_list(&self.unassigned),
            py_float(self.total_score)
        )
    }
}

impl AssignmentResult {
    /// The assignments as an HTML table (agent, model, score; the unplaced agents last, with
    /// no model), under a caption with the strategy and the total score: the Python
    /// `AssignmentResult._repr_html_()`.
    pub fn html(&self) -> String {
        let caption = format!(
            "{} — {} assigned, {} unassigned, total score {:.4}",
            self.strategy_used.name(),
            self.assignments.len(),
            self.unassigned.len(),
            self.total_score
        );
        let placed = self.assignments.iter().map(|a| {
            vec![
                a.agent_id.clone(),
                a.model_id.clone(),
                format!("{:.4}", a.score),
            ]
        });
        let unplaced = self
            .unassigned
            .iter()
            .map(|id| vec![id.clone(), "–".into(), "–".into()]);
        let rows: Vec<Vec<String>> = placed.chain(unplaced).collect();
        html_table(Some(&caption), &["agent", "model", "score"], &rows)
    }
}

/// `Router(models=3, strategy='optimal', load_balancing=True, load_weight=0.5)`: the Python
/// repr.
impl fmt::Display for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Router(models={}, strategy={}, load_balancing={}, load_weight={})",
            self.models.len(),
            py_str(self.config.strategy.name()),
            py_bool(self.config.load_balancing),
            py_float(self.config.load_weight)
        )
    }
}

impl Router {
    /// The model's configured limits (as profiled, whatever the tracker says since).
    fn profile_capacity(&self, model: usize) -> Capacity {
        let m = &self.models[model];
        Capacity {
            max_concurrent: m.max_concurrent,
            max_queue: m.max_queue,
            target_utilization: m.target_utilization,
            limits: m.limits,
        }
    }

    pub fn utilization(&self, model: usize, load: &LoadSnapshot) -> f64 {
        self.profile_capacity(model)
            .utilization(load.active, &load.tokens)
    }

    pub fn is_overloaded(&self, model: usize, load: &LoadSnapshot) -> bool {
        self.profile_capacity(model)
            .is_overloaded(load.active, load.queued)
    }

    /// `assign`, by ids.
    pub fn assign_named(&self, agents: &[&AgentProfile]) -> Result<AssignmentResult> {
        Ok(self.assign(agents)?.named(agents, &self.models))
    }

    /// `assign_with` on the tracker's live load.
    pub fn assign(&self, agents: &[&AgentProfile]) -> Result<AssignmentOutcome> {
        self.assign_with(agents, &self.loads())
    }

    /// Assigns each agent at most one model. `loads[j]` is model j's live load; it is ignored
    /// unless load balancing is on, in which case overloaded models are filtered out, scores are
    /// weighted by `1 − w × utilization`, and only free slots are offered.
    pub fn assign_with(
        &self,
        agents: &[&AgentProfile],
        loads: &[LoadSnapshot],
    ) -> Result<AssignmentOutcome> {
        let m = self.models.len();
        if loads.len() != m {
            return Err(Error::invalid(
                "loads",
                "one snapshot per model is required",
            ));
        }
        let models: Vec<&ModelProfile> = self.models.iter().collect();
        let cost = cost_matrix(agents, &models, &self.config.weights)?;
        let lb = self.config.load_balancing;
        let utilization: Vec<f64> = (0..m).map(|j| self.utilization(j, &loads[j])).collect();
        // Ejected and cooling models are passed over like overloaded ones (health is not load:
        // whatever the load-balancing setting), unless the panic threshold applies.
        let open = if self.health().all_healthy() {
            vec![true; m]
        } else {
            self.health().available(self.tracker().now())
        };
        let filtered: Vec<bool> = (0..m)
            .map(|j| !open[j] || (lb && self.is_overloaded(j, &loads[j])))
            .collect();
        let slots: Vec<usize> = (0..m)
            .map(|j| {
                let cap = self.models[j].max_concurrent;
                let free = if lb {
                    cap.saturating_sub(loads[j].active)
                } else {
                    cap
                };
                if filtered[j] {
                    0
                } else {
                    free as usize
                }
            })
            .collect();
        let mut scores: Vec<f64> = cost
            .iter()
            .enumerate()
            .map(|(idx, &c)| {
                if filtered[idx % m] {
                    f64::NEG_INFINITY
                } else {
                    score_of_cost(c)
                }
            })
            .collect();
        self.adapt(&mut scores)?;
        if lb {
            for (idx, s) in scores.iter_mut().enumerate().filter(|(_, s)| s.is_finite()) {
                *s = weighted_score(*s, self.config.load_weight, utilization[idx % m]);
            }
        }
        let decided = assign(self.config.strategy, &scores, agents.len(), m, &slots)?;
        let mut placements = Vec::new();
        let mut unassigned = Vec::new();
        for (agent, &model) in decided.model_of.iter().enumerate() {
            match usize::try_from(model) {
                Ok(model) => placements.push(Placement {
                    agent,
                    model,
                    score: scores[agent * m + model],
                }),
                Err(_) => unassigned.push(agent),
            }
        }
        Ok(AssignmentOutcome {
            placements,
            total_score: decided.total_score,
            strategy: self.config.strategy,
            load_balancing: lb,
            models_filtered: filtered.iter().filter(|&&f| f).count(),
            avg_utilization: utilization.iter().sum::<f64>() / m as f64,
            unassigned,
        })
    }
}
