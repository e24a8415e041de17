//! A trained subnet out of a checkpoint: its BatchNorm statistics
//! recalibrated on training images (un-augmented crops, BigNAS/OFA practice:
//! running statistics are never tracked during supernet training), its
//! tensors sliced from the supernet's, written as a model bundle (ONNX with
//! BatchNorm folded) that `vipnas run` and `vipnas eval` load.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use burn::tensor::{Device, Tensor, TensorData};

use super::batches::{self, BatchPlan};
use super::checkpoint::Checkpoint;
use crate::arch::{Subnet, SupernetLayout};
use crate::bundle::{write_bundle, InputSpec, Manifest, SPATIAL_ONNX};
use crate::host::dataset::{Augment, TrainSet};
use crate::host::supernet::Supernet;
use crate::onnx::{to_bytes, write_network, WriteOptions};

/// Where BN recalibration takes its images from.
#[derive(Clone, Debug)]
pub struct Calibration {
    /// COCO file and image directory; `None`: the run's training set.
    pub set: Option<(PathBuf, PathBuf)>,
    /// Number of images (in batches of the run's batch size); default 256.
    pub images: usize,
}

impl Default for Calibration {
    fn default() -> Self {
        Calibration { set: None, images: 256 }
    }
}

/// Exports `subnet` from the checkpoint at `ckpt_path` into bundle `out`.
pub fn export_subnet(
    ckpt_path: &Path,
    subnet: &Subnet,
    calib: &Calibration,
    out: &Path,
    name: &str,
) -> Result<PathBuf> {
    let c = Checkpoint::load(ckpt_path)?;
    let config = &c.header.config;
    anyhow::ensure!(
        subnet.space == config.space,
        "checkpoint {} holds the {} supernet; the subnet is of the {} space",
        ckpt_path.display(),
        config.space,
        subnet.space
    );
    let layout = SupernetLayout::of(config.space, config.input)?;
    c.check_layout(&layout).with_context(|| format!("checkpoint {}", ckpt_path.display()))?;
    let device = Device::flex();
    let mut sn = Supernet::from_weights(layout, &c.weights, &device)?;
    let net = subnet.network(config.input)?;
    sn.check(&net)?;
    let (coco, images) = calib.set.clone().unwrap_or((config.coco.clone(), config.images.clone()));
    let set = Arc::new(TrainSet::load(&coco, &images)?);
    let spec = InputSpec::for_subnet(config.input);
    let n_batches = calib.images.div_ceil(config.batch).max(1) as u64;
    let plan = BatchPlan { samples: set.samples.len(), batch: config.batch, seed: config.seed };
    let rx = batches::prefetch(set, spec.clone(), Augment::NONE, plan, (0, n_batches), 2);
    let (b, h, w) = (config.batch, config.input.height as usize, config.input.width as usize);
    let mut xs = Vec::new();
    for step in 0..n_batches {
        let hb = batches::next(&rx, step)?;
        xs.push(Tensor::<4>::from_data(TensorData::new(hb.x, [b, 3, h, w]), &device));
    }
    let n = sn.recalibrate(&net, xs)?;
    let weights = sn.to_weights()?.slice_for(&net)?;
    let opts =
        WriteOptions { doc: subnet.to_string(), graph_name: format!("vipnas-{}", subnet.space), ..Default::default() };
    let model = write_network(&net, &weights, &opts)?;
    let provenance = format!(
        "checkpoint {} (step {}/{}, {}), BatchNorm recalibrated on {} images of {}",
        ckpt_path.display(),
        c.header.step,
        config.steps,
        c.header.created_by,
        n * b,
        coco.display()
    );
    let manifest = Manifest::for_subnet(name, subnet, config.input, net.cost(), provenance);
    write_bundle(out, &manifest, &[(SPATIAL_ONNX, to_bytes(&model))])
}
