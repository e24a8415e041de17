//! The latency/fitness trade-off of a search: the Pareto front of the
//! evaluated candidates, and the plot of it against its baselines.

use std::path::Path;

use anyhow::Result;
use embedded_graphics::pixelcolor::Rgb888;

use super::Candidate;
use crate::host::plot::{plot_png, Series, BLUE, GREY, ORANGE};

/// The candidates no other beats on both latency and fitness, by latency.
pub fn front<'a>(candidates: impl IntoIterator<Item = &'a Candidate>) -> Vec<&'a Candidate> {
    let mut v: Vec<&Candidate> = candidates.into_iter().collect();
    v.sort_by(|a, b| a.ms.total_cmp(&b.ms).then(b.value().total_cmp(&a.value())));
    let mut best = f64::NEG_INFINITY;
    v.into_iter()
        .filter(|c| {
            let keep = c.value() > best;
            best = best.max(c.value());
            keep
        })
        .collect()
}

/// Points besides the searched front: baselines and reference models.
pub struct Reference {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

const GREEN: Rgb888 = Rgb888::new(30, 150, 60);
const RED: Rgb888 = Rgb888::new(200, 40, 40);
const PURPLE: Rgb888 = Rgb888::new(130, 60, 170);

/// `pareto.png`: every candidate (grey), the searched front (blue line) and
/// the references, fitness over predicted latency.
pub fn plot(path: &Path, title: &str, y_label: &str, all: &[Candidate], refs: &[Reference]) -> Result<()> {
    let cloud: Vec<(f64, f64)> = all.iter().map(|c| (c.ms, c.value())).collect();
    let line: Vec<(f64, f64)> = front(all).iter().map(|c| (c.ms, c.value())).collect();
    let mut series = vec![
        Series { label: "evaluated", color: GREY, points: &cloud, line: false },
        Series { label: "searched front", color: BLUE, points: &line, line: true },
    ];
    let colors = [ORANGE, GREEN, RED, PURPLE];
    for (r, color) in refs.iter().zip(colors.iter().cycle()) {
        series.push(Series { label: &r.label, color: *color, points: &r.points, line: false });
    }
    plot_png(path, title, "predicted latency (ms)", y_label, &series, false)
}
