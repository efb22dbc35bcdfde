//! Batch assignment of agents to a fleet: capability scores, optional load awareness, strategy.

use serde::Serialize;

use crate::capability::check_unique_ids;
use crate::capability::{cost_matrix, AgentProfile, ModelProfile, ScoreWeights};
use crate::error::{Error, Result};
use crate::strategy::{assign, Strategy};

/// Live load of one model as the router sees it when it decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadSnapshot {
    pub active: u64,
    pub queued: u64,
}

/// Router settings; the fleet is fixed at construction.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    pub strategy: Strategy,
    pub load_balancing: bool,
    /// w in the load-weighted score `capability × (1 − w × utilization)`, within [0, 1].
    pub load_weight: f64,
    pub weights: ScoreWeights,
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

#[derive(Debug, Clone)]
pub struct Router {
    pub models: Vec<ModelProfile>,
    pub config: RouterConfig,
}

impl Router {
    pub fn new(models: Vec<ModelProfile>, config: RouterConfig) -> Result<Self> {
        if models.is_empty() {
            return Err(Error::invalid("models", "must contain at least one Model"));
        }
        check_unique_ids("models", models.iter().map(|m| m.id.as_str()))?;
        if !(0.0..=1.0).contains(&config.load_weight) {
            return Err(Error::invalid(
                "load_weight",
                format!("must be in [0, 1], got {}", config.load_weight),
            ));
        }
        Ok(Router { models, config })
    }

    pub fn model_index(&self, id: &str) -> Result<usize> {
        self.models
            .iter()
            .position(|m| m.id == id)
            .ok_or_else(|| Error::UnknownModel(id.to_string()))
    }

    /// utilization = active / max_concurrent (may exceed 1).
    pub fn utilization(&self, model: usize, load: &LoadSnapshot) -> f64 {
        load.active as f64 / self.models[model].max_concurrent as f64
    }

    /// Overloaded when active > max_concurrent or queued > max_queue.
    pub fn is_overloaded(&self, model: usize, load: &LoadSnapshot) -> bool {
        let m = &self.models[model];
        load.active > m.max_concurrent || load.queued > m.max_queue
    }

    /// Assigns each agent at most one model. `loads[j]` is model j's live load; it is ignored
    /// unless load balancing is on, in which case overloaded models are filtered out, scores are
    /// weighted by `1 − w × utilization`, and only free slots are offered.
    pub fn assign(
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
        let filtered: Vec<bool> = (0..m)
            .map(|j| lb && self.is_overloaded(j, &loads[j]))
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
        let scores: Vec<f64> = cost
            .iter()
            .enumerate()
            .map(|(idx, &c)| {
                let j = idx % m;
                if c == f64::INFINITY || filtered[j] {
                    f64::NEG_INFINITY
                } else if lb {
                    (1.0 - c) * (1.0 - self.config.load_weight * utilization[j])
                } else {
                    1.0 - c
                }
            })
            .collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn model(id: &str, code: f64, cap: u64) -> ModelProfile {
        ModelProfile::new(
            id.into(),
            vec![("code".into(), code)],
            8192,
            cap,
            2,
            0.8,
            0.0,
        )
        .unwrap()
    }

    fn config(strategy: Strategy, load_balancing: bool) -> RouterConfig {
        RouterConfig {
            strategy,
            load_balancing,
            load_weight: 0.5,
            weights: ScoreWeights::default(),
        }
    }

    #[test]
    fn overloaded_models_are_filtered_and_busy_ones_weighted_down() {
        let models = vec![model("a", 0.9, 4), model("b", 0.8, 4), model("c", 0.85, 4)];
        let router = Router::new(models, config(Strategy::Greedy, true)).unwrap();
        let agent = AgentProfile::new("x".into(), vec![("code".into(), 0.5)], vec![], 0).unwrap();
        let loads = [
            LoadSnapshot {
                active: 5,
                queued: 0,
            }, // overloaded: 5 > 4
            LoadSnapshot {
                active: 0,
                queued: 0,
            },
            LoadSnapshot {
                active: 3,
                queued: 0,
            }, // busy: score × (1 − 0.5 × 0.75)
        ];
        let out = router.assign(&[&agent], &loads).unwrap();
        assert_eq!(out.models_filtered, 1);
        assert_eq!(out.placements[0].model, 1);
        assert!((out.avg_utilization - (5.0 / 4.0 + 0.0 + 0.75) / 3.0).abs() < 1e-12);
    }

    #[test]
    fn without_load_balancing_load_is_ignored() {
        let models = vec![model("a", 0.9, 4), model("b", 0.8, 4)];
        let router = Router::new(models, config(Strategy::Greedy, false)).unwrap();
        let agent = AgentProfile::new("x".into(), vec![], vec![], 0).unwrap();
        let loads = [
            LoadSnapshot {
                active: 9,
                queued: 9,
            },
            LoadSnapshot::default(),
        ];
        let out = router.assign(&[&agent], &loads).unwrap();
        assert_eq!(out.models_filtered, 0);
        assert_eq!(out.placements[0].model, 0);
    }

    #[test]
    fn bad_configuration_is_rejected() {
        let err = Router::new(vec![], config(Strategy::Optimal, true)).unwrap_err();
        assert!(matches!(err, Error::InvalidInput { ref field, .. } if field == "models"));
        let dup = vec![model("a", 0.9, 1), model("a", 0.8, 1)];
        assert!(Router::new(dup, config(Strategy::Optimal, true)).is_err());
        let mut cfg = config(Strategy::Optimal, true);
        cfg.load_weight = 1.5;
        let err = Router::new(vec![model("a", 0.9, 1)], cfg).unwrap_err();
        assert!(matches!(err, Error::InvalidInput { ref field, .. } if field == "load_weight"));
    }
}
