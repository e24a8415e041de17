//! Keypoints as heatmaps in the runtime's codec (training targets, and the
//! previous pose a temporal net reads): one Gaussian per keypoint on the
//! heatmap grid (a quarter of the input), centred at the keypoint's exact
//! sub-pixel position — heatmap bin j covers input pixels [j·s, (j+1)·s), its
//! centre is (j + 0.5)·s, as `runtime::decode` reads it (DARK's "unbiased"
//! encoding) — and a weight per keypoint: 0 for unlabelled keypoints and for
//! those whose Gaussian lies wholly outside the grid (as mmpose's
//! `MSRAHeatmap`), else the keypoint's own weight.
//!
//! Also the horizontal flip of a labelled crop, with COCO's left/right pairs.

use crate::arch::InputSize;
use crate::coco::{FLIP_PAIRS, KEYPOINTS};

/// mmpose's σ at a 64×48 heatmap (256×192 input).
pub const SIGMA: f32 = 2.0;

/// Writes 17 heatmaps (row-major, `17 × H/4 × W/4`) for `keypoints` given as
/// (x, y, visibility) in input pixels; visibility 0 means unlabelled.
/// `weights[k]` becomes `keypoint_weights[k]`, or 0 where there is no target.
pub fn encode(
    keypoints: &[[f32; 3]; KEYPOINTS],
    input: InputSize,
    sigma: f32,
    keypoint_weights: &[f32; KEYPOINTS],
    heatmaps: &mut [f32],
    weights: &mut [f32; KEYPOINTS],
) {
    let (hh, hw) = input.heatmap();
    let (hh, hw) = (hh as usize, hw as usize);
    let plane = hh * hw;
    assert_eq!(heatmaps.len(), KEYPOINTS * plane, "heatmap buffer size");
    let stride = (input.width as f32 / hw as f32, input.height as f32 / hh as f32);
    let reach = 3.0 * sigma;
    for (k, kp) in keypoints.iter().enumerate() {
        let hm = &mut heatmaps[k * plane..(k + 1) * plane];
        hm.fill(0.0);
        let (mx, my) = (kp[0] / stride.0 - 0.5, kp[1] / stride.1 - 0.5);
        let outside =
            mx + reach < 0.0 || my + reach < 0.0 || mx - reach > (hw - 1) as f32 || my - reach > (hh - 1) as f32;
        if kp[2] <= 0.0 || !kp[0].is_finite() || !kp[1].is_finite() || outside {
            weights[k] = 0.0;
            continue;
        }
        weights[k] = keypoint_weights[k];
        let inv = 1.0 / (2.0 * sigma * sigma);
        for (y, row) in hm.chunks_exact_mut(hw).enumerate() {
            let dy = y as f32 - my;
            for (x, v) in row.iter_mut().enumerate() {
                let dx = x as f32 - mx;
                *v = (-(dx * dx + dy * dy) * inv).exp();
            }
        }
    }
}

/// A temporal net's prior: a unit Gaussian (σ = [`SIGMA`]) for each keypoint
/// with v > 0 (input pixels of the crop), empty heatmaps for the others.
pub fn encode_prior(keypoints: &[[f32; 3]; KEYPOINTS], input: InputSize, heatmaps: &mut [f32]) {
    let mut unused = [0f32; KEYPOINTS];
    encode(keypoints, input, SIGMA, &[1.0; KEYPOINTS], heatmaps, &mut unused);
}

/// Mirrors keypoints of a `width`-pixel-wide crop left to right (x → width − x
/// in continuous pixel coordinates) and swaps left and right keypoints.
pub fn flip_keypoints(keypoints: &mut [[f32; 3]; KEYPOINTS], width: f32) {
    for kp in keypoints.iter_mut() {
        if kp[2] > 0.0 {
            kp[0] = width - kp[0];
        }
    }
    for (l, r) in FLIP_PAIRS {
        keypoints.swap(l as usize, r as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::decode::{decode_heatmaps, Refine};

    fn sample() -> [[f32; 3]; KEYPOINTS] {
        let mut kps = [[0.0f32; 3]; KEYPOINTS];
        for (k, kp) in kps.iter_mut().enumerate() {
            *kp = [20.3 + 9.1 * k as f32, 30.7 + 12.9 * k as f32, 2.0];
        }
        kps
    }

    #[test]
    fn targets_decode_back_to_their_keypoints() {
        let input = InputSize::DEFAULT;
        let kps = sample();
        let mut hm = vec![0f32; KEYPOINTS * 64 * 48];
        let mut w = [0f32; KEYPOINTS];
        encode(&kps, input, SIGMA, &[1.0; KEYPOINTS], &mut hm, &mut w);
        assert_eq!(w, [1.0; KEYPOINTS]);
        let mut scratch = vec![0f32; 64 * 48];
        for (refine, tol) in [(Refine::Dark, 0.05), (Refine::Quarter, 2.0)] {
            let mut out = [[0f32; 3]; KEYPOINTS];
            decode_heatmaps(&hm, (64, 48), (4.0, 4.0), refine, &mut scratch, &mut out);
            for (k, (got, want)) in out.iter().zip(&kps).enumerate() {
                let err = (got[0] - want[0]).hypot(got[1] - want[1]);
                assert!(err < tol, "{refine:?} keypoint {k}: {got:?} vs {want:?} ({err} px)");
                assert!(got[2] > 0.9, "peak score {}", got[2]);
            }
        }
    }

    #[test]
    fn unlabelled_and_outside_keypoints_get_no_target() {
        let input = InputSize::new(128, 96).unwrap();
        let mut kps = sample();
        kps[3][2] = 0.0; // unlabelled
        kps[4] = [-40.0, 10.0, 2.0]; // far left of the crop
        kps[5] = [-2.0, 10.0, 2.0]; // just outside: its Gaussian still reaches in
        let mut hm = vec![1f32; KEYPOINTS * 32 * 24];
        let mut w = [0f32; KEYPOINTS];
        let mut kw = [1.0f32; KEYPOINTS];
        kw[0] = 1.5;
        encode(&kps, input, SIGMA, &kw, &mut hm, &mut w);
        let plane = 32 * 24;
        assert_eq!((w[0], w[3], w[4], w[5]), (1.5, 0.0, 0.0, 1.0));
        assert!(hm[3 * plane..5 * plane].iter().all(|&v| v == 0.0), "no target, an all-zero map");
        assert!(hm[5 * plane..6 * plane].iter().any(|&v| v > 0.1));
    }

    #[test]
    fn flipping_mirrors_and_swaps_sides_and_twice_is_identity() {
        let kps = sample();
        let mut f = kps;
        flip_keypoints(&mut f, 192.0);
        assert_eq!(f[0][0], 192.0 - kps[0][0], "the nose stays the nose");
        assert_eq!(f[1], [192.0 - kps[2][0], kps[2][1], 2.0], "left eye ← mirrored right eye");
        flip_keypoints(&mut f, 192.0);
        for (a, b) in f.iter().zip(&kps) {
            assert!((a[0] - b[0]).abs() < 1e-4 && a[1] == b[1] && a[2] == b[2], "{a:?} vs {b:?}");
        }
    }
}
