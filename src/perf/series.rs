//! One tracked key (a model or an agent): time bins of histograms and counters, since-start
//! totals, an EWMA and a ring of recent samples. Everything is allocated up front so that
//! `record` never allocates.

use hdrhistogram::Histogram;

use crate::load::LATENCY_EWMA_ALPHA;

/// Histogram unit: microseconds, so sub-millisecond latencies keep 1 µs resolution.
const LOWEST_US: u64 = 1;
/// One hour; longer latencies are clamped into the top bucket (exact `max_ms` is kept apart).
const HIGHEST_US: u64 = 3_600_000_000;
/// The largest latency bound (ms) a cumulative histogram can answer for: the top of the range.
pub const HIGHEST_BOUND_MS: f64 = HIGHEST_US as f64 / 1000.0;
/// Two significant digits: buckets are at most 1/128 of their value wide (< 1 % error).
const SIGFIG: u8 = 2;
/// Agents' compact histograms: one significant digit, buckets at most 1/16 of their value wide
/// (< 6.25 % error) in an eighth of the memory, since a service may see millions of agent ids.
pub const COMPACT_SIGFIG: u8 = 1;
/// Time bins of a sliding window: memory grows with it, expiry granularity shrinks.
pub const WINDOW_BINS: usize = 4;

/// One observation, as kept in the ring of recent samples (16 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    pub t: f64,
    pub latency_ms: f32,
    pub success: bool,
}

/// Totals over the live part of a series (or of several), read under their locks.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub successes: u64,
    pub failures: u64,
    pub sum_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    /// (p50, p95, p99) in ms; meaningless when `count == 0`.
    pub percentiles_ms: (f64, f64, f64),
    pub ewma_ms: f64,
    pub last_t: f64,
}

/// Since-start counts of one key under given latency bounds: what a Prometheus histogram
/// exports (`_bucket{le=...}`, `_sum`, `_count`). Never windowed, so every count only grows.
/// Serializes as the Python `LatencyHistogram.to_dict()` (`cumulative` as `counts`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LatencyHistogram {
    /// The upper bounds asked for, in ms, ascending.
    pub bounds_ms: Vec<f64>,
    /// Samples at or under each bound, cumulative (so non-decreasing), to the histogram's
    /// resolution: a sample less than 1/128 above a bound may count under it.
    #[serde(rename = "counts")]
    pub cumulative: Vec<u64>,
    pub count: u64,
    pub successes: u64,
    pub failures: u64,
    pub sum_ms: f64,
}

/// The samples of one span of time: one time bin of a sliding window, or everything since the
/// start (a series without a window, and every series' since-start totals).
#[derive(Debug, Clone)]
pub(super) struct TimeBin {
    epoch: i64,
    hist: Histogram<u32>,
    successes: u64,
    failures: u64,
    sum_ms: f64,
    min_ms: f64,
    max_ms: f64,
    /// Samples above the histogram's range, clamped into its top bucket: a cumulative
    /// histogram counts them above every bound.
    above_range: u64,
}

impl TimeBin {
    pub(super) fn new(epoch: i64) -> Self {
        Self::with_sigfig(epoch, SIGFIG)
    }

    fn with_sigfig(epoch: i64, sigfig: u8) -> Self {
        TimeBin {
            epoch,
            // Bounds are constants that hdrhistogram accepts, checked by a unit test.
            hist: Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, sigfig)
                .expect("constant histogram bounds are valid"),
            successes: 0,
            failures: 0,
            sum_ms: 0.0,
            min_ms: f64::INFINITY,
            max_ms: f64::NEG_INFINITY,
            above_range: 0,
        }
    }

    /// Reuses the bin for a new epoch without allocating.
    fn reset(&mut self, epoch: i64) {
        self.epoch = epoch;
        self.hist.reset();
        self.successes = 0;
        self.failures = 0;
        self.sum_ms = 0.0;
        self.min_ms = f64::INFINITY;
        self.max_ms = f64::NEG_INFINITY;
        self.above_range = 0;
    }

    fn count(&self) -> u64 {
        self.successes + self.failures
    }

    fn record(&mut self, latency_ms: f64, success: bool) {
        let units = to_units(latency_ms);
        if units == HIGHEST_US && latency_ms > HIGHEST_BOUND_MS {
            self.above_range += 1;
        }
        self.hist.saturating_record(units);
        if success {
            self.successes += 1;
        } else {
            self.failures += 1;
        }
        self.sum_ms += latency_ms;
        self.min_ms = self.min_ms.min(latency_ms);
        self.max_ms = self.max_ms.max(latency_ms);
    }

    pub(super) fn add(&mut self, other: &TimeBin) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.hist.add(&other.hist);
        self.successes += other.successes;
        self.failures += other.failures;
        self.sum_ms += other.sum_ms;
        self.min_ms = self.min_ms.min(other.min_ms);
        self.max_ms = self.max_ms.max(other.max_ms);
        self.above_range += other.above_range;
    }

    fn bytes(&self) -> usize {
        std::mem::size_of::<TimeBin>() + self.hist.distinct_values() * std::mem::size_of::<u32>()
    }

    /// The bin's totals with percentiles; `ewma_ms` and `last_t` come from the caller.
    pub(super) fn summary(&self, ewma_ms: f64, last_t: f64) -> Summary {
        if self.count() == 0 {
            return Summary {
                count: 0,
                successes: 0,
                failures: 0,
                sum_ms: 0.0,
                min_ms: f64::NAN,
                max_ms: f64::NAN,
                percentiles_ms: (f64::NAN, f64::NAN, f64::NAN),
                ewma_ms,
                last_t,
            };
        }
        // HdrHistogram reports the top of the bucket holding the sample at rank ceil(q·n);
        // clamping to the exact extremes only moves it closer to the true value.
        let q = |quantile: f64| {
            let v = self.hist.value_at_quantile(quantile) as f64 / 1000.0;
            v.clamp(self.min_ms, self.max_ms)
        };
        Summary {
            count: self.count(),
            successes: self.successes,
            failures: self.failures,
            sum_ms: self.sum_ms,
            min_ms: self.min_ms,
            max_ms: self.max_ms,
            percentiles_ms: (q(0.50), q(0.95), q(0.99)),
            ewma_ms,
            last_t,
        }
    }

    /// Cumulative counts at or under each bound (ms, ascending, at most `HIGHEST_BOUND_MS`).
    /// A histogram bucket counts under the first bound its lowest value does not exceed, so a
    /// sample exactly on a bound always counts under it.
    fn histogram(&self, bounds_ms: &[f64]) -> LatencyHistogram {
        let bounds_us: Vec<u64> = bounds_ms.iter().map(|&b| to_units(b)).collect();
        let mut per_bound = vec![0u64; bounds_us.len()];
        if !bounds_us.is_empty() {
            for v in self.hist.iter_recorded() {
                let lowest = self.hist.lowest_equivalent(v.value_iterated_to());
                let i = bounds_us.partition_point(|&b| b < lowest);
                if let Some(n) = per_bound.get_mut(i) {
                    *n += v.count_at_value() as u64;
                }
            }
            // Samples above the range sit in the top bucket; they are under no bound.
            let top = self.hist.lowest_equivalent(HIGHEST_US);
            if let Some(n) = per_bound.get_mut(bounds_us.partition_point(|&b| b < top)) {
                *n -= self.above_range.min(*n);
            }
        }
        let mut running = 0;
        let cumulative = per_bound
            .into_iter()
            .map(|n| {
                running += n;
                running
            })
            .collect();
        LatencyHistogram {
            bounds_ms: bounds_ms.to_vec(),
            cumulative,
            count: self.count(),
            successes: self.successes,
            failures: self.failures,
            sum_ms: self.sum_ms,
        }
    }
}

/// Latency in ms to histogram units, clamped to the trackable range.
fn to_units(latency_ms: f64) -> u64 {
    ((latency_ms * 1000.0).round() as u64).min(HIGHEST_US)
}

/// The live statistics of one key.
#[derive(Debug, Clone)]
pub struct Series {
    bins: Box<[TimeBin]>,
    /// Since-start totals of a windowed series; without a window the single bin is them.
    totals: Option<Box<TimeBin>>,
    /// Seconds per bin; infinite without a window (a single bin, epoch 0 forever).
    bin_s: f64,
    ewma_ms: f64,
    ewma_weight: u64,
    last_t: f64,
    ring: Box<[Sample]>,
    /// Samples ever pushed into the ring; the ring holds `seq - len .. seq`.
    seq: u64,
}

impl Series {
    pub fn new(window_s: Option<f64>, recent: usize) -> Self {
        Self::with_precision(window_s, recent, SIGFIG)
    }

    /// An agent's series: compact histograms and no ring of recent samples (nothing reads
    /// agents' samples one by one).
    pub fn compact(window_s: Option<f64>) -> Self {
        Self::with_precision(window_s, 0, COMPACT_SIGFIG)
    }

    fn with_precision(window_s: Option<f64>, recent: usize, sigfig: u8) -> Self {
        let (n, bin_s) = match window_s {
            Some(w) => (WINDOW_BINS, w / WINDOW_BINS as f64),
            None => (1, f64::INFINITY),
        };
        Series {
            bins: (0..n)
                .map(|_| TimeBin::with_sigfig(i64::MIN, sigfig))
                .collect(),
            totals: window_s.map(|_| Box::new(TimeBin::with_sigfig(0, sigfig))),
            bin_s,
            ewma_ms: f64::NAN,
            ewma_weight: 0,
            last_t: f64::NAN,
            ring: vec![Sample::default(); recent].into_boxed_slice(),
            seq: 0,
        }
    }

    fn epoch(&self, now: f64) -> i64 {
        if self.bin_s.is_finite() {
            (now / self.bin_s).floor() as i64
        } else {
            0
        }
    }

    fn bin_for(&mut self, epoch: i64) -> &mut TimeBin {
        let n = self.bins.len() as i64;
        let bin = &mut self.bins[epoch.rem_euclid(n) as usize];
        if bin.epoch != epoch {
            bin.reset(epoch);
        }
        bin
    }

    /// Records one validated observation (finite, >= 0). Never allocates.
    pub fn record(&mut self, latency_ms: f64, success: bool, now: f64) {
        self.bin_for(self.epoch(now)).record(latency_ms, success);
        if let Some(totals) = &mut self.totals {
            totals.record(latency_ms, success);
        }
        self.ewma_ms = if self.ewma_ms.is_nan() {
            latency_ms
        } else {
            self.ewma_ms + LATENCY_EWMA_ALPHA * (latency_ms - self.ewma_ms)
        };
        self.ewma_weight = self.ewma_weight.saturating_add(1);
        self.last_t = if self.last_t.is_nan() {
            now
        } else {
            self.last_t.max(now)
        };
        self.push(Sample {
            t: now,
            latency_ms: latency_ms as f32,
            success,
        });
    }

    fn push(&mut self, sample: Sample) {
        if !self.ring.is_empty() {
            let i = (self.seq % self.ring.len() as u64) as usize;
            self.ring[i] = sample;
        }
        self.seq += 1;
    }

    /// The bins still inside the window at `now` that hold samples.
    fn live(&self, now: f64) -> impl Iterator<Item = &TimeBin> {
        let current = self.epoch(now);
        let n = self.bins.len() as i64;
        self.bins.iter().filter(move |b| {
            b.epoch <= current && b.epoch > current.saturating_sub(n) && b.count() > 0
        })
    }

    /// Totals over the bins still inside the window at `now`.
    pub fn summary(&self, now: f64) -> Summary {
        let mut live = self.live(now);
        let Some(first) = live.next() else {
            return TimeBin::new(0).summary(self.ewma_ms, self.last_t);
        };
        match live.next() {
            None => first.summary(self.ewma_ms, self.last_t),
            Some(second) => {
                let mut acc = first.clone();
                acc.add(second);
                live.for_each(|b| acc.add(b));
                acc.summary(self.ewma_ms, self.last_t)
            }
        }
    }

    /// Adds this series' live bins at `now` to `acc` (a fleet-wide total).
    pub(super) fn add_live_to(&self, now: f64, acc: &mut TimeBin) {
        self.live(now).for_each(|b| acc.add(b));
    }

    /// The EWMA and how many samples it has seen (for weighting EWMAs across series).
    pub(super) fn ewma(&self) -> (f64, u64) {
        (self.ewma_ms, self.ewma_weight)
    }

    /// Clock time of the newest sample; NaN before the first.
    pub(super) fn last_t(&self) -> f64 {
        self.last_t
    }

    /// Since-start cumulative counts under `bounds_ms` (validated by the caller: ascending,
    /// finite, within `0..=HIGHEST_BOUND_MS`).
    pub fn histogram(&self, bounds_ms: &[f64]) -> LatencyHistogram {
        self.totals
            .as_deref()
            .unwrap_or(&self.bins[0])
            .histogram(bounds_ms)
    }

    /// Recent samples, oldest first.
    pub fn recent(&self) -> impl Iterator<Item = &Sample> {
        let len = self.ring.len() as u64;
        let start = self.seq.saturating_sub(len);
        (start..self.seq).map(move |i| &self.ring[(i % len) as usize])
    }

    /// Appends the ring's samples numbered `>= since` to `out`; returns the next number. Samples
    /// that were already overwritten are skipped.
    pub fn samples_since(&self, since: u64, out: &mut Vec<Sample>) -> u64 {
        let len = self.ring.len() as u64;
        if len > 0 {
            let start = since.max(self.seq.saturating_sub(len));
            out.extend((start..self.seq).map(|i| self.ring[(i % len) as usize]));
        }
        self.seq
    }

    /// Adds `other`'s data: bins of the same epoch add up, older ones than this series keeps
    /// are dropped; since-start totals add up; `other`'s recent samples are appended; EWMAs
    /// combine weighted by count.
    pub fn merge(&mut self, other: &Series) {
        for theirs in other.bins.iter().filter(|b| b.count() > 0) {
            let n = self.bins.len() as i64;
            let ours = &mut self.bins[theirs.epoch.rem_euclid(n) as usize];
            if ours.epoch < theirs.epoch {
                ours.reset(theirs.epoch);
            }
            if ours.epoch == theirs.epoch {
                ours.add(theirs);
            }
        }
        if let (Some(ours), Some(theirs)) = (&mut self.totals, &other.totals) {
            ours.add(theirs);
        }
        if !other.ewma_ms.is_nan() {
            if self.ewma_ms.is_nan() {
                self.ewma_ms = other.ewma_ms;
            } else {
                let (a, b) = (self.ewma_weight as f64, other.ewma_weight as f64);
                self.ewma_ms = (a * self.ewma_ms + b * other.ewma_ms) / (a + b);
            }
            self.ewma_weight = self.ewma_weight.saturating_add(other.ewma_weight);
        }
        if !other.last_t.is_nan() {
            self.last_t = if self.last_t.is_nan() {
                other.last_t
            } else {
                self.last_t.max(other.last_t)
            };
        }
        let theirs: Vec<Sample> = other.recent().copied().collect();
        theirs.into_iter().for_each(|s| self.push(s));
    }

    /// Heap and inline bytes of this series (what `memory_bytes` adds up).
    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Series>()
            + self.bins.iter().map(TimeBin::bytes).sum::<usize>()
            + self.totals.as_deref().map_or(0, TimeBin::bytes)
            + std::mem::size_of_val(&*self.ring)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_default_series_fits_in_32_kib() {
        let s = Series::new(None, 1024);
        assert!(s.bytes() <= 32 * 1024, "{} bytes", s.bytes());
    }

    #[test]
    fn percentiles_are_within_one_percent_above() {
        let mut s = Series::new(None, 0);
        let values: Vec<f64> = (1..=10_000).map(|i| 0.37 * i as f64).collect();
        for &v in &values {
            s.record(v, true, 0.0);
        }
        let sum = s.summary(0.0);
        for (q, got) in [(0.5, sum.percentiles_ms.0), (0.99, sum.percentiles_ms.2)] {
            let exact = values[((q * values.len() as f64).ceil() as usize) - 1];
            assert!(
                got >= exact - 5e-4 && got <= exact * 1.01,
                "{q}: {got} vs {exact}"
            );
        }
        assert_eq!(sum.count, 10_000);
        assert_eq!(sum.max_ms, 3700.0);
    }

    #[test]
    fn sub_millisecond_and_huge_latencies_are_kept() {
        let mut s = Series::new(None, 4);
        s.record(0.05, true, 0.0);
        s.record(1e9, false, 0.0);
        let sum = s.summary(0.0);
        assert!((sum.percentiles_ms.0 - 0.05).abs() < 1e-9);
        assert_eq!(sum.max_ms, 1e9);
        assert!((sum.percentiles_ms.2 / 3_600_000.0 - 1.0).abs() < 0.01);
        assert_eq!((sum.successes, sum.failures), (1, 1));
    }

    #[test]
    fn window_expires_old_bins() {
        let mut s = Series::new(Some(40.0), 0);
        s.record(100.0, true, 0.0);
        s.record(200.0, false, 25.0);
        assert_eq!(s.summary(29.0).count, 2);
        // The bin of t=0 covers [0, 10) and leaves the window at t=40.
        assert_eq!(s.summary(40.0).count, 1);
        assert_eq!(s.summary(70.0).count, 0);
        assert!(s.summary(70.0).percentiles_ms.0.is_nan());
    }

    #[test]
    fn ring_keeps_the_newest_and_numbers_them() {
        let mut s = Series::new(None, 3);
        for i in 0..5 {
            s.record(i as f64, true, i as f64);
        }
        let recent: Vec<f32> = s.recent().map(|x| x.latency_ms).collect();
        assert_eq!(recent, vec![2.0, 3.0, 4.0]);
        let mut out = Vec::new();
        assert_eq!(s.samples_since(4, &mut out), 5);
        assert_eq!(out.len(), 1);
        out.clear();
        s.samples_since(0, &mut out);
        assert_eq!(out.len(), 3);
    }
}
