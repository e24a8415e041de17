//! Batches in a fixed order: epoch `e` visits the samples in a permutation
//! drawn from (seed, e); the sample at global position `p` is augmented with
//! a generator seeded by (seed, p). Step `s` of a run takes the positions
//! from `start + s·batch` on, where `start` is where the run of its initial
//! checkpoint left off (0 for a fresh run): a run continued from a checkpoint
//! goes on along the stream instead of replaying the crops its weights were
//! trained on. A batch is therefore a function of the seed, the start and the
//! step alone — the same with any number of threads and after a resume.
//! Batches are prepared (decode, augment, targets, and a dense teacher's
//! heatmaps where there is one) in parallel on a background thread, a few
//! steps ahead of training.

use std::collections::BTreeSet;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use anyhow::{bail, Result};
use rayon::prelude::*;

use super::dense::DenseTeacher;
use crate::arch::rng::Rng;
use crate::arch::InputSize;
use crate::bundle::InputSpec;
use crate::coco::KEYPOINTS;
use crate::host::dataset::{prepare, Augment, TrainSet, SKIP_CAP};
use crate::host::paste::PasteIn;
use crate::host::view::PerThread;
use crate::runtime::engine::InputTensor;
use crate::runtime::Frame;

/// One batch in host memory.
pub struct HostBatch {
    pub step: u64,
    /// `B × 3 × H × W`.
    pub x: Vec<f32>,
    /// `B × 17 × H/4 × W/4`.
    pub targets: Vec<f32>,
    /// `B × 17`.
    pub weights: Vec<f32>,
    /// The dense teacher's heatmaps (`B × 17 × H/4 × W/4`) and scores
    /// (`B × 17`); empty without one.
    pub dense: Vec<f32>,
    pub dense_weights: Vec<f32>,
}

/// Which sample sits at each global position.
#[derive(Clone, Debug)]
pub struct BatchPlan {
    pub samples: usize,
    pub batch: usize,
    pub seed: u64,
    /// The stream position of step 0's first sample.
    pub start: u64,
}

fn mix(a: u64, b: u64) -> u64 {
    Rng::new(a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b).next_u64()
}

impl BatchPlan {
    /// The visiting order of epoch `e` (Fisher–Yates).
    pub fn permutation(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.samples).collect();
        let mut rng = Rng::new(mix(self.seed, epoch));
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        order
    }

    /// `(sample index, augmentation seed)` for each slot of `step`'s batch.
    pub fn slots(&self, step: u64, cache: &mut Option<(u64, Vec<usize>)>) -> Vec<(usize, u64)> {
        (0..self.batch as u64)
            .map(|j| {
                let p = self.start + step * self.batch as u64 + j;
                let epoch = p / self.samples as u64;
                if cache.as_ref().is_none_or(|(e, _)| *e != epoch) {
                    *cache = Some((epoch, self.permutation(epoch)));
                }
                let order = &cache.as_ref().unwrap().1;
                (order[(p % self.samples as u64) as usize], mix(self.seed ^ 0xA5A5, p))
            })
            .collect()
    }
}

/// The models that run beside batch preparation, when a run has them.
#[derive(Clone, Default)]
pub struct Helpers {
    /// The dense teacher ([`super::dense`]).
    pub dense: Option<Arc<PerThread<DenseTeacher>>>,
    /// Paste-in onto new backgrounds ([`crate::host::paste`]).
    pub paste: Option<Arc<PasteIn>>,
}

/// One prepared slot of a batch.
struct Slot {
    x: Vec<f32>,
    heatmaps: Vec<f32>,
    weights: [f32; KEYPOINTS],
    dense: Vec<f32>,
    dense_weights: [f32; KEYPOINTS],
    /// Samples that failed to load before this one.
    failed: Vec<String>,
}

/// Prepares one slot; a sample that fails to load is replaced by the next
/// one in the set (recorded in `failed`).
fn prepare_slot(
    set: &TrainSet,
    spec: &InputSpec,
    aug: &Augment,
    helpers: &Helpers,
    (index, seed): (usize, u64),
    plane: usize,
) -> Slot {
    let mut frame = Frame::default();
    let mut x = InputTensor::for_spec(spec);
    let mut slot = Slot {
        x: Vec::new(),
        heatmaps: vec![0f32; KEYPOINTS * plane],
        weights: [0f32; KEYPOINTS],
        dense: if helpers.dense.is_some() { vec![0f32; KEYPOINTS * plane] } else { Vec::new() },
        dense_weights: [0f32; KEYPOINTS],
        failed: Vec::new(),
    };
    let input = InputSize::new(spec.height, spec.width).expect("a trainable input size");
    // Past the cap the run stops anyway: never scan the whole set for a good sample.
    let tries = set.samples.len().min((SKIP_CAP * set.samples.len() as f64) as usize + 1);
    let paste = helpers.paste.as_deref();
    for k in 0..tries {
        let s = &set.samples[(index + k) % set.samples.len()];
        let rng = &mut Rng::new(seed);
        let prepared = prepare(s, spec, aug, paste, rng, &mut frame, &mut x, &mut slot.heatmaps, &mut slot.weights)
            .and_then(|crop| match &helpers.dense {
                Some(t) => t
                    .mine()
                    .targets(&frame, &crop, input, &mut slot.dense, &mut slot.dense_weights)
                    .map_err(|e| e.context(format!("{}: the dense teacher", s.item))),
                None => Ok(()),
            });
        match prepared {
            Ok(()) => break,
            Err(e) => slot.failed.push(format!("{e:#}")),
        }
    }
    let InputTensor::F32(x) = x else { unreachable!("training inputs are f32") };
    slot.x = x;
    slot
}

/// Starts the background thread that prepares the batches of steps
/// `from..to`, at most `ahead` in advance, with the models of `helpers`. A
/// batch with a failing sample is filled from the next sample; once more than
/// [`SKIP_CAP`] of the set has failed the stream ends in an error naming the
/// samples.
pub fn prefetch(
    set: Arc<TrainSet>,
    spec: InputSpec,
    aug: Augment,
    helpers: Helpers,
    plan: BatchPlan,
    (from, to): (u64, u64),
    ahead: usize,
) -> Receiver<Result<HostBatch>> {
    let (tx, rx) = sync_channel(ahead);
    std::thread::spawn(move || {
        let plane = (spec.height as usize / 4) * (spec.width as usize / 4);
        let mut cache = None;
        let mut failed = BTreeSet::new();
        for step in from..to {
            let slots = plan.slots(step, &mut cache);
            let prepared: Vec<Slot> =
                slots.par_iter().map(|&slot| prepare_slot(&set, &spec, &aug, &helpers, slot, plane)).collect();
            let mut batch = HostBatch {
                step,
                x: Vec::new(),
                targets: Vec::new(),
                weights: Vec::new(),
                dense: Vec::new(),
                dense_weights: Vec::new(),
            };
            for slot in prepared {
                batch.x.extend(slot.x);
                batch.targets.extend(slot.heatmaps);
                batch.weights.extend(slot.weights);
                if helpers.dense.is_some() {
                    batch.dense.extend(slot.dense);
                    batch.dense_weights.extend(slot.dense_weights);
                }
                for e in slot.failed {
                    if failed.insert(e.clone()) {
                        log::warn!("skipped {e}");
                    }
                }
            }
            let result = if failed.len() as f64 > SKIP_CAP * set.samples.len() as f64 {
                let first = failed.iter().next().cloned().unwrap_or_default();
                Err(anyhow::anyhow!(
                    "{} of {} samples failed to load (over {:.0} %), e.g. {first}",
                    failed.len(),
                    set.samples.len(),
                    SKIP_CAP * 100.0
                ))
            } else {
                Ok(batch)
            };
            let stop = result.is_err();
            if tx.send(result).is_err() || stop {
                return;
            }
        }
    });
    rx
}

/// Receives the batch of `step`.
pub fn next(rx: &Receiver<Result<HostBatch>>, step: u64) -> Result<HostBatch> {
    let Ok(b) = rx.recv() else { bail!("the batch preparation thread stopped") };
    let b = b?;
    anyhow::ensure!(b.step == step, "batch for step {} arrived at step {step}", b.step);
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_epoch_visits_each_sample_once_in_a_seeded_order() {
        let plan = BatchPlan { samples: 10, batch: 4, seed: 7, start: 0 };
        let mut cache = None;
        let visited: Vec<usize> = (0..5).flat_map(|s| plan.slots(s, &mut cache)).map(|(i, _)| i).collect();
        let mut first: Vec<usize> = visited[..10].to_vec();
        first.sort();
        assert_eq!(first, (0..10).collect::<Vec<_>>());
        assert_ne!(visited[..10], visited[10..20], "epochs are reshuffled");
        assert_ne!(visited[..10], (0..10).collect::<Vec<_>>());
        // A fresh plan (a resumed run) gives the same batch at the same step.
        assert_eq!(plan.slots(3, &mut None), plan.slots(3, &mut cache));
        let other = BatchPlan { seed: 8, ..plan.clone() };
        assert_ne!(other.slots(0, &mut None), plan.slots(0, &mut None));
    }

    #[test]
    fn a_run_continued_from_a_checkpoint_goes_on_along_the_stream() {
        // The first run: 3 steps of 4 (12 positions); the second starts where it left
        // off, with another batch size, and sees what one long run would have seen.
        let first = BatchPlan { samples: 10, batch: 4, seed: 7, start: 0 };
        let next = BatchPlan { batch: 6, start: 12, ..first.clone() };
        let (mut a, mut b) = (None, None);
        let long: Vec<(usize, u64)> = (0..9).flat_map(|s| first.slots(s, &mut a)).collect();
        let went_on: Vec<(usize, u64)> = (0..4).flat_map(|s| next.slots(s, &mut b)).collect();
        assert_eq!(went_on, long[12..36]);
        let replayed: Vec<(usize, u64)> = (0..2).flat_map(|s| first.slots(s, &mut None)).collect();
        assert!(went_on[..8].iter().zip(&replayed).all(|(x, y)| x.1 != y.1), "no crop of the first run comes again");
    }

    /// The bundled clip with `bad` of its 50 frames overwritten by bytes that do not decode.
    fn clip_with_broken_images(bad: usize) -> (Arc<TrainSet>, tempfile::TempDir) {
        let clip = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pose2sim-cam03");
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        for e in std::fs::read_dir(&clip).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
        for i in 0..bad {
            std::fs::write(dir.join(format!("{:06}.jpg", 10 * i)), b"not a jpeg").unwrap();
        }
        (Arc::new(TrainSet::load(&clip.with_extension("json"), dir).unwrap()), tmp)
    }

    fn one_epoch(set: Arc<TrainSet>) -> Result<usize> {
        let spec = InputSpec::for_subnet(crate::arch::InputSize::new(64, 64).unwrap());
        let plan = BatchPlan { samples: 50, batch: 5, seed: 1, start: 0 };
        let rx = prefetch(set, spec, Augment::default(), Helpers::default(), plan, (0, 10), 2);
        let mut labelled = 0;
        for step in 0..10 {
            let b = next(&rx, step)?;
            assert!(b.x.iter().all(|v| v.is_finite()));
            labelled += b.weights.chunks(KEYPOINTS).filter(|w| w.iter().any(|&v| v > 0.0)).count();
        }
        Ok(labelled)
    }

    #[test]
    fn images_that_do_not_decode_are_replaced_until_the_cap() {
        // 2 of 50 (4 %): replaced by the next samples; every slot still has targets.
        let (set, _dir) = clip_with_broken_images(2);
        assert_eq!(one_epoch(set).unwrap(), 50);
        // 3 of 50 (6 %): over the 5 % cap, the run stops naming a sample and its file.
        let (set, _dir) = clip_with_broken_images(3);
        let e = format!("{:#}", one_epoch(set).unwrap_err());
        assert!(e.starts_with("3 of 50 samples failed to load (over 5 %), e.g. "), "{e}");
        assert!(e.contains("pose2sim-cam03.json annotations[") && e.contains(".jpg"), "{e}");
    }
}
