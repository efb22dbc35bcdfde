//! Assignment strategies over a score matrix (higher is better, −inf = not allowed) with a slot
//! count per model. Every strategy respects the slots; `Optimal` maximises the total score over
//! all capacity-respecting assignments, so its total is never below greedy's or balanced's.

use std::str::FromStr;

use serde::Serialize;

use crate::error::{parse_choice, Error, Result};
use crate::flow::{assign_capacitated, placed_total, UnassignedPolicy};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Each agent, in order, takes its best model that still has a slot.
    Greedy,
    /// Each agent, in order, takes the least-filled model (assigned / slots) it may use;
    /// ties go to the higher score. Spreads work at some cost in score.
    Balanced,
    /// Global optimum of the total score (min-cost flow), capacity-aware.
    Optimal,
}

impl Strategy {
    pub const ALL: [Strategy; 3] = [Strategy::Greedy, Strategy::Balanced, Strategy::Optimal];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::Greedy => "greedy",
            Strategy::Balanced => "balanced",
            Strategy::Optimal => "optimal",
        }
    }
}

impl FromStr for Strategy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        parse_choice("strategy", "strategy", s, &Strategy::ALL, Strategy::name)
    }
}

/// Model index per agent (−1 when unplaced) and the total score of the placements.
#[derive(Debug, Clone, PartialEq)]
pub struct StrategyAssignment {
    pub model_of: Vec<i64>,
    pub total_score: f64,
}

/// Runs `strategy` on a row-major `n_agents × n_models` score matrix with `slots[j]` places on
/// model j.
pub fn assign(
    strategy: Strategy,
    scores: &[f64],
    n_agents: usize,
    n_models: usize,
    slots: &[usize],
) -> Result<StrategyAssignment> {
    if scores.len() != n_agents * n_models {
        return Err(Error::invalid(
            "scores",
            "length is not n_agents * n_models",
        ));
    }
    if slots.len() != n_models {
        return Err(Error::invalid("slots", "length is not n_models"));
    }
    if let Some(bad) = scores.iter().find(|s| s.is_nan() || **s == f64::INFINITY) {
        return Err(Error::invalid("scores", format!("invalid score {bad}")));
    }
    let model_of = match strategy {
        Strategy::Greedy => sequential(scores, n_agents, n_models, slots, |_, _, score| {
            (score, 0.0)
        }),
        Strategy::Balanced => {
            sequential(scores, n_agents, n_models, slots, |used, slots, score| {
                (-(used as f64) / slots as f64, score)
            })
        }
        Strategy::Optimal => {
            let cost: Vec<f64> = scores.iter().map(|s| -s).collect();
            assign_capacitated(&cost, n_agents, n_models, slots, UnassignedPolicy::MinCost)?
                .model_of
        }
    };
    let total_score = placed_total(scores, n_models, &model_of);
    Ok(StrategyAssignment {
        model_of,
        total_score,
    })
}

/// One pass over the agents in order; the open model with the largest
/// `rank(used, slots, score)` key (compared lexicographically, first index on ties) wins.
fn sequential(
    scores: &[f64],
    n_agents: usize,
    n_models: usize,
    slots: &[usize],
    rank: impl Fn(usize, usize, f64) -> (f64, f64),
) -> Vec<i64> {
    if n_models == 0 {
        return vec![-1; n_agents];
    }
    let mut used = vec![0usize; n_models];
    scores
        .chunks(n_models)
        .map(|row| {
            let best = row
                .iter()
                .enumerate()
                .filter(|&(j, &s)| s > f64::NEG_INFINITY && used[j] < slots[j])
                .map(|(j, &s)| (j, rank(used[j], slots[j], s)))
                .fold(None, |best: Option<(usize, (f64, f64))>, cand| match best {
                    Some(b) if b.1 >= cand.1 => Some(b),
                    _ => Some(cand),
                });
            match best {
                Some((j, _)) => {
                    used[j] += 1;
                    j as i64
                }
                None => -1,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_best_open_model_in_order() {
        // Two agents both prefer model 0, which has one slot.
        let scores = [0.9, 0.5, 0.8, 0.1];
        let r = assign(Strategy::Greedy, &scores, 2, 2, &[1, 1]).unwrap();
        assert_eq!(r.model_of, vec![0, 1]);
        assert!((r.total_score - 1.0).abs() < 1e-12);
    }

    #[test]
    fn balanced_spreads_by_fill_ratio() {
        let scores = [0.9, 0.1, 0.9, 0.1, 0.9, 0.1, 0.9, 0.1];
        let r = assign(Strategy::Balanced, &scores, 4, 2, &[4, 4]).unwrap();
        assert_eq!(r.model_of, vec![0, 1, 0, 1]);
    }

    #[test]
    fn forbidden_and_full_models_leave_agents_unplaced() {
        let ninf = f64::NEG_INFINITY;
        let scores = [ninf, 0.5, ninf, 0.4];
        for st in Strategy::ALL {
            let r = assign(st, &scores, 2, 2, &[5, 1]).unwrap();
            assert_eq!(r.model_of.iter().filter(|&&j| j == 1).count(), 1, "{st:?}");
            assert!(r.model_of.contains(&-1), "{st:?}");
        }
        let r = assign(Strategy::Greedy, &[], 3, 0, &[]).unwrap();
        assert_eq!(r.model_of, vec![-1, -1, -1]);
    }

    #[test]
    fn strategy_names_round_trip() {
        for st in Strategy::ALL {
            assert_eq!(st.name().parse::<Strategy>().unwrap(), st);
        }
        assert!("fastest".parse::<Strategy>().is_err());
    }
}
