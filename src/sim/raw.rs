//! The JSON shape of a scenario, and its validation into [`Scenario`] with errors that name
//! the file and the field path.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::scenario::{
    Fault, FaultKind, Handling, Scenario, ServiceTime, SimAgent, SimModel, MAX_REQUESTS,
};
use super::tokens::{Affinity, AffinityMode, AgentTokens, QuotaAdmission, TokenLaw, MAX_SESSIONS};
use crate::balancer::BalancerConfig;
use crate::capability::{AgentProfile, ModelProfile, ScoreWeights, MODEL_DEFAULTS};
use crate::error::{Error, Result};
use crate::limits::Limits;

/// Parses scenario JSON; `source` (a path, or the argument name) starts every error.
pub(super) fn parse(text: &str, source: &str) -> Result<Scenario> {
    let de = &mut serde_json::Deserializer::from_str(text);
    let raw: RawScenario = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde reports a missing field at its parent; name the field itself.
        if let Some(name) = inner
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
        {
            let field = if path == "." {
                name.to_string()
            } else {
                format!("{path}.{name}")
            };
            return bad(source, field, "missing field");
        }
        let field = if path == "." { "<root>".into() } else { path };
        bad(source, field, inner)
    })?;
    raw.validate(source)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    #[serde(default)]
    description: String,
    requests: u64,
    arrival_rate_per_s: f64,
    #[serde(default)]
    seed: u64,
    #[serde(default = "default_retries")]
    max_retries: u32,
    #[serde(default = "default_alpha")]
    latency_ewma_alpha: f64,
    #[serde(default)]
    balancer: RawBalancer,
    #[serde(default)]
    weights: Option<RawWeights>,
    models: Vec<RawModel>,
    agents: Vec<RawAgent>,
    failure_handling: Option<Vec<RawHandling>>,
    #[serde(default)]
    admission: RawAdmission,
    trace: Option<RawTrace>,
    affinity: Option<RawAffinity>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAffinity {
    mode: RawAffinityMode,
    sessions: u32,
    #[serde(default = "default_epsilon")]
    epsilon: f64,
    #[serde(default = "default_hit")]
    hit_ttft_factor: f64,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawAffinityMode {
    None,
    Consistent,
    Bounded,
}

fn default_epsilon() -> f64 {
    crate::router::affinity::DEFAULT_EPSILON
}
fn default_hit() -> f64 {
    1.0
}

#[derive(Deserialize, Clone, Copy, Default)]
#[serde(rename_all = "snake_case")]
enum RawAdmission {
    #[default]
    Tokens,
    Requests,
    None,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrace {
    /// A CSV path, relative to the scenario file.
    file: String,
    #[serde(default = "default_scale")]
    rate_scale: f64,
}

fn default_scale() -> f64 {
    1.0
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawHandling {
    None,
    Eject,
    EjectRetry,
}

fn default_retries() -> u32 {
    3
}
fn default_alpha() -> f64 {
    0.2
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBalancer {
    load_weight: Option<f64>,
    active_request_bias: Option<f64>,
    default_latency_ms: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeights {
    required: f64,
    preferred: f64,
    context: f64,
    #[serde(default)]
    cost: f64,
}

/// Defaults are `MODEL_DEFAULTS`, as for `modelrouter.Model(...)`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    id: String,
    #[serde(default)]
    capabilities: BTreeMap<String, f64>,
    #[serde(default = "default_context")]
    context_window: u64,
    #[serde(default = "default_concurrent")]
    max_concurrent: u64,
    #[serde(default = "default_queue")]
    max_queue: u64,
    #[serde(default = "default_target")]
    target_utilization: f64,
    #[serde(default = "default_price")]
    cost_per_1k_tokens: f64,
    service: RawService,
    fail_above: Option<u64>,
    #[serde(default)]
    faults: Vec<RawFault>,
    /// The provider's quota: requests and tokens per sliding minute.
    rpm: Option<i64>,
    tpm: Option<i64>,
    max_tokens_in_flight: Option<i64>,
    #[serde(default)]
    ms_per_output_token: f64,
}

/// Flat like [`RawService`], so that a missing or misplaced parameter is named.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    kind: RawFaultKind,
    from_s: f64,
    to_s: f64,
    error_rate: Option<f64>,
    retry_after_s: Option<f64>,
    factor: Option<f64>,
    fail_after_ms: Option<f64>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawFaultKind {
    Outage,
    Errors,
    RateLimit,
    Slowdown,
}

fn default_context() -> u64 {
    MODEL_DEFAULTS.context_window
}
fn default_concurrent() -> u64 {
    MODEL_DEFAULTS.max_concurrent
}
fn default_queue() -> u64 {
    MODEL_DEFAULTS.max_queue
}
fn default_target() -> f64 {
    MODEL_DEFAULTS.target_utilization
}
fn default_price() -> f64 {
    MODEL_DEFAULTS.cost_per_1k_tokens
}

/// Flat rather than a tagged enum so that a missing parameter is reported by name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    distribution: Distribution,
    median_ms: Option<f64>,
    sigma: Option<f64>,
    mean_ms: Option<f64>,
    ms: Option<f64>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Distribution {
    Lognormal,
    Exponential,
    Deterministic,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    id: String,
    #[serde(default)]
    required: BTreeMap<String, f64>,
    #[serde(default)]
    preferred: BTreeMap<String, f64>,
    #[serde(default)]
    min_context: u64,
    #[serde(default = "default_weight")]
    weight: f64,
    prompt_tokens: Option<TokenLaw>,
    output_tokens: Option<TokenLaw>,
}

fn default_weight() -> f64 {
    1.0
}

/// Error for `field` of the scenario read from `source`.
pub(super) fn bad(source: &str, field: impl Into<String>, reason: impl std::fmt::Display) -> Error {
    let field = field.into();
    Error::InvalidInput {
        message: format!("{source}: {field}: {reason}"),
        field,
    }
}

/// Re-anchors a profile constructor's error (`capabilities["code"]`) under `at`.
fn nested(source: &str, at: &str, err: Error) -> Error {
    match err {
        Error::InvalidInput { field, message } => {
            let reason = message
                .strip_prefix(&format!("{field}: "))
                .unwrap_or(&message)
                .to_string();
            bad(source, format!("{at}.{field}"), reason)
        }
        other => other,
    }
}

fn check(source: &str, field: &str, ok: bool, reason: &str, value: f64) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(bad(source, field, format!("{reason}, got {value}")))
    }
}

fn positive(source: &str, field: &str, value: f64) -> Result<()> {
    check(
        source,
        field,
        value.is_finite() && value > 0.0,
        "must be > 0",
        value,
    )
}

/// Bounds that keep every simulated time finite and every run bounded (documented in the
/// scenario reference; errors name the field and the bound).
pub const MAX_SERVICE_MS: f64 = 1e9;
pub const MAX_SIGMA: f64 = 5.0;
pub const ARRIVAL_RATE_RANGE: (f64, f64) = (1e-6, 1e9);
pub const MAX_RETRIES: u32 = 100;
/// Faults: windows end by 10⁷ s (about 116 days), at most this many per model, a slowdown
/// multiplies by at most 1000 and a Retry-After is at most an hour.
pub const MAX_FAULT_S: f64 = 1e7;
pub const MAX_FAULTS: usize = 1000;
pub const MAX_SLOWDOWN: f64 = 1000.0;
pub const MAX_RETRY_AFTER_S: f64 = 3600.0;

fn within(source: &str, field: &str, value: f64, (lo, hi): (f64, f64)) -> Result<()> {
    check(
        source,
        field,
        value.is_finite() && value >= lo && value <= hi,
        &format!("must be between {lo} and {hi}"),
        value,
    )
}

fn entries(map: BTreeMap<String, f64>) -> Vec<(String, f64)> {
    map.into_iter().collect()
}

impl RawService {
    fn build(self, source: &str, at: &str) -> Result<ServiceTime> {
        let need = |name: &str, value: Option<f64>| -> Result<f64> {
            let field = format!("{at}.{name}");
            let value = value.ok_or_else(|| bad(source, &field, "missing field"))?;
            positive(source, &field, value)?;
            within(source, &field, value, (0.0, MAX_SERVICE_MS))?;
            Ok(value)
        };
        let (service, used): (ServiceTime, &[&str]) = match self.distribution {
            Distribution::Lognormal => {
                let median_ms = need("median_ms", self.median_ms)?;
                let sigma = self
                    .sigma
                    .ok_or_else(|| bad(source, format!("{at}.sigma"), "missing field"))?;
                check(
                    source,
                    &format!("{at}.sigma"),
                    sigma.is_finite() && (0.0..=MAX_SIGMA).contains(&sigma),
                    &format!("must be between 0 and {MAX_SIGMA}"),
                    sigma,
                )?;
                (
                    ServiceTime::LogNormal { median_ms, sigma },
                    &["median_ms", "sigma"],
                )
            }
            Distribution::Exponential => (
                ServiceTime::Exponential {
                    mean_ms: need("mean_ms", self.mean_ms)?,
                },
                &["mean_ms"],
            ),
            Distribution::Deterministic => (
                ServiceTime::Deterministic {
                    ms: need("ms", self.ms)?,
                },
                &["ms"],
            ),
        };
        let given = [
            ("median_ms", self.median_ms),
            ("sigma", self.sigma),
            ("mean_ms", self.mean_ms),
            ("ms", self.ms),
        ];
        if let Some((name, _)) = given.iter().find(|(n, v)| v.is_some() && !used.contains(n)) {
            return Err(bad(
                source,
                format!("{at}.{name}"),
                format!(
                    "not a parameter of this distribution (it takes {})",
                    used.join(", ")
                ),
            ));
        }
        Ok(service)
    }
}

impl RawFault {
    fn build(self, source: &str, at: &str) -> Result<Fault> {
        let field = |name: &str| format!("{at}.{name}");
        within(source, &field("from_s"), self.from_s, (0.0, MAX_FAULT_S))?;
        within(source, &field("to_s"), self.to_s, (0.0, MAX_FAULT_S))?;
        check(
            source,
            &field("to_s"),
            self.to_s > self.from_s,
            &format!("must be after from_s ({})", self.from_s),
            self.to_s,
        )?;
        let rate = |value: Option<f64>, default: Option<f64>| -> Result<f64> {
            let value = value
                .or(default)
                .ok_or_else(|| bad(source, field("error_rate"), "missing field"))?;
            within(source, &field("error_rate"), value, (0.0, 1.0))?;
            Ok(value)
        };
        let fail_after = |value: Option<f64>| -> Result<Option<f64>> {
            if let Some(v) = value {
                within(source, &field("fail_after_ms"), v, (0.0, MAX_SERVICE_MS))?;
            }
            Ok(value)
        };
        let (kind, used): (FaultKind, &[&str]) = match self.kind {
            RawFaultKind::Outage => (
                FaultKind::Outage {
                    fail_after_ms: fail_after(self.fail_after_ms)?.unwrap_or(0.0),
                },
                &["fail_after_ms"],
            ),
            RawFaultKind::Errors => (
                FaultKind::Errors {
                    error_rate: rate(self.error_rate, None)?,
                    fail_after_ms: fail_after(self.fail_after_ms)?,
                },
                &["error_rate", "fail_after_ms"],
            ),
            RawFaultKind::RateLimit => {
                if let Some(v) = self.retry_after_s {
                    within(source, &field("retry_after_s"), v, (0.0, MAX_RETRY_AFTER_S))?;
                }
                (
                    FaultKind::RateLimit {
                        error_rate: rate(self.error_rate, Some(1.0))?,
                        retry_after_s: self.retry_after_s,
                        fail_after_ms: fail_after(self.fail_after_ms)?.unwrap_or(0.0),
                    },
                    &["error_rate", "retry_after_s", "fail_after_ms"],
                )
            }
            RawFaultKind::Slowdown => {
                let factor = self
                    .factor
                    .ok_or_else(|| bad(source, field("factor"), "missing field"))?;
                within(source, &field("factor"), factor, (1.0, MAX_SLOWDOWN))?;
                (FaultKind::Slowdown { factor }, &["factor"])
            }
        };
        let given = [
            ("error_rate", self.error_rate.is_some()),
            ("retry_after_s", self.retry_after_s.is_some()),
            ("factor", self.factor.is_some()),
            ("fail_after_ms", self.fail_after_ms.is_some()),
        ];
        if let Some((name, _)) = given.iter().find(|(n, g)| *g && !used.contains(n)) {
            return Err(bad(
                source,
                field(name),
                format!(
                    "not a parameter of this kind of fault (it takes {})",
                    used.join(", ")
                ),
            ));
        }
        Ok(Fault {
            kind,
            from_ms: self.from_s * 1000.0,
            to_ms: self.to_s * 1000.0,
        })
    }
}

impl RawScenario {
    fn validate(self, source: &str) -> Result<Scenario> {
        if !(1..=MAX_REQUESTS).contains(&self.requests) {
            let reason = format!("must be in 1..={MAX_REQUESTS}, got {}", self.requests);
            return Err(bad(source, "requests", reason));
        }
        within(
            source,
            "arrival_rate_per_s",
            self.arrival_rate_per_s,
            ARRIVAL_RATE_RANGE,
        )?;
        if self.max_retries > MAX_RETRIES {
            let reason = format!("must be at most {MAX_RETRIES}, got {}", self.max_retries);
            return Err(bad(source, "max_retries", reason));
        }
        let alpha = self.latency_ewma_alpha;
        check(
            source,
            "latency_ewma_alpha",
            alpha > 0.0 && alpha <= 1.0,
            "must be in (0, 1]",
            alpha,
        )?;
        let mut balancer = BalancerConfig::default();
        let b = self.balancer;
        for (name, value, slot) in [
            ("load_weight", b.load_weight, &mut balancer.load_weight),
            (
                "active_request_bias",
                b.active_request_bias,
                &mut balancer.active_request_bias,
            ),
            (
                "default_latency_ms",
                b.default_latency_ms,
                &mut balancer.default_latency_ms,
            ),
        ] {
            if let Some(v) = value {
                let field = format!("balancer.{name}");
                check(
                    source,
                    &field,
                    v.is_finite() && v >= 0.0,
                    "must be a finite number >= 0",
                    v,
                )?;
                if name == "load_weight" {
                    within(source, &field, v, (0.0, 1.0))?;
                } else {
                    within(source, &field, v, (0.0, MAX_SERVICE_MS))?;
                }
                *slot = v;
            }
        }
        let weights = match self.weights {
            None => ScoreWeights::default(),
            Some(w) => ScoreWeights::new(w.required, w.preferred, w.context, w.cost)
                .map_err(|e| nested(source, "weights", strip_weights(e)))?,
        };
        if self.models.is_empty() {
            return Err(bad(source, "models", "needs at least one model"));
        }
        if self.agents.is_empty() {
            return Err(bad(source, "agents", "needs at least one agent"));
        }
        let mut models = Vec::with_capacity(self.models.len());
        for (i, m) in self.models.into_iter().enumerate() {
            let at = format!("models[{i}]");
            if models.iter().any(|x: &SimModel| x.profile.id == m.id) {
                return Err(bad(
                    source,
                    format!("{at}.id"),
                    format!("duplicate id {:?}", m.id),
                ));
            }
            let profile = ModelProfile::new(
                m.id,
                entries(m.capabilities),
                m.context_window,
                m.max_concurrent,
                m.max_queue,
                m.target_utilization,
                m.cost_per_1k_tokens,
            )
            .map_err(|e| nested(source, &at, e))?
            .with_limits(
                Limits::new(m.rpm, m.tpm, m.max_tokens_in_flight)
                    .map_err(|e| nested(source, &at, e))?,
            );
            let service = m.service.build(source, &format!("{at}.service"))?;
            within(
                source,
                &format!("{at}.ms_per_output_token"),
                m.ms_per_output_token,
                (0.0, 1e6),
            )?;
            if m.fail_above == Some(0) {
                return Err(bad(source, format!("{at}.fail_above"), "must be >= 1"));
            }
            if m.faults.len() > MAX_FAULTS {
                let reason = format!("at most {MAX_FAULTS} faults, got {}", m.faults.len());
                return Err(bad(source, format!("{at}.faults"), reason));
            }
            let faults = m
                .faults
                .into_iter()
                .enumerate()
                .map(|(k, f)| f.build(source, &format!("{at}.faults[{k}]")))
                .collect::<Result<Vec<_>>>()?;
            models.push(SimModel {
                profile,
                service,
                fail_above: m.fail_above,
                faults,
                ms_per_output_token: m.ms_per_output_token,
            });
        }
        let mut agents = Vec::with_capacity(self.agents.len());
        for (i, a) in self.agents.into_iter().enumerate() {
            let at = format!("agents[{i}]");
            positive(source, &format!("{at}.weight"), a.weight)?;
            let profile = AgentProfile::new(
                a.id,
                entries(a.required),
                entries(a.preferred),
                a.min_context,
            )
            .map_err(|e| nested(source, &at, e))?;
            let tokens = match (a.prompt_tokens, a.output_tokens) {
                (None, None) => None,
                (Some(prompt), Some(output)) => {
                    prompt.check(source, &format!("{at}.prompt_tokens"))?;
                    output.check(source, &format!("{at}.output_tokens"))?;
                    Some(AgentTokens { prompt, output })
                }
                (None, Some(_)) => {
                    let field = format!("{at}.prompt_tokens");
                    return Err(bad(source, field, "missing field (output_tokens is given)"));
                }
                (Some(_), None) => {
                    let field = format!("{at}.output_tokens");
                    return Err(bad(source, field, "missing field (prompt_tokens is given)"));
                }
            };
            agents.push(SimAgent {
                profile,
                weight: a.weight,
                tokens,
            });
        }
        let failure_handling = match self.failure_handling {
            None if models.iter().any(|m| !m.faults.is_empty()) => Handling::ALL.to_vec(),
            None => vec![Handling::None],
            Some(modes) if modes.is_empty() => {
                return Err(bad(
                    source,
                    "failure_handling",
                    "must name at least one mode",
                ));
            }
            Some(modes) => {
                let mut unique = Vec::new();
                for m in modes {
                    let h = match m {
                        RawHandling::None => Handling::None,
                        RawHandling::Eject => Handling::Eject,
                        RawHandling::EjectRetry => Handling::EjectRetry,
                    };
                    if !unique.contains(&h) {
                        unique.push(h);
                    }
                }
                unique
            }
        };
        let admission = match self.admission {
            RawAdmission::Tokens => QuotaAdmission::Tokens,
            RawAdmission::Requests => QuotaAdmission::Requests,
            RawAdmission::None => QuotaAdmission::None,
        };
        let affinity = match self.affinity {
            None => None,
            Some(a) => {
                if !(1..=MAX_SESSIONS).contains(&a.sessions) {
                    let reason = format!("must be in 1..={MAX_SESSIONS}, got {}", a.sessions);
                    return Err(bad(source, "affinity.sessions", reason));
                }
                within(source, "affinity.epsilon", a.epsilon, (0.0, 100.0))?;
                within(
                    source,
                    "affinity.hit_ttft_factor",
                    a.hit_ttft_factor,
                    (0.0, 1.0),
                )?;
                Some(Affinity {
                    mode: match a.mode {
                        RawAffinityMode::None => AffinityMode::None,
                        RawAffinityMode::Consistent => AffinityMode::Consistent,
                        RawAffinityMode::Bounded => AffinityMode::Bounded,
                    },
                    sessions: a.sessions,
                    epsilon: a.epsilon,
                    hit_ttft_factor: a.hit_ttft_factor,
                })
            }
        };
        let mut scenario = Scenario {
            affinity,
            admission,
            trace: None,
            description: self.description,
            requests: self.requests,
            arrival_rate_per_s: self.arrival_rate_per_s,
            seed: self.seed,
            max_retries: self.max_retries,
            latency_ewma_alpha: alpha,
            balancer,
            weights,
            models,
            agents,
            failure_handling,
        };
        if let Some(trace) = self.trace {
            // Relative to the scenario file when there is one.
            let base = std::path::Path::new(source).parent().filter(|p| p.is_dir());
            let path = base.map_or_else(|| trace.file.clone().into(), |b| b.join(&trace.file));
            scenario
                .set_trace(&path, trace.rate_scale)
                .map_err(|e| nested(source, "trace", e))?;
        }
        Ok(scenario)
    }
}

/// `ScoreWeights::new` names its fields `weights.x`; drop the prefix before re-anchoring.
fn strip_weights(err: Error) -> Error {
    match err {
        Error::InvalidInput { field, message } => Error::InvalidInput {
            field: field.trim_start_matches("weights.").to_string(),
            message: message.trim_start_matches("weights.").to_string(),
        },
        other => other,
    }
}
