//! Dense distillation: MoveNet SinglePose's own per-keypoint heatmaps as soft
//! targets for the max subnet, beside the point labels.
//!
//! A point label says only where a keypoint is; the teacher's heatmap also
//! says how sure it is and where else it might be (a wrist hidden behind the
//! body spreads over both sides). The teacher reads its heatmaps from inside
//! the same converted graph — the sigmoid of its `kpt_heatmap` head
//! ([`HEATMAP_TENSOR`], `1 × 17 × 64 × 64` for Thunder's 256×256 input),
//! selected as an extra output — so no other model file is needed.
//!
//! The teacher sees the student's crop ([`SquareView`]): the same region of
//! the same image, with the same rotation and flip (its heatmap channels then
//! name the mirrored body's joints, as the flipped labels do), from the
//! original pixels at the teacher's resolution and before the photometric
//! changes. Each student heatmap cell samples the teacher's heatmap
//! bilinearly at the cell's centre.
//!
//! MoveNet's heatmaps answer for every person in view, and the student's
//! target is one person: like MoveNet's own decoder, which weights the heatmap
//! by the distance to its regressed keypoint, each channel is multiplied by a
//! Gaussian window about the teacher's final keypoint (σ = [`WINDOW`] heatmap
//! cells, twice the label Gaussian's). The keypoint's weight is the teacher's
//! score for it, so an unsure teacher teaches little.

use std::path::Path;

use anyhow::{ensure, Context, Result};

use crate::arch::InputSize;
use crate::bundle::{InputSpec, Layout, Manifest};
use crate::coco::KEYPOINTS;
use crate::heatmap::SIGMA;
use crate::host::view::{sample_plane, SquareView};
use crate::runtime::engine::{EngineOptions, InputTensor, TractEngine};
use crate::runtime::frame::Frame;
use crate::runtime::model::input_shape;
use crate::runtime::preprocess::{crop_into, Affine};

/// MoveNet SinglePose's keypoint heatmaps after their sigmoid, NCHW, in the
/// tf2onnx conversion of the tfjs graph (Lightning and Thunder alike).
pub const HEATMAP_TENSOR: &str = "StatefulPartitionedCall/Sigmoid:0";
/// σ of the window about the teacher's keypoint, in student heatmap cells.
pub const WINDOW: f32 = 2.0 * SIGMA;

/// A MoveNet SinglePose bundle whose inner heatmaps are read out.
pub struct DenseTeacher {
    engine: TractEngine,
    spec: InputSpec,
    input: InputTensor,
    /// `17 × side × side`.
    heatmaps: Vec<f32>,
    side: usize,
    /// `17 × (y, x, score)` normalised to the teacher's input.
    points: Vec<f32>,
}

impl DenseTeacher {
    /// Loads the MoveNet SinglePose bundle at `dir` (square NHWC input).
    pub fn load(dir: &Path) -> Result<DenseTeacher> {
        let manifest = Manifest::load(dir)?;
        let spec = manifest.input.clone();
        ensure!(
            spec.layout == Layout::Nhwc && spec.height == spec.width,
            "{}: input {}x{} {:?}; a dense teacher is MoveNet SinglePose (square NHWC input)",
            dir.display(),
            spec.height,
            spec.width,
            spec.layout
        );
        let onnx = dir.join(&manifest.spatial);
        let options = EngineOptions::new(spec.dtype, 1);
        let engine = TractEngine::from_path_selecting(
            &onnx,
            &input_shape(&spec),
            &options,
            &[HEATMAP_TENSOR, manifest.output.name.as_str()],
        )
        .with_context(|| {
            format!("{}: not MoveNet SinglePose (its heatmaps are read as a dense teacher)", dir.display())
        })?;
        let shapes = engine.output_shapes();
        let side = shapes[0].get(2).copied().unwrap_or(0);
        ensure!(
            shapes[0] == [1, KEYPOINTS, side, side] && side > 0 && shapes[1] == [1, 1, KEYPOINTS, 3],
            "{}: outputs {shapes:?}, not MoveNet SinglePose's [1, 17, S, S] heatmaps and [1, 1, 17, 3] keypoints",
            onnx.display()
        );
        let input = InputTensor::for_spec(&spec);
        Ok(DenseTeacher {
            engine,
            spec,
            input,
            heatmaps: vec![0.0; KEYPOINTS * side * side],
            side,
            points: vec![0.0; KEYPOINTS * 3],
        })
    }

    /// The teacher's targets for the student crop `crop` (student input
    /// pixels → image, flip included) of `frame`: `heatmaps`
    /// (`17 × H/4 × W/4` of `input`) and the teacher's score per keypoint in
    /// `weights`.
    pub fn targets(
        &mut self,
        frame: &Frame,
        crop: &Affine,
        input: InputSize,
        heatmaps: &mut [f32],
        weights: &mut [f32; KEYPOINTS],
    ) -> Result<()> {
        let view = SquareView::about(crop, input, self.spec.width);
        crop_into(frame, &view.to_image, &self.spec, &mut self.input);
        self.engine.run_outputs(&[&self.input], &mut [&mut self.heatmaps, &mut self.points])?;

        let (hh, hw) = input.heatmap();
        let (hh, hw) = (hh as usize, hw as usize);
        let plane = hh * hw;
        ensure!(heatmaps.len() == KEYPOINTS * plane, "dense target buffer size");
        let (sx, sy) = (input.width as f32 / hw as f32, input.height as f32 / hh as f32);
        // Teacher heatmap cells per teacher input pixel.
        let g = self.side as f32 / self.spec.width as f32;
        let inv = 1.0 / (2.0 * WINDOW * WINDOW);
        for k in 0..KEYPOINTS {
            let [py, px, score] = [self.points[3 * k], self.points[3 * k + 1], self.points[3 * k + 2]];
            // The teacher's keypoint in student heatmap cells (centres at integers).
            let (u, v) = view.to_crop(px * self.spec.width as f32, py * self.spec.height as f32);
            let (kx, ky) = (u / sx - 0.5, v / sy - 0.5);
            weights[k] = if score.is_finite() { score.clamp(0.0, 1.0) } else { 0.0 };
            let teacher_plane = &self.heatmaps[k * self.side * self.side..(k + 1) * self.side * self.side];
            for (y, row) in heatmaps[k * plane..(k + 1) * plane].chunks_exact_mut(hw).enumerate() {
                for (x, value) in row.iter_mut().enumerate() {
                    let (tu, tv) = view.from_crop((x as f32 + 0.5) * sx, (y as f32 + 0.5) * sy);
                    let (dx, dy) = (x as f32 - kx, y as f32 - ky);
                    let t = sample_plane(teacher_plane, (self.side, self.side), tu * g - 0.5, tv * g - 0.5);
                    *value = t * (-(dx * dx + dy * dy) * inv).exp();
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::InputSpec;
    use crate::host::dataset::{prepare_at, TrainSet, PADDING};
    use crate::runtime::decode::{decode_heatmaps, Refine};
    use crate::runtime::preprocess::Roi;

    const LIGHTNING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/movenet-lightning");
    const CLIP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pose2sim-cam03");

    /// Sample `i` of the human-labelled clip, cropped as for training (no
    /// augmentation but `flip`): the dense targets decoded back to crop
    /// pixels, the teacher's scores, and the human labels in the crop.
    #[allow(clippy::type_complexity)]
    fn dense_on(
        teacher: &mut DenseTeacher,
        i: usize,
        flip: bool,
    ) -> ([[f32; 3]; KEYPOINTS], [f32; KEYPOINTS], [[f32; 3]; KEYPOINTS]) {
        let set = TrainSet::load(Path::new(&format!("{CLIP}.json")), Path::new(CLIP)).unwrap();
        let s = &set.samples[i];
        let input = InputSize::new(128, 96).unwrap();
        let spec = InputSpec::for_subnet(input);
        let roi = Roi::from_box(s.bbox[0], s.bbox[1], s.bbox[2], s.bbox[3], 0.75, PADDING);
        let (mut frame, mut x) = (Frame::default(), InputTensor::for_spec(&spec));
        let (mut labels, mut label_weights) = (vec![0f32; KEYPOINTS * 32 * 24], [0f32; KEYPOINTS]);
        let crop = Affine::crop_to_image(&roi, 96, 128);
        let crop = prepare_at(s, &spec, crop, flip, &mut frame, &mut x, &mut labels, &mut label_weights).unwrap();
        let (mut dense, mut scores) = (vec![0f32; KEYPOINTS * 32 * 24], [0f32; KEYPOINTS]);
        teacher.targets(&frame, &crop, input, &mut dense, &mut scores).unwrap();
        let decode = |hm: &[f32]| {
            let mut kps = [[0f32; 3]; KEYPOINTS];
            decode_heatmaps(hm, (32, 24), (4.0, 4.0), Refine::Dark, &mut vec![0f32; 32 * 24], &mut kps);
            kps
        };
        (decode(&dense), scores, decode(&labels))
    }

    #[test]
    fn the_teachers_heatmaps_land_on_the_human_labels_in_the_students_crop() {
        let mut teacher = DenseTeacher::load(Path::new(LIGHTNING)).unwrap();
        let mut errors = Vec::new();
        for i in [0, 15, 30, 45] {
            let (dense, scores, human) = dense_on(&mut teacher, i, false);
            for k in 0..KEYPOINTS {
                // human[k][2]: the label heatmap's peak (0 where unlabelled).
                if scores[k] > 0.5 && human[k][2] > 0.5 {
                    errors.push((dense[k][0] - human[k][0]).hypot(dense[k][1] - human[k][1]));
                }
            }
        }
        errors.sort_by(f32::total_cmp);
        let median = errors[errors.len() / 2];
        assert!(errors.len() >= 40, "the teacher is confident on {} of 68 keypoints", errors.len());
        // The crop is 128 px high: a median under 3 px is ~2 % of it.
        assert!(median < 3.0, "median distance of the teacher's targets to the human labels: {median} px");
    }

    #[test]
    fn a_flipped_crop_gives_mirrored_targets_under_swapped_names() {
        let mut teacher = DenseTeacher::load(Path::new(LIGHTNING)).unwrap();
        let (plain, plain_scores, _) = dense_on(&mut teacher, 20, false);
        let (flipped, _, _) = dense_on(&mut teacher, 20, true);
        // Left shoulder (5) of the flipped crop is the right shoulder (6) of the plain one, mirrored.
        for (l, r) in [(5, 6), (11, 12), (13, 14)] {
            assert!(plain_scores[r] > 0.3, "keypoint {r}: score {}", plain_scores[r]);
            let (a, b) = (flipped[l], plain[r]);
            let err = (a[0] - (96.0 - b[0])).hypot(a[1] - b[1]);
            assert!(err < 4.0, "keypoint {l} flipped {a:?} vs {r} plain {b:?}: {err} px");
        }
    }

    #[test]
    fn a_bundle_that_is_not_movenet_singlepose_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let manifest = std::fs::read_to_string(Path::new(LIGHTNING).join("manifest.json")).unwrap();
        std::fs::write(tmp.path().join("manifest.json"), manifest.replace("\"nhwc\"", "\"nchw\"")).unwrap();
        std::fs::copy(Path::new(LIGHTNING).join("spatial.onnx"), tmp.path().join("spatial.onnx")).unwrap();
        let e = DenseTeacher::load(tmp.path()).err().unwrap().to_string();
        assert!(e.ends_with("input 192x192 Nchw; a dense teacher is MoveNet SinglePose (square NHWC input)"), "{e}");
    }
}
