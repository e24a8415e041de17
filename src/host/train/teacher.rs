//! Distillation from an external teacher for frames without labels: the
//! teacher (e.g. MoveNet through tract) labels each unlabelled frame
//! directory through the runtime's crop tracking ([`crate::host::label`]:
//! confident keypoints only, a person with too few is left out), and the
//! result is merged with the labelled set. The student then learns the
//! teacher's keypoints as Gaussian targets — distillation by pseudo-labels,
//! the teacher's confidence gating each keypoint's weight (0 or 1).
//!
//! The merged set is written once per run (`teacher-set.json`, file names
//! absolute) and reused on resume.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::TrainConfig;
use crate::host::coco::CocoDataset;
use crate::host::label::{label, LabelOptions};
use crate::runtime::PoseModel;

pub const TEACHER_SET: &str = "teacher-set.json";

/// The set to train on: `config.coco` alone, or merged with the teacher's
/// labels of `config.unlabelled` (then file names are absolute).
pub fn training_set(config: &TrainConfig, out: &Path) -> Result<(PathBuf, PathBuf)> {
    let Some(teacher) = &config.teacher else {
        return Ok((config.coco.clone(), config.images.clone()));
    };
    let merged = out.join(TEACHER_SET);
    if merged.exists() {
        return Ok((merged, config.images.clone()));
    }
    let abs = |p: &Path| p.to_string_lossy().into_owned();
    let mut parts = vec![(CocoDataset::load(&config.coco)?, abs(&config.images))];
    for dir in &config.unlabelled {
        let model = PoseModel::load(teacher, 1).with_context(|| format!("teacher {}", teacher.display()))?;
        let opts = LabelOptions::new(format!("pseudo-labels by the teacher {} for vipnas train", teacher.display()));
        let (set, stats) = label(model, None, dir, &opts, |_, _| {})?;
        println!(
            "teacher {}: {} of {} frames of {} labelled ({:.1} keypoints each)",
            teacher.display(),
            stats.annotations,
            stats.frames,
            dir.display(),
            stats.keypoints as f64 / stats.annotations.max(1) as f64
        );
        parts.push((set, abs(dir)));
    }
    let set = CocoDataset::merge(&parts)?;
    crate::bundle::write_atomic(&merged, &serde_json::to_vec(&set)?)?;
    Ok((merged, config.images.clone()))
}
