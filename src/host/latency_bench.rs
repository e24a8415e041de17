//! Accuracy of the latency model: random subnets predicted from a board's
//! table and measured whole on this machine, before (plain block sums) and
//! after the table's correction; plus a scatter plot.

use std::path::Path;

use anyhow::Result;

use crate::arch::{Fusion, FusionOp, InputSize, Sample, SearchSpace, SpaceName, Subnet, TemporalNet};
use crate::board::profiler::measure;
use crate::board::LatencyTable;
use crate::runtime::budget::quantile;

/// One subnet's prediction and measurement.
#[derive(Clone, Copy, Debug)]
pub struct LatencyPoint {
    pub seed: u64,
    pub sum_ms: f64,
    pub predicted_ms: f64,
    pub measured_ms: f64,
    /// Measured again after every subnet was measured once: how far two
    /// measurements of the same net lie apart is the floor no table can beat.
    pub remeasured_ms: f64,
}

/// |error| statistics, as fractions of the measurement.
#[derive(Clone, Copy, Debug)]
pub struct ErrorStats {
    pub median: f64,
    pub p90: f64,
    pub max: f64,
}

pub fn error_stats(pairs: impl Iterator<Item = (f64, f64)>) -> ErrorStats {
    let mut e: Vec<f64> = pairs.map(|(p, m)| (p - m).abs() / m).collect();
    e.sort_by(f64::total_cmp);
    ErrorStats { median: quantile(&e, 0.5), p90: quantile(&e, 0.9), max: quantile(&e, 1.0) }
}

/// Predicts and measures `n` random subnets of `space` (seeds 0..n, apart from
/// the profiler's calibration seeds), then measures them all again; with
/// `temporal`, each as a temporal net fusing after stage 1 + seed mod stages
/// with op seed mod 3. `progress` counts measurements, 2·n in all.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    table: &LatencyTable,
    space: SpaceName,
    input: InputSize,
    n: usize,
    threads: usize,
    runs: usize,
    temporal: bool,
    mut progress: impl FnMut(usize),
) -> Result<Vec<LatencyPoint>> {
    let s = SearchSpace::get(space);
    let net = |seed: u64| {
        let subnet = Subnet::sample(&s, Sample::Random(seed));
        if temporal {
            let fusion =
                Fusion { stage: 1 + (seed % s.stages.len() as u64) as u32, op: FusionOp::ALL[seed as usize % 3] };
            TemporalNet { subnet, fusion }.network(input)
        } else {
            subnet.network(input)
        }
    };
    let mut points = Vec::with_capacity(n);
    for seed in 0..n as u64 {
        let net = net(seed)?;
        let p = table.predict(&net, space)?;
        let m = measure(&net, threads, 3, runs)?.p50_ms;
        progress(seed as usize + 1);
        points.push(LatencyPoint { seed, sum_ms: p.sum_ms, predicted_ms: p.ms, measured_ms: m, remeasured_ms: m });
    }
    for p in &mut points {
        p.remeasured_ms = measure(&net(p.seed)?, threads, 3, runs)?.p50_ms;
        progress(n + p.seed as usize + 1);
    }
    Ok(points)
}

/// Writes the predicted-vs-measured scatter of several spaces.
pub fn scatter(path: &Path, board: &str, results: &[(SpaceName, Vec<LatencyPoint>)]) -> Result<()> {
    use super::plot::{plot_png, Series, BLUE, GREY, ORANGE};
    let pts: Vec<Vec<(f64, f64)>> =
        results.iter().map(|(_, v)| v.iter().map(|p| (p.predicted_ms, p.measured_ms)).collect()).collect();
    let labels: Vec<String> = results.iter().map(|(s, v)| format!("{s} ({} subnets)", v.len())).collect();
    let colors = [ORANGE, BLUE, GREY];
    let series: Vec<Series> = pts
        .iter()
        .zip(&labels)
        .enumerate()
        .map(|(i, (p, l))| Series { label: l, color: colors[i % colors.len()], points: p, line: false })
        .collect();
    plot_png(
        path,
        &format!("latency on {board}: predicted (table + correction) vs measured"),
        "predicted ms",
        "measured ms",
        &series,
        true,
    )
}
