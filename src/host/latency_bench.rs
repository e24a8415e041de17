//! Accuracy of the latency model: random subnets predicted from a board's
//! table and measured whole on this machine, before (plain block sums) and
//! after the table's correction; plus a scatter plot.

use std::path::Path;

use anyhow::Result;

use crate::arch::{Fusion, FusionOp, InputSize, Sample, SearchSpace, SpaceName, Subnet, TemporalNet};
use crate::board::profiler::measure_in_rounds;
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
/// with op seed mod 3. Each measurement is `runs` runs in `rounds` rounds over
/// the subnets ([`measure_in_rounds`]); `visited` counts (subnet, round)
/// visits, 2·n·rounds in all.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    table: &LatencyTable,
    space: SpaceName,
    input: InputSize,
    n: usize,
    threads: usize,
    runs: usize,
    rounds: usize,
    temporal: bool,
    mut visited: impl FnMut(),
) -> Result<Vec<LatencyPoint>> {
    let s = SearchSpace::get(space);
    let nets = (0..n as u64)
        .map(|seed| {
            let subnet = Subnet::sample(&s, Sample::Random(seed));
            if temporal {
                let fusion =
                    Fusion { stage: 1 + (seed % s.stages.len() as u64) as u32, op: FusionOp::ALL[seed as usize % 3] };
                TemporalNet { subnet, fusion }.network(input)
            } else {
                subnet.network(input)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let predicted = nets.iter().map(|net| table.predict(net, space)).collect::<Result<Vec<_>>>()?;
    let measured = measure_in_rounds(&nets, threads, runs, rounds, 1, &mut visited)?;
    let again = measure_in_rounds(&nets, threads, runs, rounds, 2, &mut visited)?;
    Ok((0..n)
        .map(|i| LatencyPoint {
            seed: i as u64,
            sum_ms: predicted[i].sum_ms,
            predicted_ms: predicted[i].ms,
            measured_ms: measured[i],
            remeasured_ms: again[i],
        })
        .collect())
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
