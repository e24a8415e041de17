//! `vipnas eval` (host): a model over a COCO-format set, the 10 COCO keypoint
//! metrics in pycocotools' layout, PCK, and a COCO results file.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use vipnas::host::coco::CocoDataset;
use vipnas::host::eval::{coco_stats, format_stats, pck, predict_with, write_results, RoiMode};
use vipnas::runtime::decode::Refine;
use vipnas::runtime::track::TrackConfig;
use vipnas::runtime::Estimator;

/// Evaluate a model on COCO-format keypoint annotations through the runtime
/// path (crop tracking on, smoothing off), or with GT boxes as crops. A
/// temporal bundle runs on its own cycle over the images in order (a video set).
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  vipnas eval --model models/movenet-lightning --coco tests/data/pose2sim-cam03.json --images tests/data/pose2sim-cam03\n  vipnas eval --model DIR --coco person_keypoints_val2017.json --images val2017 --roi gt"
)]
pub struct EvalArgs {
    /// Model bundle or bare ONNX.
    #[arg(long)]
    model: PathBuf,
    /// COCO person-keypoint annotations.
    #[arg(long)]
    coco: PathBuf,
    /// Directory the annotations' file names are relative to.
    #[arg(long)]
    images: PathBuf,
    /// Write the COCO results json here.
    #[arg(long)]
    results: Option<PathBuf>,
    /// Crops from tracking (video sets) or from the GT boxes (COCO protocol).
    #[arg(long, value_enum, default_value_t = RoiMode::Track)]
    roi: RoiMode,
    /// Score against `is_primary` annotations only (sets with bystanders).
    #[arg(long)]
    primary_only: bool,
    /// A temporal bundle's spatial net on every frame (its temporal nets unused).
    #[arg(long)]
    spatial_only: bool,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Heatmap sub-pixel refinement for every net [default: quarter for
    /// spatial nets, dark for temporal nets].
    #[arg(long, value_enum)]
    refine: Option<Refine>,
}

pub fn run(a: EvalArgs) -> Result<()> {
    let mut gt = CocoDataset::load(&a.coco)?;
    if a.primary_only {
        gt = gt.primary_only();
    }
    let mut est = Estimator::load(&a.model, a.threads, TrackConfig::default(), a.spatial_only, None)?;
    if let Some(refine) = a.refine {
        est.set_refine(refine);
    }
    let p = predict_with(est, &gt, &a.images, a.roi)?;
    if let Some(path) = &a.results {
        write_results(path, &p.results)?;
        outln!("results: {} ({} detections)", path.display(), p.results.len());
    }
    let stats = coco_stats(&gt, &p.results)?;
    for line in format_stats(&stats) {
        outln!("{line}");
    }
    for line in pck(&gt, &p.results, &[0.05, 0.1, 0.2]).lines() {
        outln!("{line}");
    }
    outln!(
        "frames={} key_frames={} ms_per_estimate={:.2} AP={:.4}",
        p.frames,
        p.key_frames,
        p.ms_per_estimate,
        stats[0]
    );
    Ok(())
}
