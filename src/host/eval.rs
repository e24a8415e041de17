//! `vipnas eval`: a model run over a COCO-format set through the runtime path
//! (crop tracking on, smoothing off — or GT boxes as ROIs), scored with the
//! 10 COCO keypoint metrics (hotcoco, which matches pycocotools; golden tests
//! hold it to 1e-6) and PCK.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::coco::{CocoAnnotation, CocoDataset, CocoResult};
use crate::coco::{KEYPOINTS, KEYPOINT_NAMES};
use crate::runtime::frame::load_image;
use crate::runtime::preprocess::Roi;
use crate::runtime::track::TrackConfig;
use crate::runtime::{Estimator, Frame, Pose, PoseModel};

/// Where the crops come from (`eval --roi`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RoiMode {
    /// Frames in video order, each crop from the previous pose (as `vipnas run`).
    Track,
    /// One crop per ground-truth box (×1.25), COCO's top-down protocol with GT boxes.
    #[value(name = "gt")]
    GtBox,
}

/// Results and timing of a model over a set.
pub struct Predictions {
    pub results: Vec<CocoResult>,
    pub frames: usize,
    /// Frames the key (spatial) net ran on (all of them but a temporal bundle's propagated ones).
    pub key_frames: usize,
    /// Mean milliseconds per estimate (preprocess + inference + decode).
    pub ms_per_estimate: f64,
}

/// A result from a pose, in COCO pixel convention; score = mean keypoint score.
pub fn to_result(image_id: u64, pose: &Pose) -> CocoResult {
    let keypoints = pose.keypoints.iter().flat_map(|k| [k[0] as f64 - 0.5, k[1] as f64 - 0.5, 1.0]).collect();
    CocoResult { image_id, category_id: 1, keypoints, score: pose.mean_score() as f64 }
}

/// Runs a spatial model over the images of `gt` (found under `images`).
pub fn predict(model: PoseModel, gt: &CocoDataset, images: &Path, roi: RoiMode) -> Result<Predictions> {
    predict_with(Estimator::new(model, TrackConfig::default()), gt, images, roi)
}

/// Runs `est` — a spatial model, or a temporal bundle on its own cycle —
/// over the images of `gt` in order (a video set: a temporal bundle's
/// propagated frames follow their key frame).
pub fn predict_with(mut est: Estimator, gt: &CocoDataset, images: &Path, roi: RoiMode) -> Result<Predictions> {
    if roi == RoiMode::GtBox && !est.temporal.is_empty() {
        bail!("--roi gt runs the spatial net alone on every box; a temporal bundle evaluates with --roi track (or --spatial-only)");
    }
    let mut key_frames = 0;
    let (mut frame, mut pose) = (Frame::default(), Pose::default());
    let by_image = gt.by_image();
    let mut results = Vec::new();
    let (mut spent, mut estimates) = (0.0, 0usize);
    let ordered = gt.images_in_order();
    for im in &ordered {
        let path = images.join(&im.file_name);
        load_image(&path, &mut frame).with_context(|| format!("image {} ({}): cannot load", im.id, path.display()))?;
        let t = Instant::now();
        match roi {
            RoiMode::Track => {
                let step = est.step(&frame, 1.0 / 30.0, &mut pose)?;
                key_frames += step.key as usize;
                results.push(to_result(im.id, &pose));
                estimates += 1;
            }
            RoiMode::GtBox => {
                for a in by_image.get(&im.id).into_iter().flatten().filter(|a| a.iscrowd == 0) {
                    let [x, y, w, h] = a.bbox.map(|v| v as f32);
                    let roi = Roi::from_box(x + 0.5, y + 0.5, w, h, est.model.aspect(), 1.25);
                    est.model.estimate(&frame, &roi, &mut pose)?;
                    key_frames += 1;
                    results.push(to_result(im.id, &pose));
                    estimates += 1;
                }
            }
        }
        spent += t.elapsed().as_secs_f64() * 1e3;
    }
    Ok(Predictions { results, frames: ordered.len(), key_frames, ms_per_estimate: spent / estimates.max(1) as f64 })
}

/// The 10 COCO keypoint metrics: AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl.
pub fn coco_stats(gt: &CocoDataset, results: &[CocoResult]) -> Result<[f64; 10]> {
    if results.is_empty() {
        bail!("no results to evaluate");
    }
    static CALL: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "vipnas-eval-{}-{}",
        std::process::id(),
        CALL.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    let (gt_path, dt_path) = (dir.join("gt.json"), dir.join("dt.json"));
    std::fs::write(&gt_path, serde_json::to_vec(gt)?)?;
    std::fs::write(&dt_path, serde_json::to_vec(results)?)?;
    let stats = (|| -> Result<[f64; 10]> {
        let coco_gt = hotcoco::COCO::new(&gt_path).context("ground truth")?;
        let coco_dt = coco_gt.load_res(&dt_path).context("results")?;
        let mut ev = hotcoco::COCOeval::new(coco_gt, coco_dt, hotcoco::IouType::Keypoints);
        ev.evaluate().context("evaluation")?;
        ev.accumulate();
        ev.summarize_lines();
        let s = ev.stats().context("no statistics")?;
        s.get(..10).and_then(|s| s.try_into().ok()).context("fewer than 10 keypoint statistics")
    })();
    let _ = std::fs::remove_dir_all(&dir);
    stats
}

/// The stats in pycocotools' `summarize()` layout.
pub fn format_stats(stats: &[f64; 10]) -> Vec<String> {
    let rows = [
        (true, "0.50:0.95", "all"),
        (true, "0.50", "all"),
        (true, "0.75", "all"),
        (true, "0.50:0.95", "medium"),
        (true, "0.50:0.95", "large"),
        (false, "0.50:0.95", "all"),
        (false, "0.50", "all"),
        (false, "0.75", "all"),
        (false, "0.50:0.95", "medium"),
        (false, "0.50:0.95", "large"),
    ];
    rows.iter()
        .zip(stats)
        .map(|(&(ap, iou, area), v)| {
            let (title, kind) = if ap { ("Average Precision", "(AP)") } else { ("Average Recall", "(AR)") };
            format!(" {title:<18} {kind} @[ IoU={iou:<9} | area={area:>6} | maxDets={:>3} ] = {v:0.3}", 20)
        })
        .collect()
}

/// PCK at several thresholds, normalised by the longer side of the GT box;
/// each GT person is paired with the result on its image closest to it.
#[derive(Clone, Debug)]
pub struct Pck {
    pub thresholds: Vec<f64>,
    pub overall: Vec<f64>,
    /// Per keypoint, per threshold (NaN where a keypoint is never visible).
    pub per_keypoint: Vec<Vec<f64>>,
    pub keypoints: usize,
}

fn distances(a: &CocoAnnotation, r: &CocoResult) -> Vec<Option<f64>> {
    let size = a.bbox[2].max(a.bbox[3]).max(1.0);
    (0..KEYPOINTS)
        .map(|k| {
            (a.keypoints[3 * k + 2] > 0.0).then(|| {
                let (dx, dy) =
                    (r.keypoints[3 * k] - a.keypoints[3 * k], r.keypoints[3 * k + 1] - a.keypoints[3 * k + 1]);
                (dx * dx + dy * dy).sqrt() / size
            })
        })
        .collect()
}

pub fn pck(gt: &CocoDataset, results: &[CocoResult], thresholds: &[f64]) -> Pck {
    let mut hits = vec![vec![0usize; thresholds.len()]; KEYPOINTS];
    let mut totals = [0usize; KEYPOINTS];
    for a in gt.annotations.iter().filter(|a| a.iscrowd == 0) {
        let on_image = results.iter().filter(|r| r.image_id == a.image_id);
        let mean = |d: &[Option<f64>]| {
            let v: Vec<f64> = d.iter().flatten().copied().collect();
            if v.is_empty() {
                f64::MAX
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        let best = on_image.map(|r| distances(a, r)).min_by(|x, y| mean(x).total_cmp(&mean(y)));
        for k in 0..KEYPOINTS {
            if a.keypoints[3 * k + 2] <= 0.0 {
                continue;
            }
            totals[k] += 1;
            if let Some(Some(d)) = best.as_ref().map(|b| b[k]) {
                for (t, &thr) in thresholds.iter().enumerate() {
                    hits[k][t] += (d < thr) as usize;
                }
            }
        }
    }
    let all: usize = totals.iter().sum();
    let overall =
        (0..thresholds.len()).map(|t| hits.iter().map(|h| h[t]).sum::<usize>() as f64 / all.max(1) as f64).collect();
    let per_keypoint = (0..KEYPOINTS)
        .map(|k| thresholds.iter().enumerate().map(|(t, _)| hits[k][t] as f64 / totals[k] as f64).collect())
        .collect();
    Pck { thresholds: thresholds.to_vec(), overall, per_keypoint, keypoints: all }
}

impl Pck {
    pub fn lines(&self) -> Vec<String> {
        let mut v = vec![format!(
            "PCK (normalised by the longer GT box side, {} visible keypoints): {}",
            self.keypoints,
            self.thresholds
                .iter()
                .zip(&self.overall)
                .map(|(t, p)| format!("@{t}={p:.4}"))
                .collect::<Vec<_>>()
                .join(" ")
        )];
        for (k, name) in KEYPOINT_NAMES.iter().enumerate() {
            let cells: Vec<String> = self.per_keypoint[k].iter().map(|p| format!("{p:.3}")).collect();
            v.push(format!("  {name:<15} {}", cells.join(" ")));
        }
        v
    }
}

/// Writes results as a COCO results file.
pub fn write_results(path: &Path, results: &[CocoResult]) -> Result<()> {
    crate::bundle::write_atomic(path, &serde_json::to_vec(results)?)
}
