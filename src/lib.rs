//! modelrouter: decides which LLM deployment serves which agent or request.
//!
//! The core is plain Rust (no pyo3); the Python bindings live in `python/` behind the `python`
//! feature, so `cargo test` never links Python.

pub mod capability;
pub mod error;
pub mod flow;
pub mod lap;
pub mod strategy;

#[cfg(feature = "python")]
mod python;

pub use error::{Error, Result};
pub use flow::{assign_capacitated, CapacitatedAssignment, UnassignedPolicy};
pub use lap::{linear_sum_assignment, Assignment};
