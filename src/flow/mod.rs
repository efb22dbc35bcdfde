//! Capacitated assignment: each model takes up to `capacities[j]` agents, each agent at most one
//! model, by min-cost flow on agents → models without ever replicating a model per slot.
//!
//! The flow is solved exactly by successive shortest paths over the models (see `solver`).
//! Why inserting agents one at a time is exact: with the virtual "unassigned" node of unlimited
//! capacity every agent is always placed somewhere, so after `t` insertions the flow is a
//! min-cost flow of value `t` on the first `t` agents. A new agent has no residual arc into it,
//! so it lies on no negative cycle; the old flow stays optimal in the enlarged graph, and
//! augmenting along a shortest path keeps it optimal (the classic SSP argument).

mod auction;
mod lex;
mod pairs;
mod solver;
#[cfg(test)]
mod tests;
mod types;
mod warm;

use std::borrow::Cow;

use crate::error::{Error, Result};
use lex::{Keys, Lex};
use solver::{Cache, Solver};

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
/// (a row per model that has members), so at most ~105 MB. Beyond it the search scans members
/// directly in O(n + m) memory, which is much slower with many agents per model (10,000 agents
/// × 1,000 models × capacity 11, measured: 53 s scanning members, 9 s with the cache).
const MAX_CACHED_MODELS: usize = 1024;

/// Agents per model from which `Auto` prices a sample first (`Prices::Sample`), and the
/// sample's stride. Measured here: 100,000 agents × 100 models, see benches/README.md.
const SAMPLE_MIN_PER_MODEL: usize = 64;
const SAMPLE_STRIDE: usize = 8;

/// Fewest models for which `Auto` warm-starts from auction prices (see `warm_pays_off`).
const WARM_MIN_MODELS: usize = 128;
/// Share of agents left over by `greedy_overflow` above which `Auto` warm-starts.
const WARM_MIN_OVERFLOW: f64 = 0.25;

/// Contract: `cost` is row-major `n_agents × n_models`, +inf = forbidden, NaN/−inf → InvalidInput
/// naming "cost"; `capacities.len() == n_models` else InvalidInput naming "capacities".
///
/// Identical rows (bit-equal costs) are agents of one type: when they repeat enough, they are
/// solved together as one row with a count (`assign_types`) and handed back per agent.
pub fn assign_capacitated(
    cost: &[f64],
    n_agents: usize,
    n_models: usize,
    capacities: &[usize],
    policy: UnassignedPolicy,
) -> Result<CapacitatedAssignment> {
    assign_with(cost, n_agents, n_models, capacities, policy, Method::Auto)
}

/// Agent types: row `t` of the `n_types × n_models` `cost` stands for `counts[t]` identical
/// agents. Returns one entry per agent, type by type (the `counts[0]` agents of type 0 first);
/// within a type, agents take that type's models in ascending model index, then −1 (not placed).
/// Same contract as `assign_capacitated`, plus `counts.len() == n_types` (else InvalidInput
/// naming "counts") and at most 2^32 − 2 agents in all.
pub fn assign_capacitated_counts(
    cost: &[f64],
    counts: &[u64],
    n_models: usize,
    capacities: &[usize],
    policy: UnassignedPolicy,
) -> Result<CapacitatedAssignment> {
    counts_with(cost, counts, n_models, capacities, policy, Method::Auto)
}

/// `assign_capacitated_counts` with the solver chosen by the caller (tests exercise each).
fn counts_with(
    cost: &[f64],
    counts: &[u64],
    n_models: usize,
    capacities: &[usize],
    policy: UnassignedPolicy,
    method: Method,
) -> Result<CapacitatedAssignment> {
    let n_types = counts.len();
    let total = counts
        .iter()
        .try_fold(0u64, |a, &c| a.checked_add(c))
        .filter(|&t| t <= u32::MAX as u64 - 2)
        .ok_or_else(|| Error::invalid("counts", "more than 2^32 - 2 agents in all"))?;
    let max_abs = validate(cost, n_types, n_models, capacities)?;
    // A count too large for memory is an input error rather than an abort.
    let mut type_of: Vec<u32> = Vec::new();
    type_of.try_reserve_exact(total as usize).map_err(|_| {
        Error::invalid(
            "counts",
            format!("{total} agents in all do not fit in memory"),
        )
    })?;
    type_of.extend(
        counts
            .iter()
            .enumerate()
            .flat_map(|(t, &c)| std::iter::repeat_n(t as u32, c as usize)),
    );
    let model_of = if n_models == 0 {
        vec![-1; type_of.len()]
    } else if method == Method::Types
        || (method == Method::Auto && types_pay_off(n_types, type_of.len(), n_models))
    {
        let work = rescaled(cost, max_abs);
        let keys = Keys::new(&work, n_models, policy);
        let flow = types::solve_types(keys, counts, n_models, capacities)?;
        types::expand(&type_of, &flow, n_models)
    } else {
        // Many kinds with few agents each: one row per agent is faster. The answer is then
        // put in the same order as the type solver's (models ascending within a kind, -1 last).
        let rows: Vec<f64> = type_of
            .iter()
            .flat_map(|&t| cost[t as usize * n_models..(t as usize + 1) * n_models].iter())
            .copied()
            .collect();
        let work = rescaled(&rows, max_abs);
        let cached = match method {
            Method::Agents { cached } => cached,
            _ => default_cache(n_models),
        };
        let mut model_of = by_agents(&work, type_of.len(), n_models, capacities, policy, cached)?;
        let mut at = 0;
        for &c in counts {
            model_of[at..at + c as usize].sort_unstable_by_key(|&j| j as u64);
            at += c as usize;
        }
        model_of
    };
    let total_cost = type_of
        .iter()
        .zip(&model_of)
        .filter(|(_, &j)| j >= 0)
        .map(|(&t, &j)| cost[t as usize * n_models + j as usize])
        .sum();
    Ok(CapacitatedAssignment {
        model_of,
        total_cost,
    })
}

/// Which solver `assign_with` runs (tests pin one; callers get `Auto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    /// Types when rows repeat enough, else per-agent shortest paths.
    Auto,
    /// Per-agent shortest paths, with or without the pair cache (and its column copy).
    Agents { cached: Cache },
    /// Always collapse identical rows into types.
    Types,
    /// Auction prices, then exact repair paths (`warm`) when every agent can be placed;
    /// otherwise per-agent paths.
    #[cfg_attr(not(test), allow(dead_code))]
    Warm,
    /// Prices from a solved sample of the agents, then exact repair paths.
    #[cfg_attr(not(test), allow(dead_code))]
    Sampled,
    /// Prices from the source that suits the shape (`Prices::Best`), then repair paths.
    Best,
}

/// Where the warm start's prices come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prices {
    /// An ε-scaling auction over all agents (`auction`): many models, few agents each, every
    /// agent placeable.
    Auction,
    /// The exact prices of every `SAMPLE_STRIDE`-th agent with capacities scaled alike: many
    /// agents per model, so a sample prices each model well at a fraction of the work.
    Sample,
    /// Prices from the fastest source for the shape (`Auto`).
    Best,
}

/// Exact placement (node per agent, `m` = unassigned) and the final prices, warm-started from
/// `source`'s prices. The auction needs every agent placeable (`Method::Warm` checks).
fn solve_warm(
    work: &[f64],
    n: usize,
    m: usize,
    cap: &[usize],
    policy: UnassignedPolicy,
    source: Prices,
) -> Result<(Vec<u32>, Vec<Lex>)> {
    let keys = Keys::new(work, m, policy);
    let source = match source {
        Prices::Best => warm_start(work, n, m, cap, placeable_agents(work, n, cap, policy))
            .unwrap_or(Prices::Best),
        chosen => chosen,
    };
    let prices = match source {
        Prices::Auction => auction::prices(work, n, m, cap).map(|p| {
            let mut lifted: Vec<Lex> = p.into_iter().map(|x| keys.lift(x)).collect();
            lifted.push(Lex::ZERO); // U keeps room: at the sink's level
            lifted
        }),
        Prices::Sample => Some(sample_prices(work, n, m, cap, policy)?),
        Prices::Best => None,
    };
    // A repair that cannot finish (a rounding corner the searches refuse to cross) falls back
    // to per-agent paths, like a missing price source: slower, never wrong.
    match prices.and_then(|prices| warm::solve(keys, n, cap, &prices).ok()) {
        Some(solved) => Ok(solved),
        // Per-agent paths (also when the auction's copy of the costs cannot be allocated).
        None => {
            let solver = per_agent(keys, n, m, cap, default_cache(m))?;
            let prices = solver.prices();
            Ok((solver.into_nodes(), prices))
        }
    }
}

/// Prices of every `SAMPLE_STRIDE`-th agent's optimum, each model's capacity scaled to the
/// sample (rounded by largest remainders).
fn sample_prices(
    work: &[f64],
    n: usize,
    m: usize,
    cap: &[usize],
    policy: UnassignedPolicy,
) -> Result<Vec<Lex>> {
    let rows: Vec<f64> = work
        .chunks_exact(m)
        .step_by(SAMPLE_STRIDE)
        .flatten()
        .copied()
        .collect();
    let s = rows.len() / m;
    let share = s as f64 / n.max(1) as f64;
    let exact: Vec<f64> = cap.iter().map(|&c| c.min(n) as f64 * share).collect();
    let mut scaled: Vec<usize> = exact.iter().map(|&x| x.floor() as usize).collect();
    let want = exact.iter().sum::<f64>().round() as usize;
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    let short = want.saturating_sub(scaled.iter().sum());
    for &j in order.iter().take(short) {
        scaled[j] += 1;
    }
    Ok(solve_warm(&rows, s, m, &scaled, policy, Prices::Best)?.1)
}

/// The pair cache (with its column copy) up to `MAX_CACHED_MODELS` models, none beyond.
fn default_cache(n_models: usize) -> Cache {
    if n_models <= MAX_CACHED_MODELS {
        Cache::Columns
    } else {
        Cache::Off
    }
}

/// Whether the type solver is expected to beat one path per agent. Its shortest paths scan the
/// whole small graph, ~`types × (types + models)` per path, against ~`models` per agent for the
/// per-agent solver when paths stay short. Measured here: 1,000 types of 100 agents × 100 models
/// 3.4 s against 16 s; 5,000 types of 2 agents × 100 models 63 s against 0.3 s.
fn types_pay_off(n_types: usize, n_agents: usize, n_models: usize) -> bool {
    let (t, n, m) = (n_types as u128, n_agents as u128, n_models as u128);
    4 * t * (t + m) <= n * m
}

/// Which prices, if any, are expected to make a warm start beat one shortest path per agent.
/// A per-agent search scans every model for each model it settles, and it settles many when
/// agents must be pushed away from the models they all prefer. How many agents the models they
/// prefer cannot take (`greedy_overflow`, one pass over the costs) predicts that well: uniform
/// random costs spread agents evenly (a few % overflow: short paths, per-agent wins), shared
/// preferences such as dot-product scores pile them up (most overflow: long paths, warm wins).
/// Then a sample prices the models well when each has dozens of agents; the auction serves many
/// models, but needs every agent placeable and fills spare slots with dummy agents (at most as
/// many as the real ones). Measured here: see benches/README.md.
fn warm_start(
    cost: &[f64],
    n_agents: usize,
    n_models: usize,
    capacities: &[usize],
    placeable: bool,
) -> Option<Prices> {
    let slots: usize = capacities.iter().map(|&c| c.min(n_agents)).sum();
    // The repair caches cheapest moves per pair of the models it settles: the same memory
    // bound as the per-agent solver's cache.
    if n_models > MAX_CACHED_MODELS {
        return None;
    }
    let source = if n_agents >= SAMPLE_MIN_PER_MODEL * n_models {
        Prices::Sample
    } else if placeable
        && n_models >= WARM_MIN_MODELS
        && n_agents >= n_models
        && slots - n_agents <= n_agents
    {
        Prices::Auction
    } else {
        return None;
    };
    let overflow = greedy_overflow(cost, n_agents, n_models, capacities);
    (overflow >= WARM_MIN_OVERFLOW * n_agents as f64).then_some(source)
}

/// Whether every agent is placed with only the cost tier in play: no forbidden pair, room for
/// all, and either most-placed-first or no positive cost (then placing an agent never raises
/// the total, so minimum cost places as many as maximum cardinality does).
fn placeable_agents(
    work: &[f64],
    n_agents: usize,
    capacities: &[usize],
    policy: UnassignedPolicy,
) -> bool {
    let room = capacities
        .iter()
        .try_fold(0usize, |a, &c| {
            let a = a.saturating_add(c);
            (a < n_agents).then_some(a)
        })
        .is_none();
    let max_cardinality = policy == UnassignedPolicy::MaxCardinality;
    room && work
        .iter()
        .all(|&c| c.is_finite() && (max_cardinality || c <= 0.0))
}

/// Agents left over when each takes its cheapest model and each model keeps `capacity` of them.
fn greedy_overflow(cost: &[f64], n_agents: usize, n_models: usize, capacities: &[usize]) -> f64 {
    let mut load = vec![0usize; n_models];
    for row in cost.chunks_exact(n_models).take(n_agents) {
        let mut best = (f64::INFINITY, 0);
        for (j, &c) in row.iter().enumerate() {
            if c < best.0 {
                best = (c, j);
            }
        }
        load[best.1] += 1;
    }
    let over: usize = load
        .iter()
        .zip(capacities)
        .map(|(&l, &c)| l.saturating_sub(c))
        .sum();
    over as f64
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

fn negative_entry(field: &str, j: usize, c: impl std::fmt::Display) -> Error {
    Error::invalid(
        field,
        format!("entry {j} is {c}, expected a non-negative integer"),
    )
}

/// Capacities given as signed integers; a negative entry is an input error naming it.
pub fn capacities_from_i64(values: &[i64]) -> Result<Vec<usize>> {
    counts_from_i64("capacities", values)
}

/// Capacities given as floats: integral values only (huge ones saturate: unlimited).
pub fn capacities_from_f64(values: &[f64]) -> Result<Vec<usize>> {
    counts_from_f64("capacities", values)
}

/// Non-negative integers (capacities, agent counts) given as signed integers; a negative entry
/// is an input error naming `field` and the entry.
pub fn counts_from_i64(field: &str, values: &[i64]) -> Result<Vec<usize>> {
    values
        .iter()
        .enumerate()
        .map(|(j, &c)| usize::try_from(c).map_err(|_| negative_entry(field, j, c)))
        .collect()
}

/// Non-negative integers given as floats: integral values only (huge ones saturate).
pub fn counts_from_f64(field: &str, values: &[f64]) -> Result<Vec<usize>> {
    values
        .iter()
        .enumerate()
        .map(|(j, &c)| {
            if c.fract() != 0.0 || c.is_nan() {
                Err(Error::invalid(
                    field,
                    format!("entry {j} is {c}, expected an integer"),
                ))
            } else if c < 0.0 {
                Err(negative_entry(field, j, c))
            } else {
                Ok(c as usize) // saturates: huge means unlimited
            }
        })
        .collect()
}

/// `assign_capacitated` with the solver chosen by the caller (tests exercise each).
fn assign_with(
    cost: &[f64],
    n_agents: usize,
    n_models: usize,
    capacities: &[usize],
    policy: UnassignedPolicy,
    method: Method,
) -> Result<CapacitatedAssignment> {
    let max_abs = validate(cost, n_agents, n_models, capacities)?;
    // No model: nothing to solve (and no per-agent solver state to allocate).
    if n_models == 0 {
        return Ok(CapacitatedAssignment {
            model_of: vec![-1; n_agents],
            total_cost: 0.0,
        });
    }
    let work = rescaled(cost, max_abs);
    // Auto stops counting distinct rows as soon as there are too many for types to pay off.
    let limit = match method {
        Method::Auto => (0..=n_agents)
            .rev()
            .find(|&t| types_pay_off(t, n_agents, n_models))
            .map_or(0, |t| t),
        _ => n_agents,
    };
    let types = match method {
        Method::Agents { .. } | Method::Warm | Method::Sampled | Method::Best => None,
        Method::Auto | Method::Types => types::distinct_rows(cost, n_agents, n_models, limit),
    };
    let placeable = placeable_agents(&work, n_agents, capacities, policy);
    // Decided here once; `solve_warm` gets the answer rather than deciding again.
    let auto_warm = match (&types, method) {
        (None, Method::Auto) => warm_start(&work, n_agents, n_models, capacities, placeable),
        _ => None,
    };
    let agents = Method::Agents {
        cached: default_cache(n_models),
    };
    let method = match (&types, method) {
        (None, Method::Auto) if auto_warm.is_some() => Method::Best,
        (None, Method::Auto) => agents,
        (_, Method::Auto) => Method::Types,
        (_, Method::Warm) if !placeable => agents,
        (_, chosen) => chosen,
    };
    let model_of = match (method, types) {
        (Method::Warm | Method::Sampled | Method::Best, _) => {
            let source = match method {
                Method::Warm => Prices::Auction,
                Method::Sampled => Prices::Sample,
                _ => auto_warm.unwrap_or(Prices::Best),
            };
            let nodes = solve_warm(&work, n_agents, n_models, capacities, policy, source)?.0;
            model_indices(nodes, n_models)
        }
        (Method::Types, Some((first, type_of))) => {
            let mut counts = vec![0u64; first.len()];
            type_of.iter().for_each(|&t| counts[t as usize] += 1);
            let rows: Vec<f64> = first
                .iter()
                .flat_map(|&i| work[i * n_models..(i + 1) * n_models].iter().copied())
                .collect();
            let keys = Keys::new(&rows, n_models, policy);
            let flow = types::solve_types(keys, &counts, n_models, capacities)?;
            types::expand(&type_of, &flow, n_models)
        }
        (Method::Agents { cached }, _) => {
            by_agents(&work, n_agents, n_models, capacities, policy, cached)?
        }
        _ => return Err(Error::Infeasible("internal error: no solver chosen".into())),
    };
    let total_cost = placed_total(cost, n_models, &model_of);
    Ok(CapacitatedAssignment {
        model_of,
        total_cost,
    })
}

/// One shortest augmenting path per agent (`solver`).
fn by_agents(
    work: &[f64],
    n_agents: usize,
    n_models: usize,
    capacities: &[usize],
    policy: UnassignedPolicy,
    cached: Cache,
) -> Result<Vec<i64>> {
    let keys = Keys::new(work, n_models, policy);
    let solver = per_agent(keys, n_agents, n_models, capacities, cached)?;
    Ok(model_indices(solver.into_nodes(), n_models))
}

/// Every agent inserted by its own shortest augmenting path.
fn per_agent<'a>(
    keys: Keys<'a>,
    n_agents: usize,
    n_models: usize,
    capacities: &'a [usize],
    cached: Cache,
) -> Result<Solver<'a>> {
    let mut solver = Solver::new(keys, n_agents, n_models, capacities, cached);
    for i in 0..n_agents {
        solver.insert(i)?;
    }
    Ok(solver)
}

/// Solver nodes as the answer's model indices: the unassigned node (`n_models`) is −1.
fn model_indices(nodes: Vec<u32>, n_models: usize) -> Vec<i64> {
    nodes
        .into_iter()
        .map(|node| {
            let j = node as usize;
            if j < n_models {
                j as i64
            } else {
                -1
            }
        })
        .collect()
}

/// Sum of `values[i][model_of[i]]` over placed agents of a row-major `_ × n_models` matrix.
pub(crate) fn placed_total(values: &[f64], n_models: usize, model_of: &[i64]) -> f64 {
    model_of
        .iter()
        .enumerate()
        .filter(|(_, &j)| j >= 0)
        .map(|(i, &j)| values[i * n_models + j as usize])
        .sum()
}

/// Shape, capacity count and entry checks; returns the largest finite |cost|.
fn validate(cost: &[f64], n_agents: usize, n_models: usize, capacities: &[usize]) -> Result<f64> {
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
    Ok(max_abs)
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
