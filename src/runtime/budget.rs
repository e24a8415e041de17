//! The frame budget and latency statistics: a preallocated histogram gives
//! p50/p99 without storing (or allocating for) every frame.

/// Milliseconds a frame may take.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrameBudget {
    pub ms: f64,
}

impl FrameBudget {
    pub fn from_fps(fps: f64) -> FrameBudget {
        FrameBudget { ms: 1000.0 / fps }
    }
}

/// Latency histogram with 0.05 ms bins up to 10 s (larger values clamp).
pub struct LatencyStats {
    bins: Vec<u32>,
    count: u64,
    in_budget: u64,
    sum_ms: f64,
    max_ms: f64,
    budget: FrameBudget,
}

const BIN_MS: f64 = 0.05;
const BINS: usize = 200_000;

impl LatencyStats {
    pub fn new(budget: FrameBudget) -> LatencyStats {
        LatencyStats { bins: vec![0; BINS], count: 0, in_budget: 0, sum_ms: 0.0, max_ms: 0.0, budget }
    }

    pub fn record(&mut self, ms: f64) {
        let bin = ((ms / BIN_MS) as usize).min(BINS - 1);
        self.bins[bin] += 1;
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
        let target = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for (i, &c) in self.bins.iter().enumerate() {
            seen += c as u64;
            if seen >= target {
                return ((i + 1) as f64 * BIN_MS).min(self.max_ms);
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
}
