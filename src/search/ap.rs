//! OKS AP as fitness: a subnet with the supernet's inherited weights,
//! BatchNorm recalibrated on training crops, exported and run through the
//! runtime (crop tracking, as `vipnas eval`) on a validation set; PCK@0.2
//! breaks ties.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::{Fitness, Measured, Score};
use crate::arch::Subnet;
use crate::host::coco::CocoDataset;
use crate::host::eval::{coco_stats, pck, predict, RoiMode};
use crate::host::train::export::{BundleNotes, Calibration, Exporter};
use crate::runtime::PoseModel;

pub struct ApFitness {
    exporter: Exporter,
    val: CocoDataset,
    images: PathBuf,
    /// Where each candidate's bundle is written before it is run.
    scratch: PathBuf,
}

impl ApFitness {
    /// `scratch`: a directory for the candidate bundle (rewritten each time).
    pub fn new(checkpoint: &Path, calib: &Calibration, val: &Path, images: &Path, scratch: &Path) -> Result<ApFitness> {
        let exporter = Exporter::open(checkpoint, calib)?;
        let val_set = CocoDataset::load(val)?;
        anyhow::ensure!(!val_set.annotations.is_empty(), "{}: no annotations to score subnets on", val.display());
        Ok(ApFitness { exporter, val: val_set, images: images.to_path_buf(), scratch: scratch.to_path_buf() })
    }

    pub fn exporter(&mut self) -> &mut Exporter {
        &mut self.exporter
    }
}

impl ApFitness {
    /// Scores a model — each candidate, or a reference such as MoveNet — on
    /// the validation set: (AP, PCK@0.2, measured ms per estimate on this
    /// machine at 1 thread).
    pub fn score_model(&self, model: &Path) -> Result<(f64, f64, f64)> {
        let p = predict(PoseModel::load(model, 1)?, &self.val, &self.images, RoiMode::Track)?;
        let ap = coco_stats(&self.val, &p.results)?[0];
        Ok((ap, pck(&self.val, &p.results, &[0.2]).overall[0], p.ms_per_estimate))
    }
}

impl Fitness for ApFitness {
    fn name(&self) -> &'static str {
        "ap"
    }

    fn measure(&mut self, subnet: &Subnet) -> Result<Measured> {
        self.exporter.export(subnet, &self.scratch, "candidate", &BundleNotes::default())?;
        let (ap, pck, _) = self.score_model(&self.scratch)?;
        Ok(Measured { score: Score { value: ap, tie: pck }, ap: Some(ap), pck: Some(pck) })
    }
}
