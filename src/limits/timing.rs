//! Per-token timing of one model, learned from finished requests: latency ≈ TTFT + output
//! tokens × per-token time, fitted by exponentially weighted least squares over (completion
//! tokens, latency) pairs. `predictive` ranks a request by what it will take on each model.

/// Weight of the newest sample once warmed up (the first ones average equally).
pub const TIMING_ALPHA: f64 = 0.05;

/// Exponentially weighted moments of (output tokens, latency ms).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TokenTiming {
    n: u64,
    mean_x: f64,
    mean_y: f64,
    var_x: f64,
    cov_xy: f64,
}

impl TokenTiming {
    /// Adds one finished request: `output` tokens in `latency_ms`.
    pub fn observe(&mut self, output: u64, latency_ms: f64) {
        if !latency_ms.is_finite() || latency_ms < 0.0 {
            return;
        }
        self.n += 1;
        let w = (1.0 / self.n as f64).max(TIMING_ALPHA);
        let (x, y) = (output as f64, latency_ms);
        let (dx, dy) = (x - self.mean_x, y - self.mean_y);
        self.mean_x += w * dx;
        self.mean_y += w * dy;
        // West's weighted update: exact for equal weights, exponentially forgetting after.
        self.var_x = (1.0 - w) * (self.var_x + w * dx * dx);
        self.cov_xy = (1.0 - w) * (self.cov_xy + w * dx * dy);
    }

    /// (TTFT ms, ms per output token) once two different output lengths were seen.
    pub fn fit(&self) -> Option<(f64, f64)> {
        if self.n < 2 || self.var_x <= 1e-9 * (1.0 + self.mean_x * self.mean_x) {
            return None;
        }
        let per_token = (self.cov_xy / self.var_x).max(0.0);
        let ttft = (self.mean_y - per_token * self.mean_x).max(0.0);
        Some((ttft, per_token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_ttft_and_per_token_time_like_least_squares() {
        let mut t = TokenTiming::default();
        assert_eq!(t.fit(), None);
        let samples: Vec<(u64, f64)> = (0..15).map(|k| (10 + 37 * k, 0.0)).collect();
        for &(x, _) in &samples {
            t.observe(x, 250.0 + 12.5 * x as f64);
        }
        let (a, b) = t.fit().unwrap();
        assert!(
            (a - 250.0).abs() < 1e-6 && (b - 12.5).abs() < 1e-9,
            "{a} {b}"
        );
        // Against numpy-style ordinary least squares on noisy equal-weight data.
        let mut t = TokenTiming::default();
        let pts = [
            (5u64, 120.0),
            (50, 700.0),
            (20, 300.0),
            (80, 1010.0),
            (33, 480.0),
        ];
        for &(x, y) in &pts {
            t.observe(x, y);
        }
        let n = pts.len() as f64;
        let mx = pts.iter().map(|p| p.0 as f64).sum::<f64>() / n;
        let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
        let sxy: f64 = pts.iter().map(|p| (p.0 as f64 - mx) * (p.1 - my)).sum();
        let sxx: f64 = pts.iter().map(|p| (p.0 as f64 - mx).powi(2)).sum();
        let (a, b) = t.fit().unwrap();
        assert!((b - sxy / sxx).abs() < 1e-9 && (a - (my - b * mx)).abs() < 1e-6);
        // One output length only: no slope to learn.
        let mut t = TokenTiming::default();
        t.observe(7, 100.0);
        t.observe(7, 140.0);
        assert_eq!(t.fit(), None);
    }
}
