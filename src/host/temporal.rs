//! `vipnas train-temporal`: one temporal net (T-ViPNet) trained on
//! consecutive real frames, then written with a key bundle as a temporal
//! bundle.
//!
//! A sample is what the runtime gives the net on a propagated frame: frame t
//! cropped around the pose of frame t − g (the tracker's box: the confident
//! keypoints' box × 1.4, at the net's aspect), and that pose drawn into the
//! crop as the prior; the target is frame t's labels. The prior here is the
//! *label* of frame t − g with noise — a Gaussian shift of every keypoint
//! (σ = `jitter` × the person's size) and keypoints left out at random — so
//! the net learns to correct a previous pose that is a little wrong, as a key
//! net's or another temporal net's will be; it is not fed the key net's own
//! output (the paper's S-ViPNet heatmaps), which makes it independent of the
//! key net: any bundle can be the key (approximation, said in the docs).
//! Gaps g of 1..=`max_gap` frames stand for faster motion and lower frame
//! rates; gap 0 (a person's own label, noisy) teaches correcting a pose from
//! the image alone and makes stills samples too. A video is the images of
//! one directory that have a `frame_index`, and a gap is a difference of
//! frame indices; a person is followed from frame to frame by the nearest
//! box centre (within half the box's size).
//!
//! Training is Adam on the weighted heatmap MSE, mmpose's schedule, the net
//! trained alone (its own layout); BatchNorm is recalibrated on training
//! samples before export.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use burn::tensor::{Tensor, TensorData};

use super::dataset::{prepare_at, to_crop, TrainSet};
use super::sandwich::{heatmap_loss, Batch};
use super::supernet::{Norm, Supernet};
use super::train::batches::BatchPlan;
use super::train::device::TrainDevice;
use super::train::init::InitWeights;
use super::train::optim::{Adam, AdamConfig, LrSchedule};
use super::train::progress_bar;
use crate::arch::rng::Rng;
use crate::arch::{InputSize, SupernetLayout, TemporalNet, Weights};
use crate::bundle::InputSpec;
use crate::coco::KEYPOINTS;
use crate::heatmap::encode_prior;
use crate::runtime::engine::InputTensor;
use crate::runtime::frame::Frame;
use crate::runtime::preprocess::{Affine, Roi};
use crate::runtime::track::TrackConfig;

/// A temporal net's training run.
#[derive(Clone, Debug, PartialEq)]
pub struct TemporalTrainConfig {
    pub net: TemporalNet,
    pub input: InputSize,
    /// COCO keypoint file of video frames and its image directory.
    pub coco: PathBuf,
    pub images: PathBuf,
    pub batch: usize,
    pub steps: u64,
    pub lr: f64,
    pub seed: u64,
    /// Frames between the prior's frame and the target's: 1..=max_gap.
    pub max_gap: usize,
    /// σ of the prior's keypoint noise, as a fraction of the person's size.
    pub jitter: f32,
    /// Probability that a prior keypoint is left out.
    pub drop: f32,
    /// ImageNet (or other) initial weights for the space (`train --init`).
    pub init: Option<PathBuf>,
}

/// A training pair: the person of sample `prev`, `gap` frames before sample `cur`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pair {
    pub prev: usize,
    pub cur: usize,
    pub gap: usize,
}

/// Every (earlier, later) pair of one person in one video up to `max_gap`
/// frames apart (by the images' `frame_index`; a video is the frames of one
/// directory), and every person with itself (gap 0: its own label, made
/// noisy, as the prior — stills are samples this way only).
pub fn pairs(set: &TrainSet, max_gap: usize) -> Vec<Pair> {
    // Video (directory) → frame index → samples.
    let mut videos: BTreeMap<&Path, BTreeMap<u64, Vec<usize>>> = BTreeMap::new();
    let mut out = Vec::new();
    for (i, s) in set.samples.iter().enumerate() {
        out.push(Pair { prev: i, cur: i, gap: 0 });
        if let (Some(dir), Some(frame)) = (s.image.parent(), s.frame) {
            videos.entry(dir).or_default().entry(frame).or_default().push(i);
        }
    }
    let centre = |i: usize| {
        let [x, y, w, h] = set.samples[i].bbox;
        (x + w / 2.0, y + h / 2.0, w.max(h))
    };
    for frames in videos.values() {
        for (&t, people) in frames {
            for &cur in people {
                let (cx, cy, size) = centre(cur);
                for gap in 1..=max_gap as u64 {
                    let Some(before) = t.checked_sub(gap).and_then(|f| frames.get(&f)) else { continue };
                    let nearest = before.iter().map(|&p| {
                        let (px, py, _) = centre(p);
                        (p, (px - cx).hypot(py - cy))
                    });
                    if let Some((prev, d)) = nearest.min_by(|a, b| a.1.total_cmp(&b.1)) {
                        if d < 0.5 * size {
                            out.push(Pair { prev, cur, gap: gap as usize });
                        }
                    }
                }
            }
        }
    }
    out
}

/// The noisy previous pose of a pair (image pixels; v = 0 where left out).
fn noisy_prior(set: &TrainSet, pair: Pair, cfg: &TemporalTrainConfig, rng: &mut Rng) -> [[f32; 3]; KEYPOINTS] {
    let prev = &set.samples[pair.prev];
    let size = prev.bbox[2].max(prev.bbox[3]);
    let mut kps = prev.keypoints;
    for k in kps.iter_mut() {
        if k[2] <= 0.0 || (rng.uniform() as f32) < cfg.drop {
            *k = [0.0; 3];
            continue;
        }
        k[0] += rng.normal() as f32 * cfg.jitter * size;
        k[1] += rng.normal() as f32 * cfg.jitter * size;
        k[2] = 1.0;
    }
    kps
}

/// The tracker's box around a pose, a little off at random (±10 % size, ±5 % shift).
fn tracked_roi(kps: &[[f32; 3]; KEYPOINTS], fallback: [f32; 4], aspect: f32, rng: &mut Rng) -> Roi {
    let padding = TrackConfig::default().padding;
    let seen = || kps.iter().filter(|k| k[2] > 0.0);
    let mut roi = match Roi::around(seen(), aspect, padding) {
        Some(roi) if seen().count() >= 2 => roi,
        _ => {
            let [x, y, w, h] = fallback;
            Roi::from_box(x, y, w, h, aspect, padding)
        }
    };
    let f = 1.0 + 0.1 * (2.0 * rng.uniform() as f32 - 1.0);
    roi.cx += 0.05 * roi.w * (2.0 * rng.uniform() as f32 - 1.0);
    roi.cy += 0.05 * roi.h * (2.0 * rng.uniform() as f32 - 1.0);
    roi.w *= f;
    roi.h *= f;
    roi
}

/// Host buffers of one batch.
struct HostPairs {
    x: Vec<f32>,
    prior: Vec<f32>,
    targets: Vec<f32>,
    weights: Vec<f32>,
}

/// Prepares one batch: each slot's pair with its own augmentation seed
/// ([`BatchPlan::slots`]; flip with p 0.5).
fn batch(
    set: &TrainSet,
    pairs: &[Pair],
    slots: &[(usize, u64)],
    cfg: &TemporalTrainConfig,
    frame: &mut Frame,
) -> Result<HostPairs> {
    let spec = InputSpec::for_subnet(cfg.input);
    let (hh, hw) = cfg.input.heatmap();
    let plane = KEYPOINTS * hh as usize * hw as usize;
    let aspect = cfg.input.width as f32 / cfg.input.height as f32;
    let mut out = HostPairs { x: Vec::new(), prior: Vec::new(), targets: Vec::new(), weights: Vec::new() };
    let mut x = InputTensor::for_spec(&spec);
    let (mut hm, mut pr) = (vec![0f32; plane], vec![0f32; plane]);
    let mut w = [0f32; KEYPOINTS];
    for &(i, seed) in slots {
        let pair = pairs[i];
        let rng = &mut Rng::new(seed);
        let mut prior = noisy_prior(set, pair, cfg, rng);
        let roi = tracked_roi(&prior, set.samples[pair.prev].bbox, aspect, rng);
        let flip = rng.uniform() < 0.5;
        let crop = Affine::crop_to_image(&roi, cfg.input.width, cfg.input.height);
        let affine = prepare_at(&set.samples[pair.cur], &spec, crop, flip, frame, &mut x, &mut hm, &mut w)?;
        to_crop(&mut prior, &affine, flip);
        encode_prior(&prior, cfg.input, &mut pr);
        let InputTensor::F32(v) = &x else { bail!("temporal nets take float input") };
        out.x.extend_from_slice(v);
        out.prior.extend_from_slice(&pr);
        out.targets.extend_from_slice(&hm);
        out.weights.extend_from_slice(&w);
    }
    Ok(out)
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct TemporalTrainSummary {
    pub pairs: usize,
    pub people: usize,
    pub seconds: f64,
    /// Mean loss of the first and last tenth of the steps.
    pub first_loss: f64,
    pub last_loss: f64,
    /// `(step, loss)` every step.
    pub losses: Vec<(u64, f64)>,
}

/// The net's initial weights: seeded random (the final layer near zero, as
/// for the supernet), with every tensor that `init` holds for the space cut
/// to the net's shape.
fn initial_weights(cfg: &TemporalTrainConfig, layout: &SupernetLayout) -> Result<Weights> {
    let mut w = layout.training_weights(cfg.seed);
    let Some(path) = &cfg.init else { return Ok(w) };
    let space = SupernetLayout::of(cfg.net.subnet.space, cfg.input)?;
    let mut sw = space.training_weights(cfg.seed);
    let init = InitWeights::load(path)?;
    init.apply(&space, &mut sw).with_context(|| format!("weights file {}", path.display()))?;
    let mut n = 0;
    for (name, t) in w.tensors.iter_mut() {
        if let (Some(big), Some(_)) = (sw.tensors.get(name), init.weights.tensors.get(name)) {
            *t = big.elastic_slice(&t.shape).with_context(|| format!("`{name}`"))?;
            n += 1;
        }
    }
    log::info!(
        "initial weights: {n} tensors from {} ({}, {})",
        path.display(),
        init.header.source,
        init.header.licence
    );
    Ok(w)
}

/// Trains the net; returns its weights (BatchNorm recalibrated) and the run's summary.
pub fn train_temporal(
    cfg: &TemporalTrainConfig,
    device: TrainDevice,
    progress: bool,
) -> Result<(Weights, TemporalTrainSummary)> {
    ensure!(cfg.batch >= 1 && cfg.steps >= 1 && cfg.max_gap >= 1, "batch, steps and max gap must be at least 1");
    let set = TrainSet::load(&cfg.coco, &cfg.images)?;
    let pairs = pairs(&set, cfg.max_gap);
    ensure!(
        pairs.len() >= cfg.batch,
        "{}: {} consecutive-frame pairs of one person, fewer than a batch ({}); temporal nets train on video frames",
        cfg.coco.display(),
        pairs.len(),
        cfg.batch
    );
    let net = cfg.net.network(cfg.input)?;
    let layout = SupernetLayout::of_network(cfg.net.subnet.space, cfg.input, &net)?;
    let device = device.autodiff();
    let mut sn = Supernet::from_weights(layout.clone(), &initial_weights(cfg, &layout)?, &device)?;
    let mut adam = Adam::new(AdamConfig::default(), &sn);
    let schedule = LrSchedule { base: cfg.lr, warmup: LrSchedule::default_warmup(cfg.steps), steps: cfg.steps };
    let (b, h, w) = (cfg.batch, cfg.input.height as usize, cfg.input.width as usize);
    let prior = |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, [b, KEYPOINTS, h / 4, w / 4]), &device);
    let plan = BatchPlan { samples: pairs.len(), batch: b, seed: cfg.seed, start: 0 };
    let mut epoch_order = None;
    let mut frame = Frame::default();
    let bar = progress_bar(progress, 0, cfg.steps);
    let t0 = Instant::now();
    let mut losses = Vec::new();
    for step in 0..cfg.steps {
        let hb = batch(&set, &pairs, &plan.slots(step, &mut epoch_order), cfg, &mut frame)?;
        let Batch { x, targets, weights, .. } = Batch::from_host(hb.x, hb.targets, hb.weights, (b, h, w), &device);
        let out = sn.forward_with_prior(&net, x, Some(prior(hb.prior)), Norm::Batch, None);
        let loss = heatmap_loss(out, targets, weights);
        let value = loss.clone().into_scalar::<f32>() as f64;
        ensure!(value.is_finite(), "step {step}: the loss is not finite");
        let grads = loss.backward();
        adam.step(&mut sn, &grads, schedule.at(step));
        losses.push((step, value));
        bar.set_message(format!("loss {value:.3e}"));
        bar.inc(1);
        if bar.is_hidden() && (step + 1) % 50 == 0 {
            let recent = &losses[losses.len() - 50..];
            let mean = recent.iter().map(|l| l.1).sum::<f64>() / 50.0;
            println!(
                "step {}/{}: loss {mean:.3e} (mean of the last 50) | {:.2} s/step",
                step + 1,
                cfg.steps,
                t0.elapsed().as_secs_f64() / (step + 1) as f64
            );
        }
        if crate::shutdown::requested().is_some() {
            log::warn!("stopping at step {} of {}: what is trained so far is written", step + 1, cfg.steps);
            break;
        }
    }
    bar.finish_and_clear();
    // BatchNorm recalibration on the first 8 batches of the plan (at most an epoch).
    let mut calib = Vec::new();
    for k in 0..8.min(pairs.len() / b).max(1) {
        let hb = batch(&set, &pairs, &plan.slots(k as u64, &mut epoch_order), cfg, &mut frame)?;
        let x = Batch::from_host(hb.x, hb.targets, hb.weights, (b, h, w), &device).x;
        calib.push((x, Some(prior(hb.prior))));
    }
    sn.recalibrate_with_prior(&net, calib)?;
    let weights = sn.to_weights()?;
    let tenth = (losses.len() / 10).max(1);
    let mean = |v: &[(u64, f64)]| v.iter().map(|l| l.1).sum::<f64>() / v.len().max(1) as f64;
    let people = pairs.iter().map(|p| p.cur).collect::<std::collections::HashSet<_>>().len();
    let summary = TemporalTrainSummary {
        pairs: pairs.len(),
        people,
        seconds: t0.elapsed().as_secs_f64(),
        first_loss: mean(&losses[..tenth.min(losses.len())]),
        last_loss: mean(&losses[losses.len().saturating_sub(tenth)..]),
        losses,
    };
    Ok((weights, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pose2sim-cam03");

    #[test]
    fn pairs_follow_one_person_across_consecutive_frames() {
        let set = TrainSet::load(Path::new(&format!("{CLIP}.json")), Path::new(CLIP)).unwrap();
        let p = pairs(&set, 2);
        // 50 frames, one person each: 50 with itself, 49 pairs one frame
        // apart, 48 two apart.
        assert_eq!(p.iter().filter(|p| p.gap == 0 && p.prev == p.cur).count(), 50);
        assert_eq!(p.iter().filter(|p| p.gap == 1).count(), 49);
        assert_eq!(p.iter().filter(|p| p.gap == 2).count(), 48);
        for q in &p {
            let name = |i: usize| set.samples[i].image.file_name().unwrap().to_owned();
            assert!(q.gap == 0 || name(q.prev) < name(q.cur), "{q:?}");
        }
    }
}
