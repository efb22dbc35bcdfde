//! AdaptiveScorer: capability, measured performance and live load in one score per model.
//!
//! `score = w_c·capability + w_p·performance + w_l·load`, weights normalised to sum 1.
//!
//! **performance** = `success × latency_factor`, both from the model's recent samples (read
//! incrementally from the PerformanceTracker's ring) with half-life `h = half_life_s`:
//! - *success*: decayed counts `ok`, `bad` (each halves every `h`), shrunk toward the fleet:
//!   `(ok + A·p) / (ok + bad + A)` with `A = 2` pseudo-requests and the fleet rate
//!   `p = (Σok + 1) / (Σ(ok + bad) + 2)`. A failure counts at once and fades with its weight.
//! - *latency*: a peak EWMA `L` (as in Finagle/Linkerd): a sample above `L` replaces it at once,
//!   a lower one pulls it down with weight `1 − 2^(−Δt/h)`, `Δt` since the previous sample. When
//!   read, `L` relaxes toward the fleet reference `R`, the lower median over warm models of a
//!   slow baseline (a plain time-decayed mean with half-life `10·h`, so one spike barely moves
//!   it and a model that was its fleet's only one still compares against its own past):
//!   `L_eff = R + (L − R)·2^(−age/h)`, so a model no longer chosen is retried once its spike is
//!   old. `latency_factor = min(1, R / L_eff)`: no bonus below the fleet's typical latency.
//! - a *cold* model (no sample yet) gets `success = p` and `L_eff = R`: the fleet's typical
//!   value, never 1 (p < 1) nor 0 (p > 0). Evidence fades everywhere, so a fleet idle for many
//!   half-lives drifts toward the uninformed `p = 1/2` for every model alike (ranking unchanged).
//!
//! **load** = `1 − utilization` clamped to [0, 1] from the LoadTracker; unknown or stale models
//! get the mean of the known ones; without a LoadTracker every model gets 1.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::display::py_float;
use crate::error::{Error, Result};
use crate::load::{LoadTracker, SharedClock};
use crate::perf::{PerfConfig, PerformanceTracker, Sample};
use crate::ser::nan_as_none;

/// Pseudo-requests of fleet-average behaviour mixed into every model's success rate.
const PRIOR_REQUESTS: f64 = 2.0;
/// The latency baseline forgets this many times more slowly than the peak EWMA.
const BASELINE_SLOWDOWN: f64 = 10.0;

/// Relative weights of the three components (normalised when used).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveWeights {
    pub capability: f64,
    pub performance: f64,
    pub load: f64,
}

impl Default for AdaptiveWeights {
    fn default() -> Self {
        AdaptiveWeights {
            capability: 0.5,
            performance: 0.3,
            load: 0.2,
        }
    }
}

impl AdaptiveWeights {
    /// `(capability, performance, load)` as given by a caller; any other length is an input
    /// error naming `weights`. Not yet normalised.
    pub fn from_slice(w: &[f64]) -> Result<Self> {
        match *w {
            [capability, performance, load] => Ok(AdaptiveWeights {
                capability,
                performance,
                load,
            }),
            _ => Err(Error::invalid(
                "weights",
                format!(
                    "must be three numbers (capability, performance, load), got {}",
                    w.len()
                ),
            )),
        }
    }

    /// Checks the weights and scales them to sum 1.
    pub fn normalised(self) -> Result<Self> {
        let parts = [self.capability, self.performance, self.load];
        if parts.iter().any(|w| !(w.is_finite() && *w >= 0.0)) {
            return Err(Error::invalid(
                "weights",
                format!("must be finite numbers >= 0, got {parts:?}"),
            ));
        }
        let sum: f64 = parts.iter().sum();
        if sum <= 0.0 {
            return Err(Error::invalid("weights", "must not all be 0"));
        }
        Ok(AdaptiveWeights {
            capability: self.capability / sum,
            performance: self.performance / sum,
            load: self.load / sum,
        })
    }
}

/// What the scorer has learned about one model so far.
#[derive(Debug, Clone)]
struct Estimate {
    seen: u64,
    peak_ms: f64,
    t_peak: f64,
    baseline_ms: f64,
    ok: f64,
    bad: f64,
    t_counts: f64,
}

impl Default for Estimate {
    fn default() -> Self {
        Estimate {
            seen: 0,
            peak_ms: f64::NAN,
            t_peak: f64::NEG_INFINITY,
            baseline_ms: f64::NAN,
            ok: 0.0,
            bad: 0.0,
            t_counts: f64::NEG_INFINITY,
        }
    }
}

/// `2^(−dt/h)`; 1 for dt <= 0 (out-of-order or simultaneous samples).
fn decay(dt: f64, half_life_s: f64) -> f64 {
    if dt > 0.0 {
        (-dt / half_life_s).exp2()
    } else {
        1.0
    }
}

impl Estimate {
    fn observe(&mut self, s: &Sample, h: f64) {
        let k = decay(s.t - self.t_counts, h);
        self.ok *= k;
        self.bad *= k;
        self.t_counts = self.t_counts.max(s.t);
        if s.success {
            self.ok += 1.0;
        } else {
            self.bad += 1.0;
        }
        let x = f64::from(s.latency_ms);
        if self.baseline_ms.is_nan() {
            self.baseline_ms = x;
        } else {
            let w = decay(s.t - self.t_peak, h * BASELINE_SLOWDOWN);
            self.baseline_ms = self.baseline_ms * w + x * (1.0 - w);
        }
        if self.peak_ms.is_nan() || x >= self.peak_ms {
            self.peak_ms = x;
        } else {
            let w = decay(s.t - self.t_peak, h);
            self.peak_ms = self.peak_ms * w + x * (1.0 - w);
        }
        self.t_peak = self.t_peak.max(s.t);
    }

    fn is_cold(&self) -> bool {
        self.peak_ms.is_nan()
    }

    /// Decayed (ok, bad) at `now`.
    fn counts(&self, now: f64, h: f64) -> (f64, f64) {
        let k = decay(now - self.t_counts, h);
        (self.ok * k, self.bad * k)
    }
}

/// The three components and their inputs for one model (for inspection and notebooks).
/// Serializes as the Python `AdaptiveScorer.explain()` dict (NaN latency as null).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Breakdown {
    pub capability: f64,
    pub performance: f64,
    pub success: f64,
    pub latency_factor: f64,
    /// The model's peak EWMA after relaxing toward the fleet; NaN while cold and fleet empty.
    #[serde(serialize_with = "nan_as_none")]
    pub latency_ms: f64,
    pub load: f64,
    pub cold: bool,
    pub score: f64,
}

/// `AdaptiveScorer(weights=(0.5, 0.3, 0.2), half_life_s=30.0)`: the Python repr.
impl fmt::Display for AdaptiveScorer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.weights;
        write!(
            f,
            "AdaptiveScorer(weights=({}, {}, {}), half_life_s={})",
            py_float(w.capability),
            py_float(w.performance),
            py_float(w.load),
            py_float(self.half_life_s)
        )
    }
}

/// Fleet-wide references, computed once per scoring call.
struct Fleet {
    success: f64,
    latency_ref_ms: f64,
    mean_load: f64,
}

/// Scores models from capability, performance (PerformanceTracker) and load (LoadTracker).
#[derive(Debug)]
pub struct AdaptiveScorer {
    weights: AdaptiveWeights,
    tracker: Arc<PerformanceTracker>,
    load: Option<Arc<LoadTracker>>,
    half_life_s: f64,
    clock: SharedClock,
    estimates: Mutex<HashMap<String, Estimate>>,
}

impl AdaptiveScorer {
    pub fn new(
        weights: AdaptiveWeights,
        tracker: Arc<PerformanceTracker>,
        load: Option<Arc<LoadTracker>>,
        half_life_s: f64,
        clock: SharedClock,
    ) -> Result<Self> {
        if !(half_life_s.is_finite() && half_life_s > 0.0) {
            return Err(Error::invalid(
                "half_life_s",
                format!("must be a finite number > 0, got {half_life_s}"),
            ));
        }
        if tracker.config().recent_samples == 0 {
            return Err(Error::invalid(
                "performance",
                "needs recent_samples >= 1: the scorer learns from the recent-sample ring",
            ));
        }
        Ok(AdaptiveScorer {
            weights: weights.normalised()?,
            tracker,
            load,
            half_life_s,
            clock,
            estimates: Mutex::new(HashMap::new()),
        })
    }

    /// A scorer learning from `performance`, or from a tracker of its own (default settings)
    /// on `clock`; scoring on `clock`, else on the tracker's clock, else the system clock.
    pub fn with_tracker_or_clock(
        weights: AdaptiveWeights,
        performance: Option<Arc<PerformanceTracker>>,
        load: Option<Arc<LoadTracker>>,
        half_life_s: f64,
        clock: Option<SharedClock>,
    ) -> Result<Self> {
        let (tracker, clock) = match (performance, clock) {
            (Some(t), Some(c)) => (t, c),
            (Some(t), None) => {
                let clock = t.clock().clone();
                (t, clock)
            }
            (None, c) => {
                let clock = c.unwrap_or_else(crate::load::system_clock);
                let t = PerformanceTracker::new(PerfConfig::default(), clock.clone())?;
                (Arc::new(t), clock)
            }
        };
        Self::new(weights, tracker, load, half_life_s, clock)
    }

    pub fn weights(&self) -> AdaptiveWeights {
        self.weights
    }
    pub fn half_life_s(&self) -> f64 {
        self.half_life_s
    }
    pub fn tracker(&self) -> &Arc<PerformanceTracker> {
        &self.tracker
    }
    pub fn load_tracker(&self) -> Option<&Arc<LoadTracker>> {
        self.load.as_ref()
    }

    /// Folds every sample the tracker got since the last call into the estimates, then reads
    /// the fleet references at `now`.
    fn sync(&self, estimates: &mut HashMap<String, Estimate>, now: f64) -> Fleet {
        let h = self.half_life_s;
        let mut buf = Vec::new();
        for id in self.tracker.model_ids() {
            buf.clear();
            let seen = estimates.get(&id).map_or(0, |e| e.seen);
            let Some(next) = self.tracker.samples_since(&id, seen, &mut buf) else {
                continue;
            };
            let est = estimates.entry(id).or_default();
            est.seen = next;
            buf.iter().for_each(|s| est.observe(s, h));
        }
        let (mut ok, mut all, mut peaks) = (0.0, 0.0, Vec::new());
        for est in estimates.values().filter(|e| !e.is_cold()) {
            let (o, b) = est.counts(now, h);
            ok += o;
            all += o + b;
            peaks.push(est.baseline_ms);
        }
        peaks.sort_unstable_by(f64::total_cmp);
        let latency_ref_ms = peaks
            .get(peaks.len().saturating_sub(1) / 2)
            .copied()
            .unwrap_or(f64::NAN);
        Fleet {
            success: (ok + 1.0) / (all + 2.0),
            latency_ref_ms,
            mean_load: self.mean_load(),
        }
    }

    /// `1 − utilization` of a model with fresh load data.
    fn load_of(&self, model: &str) -> Option<f64> {
        let load = self.load.as_ref()?.current_load(model)?;
        Some((1.0 - load.utilization()).clamp(0.0, 1.0))
    }

    fn mean_load(&self) -> f64 {
        let Some(tracker) = &self.load else {
            return 1.0;
        };
        let known: Vec<f64> = tracker
            .model_ids()
            .iter()
            .filter_map(|id| self.load_of(id))
            .collect();
        if known.is_empty() {
            1.0
        } else {
            known.iter().sum::<f64>() / known.len() as f64
        }
    }

    fn breakdown_in(
        &self,
        fleet: &Fleet,
        est: Option<&Estimate>,
        model: &str,
        capability: f64,
        now: f64,
    ) -> Breakdown {
        let h = self.half_life_s;
        let r = fleet.latency_ref_ms;
        let (success, latency_ms, cold) = match est.filter(|e| !e.is_cold()) {
            None => (fleet.success, r, true),
            Some(e) => {
                let (ok, bad) = e.counts(now, h);
                let success = (ok + PRIOR_REQUESTS * fleet.success) / (ok + bad + PRIOR_REQUESTS);
                let relaxed = r + (e.peak_ms - r) * decay(now - e.t_peak, h);
                (success, relaxed, false)
            }
        };
        let latency_factor = if latency_ms.is_nan() || latency_ms <= r {
            1.0
        } else {
            r / latency_ms
        };
        let performance = success * latency_factor;
        let load = self.load_of(model).unwrap_or(fleet.mean_load);
        let w = self.weights;
        let score = if capability == f64::NEG_INFINITY {
            f64::NEG_INFINITY
        } else {
            w.capability * capability + w.performance * performance + w.load * load
        };
        Breakdown {
            capability,
            performance,
            success,
            latency_factor,
            latency_ms,
            load,
            cold,
            score,
        }
    }

    fn check_capability(capability: f64, field: &str) -> Result<f64> {
        if capability.is_nan() || capability == f64::INFINITY {
            Err(Error::invalid(
                field,
                format!("must be a finite number (or -inf for infeasible), got {capability}"),
            ))
        } else {
            Ok(capability)
        }
    }

    /// Every component for one model. Unknown models are scored as cold, never refused.
    pub fn breakdown(&self, model: &str, capability: f64) -> Result<Breakdown> {
        let capability = Self::check_capability(capability, "capability")?;
        let now = self.clock.now();
        let mut estimates = self.estimates.lock().unwrap_or_else(|e| e.into_inner());
        let fleet = self.sync(&mut estimates, now);
        Ok(self.breakdown_in(&fleet, estimates.get(model), model, capability, now))
    }

    pub fn score(&self, model: &str, capability: f64) -> Result<f64> {
        Ok(self.breakdown(model, capability)?.score)
    }

    /// The performance component alone, in (0, 1].
    pub fn performance(&self, model: &str) -> f64 {
        self.breakdown_in_now(model).performance
    }

    fn breakdown_in_now(&self, model: &str) -> Breakdown {
        let now = self.clock.now();
        let mut estimates = self.estimates.lock().unwrap_or_else(|e| e.into_inner());
        let fleet = self.sync(&mut estimates, now);
        self.breakdown_in(&fleet, estimates.get(model), model, 0.0, now)
    }

    /// Scores of many models at once (one sync of the fleet); `-inf` capability stays `-inf`.
    pub fn scores(&self, models: &[&str], capabilities: &[f64]) -> Result<Vec<f64>> {
        if models.len() != capabilities.len() {
            return Err(Error::invalid(
                "capabilities",
                format!(
                    "has {} values for {} model ids",
                    capabilities.len(),
                    models.len()
                ),
            ));
        }
        for (i, &c) in capabilities.iter().enumerate() {
            Self::check_capability(c, &format!("capabilities[{i}]"))?;
        }
        let now = self.clock.now();
        let mut estimates = self.estimates.lock().unwrap_or_else(|e| e.into_inner());
        let fleet = self.sync(&mut estimates, now);
        Ok(models
            .iter()
            .zip(capabilities)
            .map(|(m, &c)| {
                self.breakdown_in(&fleet, estimates.get(*m), m, c, now)
                    .score
            })
            .collect())
    }
}

#[cfg(test)]
mod tests;
