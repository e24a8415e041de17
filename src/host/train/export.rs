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

/// What a caller adds to an exported bundle's manifest.
#[derive(Clone, Debug, Default)]
pub struct BundleNotes {
    /// Board → predicted latency, where known.
    pub latency_ms: std::collections::BTreeMap<String, f64>,
    /// Board → latency measured on it, where the bundle is made on the board.
    pub measured_ms: std::collections::BTreeMap<String, f64>,
    /// Appended to the provenance (e.g. the search that picked the subnet).
    pub provenance: String,
}

/// A checkpoint's supernet with its calibration images, ready to export any
/// of its subnets (the search exports hundreds from one).
pub struct Exporter {
    ckpt_path: PathBuf,
    checkpoint: super::checkpoint::Header,
    sn: Supernet,
    calib: Vec<Tensor<4>>,
    calib_coco: PathBuf,
    /// Where the supernet's weights came from (for provenance), read once:
    /// the run's initial weights file, or what a weights-only copy recorded.
    origin: Option<String>,
}

impl Exporter {
    /// Loads the checkpoint and prepares `calib`'s images (un-augmented crops).
    pub fn open(ckpt_path: &Path, calib: &Calibration) -> Result<Exporter> {
        let c = Checkpoint::load(ckpt_path)?;
        let config = &c.header.config;
        let layout = SupernetLayout::of(config.space, config.input)?;
        c.check_layout(&layout).with_context(|| format!("checkpoint {}", ckpt_path.display()))?;
        let device = Device::flex();
        let sn = Supernet::from_weights(layout, &c.weights, &device)?;
        let (coco, images) = calib.set.clone().unwrap_or((config.coco.clone(), config.images.clone()));
        let set = Arc::new(TrainSet::load(&coco, &images)?);
        let spec = InputSpec::for_subnet(config.input);
        let n_batches = calib.images.div_ceil(config.batch).max(1) as u64;
        let plan = BatchPlan { samples: set.samples.len(), batch: config.batch, seed: config.seed, start: 0 };
        let rx = batches::prefetch(set, spec, Augment::NONE, batches::Helpers::default(), plan, (0, n_batches), 2);
        let (b, h, w) = (config.batch, config.input.height as usize, config.input.width as usize);
        let mut xs = Vec::new();
        for step in 0..n_batches {
            let hb = batches::next(&rx, step)?;
            xs.push(Tensor::<4>::from_data(TensorData::new(hb.x, [b, 3, h, w]), &device));
        }
        let origin = match (&c.header.provenance, &config.init) {
            // Weights only: its --init need not exist here.
            (Some(p), _) => Some(format!("weights only (f16) of {} ({})", p.source, p.licence)),
            (None, Some(init)) => {
                let h = super::init::InitWeights::read_header(init)?;
                Some(format!("supernet initialised from {} ({})", h.source, h.licence))
            }
            (None, None) => None,
        };
        Ok(Exporter {
            ckpt_path: ckpt_path.to_path_buf(),
            checkpoint: c.header,
            sn,
            calib: xs,
            calib_coco: coco,
            origin,
        })
    }

    /// Exports `subnet` into bundle `out`: BatchNorm recalibrated, tensors
    /// sliced; `notes` add what the caller knows to the manifest.
    pub fn export(&mut self, subnet: &Subnet, out: &Path, name: &str, notes: &BundleNotes) -> Result<PathBuf> {
        let config = &self.checkpoint.config;
        anyhow::ensure!(
            subnet.space == config.space,
            "checkpoint {} holds the {} supernet; the subnet is of the {} space",
            self.ckpt_path.display(),
            config.space,
            subnet.space
        );
        let net = subnet.network(config.input)?;
        self.sn.check(&net)?;
        let n = self.sn.recalibrate(&net, self.calib.iter().cloned())?;
        let weights = self.sn.to_weights()?.slice_for(&net)?;
        let opts = WriteOptions {
            doc: subnet.to_string(),
            graph_name: format!("vipnas-{}", subnet.space),
            ..Default::default()
        };
        let model = write_network(&net, &weights, &opts)?;
        let mut provenance = format!(
            "checkpoint {} (step {}/{}, {}), BatchNorm recalibrated on {} images of {}",
            self.ckpt_path.display(),
            self.checkpoint.step,
            config.steps,
            self.checkpoint.created_by,
            n * config.batch,
            self.calib_coco.display()
        );
        if let Some(origin) = &self.origin {
            provenance += &format!("; {origin}");
        }
        if !notes.provenance.is_empty() {
            provenance += &format!("; {}", notes.provenance);
        }
        let mut manifest = Manifest::for_subnet(name, subnet, config.input, net.cost(), provenance);
        manifest.latency_ms = notes.latency_ms.clone();
        manifest.measured_ms = notes.measured_ms.clone();
        write_bundle(out, &manifest, &[(SPATIAL_ONNX, to_bytes(&model))])
    }
}
