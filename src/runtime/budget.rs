//! The frame budget and latency statistics: a preallocated histogram gives
//! p50/p99 without storing (or allocating for) every frame. Every quantile in
//! vipnas — of frames here, of timed runs in the profiler and benchmarks —
//! is the nearest-rank one ([`nearest_rank`]).

/// Milliseconds a frame may take.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrameBudget {
    pub ms: f64,
}

impl FrameBudget {
    pub fn from_fps(fps: f64) -> FrameBudget {
        FrameBudget { ms: 1000.0 / fps }
    }

    /// The frame rates a budget is made from: 0.01 to 1000 fps, a budget of
    /// 1 ms to 100 s (the error says the value, the caller names the flag or
    /// field).
    pub fn check_fps(fps: f64) -> anyhow::Result<()> {
        anyhow::ensure!((0.01..=1000.0).contains(&fps), "{fps:?}: a frame rate must lie in [0.01, 1000]");
        Ok(())
    }
}

/// The 1-based rank of the `q`-quantile (0–1) of `n` sorted values, by the
/// nearest-rank definition: the smallest value with at least `q·n` values at
/// or below it (for an even count the median is the lower middle).
pub fn nearest_rank(q: f64, n: usize) -> usize {
    ((q * n as f64).ceil() as usize).clamp(1, n.max(1))
}

/// The `q`-quantile of sorted values ([`nearest_rank`]); NaN for none.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    debug_assert!(sorted.is_sorted_by(|a, b| a <= b));
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[nearest_rank(q, sorted.len()) - 1]
}

/// Latency histogram: 0.05 ms bins below 100 ms, then bins 0.1 % wide up to
/// 10⁶ ms; the few values beyond share the last bin, whose quantiles are the
/// maximum seen. Quantiles are exact to a bin, never capped.
pub struct LatencyStats {
    bins: Vec<u32>,
    count: u64,
    in_budget: u64,
    sum_ms: f64,
    max_ms: f64,
    budget: FrameBudget,
}

const BIN_MS: f64 = 0.05;
/// Where the linear bins end and the geometric ones start.
const LINEAR_MS: f64 = 100.0;
const LINEAR_BINS: usize = 2000;
/// Ratio between consecutive geometric bin edges.
const GROWTH: f64 = 1.001;
/// ln(10⁶ / 100) / ln(1.001) geometric bins, and the overflow bin.
const BINS: usize = LINEAR_BINS + 9215 + 1;

fn bin_of(ms: f64) -> usize {
    if ms < LINEAR_MS {
        ((ms.max(0.0) / BIN_MS) as usize).min(LINEAR_BINS - 1)
    } else {
        (LINEAR_BINS + ((ms / LINEAR_MS).ln() / GROWTH.ln()) as usize).min(BINS - 1)
    }
}

/// The upper edge of bin `i` (the overflow bin has none).
fn upper_edge(i: usize) -> f64 {
    if i < LINEAR_BINS {
        (i + 1) as f64 * BIN_MS
    } else if i < BINS - 1 {
        LINEAR_MS * GROWTH.powi((i - LINEAR_BINS + 1) as i32)
    } else {
        f64::INFINITY
    }
}

impl LatencyStats {
    pub fn new(budget: FrameBudget) -> LatencyStats {
        LatencyStats { bins: vec![0; BINS], count: 0, in_budget: 0, sum_ms: 0.0, max_ms: 0.0, budget }
    }

    pub fn record(&mut self, ms: f64) {
        self.bins[bin_of(ms)] += 1;
        self.count += 1;
        self.sum_ms += ms;
        self.max_ms = self.max_ms.max(ms);
        if ms <= self.budget.ms {
            self.in_budget += 1;
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The `q`-quantile (0–1), at the upper edge of its bin.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let target = nearest_rank(q, self.count as usize) as u64;
        let mut seen = 0u64;
        for (i, &c) in self.bins.iter().enumerate() {
            seen += c as u64;
            if seen >= target {
                return upper_edge(i).min(self.max_ms);
            }
        }
        self.max_ms
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_ms / self.count as f64
        }
    }

    /// Percentage of frames within the budget.
    pub fn in_budget_pct(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            100.0 * self.in_budget as f64 / self.count as f64
        }
    }

    pub fn budget(&self) -> FrameBudget {
        self.budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_budget_share() {
        let mut s = LatencyStats::new(FrameBudget::from_fps(50.0));
        for i in 1..=100 {
            s.record(i as f64 * 0.5); // 0.5 .. 50 ms
        }
        assert!((s.quantile(0.5) - 25.0).abs() <= BIN_MS + 1e-9, "{}", s.quantile(0.5));
        assert!((s.quantile(0.99) - 49.5).abs() <= BIN_MS + 1e-9, "{}", s.quantile(0.99));
        assert_eq!(s.in_budget_pct(), 40.0); // <= 20 ms
        assert!((s.mean() - 25.25).abs() < 1e-9);
    }

    #[test]
    fn the_histogram_and_sorted_values_agree_on_every_quantile() {
        let values: Vec<f64> = (1..=37).map(|i| i as f64 * 1.5).collect();
        let mut s = LatencyStats::new(FrameBudget::from_fps(30.0));
        values.iter().for_each(|&v| s.record(v));
        for q in [0.0, 0.1, 0.5, 0.9, 0.99, 1.0] {
            assert!((s.quantile(q) - quantile(&values, q)).abs() <= BIN_MS + 1e-9, "q = {q}");
        }
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.0, "lower middle");
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn slow_frames_are_measured_not_capped() {
        let mut s = LatencyStats::new(FrameBudget::from_fps(30.0));
        for i in 0..50 {
            s.record(30.0 + i as f64 * 0.01);
            s.record(if i < 25 { 24_000.0 } else { 61_000.0 });
        }
        s.record(5e7); // beyond the last edge: the maximum
        let rel = |got: f64, want: f64| (got - want).abs() / want;
        assert!(rel(s.quantile(0.25), 30.25) < 0.01, "{}", s.quantile(0.25));
        assert!(rel(s.quantile(0.6), 24_000.0) <= 1e-3, "{}", s.quantile(0.6));
        assert!(rel(s.quantile(0.95), 61_000.0) <= 1e-3, "{}", s.quantile(0.95));
        assert_eq!(s.quantile(1.0), 5e7);
        for ms in [0.0, 0.049, 99.99, 100.0, 150.0, 999_999.0] {
            let b = bin_of(ms);
            assert!(ms < upper_edge(b) && (b == 0 || ms >= upper_edge(b - 1) * 0.999_999), "{ms} in bin {b}");
        }
    }
}
