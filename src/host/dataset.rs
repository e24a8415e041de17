//! Training samples from a COCO-format keypoint file (so COCO itself trains
//! unchanged): one sample per person annotation with at least one labelled
//! keypoint, cropped top-down around its box with mmpose's augmentations —
//! random scale, rotation, horizontal flip (COCO's left/right pairs), and
//! half-body crops — warped to the network input and normalised, optionally
//! pasted onto a new background ([`super::paste`]), then photometric ones
//! ([`super::photometric`]), with Gaussian heatmap targets
//! ([`crate::heatmap`]).
//!
//! Bad samples (an image that is missing or does not decode) are skipped and
//! counted; past [`SKIP_CAP`] of the set the run aborts rather than train on
//! what is left.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::coco::CocoDataset;
use super::paste::PasteIn;
use super::photometric::Photometric;
use crate::arch::rng::Rng;
use crate::arch::InputSize;
use crate::bundle::InputSpec;
use crate::coco::{FLIP_PAIRS, KEYPOINTS};
use crate::heatmap::{encode, SIGMA};
use crate::runtime::engine::InputTensor;
use crate::runtime::frame::load_image;
use crate::runtime::frame::Frame;
use crate::runtime::preprocess::{crop_into, Affine, Roi};

/// Fraction of samples that may fail to load before training aborts.
pub const SKIP_CAP: f64 = 0.05;
/// Box padding around a person (mmpose's 1.25).
pub const PADDING: f32 = 1.25;
/// COCO keypoints 0–10 are the upper body (head, arms), 11–16 the lower.
const UPPER_BODY: usize = 11;

/// One person to learn from.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainSample {
    pub image: PathBuf,
    /// `(x, y, w, h)` in image pixels.
    pub bbox: [f32; 4],
    /// `(x, y, v)` in image pixels (continuous: pixel i covers [i, i+1)); v = 0: unlabelled.
    pub keypoints: [[f32; 3]; KEYPOINTS],
    /// Training weight per keypoint (the annotation's `keypoint_weights`, else 1).
    pub weights: [f32; KEYPOINTS],
    /// `ANN.json annotations[i] (id N)`, for error messages.
    pub item: String,
    /// The image's `frame_index`: a frame of a video (its directory), not a still.
    pub frame: Option<u64>,
}

/// mmpose's top-down training augmentations; `Augment::NONE` for evaluation
/// and BN recalibration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Augment {
    /// Probability of a horizontal flip.
    pub flip: f32,
    /// Box scale factor drawn from [1 − s, 1 + s].
    pub scale: f32,
    /// Rotation drawn from [−r, r] degrees, applied with probability `rotate_prob`.
    pub rotation: f32,
    pub rotate_prob: f32,
    /// Probability of cropping the upper or lower body only (when ≥ 8 keypoints are labelled).
    pub half_body: f32,
    /// Colour jitter, blur, noise, random erasing on the crop.
    pub photometric: Photometric,
}

impl Augment {
    pub const NONE: Augment = Augment {
        flip: 0.0,
        scale: 0.0,
        rotation: 0.0,
        rotate_prob: 0.0,
        half_body: 0.0,
        photometric: Photometric::NONE,
    };
}

impl Default for Augment {
    /// mmpose's COCO top-down defaults: flip 0.5, scale ±35 %, rotation ±40° with p 0.6, half body p 0.3;
    /// [`Photometric::default`].
    fn default() -> Augment {
        Augment {
            flip: 0.5,
            scale: 0.35,
            rotation: 40.0,
            rotate_prob: 0.6,
            half_body: 0.3,
            photometric: Photometric::default(),
        }
    }
}

/// The samples of a COCO keypoint file whose images exist.
#[derive(Clone, Debug)]
pub struct TrainSet {
    pub samples: Vec<TrainSample>,
    /// Annotations left out because their image file is missing.
    pub skipped: Vec<String>,
}

impl TrainSet {
    /// Loads `ann` (validated: 51-value keypoint arrays, known ids) with images
    /// under `images`; person annotations with no labelled keypoint are not samples.
    pub fn load(ann: &Path, images: &Path) -> Result<TrainSet> {
        let d = CocoDataset::load(ann)?;
        let files: std::collections::HashMap<u64, (&str, Option<u64>)> =
            d.images.iter().map(|im| (im.id, (im.file_name.as_str(), im.frame_index))).collect();
        let (mut samples, mut skipped) = (Vec::new(), Vec::new());
        for (i, a) in d.annotations.iter().enumerate() {
            let item = format!("{} annotations[{i}] (id {})", ann.display(), a.id);
            if a.iscrowd != 0 || !a.keypoints.chunks(3).any(|k| k[2] > 0.0) {
                continue;
            }
            let (file, frame) = files[&a.image_id];
            let image = images.join(file);
            if !image.is_file() {
                skipped.push(format!("{item}: image {} is missing", image.display()));
                continue;
            }
            let mut keypoints = [[0f32; 3]; KEYPOINTS];
            for (kp, v) in keypoints.iter_mut().zip(a.keypoints.chunks(3)) {
                // COCO puts pixel centres at integers; we at i + 0.5.
                *kp = if v[2] > 0.0 { [v[0] as f32 + 0.5, v[1] as f32 + 0.5, v[2] as f32] } else { [0.0; 3] };
            }
            let b = a.bbox.map(|v| v as f32);
            let mut weights = [1f32; KEYPOINTS];
            if let Some(w) = &a.keypoint_weights {
                weights.iter_mut().zip(w).for_each(|(d, s)| *d = *s as f32);
            }
            samples.push(TrainSample { image, bbox: b, keypoints, weights, item, frame });
        }
        let set = TrainSet { samples, skipped };
        set.check_skips(ann)?;
        Ok(set)
    }

    fn check_skips(&self, ann: &Path) -> Result<()> {
        let total = self.samples.len() + self.skipped.len();
        if total == 0 {
            bail!("{}: no person annotation with a labelled keypoint", ann.display());
        }
        if self.skipped.len() as f64 > SKIP_CAP * total as f64 {
            bail!(
                "{} of {total} samples skipped (over {:.0} %), e.g. {}",
                self.skipped.len(),
                SKIP_CAP * 100.0,
                self.skipped[0]
            );
        }
        for s in &self.skipped {
            log::warn!("skipped {s}");
        }
        Ok(())
    }
}

/// The crop for a sample: its box, or (half body) the box of the upper or
/// lower body's labelled keypoints, scaled and rotated at random.
fn crop(s: &TrainSample, input: InputSize, aug: &Augment, rng: &mut Rng) -> Affine {
    let aspect = input.width as f32 / input.height as f32;
    let [x, y, w, h] = s.bbox;
    let mut roi = Roi::from_box(x, y, w, h, aspect, PADDING);
    let labelled = s.keypoints.iter().filter(|k| k[2] > 0.0).count();
    if labelled >= 8 && (rng.uniform() as f32) < aug.half_body {
        let upper = rng.below(2) == 0;
        let part: Vec<&[f32; 3]> = s
            .keypoints
            .iter()
            .enumerate()
            .filter(|(k, kp)| kp[2] > 0.0 && (*k < UPPER_BODY) == upper)
            .map(|(_, kp)| kp)
            .collect();
        if part.len() >= 2 {
            roi = Roi::around(part, aspect, 1.5).expect("two keypoints");
        }
    }
    let factor = 1.0 + aug.scale * (2.0 * rng.uniform() as f32 - 1.0);
    roi.w *= factor;
    roi.h *= factor;
    let degrees =
        if (rng.uniform() as f32) < aug.rotate_prob { aug.rotation * (2.0 * rng.uniform() as f32 - 1.0) } else { 0.0 };
    Affine::crop_to_image_rotated(&roi, input.width, input.height, degrees)
}

/// Warps one sample into `x` (normalised per `spec`), pastes it onto a new
/// background where `paste` says so, and writes its heatmap targets and
/// per-keypoint weights. `frame` is the image buffer (it keeps the sample's
/// image); returns the crop → image map used.
#[allow(clippy::too_many_arguments)]
pub fn prepare(
    s: &TrainSample,
    spec: &InputSpec,
    aug: &Augment,
    paste: Option<&PasteIn>,
    rng: &mut Rng,
    frame: &mut Frame,
    x: &mut InputTensor,
    heatmaps: &mut [f32],
    weights: &mut [f32; KEYPOINTS],
) -> Result<Affine> {
    let input = InputSize::new(spec.height, spec.width).map_err(anyhow::Error::msg)?;
    let affine = crop(s, input, aug, rng);
    let flip = (rng.uniform() as f32) < aug.flip;
    let affine = prepare_at(s, spec, affine, flip, frame, x, heatmaps, weights)?;
    if let Some(p) = paste {
        p.apply(frame, &affine, spec, x, rng).with_context(|| format!("{}: paste-in", s.item))?;
    }
    aug.photometric.apply(x, spec, rng);
    Ok(affine)
}

/// [`prepare`] with the crop given (`affine`: crop → image) and, with
/// `flip`, mirrored; returns the crop → image map used (flip included).
#[allow(clippy::too_many_arguments)]
pub fn prepare_at(
    s: &TrainSample,
    spec: &InputSpec,
    mut affine: Affine,
    flip: bool,
    frame: &mut Frame,
    x: &mut InputTensor,
    heatmaps: &mut [f32],
    weights: &mut [f32; KEYPOINTS],
) -> Result<Affine> {
    let input = InputSize::new(spec.height, spec.width).map_err(anyhow::Error::msg)?;
    load_image(&s.image, frame).with_context(|| format!("{}: {}", s.item, s.image.display()))?;
    if flip {
        // Crop u → image: mirrored, u' = in_w − u.
        let [a, b, c, d, e, f] = affine.0;
        let w = input.width as f32;
        affine = Affine([-a, b, a * w + c, -d, e, d * w + f]);
    }
    crop_into(frame, &affine, spec, x);
    let (mut kps, mut kw) = (s.keypoints, s.weights);
    to_crop(&mut kps, &affine, flip);
    if flip {
        for (l, r) in FLIP_PAIRS {
            kw.swap(l as usize, r as usize);
        }
    }
    encode(&kps, input, SIGMA, &kw, heatmaps, weights);
    Ok(affine)
}

/// Labelled keypoints (image pixels) into the crop of `affine` (crop →
/// image); with `flip` (a mirrored `affine`), left and right swap names.
pub fn to_crop(kps: &mut [[f32; 3]; KEYPOINTS], affine: &Affine, flip: bool) {
    let inv = affine.inverse();
    for kp in kps.iter_mut().filter(|k| k[2] > 0.0) {
        let (u, v) = inv.apply(kp[0], kp[1]);
        *kp = [u, v, kp[2]];
    }
    if flip {
        for (l, r) in FLIP_PAIRS {
            kps.swap(l as usize, r as usize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::decode::{decode_heatmaps, Refine};

    const CLIP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pose2sim-cam03");

    fn clip() -> TrainSet {
        TrainSet::load(Path::new(&format!("{CLIP}.json")), Path::new(CLIP)).unwrap()
    }

    struct Prepared {
        x: Vec<f32>,
        kps: [[f32; 3]; KEYPOINTS],
        weights: [f32; KEYPOINTS],
    }

    /// Prepares a sample and decodes its targets back (DARK) to crop coordinates.
    fn prepared(s: &TrainSample, aug: &Augment, seed: u64) -> Prepared {
        let input = InputSize::new(128, 96).unwrap();
        let spec = InputSpec::for_subnet(input);
        let mut x = InputTensor::for_spec(&spec);
        let mut hm = vec![0f32; KEYPOINTS * 32 * 24];
        let mut weights = [0f32; KEYPOINTS];
        let mut frame = Frame::default();
        prepare(s, &spec, aug, None, &mut Rng::new(seed), &mut frame, &mut x, &mut hm, &mut weights).unwrap();
        let mut kps = [[0f32; 3]; KEYPOINTS];
        decode_heatmaps(&hm, (32, 24), (4.0, 4.0), Refine::Dark, &mut vec![0f32; 32 * 24], &mut kps);
        let InputTensor::F32(x) = x else { panic!() };
        Prepared { x, kps, weights }
    }

    #[test]
    fn the_labelled_clip_loads_as_samples() {
        let set = clip();
        assert_eq!(set.samples.len(), 50, "one person per frame");
        assert!(set.skipped.is_empty());
        assert!(
            set.samples[0].item.ends_with("pose2sim-cam03.json annotations[0] (id 3000001)"),
            "{}",
            set.samples[0].item
        );
    }

    #[test]
    fn targets_land_on_the_labelled_keypoints_in_the_crop() {
        let set = clip();
        let s = &set.samples[10];
        let p = prepared(s, &Augment::NONE, 0);
        let input = InputSize::new(128, 96).unwrap();
        let roi = Roi::from_box(s.bbox[0], s.bbox[1], s.bbox[2], s.bbox[3], 0.75, PADDING);
        let affine = Affine::crop_to_image(&roi, input.width, input.height);
        for k in 0..KEYPOINTS {
            if s.keypoints[k][2] > 0.0 {
                assert_eq!(p.weights[k], 1.0);
                let (x, y) = affine.apply(p.kps[k][0], p.kps[k][1]);
                let err = (x - s.keypoints[k][0]).hypot(y - s.keypoints[k][1]);
                assert!(err < 0.5, "keypoint {k}: {err} image px off");
            }
        }
    }

    #[test]
    fn a_flip_mirrors_the_crop_and_swaps_left_and_right() {
        let set = clip();
        let s = &set.samples[20];
        let plain = prepared(s, &Augment::NONE, 0);
        let flipped = prepared(s, &Augment { flip: 1.0, ..Augment::NONE }, 0);
        let (h, w) = (128, 96);
        let mut worst = 0f32;
        for c in 0..3 {
            for v in 0..h {
                for u in 0..w {
                    let a = plain.x[(c * h + v) * w + u];
                    let b = flipped.x[(c * h + v) * w + (w - 1 - u)];
                    worst = worst.max((a - b).abs());
                }
            }
        }
        assert!(worst < 1e-3, "the flipped crop is the mirror image ({worst})");
        // Left shoulder (5) of the flipped sample = the mirrored right shoulder (6).
        let (l, r) = (flipped.kps[5], plain.kps[6]);
        assert!((l[0] - (w as f32 - r[0])).abs() < 0.1 && (l[1] - r[1]).abs() < 0.1, "{l:?} vs {r:?}");
    }

    #[test]
    fn photometric_augmentation_changes_pixels_not_targets() {
        let set = clip();
        let s = &set.samples[5];
        let geometric = Augment { photometric: Photometric::NONE, ..Augment::default() };
        let mut changed = 0;
        for seed in 0..4 {
            let (a, b) = (prepared(s, &Augment::default(), seed), prepared(s, &geometric, seed));
            assert_eq!((a.kps, a.weights), (b.kps, b.weights), "seed {seed}");
            changed += usize::from(a.x.iter().zip(&b.x).any(|(p, q)| (p - q).abs() > 1e-3));
        }
        assert!(changed >= 3, "photometric changes moved the pixels of {changed} of 4 samples");
    }

    #[test]
    fn missing_images_are_counted_and_cap_the_run() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let ann = Path::new(&format!("{CLIP}.json")).to_path_buf();
        let e = TrainSet::load(&ann, &dir).unwrap_err().to_string();
        assert!(e.starts_with("50 of 50 samples skipped (over 5 %), e.g. "), "{e}");
        assert!(e.contains("annotations[0] (id 3000001): image ") && e.ends_with("000000.jpg is missing"), "{e}");
    }
}
