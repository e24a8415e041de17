//! The COCO person-keypoint vocabulary: 17 named joints, the skeleton drawn
//! between them and the left/right pairs swapped by a horizontal flip.

/// Number of COCO keypoints.
pub const KEYPOINTS: usize = 17;

/// COCO keypoint names, in COCO order.
pub const KEYPOINT_NAMES: [&str; KEYPOINTS] = [
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
];

/// Limbs as 0-based keypoint index pairs (COCO's skeleton, 1-based there).
pub const SKELETON: [(u8, u8); 19] = [
    (15, 13),
    (13, 11),
    (16, 14),
    (14, 12),
    (11, 12),
    (5, 11),
    (6, 12),
    (5, 6),
    (5, 7),
    (6, 8),
    (7, 9),
    (8, 10),
    (1, 2),
    (0, 1),
    (0, 2),
    (1, 3),
    (2, 4),
    (3, 5),
    (4, 6),
];

/// Left/right keypoint pairs exchanged by a horizontal flip.
pub const FLIP_PAIRS: [(u8, u8); 8] = [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)];

/// COCO's per-keypoint OKS sigmas (pycocotools `kpt_oks_sigmas`).
pub const OKS_SIGMAS: [f64; KEYPOINTS] = [
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089,
    0.089,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flip_pairs_swap_left_and_right_names() {
        for (l, r) in FLIP_PAIRS {
            let (l, r) = (KEYPOINT_NAMES[l as usize], KEYPOINT_NAMES[r as usize]);
            assert_eq!(l.replace("left", "right"), r);
        }
        assert!(SKELETON.iter().all(|&(a, b)| (a as usize) < KEYPOINTS && (b as usize) < KEYPOINTS));
    }
}
