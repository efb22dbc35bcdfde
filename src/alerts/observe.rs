//! What each rule reads: its targets (models or the fleet) and their current values.

use super::rule::health_state_value;
use super::{AlertKind, AlertManager, AlertRule, HealthReading};

impl AlertManager {
    /// Models (or the fleet, None) a rule applies to right now.
    /// `health` is the health source's reading for this evaluation (read once).
    pub(super) fn targets(&self, rule: &AlertRule, health: &HealthReading) -> Vec<Option<String>> {
        if let Some(m) = &rule.model_id {
            return vec![Some(m.clone())];
        }
        if rule.kind.reads_health() {
            return health.keys().cloned().map(Some).collect();
        }
        let ids = match (rule.kind, &self.perf, &self.load) {
            (AlertKind::NoCapacity | AlertKind::BackendUnavailable, _, _) => return vec![None],
            (k, Some(perf), _) if k.reads_performance() => perf.model_ids(),
            (AlertKind::StaleData, perf, Some(load)) => {
                let mut ids = load.model_ids();
                if let Some(perf) = perf {
                    ids.extend(perf.model_ids());
                    ids.sort_unstable();
                    ids.dedup();
                }
                ids
            }
            (AlertKind::StaleData, Some(perf), None) => perf.model_ids(),
            (_, _, Some(load)) => load.model_ids(),
            _ => Vec::new(),
        };
        ids.into_iter().map(Some).collect()
    }

    /// The rule's value for one target; None when there is no (fresh enough) data.
    pub(super) fn observe(
        &self,
        rule: &AlertRule,
        target: Option<&str>,
        now: f64,
        health: &HealthReading,
    ) -> Option<f64> {
        let perf_stats = |m: &str| {
            self.perf
                .as_ref()?
                .stats(m)
                .ok()
                .filter(|s| s.count >= rule.min_samples)
        };
        let load = |m: &str| self.load.as_ref()?.current_load(m);
        match (rule.kind, target) {
            (AlertKind::HighLatency, Some(m)) => perf_stats(m)?.p95_ms,
            (AlertKind::LowSuccessRate, Some(m)) => perf_stats(m)?.success_rate,
            (AlertKind::Overload, Some(m)) => Some(load(m)?.utilization()),
            (AlertKind::OverTargetUtilization, Some(m)) => {
                let l = load(m)?;
                Some(l.utilization() / l.capacity.target_utilization)
            }
            (AlertKind::StaleData, Some(m)) => {
                let from_load = self.load.as_ref().and_then(|t| t.state(m).ok());
                let last = match from_load {
                    Some(state) => state.last_updated(),
                    None => self.perf.as_ref()?.stats(m).ok()?.last_seen?,
                };
                Some(now - last)
            }
            (AlertKind::NoCapacity, target) => {
                let ids = match target {
                    Some(m) => vec![m.to_string()],
                    None => self.load.as_ref()?.model_ids(),
                };
                let free = ids.iter().filter_map(|m| load(m)).map(|l| {
                    let c = l.capacity;
                    c.max_concurrent.saturating_sub(l.active_requests)
                        + c.max_queue.saturating_sub(l.queue_depth)
                });
                let mut seen = false;
                let total = free.inspect(|_| seen = true).sum::<u64>();
                seen.then_some(total as f64)
            }
            (AlertKind::BackendUnavailable, _) => {
                let status = self.load.as_ref()?.backend()?.status();
                Some(if status.available { 0.0 } else { 1.0 })
            }
            (AlertKind::ModelEjected, Some(m)) => health.get(m).copied().map(health_state_value),
            (_, None) => None,
        }
    }
}
