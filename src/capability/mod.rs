//! Agent and model profiles and the capability score behind every routing decision.
//!
//! Score of agent `i` on model `j` (when feasible), with weights `w`:
//! ```text
//! feasible  ⇔ every required capability k: level[j][k] ≥ min[i][k]  and  context_window[j] ≥ min_context[i]
//! required  = mean of level[j][k] over the capabilities i requires           (1 when none)
//! preferred = Σ weight[i][k]·level[j][k] / Σ weight[i][k]                    (1 when none)
//! context   = 1 − min_context[i] / context_window[j]                         (1 when no need)
//! price     = cost_per_1k[j] / max over models of cost_per_1k                (0 when all free)
//! score     = w.required·required + w.preferred·preferred + w.context·context − w.cost·price
//! cost      = 1 − score, or +inf when not feasible
//! ```
//! With the default weights (0.6, 0.3, 0.1, 0) a feasible score lies in [0, 1]. Profiles with
//! named capabilities are lowered onto dense matrices over their shared vocabulary, so the
//! object API and the numpy API run the same parallel kernel.

use std::collections::{HashMap, HashSet};
use std::fmt;

use rayon::prelude::*;

use crate::display::{html_table, py_float, py_levels, py_str};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::load::Capacity;
pub use crate::ser::pairs_as_map;

/// Defaults of a model's optional fields, in one place: `modelrouter.Model(...)`, the
/// simulator's scenario files and the REST schema (through `modelrouter._core.MODEL_DEFAULTS`)
/// all read them from here.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ModelDefaults {
    pub context_window: u64,
    pub max_concurrent: u64,
    pub max_queue: u64,
    pub target_utilization: f64,
    pub cost_per_1k_tokens: f64,
    /// Token-aware limits (`crate::limits`): None = unlimited.
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub max_tokens_in_flight: Option<u64>,
}

pub const MODEL_DEFAULTS: ModelDefaults = ModelDefaults {
    context_window: 8192,
    max_concurrent: 10,
    max_queue: 0,
    target_utilization: 0.8,
    cost_per_1k_tokens: 0.0,
    rpm: None,
    tpm: None,
    max_tokens_in_flight: None,
};

/// Relative weights of the score's terms. Validated finite and non-negative.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ScoreWeights {
    pub required: f64,
    pub preferred: f64,
    pub context: f64,
    pub cost: f64,
}

impl Default for ScoreWeights {
    fn default() -> Self {
        ScoreWeights {
            required: 0.6,
            preferred: 0.3,
            context: 0.1,
            cost: 0.0,
        }
    }
}

impl ScoreWeights {
    pub fn new(required: f64, preferred: f64, context: f64, cost: f64) -> Result<Self> {
        for (name, value) in [
            ("required", required),
            ("preferred", preferred),
            ("context", context),
            ("cost", cost),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(Error::invalid(
                    format!("weights.{name}"),
                    format!("must be a finite number >= 0, got {value}"),
                ));
            }
        }
        Ok(ScoreWeights {
            required,
            preferred,
            context,
            cost,
        })
    }
}

/// What a model deployment offers. Capability levels lie in [0, 1]. Serializes as the
/// Python `Model.to_dict()` (capabilities as a name → level map).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelProfile {
    pub id: String,
    #[serde(serialize_with = "pairs_as_map")]
    pub capabilities: Vec<(String, f64)>,
    pub context_window: u64,
    pub max_concurrent: u64,
    pub max_queue: u64,
    pub target_utilization: f64,
    pub cost_per_1k_tokens: f64,
    /// RPM, TPM and tokens in flight; unlimited by default.
    #[serde(flatten)]
    pub limits: Limits,
}

/// What an agent needs: minimum levels it cannot do without, weighted preferences, context.
/// Serializes as the Python `Agent.to_dict()`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentProfile {
    pub id: String,
    #[serde(serialize_with = "pairs_as_map")]
    pub required: Vec<(String, f64)>,
    #[serde(serialize_with = "pairs_as_map")]
    pub preferred: Vec<(String, f64)>,
    pub min_context: u64,
}

/// `Model('id', capabilities={'code': 0.9}, context_window=8192, ...)`: the Python repr, the
/// call that builds the model.
impl fmt::Display for ModelProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Model({}, capabilities={}, context_window={}, max_concurrent={}, max_queue={}, \
             target_utilization={}, cost_per_1k_tokens={})",
            py_str(&self.id),
            py_levels(&self.capabilities),
            self.context_window,
            self.max_concurrent,
            self.max_queue,
            py_float(self.target_utilization),
            py_float(self.cost_per_1k_tokens)
        )
    }
}

impl ModelProfile {
    /// A one-row HTML table of the model's settings (the Python `Model._repr_html_()`).
    pub fn html(&self) -> String {
        html_table(
            None,
            &[
                "model",
                "capabilities",
                "context window",
                "max concurrent",
                "max queue",
                "target utilization",
                "cost per 1k tokens",
            ],
            &[vec![
                self.id.clone(),
                levels_text(&self.capabilities),
                self.context_window.to_string(),
                self.max_concurrent.to_string(),
                self.max_queue.to_string(),
                py_float(self.target_utilization),
                py_float(self.cost_per_1k_tokens),
            ]],
        )
    }
}

/// `Agent('id', required={'code': 0.7}, preferred={}, min_context=0)`: the Python repr.
impl fmt::Display for AgentProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Agent({}, required={}, preferred={}, min_context={})",
            py_str(&self.id),
            py_levels(&self.required),
            py_levels(&self.preferred),
            self.min_context
        )
    }
}

impl AgentProfile {
    /// A one-row HTML table of the agent's needs (the Python `Agent._repr_html_()`).
    pub fn html(&self) -> String {
        html_table(
            None,
            &["agent", "required", "preferred", "min context"],
            &[vec![
                self.id.clone(),
                levels_text(&self.required),
                levels_text(&self.preferred),
                self.min_context.to_string(),
            ]],
        )
    }
}

/// `code 0.9, chat 0.5` (or an en dash when empty): levels in a table cell.
fn levels_text(levels: &[(String, f64)]) -> String {
    if levels.is_empty() {
        return "–".into();
    }
    let parts: Vec<String> = levels
        .iter()
        .map(|(k, v)| format!("{k} {}", py_float(*v)))
        .collect();
    parts.join(", ")
}

/// `ScoreWeights(required=0.6, preferred=0.3, context=0.1, cost=0.0)`: the Python repr.
impl fmt::Display for ScoreWeights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ScoreWeights(required={}, preferred={}, context={}, cost={})",
            py_float(self.required),
            py_float(self.preferred),
            py_float(self.context),
            py_float(self.cost)
        )
    }
}

fn check_id(field: &str, id: &str) -> Result<()> {
    if id.trim().is_empty() {
        return Err(Error::invalid(field, "must be a non-empty string"));
    }
    Ok(())
}

/// Sorted by name so equal profiles compare equal whatever order the caller used.
fn check_levels(
    field: &str,
    entries: Vec<(String, f64)>,
    valid: impl Fn(f64) -> bool,
    range: &str,
) -> Result<Vec<(String, f64)>> {
    let mut seen = HashSet::new();
    for (name, value) in &entries {
        if name.is_empty() {
            return Err(Error::invalid(field, "capability names must be non-empty"));
        }
        if !seen.insert(name.as_str()) {
            return Err(Error::invalid(
                format!("{field}[{name:?}]"),
                "appears twice",
            ));
        }
        if !valid(*value) {
            return Err(Error::invalid(
                format!("{field}[{name:?}]"),
                format!("must be in {range}, got {value}"),
            ));
        }
    }
    let mut entries = entries;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}

impl ModelProfile {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        capabilities: Vec<(String, f64)>,
        context_window: u64,
        max_concurrent: u64,
        max_queue: u64,
        target_utilization: f64,
        cost_per_1k_tokens: f64,
    ) -> Result<Self> {
        check_id("id", &id)?;
        let capabilities = check_levels(
            "capabilities",
            capabilities,
            |v| (0.0..=1.0).contains(&v),
            "[0, 1]",
        )?;
        if context_window == 0 {
            return Err(Error::invalid("context_window", "must be >= 1"));
        }
        Capacity::new(max_concurrent, max_queue, target_utilization)?;
        if !(cost_per_1k_tokens.is_finite() && cost_per_1k_tokens >= 0.0) {
            return Err(Error::invalid(
                "cost_per_1k_tokens",
                format!("must be a finite number >= 0, got {cost_per_1k_tokens}"),
            ));
        }
        Ok(ModelProfile {
            id,
            capabilities,
            context_window,
            max_concurrent,
            max_queue,
            target_utilization,
            cost_per_1k_tokens,
            limits: Limits::NONE,
        })
    }

    /// The model with RPM, TPM and tokens-in-flight limits.
    pub fn with_limits(self, limits: Limits) -> Self {
        ModelProfile { limits, ..self }
    }

    /// Its capacity, limits included: what the router registers with the load tracker.
    pub fn capacity(&self) -> Result<Capacity> {
        Ok(
            Capacity::new(self.max_concurrent, self.max_queue, self.target_utilization)?
                .with_limits(self.limits),
        )
    }

    pub fn level(&self, capability: &str) -> f64 {
        self.capabilities
            .iter()
            .find(|(name, _)| name == capability)
            .map_or(0.0, |(_, v)| *v)
    }
}

impl AgentProfile {
    pub fn new(
        id: String,
        required: Vec<(String, f64)>,
        preferred: Vec<(String, f64)>,
        min_context: u64,
    ) -> Result<Self> {
        check_id("id", &id)?;
        // A required minimum of 0 would be met by every model, so it is rejected as a likely typo.
        let required = check_levels("required", required, |v| v > 0.0 && v <= 1.0, "(0, 1]")?;
        let preferred = check_levels(
            "preferred",
            preferred,
            |v| v.is_finite() && v >= 0.0,
            "[0, inf)",
        )?;
        Ok(AgentProfile {
            id,
            required,
            preferred,
            min_context,
        })
    }
}

/// Borrowed row-major matrices: agents × k needs and models × k levels over one vocabulary.
/// `required[i][k] > 0` marks capability k as required by agent i with that minimum.
#[derive(Debug, Clone, Copy)]
pub struct DenseProfiles<'a> {
    pub n_agents: usize,
    pub n_models: usize,
    pub n_capabilities: usize,
    pub required: &'a [f64],
    pub preferred: Option<&'a [f64]>,
    pub min_context: Option<&'a [f64]>,
    pub capabilities: &'a [f64],
    pub context_window: Option<&'a [f64]>,
    pub cost_per_1k_tokens: Option<&'a [f64]>,
}

fn check_len(field: &str, data: &[f64], expected: usize, shape: &str) -> Result<()> {
    if data.len() != expected {
        return Err(Error::invalid(
            field,
            format!("expected {shape} = {expected} values, got {}", data.len()),
        ));
    }
    Ok(())
}

fn check_all(field: &str, data: &[f64], valid: impl Fn(f64) -> bool, range: &str) -> Result<()> {
    match data.iter().position(|&v| !valid(v)) {
        Some(at) => Err(Error::invalid(
            field,
            format!(
                "values must be in {range}, got {} at flat index {at}",
                data[at]
            ),
        )),
        None => Ok(()),
    }
}

impl DenseProfiles<'_> {
    /// Shapes and value ranges; every message names the offending argument.
    pub fn validate(&self) -> Result<()> {
        let (n, m, k) = (self.n_agents, self.n_models, self.n_capabilities);
        check_len("required", self.required, n * k, "n_agents * k")?;
        check_len("capabilities", self.capabilities, m * k, "n_models * k")?;
        check_all(
            "required",
            self.required,
            |v| (0.0..=1.0).contains(&v),
            "[0, 1]",
        )?;
        check_all(
            "capabilities",
            self.capabilities,
            |v| (0.0..=1.0).contains(&v),
            "[0, 1]",
        )?;
        if let Some(p) = self.preferred {
            check_len("preferred", p, n * k, "n_agents * k")?;
            check_all("preferred", p, |v| v.is_finite() && v >= 0.0, "[0, inf)")?;
        }
        if let Some(c) = self.min_context {
            check_len("min_context", c, n, "n_agents")?;
            check_all("min_context", c, |v| v.is_finite() && v >= 0.0, "[0, inf)")?;
        }
        if let Some(c) = self.context_window {
            check_len("context_window", c, m, "n_models")?;
            check_all(
                "context_window",
                c,
                |v| v.is_finite() && v > 0.0,
                "(0, inf)",
            )?;
        }
        if let Some(c) = self.cost_per_1k_tokens {
            check_len("cost_per_1k_tokens", c, m, "n_models")?;
            check_all(
                "cost_per_1k_tokens",
                c,
                |v| v.is_finite() && v >= 0.0,
                "[0, inf)",
            )?;
        }
        Ok(())
    }
}

/// Per-agent view used by the kernel: only the capabilities that matter, so the inner loop
/// touches `required.len()` levels instead of all k.
struct AgentNeeds {
    required: Vec<(usize, f64)>,
    preferred: Vec<(usize, f64)>,
    preferred_total: f64,
    min_context: f64,
}

fn agent_needs(p: &DenseProfiles<'_>, i: usize) -> AgentNeeds {
    let k = p.n_capabilities;
    let row = &p.required[i * k..(i + 1) * k];
    let required = row
        .iter()
        .enumerate()
        .filter(|(_, &v)| v > 0.0)
        .map(|(c, &v)| (c, v))
        .collect();
    let preferred: Vec<(usize, f64)> = p.preferred.map_or_else(Vec::new, |pref| {
        pref[i * k..(i + 1) * k]
            .iter()
            .enumerate()
            .filter(|(_, &w)| w > 0.0)
            .map(|(c, &w)| (c, w))
            .collect()
    });
    let preferred_total = preferred.iter().map(|(_, w)| w).sum();
    AgentNeeds {
        required,
        preferred,
        preferred_total,
        min_context: p.min_context.map_or(0.0, |c| c[i]),
    }
}

/// Cost (1 − score, +inf when infeasible) of one agent against every model, into `out`.
fn fill_row(p: &DenseProfiles<'_>, w: &ScoreWeights, max_price: f64, i: usize, out: &mut [f64]) {
    let k = p.n_capabilities;
    let needs = agent_needs(p, i);
    let inv_required = if needs.required.is_empty() {
        0.0
    } else {
        1.0 / needs.required.len() as f64
    };
    for (j, slot) in out.iter_mut().enumerate() {
        let levels = &p.capabilities[j * k..(j + 1) * k];
        let window = p.context_window.map_or(f64::INFINITY, |c| c[j]);
        if window < needs.min_context {
            *slot = f64::INFINITY;
            continue;
        }
        let mut covered = 0.0;
        let mut feasible = true;
        for &(c, min) in &needs.required {
            let level = levels[c];
            feasible &= level >= min;
            covered += level;
        }
        if !feasible {
            *slot = f64::INFINITY;
            continue;
        }
        let required = if needs.required.is_empty() {
            1.0
        } else {
            covered * inv_required
        };
        let preferred = if needs.preferred_total > 0.0 {
            needs
                .preferred
                .iter()
                .map(|&(c, wt)| wt * levels[c])
                .sum::<f64>()
                / needs.preferred_total
        } else {
            1.0
        };
        let context = if needs.min_context > 0.0 {
            1.0 - needs.min_context / window
        } else {
            1.0
        };
        let price = match p.cost_per_1k_tokens {
            Some(c) if max_price > 0.0 => c[j] / max_price,
            _ => 0.0,
        };
        let score =
            w.required * required + w.preferred * preferred + w.context * context - w.cost * price;
        *slot = 1.0 - score;
    }
}

/// Row-major `n_agents × n_models` cost matrix, rows computed in parallel.
pub fn cost_matrix_dense(p: &DenseProfiles<'_>, weights: &ScoreWeights) -> Result<Vec<f64>> {
    p.validate()?;
    let max_price = p
        .cost_per_1k_tokens
        .map_or(0.0, |c| c.iter().copied().fold(0.0, f64::max));
    let mut out = vec![0.0; p.n_agents * p.n_models];
    if p.n_models == 0 {
        return Ok(out);
    }
    out.par_chunks_mut(p.n_models)
        .enumerate()
        .for_each(|(i, row)| fill_row(p, weights, max_price, i, row));
    Ok(out)
}

/// A row-major matrix as a caller hands it over: data, rows, columns.
pub type Matrix = (Vec<f64>, usize, usize);

/// The numpy form of the profiles, as the caller passed them: `agents` (n × k minimum levels,
/// 0 = not required), `models` (m × k levels) and optional per-row extras. Shapes are checked
/// against each other with errors naming the argument, values by [`DenseProfiles::validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct DenseArrays {
    pub agents: Matrix,
    pub models: Matrix,
    pub preferred: Option<Matrix>,
    pub min_context: Option<Vec<f64>>,
    pub context_window: Option<Vec<f64>>,
    pub cost_per_1k_tokens: Option<Vec<f64>>,
}

impl DenseArrays {
    /// Row-major `n × m` cost matrix (see the module docs for the formula).
    pub fn cost_matrix(&self, weights: &ScoreWeights) -> Result<Vec<f64>> {
        let (required, n, k) = &self.agents;
        let (capabilities, m, k_models) = &self.models;
        if k != k_models {
            return Err(Error::invalid(
                "models",
                format!("has {k_models} capability columns but agents has {k}"),
            ));
        }
        if let Some((_, rows, cols)) = &self.preferred {
            if (rows, cols) != (n, k) {
                return Err(Error::invalid(
                    "preferred",
                    format!("expected shape ({n}, {k}), got ({rows}, {cols})"),
                ));
            }
        }
        let dense = DenseProfiles {
            n_agents: *n,
            n_models: *m,
            n_capabilities: *k,
            required,
            preferred: self.preferred.as_ref().map(|p| p.0.as_slice()),
            min_context: self.min_context.as_deref(),
            capabilities,
            context_window: self.context_window.as_deref(),
            cost_per_1k_tokens: self.cost_per_1k_tokens.as_deref(),
        };
        cost_matrix_dense(&dense, weights)
    }
}

/// Dense matrices built from named profiles over the union of their capability names.
pub struct LoweredProfiles {
    pub n_capabilities: usize,
    pub required: Vec<f64>,
    pub preferred: Vec<f64>,
    pub min_context: Vec<f64>,
    pub capabilities: Vec<f64>,
    pub context_window: Vec<f64>,
    pub cost_per_1k_tokens: Vec<f64>,
}

impl LoweredProfiles {
    pub fn view(&self, n_agents: usize, n_models: usize) -> DenseProfiles<'_> {
        DenseProfiles {
            n_agents,
            n_models,
            n_capabilities: self.n_capabilities,
            required: &self.required,
            preferred: Some(&self.preferred),
            min_context: Some(&self.min_context),
            capabilities: &self.capabilities,
            context_window: Some(&self.context_window),
            cost_per_1k_tokens: Some(&self.cost_per_1k_tokens),
        }
    }
}

/// Rejects two models with one id: a router could not tell their loads apart.
pub fn check_unique_ids<'a>(field: &str, ids: impl IntoIterator<Item = &'a str>) -> Result<()> {
    let mut seen = HashSet::new();
    for id in ids {
        if !seen.insert(id) {
            return Err(Error::invalid(field, format!("duplicate id {id:?}")));
        }
    }
    Ok(())
}

pub fn lower_profiles(agents: &[&AgentProfile], models: &[&ModelProfile]) -> LoweredProfiles {
    let mut vocabulary: HashMap<&str, usize> = HashMap::new();
    let names = agents
        .iter()
        .flat_map(|a| a.required.iter().chain(&a.preferred))
        .chain(models.iter().flat_map(|m| &m.capabilities))
        .map(|(name, _)| name.as_str());
    for name in names {
        let next = vocabulary.len();
        vocabulary.entry(name).or_insert(next);
    }
    let k = vocabulary.len();
    let fill = |rows: Vec<&[(String, f64)]>| {
        let mut data = vec![0.0; rows.len() * k];
        for (r, entries) in rows.into_iter().enumerate() {
            for (name, value) in entries {
                data[r * k + vocabulary[name.as_str()]] = *value;
            }
        }
        data
    };
    LoweredProfiles {
        n_capabilities: k,
        required: fill(agents.iter().map(|a| a.required.as_slice()).collect()),
        preferred: fill(agents.iter().map(|a| a.preferred.as_slice()).collect()),
        min_context: agents.iter().map(|a| a.min_context as f64).collect(),
        capabilities: fill(models.iter().map(|m| m.capabilities.as_slice()).collect()),
        context_window: models.iter().map(|m| m.context_window as f64).collect(),
        cost_per_1k_tokens: models.iter().map(|m| m.cost_per_1k_tokens).collect(),
    }
}

/// Cost matrix of named profiles (see the module docs for the formula).
pub fn cost_matrix(
    agents: &[&AgentProfile],
    models: &[&ModelProfile],
    weights: &ScoreWeights,
) -> Result<Vec<f64>> {
    check_unique_ids("models", models.iter().map(|m| m.id.as_str()))?;
    let lowered = lower_profiles(agents, models);
    cost_matrix_dense(&lowered.view(agents.len(), models.len()), weights)
}

#[cfg(test)]
mod tests;

/// A cost-matrix entry as a score: `1 − cost`, and −inf (cannot serve) for a +inf cost. The
/// one conversion between the solvers' costs and the router's scores.
pub fn score_of_cost(cost: f64) -> f64 {
    if cost == f64::INFINITY {
        f64::NEG_INFINITY
    } else {
        1.0 - cost
    }
}
