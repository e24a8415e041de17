//! Photometric augmentation of a prepared crop: what a new camera, light or
//! scene changes while the pose stays — colour jitter (brightness, contrast,
//! saturation, as mmcv's `PhotoMetricDistortion` without its hue step),
//! Gaussian blur, Gaussian pixel noise and random erasing (one rectangle of
//! random pixels: an occluder, as RTMPose's `CoarseDropout`; the keypoints
//! under it keep their targets, so the network learns to infer them).
//!
//! Applied to the normalised network input in place, in 0–255 pixel units;
//! the targets are untouched.

use crate::arch::rng::Rng;
use crate::bundle::{ColorOrder, InputSpec, Layout};
use crate::runtime::engine::InputTensor;

/// Probabilities and ranges; [`Photometric::NONE`] turns everything off.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Photometric {
    /// Probability of adding one offset in [−b, b] to every channel.
    pub brightness_prob: f32,
    pub brightness: f32,
    /// Probability of multiplying by a factor in [1 − c, 1 + c].
    pub contrast_prob: f32,
    pub contrast: f32,
    /// Probability of moving each pixel from its grey by a factor in [1 − s, 1 + s].
    pub saturation_prob: f32,
    pub saturation: f32,
    /// Probability of a Gaussian blur with σ in [0.5, `blur_sigma`] input pixels.
    pub blur_prob: f32,
    pub blur_sigma: f32,
    /// Probability of Gaussian noise with σ in [0, `noise_sigma`] (0–255 units).
    pub noise_prob: f32,
    pub noise_sigma: f32,
    /// Probability of erasing one rectangle whose sides are `erase_size`
    /// (min, max) fractions of the crop's.
    pub erase_prob: f32,
    pub erase_size: (f32, f32),
}

impl Photometric {
    pub const NONE: Photometric = Photometric {
        brightness_prob: 0.0,
        brightness: 0.0,
        contrast_prob: 0.0,
        contrast: 0.0,
        saturation_prob: 0.0,
        saturation: 0.0,
        blur_prob: 0.0,
        blur_sigma: 0.0,
        noise_prob: 0.0,
        noise_sigma: 0.0,
        erase_prob: 0.0,
        erase_size: (0.0, 0.0),
    };
}

impl Default for Photometric {
    /// mmcv's `PhotoMetricDistortion` ranges (brightness ±32, contrast and
    /// saturation ×0.5–1.5, each with p 0.5); blur p 0.1 (RTMPose's); noise
    /// p 0.1, σ ≤ 8; erasing p 0.5, sides 20–40 % of the crop (RTMPose's
    /// `CoarseDropout` sizes, at half its probability).
    fn default() -> Photometric {
        Photometric {
            brightness_prob: 0.5,
            brightness: 32.0,
            contrast_prob: 0.5,
            contrast: 0.5,
            saturation_prob: 0.5,
            saturation: 0.5,
            blur_prob: 0.1,
            blur_sigma: 1.5,
            noise_prob: 0.1,
            noise_sigma: 8.0,
            erase_prob: 0.5,
            erase_size: (0.2, 0.4),
        }
    }
}

impl Photometric {
    /// Augments `x` (normalised per `spec`, float) in place. Draws from `rng`
    /// in a fixed order whatever is applied (nothing with [`Photometric::NONE`]),
    /// so a sample's augmentation depends on its seed alone.
    pub fn apply(&self, x: &mut InputTensor, spec: &InputSpec, rng: &mut Rng) {
        let InputTensor::F32(x) = x else { return };
        if *self == Photometric::NONE {
            return; // bit-exact: evaluation and BatchNorm calibration crops stay as they were
        }
        let (h, w) = (spec.height as usize, spec.width as usize);
        let mut u = || rng.uniform() as f32;
        // Every draw happens, used or not.
        let (pb, db, pc, dc, ps, ds, pbl, dbl, pn, dn, pe) = (u(), u(), u(), u(), u(), u(), u(), u(), u(), u(), u());
        let (ew, eh, ex, ey) = (u(), u(), u(), u());
        let seed = rng.next_u64();
        let mut img = Pixels::from_input(x, spec);
        if pb < self.brightness_prob {
            let delta = (2.0 * db - 1.0) * self.brightness;
            img.map(|p| p + delta);
        }
        if pc < self.contrast_prob {
            let alpha = 1.0 + (2.0 * dc - 1.0) * self.contrast;
            img.map(|p| p * alpha);
        }
        if ps < self.saturation_prob {
            img.saturate(1.0 + (2.0 * ds - 1.0) * self.saturation, spec.color);
        }
        if pbl < self.blur_prob {
            img.blur(0.5 + dbl * (self.blur_sigma - 0.5).max(0.0));
        }
        let mut noise = Rng::new(seed);
        if pn < self.noise_prob {
            let sigma = dn * self.noise_sigma;
            img.map(|p| p + sigma * noise.normal() as f32);
        }
        img.map(|p| p.clamp(0.0, 255.0));
        if pe < self.erase_prob {
            let (lo, hi) = self.erase_size;
            let rw = ((lo + ew * (hi - lo)) * w as f32).round().clamp(1.0, w as f32) as usize;
            let rh = ((lo + eh * (hi - lo)) * h as f32).round().clamp(1.0, h as f32) as usize;
            let (x0, y0) = ((ex * (w - rw + 1) as f32) as usize, (ey * (h - rh + 1) as f32) as usize);
            let (x0, y0) = (x0.min(w - rw), y0.min(h - rh));
            for c in 0..3 {
                for v in y0..y0 + rh {
                    for u in x0..x0 + rw {
                        img.set(c, v, u, 255.0 * noise.uniform() as f32);
                    }
                }
            }
        }
        img.to_input(x, spec);
    }
}

/// The crop in 0–255 pixel units, channel planes in the spec's colour order.
struct Pixels {
    h: usize,
    w: usize,
    planes: Vec<f32>,
}

impl Pixels {
    fn index(spec: &InputSpec, c: usize, v: usize, u: usize) -> usize {
        let (h, w) = (spec.height as usize, spec.width as usize);
        match spec.layout {
            Layout::Nchw => (c * h + v) * w + u,
            Layout::Nhwc => (v * w + u) * 3 + c,
        }
    }

    fn from_input(x: &[f32], spec: &InputSpec) -> Pixels {
        let (h, w) = (spec.height as usize, spec.width as usize);
        let mut planes = vec![0.0; 3 * h * w];
        for c in 0..3 {
            for v in 0..h {
                for u in 0..w {
                    planes[(c * h + v) * w + u] = x[Self::index(spec, c, v, u)] * spec.std[c] + spec.mean[c];
                }
            }
        }
        Pixels { h, w, planes }
    }

    fn to_input(&self, x: &mut [f32], spec: &InputSpec) {
        let (h, w) = (self.h, self.w);
        for c in 0..3 {
            for v in 0..h {
                for u in 0..w {
                    x[Self::index(spec, c, v, u)] = (self.planes[(c * h + v) * w + u] - spec.mean[c]) / spec.std[c];
                }
            }
        }
    }

    fn map(&mut self, mut f: impl FnMut(f32) -> f32) {
        self.planes.iter_mut().for_each(|p| *p = f(*p));
    }

    fn set(&mut self, c: usize, v: usize, u: usize, value: f32) {
        self.planes[(c * self.h + v) * self.w + u] = value;
    }

    /// Each pixel moved from its grey (ITU-R BT.601 luma) by `factor`: 0 is
    /// grey, 1 the pixel itself.
    fn saturate(&mut self, factor: f32, color: ColorOrder) {
        let luma = match color {
            ColorOrder::Rgb => [0.299, 0.587, 0.114],
            ColorOrder::Bgr => [0.114, 0.587, 0.299],
        };
        let n = self.h * self.w;
        let (p0, rest) = self.planes.split_at_mut(n);
        let (p1, p2) = rest.split_at_mut(n);
        for ((a, b), c) in p0.iter_mut().zip(p1.iter_mut()).zip(p2.iter_mut()) {
            let grey = luma[0] * *a + luma[1] * *b + luma[2] * *c;
            *a = grey + factor * (*a - grey);
            *b = grey + factor * (*b - grey);
            *c = grey + factor * (*c - grey);
        }
    }

    /// Separable Gaussian blur (radius ⌈2σ⌉, edges clamped).
    fn blur(&mut self, sigma: f32) {
        let r = (2.0 * sigma).ceil() as isize;
        let k: Vec<f32> = (-r..=r).map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp()).collect();
        let sum: f32 = k.iter().sum();
        let k: Vec<f32> = k.iter().map(|v| v / sum).collect();
        let (h, w) = (self.h as isize, self.w as isize);
        let mut tmp = vec![0.0; self.planes.len()];
        for (plane, out) in self.planes.chunks_exact_mut((h * w) as usize).zip(tmp.chunks_exact_mut((h * w) as usize)) {
            for v in 0..h {
                for u in 0..w {
                    out[(v * w + u) as usize] =
                        (-r..=r).map(|i| k[(i + r) as usize] * plane[(v * w + (u + i).clamp(0, w - 1)) as usize]).sum();
                }
            }
            for v in 0..h {
                for u in 0..w {
                    plane[(v * w + u) as usize] =
                        (-r..=r).map(|i| k[(i + r) as usize] * out[((v + i).clamp(0, h - 1) * w + u) as usize]).sum();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::InputSize;
    use crate::runtime::frame::{load_image, Frame};
    use crate::runtime::preprocess::{crop_into, Affine, Roi};

    /// A real 128×96 crop of the bundled clip, normalised as the trainer's.
    fn crop() -> (InputTensor, InputSpec) {
        let spec = InputSpec::for_subnet(InputSize::new(128, 96).unwrap());
        let mut frame = Frame::default();
        load_image(
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pose2sim-cam03/000010.jpg")),
            &mut frame,
        )
        .unwrap();
        let roi = Roi::full_frame(frame.width, frame.height, 0.75);
        let mut x = InputTensor::for_spec(&spec);
        crop_into(&frame, &Affine::crop_to_image(&roi, 96, 128), &spec, &mut x);
        (x, spec)
    }

    fn pixels(x: &InputTensor, spec: &InputSpec) -> Pixels {
        let InputTensor::F32(v) = x else { unreachable!() };
        Pixels::from_input(v, spec)
    }

    #[test]
    fn erasing_replaces_one_rectangle_and_nothing_else() {
        let (x0, spec) = crop();
        let only_erase = Photometric { erase_prob: 1.0, erase_size: (0.2, 0.4), ..Photometric::NONE };
        for seed in 0..5 {
            let mut x = x0.clone();
            only_erase.apply(&mut x, &spec, &mut Rng::new(seed));
            let (a, b) = (pixels(&x0, &spec), pixels(&x, &spec));
            let (mut u0, mut v0, mut u1, mut v1, mut changed) = (usize::MAX, usize::MAX, 0, 0, 0);
            for v in 0..128 {
                for u in 0..96 {
                    if (0..3)
                        .any(|c| (a.planes[(c * 128 + v) * 96 + u] - b.planes[(c * 128 + v) * 96 + u]).abs() > 1e-3)
                    {
                        (u0, v0, u1, v1) = (u0.min(u), v0.min(v), u1.max(u), v1.max(v));
                        changed += 1;
                    }
                }
            }
            let (rw, rh) = (u1 + 1 - u0, v1 + 1 - v0);
            // One filled rectangle (a random pixel may equal the old one by chance: ≥ 98 %).
            assert!(changed as f32 >= 0.98 * (rw * rh) as f32, "seed {seed}: {changed} of {rw}x{rh}");
            assert!((19..=39).contains(&rw) && (25..=52).contains(&rh), "seed {seed}: {rw}x{rh}");
        }
    }

    #[test]
    fn jitter_stays_in_range_and_grey_is_grey() {
        let (x0, spec) = crop();
        let mean = |p: &Pixels| p.planes.iter().sum::<f32>() / p.planes.len() as f32;
        let m0 = mean(&pixels(&x0, &spec));
        let bright = Photometric { brightness_prob: 1.0, brightness: 32.0, ..Photometric::NONE };
        let mut shifts = Vec::new();
        for seed in 0..8 {
            let mut x = x0.clone();
            bright.apply(&mut x, &spec, &mut Rng::new(seed));
            let p = pixels(&x, &spec);
            assert!(p.planes.iter().all(|v| (-1e-3..=255.001).contains(v)));
            shifts.push(mean(&p) - m0);
        }
        assert!(shifts.iter().all(|d| d.abs() <= 32.0), "{shifts:?}");
        assert!(shifts.iter().any(|d| d.abs() > 5.0), "brightness moved nothing: {shifts:?}");
        let mut p = pixels(&x0, &spec);
        p.saturate(0.0, spec.color);
        let n = 128 * 96;
        assert!((0..n)
            .all(|i| (p.planes[i] - p.planes[n + i]).abs() < 1e-3 && (p.planes[i] - p.planes[2 * n + i]).abs() < 1e-3));
    }

    #[test]
    fn blur_smooths_and_keeps_the_mean() {
        let (x, spec) = crop();
        let mut p = pixels(&x, &spec);
        let energy = |p: &Pixels| p.planes.windows(2).map(|w| (w[1] - w[0]).powi(2)).sum::<f32>();
        let mean = |p: &Pixels| p.planes.iter().sum::<f32>() / p.planes.len() as f32;
        let (e0, m0) = (energy(&p), mean(&p));
        p.blur(1.5);
        assert!(energy(&p) < 0.5 * e0, "{} vs {e0}", energy(&p));
        assert!((mean(&p) - m0).abs() < 0.01 * m0, "{} vs {m0}", mean(&p));
    }

    #[test]
    fn the_same_seed_gives_the_same_crop() {
        let (x0, spec) = crop();
        let (mut a, mut b) = (x0.clone(), x0.clone());
        Photometric::default().apply(&mut a, &spec, &mut Rng::new(7));
        Photometric::default().apply(&mut b, &spec, &mut Rng::new(7));
        assert_eq!(a, b);
        let mut none = x0.clone();
        Photometric::NONE.apply(&mut none, &spec, &mut Rng::new(7));
        assert_eq!(none, x0, "NONE changes nothing");
    }
}
