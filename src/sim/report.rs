//! What one run measured, and the comparison table across policies (text, HTML, and the
//! serialized shape of the Python `to_dict()`).

use std::fmt;

use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};

use super::scenario::Handling;
use crate::balancer::Policy;
use crate::capability::pairs_as_map;
use crate::display::{html_table, py_float, py_str, py_str_list};

/// Measurements of one policy over the whole request stream.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyResult {
    pub policy: Policy,
    /// How failed calls were handled in this run.
    pub handling: Handling,
    /// End-to-end latency of each completed request (retry waits, failed calls before a
    /// successful retry, queue wait and service), in completion order.
    pub latencies_ms: Vec<f64>,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    /// Time-averaged busy slots / max_concurrent, in scenario model order.
    pub per_model_utilization: Vec<f64>,
    /// Mean of the per-model utilizations.
    pub avg_utilization: f64,
    pub requests: u64,
    pub completed: u64,
    /// Requests sent to a model with no free slot and no queue room, or started above its
    /// `fail_above` limit.
    pub overload_failures: u64,
    /// Requests the router turned away (no capacity after every retry, or no eligible model).
    pub rejected: u64,
    /// Client retries after a `NoCapacity` answer.
    pub retries: u64,
    pub max_queue_length: u64,
    /// Simulated time from the start to the last event.
    pub duration_s: f64,
    /// Completed requests per simulated second.
    pub throughput_per_s: f64,
    /// Requests whose last call failed from an injected fault (not retried).
    pub failed: u64,
    /// Retries after a failed call (mode `eject_retry`), each drawn from the retry budget.
    pub failure_retries: u64,
    /// Calls that failed: injected faults (retried or not) and overload failures.
    pub wasted_calls: u64,
    /// completed / requests.
    pub success_rate: f64,
    /// Time to first token of completed requests (from arrival), percentiles; NaN when none.
    pub ttft_p50_ms: f64,
    pub ttft_p95_ms: f64,
    pub ttft_p99_ms: f64,
    /// Prompt + output tokens of completed requests per simulated second.
    pub tokens_per_s: f64,
    /// Calls a provider refused (429) for being over its RPM/TPM quota.
    pub quota_rejections: u64,
    /// Calls of a session served by the model that served it last (its prefix cache), of all
    /// calls with a session; None without sessions.
    pub cache_hit_rate: Option<f64>,
    /// The busiest model's time-averaged utilization over the mean of all models'.
    pub max_mean_load: f64,
}

/// Percentile `q` (0..=100) of sorted samples, interpolated linearly like numpy's default.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q / 100.0 * (sorted.len() - 1) as f64;
    let lo = pos.floor();
    let (a, b) = (
        sorted[lo as usize],
        sorted[(lo as usize + 1).min(sorted.len() - 1)],
    );
    lerp(a, b, pos - lo)
}

/// numpy's _lerp: from the nearer end, so the result is exact at t = 0 and t = 1.
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// Percentiles `qs` of `samples`, each exactly what [`percentile`] gives on the sorted
/// samples, found by selection (linear time each) rather than a full sort. Reorders
/// `samples`; any order of `qs` works, ascending is cheapest.
pub fn percentiles<const K: usize>(samples: &mut [f64], qs: [f64; K]) -> [f64; K] {
    let n = samples.len();
    let mut out = [f64::NAN; K];
    if n == 0 {
        return out;
    }
    // samples[..from] hold the `from` smallest, and samples[from - 1] is the largest of them.
    let mut from = 0usize;
    let mut nth = |i: usize| -> f64 {
        if i + 1 == from {
            return samples[i];
        }
        let v = if i >= from {
            *samples[from..]
                .select_nth_unstable_by(i - from, f64::total_cmp)
                .1
        } else {
            *samples[..from].select_nth_unstable_by(i, f64::total_cmp).1
        };
        from = i + 1;
        v
    };
    for (o, q) in out.iter_mut().zip(qs) {
        let pos = q / 100.0 * (n - 1) as f64;
        let lo = pos.floor() as usize;
        let a = nth(lo);
        let b = nth((lo + 1).min(n - 1));
        *o = lerp(a, b, pos - lo as f64);
    }
    out
}

impl PolicyResult {
    /// `counts` = [overload failures, rejected, retries, max queue length]; `faults` =
    /// [failed, failure retries, wasted calls].
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        policy: Policy,
        handling: Handling,
        latencies_ms: Vec<f64>,
        utilization: impl Iterator<Item = f64>,
        requests: u64,
        counts: [u64; 4],
        faults: [u64; 3],
        duration_s: f64,
    ) -> Self {
        let n = latencies_ms.len();
        let mean_ms = if n == 0 {
            f64::NAN
        } else {
            latencies_ms.iter().sum::<f64>() / n as f64
        };
        let [p50_ms, p95_ms, p99_ms] = percentiles(&mut latencies_ms.clone(), [50.0, 95.0, 99.0]);
        let per_model_utilization: Vec<f64> = utilization.collect();
        let avg_utilization =
            per_model_utilization.iter().sum::<f64>() / per_model_utilization.len().max(1) as f64;
        let busiest = per_model_utilization.iter().copied().fold(0.0, f64::max);
        let max_mean_load = if avg_utilization > 0.0 {
            busiest / avg_utilization
        } else {
            f64::NAN
        };
        let [overload_failures, rejected, retries, max_queue_length] = counts;
        let [failed, failure_retries, wasted_calls] = faults;
        PolicyResult {
            policy,
            handling,
            failed,
            failure_retries,
            wasted_calls,
            success_rate: if requests == 0 {
                f64::NAN
            } else {
                n as f64 / requests as f64
            },
            p50_ms,
            p95_ms,
            p99_ms,
            mean_ms,
            latencies_ms,
            per_model_utilization,
            avg_utilization,
            requests,
            completed: n as u64,
            overload_failures,
            rejected,
            retries,
            max_queue_length,
            duration_s,
            throughput_per_s: if duration_s > 0.0 {
                n as f64 / duration_s
            } else {
                0.0
            },
            ttft_p50_ms: f64::NAN,
            ttft_p95_ms: f64::NAN,
            ttft_p99_ms: f64::NAN,
            tokens_per_s: 0.0,
            quota_rejections: 0,
            cache_hit_rate: None,
            max_mean_load,
        }
    }
}

impl PolicyResult {
    /// Adds the token measurements: TTFT of each completed request, tokens served, and the
    /// providers' quota refusals.
    pub(super) fn with_tokens(mut self, mut ttfts: Vec<f64>, served: u64, refusals: u64) -> Self {
        [self.ttft_p50_ms, self.ttft_p95_ms, self.ttft_p99_ms] =
            percentiles(&mut ttfts, [50.0, 95.0, 99.0]);
        self.tokens_per_s = if self.duration_s > 0.0 {
            served as f64 / self.duration_s
        } else {
            0.0
        };
        self.quota_rejections = refusals;
        self
    }

    /// Adds the cache measurements: `hits` of `calls` with a session.
    pub(super) fn with_cache(mut self, hits: u64, calls: u64) -> Self {
        self.cache_hit_rate = (calls > 0).then(|| hits as f64 / calls as f64);
        self
    }
}

/// `policy`, or `policy+mode` when failed calls were handled (`predictive+eject_retry`): the
/// key of a run in `SimulationReport.results` and the first cell of its table row.
pub fn run_name(policy: Policy, handling: Handling) -> String {
    match handling {
        Handling::None => policy.name().to_string(),
        other => format!("{}+{}", policy.name(), other.name()),
    }
}

impl PolicyResult {
    /// This run's key: see [`run_name`].
    pub fn name(&self) -> String {
        run_name(self.policy, self.handling)
    }
}

/// Every policy's result on one scenario (one per policy and failure-handling mode).
#[derive(Debug, Clone, PartialEq)]
pub struct SimulationReport {
    pub description: String,
    pub model_ids: Vec<String>,
    pub requests: u64,
    pub seed: u64,
    pub results: Vec<PolicyResult>,
}

/// One policy's measurements without the latency samples (their count is `completed`), with
/// utilization keyed by model id. Serializes as the Python `PolicyResult.to_dict()`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicySummary {
    pub policy: Policy,
    pub handling: Handling,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub avg_utilization: f64,
    pub duration_s: f64,
    pub throughput_per_s: f64,
    pub requests: u64,
    pub completed: u64,
    pub overload_failures: u64,
    pub rejected: u64,
    pub retries: u64,
    pub max_queue_length: u64,
    pub success_rate: f64,
    pub failed: u64,
    pub failure_retries: u64,
    pub wasted_calls: u64,
    pub ttft_p50_ms: f64,
    pub ttft_p95_ms: f64,
    pub ttft_p99_ms: f64,
    pub tokens_per_s: f64,
    pub quota_rejections: u64,
    pub cache_hit_rate: Option<f64>,
    pub max_mean_load: f64,
    /// Model id → time-averaged busy slots / max_concurrent, in scenario model order.
    #[serde(serialize_with = "pairs_as_map")]
    pub per_model_utilization: Vec<(String, f64)>,
}

impl PolicyResult {
    /// The summary, `model_ids` naming `per_model_utilization` in order.
    pub fn summary(&self, model_ids: &[String]) -> PolicySummary {
        PolicySummary {
            policy: self.policy,
            handling: self.handling,
            success_rate: self.success_rate,
            failed: self.failed,
            failure_retries: self.failure_retries,
            wasted_calls: self.wasted_calls,
            p50_ms: self.p50_ms,
            p95_ms: self.p95_ms,
            p99_ms: self.p99_ms,
            mean_ms: self.mean_ms,
            avg_utilization: self.avg_utilization,
            duration_s: self.duration_s,
            throughput_per_s: self.throughput_per_s,
            requests: self.requests,
            completed: self.completed,
            overload_failures: self.overload_failures,
            rejected: self.rejected,
            retries: self.retries,
            max_queue_length: self.max_queue_length,
            ttft_p50_ms: self.ttft_p50_ms,
            ttft_p95_ms: self.ttft_p95_ms,
            ttft_p99_ms: self.ttft_p99_ms,
            tokens_per_s: self.tokens_per_s,
            quota_rejections: self.quota_rejections,
            cache_hit_rate: self.cache_hit_rate,
            max_mean_load: self.max_mean_load,
            per_model_utilization: model_ids
                .iter()
                .cloned()
                .zip(self.per_model_utilization.iter().copied())
                .collect(),
        }
    }
}

/// `PolicyResult(policy='weighted', p99_ms=…, completed=…, overload_failures=…, rejected=…)`
/// (then `handling=…, success_rate=…, failure_retries=…, wasted_calls=…` for a run with
/// failure handling): the Python repr, times rounded to 0.1 ms.
impl fmt::Display for PolicySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PolicyResult(policy={}, p99_ms={}, completed={}, overload_failures={}, rejected={}",
            py_str(self.policy.name()),
            py_float((self.p99_ms * 10.0).round() / 10.0),
            self.completed,
            self.overload_failures,
            self.rejected
        )?;
        if self.handling != Handling::None {
            write!(
                f,
                ", handling={}, success_rate={}, failure_retries={}, wasted_calls={}",
                py_str(self.handling.name()),
                py_float((self.success_rate * 1e5).round() / 1e5),
                self.failure_retries,
                self.wasted_calls
            )?;
        }
        f.write_str(")")
    }
}

impl PolicySummary {
    /// This run's row of the comparison table, in `SimulationReport::HEADERS` order.
    pub fn row(&self) -> [String; 15] {
        [
            run_name(self.policy, self.handling),
            thousands(self.p50_ms, 0),
            thousands(self.p95_ms, 0),
            thousands(self.p99_ms, 0),
            thousands(self.mean_ms, 0),
            thousands(self.completed as f64, 0),
            thousands(self.overload_failures as f64, 0),
            thousands(self.rejected as f64, 0),
            format!("{:.1}%", 100.0 * self.avg_utilization),
            thousands(self.max_queue_length as f64, 0),
            thousands(self.throughput_per_s, 1),
            format!("{:.3}%", 100.0 * self.success_rate),
            thousands(self.failed as f64, 0),
            thousands(self.failure_retries as f64, 0),
            thousands(self.wasted_calls as f64, 0),
        ]
    }

    /// The run's row of the comparison table as a one-row HTML table (the Python
    /// `PolicyResult._repr_html_()`).
    pub fn html(&self) -> String {
        html_table(None, &SimulationReport::HEADERS, &[self.row().to_vec()])
    }
}

/// `SimulationReport(requests=…, seed=…, policies=['least_loaded', …])`: the Python repr.
impl fmt::Display for SimulationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.results.iter().map(PolicyResult::name).collect();
        write!(
            f,
            "SimulationReport(requests={}, seed={}, policies={})",
            self.requests,
            self.seed,
            py_str_list(&names)
        )
    }
}

/// The Python `SimulationReport.to_dict()`: the header fields, then `results` mapping each
/// policy name to its [`PolicySummary`] (latency samples left out).
impl Serialize for SimulationReport {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        struct Results<'a>(&'a SimulationReport);
        impl Serialize for Results<'_> {
            fn serialize<S: Serializer>(
                &self,
                serializer: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(Some(self.0.results.len()))?;
                for r in &self.0.results {
                    map.serialize_entry(&r.name(), &r.summary(&self.0.model_ids))?;
                }
                map.end()
            }
        }
        let mut s = serializer.serialize_struct("SimulationReport", 5)?;
        s.serialize_field("description", &self.description)?;
        s.serialize_field("requests", &self.requests)?;
        s.serialize_field("seed", &self.seed)?;
        s.serialize_field("model_ids", &self.model_ids)?;
        s.serialize_field("results", &Results(self))?;
        s.end()
    }
}

pub use crate::display::escape_html;

/// `1234567` → `1,234,567`: counts and milliseconds read at a glance.
pub fn thousands(value: f64, decimals: usize) -> String {
    if !value.is_finite() {
        return "-".into();
    }
    let text = format!("{:.*}", decimals, value.abs());
    let (int, frac) = text
        .split_once('.')
        .map_or((text.as_str(), ""), |(i, f)| (i, f));
    let mut out = String::new();
    for (k, ch) in int.chars().enumerate() {
        if k > 0 && (int.len() - k) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    if value < 0.0 {
        out.insert(0, '-');
    }
    out
}

impl SimulationReport {
    pub const HEADERS: [&'static str; 15] = [
        "policy",
        "P50 ms",
        "P95 ms",
        "P99 ms",
        "mean ms",
        "completed",
        "overload",
        "rejected",
        "avg util",
        "max queue",
        "req/s",
        "success",
        "failed",
        "fail retries",
        "wasted calls",
    ];

    /// One row of cells per policy, in `HEADERS` order.
    pub fn rows(&self) -> Vec<[String; 15]> {
        self.results
            .iter()
            .map(|r| r.summary(&self.model_ids).row())
            .collect()
    }

    /// Plain-text comparison table; numbers right-aligned.
    pub fn table(&self) -> String {
        let rows = self.rows();
        let mut widths = Self::HEADERS.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let parts: Vec<String> = cells
                .iter()
                .zip(widths)
                .enumerate()
                .map(|(i, (c, w))| {
                    if i == 0 {
                        format!("{c:<w$}")
                    } else {
                        format!("{c:>w$}")
                    }
                })
                .collect();
            parts.join("  ").trim_end().to_string()
        };
        let mut out = vec![line(&Self::HEADERS.map(String::from))];
        out.push(line(&widths.map(|w| "-".repeat(w))));
        out.extend(rows.iter().map(|r| line(r)));
        out.join("\n")
    }
}

impl SimulationReport {
    /// The table as HTML (a caption line, then one row per policy), for notebooks.
    pub fn html(&self) -> String {
        let cell = |tag: &str, text: &str, i: usize| {
            let align = if i == 0 { "left" } else { "right" };
            format!(
                "<{tag} style=\"text-align:{align}\">{}</{tag}>",
                escape_html(text)
            )
        };
        let row = |tag: &str, cells: &[String]| -> String {
            let cells: String = cells
                .iter()
                .enumerate()
                .map(|(i, c)| cell(tag, c, i))
                .collect();
            format!("<tr>{cells}</tr>")
        };
        let head = row("th", &Self::HEADERS.map(String::from));
        let body: String = self.rows().iter().map(|r| row("td", r)).collect();
        format!(
            "<p>{} — {} requests, seed {}</p><table><thead>{head}</thead>\
             <tbody>{body}</tbody></table>",
            escape_html(&self.description),
            self.requests,
            self.seed
        )
    }
}
