//! AlertManager: threshold rules over the PerformanceTracker, the LoadTracker and (for
//! `model_ejected`) a health source (each model's `crate::health::State`), with the
//! semantics of trusted alerting:
//!
//! - a breached condition is *pending* until it has held for the rule's `for_s` (at every
//!   evaluation); only then does it *fire*. A flap shorter than `for_s` sends nothing.
//! - while firing, the same alert (rule × model) is repeated at most once per `cooldown_s`;
//!   the cooldown never delays a newly firing alert (another model, rule or episode).
//! - when the condition clears (or its data disappears), one *resolved* notice is emitted.
//! - every notification goes to the bounded history and to the sinks; a panicking sink is
//!   counted and skipped, never losing the alert for the others.

mod observe;
mod rule;

use std::collections::{BTreeMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::load::{LoadTracker, SharedClock};
use crate::perf::PerformanceTracker;
use crate::ser::nan_as_none;

pub use rule::{AlertKind, AlertRule, Severity};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Firing,
    Resolved,
}

impl AlertState {
    pub fn name(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// One notification. `id` names the firing episode: its first notice, repeats and resolved
/// notice share it. Serializes as the Python `Alert.to_dict()` (`kind` as `type`, a NaN
/// value as null).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub id: u64,
    #[serde(rename = "type")]
    pub kind: AlertKind,
    pub severity: Severity,
    /// None for a fleet-wide alert (no_capacity over every model).
    pub model_id: Option<String>,
    pub state: AlertState,
    /// The value last observed; NaN when the data disappeared.
    #[serde(serialize_with = "nan_as_none")]
    pub value: f64,
    pub threshold: f64,
    /// When the condition started to hold (the beginning of pending).
    pub started_at: f64,
    pub emitted_at: f64,
    pub message: String,
}

/// `Alert(id=3, message='…')`: the Python repr.
impl std::fmt::Display for Alert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Alert(id={}, message={})",
            self.id,
            crate::display::py_str(&self.message)
        )
    }
}

pub type AlertSink = Arc<dyn Fn(&Alert) + Send + Sync>;

/// Where `model_ejected` rules read: every model's health state now, e.g. a router's
/// (`Router::health().of(j, now)` over its models), or from Python `router.health()`.
pub type HealthSource = Arc<dyn Fn() -> Vec<(String, crate::health::State)> + Send + Sync>;

/// Where one (rule, model) pair stands. Absent = the condition does not hold.
#[derive(Debug, Clone)]
enum Condition {
    Pending { since: f64 },
    Firing { alert: Alert },
}

type Key = (usize, Option<String>);

/// The health source read once per evaluation: state by model id.
type HealthReading = BTreeMap<String, crate::health::State>;

#[derive(Debug, Default)]
struct Inner {
    conditions: BTreeMap<Key, Condition>,
    history: VecDeque<Alert>,
    next_id: u64,
}

/// Which notifications `history` returns.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter<'a> {
    pub model_id: Option<&'a str>,
    pub severity: Option<Severity>,
    pub kind: Option<AlertKind>,
    /// The newest `limit` matches (still oldest first).
    pub limit: Option<usize>,
}

impl<'a> HistoryFilter<'a> {
    /// A filter from a caller's strings: unknown severity or type names and a negative limit
    /// are input errors naming `severity`, `type` and `limit`.
    pub fn parse(
        model_id: Option<&'a str>,
        severity: Option<&str>,
        kind: Option<&str>,
        limit: Option<i64>,
    ) -> Result<Self> {
        let limit = limit
            .map(|l| crate::error::non_negative("limit", l))
            .transpose()?;
        Ok(HistoryFilter {
            model_id,
            severity: severity.map(str::parse).transpose()?,
            kind: kind.map(str::parse).transpose()?,
            limit: limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
        })
    }
}

/// Evaluates rules on demand (`evaluate`), keeping per-rule, per-model state between calls.
pub struct AlertManager {
    rules: Vec<AlertRule>,
    cooldown_s: f64,
    perf: Option<Arc<PerformanceTracker>>,
    load: Option<Arc<LoadTracker>>,
    health: Option<HealthSource>,
    clock: SharedClock,
    history_limit: usize,
    inner: Mutex<Inner>,
    sinks: RwLock<Vec<AlertSink>>,
    sink_failures: AtomicU64,
}

impl std::fmt::Debug for AlertManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertManager")
            .field("rules", &self.rules)
            .field("cooldown_s", &self.cooldown_s)
            .finish_non_exhaustive()
    }
}

/// `AlertManager(rules=2, cooldown_s=300, active=0)`: the Python repr.
impl std::fmt::Display for AlertManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AlertManager(rules={}, cooldown_s={}, active={})",
            self.rules.len(),
            crate::display::py_float(self.cooldown_s),
            self.active().len()
        )
    }
}

fn scope(model_id: &Option<String>) -> String {
    model_id
        .as_deref()
        .map_or_else(|| "the fleet".to_string(), |m| format!("{m:?}"))
}

impl AlertManager {
    /// The clock a manager should read when none is given: the trackers' (the performance
    /// tracker's first), so that its "now" agrees with their timestamps; else the system clock.
    pub fn trackers_clock(
        perf: Option<&Arc<PerformanceTracker>>,
        load: Option<&Arc<LoadTracker>>,
    ) -> SharedClock {
        match (perf, load) {
            (Some(p), _) => p.clock().clone(),
            (None, Some(l)) => l.clock().clone(),
            (None, None) => crate::load::system_clock(),
        }
    }

    pub fn new(
        rules: Vec<AlertRule>,
        cooldown_s: f64,
        perf: Option<Arc<PerformanceTracker>>,
        load: Option<Arc<LoadTracker>>,
        history_limit: usize,
        clock: SharedClock,
    ) -> Result<Self> {
        Self::with_health(rules, cooldown_s, perf, load, None, history_limit, clock)
    }

    /// `new` plus the health source `model_ejected` rules read.
    pub fn with_health(
        rules: Vec<AlertRule>,
        cooldown_s: f64,
        perf: Option<Arc<PerformanceTracker>>,
        load: Option<Arc<LoadTracker>>,
        health: Option<HealthSource>,
        history_limit: usize,
        clock: SharedClock,
    ) -> Result<Self> {
        if cooldown_s.is_nan() || cooldown_s < 0.0 {
            return Err(Error::invalid(
                "cooldown_s",
                format!("must be >= 0 (inf = never repeat), got {cooldown_s}"),
            ));
        }
        for (i, r) in rules.iter().enumerate() {
            let missing = match r.kind {
                k if k.reads_performance() => perf.is_none().then_some("performance"),
                k if k.reads_health() => health.is_none().then_some("health"),
                AlertKind::StaleData => {
                    (perf.is_none() && load.is_none()).then_some("performance or load")
                }
                _ => load.is_none().then_some("load"),
            };
            if let Some(source) = missing {
                return Err(Error::invalid(
                    "rules",
                    format!("rule {i} ({}) needs {source}= to read from", r.kind),
                ));
            }
        }
        Ok(AlertManager {
            rules,
            cooldown_s,
            perf,
            load,
            health,
            clock,
            history_limit,
            inner: Mutex::new(Inner::default()),
            sinks: RwLock::new(Vec::new()),
            sink_failures: AtomicU64::new(0),
        })
    }

    pub fn rules(&self) -> &[AlertRule] {
        &self.rules
    }
    pub fn cooldown_s(&self) -> f64 {
        self.cooldown_s
    }
    pub fn history_limit(&self) -> usize {
        self.history_limit
    }
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Called with every notification, after it is in the history.
    pub fn add_sink(&self, sink: AlertSink) {
        self.sinks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(sink);
    }

    /// Sink calls that panicked (each was skipped; the alert still reached the others).
    pub fn sink_failures(&self) -> u64 {
        self.sink_failures.load(Ordering::Relaxed)
    }

    /// Evaluates every rule at `now` (the clock when None) and returns the notifications this
    /// evaluation emitted: newly firing alerts, repeats after the cooldown and resolved notices.
    pub fn evaluate(&self, now: Option<f64>) -> Vec<Alert> {
        let now = now.unwrap_or_else(|| self.clock.now());
        let health: HealthReading = match &self.health {
            Some(read) if self.rules.iter().any(|r| r.kind.reads_health()) => {
                read().into_iter().collect()
            }
            _ => HealthReading::new(),
        };
        let health = &health;
        let observed: Vec<(Key, Option<f64>)> = self
            .rules
            .iter()
            .enumerate()
            .flat_map(|(i, rule)| {
                self.targets(rule, health).into_iter().map(move |t| {
                    let value = self.observe(rule, t.as_deref(), now, health);
                    ((i, t), value)
                })
            })
            .collect();
        let emitted = {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            let mut emitted = Vec::new();
            let mut seen = std::collections::BTreeSet::new();
            for (key, value) in observed {
                seen.insert(key.clone());
                emitted.extend(self.step(&mut inner, key, value, now));
            }
            // Targets that vanished (e.g. a rule's model no longer reported) resolve too.
            let gone: Vec<Key> = inner
                .conditions
                .keys()
                .filter(|k| !seen.contains(*k))
                .cloned()
                .collect();
            for key in gone {
                emitted.extend(self.step(&mut inner, key, None, now));
            }
            for alert in &emitted {
                inner.history.push_back(alert.clone());
            }
            let excess = inner.history.len().saturating_sub(self.history_limit);
            inner.history.drain(..excess);
            emitted
        };
        self.notify(&emitted);
        emitted
    }

    /// One state transition of one (rule, target).
    fn step(&self, inner: &mut Inner, key: Key, value: Option<f64>, now: f64) -> Option<Alert> {
        let rule = &self.rules[key.0];
        let holds = value.is_some_and(|v| rule.kind.breached(v, rule.threshold));
        let current = inner.conditions.remove(&key);
        let (next, out) = match (current, holds) {
            (None, false) | (Some(Condition::Pending { .. }), false) => (None, None),
            (None, true) => self.pending_or_fire(inner, &key, now, now, value),
            (Some(Condition::Pending { since }), true) => {
                self.pending_or_fire(inner, &key, since, now, value)
            }
            (Some(Condition::Firing { mut alert }), true) => {
                // The active alert reads the current value (its message too); the history
                // keeps each notification as it was emitted.
                alert.value = value.unwrap_or(f64::NAN);
                alert.message = self.message(rule, &key.1, alert.value, false);
                let repeat = now - alert.emitted_at >= self.cooldown_s;
                if repeat {
                    alert.emitted_at = now;
                }
                let out = repeat.then(|| alert.clone());
                (Some(Condition::Firing { alert }), out)
            }
            (Some(Condition::Firing { mut alert }), false) => {
                alert.state = AlertState::Resolved;
                alert.value = value.unwrap_or(f64::NAN);
                alert.emitted_at = now;
                alert.message = self.message(rule, &key.1, alert.value, true);
                (None, Some(alert))
            }
        };
        if let Some(c) = next {
            inner.conditions.insert(key, c);
        }
        out
    }

    fn pending_or_fire(
        &self,
        inner: &mut Inner,
        key: &Key,
        since: f64,
        now: f64,
        value: Option<f64>,
    ) -> (Option<Condition>, Option<Alert>) {
        let rule = &self.rules[key.0];
        if now - since < rule.for_s {
            return (Some(Condition::Pending { since }), None);
        }
        inner.next_id += 1;
        let value = value.unwrap_or(f64::NAN);
        let alert = Alert {
            id: inner.next_id,
            kind: rule.kind,
            severity: rule.severity,
            model_id: key.1.clone(),
            state: AlertState::Firing,
            value,
            threshold: rule.threshold,
            started_at: since,
            emitted_at: now,
            message: self.message(rule, &key.1, value, false),
        };
        (
            Some(Condition::Firing {
                alert: alert.clone(),
            }),
            Some(alert),
        )
    }

    fn message(
        &self,
        rule: &AlertRule,
        model: &Option<String>,
        value: f64,
        resolved: bool,
    ) -> String {
        let what = if value.is_nan() {
            "no data".to_string()
        } else {
            rule.kind.describe(value, rule.threshold)
        };
        let head = if resolved { "resolved: " } else { "" };
        format!(
            "{head}[{}] {} on {}: {what}",
            rule.severity,
            rule.kind,
            scope(model)
        )
    }

    fn notify(&self, alerts: &[Alert]) {
        if alerts.is_empty() {
            return;
        }
        let sinks = self.sinks.read().unwrap_or_else(|e| e.into_inner()).clone();
        for alert in alerts {
            for sink in &sinks {
                if catch_unwind(AssertUnwindSafe(|| sink(alert))).is_err() {
                    self.sink_failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Alerts firing now (with their last emission time), in rule then model order.
    pub fn active(&self) -> Vec<Alert> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .conditions
            .values()
            .filter_map(|c| match c {
                Condition::Firing { alert } => Some(alert.clone()),
                Condition::Pending { .. } => None,
            })
            .collect()
    }

    /// Past notifications, oldest first, at most `history_limit` of them.
    pub fn history(&self, filter: &HistoryFilter<'_>) -> Vec<Alert> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Alert> = inner
            .history
            .iter()
            .filter(|a| {
                filter
                    .model_id
                    .is_none_or(|m| a.model_id.as_deref() == Some(m))
            })
            .filter(|a| filter.severity.is_none_or(|s| a.severity == s))
            .filter(|a| filter.kind.is_none_or(|k| a.kind == k))
            .cloned()
            .collect();
        if let Some(limit) = filter.limit {
            out.drain(..out.len().saturating_sub(limit));
        }
        out
    }
}

#[cfg(test)]
mod tests;
