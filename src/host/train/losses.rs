//! The loss log of a run: `losses.tsv` (one row per step: learning rate,
//! each subnet's loss, images/s) and `loss.png`, both rewritten at every
//! checkpoint; a resumed run keeps the rows before its checkpoint. A subnet
//! not trained in a step (the max-alone phase) has NaN there.

use std::path::Path;

use anyhow::{ensure, Context, Result};

/// One row of `losses.tsv`.
#[derive(Clone, Debug, PartialEq)]
pub struct LossRow {
    pub step: u64,
    pub lr: f64,
    pub losses: Vec<f64>,
    pub images_per_s: f64,
}

pub(super) fn write_losses(path: &Path, rows: &[LossRow]) -> Result<()> {
    let k = rows.first().map_or(0, |r| r.losses.len());
    let mut s = String::from("step\tlr\tloss_max\tloss_min");
    for j in 2..k {
        s += &format!("\tloss_random{}", j - 1);
    }
    s += "\timages_per_s\n";
    for r in rows {
        s += &format!("{}\t{:e}", r.step, r.lr);
        for l in &r.losses {
            s += &format!("\t{l:e}");
        }
        s += &format!("\t{:.3}\n", r.images_per_s);
    }
    crate::bundle::write_atomic(path, s.as_bytes())
}

/// The rows of `losses.tsv` before `step` (a resumed run rewrites the rest).
pub fn read_losses(path: &Path, step: u64) -> Result<Vec<LossRow>> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(Vec::new()) };
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<f64> = line
            .split('\t')
            .map(|v| v.parse::<f64>())
            .collect::<Result<_, _>>()
            .with_context(|| format!("{} line {}: not numbers", path.display(), i + 1))?;
        ensure!(f.len() >= 5, "{} line {}: {} columns", path.display(), i + 1, f.len());
        let row =
            LossRow { step: f[0] as u64, lr: f[1], losses: f[2..f.len() - 1].to_vec(), images_per_s: f[f.len() - 1] };
        if row.step < step {
            rows.push(row);
        }
    }
    Ok(rows)
}

/// The mean of the finite values (NaN when there are none).
pub fn finite_mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.filter(|v| v.is_finite()).fold((0.0, 0), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

pub(super) fn plot_losses(path: &Path, rows: &[LossRow]) -> Result<()> {
    use crate::host::plot::{plot_png, Series, BLUE, GREY, ORANGE};
    // Mean over windows of ~1 % of the run, so the curve reads through batch noise.
    let window = (rows.len() / 100).max(1);
    let smooth = |j: usize| -> Vec<(f64, f64)> {
        rows.chunks(window)
            .map(|c| (c[c.len() - 1].step as f64 + 1.0, finite_mean(c.iter().map(|r| r.losses[j])).log10()))
            .filter(|(_, l)| l.is_finite())
            .collect()
    };
    let (max, min) = (smooth(0), smooth(1));
    let mut series = vec![
        Series { label: "max subnet (labels)", color: BLUE, points: &max, line: true },
        Series { label: "min subnet (distilled)", color: ORANGE, points: &min, line: true },
    ];
    let random = if rows.first().is_some_and(|r| r.losses.len() > 2) { smooth(2) } else { Vec::new() };
    if !random.is_empty() {
        series.push(Series { label: "random subnet 1 (distilled)", color: GREY, points: &random, line: true });
    }
    plot_png(path, "Supernet training loss (sandwich rule)", "step", "log10 heatmap MSE", &series, false)
}
