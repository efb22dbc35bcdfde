//! What the trackers show: reprs (`Display`), `to_dict()` shapes (`Serialize`) and the HTML
//! tables notebooks render.

use std::fmt;

use serde::Serialize;

use super::{Kind, LatencyHistogram, PerformanceTracker, Stats};
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

/// `PerformanceTracker(models=2, agents=1, window_s=Some(30.0))`: the Python repr.
impl fmt::Display for PerformanceTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PerformanceTracker(models={}, agents={}, window_s={:?})",
            self.model_ids().len(),
            self.agent_ids().len(),
            self.config().window_s
        )
    }
}

/// A value to `digits` decimals, or an en dash when there is none.
fn cell(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{v:.digits$}"))
}

/// `Stats(count=3, success_rate=0.667, p50_ms=20.0, p95_ms=–, ...)`: the Python repr.
impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Stats(count={}, success_rate={}, p50_ms={}, p95_ms={}, p99_ms={})",
            self.count,
            cell(self.success_rate, 3),
            cell(self.p50_ms, 1),
            cell(self.p95_ms, 1),
            cell(self.p99_ms, 1)
        )
    }
}

/// `LatencyHistogram(bounds_ms=[10.0], counts=[1], count=2, sum_ms=30.0)`: the Python repr.
impl fmt::Display for LatencyHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "LatencyHistogram(bounds_ms={:?}, counts={:?}, count={}, sum_ms={:?})",
            self.bounds_ms, self.cumulative, self.count, self.sum_ms
        )
    }
}

/// Text safe inside HTML elements and attribute values.
fn escape_html(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            c => c.to_string(),
        })
        .collect()
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
