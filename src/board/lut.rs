//! Latency look-up tables (`boards/<name>.lut.json`): the measured latency of
//! every block signature the profiled spaces can produce on one board, and the
//! prediction of a whole network's latency from them (OFA / FBNet style), with
//! a per-space fitted correction for what per-block sums miss.
//!
//! Signatures carry every shape, so one table can hold several spaces and
//! input sizes; `profiled` records which were enumerated.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::arch::{InputSize, Network, SpaceName};
use crate::runtime::budget::quantile;

/// The tract version this build runs (pinned in Cargo.toml; a test checks Cargo.lock).
pub const TRACT_VERSION: &str = "0.23.9";
pub use crate::runtime::grouped_conv::KERNEL_VERSION;
/// Bumped when signatures or entries change meaning: 2 times every run with
/// the core's L2 evicted first (`profiler::CacheEvictor`); 1 timed it warm.
pub const LUT_FORMAT: u32 = 2;

/// One block signature's measured latency.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LutEntry {
    pub p50_ms: f64,
    pub p90_ms: f64,
    /// Timed runs behind the percentiles.
    pub count: usize,
}

impl LutEntry {
    /// The p50/p90 of run times (ms).
    pub fn of_times(mut times: Vec<f64>) -> LutEntry {
        times.sort_by(f64::total_cmp);
        LutEntry { p50_ms: quantile(&times, 0.5), p90_ms: quantile(&times, 0.9), count: times.len() }
    }
}

/// `measured ≈ scale · Σ blocks + offset_ms`, fitted on whole subnets.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Correction {
    pub scale: f64,
    pub offset_ms: f64,
    /// Subnets measured whole for the fit.
    pub fitted_on: usize,
}

/// A latency table and where it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyTable {
    pub format: u32,
    pub board: String,
    /// From /proc/cpuinfo on the machine that measured it.
    pub cpu: String,
    pub tract_version: String,
    /// The fast convolution the engine ran (`grouped_conv::KERNEL_VERSION`);
    /// absent in tables measured on tract's own convolutions alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernels: Option<String>,
    pub threads: usize,
    /// UTC, RFC 3339.
    pub date: String,
    /// The (space, input) pairs whose blocks were enumerated.
    pub profiled: Vec<Profiled>,
    /// False for estimates; `method` then says how they were made.
    pub measured: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Warm-up and timed runs per entry.
    pub warmup: usize,
    pub runs: usize,
    pub entries: BTreeMap<String, LutEntry>,
    /// Per space.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub corrections: BTreeMap<SpaceName, Correction>,
}

/// One enumerated (space, input size); `quick` tables cover only a few subnets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profiled {
    pub space: SpaceName,
    pub input: InputSize,
    pub quick: bool,
}

/// A prediction and how it was made.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// Σ of the blocks' p50.
    pub sum_ms: f64,
    /// With the table's correction (= `sum_ms` without one).
    pub ms: f64,
    pub blocks: usize,
}

impl LatencyTable {
    pub fn load(path: &Path) -> Result<LatencyTable> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read latency table {}", path.display()))?;
        Self::parse(&text).with_context(|| path.display().to_string())
    }

    /// A table's JSON, its format and values checked.
    pub fn parse(text: &str) -> Result<LatencyTable> {
        let t: LatencyTable = serde_json::from_str(text).context("corrupt latency table")?;
        if t.format != LUT_FORMAT {
            bail!("table format {} (this vipnas reads {LUT_FORMAT}): profile again", t.format);
        }
        t.validate().map_err(anyhow::Error::msg)?;
        Ok(t)
    }

    /// Every number a prediction uses must be one a measurement can produce:
    /// a table with a zero, negative, infinite or absurd latency, or a
    /// correction that flips or explodes the sum, would predict nonsense.
    pub fn validate(&self) -> std::result::Result<(), String> {
        /// No block or network on a board takes longer than this.
        const MAX_MS: f64 = 1e6;
        let ms_ok = |v: f64| v.is_finite() && v > 0.0 && v <= MAX_MS;
        if self.threads == 0 || self.runs == 0 {
            return Err(format!("threads = {}, runs = {}: both must be at least 1", self.threads, self.runs));
        }
        for (sig, e) in &self.entries {
            if !ms_ok(e.p50_ms) || !ms_ok(e.p90_ms) {
                return Err(format!(
                    "entry {sig}: p50_ms = {}, p90_ms = {}: latencies must be positive, finite and under {MAX_MS} ms",
                    e.p50_ms, e.p90_ms
                ));
            }
            if e.p90_ms < e.p50_ms {
                return Err(format!("entry {sig}: p90_ms = {} is below p50_ms = {}", e.p90_ms, e.p50_ms));
            }
            if e.count == 0 {
                return Err(format!("entry {sig}: count = 0: no timed runs behind it"));
            }
        }
        for (space, c) in &self.corrections {
            if !(c.scale.is_finite() && c.scale > 0.0 && c.scale <= 100.0)
                || !(c.offset_ms.is_finite() && c.offset_ms.abs() <= MAX_MS)
                || c.fitted_on == 0
            {
                return Err(format!(
                    "corrections.{space}: scale = {}, offset_ms = {}, fitted_on = {}: the scale must lie in (0, 100], the offset be finite, and at least one subnet be behind it",
                    c.scale, c.offset_ms, c.fitted_on
                ));
            }
        }
        Ok(())
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        crate::bundle::write_atomic(path, &serde_json::to_vec_pretty(self)?)
    }

    /// Refuses tables that do not describe this run: another board, tract
    /// version, convolution kernel or thread count would silently mispredict.
    pub fn check_compatible(&self, path: &Path, board: &str, threads: usize) -> Result<()> {
        let p = path.display();
        if self.board != board {
            bail!("{p}: measured for board {}, not {board}", self.board);
        }
        if self.tract_version != TRACT_VERSION {
            bail!(
                "{p}: measured with tract {} but this vipnas runs tract {TRACT_VERSION}: profile again",
                self.tract_version
            );
        }
        if self.kernels.as_deref() != Some(KERNEL_VERSION) {
            bail!(
                "{p}: measured with {} but this vipnas runs {KERNEL_VERSION}: profile again",
                self.kernels.as_deref().map_or("tract's own convolutions".into(), |k| format!("kernels {k}"))
            );
        }
        if self.threads != threads {
            bail!("{p}: measured at {} thread(s), the board runs {threads}: profile again", self.threads);
        }
        Ok(())
    }

    /// Predicts the latency of a network of `space`; every block must be in
    /// the table (the error lists what is missing — never a silent zero).
    pub fn predict(&self, net: &Network, space: SpaceName) -> Result<Prediction> {
        let blocks = net.blocks();
        let mut sum = 0.0;
        let mut missing = Vec::new();
        for b in &blocks {
            match self.entries.get(&b.signature) {
                Some(e) => sum += e.p50_ms,
                None => missing.push(format!("{} [{}]", b.name, b.signature)),
            }
        }
        if !missing.is_empty() {
            let more = if missing.len() > 3 { format!("; … and {} more", missing.len() - 3) } else { String::new() };
            bail!(
                "the latency table lacks {} of {} blocks (run `vipnas profile` for this space and input size): {}{more}",
                missing.len(),
                blocks.len(),
                missing[..missing.len().min(3)].join("; ")
            );
        }
        let ms = self.corrections.get(&space).map_or(sum, |c| c.scale * sum + c.offset_ms);
        Ok(Prediction { sum_ms: sum, ms, blocks: blocks.len() })
    }
}

/// The correction from (Σblocks, measured) pairs: a least-squares line when
/// there are enough points for it to be trustworthy (≥ 8, positive slope),
/// otherwise a pure ratio through the origin.
pub fn fit_correction(points: &[(f64, f64)]) -> Correction {
    let ratio = || {
        let sxy: f64 = points.iter().map(|(x, y)| x * y).sum();
        let sxx: f64 = points.iter().map(|(x, _)| x * x).sum();
        Correction { scale: if sxx > 0.0 { sxy / sxx } else { 1.0 }, offset_ms: 0.0, fitted_on: points.len() }
    };
    if points.len() < 8 {
        return ratio();
    }
    match fit_linear(points) {
        (a, b) if (0.2..5.0).contains(&a) => Correction { scale: a, offset_ms: b, fitted_on: points.len() },
        _ => ratio(),
    }
}

/// Least-squares `y ≈ a·x + b`.
pub fn fit_linear(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    let (sx, sy) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    if sxx <= 0.0 {
        return (1.0, my - mx);
    }
    let a = sxy / sxx;
    (a, my - a * mx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{Sample, SearchSpace, Subnet};

    fn table_for(net: &Network) -> LatencyTable {
        let entries =
            net.blocks().into_iter().map(|b| (b.signature, LutEntry { p50_ms: 1.0, p90_ms: 1.5, count: 5 })).collect();
        LatencyTable {
            format: LUT_FORMAT,
            board: "test".into(),
            cpu: "cpu".into(),
            tract_version: TRACT_VERSION.into(),
            kernels: Some(KERNEL_VERSION.into()),
            threads: 1,
            date: "2026-11-25T00:00:00Z".into(),
            profiled: vec![Profiled { space: SpaceName::Mbv3, input: InputSize::DEFAULT, quick: true }],
            measured: true,
            method: None,
            warmup: 1,
            runs: 5,
            entries,
            corrections: [(SpaceName::Mbv3, Correction { scale: 1.1, offset_ms: 0.5, fitted_on: 3 })].into(),
        }
    }

    #[test]
    fn entries_take_the_percentiles_of_their_runs() {
        let e = LutEntry::of_times(vec![5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!((e.p50_ms, e.count), (3.0, 5));
        assert!((4.0..=5.0).contains(&e.p90_ms), "{e:?}");
    }

    #[test]
    fn prediction_sums_blocks_and_applies_the_correction() {
        let space = SearchSpace::get(SpaceName::Mbv3);
        let net = Subnet::sample(&space, Sample::Max).network(InputSize::DEFAULT).unwrap();
        let t = table_for(&net);
        let p = t.predict(&net, SpaceName::Mbv3).unwrap();
        assert_eq!(p.blocks, net.blocks().len());
        assert!(t.entries.len() < p.blocks, "repeated blocks share an entry");
        assert_eq!(p.sum_ms, p.blocks as f64);
        assert!((p.ms - (1.1 * p.sum_ms + 0.5)).abs() < 1e-9);
        assert_eq!(t.predict(&net, SpaceName::Resnet50).unwrap().ms, p.sum_ms, "no correction for that space");
        let small = Subnet::sample(&space, Sample::Min).network(InputSize::DEFAULT).unwrap();
        let e = t.predict(&small, SpaceName::Mbv3).unwrap_err().to_string();
        assert!(e.starts_with("the latency table lacks") && e.contains("stage1.block0") && e.contains("more"), "{e}");
    }

    #[test]
    fn incompatible_tables_are_refused() {
        let net = Subnet::sample(&SearchSpace::get(SpaceName::Mbv3), Sample::Min).network(InputSize::DEFAULT).unwrap();
        let mut t = table_for(&net);
        let p = Path::new("boards/x.lut.json");
        t.check_compatible(p, "test", 1).unwrap();
        assert!(t.check_compatible(p, "test", 4).unwrap_err().to_string().contains("1 thread(s)"));
        assert_eq!(
            t.check_compatible(p, "rpi4", 1).unwrap_err().to_string(),
            "boards/x.lut.json: measured for board test, not rpi4"
        );
        t.kernels = None;
        let e = t.check_compatible(p, "test", 1).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("boards/x.lut.json: measured with tract's own convolutions but this vipnas runs {KERNEL_VERSION}: profile again")
        );
        t.kernels = Some("vipnas-grouped-conv/0".into());
        assert!(t.check_compatible(p, "test", 1).unwrap_err().to_string().contains("kernels vipnas-grouped-conv/0"));
        t.tract_version = "0.21.0".into();
        assert!(t.check_compatible(p, "test", 1).unwrap_err().to_string().contains("tract 0.21.0"));
    }

    #[test]
    fn tables_that_would_predict_nonsense_are_refused_at_load() {
        let net = Subnet::sample(&SearchSpace::get(SpaceName::Mbv3), Sample::Min).network(InputSize::DEFAULT).unwrap();
        let good = table_for(&net);
        good.validate().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let path = dir.join("t.lut.json");
        let sig = good.entries.keys().next().unwrap().clone();
        let entry = |f: fn(&mut LutEntry)| {
            let mut t = good.clone();
            f(t.entries.get_mut(&sig).unwrap());
            t
        };
        let correction = |f: fn(&mut Correction)| {
            let mut t = good.clone();
            f(t.corrections.get_mut(&SpaceName::Mbv3).unwrap());
            t
        };
        let cases = [
            (entry(|e| e.p50_ms = -1.0), "p50_ms = -1"),
            (entry(|e| e.p50_ms = 0.0), "p50_ms = 0"),
            (entry(|e| e.p50_ms = 1e308), "under 1000000 ms"),
            (entry(|e| e.p90_ms = 0.5), "p90_ms = 0.5 is below p50_ms = 1"),
            (entry(|e| e.count = 0), "count = 0"),
            (correction(|c| c.scale = -1.1), "scale = -1.1"),
            (correction(|c| c.offset_ms = 1e7), "offset_ms = 10000000,"),
        ];
        for (t, want) in cases {
            // Through the file, as a user's edited table arrives.
            std::fs::write(&path, serde_json::to_string(&t).unwrap()).unwrap();
            let e = format!("{:#}", LatencyTable::load(&path).unwrap_err());
            assert!(e.starts_with(&path.display().to_string()) && e.contains(want), "{e}\nwanted: {want}");
        }
        std::fs::write(&path, serde_json::to_string(&good).unwrap()).unwrap();
        LatencyTable::load(&path).unwrap();
    }

    #[test]
    fn tract_version_constant_matches_the_lockfile() {
        let lock = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock")).unwrap();
        let at = lock.find("name = \"tract-onnx\"").unwrap();
        assert!(lock[at..].lines().nth(1).unwrap().contains(&format!("\"{TRACT_VERSION}\"")));
    }

    #[test]
    fn corrections_fit_lines_or_ratios() {
        let (a, b) = fit_linear(&[(1.0, 3.0), (2.0, 5.0), (3.0, 7.0)]);
        assert!((a - 2.0).abs() < 1e-12 && (b - 1.0).abs() < 1e-12);
        // Two noisy close points would give a wild line: a ratio instead.
        let c = fit_correction(&[(10.0, 12.0), (10.5, 11.0)]);
        assert_eq!(c.offset_ms, 0.0);
        assert!((c.scale - (120.0 + 115.5) / (100.0 + 110.25)).abs() < 1e-12);
        let line: Vec<(f64, f64)> = (1..=10).map(|i| (i as f64, 1.5 * i as f64 + 2.0)).collect();
        let c = fit_correction(&line);
        assert!((c.scale - 1.5).abs() < 1e-9 && (c.offset_ms - 2.0).abs() < 1e-9 && c.fitted_on == 10);
    }
}
