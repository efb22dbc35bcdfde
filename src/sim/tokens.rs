//! Tokens in the simulator: request sizes per agent (lognormal prompt and output lengths) or
//! replayed from a trace (a CSV with Azure's columns `TIMESTAMP,ContextTokens,GeneratedTokens`),
//! and how the router admits against the providers' RPM/TPM quotas.

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

/// Most rows a trace may hold (the run keeps each request's latency).
pub const MAX_TRACE_ROWS: usize = 10_000_000;
/// Largest prompt or output length one request may have, in tokens.
pub const MAX_TOKENS: f64 = 1e7;

/// Lognormal token counts: `median · exp(sigma · Z)`, rounded, at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenLaw {
    pub median: f64,
    pub sigma: f64,
}

impl TokenLaw {
    pub fn sample(&self, z: f64) -> u64 {
        (self.median * (self.sigma * z).exp())
            .round()
            .clamp(1.0, MAX_TOKENS) as u64
    }

    pub(super) fn check(&self, source: &str, at: &str) -> Result<()> {
        if !(self.median.is_finite() && self.median >= 1.0 && self.median <= MAX_TOKENS) {
            let reason = format!("must be between 1 and {MAX_TOKENS}, got {}", self.median);
            return Err(super::raw::bad(source, format!("{at}.median"), reason));
        }
        if !(self.sigma.is_finite() && (0.0..=5.0).contains(&self.sigma)) {
            let reason = format!("must be between 0 and 5, got {}", self.sigma);
            return Err(super::raw::bad(source, format!("{at}.sigma"), reason));
        }
        Ok(())
    }
}

/// An agent's request sizes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AgentTokens {
    pub prompt: TokenLaw,
    pub output: TokenLaw,
}

/// What the router enforces of each model's provider quota (`rpm`, `tpm`) at admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaAdmission {
    /// RPM and TPM, in exact sliding windows of the tokens each request reserves.
    #[default]
    Tokens,
    /// RPM only: request-count admission (the usual request-rate limiter).
    Requests,
    /// Nothing: the providers answer 429 over their quotas.
    None,
}

impl QuotaAdmission {
    pub const ALL: [QuotaAdmission; 3] = [
        QuotaAdmission::Tokens,
        QuotaAdmission::Requests,
        QuotaAdmission::None,
    ];
    pub fn name(self) -> &'static str {
        match self {
            QuotaAdmission::Tokens => "tokens",
            QuotaAdmission::Requests => "requests",
            QuotaAdmission::None => "none",
        }
    }
}

/// How requests with a session pick their model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AffinityMode {
    /// The policy alone (sessions only measured).
    None,
    /// Plain consistent hashing over the models open now.
    Consistent,
    /// Consistent hashing with bounded loads (`router::affinity`).
    Bounded,
}

/// Sessions whose requests share a prompt prefix: a request served by the model that served
/// its session last hits that model's prefix cache (its TTFT × `hit_ttft_factor`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affinity {
    pub mode: AffinityMode,
    pub sessions: u32,
    pub epsilon: f64,
    pub hit_ttft_factor: f64,
}

/// Most sessions a scenario may have (one slot of memory each).
pub const MAX_SESSIONS: u32 = 10_000_000;

/// One replayed request: its arrival (ms after the trace's first) and sizes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceRow {
    pub arrival_ms: f64,
    pub prompt: u64,
    pub output: u64,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds of `YYYY-MM-DD HH:MM:SS[.fraction]` since the epoch (the trace's own time zone).
fn timestamp_s(text: &str) -> Option<f64> {
    let (date, time) = text.trim().split_once([' ', 'T'])?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, mo, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (h, mi) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let s = t.next()?.parse::<f64>().ok()?;
    if !(1..=12).contains(&mo) || !(1..=31).contains(&day) || !(0.0..61.0).contains(&s) {
        return None;
    }
    Some((days_from_civil(y, mo, day) * 86_400 + h * 3600 + mi * 60) as f64 + s)
}

/// Reads a trace: the header names `TIMESTAMP`, `ContextTokens` and `GeneratedTokens` (in any
/// order, other columns ignored); arrivals are made relative to the first row and divided by
/// `rate_scale` (2 = twice the rate). Rows out of time order are sorted.
pub fn read_trace(path: &Path, rate_scale: f64) -> Result<Vec<TraceRow>> {
    let field = "trace";
    let shown = path.display();
    if !(rate_scale.is_finite() && rate_scale > 0.0 && rate_scale <= 1e6) {
        let reason = format!("must be in (0, 1e6], got {rate_scale}");
        return Err(Error::invalid("trace.rate_scale", reason));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::invalid(field, format!("cannot read {shown} ({e})")))?;
    let mut lines = text.lines().enumerate();
    let header: Vec<&str> = lines
        .next()
        .map(|(_, h)| h.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let col = |name: &str| {
        header.iter().position(|h| *h == name).ok_or_else(|| {
            Error::invalid(
                field,
                format!("{shown}: no {name} column (the header must name TIMESTAMP, ContextTokens and GeneratedTokens)"),
            )
        })
    };
    let (ct, cp, co) = (
        col("TIMESTAMP")?,
        col("ContextTokens")?,
        col("GeneratedTokens")?,
    );
    let mut rows = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        if rows.len() == MAX_TRACE_ROWS {
            let reason = format!("{shown}: more than {MAX_TRACE_ROWS} rows");
            return Err(Error::invalid(field, reason));
        }
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let bad = |what: &str| {
            Error::invalid(
                field,
                format!("{shown}: line {}: bad {what}: {line:?}", i + 1),
            )
        };
        let at = cells
            .get(ct)
            .and_then(|c| timestamp_s(c))
            .ok_or_else(|| bad("TIMESTAMP"))?;
        let count = |c: usize, what: &str| {
            cells
                .get(c)
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|v| (*v as f64) <= MAX_TOKENS)
                .ok_or_else(|| bad(what))
        };
        rows.push((
            at,
            count(cp, "ContextTokens")?,
            count(co, "GeneratedTokens")?,
        ));
    }
    if rows.is_empty() {
        return Err(Error::invalid(field, format!("{shown}: no rows")));
    }
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let first = rows[0].0;
    Ok(rows
        .into_iter()
        .map(|(at, prompt, output)| TraceRow {
            arrival_ms: (at - first) * 1000.0 / rate_scale,
            prompt,
            output,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_traces_parse() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2023, 11, 16), 19_677);
        let a = timestamp_s("2023-11-16 18:15:46.6805900").unwrap();
        let b = timestamp_s("2023-11-17 00:00:01.5").unwrap();
        assert!((b - a - (5.0 * 3600.0 + 44.0 * 60.0 + 14.81941)).abs() < 1e-6);
        assert_eq!(timestamp_s("yesterday"), None);
        let dir = std::env::temp_dir().join(format!("mr-trace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.csv");
        std::fs::write(
            &path,
            "TIMESTAMP,ContextTokens,GeneratedTokens\n\
             2023-11-16 18:15:47.0,10,2\n2023-11-16 18:15:46.0,374,44\n",
        )
        .unwrap();
        let rows = read_trace(&path, 2.0).unwrap();
        assert_eq!(
            rows[0],
            TraceRow {
                arrival_ms: 0.0,
                prompt: 374,
                output: 44
            }
        );
        assert_eq!(
            rows[1],
            TraceRow {
                arrival_ms: 500.0,
                prompt: 10,
                output: 2
            }
        );
        std::fs::write(&path, "TIMESTAMP,Prompt\n").unwrap();
        let err = read_trace(&path, 1.0).unwrap_err().to_string();
        assert!(err.contains("no ContextTokens column"), "{err}");
        std::fs::write(&path, "TIMESTAMP,ContextTokens,GeneratedTokens\nx,1,2\n").unwrap();
        let err = read_trace(&path, 1.0).unwrap_err().to_string();
        assert!(err.contains("line 2: bad TIMESTAMP"), "{err}");
        assert!(read_trace(&path, 0.0).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
