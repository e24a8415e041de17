//! Top-down preprocessing: a region of interest (ROI) of the frame is warped
//! to the model's input size with bilinear sampling and normalised into a
//! preallocated input tensor. The same affine map brings keypoints back.
//!
//! Coordinates are continuous (pixel i covers [i, i+1)); see `pose.rs`.

use crate::bundle::{ColorOrder, InputSpec, Layout};
use crate::runtime::engine::InputTensor;
use crate::runtime::frame::Frame;

/// An axis-aligned box in image coordinates, centre and size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Roi {
    pub cx: f32,
    pub cy: f32,
    pub w: f32,
    pub h: f32,
}

impl Roi {
    /// The box `(x, y, w, h)` grown to aspect `w/h = aspect` (never shrunk),
    /// then scaled by `padding` around its centre.
    pub fn from_box(x: f32, y: f32, w: f32, h: f32, aspect: f32, padding: f32) -> Roi {
        let (cx, cy) = (x + w / 2.0, y + h / 2.0);
        let (mut w, mut h) = (w.max(1.0), h.max(1.0));
        if w > aspect * h {
            h = w / aspect;
        } else {
            w = h * aspect;
        }
        Roi { cx, cy, w: w * padding, h: h * padding }
    }

    /// The box around `points` (x, y of each keypoint, whatever its score),
    /// grown and padded as [`Roi::from_box`]; `None` without points. The one
    /// keypoint box of the tracker, the half-body crop and temporal training.
    pub fn around<'a>(points: impl IntoIterator<Item = &'a [f32; 3]>, aspect: f32, padding: f32) -> Option<Roi> {
        let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
        for k in points {
            (x0, y0, x1, y1) = (x0.min(k[0]), y0.min(k[1]), x1.max(k[0]), y1.max(k[1]));
        }
        (x0 <= x1).then(|| Roi::from_box(x0, y0, x1 - x0, y1 - y0, aspect, padding))
    }

    /// The whole frame at the model's aspect (padded, never cropped).
    pub fn full_frame(width: u32, height: u32, aspect: f32) -> Roi {
        Roi::from_box(0.0, 0.0, width as f32, height as f32, aspect, 1.0)
    }

    /// This box, no larger than the whole frame's crop and centred inside the
    /// frame: a tracked box can grow to what a fresh start sees, not beyond
    /// (poses spread over the whole crop would otherwise grow it by the
    /// padding every frame).
    pub fn within(self, width: u32, height: u32, aspect: f32) -> Roi {
        let full = Roi::full_frame(width, height, aspect);
        let shrink = (full.h / self.h).min(1.0);
        Roi {
            cx: self.cx.clamp(0.0, width as f32),
            cy: self.cy.clamp(0.0, height as f32),
            w: self.w * shrink,
            h: self.h * shrink,
        }
    }

    /// `(x, y, w, h)`.
    pub fn to_box(&self) -> [f32; 4] {
        [self.cx - self.w / 2.0, self.cy - self.h / 2.0, self.w, self.h]
    }
}

/// `x = a·u + b·v + c`, `y = d·u + e·v + f`: crop coordinates → image coordinates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Affine(pub [f32; 6]);

impl Affine {
    /// Maps the crop `[0, in_w) × [0, in_h)` onto the ROI.
    pub fn crop_to_image(roi: &Roi, in_w: u32, in_h: u32) -> Affine {
        let (sx, sy) = (roi.w / in_w as f32, roi.h / in_h as f32);
        Affine([sx, 0.0, roi.cx - roi.w / 2.0, 0.0, sy, roi.cy - roi.h / 2.0])
    }

    /// Rotation by `degrees` about the ROI centre, then the crop map (training augmentation).
    pub fn crop_to_image_rotated(roi: &Roi, in_w: u32, in_h: u32, degrees: f32) -> Affine {
        let (s, c) = degrees.to_radians().sin_cos();
        let (sx, sy) = (roi.w / in_w as f32, roi.h / in_h as f32);
        let (hw, hh) = (in_w as f32 / 2.0, in_h as f32 / 2.0);
        // x = cx + R · (S · (u - hw, v - hh))
        let (a, b, d, e) = (c * sx, -s * sy, s * sx, c * sy);
        Affine([a, b, roi.cx - a * hw - b * hh, d, e, roi.cy - d * hw - e * hh])
    }

    #[inline]
    pub fn apply(&self, u: f32, v: f32) -> (f32, f32) {
        let m = &self.0;
        (m[0] * u + m[1] * v + m[2], m[3] * u + m[4] * v + m[5])
    }

    pub fn inverse(&self) -> Affine {
        let [a, b, c, d, e, f] = self.0;
        let det = a * e - b * d;
        let (ia, ib, id, ie) = (e / det, -b / det, -d / det, a / det);
        Affine([ia, ib, -(ia * c + ib * f), id, ie, -(id * c + ie * f)])
    }
}

/// Bilinear sample of the frame at continuous `(x, y)`; black outside.
#[inline]
fn sample(frame: &Frame, x: f32, y: f32) -> [f32; 3] {
    // Pixel centres sit at i + 0.5.
    let (fx, fy) = (x - 0.5, y - 0.5);
    let (x0, y0) = (fx.floor(), fy.floor());
    let (tx, ty) = (fx - x0, fy - y0);
    let (x0, y0) = (x0 as i64, y0 as i64);
    let (w, h) = (frame.width as i64, frame.height as i64);
    let mut acc = [0f32; 3];
    for (dy, wy) in [(0, 1.0 - ty), (1, ty)] {
        for (dx, wx) in [(0, 1.0 - tx), (1, tx)] {
            let (px, py) = (x0 + dx, y0 + dy);
            let weight = wx * wy;
            if weight == 0.0 || px < 0 || py < 0 || px >= w || py >= h {
                continue;
            }
            let i = ((py * w + px) * 3) as usize;
            for c in 0..3 {
                acc[c] += weight * frame.rgb[i + c] as f32;
            }
        }
    }
    acc
}

/// Warps the ROI (through `affine`, crop → image) into `out`, normalised per
/// `spec`. Allocation-free.
pub fn crop_into(frame: &Frame, affine: &Affine, spec: &InputSpec, out: &mut InputTensor) {
    let (w, h) = (spec.width as usize, spec.height as usize);
    let order = match spec.color {
        ColorOrder::Rgb => [0, 1, 2],
        ColorOrder::Bgr => [2, 1, 0],
    };
    let scale = [1.0 / spec.std[0], 1.0 / spec.std[1], 1.0 / spec.std[2]];
    for v in 0..h {
        for u in 0..w {
            let (x, y) = affine.apply(u as f32 + 0.5, v as f32 + 0.5);
            let px = sample(frame, x, y);
            for c in 0..3 {
                let value = px[order[c]];
                let idx = match spec.layout {
                    Layout::Nchw => (c * h + v) * w + u,
                    Layout::Nhwc => (v * w + u) * 3 + c,
                };
                match out {
                    InputTensor::F32(buf) => buf[idx] = (value - spec.mean[c]) * scale[c],
                    InputTensor::I32(buf) => buf[idx] = ((value - spec.mean[c]) * scale[c]).round() as i32,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{InputType, IMAGENET_MEAN, IMAGENET_STD};

    #[test]
    fn the_box_around_keypoints_is_their_extent_grown_and_padded() {
        let kps = [[10.0, 140.0, 0.9], [40.0, 20.0, 0.2], [25.0, 80.0, 0.0]];
        assert_eq!(Roi::around(&kps, 0.75, 1.25), Some(Roi::from_box(10.0, 20.0, 30.0, 120.0, 0.75, 1.25)));
        assert_eq!(Roi::around(&kps[..1], 1.0, 1.0).map(|r| (r.cx, r.cy)), Some((10.0, 140.0)));
        assert_eq!(Roi::around(&[], 0.75, 1.25), None);
    }

    #[test]
    fn roi_grows_to_aspect_and_pads() {
        let r = Roi::from_box(10.0, 20.0, 30.0, 120.0, 0.75, 1.25);
        assert_eq!((r.cx, r.cy), (25.0, 80.0));
        assert_eq!((r.w, r.h), (90.0 * 1.25, 120.0 * 1.25));
        let r = Roi::full_frame(360, 640, 1.0);
        assert_eq!((r.w, r.h, r.cx, r.cy), (640.0, 640.0, 180.0, 320.0));
    }

    #[test]
    fn affine_inverse_and_rotation_round_trip() {
        let roi = Roi { cx: 100.0, cy: 50.0, w: 96.0, h: 128.0 };
        let a = Affine::crop_to_image(&roi, 192, 256);
        assert_eq!(a.apply(0.0, 0.0), (52.0, -14.0));
        assert_eq!(a.apply(96.0, 128.0), (100.0, 50.0));
        let r = Affine::crop_to_image_rotated(&roi, 192, 256, 30.0);
        assert!((r.apply(96.0, 128.0).0 - 100.0).abs() < 1e-4);
        for m in [a, r] {
            let (x, y) = m.apply(17.0, 33.0);
            let (u, v) = m.inverse().apply(x, y);
            assert!((u - 17.0).abs() < 1e-3 && (v - 33.0).abs() < 1e-3);
        }
    }

    #[test]
    fn crop_of_identity_roi_reproduces_pixels_and_normalises() {
        let mut f = Frame::new(4, 2);
        for (i, v) in f.rgb.iter_mut().enumerate() {
            *v = (i * 10) as u8;
        }
        let spec = InputSpec {
            name: "input".into(),
            height: 2,
            width: 4,
            layout: Layout::Nchw,
            dtype: InputType::F32,
            color: ColorOrder::Bgr,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        };
        let roi = Roi { cx: 2.0, cy: 1.0, w: 4.0, h: 2.0 };
        let mut out = InputTensor::for_spec(&spec);
        crop_into(&f, &Affine::crop_to_image(&roi, 4, 2), &spec, &mut out);
        let InputTensor::F32(v) = &out else { panic!() };
        // Channel 0 is blue (BGR): pixel (1, 1) has blue = byte 3*(4+1)+2 = 17 → 170.
        let expect = (170.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0];
        assert!((v[4 + 1] - expect).abs() < 1e-5, "{} vs {expect}", v[5]);
        let spec_i = InputSpec {
            layout: Layout::Nhwc,
            dtype: InputType::I32,
            color: ColorOrder::Rgb,
            mean: [0.0; 3],
            std: [1.0; 3],
            ..spec
        };
        let mut out = InputTensor::for_spec(&spec_i);
        crop_into(&f, &Affine::crop_to_image(&roi, 4, 2), &spec_i, &mut out);
        let InputTensor::I32(v) = &out else { panic!() };
        let raw: Vec<i32> = f.rgb.iter().map(|&b| b as i32).collect();
        assert_eq!(v, &raw);
    }
}
