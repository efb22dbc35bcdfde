//! Python bindings: the only place pyo3 appears. One file per class group.

use pyo3::prelude::*;

mod adaptive;
mod alerts;
mod arrays;
mod balancer;
mod capability;
mod capacity;
mod errors;
mod flow;
mod inflight;
mod lap;
mod load;
mod perf;
mod quota;
mod router;
mod sim;

/// Now on the core's default clock: monotonic seconds, the time base of every tracker built
/// without a `clock` (so Python can compare its own timestamps with theirs).
#[pyfunction]
fn now() -> f64 {
    crate::load::system_clock().now()
}

#[pymodule(name = "_core", gil_used = false)]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // The one registry of names the CLI, the REST schema, the simulator and the stubs read.
    m.add(
        "STRATEGIES",
        crate::strategy::Strategy::ALL.map(|s| s.name()).to_vec(),
    )?;
    m.add("OUTCOMES", crate::router::Outcome::KINDS.to_vec())?;
    m.add(
        "POLICIES",
        crate::balancer::Policy::ALL.map(|p| p.name()).to_vec(),
    )?;
    m.add_function(wrap_pyfunction!(now, m)?)?;
    balancer::register(m)?;
    capability::register(m)?;
    capacity::register(m)?;
    lap::register(m)?;
    flow::register(m)?;
    load::register(m)?;
    inflight::register(m)?;
    router::register(m)?;
    sim::register(m)?;
    perf::register(m)?;
    adaptive::register(m)?;
    alerts::register(m)?;
    quota::register(m)?;
    Ok(())
}
