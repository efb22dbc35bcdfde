//! What the trackers show: reprs (`Display`), `to_dict()` shapes (`Serialize`) and the HTML
//! tables notebooks render.

use std::fmt;

use serde::Serialize;

use super::{Kind, LatencyHistogram, PerformanceTracker, Stats};
use crate::display::{escape_html, py_float, py_opt_float};
use crate::ser::pairs_as_map;

/// Every key's stats at one reading, sorted by id. Serializes as the Python
/// `PerformanceTracker.to_dict()`: `{"models": {id: stats}, "agents": {id: stats}}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerfSnapshot {
    #[serde(serialize_with = "pairs_as_map")]
    pub models: Vec<(String, Stats)>,
    #[serde(serialize_with = "pairs_as_map")]
    pub agents: Vec<(String, Stats)>,
}

impl PerformanceTracker {
    pub fn snapshot(&self) -> PerfSnapshot {
        PerfSnapshot {
            models: self.all_stats(Kind::Model),
            agents: self.all_stats(Kind::Agent),
        }
    }
}

/// `PerformanceTracker(models=2, agents=1, window_s=30.0)` (`window_s=None` without a
/// window): the Python repr.
impl fmt::Display for PerformanceTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PerformanceTracker(models={}, agents={}, window_s={})",
            self.model_ids().len(),
            self.agent_ids().len(),
            py_opt_float(self.config().window_s)
        )
    }
}

/// A value to `digits` decimals, or an en dash when there is none.
fn cell(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{v:.digits$}"))
}

/// A value rounded to `digits` decimals as a Python float, or `None`.
fn rounded(v: Option<f64>, digits: i32) -> String {
    let scale = 10f64.powi(digits);
    py_opt_float(v.map(|v| (v * scale).round() / scale))
}

/// `Stats(count=3, success_rate=0.667, p50_ms=20.0, p95_ms=None, ...)`: the Python repr
/// (rounded to 3 / 1 decimals; the attributes hold the exact values).
impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Stats(count={}, success_rate={}, p50_ms={}, p95_ms={}, p99_ms={})",
            self.count,
            rounded(self.success_rate, 3),
            rounded(self.p50_ms, 1),
            rounded(self.p95_ms, 1),
            rounded(self.p99_ms, 1)
        )
    }
}

/// `LatencyHistogram(bounds_ms=[10.0], counts=[1], count=2, sum_ms=30.0)`: the Python repr.
impl fmt::Display for LatencyHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bounds: Vec<String> = self.bounds_ms.iter().map(|b| py_float(*b)).collect();
        write!(
            f,
            "LatencyHistogram(bounds_ms=[{}], counts={:?}, count={}, sum_ms={})",
            bounds.join(", "),
            self.cumulative,
            self.count,
            py_float(self.sum_ms)
        )
    }
}

const COLUMNS: [&str; 10] = [
    "count",
    "success",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "mean ms",
    "ewma ms",
    "min ms",
    "max ms",
    "last seen",
];

/// One `<tr>` of the stats table; `label` is HTML already.
fn html_row(label: &str, s: &Stats) -> String {
    let cells = [
        s.count.to_string(),
        cell(s.success_rate, 3),
        cell(s.p50_ms, 1),
        cell(s.p95_ms, 1),
        cell(s.p99_ms, 1),
        cell(s.mean_ms, 1),
        cell(s.ewma_ms, 1),
        cell(s.min_ms, 1),
        cell(s.max_ms, 1),
        cell(s.last_seen, 1),
    ];
    let tds: String = cells.iter().map(|c| format!("<td>{c}</td>")).collect();
    format!("<tr><th>{label}</th>{tds}</tr>")
}

fn html_table(rows: &[String]) -> String {
    let head: String = COLUMNS.iter().map(|c| format!("<th>{c}</th>")).collect();
    format!(
        "<table><thead><tr><th></th>{head}</tr></thead><tbody>{}</tbody></table>",
        rows.concat()
    )
}

impl Stats {
    /// A one-row table with an empty label (the Python `Stats._repr_html_()`).
    pub fn html(&self) -> String {
        html_table(&[html_row("", self)])
    }
}

impl PerfSnapshot {
    /// One row per model, then per agent, labelled `model <id>` / `agent <id>` (escaped).
    pub fn html(&self) -> String {
        let rows = [("model", &self.models), ("agent", &self.agents)];
        let rows: Vec<String> = rows
            .iter()
            .flat_map(|(prefix, entries)| {
                entries
                    .iter()
                    .map(move |(id, s)| html_row(&format!("{prefix} {}", escape_html(id)), s))
            })
            .collect();
        html_table(&rows)
    }
}
