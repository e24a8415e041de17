//! Keypoints from model outputs, in crop coordinates (continuous pixels of the
//! model input). Heatmaps: arg-max with sub-pixel refinement — the classic
//! quarter offset towards the larger neighbour, or DARK (Zhang et al. 2020: a
//! second-order Taylor step on the Gaussian-smoothed log heatmap). MoveNet-style
//! outputs: (y, x, score) normalised to the input.
//!
//! Heatmap bin j covers input pixels [j·s, (j+1)·s), so its centre is
//! (j + 0.5)·s: the codec the trainer encodes targets with (unbiased).

use crate::coco::KEYPOINTS;

/// Sub-pixel refinement of heatmap maxima (`run --refine`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Refine {
    /// 0.25 bin towards the higher neighbour (SimpleBaseline / mmpose default).
    #[default]
    Quarter,
    /// Distribution-aware (DARK) Taylor refinement.
    Dark,
}

/// Decodes N×17×H×W heatmaps (batch 0) into (x, y, score) crop coordinates.
/// `scratch` must hold H×W floats (used by DARK; allocation-free).
pub fn decode_heatmaps(
    heatmaps: &[f32],
    (hh, hw): (usize, usize),
    stride: (f32, f32),
    refine: Refine,
    scratch: &mut [f32],
    out: &mut [[f32; 3]; KEYPOINTS],
) {
    let plane = hh * hw;
    for (k, kp) in out.iter_mut().enumerate() {
        let hm = &heatmaps[k * plane..(k + 1) * plane];
        let (mut best, mut score) = (0usize, f32::NEG_INFINITY);
        for (i, &v) in hm.iter().enumerate() {
            if v > score {
                score = v;
                best = i;
            }
        }
        let (y, x) = (best / hw, best % hw);
        let (mut fx, mut fy) = (x as f32, y as f32);
        let dark = match refine {
            Refine::Dark => dark_offset(hm, (hh, hw), (x, y), &mut scratch[..plane]),
            Refine::Quarter => None,
        };
        if let Some((dx, dy)) = dark {
            fx += dx;
            fy += dy;
        } else {
            if x > 0 && x + 1 < hw {
                fx += 0.25 * (hm[best + 1] - hm[best - 1]).signum();
            }
            if y > 0 && y + 1 < hh {
                fy += 0.25 * (hm[best + hw] - hm[best - hw]).signum();
            }
        }
        *kp = [(fx + 0.5) * stride.0, (fy + 0.5) * stride.1, score];
    }
}

/// DARK: smooth with a Gaussian (σ = 2, the training σ), take logs, and step
/// `-H⁻¹ ∇` at the maximum. Offsets are clamped to ±1 bin. `None` near the
/// border (the blur would be one-sided and bias the step) or on a flat maximum:
/// the caller falls back to the quarter offset.
fn dark_offset(
    hm: &[f32],
    (hh, hw): (usize, usize),
    (x, y): (usize, usize),
    scratch: &mut [f32],
) -> Option<(f32, f32)> {
    const REACH: usize = 4; // 1 (derivatives) + 3 (blur radius)
    if x < REACH || y < REACH || x + REACH >= hw || y + REACH >= hh {
        return None;
    }
    // Only the 3×3 neighbourhood of (x, y) is needed for the derivatives:
    // blur it (kernel radius 3) into scratch.
    let max = hm[y * hw + x];
    let g = |d: i64| (-(d * d) as f32 / 8.0).exp();
    let at = |xx: i64, yy: i64| -> f32 {
        let (mut acc, mut wsum) = (0.0, 0.0);
        for dy in -3i64..=3 {
            for dx in -3i64..=3 {
                let w = g(dx) * g(dy);
                acc += w * hm[(yy + dy) as usize * hw + (xx + dx) as usize];
                wsum += w;
            }
        }
        (acc / wsum).max(1e-10 * max.abs().max(1e-10))
    };
    for dy in -1i64..=1 {
        for dx in -1i64..=1 {
            scratch[((dy + 1) * 3 + dx + 1) as usize] = at(x as i64 + dx, y as i64 + dy).ln();
        }
    }
    let l = |dx: i64, dy: i64| scratch[((dy + 1) * 3 + dx + 1) as usize];
    let gx = 0.5 * (l(1, 0) - l(-1, 0));
    let gy = 0.5 * (l(0, 1) - l(0, -1));
    let dxx = l(1, 0) - 2.0 * l(0, 0) + l(-1, 0);
    let dyy = l(0, 1) - 2.0 * l(0, 0) + l(0, -1);
    let dxy = 0.25 * (l(1, 1) - l(1, -1) - l(-1, 1) + l(-1, -1));
    let det = dxx * dyy - dxy * dxy;
    if det.abs() < 1e-12 || !det.is_finite() {
        return None;
    }
    let ox = -(dyy * gx - dxy * gy) / det;
    let oy = -(dxx * gy - dxy * gx) / det;
    Some((ox.clamp(-1.0, 1.0), oy.clamp(-1.0, 1.0)))
}

/// Decodes a 1×1×17×3 (y, x, score) output normalised to an `in_w × in_h` input.
pub fn decode_keypoints(output: &[f32], (in_w, in_h): (u32, u32), out: &mut [[f32; 3]; KEYPOINTS]) {
    for (k, kp) in out.iter_mut().enumerate() {
        let (y, x, s) = (output[3 * k], output[3 * k + 1], output[3 * k + 2]);
        *kp = [x * in_w as f32, y * in_h as f32, s];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Heatmaps with a Gaussian (σ = 2) centred at known sub-bin positions.
    fn gaussians(hh: usize, hw: usize, centres: &[(f32, f32)]) -> Vec<f32> {
        let mut v = vec![0.0; KEYPOINTS * hh * hw];
        for k in 0..KEYPOINTS {
            let (cx, cy) = centres[k % centres.len()];
            for y in 0..hh {
                for x in 0..hw {
                    let d2 = (x as f32 - cx).powi(2) + (y as f32 - cy).powi(2);
                    v[(k * hh + y) * hw + x] = (-d2 / 8.0).exp();
                }
            }
        }
        v
    }

    #[test]
    fn refinements_recover_sub_bin_centres() {
        let (hh, hw) = (64, 48);
        // The last one is near the border, where DARK falls back to the quarter offset.
        let centres = [(20.3, 30.8), (10.6, 5.2), (40.0, 60.0)];
        let hm = gaussians(hh, hw, &centres);
        let mut scratch = vec![0.0; hh * hw];
        let mut out = [[0.0; 3]; KEYPOINTS];
        for (refine, tol) in [(Refine::Quarter, 0.26), (Refine::Dark, 0.02)] {
            decode_heatmaps(&hm, (hh, hw), (4.0, 4.0), refine, &mut scratch, &mut out);
            for (k, &(cx, cy)) in centres.iter().enumerate() {
                let (x, y) = (out[k][0] / 4.0 - 0.5, out[k][1] / 4.0 - 0.5);
                let tol = if k == 2 { 0.26 } else { tol };
                assert!((x - cx).abs() <= tol && (y - cy).abs() <= tol, "{refine:?} k={k}: ({x},{y}) vs ({cx},{cy})");
                assert!(out[k][2] > 0.9);
            }
        }
    }

    #[test]
    fn keypoint_outputs_scale_to_the_input() {
        let mut raw = vec![0.0; 51];
        raw[0..3].copy_from_slice(&[0.5, 0.25, 0.9]);
        let mut out = [[0.0; 3]; KEYPOINTS];
        decode_keypoints(&raw, (192, 192), &mut out);
        assert_eq!(out[0], [48.0, 96.0, 0.9]);
    }
}
