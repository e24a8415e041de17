//! `vipnas bench temporal`: a temporal bundle against its own spatial net on
//! every frame (the peer), in one run.
//!
//! 1. Accuracy and cost on a labelled sequence played in order: OKS AP, PCK,
//!    mean milliseconds per frame (crop, inference, decode, tracking) and
//!    keypoint jitter — the mean frame-to-frame acceleration
//!    |p(t+1) − 2·p(t) + p(t−1)| in pixels over keypoints both runs give —
//!    for `--spatial-only` and for the bundle on its own cycle.
//! 2. Frames inside the budget at a frame rate the key net alone cannot hold
//!    (the budget is `budget_share` of its measured median), 1 inference
//!    thread, with the budget controller, idle and while `load` other
//!    processes spin on the cores — against the spatial net alone under the
//!    same conditions, and with the key net on a thread of its own (a second
//!    core); the temporal run's per-frame latency and key frames go to a plot.
//!
//! Timings come from this machine as it is: run it idle, and compare only
//! numbers of one run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use anyhow::{Context, Result};

use super::coco::{CocoDataset, CocoResult};
use super::eval::{coco_stats, pck, predict_with, RoiMode};
use super::plot::{plot_png, Series, BLUE, GREY, ORANGE};
use crate::runtime::budget::FrameBudget;
use crate::runtime::source::DirSource;
use crate::runtime::track::TrackConfig;
use crate::runtime::{run_frames, Estimator, PoseModel, RunOptions};

/// One way of running the bundle over the labelled sequence.
#[derive(Clone, Debug)]
pub struct AccuracyRow {
    pub name: &'static str,
    pub ap: f64,
    pub pck01: f64,
    pub pck02: f64,
    pub ms_per_frame: f64,
    pub jitter_px: f64,
    pub key_frames: usize,
    pub frames: usize,
}

/// Mean frame-to-frame acceleration (px) of results in frame order.
pub fn jitter(results: &[CocoResult]) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for w in results.windows(3) {
        for k in 0..crate::coco::KEYPOINTS {
            let at = |r: &CocoResult| (r.keypoints[3 * k], r.keypoints[3 * k + 1]);
            let ((x0, y0), (x1, y1), (x2, y2)) = (at(&w[0]), at(&w[1]), at(&w[2]));
            sum += (x2 - 2.0 * x1 + x0).hypot(y2 - 2.0 * y1 + y0);
            n += 1;
        }
    }
    sum / n.max(1) as f64
}

/// The bundle over `gt`'s images in order, spatial-only and temporal, `passes`
/// times each alternately (cost is the mean over passes; accuracy is the same
/// every pass).
///
/// A third row is the simplest propagation, for reference: the key net's
/// pose of each key frame (from the spatial-only run) held over the frames
/// of its cycle, at the key frames' cost alone.
pub fn accuracy(bundle: &Path, gt: &CocoDataset, images: &Path, passes: usize) -> Result<Vec<AccuracyRow>> {
    let mut rows: Vec<AccuracyRow> = Vec::new();
    let row = |name, results: &[CocoResult], ms_per_frame, key_frames, frames| -> Result<AccuracyRow> {
        let stats = coco_stats(gt, results)?;
        let pck = pck(gt, results, &[0.1, 0.2]);
        Ok(AccuracyRow {
            name,
            ap: stats[0],
            pck01: pck.overall[0],
            pck02: pck.overall[1],
            ms_per_frame,
            jitter_px: jitter(results),
            key_frames,
            frames,
        })
    };
    let mut spatial = Vec::new();
    for pass in 0..passes.max(1) {
        for (i, (name, spatial_only)) in [("spatial-only", true), ("temporal", false)].into_iter().enumerate() {
            let est = Estimator::load(bundle, 1, TrackConfig::default(), spatial_only, None)?;
            let p = predict_with(est, gt, images, RoiMode::Track)?;
            if pass == 0 {
                rows.push(row(name, &p.results, p.ms_per_estimate, p.key_frames, p.frames)?);
                if spatial_only {
                    spatial = p.results;
                }
            } else {
                rows[i].ms_per_frame += p.ms_per_estimate;
            }
        }
    }
    rows.iter_mut().for_each(|r| r.ms_per_frame /= passes.max(1) as f64);
    let manifest = crate::bundle::Manifest::load(bundle)?;
    let cycle = manifest.temporal.as_ref().map_or(1, |t| t.key_interval as usize + 1);
    let held: Vec<CocoResult> = spatial
        .iter()
        .enumerate()
        .map(|(t, r)| CocoResult { image_id: r.image_id, ..spatial[t / cycle * cycle].clone() })
        .collect();
    let keys = spatial.len().div_ceil(cycle);
    rows.push(row("held", &held, rows[0].ms_per_frame / cycle as f64, keys, spatial.len())?);
    Ok(rows)
}

/// Frames in budget for one condition.
#[derive(Clone, Debug)]
pub struct BudgetRow {
    pub load: usize,
    pub spatial_pct: f64,
    pub temporal_pct: f64,
    pub temporal_key_frames: u64,
    /// With the key net on its own thread ([`Estimator::start_key_worker`]).
    pub async_pct: f64,
    pub async_key_frames: u64,
    pub frames: u64,
    /// The temporal run's `(frame, latency ms)` and key frames.
    pub trace: Vec<(f64, f64)>,
    pub keys: Vec<(f64, f64)>,
}

/// `n` processes spinning on the CPU until dropped.
struct Load(Vec<Child>);

impl Load {
    fn start(n: usize) -> Result<Load> {
        let spin = || Command::new("sh").args(["-c", "while :; do :; done"]).spawn().context("starting a load process");
        Ok(Load((0..n).map(|_| spin()).collect::<Result<_>>()?))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `clip` `passes` times through `est` at `budget`; returns the share
/// in budget, key frames, frames and the per-frame (latency, key) trace.
fn run_passes(
    est: &mut Estimator,
    clip: &Path,
    budget: FrameBudget,
    passes: usize,
    out: &Path,
) -> Result<(f64, u64, u64, Vec<(f64, bool)>)> {
    let (mut in_budget, mut frames, mut keys) = (0.0, 0u64, 0u64);
    let mut trace = Vec::new();
    for _ in 0..passes {
        let mut src = DirSource::open(clip)?;
        let opts = RunOptions {
            max_frames: None,
            budget,
            out_dir: out.to_path_buf(),
            overlay: false,
            draw_min_score: 0.3,
            live: None,
            rotate_bytes: None,
        };
        let s = run_frames(&mut src, est, &opts)?;
        in_budget += s.in_budget_pct * s.frames as f64;
        frames += s.frames;
        keys += s.key_frames;
        let text = std::fs::read_to_string(out.join("poses.jsonl"))?;
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line)?;
            trace.push((v["latency_ms"].as_f64().unwrap_or(0.0), v["key"].as_bool().unwrap_or(false)));
        }
    }
    Ok((in_budget / frames.max(1) as f64, keys, frames, trace))
}

/// Frames in budget, idle and under each load in `loads`.
pub fn budget(
    bundle: &Path,
    clip: &Path,
    fps: f64,
    loads: &[usize],
    passes: usize,
    scratch: &Path,
) -> Result<Vec<BudgetRow>> {
    let budget = FrameBudget::from_fps(fps);
    let mut rows = Vec::new();
    for &load in loads {
        let _load = Load::start(load)?;
        let mut spatial = Estimator::load(bundle, 1, TrackConfig::default(), true, Some(budget.ms))?;
        let (spatial_pct, ..) = run_passes(&mut spatial, clip, budget, passes, &scratch.join("spatial"))?;
        let mut temporal = Estimator::load(bundle, 1, TrackConfig::default(), false, Some(budget.ms))?;
        let (temporal_pct, keys, frames, trace) =
            run_passes(&mut temporal, clip, budget, passes, &scratch.join("temporal"))?;
        let mut worker = Estimator::load(bundle, 1, TrackConfig::default(), false, Some(budget.ms))?;
        worker.start_key_worker(PoseModel::load(bundle, 1)?)?;
        let (async_pct, async_keys, ..) = run_passes(&mut worker, clip, budget, passes, &scratch.join("async"))?;
        rows.push(BudgetRow {
            load,
            spatial_pct,
            temporal_pct,
            temporal_key_frames: keys,
            async_pct,
            async_key_frames: async_keys,
            frames,
            trace: trace.iter().enumerate().map(|(i, &(ms, _))| (i as f64, ms)).collect(),
            keys: trace.iter().enumerate().filter(|(_, t)| t.1).map(|(i, &(ms, _))| (i as f64, ms)).collect(),
        });
    }
    Ok(rows)
}

/// The per-frame latency of the temporal runs, key frames marked, the budget drawn.
pub fn plot_trace(path: &Path, rows: &[BudgetRow], budget_ms: f64) -> Result<PathBuf> {
    let frames = rows.iter().map(|r| r.trace.len()).max().unwrap_or(0) as f64;
    let line = [(0.0, budget_ms), (frames, budget_ms)];
    let labels: Vec<String> = rows.iter().map(|r| format!("temporal, {} busy processes", r.load)).collect();
    let key_labels: Vec<String> = rows.iter().map(|r| format!("key frames ({} busy)", r.load)).collect();
    let mut series = vec![Series { label: "frame budget", color: GREY, points: &line, line: true }];
    for (i, r) in rows.iter().enumerate() {
        let color = if i == 0 { BLUE } else { ORANGE };
        series.push(Series { label: &labels[i], color, points: &r.trace, line: true });
        series.push(Series { label: &key_labels[i], color, points: &r.keys, line: false });
    }
    plot_png(path, "per-frame latency with the budget controller", "frame", "ms", &series, false)?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(points: &[(f64, f64)]) -> CocoResult {
        let keypoints = (0..17).flat_map(|k| [points[k % points.len()].0, points[k % points.len()].1, 1.0]).collect();
        CocoResult { image_id: 0, category_id: 1, keypoints, score: 1.0 }
    }

    #[test]
    fn jitter_is_the_mean_acceleration() {
        // Constant velocity: no acceleration.
        let steady: Vec<CocoResult> = (0..5).map(|t| result(&[(t as f64 * 3.0, 1.0)])).collect();
        assert_eq!(jitter(&steady), 0.0);
        // x alternates 0, 2, 0, 2: |2 − 2·0 + 2| or |0 − 4 + 0| = 4 px every frame.
        let shaky: Vec<CocoResult> = (0..6).map(|t| result(&[(if t % 2 == 0 { 0.0 } else { 2.0 }, 5.0)])).collect();
        assert_eq!(jitter(&shaky), 4.0);
    }
}
