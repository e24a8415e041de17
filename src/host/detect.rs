//! People in a whole frame, for labelling: MoveNet MultiPose (up to six people,
//! each with a box, a score and 17 keypoints) run through the runtime's engine,
//! so that `vipnas label --detector` starts a track for everyone who appears
//! in a clip instead of boxes picked by hand. [`PersonDetector`] is the seam:
//! the tests drive the labeller with a detector that replays human boxes.

use std::path::Path;

use anyhow::{ensure, Result};

use crate::arch::InputSize;
use crate::bundle::{ColorOrder, InputSpec, InputType, Layout};
use crate::coco::KEYPOINTS;
use crate::runtime::engine::{Engine, EngineOptions, InputTensor, TractEngine};
use crate::runtime::frame::Frame;
use crate::runtime::preprocess::{crop_into, Affine, Roi};

/// One person found in a frame, in image coordinates.
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    /// `(x, y, w, h)`, clipped to the frame.
    pub bbox: [f32; 4],
    pub score: f32,
}

/// Finds the people in a whole frame.
pub trait PersonDetector {
    /// The people in `frame` whose score is at least the detector's threshold.
    fn detect(&mut self, frame: &Frame) -> Result<Vec<Detection>>;
}

/// MoveNet MultiPose's output per person: 17 × (y, x, score), then
/// (ymin, xmin, ymax, xmax, score), all normalised to the input.
const PERSON: usize = 3 * KEYPOINTS + 5;

/// MoveNet MultiPose (an int32 NHWC RGB input of any size that is a multiple
/// of 32, output `[1, 6, 56]`), loaded for one input size; a frame is
/// letterboxed into it whole.
pub struct MultiPose {
    engine: TractEngine,
    spec: InputSpec,
    input: InputTensor,
    output: Vec<f32>,
    /// People scoring below this are not reported.
    pub min_score: f32,
}

impl MultiPose {
    /// Loads the ONNX at `path` for this input size.
    pub fn load(path: &Path, input: InputSize, threads: usize, min_score: f32) -> Result<MultiPose> {
        let (width, height) = (input.width, input.height);
        let options = EngineOptions::new(InputType::I32, threads);
        let engine = TractEngine::from_path_with(path, &[1, height as usize, width as usize, 3], &options)?;
        let people = engine.output_shape().get(1).copied().unwrap_or(0);
        ensure!(
            engine.output_shape().len() == 3 && engine.output_shape()[2] == PERSON && people >= 1,
            "{}: output {:?}, not MoveNet MultiPose's [1, people, {PERSON}]",
            path.display(),
            engine.output_shape()
        );
        let spec = InputSpec {
            name: "input".into(),
            height,
            width,
            layout: Layout::Nhwc,
            dtype: InputType::I32,
            color: ColorOrder::Rgb,
            mean: [0.0; 3],
            std: [1.0; 3],
        };
        let input = InputTensor::for_spec(&spec);
        let output = vec![0.0; engine.output_shape().iter().product()];
        Ok(MultiPose { engine, spec, input, output, min_score })
    }
}

impl PersonDetector for MultiPose {
    fn detect(&mut self, frame: &Frame) -> Result<Vec<Detection>> {
        let (w, h) = (self.spec.width, self.spec.height);
        let roi = Roi::full_frame(frame.width, frame.height, w as f32 / h as f32);
        let affine = Affine::crop_to_image(&roi, w, h);
        crop_into(frame, &affine, &self.spec, &mut self.input);
        self.engine.run(&[&self.input], &mut self.output)?;
        Ok(people(&self.output, &affine, (w, h), frame, self.min_score))
    }
}

/// The people of a MultiPose output scoring at least `min_score`, boxes mapped
/// through `affine` (input → image) and clipped to the frame; empty boxes dropped.
fn people(output: &[f32], affine: &Affine, (w, h): (u32, u32), frame: &Frame, min_score: f32) -> Vec<Detection> {
    let (fw, fh) = (frame.width as f32, frame.height as f32);
    output
        .chunks_exact(PERSON)
        .filter_map(|p| {
            let &[ymin, xmin, ymax, xmax, score] = &p[3 * KEYPOINTS..] else { return None };
            if score.is_nan() || score < min_score {
                return None;
            }
            let (x0, y0) = affine.apply(xmin * w as f32, ymin * h as f32);
            let (x1, y1) = affine.apply(xmax * w as f32, ymax * h as f32);
            let (x0, y0, x1, y1) = (x0.clamp(0.0, fw), y0.clamp(0.0, fh), x1.clamp(0.0, fw), y1.clamp(0.0, fh));
            (x1 - x0 >= 1.0 && y1 - y0 >= 1.0).then_some(Detection { bbox: [x0, y0, x1 - x0, y1 - y0], score })
        })
        .collect()
}

/// Intersection over union of two `(x, y, w, h)` boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let ix = ((a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0])).max(0.0);
    let iy = ((a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1])).max(0.0);
    let inter = ix * iy;
    let union = a[2] * a[3] + b[2] * b[3] - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_come_back_through_the_letterbox_and_low_scores_are_dropped() {
        // A 640×480 frame letterboxed into a 256×256 input: 640 wide, 80 px of
        // padding above and below.
        let frame = Frame::new(640, 480);
        let roi = Roi::full_frame(640, 480, 1.0);
        let affine = Affine::crop_to_image(&roi, 256, 256);
        let mut out = vec![0.0; 2 * PERSON];
        // Person 0: x 0.25–0.5 of the input, y 0.25–0.75 → image x 160–320, y 80–400.
        out[3 * KEYPOINTS..PERSON].copy_from_slice(&[0.25, 0.25, 0.75, 0.5, 0.9]);
        // Person 1: below the threshold.
        out[PERSON + 3 * KEYPOINTS..].copy_from_slice(&[0.3, 0.3, 0.6, 0.6, 0.1]);
        let d = people(&out, &affine, (256, 256), &frame, 0.2);
        assert_eq!(d.len(), 1);
        let b = d[0].bbox;
        for (got, want) in b.iter().zip([160.0, 80.0, 160.0, 320.0]) {
            assert!((got - want).abs() < 1e-3, "{b:?}");
        }
        // A box in the padding is clipped away.
        out[3 * KEYPOINTS..PERSON].copy_from_slice(&[0.0, 0.1, 0.1, 0.5, 0.9]);
        assert!(people(&out, &affine, (256, 256), &frame, 0.2).is_empty());
    }

    #[test]
    fn iou_of_boxes() {
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[0.0, 0.0, 10.0, 10.0]), 1.0);
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[20.0, 0.0, 10.0, 10.0]), 0.0);
        assert!((iou(&[0.0, 0.0, 10.0, 10.0], &[5.0, 0.0, 10.0, 10.0]) - 50.0 / 150.0).abs() < 1e-6);
    }

    #[test]
    fn a_single_pose_model_is_not_a_detector() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/movenet-lightning/spatial.onnx");
        let input = InputSize::new(192, 192).unwrap();
        let err = MultiPose::load(&path, input, 1, 0.2).err().unwrap();
        assert_eq!(
            err.to_string(),
            format!("{}: output [1, 1, 17, 3], not MoveNet MultiPose's [1, people, 56]", path.display())
        );
    }
}
