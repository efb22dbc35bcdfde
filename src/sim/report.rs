//! What one run measured, and the comparison table across policies.

use crate::balancer::Policy;

/// Measurements of one policy over the whole request stream.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyResult {
    pub policy: Policy,
    /// End-to-end latency of each completed request (retry waits + queue wait + service), in
    /// completion order.
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
    let t = pos - lo;
    // numpy's _lerp: from the nearer end, so the result is exact at t = 0 and t = 1.
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

impl PolicyResult {
    /// `counts` = [overload failures, rejected, retries, max queue length].
    pub(super) fn new(
        policy: Policy,
        latencies_ms: Vec<f64>,
        utilization: impl Iterator<Item = f64>,
        requests: u64,
        counts: [u64; 4],
        duration_s: f64,
    ) -> Self {
        let mut sorted = latencies_ms.clone();
        sorted.sort_unstable_by(f64::total_cmp);
        let n = sorted.len();
        let mean_ms = if n == 0 {
            f64::NAN
        } else {
            sorted.iter().sum::<f64>() / n as f64
        };
        let per_model_utilization: Vec<f64> = utilization.collect();
        let avg_utilization =
            per_model_utilization.iter().sum::<f64>() / per_model_utilization.len().max(1) as f64;
        let [overload_failures, rejected, retries, max_queue_length] = counts;
        PolicyResult {
            policy,
            p50_ms: percentile(&sorted, 50.0),
            p95_ms: percentile(&sorted, 95.0),
            p99_ms: percentile(&sorted, 99.0),
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
        }
    }
}

/// Every policy's result on one scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulationReport {
    pub description: String,
    pub model_ids: Vec<String>,
    pub requests: u64,
    pub seed: u64,
    pub results: Vec<PolicyResult>,
}

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
    pub const HEADERS: [&'static str; 11] = [
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
    ];

    /// One row of cells per policy, in `HEADERS` order.
    pub fn rows(&self) -> Vec<[String; 11]> {
        self.results
            .iter()
            .map(|r| {
                [
                    r.policy.name().to_string(),
                    thousands(r.p50_ms, 0),
                    thousands(r.p95_ms, 0),
                    thousands(r.p99_ms, 0),
                    thousands(r.mean_ms, 0),
                    thousands(r.completed as f64, 0),
                    thousands(r.overload_failures as f64, 0),
                    thousands(r.rejected as f64, 0),
                    format!("{:.1}%", 100.0 * r.avg_utilization),
                    thousands(r.max_queue_length as f64, 0),
                    thousands(r.throughput_per_s, 1),
                ]
            })
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
