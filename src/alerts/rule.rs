//! Severities, alert types and rules: what to watch, against which threshold, for how long.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::error::{parse_choice, Error, Result};
use crate::health::State;

/// How urgent an alert is, from mildest to strongest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Error,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Info,
        Severity::Warning,
        Severity::Error,
        Severity::Critical,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }
}

/// What a rule watches. The value compared with the threshold and the direction of the
/// comparison are fixed per type (see `describe` and `breached`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// P95 latency in ms (PerformanceTracker) above the threshold.
    HighLatency,
    /// Success rate (PerformanceTracker) below the threshold.
    LowSuccessRate,
    /// Utilization, active / max_concurrent (LoadTracker), above the threshold.
    Overload,
    /// Utilization / target_utilization (LoadTracker) above the threshold (1.0 = at target).
    OverTargetUtilization,
    /// Seconds since the model's data was last updated above the threshold.
    StaleData,
    /// Free slots (active and queue room) at or below the threshold; fleet-wide unless the rule
    /// names a model.
    NoCapacity,
    /// The LoadTracker's shared backend (Redis) is unreachable: 1 while it is down, 0 while it
    /// answers, compared "above"; fleet-wide. Fail-open replicas run on local counts meanwhile.
    BackendUnavailable,
    /// A model taken out by its health (`crate::health`): 0 healthy, 1 probing, 2 cooling
    /// down, 3 ejected, compared "above" (threshold 0: fires while not healthy, resolves when
    /// healthy again; threshold 1: only ejected or cooling down). Reads the health source.
    ModelEjected,
}

impl AlertKind {
    pub const ALL: [AlertKind; 8] = [
        AlertKind::HighLatency,
        AlertKind::LowSuccessRate,
        AlertKind::Overload,
        AlertKind::OverTargetUtilization,
        AlertKind::StaleData,
        AlertKind::NoCapacity,
        AlertKind::BackendUnavailable,
        AlertKind::ModelEjected,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AlertKind::HighLatency => "high_latency",
            AlertKind::LowSuccessRate => "low_success_rate",
            AlertKind::Overload => "overload",
            AlertKind::OverTargetUtilization => "over_target_utilization",
            AlertKind::StaleData => "stale_data",
            AlertKind::NoCapacity => "no_capacity",
            AlertKind::BackendUnavailable => "backend_unavailable",
            AlertKind::ModelEjected => "model_ejected",
        }
    }

    /// True when `value` violates `threshold`.
    pub fn breached(self, value: f64, threshold: f64) -> bool {
        match self {
            AlertKind::LowSuccessRate => value < threshold,
            AlertKind::NoCapacity => value <= threshold,
            _ => value > threshold,
        }
    }

    /// "p95 latency 812.0 ms > 500 ms" and the like.
    pub fn describe(self, value: f64, threshold: f64) -> String {
        let op = if self.breached(value, threshold) {
            match self {
                AlertKind::LowSuccessRate => "<",
                AlertKind::NoCapacity => "<=",
                _ => ">",
            }
        } else {
            match self {
                AlertKind::LowSuccessRate => ">=",
                AlertKind::NoCapacity => ">",
                _ => "<=",
            }
        };
        match self {
            AlertKind::HighLatency => format!("p95 latency {value:.1} ms {op} {threshold} ms"),
            AlertKind::LowSuccessRate => format!("success rate {value:.3} {op} {threshold}"),
            AlertKind::Overload => format!("utilization {value:.2} {op} {threshold}"),
            AlertKind::OverTargetUtilization => {
                format!("utilization/target {value:.2} {op} {threshold}")
            }
            AlertKind::StaleData => format!("data age {value:.1} s {op} {threshold} s"),
            AlertKind::NoCapacity => format!("free slots {value} {op} {threshold}"),
            AlertKind::BackendUnavailable if value > 0.0 => {
                "shared load backend unreachable; admitting on local counts or refusing".into()
            }
            AlertKind::BackendUnavailable => "shared load backend answers again".into(),
            AlertKind::ModelEjected => format!("state {}", health_state_name(value)),
        }
    }

    /// Whether the value comes from the health source (else a tracker).
    pub fn reads_health(self) -> bool {
        matches!(self, AlertKind::ModelEjected)
    }

    /// Whether the value comes from the PerformanceTracker (else the LoadTracker).
    pub fn reads_performance(self) -> bool {
        matches!(self, AlertKind::HighLatency | AlertKind::LowSuccessRate)
    }
}

/// The `model_ejected` value of a health state (see `AlertKind::ModelEjected`).
pub fn health_state_value(state: State) -> f64 {
    match state {
        State::Healthy => 0.0,
        State::Probing => 1.0,
        State::CoolingDown => 2.0,
        State::Ejected => 3.0,
    }
}

fn health_state_name(value: f64) -> &'static str {
    match value {
        v if v >= 3.0 => State::Ejected.name(),
        v if v >= 2.0 => State::CoolingDown.name(),
        v if v >= 1.0 => State::Probing.name(),
        _ => State::Healthy.name(),
    }
}

impl FromStr for Severity {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        parse_choice("severity", "severity", s, &Severity::ALL, Severity::name)
    }
}

impl FromStr for AlertKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        parse_choice("type", "alert type", s, &AlertKind::ALL, AlertKind::name)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One threshold on one type, for one model or (model_id None) for every model.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    pub kind: AlertKind,
    pub threshold: f64,
    pub severity: Severity,
    /// How long the condition must hold before the alert fires (pending until then).
    pub for_s: f64,
    pub model_id: Option<String>,
    /// Latency and success rules stay silent until a model has this many samples.
    pub min_samples: u64,
}

/// `AlertRule("overload", 0.9, severity="warning", for_s=0, model_id=None)`: the Python repr.
impl fmt::Display for AlertRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::display::{py_float, py_str};
        let model_id = self.model_id.as_deref().map_or("None".into(), py_str);
        write!(
            f,
            "AlertRule({}, {}, severity={}, for_s={}, model_id={model_id})",
            py_str(self.kind.name()),
            py_float(self.threshold),
            py_str(self.severity.name()),
            py_float(self.for_s),
        )
    }
}

impl AlertRule {
    pub fn new(
        kind: AlertKind,
        threshold: f64,
        severity: Severity,
        for_s: f64,
        model_id: Option<String>,
        min_samples: u64,
    ) -> Result<Self> {
        if !threshold.is_finite() {
            return Err(Error::invalid(
                "threshold",
                format!("must be finite, got {threshold}"),
            ));
        }
        if !(for_s.is_finite() && for_s >= 0.0) {
            return Err(Error::invalid(
                "for_s",
                format!("must be a finite number >= 0, got {for_s}"),
            ));
        }
        if min_samples == 0 {
            return Err(Error::invalid("min_samples", "must be >= 1"));
        }
        Ok(AlertRule {
            kind,
            threshold,
            severity,
            for_s,
            model_id,
            min_samples,
        })
    }

    /// A rule with the defaults: warning, fires at once, every model, one sample.
    pub fn simple(kind: AlertKind, threshold: f64) -> Result<Self> {
        AlertRule::new(kind, threshold, Severity::Warning, 0.0, None, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_list_the_valid() {
        for k in AlertKind::ALL {
            assert_eq!(k.name().parse::<AlertKind>().unwrap(), k);
        }
        for s in Severity::ALL {
            assert_eq!(s.name().parse::<Severity>().unwrap(), s);
        }
        let err = "latency".parse::<AlertKind>().unwrap_err().to_string();
        assert!(
            err.contains("high_latency") && err.contains("no_capacity"),
            "{err}"
        );
        let err = "fatal".parse::<Severity>().unwrap_err().to_string();
        assert!(err.contains("critical"), "{err}");
    }

    #[test]
    fn directions() {
        assert!(AlertKind::HighLatency.breached(501.0, 500.0));
        assert!(!AlertKind::HighLatency.breached(500.0, 500.0));
        assert!(AlertKind::LowSuccessRate.breached(0.8, 0.9));
        assert!(AlertKind::NoCapacity.breached(0.0, 0.0));
        assert!(AlertRule::simple(AlertKind::Overload, f64::NAN).is_err());
        assert!(AlertKind::ModelEjected.breached(health_state_value(State::Ejected), 0.0));
        assert!(!AlertKind::ModelEjected.breached(health_state_value(State::Healthy), 0.0));
        assert_eq!(
            AlertKind::ModelEjected.describe(2.0, 0.0),
            "state cooling_down"
        );
        assert!(AlertRule::new(AlertKind::Overload, 1.0, Severity::Info, -1.0, None, 1).is_err());
    }
}
