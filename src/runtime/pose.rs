//! `Pose`: 17 keypoints (x, y, score) and a box, in image pixel coordinates.
//!
//! Coordinates are continuous: pixel (i, j) covers [i, i+1) × [j, j+1), so its
//! centre is (i + 0.5, j + 0.5). Files (poses.jsonl, COCO json) use the COCO /
//! OpenPose convention where the centre of pixel i is i: subtract 0.5 on output.

use crate::coco::KEYPOINTS;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pose {
    /// (x, y, score) per COCO keypoint.
    pub keypoints: [[f32; 3]; KEYPOINTS],
    /// The box the pose was estimated in (x, y, w, h): the crop's ROI.
    pub bbox: [f32; 4],
}

impl Default for Pose {
    fn default() -> Pose {
        Pose { keypoints: [[0.0; 3]; KEYPOINTS], bbox: [0.0; 4] }
    }
}

impl Pose {
    pub fn mean_score(&self) -> f32 {
        self.keypoints.iter().map(|k| k[2]).sum::<f32>() / KEYPOINTS as f32
    }
}
