//! modelrouter: decides which LLM deployment serves which agent or request.
//!
//! The core is plain Rust (no pyo3); the Python bindings live in `python/` behind the `python`
//! feature, so `cargo test` never links Python.
//!
//! One request's life — admit → run → end(outcome) → trackers → adaptive scores — is one type,
//! [`router::Flight`]; its module documents the whole path.
//!
//! Layout: a module with parts is a folder (`x/mod.rs` and its parts); a module without is one
//! file. Unit tests are the `tests` child of the module they test: `x/tests.rs` in a folder
//! module, an inline `mod tests` in a single-file module or part.

pub mod adaptive;
pub mod alerts;
pub mod balancer;
pub mod capability;
pub mod capacity;
pub mod display;
pub mod error;
pub mod flow;
pub mod health;
pub mod lap;
pub mod limits;
pub mod load;
pub mod perf;
#[cfg(feature = "redis-backend")]
pub mod redis_backend;
pub mod router;
pub mod ser;
pub mod sim;
pub mod strategy;

#[cfg(feature = "python")]
mod python;

/// The `log` target of degradations (a shared backend lost or regained): the Python bindings
/// forward these records to the `modelrouter` logger.
pub const LOG_TARGET: &str = "modelrouter";

pub use capability::{AgentProfile, DenseProfiles, ModelProfile, ScoreWeights};
pub use error::{Error, Result};
pub use flow::{assign_capacitated, CapacitatedAssignment, UnassignedPolicy};
pub use lap::{linear_sum_assignment, Assignment};
pub use strategy::{Strategy, StrategyAssignment};
