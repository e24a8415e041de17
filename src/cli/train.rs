//! `vipnas train` (host): supernet training on a COCO-format set.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use vipnas::arch::{InputSize, SpaceName};
use vipnas::host::dataset::TrainSet;
use vipnas::host::train::device::TrainDevice;
use vipnas::host::train::optim::LrSchedule;
use vipnas::host::train::teacher::training_set;
use vipnas::host::train::{
    train, DenseDistillation, PasteConfig, TrainConfig, TrainOptions, CHECKPOINT, LOSSES, LOSS_PNG,
};

/// Train a weight-sharing supernet by the sandwich rule (max subnet on the
/// labels; min and random subnets distilled from it). Re-running the same
/// command resumes from the run's checkpoint exactly where it stopped.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  vipnas train --space mbv3 --coco data/splits/train.json --images data --input 128x96 --epochs 10 --out runs/mbv3
  vipnas train --space mbv3 --coco labelled.json --images frames --teacher models/movenet-lightning --unlabelled clips/a --out runs/t
  vipnas train --space mbv3 --coco data/splits/train.json --images data --input 128x96 --init runs/max-alone/checkpoint.vnck --lr 3e-4 --out runs/shrink
  vipnas train --space mbv3 --coco data/splits/train.json --images data --input 128x96 --dense-teacher data/models/movenet-thunder --out runs/dense
  vipnas train --space mbv3 --coco data/splits/train.json --images data --input 128x96 --paste-backgrounds data/backgrounds --segmenter data/models/selfie.onnx --out runs/paste
  vipnas train --space mbv3 --coco coco/annotations/person_keypoints_train2017.json --images coco/train2017 --epochs 210 --out runs/coco
  vipnas export --checkpoint runs/mbv3/checkpoint.vnck --sample max --out models/mbv3-max")]
pub struct TrainArgs {
    /// Search space: mbv3, resnet50 or hrnet-w32.
    #[arg(long)]
    space: SpaceName,
    /// COCO person-keypoints annotation file.
    #[arg(long, value_name = "ANN.json")]
    coco: PathBuf,
    /// Directory the annotation's `file_name`s are relative to.
    #[arg(long, value_name = "DIR")]
    images: PathBuf,
    /// Run directory: checkpoint.vnck, losses.tsv, loss.png.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Network input HEIGHTxWIDTH (multiples of 32).
    #[arg(long, default_value = "256x192")]
    input: InputSize,
    /// Images per step.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Length of the run in passes over the set.
    #[arg(long, default_value_t = 10.0, conflicts_with = "steps")]
    epochs: f64,
    /// Length of the run in steps (instead of --epochs).
    #[arg(long)]
    steps: Option<u64>,
    /// Adam learning rate (×0.1 at 81 % and 95 % of the run, after a linear warm-up).
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Warm-up steps [default: min(500, steps/10)].
    #[arg(long)]
    warmup: Option<u64>,
    /// Random subnets per step besides max and min.
    #[arg(long, default_value_t = 2)]
    randoms: usize,
    /// Train the max subnet alone for the first N steps (on the labels), then
    /// the sandwich rule (once-for-all's order: the largest network first).
    #[arg(long, value_name = "N", default_value_t = 0)]
    max_alone: u64,
    /// Seed of the initial weights, batch order, augmentation and sampled subnets.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Train without augmentation (flip, scale, rotation, half body, and the photometric ones).
    #[arg(long)]
    no_augment: bool,
    /// Train without the photometric augmentations (colour jitter, blur, noise,
    /// random erasing); the geometric ones stay.
    #[arg(long)]
    no_photometric: bool,
    /// Teacher model (bundle or ONNX, e.g. MoveNet) that labels the --unlabelled frames.
    #[arg(long, value_name = "MODEL", requires = "unlabelled")]
    teacher: Option<PathBuf>,
    /// A directory of frames without labels (repeatable; with --teacher).
    #[arg(long, value_name = "DIR", requires = "teacher")]
    unlabelled: Vec<PathBuf>,
    /// Write a checkpoint every N steps (and at the end).
    #[arg(long, default_value_t = 50)]
    checkpoint_every: u64,
    /// Train on `cpu` (burn Flex) or `cuda[:N]` (a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: TrainDevice,
    /// Pretrained initial weights (a `.vnw` file, e.g. from scripts/init-weights.py:
    /// EfficientNet-Lite0's ImageNet weights; the tensors it lacks start random), or
    /// an earlier run's checkpoint.vnck (every tensor; Adam starts afresh): to go on
    /// under another schedule, e.g. the sandwich after a `--max-alone` run.
    #[arg(long, value_name = "FILE")]
    init: Option<PathBuf>,
    /// Dense distillation: a MoveNet SinglePose bundle (e.g. Thunder) whose own
    /// heatmaps, seen on each training crop, are the max subnet's soft targets
    /// beside the labels, weighted by the teacher's scores.
    #[arg(long, value_name = "BUNDLE")]
    dense_teacher: Option<PathBuf>,
    /// Weight of the dense teacher's term beside the labels'.
    #[arg(long, default_value_t = 1.0, requires = "dense_teacher")]
    dense_weight: f32,
    /// Paste people onto the photos of DIR (e.g. from scripts/fetch-data.sh:
    /// data/backgrounds), cut out by --segmenter.
    #[arg(long, value_name = "DIR", requires = "segmenter")]
    paste_backgrounds: Option<PathBuf>,
    /// Person segmentation model for --paste-backgrounds (MediaPipe selfie
    /// segmentation as ONNX, e.g. data/models/selfie.onnx).
    #[arg(long, value_name = "ONNX", requires = "paste_backgrounds")]
    segmenter: Option<PathBuf>,
    /// Share of training crops pasted onto a background.
    #[arg(long, default_value_t = 0.3, requires = "paste_backgrounds")]
    paste_prob: f32,
    /// Stop after N steps of this call; run the command again to continue.
    #[arg(long, value_name = "N")]
    stop_after: Option<u64>,
}

pub fn run(a: TrainArgs) -> Result<()> {
    // Absolute paths: the checkpoint remembers its data for resume and BN recalibration.
    let abs = |p: &PathBuf| std::fs::canonicalize(p).with_context(|| format!("cannot find {}", p.display()));
    let (coco, images) = (abs(&a.coco)?, abs(&a.images)?);
    let mut config = TrainConfig::new(a.space, coco, images, a.steps.unwrap_or(1));
    config.input = a.input;
    config.batch = a.batch;
    config.lr = a.lr;
    config.randoms = a.randoms;
    config.max_alone = a.max_alone;
    config.seed = a.seed;
    config.augment = !a.no_augment;
    config.photometric = !a.no_augment && !a.no_photometric;
    config.teacher = a.teacher.as_ref().map(abs).transpose()?;
    config.unlabelled = a.unlabelled.iter().map(abs).collect::<Result<_>>()?;
    config.init = a.init.as_ref().map(abs).transpose()?;
    config.dense = a
        .dense_teacher
        .as_ref()
        .map(|t| Ok::<_, anyhow::Error>(DenseDistillation { teacher: abs(t)?, weight: a.dense_weight }))
        .transpose()?;
    if let (Some(backgrounds), Some(segmenter)) = (&a.paste_backgrounds, &a.segmenter) {
        config.paste =
            Some(PasteConfig { segmenter: abs(segmenter)?, backgrounds: abs(backgrounds)?, probability: a.paste_prob });
    }
    if a.steps.is_none() {
        anyhow::ensure!(a.epochs > 0.0, "--epochs must be positive");
        std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
        let (coco, images) = training_set(&config, &a.out)?;
        let n = TrainSet::load(&coco, &images)?.samples.len();
        config.steps = ((a.epochs * n as f64) / a.batch as f64).ceil() as u64;
    }
    config.warmup = a.warmup.unwrap_or(LrSchedule::default_warmup(config.steps));
    let opts = TrainOptions {
        checkpoint_every: a.checkpoint_every,
        stop_after: a.stop_after,
        progress: true,
        device: a.device,
    };
    let s = train(&config, &a.out, &opts)?;
    let fmt = |v: &[f64]| v.iter().map(|l| format!("{l:.3e}")).collect::<Vec<_>>().join(" ");
    // Steps of this call in the max-alone phase.
    let alone = s.step.min(config.max_alone).saturating_sub(s.step - s.steps_now);
    let sandwich = format!("each through {} subnets", 2 + config.randoms);
    let through = match alone {
        0 => sandwich,
        n if n == s.steps_now => "the max subnet alone".to_string(),
        n => format!("the max subnet alone for {n} steps, then {sandwich}"),
    };
    outln!(
        "trained {} steps{} in {:.0} s ({:.2} images/s, {through}); now at step {}/{}",
        s.steps_now,
        s.resumed_from.map_or(String::new(), |f| format!(" (resumed at {f})")),
        s.seconds,
        s.images_per_s,
        s.step,
        config.steps
    );
    outln!("losses (max min random…): first 10 % {} → last 10 % {}", fmt(&s.first), fmt(&s.last));
    outln!(
        "run: {} ({CHECKPOINT}, {LOSSES}, {LOSS_PNG}); next: vipnas export --checkpoint {} --sample max --out DIR",
        a.out.display(),
        a.out.join(CHECKPOINT).display()
    );
    Ok(())
}
