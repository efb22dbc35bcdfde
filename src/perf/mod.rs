//! PerformanceTracker: per model and per agent, counts, success rate, P50/P95/P99 from an
//! HdrHistogram, mean, min/max, an EWMA and a ring of recent samples.
//!
//! Each key's state sits behind its own short mutex, and the id maps behind read-mostly locks:
//! a record takes a read lock, hashes the id and locks one key, so writers to different keys never
//! wait for each other. The histogram counts microseconds from 1 µs to 1 h at two significant
//! digits (bucket width ≤ 1/128 of the value, so percentiles are at most 0.8 % above the exact
//! sample; about 13 KB of `u32` counters per time bin). With `window_s`, each key keeps
//! [`WINDOW_BINS`] rotating time bins of `window_s / WINDOW_BINS` seconds each: a sample
//! stops counting once `window_s` has passed and always counts for `0.75 × window_s`. Stats
//! (one key, or the whole fleet with [`PerformanceTracker::aggregate`]) read the window; a
//! windowed key also keeps one since-start bin, so that [`PerformanceTracker::latency_histogram`]
//! (what a Prometheus histogram exports) only ever grows.

mod series;
mod view;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::load::SharedClock;

pub use series::{LatencyHistogram, Sample, HIGHEST_BOUND_MS, WINDOW_BINS};
use series::{Series, Summary, TimeBin};
pub use view::PerfSnapshot;

/// Settings fixed at construction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerfConfig {
    /// Sliding window in seconds; `None` keeps everything since the start.
    pub window_s: Option<f64>,
    /// Capacity of each model's ring of recent samples (the AdaptiveScorer reads it); at most
    /// `MAX_RECENT_SAMPLES`.
    pub recent_samples: usize,
    /// Most agent ids tracked at once; past it the least recently seen are evicted (counted in
    /// `evicted_agents`), so memory stays bounded whatever the number of distinct ids.
    pub max_agents: usize,
}

/// Upper bounds of the settings: beyond them one key alone would need gigabytes.
pub const MAX_RECENT_SAMPLES: usize = 1 << 20;
pub const MAX_AGENTS: usize = 10_000_000;

impl Default for PerfConfig {
    fn default() -> Self {
        PerfConfig {
            window_s: None,
            recent_samples: 1024,
            max_agents: 10_000,
        }
    }
}

/// What a key is: models and agents live in separate namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Model,
    Agent,
}

/// A reading of one key. Latency fields are `None` while no sample is inside the window.
/// Serializes as the Python `Stats.to_dict()`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    pub count: u64,
    pub successes: u64,
    pub failures: u64,
    pub success_rate: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub mean_ms: Option<f64>,
    /// Over every sample ever recorded (not windowed), weight 0.2 on the newest.
    pub ewma_ms: Option<f64>,
    pub min_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Clock time of the newest sample.
    pub last_seen: Option<f64>,
}

impl From<Summary> for Stats {
    fn from(s: Summary) -> Self {
        let has = s.count > 0;
        let some = |v: f64| (has && !v.is_nan()).then_some(v);
        Stats {
            count: s.count,
            successes: s.successes,
            failures: s.failures,
            success_rate: has.then(|| s.successes as f64 / s.count as f64),
            p50_ms: some(s.percentiles_ms.0),
            p95_ms: some(s.percentiles_ms.1),
            p99_ms: some(s.percentiles_ms.2),
            mean_ms: some(s.sum_ms / s.count.max(1) as f64),
            ewma_ms: Some(s.ewma_ms).filter(|v| !v.is_nan()),
            min_ms: some(s.min_ms),
            max_ms: some(s.max_ms),
            last_seen: Some(s.last_t).filter(|v| !v.is_nan()),
        }
    }
}

type Shared = Arc<Mutex<Series>>;
type Map = RwLock<HashMap<String, Shared>>;

fn lock(series: &Mutex<Series>) -> MutexGuard<'_, Series> {
    // Nothing inside a series can panic half-way through an update, so poisoning is harmless.
    series.lock().unwrap_or_else(|e| e.into_inner())
}

/// NaN, infinite or negative latencies are refused rather than skewing the histogram.
pub fn check_latency(latency_ms: f64) -> Result<f64> {
    if latency_ms.is_finite() && latency_ms >= 0.0 {
        Ok(latency_ms)
    } else {
        Err(Error::invalid(
            "latency_ms",
            format!("must be a finite number >= 0, got {latency_ms}"),
        ))
    }
}

/// A key's series held directly, so a hot path (the router's per-model guard) records without
/// hashing the id.
#[derive(Debug, Clone)]
pub struct SeriesHandle {
    series: Shared,
    clock: SharedClock,
}

impl SeriesHandle {
    pub fn record(&self, latency_ms: f64, success: bool) -> Result<()> {
        self.record_at(latency_ms, success, self.clock.now())
    }

    pub fn record_at(&self, latency_ms: f64, success: bool, now: f64) -> Result<()> {
        lock(&self.series).record(check_latency(latency_ms)?, success, now);
        Ok(())
    }
}

/// Latency bounds of a cumulative histogram: finite, ascending, within `0..=HIGHEST_BOUND_MS`.
pub fn check_bounds(bounds_ms: &[f64]) -> Result<()> {
    for (i, &b) in bounds_ms.iter().enumerate() {
        if !(b.is_finite() && (0.0..=HIGHEST_BOUND_MS).contains(&b)) {
            return Err(Error::invalid(
                "bounds_ms",
                format!("[{i}] must be a finite number in [0, {HIGHEST_BOUND_MS}], got {b}"),
            ));
        }
        if i > 0 && b <= bounds_ms[i - 1] {
            return Err(Error::invalid(
                "bounds_ms",
                format!(
                    "must be strictly increasing, got {} then {b} at [{i}]",
                    bounds_ms[i - 1]
                ),
            ));
        }
    }
    Ok(())
}

/// Latency and outcome statistics per model and per agent. Thread-safe; `record` never
/// allocates once a key exists.
#[derive(Debug)]
pub struct PerformanceTracker {
    config: PerfConfig,
    clock: SharedClock,
    models: Map,
    agents: Map,
    evicted_agents: AtomicU64,
}

impl PerformanceTracker {
    pub fn new(config: PerfConfig, clock: SharedClock) -> Result<Self> {
        if let Some(w) = config.window_s {
            if !(w.is_finite() && w > 0.0) {
                return Err(Error::invalid(
                    "window_s",
                    format!("must be a finite number > 0 or None, got {w}"),
                ));
            }
        }
        if config.recent_samples > MAX_RECENT_SAMPLES {
            return Err(Error::invalid(
                "recent_samples",
                format!(
                    "must be at most {MAX_RECENT_SAMPLES}, got {}",
                    config.recent_samples
                ),
            ));
        }
        if !(1..=MAX_AGENTS).contains(&config.max_agents) {
            return Err(Error::invalid(
                "max_agents",
                format!(
                    "must be between 1 and {MAX_AGENTS}, got {}",
                    config.max_agents
                ),
            ));
        }
        Ok(PerformanceTracker {
            config,
            clock,
            models: RwLock::new(HashMap::new()),
            agents: RwLock::new(HashMap::new()),
            evicted_agents: AtomicU64::new(0),
        })
    }

    pub fn config(&self) -> PerfConfig {
        self.config
    }
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }
    pub fn now(&self) -> f64 {
        self.clock.now()
    }

    fn map(&self, kind: Kind) -> &Map {
        match kind {
            Kind::Model => &self.models,
            Kind::Agent => &self.agents,
        }
    }

    fn get(&self, kind: Kind, id: &str) -> Option<Shared> {
        let map = self.map(kind).read().unwrap_or_else(|e| e.into_inner());
        map.get(id).cloned()
    }

    fn get_or_insert(&self, kind: Kind, id: &str) -> Shared {
        if let Some(s) = self.get(kind, id) {
            return s;
        }
        let mut map = self.map(kind).write().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = map.get(id) {
            return s.clone();
        }
        let series = match kind {
            Kind::Model => Series::new(self.config.window_s, self.config.recent_samples),
            Kind::Agent => {
                if map.len() >= self.config.max_agents {
                    self.evict_least_recent(&mut map);
                }
                Series::compact(self.config.window_s)
            }
        };
        let series = Arc::new(Mutex::new(series));
        map.insert(id.to_string(), series.clone());
        series
    }

    /// Drops the least recently seen tenth of the agents (at least one) in one pass, so the
    /// cost of a full map is paid once per `max_agents / 10` new ids, not once per id.
    fn evict_least_recent(&self, map: &mut HashMap<String, Shared>) {
        let n = (self.config.max_agents / 10).max(1).min(map.len());
        let mut seen: Vec<(f64, String)> = map
            .iter()
            .map(|(id, s)| (lock(s).last_t(), id.clone()))
            .collect();
        // NaN (never recorded) sorts first: evicted before anything that was seen.
        seen.select_nth_unstable_by(n - 1, |a, b| {
            let key = |t: f64| if t.is_nan() { f64::NEG_INFINITY } else { t };
            key(a.0).total_cmp(&key(b.0))
        });
        for (_, id) in &seen[..n] {
            map.remove(id);
        }
        self.evicted_agents.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// How many agent ids have statistics now (at most `max_agents`).
    pub fn agent_count(&self) -> usize {
        self.agents.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Agent ids dropped so far to stay within `max_agents`.
    pub fn evicted_agents(&self) -> u64 {
        self.evicted_agents.load(Ordering::Relaxed)
    }

    /// Runs `f` on the key's series, creating it on first sight. The map's read lock is held
    /// across the key's lock so that the common path clones no `Arc`.
    fn with_series<R>(&self, kind: Kind, id: &str, f: impl FnOnce(&mut Series) -> R) -> R {
        {
            let map = self.map(kind).read().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = map.get(id) {
                return f(&mut lock(s));
            }
        }
        f(&mut lock(&self.get_or_insert(kind, id)))
    }

    /// Records one request against the model and, when given, the agent that sent it.
    pub fn record(
        &self,
        model: &str,
        agent: Option<&str>,
        latency_ms: f64,
        success: bool,
    ) -> Result<()> {
        self.record_at(model, agent, latency_ms, success, self.clock.now())
    }

    /// `record` at an explicit clock time (callers that already read the clock).
    pub fn record_at(
        &self,
        model: &str,
        agent: Option<&str>,
        latency_ms: f64,
        success: bool,
        now: f64,
    ) -> Result<()> {
        let latency_ms = check_latency(latency_ms)?;
        self.with_series(Kind::Model, model, |s| s.record(latency_ms, success, now));
        if let Some(agent) = agent {
            self.with_series(Kind::Agent, agent, |s| s.record(latency_ms, success, now));
        }
        Ok(())
    }

    /// The model's series for hash-free recording; registers the model if it is new.
    pub fn model_handle(&self, model: &str) -> SeriesHandle {
        SeriesHandle {
            series: self.get_or_insert(Kind::Model, model),
            clock: self.clock.clone(),
        }
    }

    fn unknown(id: &str) -> Error {
        Error::UnknownModel(id.to_string())
    }

    pub fn stats_of(&self, kind: Kind, id: &str) -> Result<Stats> {
        let series = self.get(kind, id).ok_or_else(|| Self::unknown(id))?;
        let now = self.clock.now();
        let summary = lock(&series).summary(now);
        Ok(summary.into())
    }

    pub fn stats(&self, model: &str) -> Result<Stats> {
        self.stats_of(Kind::Model, model)
    }

    pub fn agent_stats(&self, agent: &str) -> Result<Stats> {
        self.stats_of(Kind::Agent, agent)
    }

    /// Sorted ids of one kind.
    pub fn ids(&self, kind: Kind) -> Vec<String> {
        let map = self.map(kind).read().unwrap_or_else(|e| e.into_inner());
        let mut ids: Vec<String> = map.keys().cloned().collect();
        ids.sort_unstable();
        ids
    }

    pub fn model_ids(&self) -> Vec<String> {
        self.ids(Kind::Model)
    }

    pub fn agent_ids(&self) -> Vec<String> {
        self.ids(Kind::Agent)
    }

    /// Every key of one kind taken together (the whole fleet, or every agent) over the window:
    /// counts, percentiles, mean and extremes as if all had been recorded under one key; the
    /// EWMA is the keys' EWMAs weighted by how many samples each has seen; `last_seen` is the
    /// newest. All zero / `None` when nothing is inside the window.
    pub fn aggregate(&self, kind: Kind) -> Stats {
        let entries: Vec<Shared> = {
            let map = self.map(kind).read().unwrap_or_else(|e| e.into_inner());
            map.values().cloned().collect()
        };
        let now = self.clock.now();
        let mut acc = TimeBin::new(0);
        let (mut ewma_sum, mut ewma_weight, mut last_t) = (0.0, 0u64, f64::NAN);
        for series in &entries {
            let series = lock(series);
            series.add_live_to(now, &mut acc);
            let (ewma, weight) = series.ewma();
            if !ewma.is_nan() && weight > 0 {
                ewma_sum += ewma * weight as f64;
                ewma_weight = ewma_weight.saturating_add(weight);
            }
            last_t = last_t.max(series.last_t());
        }
        let ewma = if ewma_weight > 0 {
            ewma_sum / ewma_weight as f64
        } else {
            f64::NAN
        };
        acc.summary(ewma, last_t).into()
    }

    /// Since-start counts of one key at or under each of `bounds_ms` (finite, strictly
    /// increasing, at most one hour), with its count, outcomes and latency sum: a Prometheus
    /// histogram. Not windowed, so successive readings never decrease.
    pub fn latency_histogram(
        &self,
        kind: Kind,
        id: &str,
        bounds_ms: &[f64],
    ) -> Result<LatencyHistogram> {
        check_bounds(bounds_ms)?;
        let series = self.get(kind, id).ok_or_else(|| Self::unknown(id))?;
        let histogram = lock(&series).histogram(bounds_ms);
        Ok(histogram)
    }

    /// Stats of every key of one kind, sorted by id (one lock per key, not a global snapshot).
    pub fn all_stats(&self, kind: Kind) -> Vec<(String, Stats)> {
        let entries: Vec<(String, Shared)> = {
            let map = self.map(kind).read().unwrap_or_else(|e| e.into_inner());
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let now = self.clock.now();
        let mut out: Vec<(String, Stats)> = entries
            .into_iter()
            .map(|(id, s)| {
                let stats = lock(&s).summary(now).into();
                (id, stats)
            })
            .collect();
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The key's ring of recent samples, oldest first.
    pub fn recent(&self, kind: Kind, id: &str) -> Result<Vec<Sample>> {
        let series = self.get(kind, id).ok_or_else(|| Self::unknown(id))?;
        let samples = lock(&series).recent().copied().collect();
        Ok(samples)
    }

    /// `recent` as columns: (times, latencies in ms, successes), oldest first.
    pub fn recent_columns(&self, kind: Kind, id: &str) -> Result<(Vec<f64>, Vec<f64>, Vec<bool>)> {
        let samples = self.recent(kind, id)?;
        let times = samples.iter().map(|s| s.t).collect();
        let latencies = samples.iter().map(|s| f64::from(s.latency_ms)).collect();
        Ok((
            times,
            latencies,
            samples.iter().map(|s| s.success).collect(),
        ))
    }

    /// Appends the model's samples numbered `>= since` to `out` and returns the next number;
    /// `None` for an unknown model. Lets readers (the AdaptiveScorer) follow a model
    /// incrementally.
    pub fn samples_since(&self, model: &str, since: u64, out: &mut Vec<Sample>) -> Option<u64> {
        let map = self.models.read().unwrap_or_else(|e| e.into_inner());
        let series = map.get(model)?;
        let next = lock(series).samples_since(since, out);
        Some(next)
    }

    /// Adds everything `other` has seen, as if it had been recorded here (percentiles, counts,
    /// min/max and mean match exactly; EWMAs combine weighted by count).
    pub fn merge(&self, other: &PerformanceTracker) -> Result<()> {
        if std::ptr::eq(self, other) {
            return Err(Error::invalid(
                "other",
                "cannot merge a tracker into itself",
            ));
        }
        if self.config.window_s != other.config.window_s {
            return Err(Error::invalid(
                "other",
                format!(
                    "window_s differs ({:?} here, {:?} there); windows must match to merge",
                    self.config.window_s, other.config.window_s
                ),
            ));
        }
        for kind in [Kind::Model, Kind::Agent] {
            let theirs: Vec<(String, Shared)> = {
                let map = other.map(kind).read().unwrap_or_else(|e| e.into_inner());
                map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
            };
            for (id, series) in theirs {
                // Copy first so that two trackers merging into each other cannot deadlock.
                let copy = lock(&series).clone();
                self.with_series(kind, &id, |mine| mine.merge(&copy));
            }
        }
        Ok(())
    }

    /// Bytes held by the tracker: every key's histograms, counters and ring, the id strings and
    /// the maps' tables.
    pub fn memory_bytes(&self) -> usize {
        let per_entry = std::mem::size_of::<(String, Shared)>() + 1;
        let arc_overhead = 2 * std::mem::size_of::<usize>() + std::mem::size_of::<Mutex<Series>>()
            - std::mem::size_of::<Series>();
        let mut total = std::mem::size_of::<Self>();
        for kind in [Kind::Model, Kind::Agent] {
            let map = self.map(kind).read().unwrap_or_else(|e| e.into_inner());
            total += map.capacity() * per_entry;
            for (id, series) in map.iter() {
                total += id.capacity() + arc_overhead + lock(series).bytes();
            }
        }
        total
    }
}

#[cfg(test)]
mod tests;
