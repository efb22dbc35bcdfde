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
mod router;
mod sim;

#[pymodule(name = "_core", gil_used = false)]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
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
    Ok(())
}
