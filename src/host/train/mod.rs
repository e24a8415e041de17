//! `vipnas train`: supernet training by the sandwich rule over a COCO-format
//! set, with atomic checkpoints, exact resume and a loss curve.
//!
//! Each step trains the max subnet on the labels and the min subnet plus
//! `randoms` random subnets on the max subnet's heatmaps
//! ([`super::sandwich`]), and, with a dense teacher, the max subnet also the
//! teacher's heatmaps ([`dense`]); Adam with mmpose's schedule ([`optim`]). The batch
//! and the random subnets of a step depend only on the seed and the step
//! ([`batches`]), so a resumed run continues exactly as if never stopped.
//!
//! A run directory holds `checkpoint.vnck` ([`checkpoint`]), `losses.tsv`
//! (one row per step) and `loss.png`.

pub mod batches;
pub mod checkpoint;
pub mod dense;
pub mod device;
pub mod export;
pub mod init;
pub mod losses;
pub mod optim;
pub mod teacher;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use self::batches::{BatchPlan, HostBatch};
use self::checkpoint::{Checkpoint, Header, TensorEntry, CHECKPOINT_VERSION};
pub use self::losses::LossRow;
use self::losses::{plot_losses, read_losses, write_losses};
use self::optim::{Adam, AdamConfig, LrSchedule};
use super::dataset::{Augment, TrainSet};
use super::paste::PasteIn;
use super::photometric::Photometric;
use super::sandwich::{sandwich_loss, Batch};
use super::supernet::Supernet;
use super::view::PerThread;
use crate::arch::{InputSize, Network, Sample, SearchSpace, SpaceName, Subnet, SupernetLayout};
use crate::bundle::InputSpec;

pub const CHECKPOINT: &str = "checkpoint.vnck";
pub const LOSSES: &str = "losses.tsv";
pub const LOSS_PNG: &str = "loss.png";

/// A training run's settings (stored in every checkpoint; a resume must
/// match them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub space: SpaceName,
    /// Network input; default 256×192 (mmpose's COCO setting).
    pub input: InputSize,
    /// COCO keypoint file and its image directory.
    pub coco: PathBuf,
    pub images: PathBuf,
    /// Images per step; default 16.
    pub batch: usize,
    /// Steps of the whole run.
    pub steps: u64,
    /// Adam's learning rate; default 1e-3 (mmpose).
    pub lr: f64,
    /// Linear warm-up steps; default min(500, steps / 10).
    pub warmup: u64,
    /// Random subnets per step besides max and min; default 2 (the sandwich rule).
    pub randoms: usize,
    /// Seeds the initial weights, the batch order, augmentation and subnets.
    pub seed: u64,
    /// mmpose's augmentations (flip, scale, rotation, half body); default on.
    pub augment: bool,
    /// The photometric ones besides ([`crate::host::photometric`]); default on,
    /// off in checkpoints written before they existed.
    #[serde(default)]
    pub photometric: bool,
    /// A teacher model that labels `unlabelled` frame directories ([`teacher`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unlabelled: Vec<PathBuf>,
    /// Pretrained initial weights ([`init`]: a weights file or an earlier
    /// run's checkpoint); the rest is seeded random.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
    /// Steps at the start that train the max subnet alone, on the labels, before
    /// the sandwich rule shrinks the other subnets in (once-for-all's order:
    /// the largest network first, at a fraction of a sandwich step's cost);
    /// default 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_alone: u64,
    /// A MoveNet SinglePose bundle whose heatmaps are the max subnet's soft targets ([`dense`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dense: Option<DenseDistillation>,
    /// People pasted onto new backgrounds ([`crate::host::paste`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paste: Option<PasteConfig>,
}

/// Paste-in's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasteConfig {
    /// The person segmentation model (ONNX).
    pub segmenter: PathBuf,
    /// A directory of background photos.
    pub backgrounds: PathBuf,
    /// Share of crops pasted.
    pub probability: f32,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Dense distillation's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenseDistillation {
    /// The teacher's bundle directory.
    pub teacher: PathBuf,
    /// The dense term's weight beside the labels' (default 1).
    pub weight: f32,
}

impl TrainConfig {
    /// Defaults for everything but the space, the data and the length.
    pub fn new(space: SpaceName, coco: PathBuf, images: PathBuf, steps: u64) -> TrainConfig {
        TrainConfig {
            space,
            input: InputSize::DEFAULT,
            coco,
            images,
            batch: 16,
            steps,
            lr: 1e-3,
            warmup: LrSchedule::default_warmup(steps),
            randoms: 2,
            seed: 0,
            augment: true,
            photometric: true,
            teacher: None,
            unlabelled: Vec::new(),
            init: None,
            max_alone: 0,
            dense: None,
            paste: None,
        }
    }

    fn check(&self) -> Result<()> {
        ensure!(self.batch >= 2, "--batch must be at least 2 (BatchNorm trains on batch statistics)");
        ensure!(self.steps >= 1, "--steps must be at least 1");
        ensure!(self.lr > 0.0 && self.lr.is_finite(), "--lr must be a positive number");
        ensure!(
            self.teacher.is_some() != self.unlabelled.is_empty(),
            "--teacher and --unlabelled go together: the teacher labels the unlabelled frames"
        );
        if let Some(d) = &self.dense {
            ensure!(d.weight > 0.0 && d.weight.is_finite(), "--dense-weight must be a positive number");
        }
        Ok(())
    }

    /// The subnets of `step`: max, min, then the random ones; the max subnet
    /// alone during the first `max_alone` steps.
    pub fn subnets(&self, step: u64) -> Vec<Subnet> {
        let space = SearchSpace::get(self.space);
        let max = Subnet::sample(&space, Sample::Max);
        if step < self.max_alone {
            return vec![max];
        }
        let mut v = vec![max, Subnet::sample(&space, Sample::Min)];
        for j in 0..self.randoms as u64 {
            v.push(Subnet::sample(
                &space,
                Sample::Random(self.seed ^ (step << 8 | j).wrapping_mul(0x2545_F491_4F6C_DD1D)),
            ));
        }
        v
    }
}

/// How a call to [`train`] ended.
#[derive(Clone, Debug)]
pub struct TrainSummary {
    /// Steps completed in total and in this call.
    pub step: u64,
    pub steps_now: u64,
    pub resumed_from: Option<u64>,
    pub seconds: f64,
    /// Images per second (each through all the step's subnets).
    pub images_per_s: f64,
    /// Mean losses (max, min, randoms…) over the first and the last 10 % of the steps logged.
    pub first: Vec<f64>,
    pub last: Vec<f64>,
}

/// Knobs that do not change the result.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Write a checkpoint every this many steps (and at the end).
    pub checkpoint_every: u64,
    /// Stop after this many steps in this call (the run can be resumed).
    pub stop_after: Option<u64>,
    pub progress: bool,
    pub device: device::TrainDevice,
}

/// Trains into `out`, resuming from `out/checkpoint.vnck` when it exists.
pub fn train(config: &TrainConfig, out: &Path, opts: &TrainOptions) -> Result<TrainSummary> {
    config.check()?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let (coco, images) = teacher::training_set(config, out)?;
    let set = Arc::new(TrainSet::load(&coco, &images)?);
    let layout = SupernetLayout::of(config.space, config.input)?;
    let device = opts.device.autodiff();
    let ckpt_path = out.join(CHECKPOINT);
    let (mut sn, mut adam, start, mut history, data_start) = if ckpt_path.exists() {
        let c = Checkpoint::load(&ckpt_path)?;
        ensure!(
            !c.header.is_weights_only(),
            "{} is weights only (no optimiser state) and cannot be resumed: continue from it with --init and another --out",
            ckpt_path.display()
        );
        c.check_layout(&layout).with_context(|| format!("checkpoint {}", ckpt_path.display()))?;
        ensure!(
            &c.header.config == config,
            "{} was made with other settings ({}); resume with the same ones or pick another --out",
            ckpt_path.display(),
            config_diff(&c.header.config, config)
        );
        let sn = Supernet::from_weights(layout.clone(), &c.weights, &device)?;
        let adam = restore_adam(&c, &sn, &device)?;
        let history = read_losses(&out.join(LOSSES), c.header.step)?;
        log::info!("resuming {} at step {}", out.display(), c.header.step);
        (sn, adam, c.header.step, history, c.header.data_start)
    } else {
        let mut weights = layout.training_weights(config.seed);
        let mut data_start = 0;
        if let Some(path) = &config.init {
            let init = init::InitWeights::load(path)?;
            let (tensors, scalars) =
                init.apply(&layout, &mut weights).with_context(|| format!("weights file {}", path.display()))?;
            let mut lines = vec![format!(
                "initial weights: {tensors} tensors ({scalars} values) from {} ({}, {})",
                path.display(),
                init.header.source,
                init.header.licence
            )];
            data_start = init.data_end;
            if data_start > 0 {
                lines.push(format!(
                    "batches go on from sample {data_start} of seed {}'s stream (epoch {}), where that run stopped",
                    config.seed,
                    data_start / set.samples.len() as u64
                ));
            }
            for line in lines {
                log::info!("{line}");
                if opts.progress {
                    println!("{line}");
                }
            }
        }
        let sn = Supernet::from_weights(layout.clone(), &weights, &device)?;
        let adam = Adam::new(AdamConfig::default(), &sn);
        (sn, adam, 0, Vec::new(), data_start)
    };
    let end = opts.stop_after.map_or(config.steps, |n| (start + n).min(config.steps));
    let schedule = LrSchedule { base: config.lr, warmup: config.warmup, steps: config.steps };
    let spec = InputSpec::for_subnet(config.input);
    let plan = BatchPlan { samples: set.samples.len(), batch: config.batch, seed: config.seed, start: data_start };
    let aug = match (config.augment, config.photometric) {
        (false, _) => Augment::NONE,
        (true, true) => Augment::default(),
        (true, false) => Augment { photometric: Photometric::NONE, ..Augment::default() },
    };
    let mut helpers = batches::Helpers::default();
    if let Some(d) = &config.dense {
        let teachers = PerThread::new(|| dense::DenseTeacher::load(&d.teacher))
            .with_context(|| format!("--dense-teacher {}", d.teacher.display()))?;
        helpers.dense = Some(Arc::new(teachers));
    }
    if let Some(p) = &config.paste {
        helpers.paste = Some(Arc::new(PasteIn::load(&p.segmenter, &p.backgrounds, p.probability)?));
    }
    let rx = batches::prefetch(set.clone(), spec, aug, helpers, plan, (start, end), 3);
    let (h, w) = (config.input.height as usize, config.input.width as usize);
    let bar = progress_bar(opts.progress, start, config.steps);
    let t0 = Instant::now();
    for step in start..end {
        let t = Instant::now();
        let HostBatch { x, targets, weights, dense, dense_weights, .. } = batches::next(&rx, step)?;
        let mut batch = Batch::from_host(x, targets, weights, (config.batch, h, w), &device);
        if let Some(d) = &config.dense {
            batch = batch.with_dense(dense, dense_weights, d.weight, &device);
        }
        let nets: Vec<Network> =
            config.subnets(step).iter().map(|s| s.network(config.input)).collect::<Result<_, _>>()?;
        let lr = schedule.at(step);
        let loss = sandwich_loss(&sn, &nets, &batch);
        ensure!(loss.each.iter().all(|l| l.is_finite()), "step {step}: the loss is not finite ({:?})", loss.each);
        let grads = loss.total.backward();
        adam.step(&mut sn, &grads, lr);
        // Subnets not trained this step (the max-alone phase) log NaN.
        let mut losses: Vec<f64> = loss.each.iter().map(|&l| l as f64).collect();
        losses.resize(2 + config.randoms, f64::NAN);
        let row = LossRow { step, lr, losses, images_per_s: config.batch as f64 / t.elapsed().as_secs_f64() };
        let dense_term = loss.dense.map_or(String::new(), |l| format!(" (dense {l:.2e})"));
        bar.set_message(format!(
            "loss max {:.2e}{dense_term} min {:.2e} | lr {:.1e} | {:.2} img/s",
            row.losses[0], row.losses[1], lr, row.images_per_s
        ));
        bar.inc(1);
        history.push(row);
        let done = step + 1;
        // SIGINT/SIGTERM: the step in flight finishes, then a checkpoint.
        let stop = crate::shutdown::requested();
        if done % opts.checkpoint_every.max(1) == 0 || done == end || stop.is_some() {
            save(config, &sn, &adam, (done, data_start), out, &history)?;
            let last = &history[history.len() - 1];
            report(
                &bar,
                format!(
                    "step {done}/{}: losses {} | {:.2} img/s | checkpoint {}",
                    config.steps,
                    last.losses.iter().map(|l| format!("{l:.3e}")).collect::<Vec<_>>().join(" "),
                    last.images_per_s,
                    out.join(CHECKPOINT).display()
                ),
            );
        }
        if let Some(stop) = stop {
            bar.finish_and_clear();
            return Err(anyhow::Error::new(stop)
                .context(format!("at step {done}: checkpoint saved; the same command resumes from it")));
        }
    }
    if start == end && !ckpt_path.exists() {
        // `--stop-after 0` on a new run: the initial (untrained) checkpoint.
        save(config, &sn, &adam, (start, data_start), out, &history)?;
    }
    bar.finish_and_clear();
    let seconds = t0.elapsed().as_secs_f64();
    let tenth = (history.len() / 10).max(1);
    let mean = |rows: &[LossRow]| -> Vec<f64> {
        let k = rows.first().map_or(0, |r| r.losses.len());
        (0..k).map(|i| losses::finite_mean(rows.iter().map(|r| r.losses[i]))).collect()
    };
    Ok(TrainSummary {
        step: end,
        steps_now: end - start,
        resumed_from: (start > 0).then_some(start),
        seconds,
        images_per_s: (end - start) as f64 * config.batch as f64 / seconds.max(1e-9),
        first: mean(&history[..tenth.min(history.len())]),
        last: mean(&history[history.len().saturating_sub(tenth)..]),
    })
}

/// A line above the progress bar, or on stdout when there is no bar (not a terminal).
fn report(bar: &indicatif::ProgressBar, line: String) {
    if bar.is_hidden() {
        println!("{line}");
    } else {
        bar.println(line);
    }
}

pub(crate) fn progress_bar(show: bool, start: u64, steps: u64) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(steps).with_position(start);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps | {msg} | ETA {eta}")
            .expect("valid template"),
    );
    bar
}

fn config_diff(a: &TrainConfig, b: &TrainConfig) -> String {
    let (a, b) = (serde_json::to_value(a).unwrap_or_default(), serde_json::to_value(b).unwrap_or_default());
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else { return String::new() };
    a.iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: checkpoint {v}, now {}", b.get(k).cloned().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join("; ")
}

fn host_vec(t: burn::tensor::Tensor<4>) -> Result<Vec<f32>> {
    t.into_data().try_to_vec::<f32>().context("reading a tensor back to the host")
}

/// Writes the checkpoint, the loss table and the loss curve.
/// `at`: the steps done and where the run's batches started in the stream.
fn save(
    config: &TrainConfig,
    sn: &Supernet,
    adam: &Adam,
    at: (u64, u64),
    out: &Path,
    history: &[LossRow],
) -> Result<()> {
    let (step, data_start) = at;
    let weights = sn.to_weights()?;
    let mut moments = std::collections::BTreeMap::new();
    let mut updates = std::collections::BTreeMap::new();
    for ((name, _), (m, v, t)) in sn.trainable_names().zip(&adam.moments) {
        moments.insert(name.to_string(), (host_vec(m.clone())?, host_vec(v.clone())?));
        updates.insert(name.to_string(), *t);
    }
    let tensors = sn
        .layout
        .params
        .iter()
        .map(|(name, p)| TensorEntry {
            name: name.clone(),
            shape: p.shape.clone(),
            moments: moments.contains_key(name),
            updates: updates.get(name).copied().unwrap_or(0),
        })
        .collect();
    let header = Header {
        format_version: CHECKPOINT_VERSION,
        created_by: format!("vipnas {}", env!("CARGO_PKG_VERSION")),
        config: config.clone(),
        step,
        data_start,
        precision: Default::default(),
        provenance: None,
        tensors,
        payload_bytes: 0,
        payload_fnv1a64: String::new(),
    };
    Checkpoint { header, weights, moments }.save(&out.join(CHECKPOINT))?;
    write_losses(&out.join(LOSSES), history)?;
    if history.is_empty() {
        return Ok(());
    }
    plot_losses(&out.join(LOSS_PNG), history)
}

fn restore_adam(c: &Checkpoint, sn: &Supernet, device: &Device) -> Result<Adam> {
    let mut adam = Adam::new(AdamConfig::default(), sn);
    let entries: std::collections::BTreeMap<&str, &TensorEntry> =
        c.header.tensors.iter().map(|e| (e.name.as_str(), e)).collect();
    for ((name, shape), slot) in sn.trainable_names().zip(adam.moments.iter_mut()) {
        let (m, v) = c.moments.get(name).with_context(|| format!("checkpoint: no Adam moments for `{name}`"))?;
        let to = |d: &Vec<f32>| {
            burn::tensor::Tensor::<4>::from_data(burn::tensor::TensorData::new(d.clone(), shape), device).inner()
        };
        *slot = (to(m), to(v), entries[name].updates);
    }
    Ok(adam)
}
