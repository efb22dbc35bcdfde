//! Per-token timing of one model, learned from finished requests: latency ≈ TTFT + output
//! tokens × per-token time, fitted by exponentially weighted least squares over (completion
//! tokens, latency) pairs. Where the caller measured the time to first token (a stream), that
//! measurement is used instead: TTFT directly, and the per-token time as the generation time
//! after the first token over the output tokens. `predictive` ranks a request by what it will
//! take on each model.

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
    /// Measured times to first token: how many, and their weighted mean.
    ttft_n: u64,
    ttft_ms: f64,
    /// Requests with a measured first token and a known output: weighted means of the output
    /// tokens and of the time generating them (latency − TTFT).
    decode_n: u64,
    decode_tokens: f64,
    decode_ms: f64,
}

/// The weight of the `n`-th sample: equal at first, then exponentially forgetting.
fn weight(n: u64) -> f64 {
    (1.0 / n as f64).max(TIMING_ALPHA)
}

impl TokenTiming {
    /// Adds one finished request: `output` tokens in `latency_ms`.
    pub fn observe(&mut self, output: u64, latency_ms: f64) {
        if !latency_ms.is_finite() || latency_ms < 0.0 {
            return;
        }
        self.n += 1;
        let w = weight(self.n);
        let (x, y) = (output as f64, latency_ms);
        let (dx, dy) = (x - self.mean_x, y - self.mean_y);
        self.mean_x += w * dx;
        self.mean_y += w * dy;
        // West's weighted update: exact for equal weights, exponentially forgetting after.
        self.var_x = (1.0 - w) * (self.var_x + w * dx * dx);
        self.cov_xy = (1.0 - w) * (self.cov_xy + w * dx * dy);
    }

    /// Adds one measured time to first token (from the request's start).
    pub fn observe_ttft(&mut self, ttft_ms: f64) {
        if !ttft_ms.is_finite() || ttft_ms < 0.0 {
            return;
        }
        self.ttft_n += 1;
        self.ttft_ms += weight(self.ttft_n) * (ttft_ms - self.ttft_ms);
    }

    /// Adds one request whose first token came at `ttft_ms` and which generated `output`
    /// tokens in `latency_ms` in all.
    pub fn observe_decode(&mut self, output: u64, latency_ms: f64, ttft_ms: f64) {
        let decode = latency_ms - ttft_ms;
        if output == 0 || !decode.is_finite() || decode < 0.0 || !ttft_ms.is_finite() {
            return;
        }
        self.decode_n += 1;
        let w = weight(self.decode_n);
        self.decode_tokens += w * (output as f64 - self.decode_tokens);
        self.decode_ms += w * (decode - self.decode_ms);
    }

    /// (TTFT ms, ms per output token); None while either is unknown. See `estimates`.
    pub fn fit(&self) -> Option<(f64, f64)> {
        let (ttft, per_token) = self.estimates();
        ttft.zip(per_token)
    }

    /// TTFT ms and ms per output token, each once known: measured where streams measured
    /// them, else fitted once two different output lengths were seen.
    pub fn estimates(&self) -> (Option<f64>, Option<f64>) {
        let fitted =
            (self.n >= 2 && self.var_x > 1e-9 * (1.0 + self.mean_x * self.mean_x)).then(|| {
                let per_token = (self.cov_xy / self.var_x).max(0.0);
                ((self.mean_y - per_token * self.mean_x).max(0.0), per_token)
            });
        let ttft = if self.ttft_n > 0 {
            Some(self.ttft_ms)
        } else {
            fitted.map(|f| f.0)
        };
        let per_token = if self.decode_n > 0 {
            Some(self.decode_ms / self.decode_tokens)
        } else {
            fitted.map(|f| f.1)
        };
        (ttft, per_token)
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

    /// Measured first tokens win over the fit, and their per-token time is the ratio of the
    /// weighted means (exact on noiseless data, whatever the output lengths, even all equal).
    #[test]
    fn measured_first_tokens_are_used_directly() {
        let mut t = TokenTiming::default();
        // Latency alone fits TTFT 100 + 2 ms/token...
        for x in [10u64, 50, 90] {
            t.observe(x, 100.0 + 2.0 * x as f64);
        }
        let (a, b) = t.fit().unwrap();
        assert!((a - 100.0).abs() < 1e-9 && (b - 2.0).abs() < 1e-12);
        // ...but streams measured a first token at 300 ms, then 5 ms per token.
        t.observe_ttft(300.0);
        let (a, b) = t.fit().unwrap();
        assert_eq!(a, 300.0);
        assert!((b - 2.0).abs() < 1e-12, "per-token time still fitted: {b}");
        for _ in 0..3 {
            t.observe_decode(40, 300.0 + 5.0 * 40.0, 300.0);
        }
        assert_eq!(t.fit(), Some((300.0, 5.0)));
        // A TTFT measured with one output length only still gives both.
        let mut t = TokenTiming::default();
        t.observe_ttft(80.0);
        assert_eq!(t.fit(), None, "no per-token time yet");
        assert_eq!(t.estimates(), (Some(80.0), None));
        t.observe_decode(25, 80.0 + 25.0 * 4.0, 80.0);
        assert_eq!(t.fit(), Some((80.0, 4.0)));
        // Hostile values change nothing.
        let before = t;
        t.observe_ttft(f64::NAN);
        t.observe_ttft(-1.0);
        t.observe_decode(10, 50.0, 80.0); // ends before its first token
        t.observe_decode(0, 500.0, 80.0);
        t.observe_decode(10, f64::INFINITY, 80.0);
        assert_eq!(t, before);
    }

    /// After warm-up the measured means forget exponentially like the latency EWMA, against
    /// an independent weighted sum.
    #[test]
    fn measured_means_forget_with_the_timing_weight() {
        let mut t = TokenTiming::default();
        let ttfts: Vec<f64> = (0..200).map(|k| 50.0 + ((k * 37) % 101) as f64).collect();
        for &v in &ttfts {
            t.observe_ttft(v);
            t.observe_decode(20, v + 60.0, v);
        }
        // Oracle: weights 1/n up to 1/ALPHA samples, then ALPHA each, newest first.
        let mut mean = 0.0;
        for (k, &v) in ttfts.iter().enumerate() {
            let w = (1.0 / (k + 1) as f64).max(TIMING_ALPHA);
            mean = (1.0 - w) * mean + w * v;
        }
        let (a, b) = t.fit().unwrap();
        assert!((a - mean).abs() < 1e-9, "{a} vs {mean}");
        assert!((b - 3.0).abs() < 1e-12);
    }
}
