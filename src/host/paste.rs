//! Scenes the data never had: the person of a training crop cut out by a
//! segmentation model and pasted onto a real background photo (a room, a
//! street, a field), so a few dozen scenes of video stop being the only
//! places a person is ever seen. The targets stay as they are: the person
//! does not move.
//!
//! The segmenter is MediaPipe's selfie segmentation (npm human-models'
//! `selfie`, converted to ONNX by `scripts/fetch-data.sh`: a `1 × 256 × 256 ×
//! 3` input in 0–1, a `1 × 256 × 256 × 1` person probability). It sees the
//! crop as the dense teacher does ([`SquareView`]); each crop pixel reads the
//! probability bilinearly and blends `p · person + (1 − p) · background`, so
//! the mask's soft edge is the seam. The background is a random region of a
//! random photo, at the crop's aspect, 30–100 % of the photo's height.
//! Photometric changes come after, over the whole composite.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};

use crate::arch::rng::Rng;
use crate::arch::InputSize;
use crate::bundle::{ColorOrder, InputSpec, InputType, Layout};
use crate::host::view::{sample_plane, PerThread, SquareView};
use crate::runtime::engine::{Engine, EngineOptions, InputTensor, TractEngine};
use crate::runtime::frame::{load_image, Frame};
use crate::runtime::preprocess::{crop_into, Affine, Roi};
use crate::runtime::source::dir::image_files;

/// The segmenter's square input side.
pub const SEGMENTER_SIDE: u32 = 256;

/// A person segmentation model: image in, person probability per pixel out.
pub struct Segmenter {
    engine: TractEngine,
    spec: InputSpec,
    input: InputTensor,
    /// `side × side` probabilities of the last run.
    pub mask: Vec<f32>,
}

impl Segmenter {
    /// Loads MediaPipe's selfie segmentation as converted by `fetch-data.sh`.
    pub fn load(path: &Path) -> Result<Segmenter> {
        let side = SEGMENTER_SIDE as usize;
        let spec = InputSpec {
            name: "input".into(),
            height: SEGMENTER_SIDE,
            width: SEGMENTER_SIDE,
            layout: Layout::Nhwc,
            dtype: InputType::F32,
            color: ColorOrder::Rgb,
            mean: [0.0; 3],
            std: [255.0; 3],
        };
        let engine = TractEngine::from_path_with(path, &[1, side, side, 3], &EngineOptions::new(InputType::F32, 1))?;
        ensure!(
            engine.output_shape() == [1, side, side, 1],
            "{}: output {:?}, not a person mask [1, {side}, {side}, 1]",
            path.display(),
            engine.output_shape()
        );
        let input = InputTensor::for_spec(&spec);
        Ok(Segmenter { engine, spec, input, mask: vec![0.0; side * side] })
    }

    /// Segments the square view `view` of `frame` into [`Self::mask`].
    pub fn segment(&mut self, frame: &Frame, view: &SquareView) -> Result<()> {
        crop_into(frame, &view.to_image, &self.spec, &mut self.input);
        self.engine.run(&[&self.input], &mut self.mask)
    }
}

/// Background photos, decoded once.
pub struct Backgrounds {
    pub frames: Vec<Frame>,
}

impl Backgrounds {
    /// Every JPEG or PNG in `dir` (sorted by name); an error names a file that
    /// does not decode, or the directory when it has none.
    pub fn load(dir: &Path) -> Result<Backgrounds> {
        let paths = image_files(dir).with_context(|| format!("{}: not a readable directory", dir.display()))?;
        if paths.is_empty() {
            bail!("{}: no background photos (.jpg, .jpeg, .png)", dir.display());
        }
        let mut frames = Vec::with_capacity(paths.len());
        for p in &paths {
            let mut f = Frame::default();
            load_image(p, &mut f).with_context(|| format!("background {}", p.display()))?;
            frames.push(f);
        }
        Ok(Backgrounds { frames })
    }
}

/// Paste-in as a training augmentation: a segmenter per preparation thread,
/// the backgrounds, and the probability per crop.
pub struct PasteIn {
    pub segmenters: PerThread<Segmenter>,
    pub backgrounds: Backgrounds,
    pub probability: f32,
}

impl PasteIn {
    pub fn load(segmenter: &Path, backgrounds: &Path, probability: f32) -> Result<PasteIn> {
        ensure!((0.0..=1.0).contains(&probability), "--paste-prob must be in 0–1, not {probability}");
        Ok(PasteIn {
            segmenters: PerThread::new(|| Segmenter::load(segmenter))?,
            backgrounds: Backgrounds::load(backgrounds)?,
            probability,
        })
    }

    /// With the set probability, pastes the person of the crop `x` (network
    /// input `spec`, NCHW float, made from `frame` through `crop`) onto a
    /// random region of a random background (one draw from `rng` either way,
    /// more when it pastes).
    pub fn apply(
        &self,
        frame: &Frame,
        crop: &Affine,
        spec: &InputSpec,
        x: &mut InputTensor,
        rng: &mut Rng,
    ) -> Result<()> {
        if rng.uniform() as f32 >= self.probability {
            return Ok(());
        }
        ensure!(spec.layout == Layout::Nchw, "paste-in works on NCHW training crops");
        let input = InputSize::new(spec.height, spec.width).map_err(anyhow::Error::msg)?;
        let view = SquareView::about(crop, input, SEGMENTER_SIDE);
        let mut segmenter = self.segmenters.mine();
        segmenter.segment(frame, &view)?;
        // The background region: the crop's aspect, 30–100 % of the photo's height (as wide as fits).
        let bg = &self.backgrounds.frames[rng.below(self.backgrounds.frames.len())];
        let aspect = spec.width as f32 / spec.height as f32;
        let (bw, bh) = (bg.width as f32, bg.height as f32);
        let h = (bh * (0.3 + 0.7 * rng.uniform() as f32)).min(bw / aspect);
        let w = h * aspect;
        let (cx, cy) = (w / 2.0 + (bw - w) * rng.uniform() as f32, h / 2.0 + (bh - h) * rng.uniform() as f32);
        let roi = Roi { cx, cy, w, h };
        let mut back = InputTensor::for_spec(spec);
        crop_into(bg, &Affine::crop_to_image(&roi, spec.width, spec.height), spec, &mut back);
        let (InputTensor::F32(x), InputTensor::F32(back)) = (x, &back) else { bail!("paste-in works on float crops") };
        let (h, w) = (spec.height as usize, spec.width as usize);
        let side = SEGMENTER_SIDE as usize;
        for v in 0..h {
            for u in 0..w {
                let (mu, mv) = view.from_crop(u as f32 + 0.5, v as f32 + 0.5);
                let p = sample_plane(&segmenter.mask, (side, side), mu - 0.5, mv - 0.5).clamp(0.0, 1.0);
                for c in 0..3 {
                    let i = (c * h + v) * w + u;
                    x[i] = p * x[i] + (1.0 - p) * back[i];
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coco::KEYPOINTS;
    use crate::host::dataset::{prepare_at, TrainSet, PADDING};

    const CLIP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pose2sim-cam03");
    const SEGMENTER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/selfie-segmentation.onnx");

    /// Sample `i` of the labelled clip cropped at 128×96 without augmentation:
    /// the frame, the crop map, the crop, and its labelled keypoints in crop pixels.
    fn crop(i: usize) -> (Frame, Affine, InputSpec, InputTensor, Vec<(f32, f32)>) {
        let set = TrainSet::load(Path::new(&format!("{CLIP}.json")), Path::new(CLIP)).unwrap();
        let s = &set.samples[i];
        let spec = InputSpec::for_subnet(InputSize::new(128, 96).unwrap());
        let roi = Roi::from_box(s.bbox[0], s.bbox[1], s.bbox[2], s.bbox[3], 0.75, PADDING);
        let (mut frame, mut x) = (Frame::default(), InputTensor::for_spec(&spec));
        let (mut hm, mut w) = (vec![0f32; KEYPOINTS * 32 * 24], [0f32; KEYPOINTS]);
        let affine = Affine::crop_to_image(&roi, 96, 128);
        let affine = prepare_at(s, &spec, affine, false, &mut frame, &mut x, &mut hm, &mut w).unwrap();
        let inv = affine.inverse();
        let kps = s.keypoints.iter().filter(|k| k[2] > 0.0).map(|k| inv.apply(k[0], k[1])).collect();
        (frame, affine, spec, x, kps)
    }

    /// The mask's value at crop pixel `(u, v)` (continuous).
    fn mask_at(seg: &Segmenter, view: &SquareView, u: f32, v: f32) -> f32 {
        let side = SEGMENTER_SIDE as usize;
        let (mu, mv) = view.from_crop(u, v);
        sample_plane(&seg.mask, (side, side), mu - 0.5, mv - 0.5)
    }

    #[test]
    fn the_segmenter_finds_the_labelled_person_and_not_the_room() {
        let mut seg = Segmenter::load(Path::new(SEGMENTER)).unwrap();
        let (mut on, mut all, mut area) = (0, 0, 0.0);
        for i in [0, 12, 25, 37, 49] {
            let (frame, affine, _, _, kps) = crop(i);
            let view = SquareView::about(&affine, InputSize::new(128, 96).unwrap(), SEGMENTER_SIDE);
            seg.segment(&frame, &view).unwrap();
            for (u, v) in kps {
                all += 1;
                on += usize::from(mask_at(&seg, &view, u, v) > 0.5);
            }
            area += seg.mask.iter().filter(|&&p| p > 0.5).count() as f64 / seg.mask.len() as f64 / 5.0;
        }
        // A selfie model on full bodies misses thin limbs at the mask's edge: 62 of 74 measured.
        assert!(on as f64 >= 0.8 * all as f64, "{on} of {all} labelled keypoints on the mask");
        assert!((0.05..0.5).contains(&area), "the mask covers {area:.2} of the view");
    }

    #[test]
    fn a_pasted_crop_keeps_the_person_and_replaces_the_room() {
        let mut seg = Segmenter::load(Path::new(SEGMENTER)).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        std::fs::copy(format!("{CLIP}/000040.jpg"), tmp.path().join("room.jpg")).unwrap();
        let paste_in = PasteIn::load(Path::new(SEGMENTER), tmp.path(), 1.0).unwrap();
        let (frame, affine, spec, before, _) = crop(5);
        let mut after = before.clone();
        paste_in.apply(&frame, &affine, &spec, &mut after, &mut Rng::new(3)).unwrap();
        let view = SquareView::about(&affine, InputSize::new(128, 96).unwrap(), SEGMENTER_SIDE);
        seg.segment(&frame, &view).unwrap();
        let (InputTensor::F32(a), InputTensor::F32(b)) = (&before, &after) else { panic!() };
        let (mut person, mut kept, mut room, mut replaced) = (0, 0, 0, 0);
        for v in 0..128 {
            for u in 0..96 {
                let p = mask_at(&seg, &view, u as f32 + 0.5, v as f32 + 0.5);
                let diff =
                    (0..3).map(|c| (a[(c * 128 + v) * 96 + u] - b[(c * 128 + v) * 96 + u]).abs()).fold(0f32, f32::max);
                if p > 0.99 {
                    person += 1;
                    kept += usize::from(diff < 0.05);
                } else if p < 0.01 {
                    room += 1;
                    replaced += usize::from(diff > 0.05);
                }
            }
        }
        assert!(person > 500 && kept == person, "{kept} of {person} person pixels kept");
        assert!(room > 3000 && replaced as f64 > 0.5 * room as f64, "{replaced} of {room} room pixels replaced");
    }

    #[test]
    fn backgrounds_that_are_missing_or_broken_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let e = Backgrounds::load(tmp.path()).err().unwrap().to_string();
        assert!(e.ends_with("no background photos (.jpg, .jpeg, .png)"), "{e}");
        std::fs::write(tmp.path().join("broken.jpg"), b"not a jpeg").unwrap();
        let e = format!("{:#}", Backgrounds::load(tmp.path()).err().unwrap());
        assert!(e.starts_with("background ") && e.contains("broken.jpg: "), "{e}");
        let e = PasteIn::load(Path::new(SEGMENTER), tmp.path(), 1.5).err().unwrap().to_string();
        assert_eq!(e, "--paste-prob must be in 0–1, not 1.5");
    }
}
