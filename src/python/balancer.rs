//! LoadBalancer: the per-request policies over caller-supplied scores and a LoadTracker, for
//! callers that score models themselves.

use std::cell::RefCell;
use std::sync::Arc;

use numpy::PyArray1;
use pyo3::prelude::*;
use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::arrays;
use super::errors::invalid;
use super::load::PyLoadTracker;
use crate::balancer::{choose, BalancerConfig, Candidate, Decision, Policy};
use crate::error::Error;
use crate::load::{LoadTracker, ModelState};

thread_local! {
    static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_os_rng());
}

#[pyclass(frozen, module = "modelrouter", name = "LoadBalancer")]
pub struct PyLoadBalancer {
    tracker: Arc<LoadTracker>,
    policy: Policy,
    config: BalancerConfig,
}

impl PyLoadBalancer {
    fn states(&self, model_ids: &[String]) -> PyResult<Vec<Arc<ModelState>>> {
        Ok(model_ids
            .iter()
            .map(|id| self.tracker.state(id))
            .collect::<Result<_, Error>>()?)
    }

    fn candidates(
        &self,
        model_ids: &[String],
        scores: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<Candidate>> {
        let states = self.states(model_ids)?;
        let scores = arrays::vector(scores, "scores", model_ids.len())?;
        if let Some(bad) = scores.iter().find(|s| s.is_nan() || **s == f64::INFINITY) {
            return Err(invalid(
                "scores",
                format!("must be finite or -inf, got {bad}"),
            ));
        }
        Ok(states
            .iter()
            .zip(scores)
            .map(|(state, score)| Candidate::from_state(state, score))
            .collect())
    }
}

#[pymethods]
impl PyLoadBalancer {
    #[new]
    #[pyo3(signature = (tracker, policy="weighted", load_weight=0.5, *, active_request_bias=1.0))]
    fn new(
        tracker: &Bound<'_, PyLoadTracker>,
        policy: &str,
        load_weight: f64,
        active_request_bias: f64,
    ) -> PyResult<Self> {
        if !(0.0..=1.0).contains(&load_weight) {
            return Err(invalid(
                "load_weight",
                format!("must be in [0, 1], got {load_weight}"),
            ));
        }
        if !(active_request_bias.is_finite() && active_request_bias >= 0.0) {
            return Err(invalid(
                "active_request_bias",
                format!("must be a finite number >= 0, got {active_request_bias}"),
            ));
        }
        Ok(PyLoadBalancer {
            tracker: tracker.get().0.clone(),
            policy: policy.parse()?,
            config: BalancerConfig {
                load_weight,
                active_request_bias,
                ..BalancerConfig::default()
            },
        })
    }

    #[getter]
    fn policy(&self) -> &'static str {
        self.policy.name()
    }
    #[getter]
    fn load_weight(&self) -> f64 {
        self.config.load_weight
    }

    /// The ids that are not overloaded (active > max_concurrent or queue > max_queue).
    fn filter(&self, model_ids: Vec<String>) -> PyResult<Vec<String>> {
        let states = self.states(&model_ids)?;
        Ok(model_ids
            .into_iter()
            .zip(states)
            .filter(|(_, s)| !s.snapshot().is_overloaded())
            .map(|(id, _)| id)
            .collect())
    }

    /// `score × (1 − load_weight × utilization)`, −inf for overloaded models.
    fn weighted_scores<'py>(
        &self,
        py: Python<'py>,
        model_ids: Vec<String>,
        scores: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let out: Vec<f64> = self
            .candidates(&model_ids, scores)?
            .iter()
            .map(|c| {
                if c.is_overloaded() || !c.is_feasible() {
                    f64::NEG_INFINITY
                } else {
                    c.score * (1.0 - self.config.load_weight * c.utilization())
                }
            })
            .collect();
        Ok(PyArray1::from_vec(py, out))
    }

    /// One request's model under the policy; NoCapacityError / InfeasibleError as the router.
    fn choose(&self, model_ids: Vec<String>, scores: &Bound<'_, PyAny>) -> PyResult<String> {
        let cands = self.candidates(&model_ids, scores)?;
        let decision =
            RNG.with(|rng| choose(self.policy, &cands, &self.config, &mut *rng.borrow_mut()));
        match decision {
            Decision::Run(j) | Decision::Queue(j) => Ok(model_ids[j].clone()),
            Decision::NoCapacity { retry_after_s } => Err(Error::NoCapacity {
                message: format!(
                    "no capacity: every eligible model is full and its queue too; retry after {retry_after_s:.3} s"
                ),
                retry_after_s,
            }
            .into()),
            Decision::NoEligibleModel => {
                Err(Error::Infeasible("no model has a finite score".into()).into())
            }
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyLoadBalancer>()
}
