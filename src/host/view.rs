//! What a helper model sees of a training crop, for the models that run
//! beside training on every crop (the dense teacher, the person segmenter):
//! a square input about the crop's centre, widened from the crop's shorter
//! side (a 128×96 crop becomes 128×128 crop pixels), through the crop's own
//! map to the image — the same rotation and flip — so the model reads the
//! original pixels at its own resolution. Also the bilinear read-back of its
//! output planes and one model per batch-preparation thread.

use std::sync::{Mutex, MutexGuard};

use crate::arch::InputSize;
use crate::runtime::preprocess::Affine;

/// A `side × side` model input about a crop.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SquareView {
    /// View pixels → image pixels.
    pub to_image: Affine,
    /// Crop pixels per view pixel.
    pub scale: f32,
    /// Crop pixel of the view's origin.
    pub offset: (f32, f32),
}

impl SquareView {
    /// The square view of `side` pixels about the crop `crop` (crop pixels →
    /// image, flip included) of a network input `input`.
    pub fn about(crop: &Affine, input: InputSize, side: u32) -> SquareView {
        let (w, h) = (input.width as f32, input.height as f32);
        let square = w.max(h);
        let (m, ox, oy) = (square / side as f32, (w - square) / 2.0, (h - square) / 2.0);
        let [a, b, c, d, e, f] = crop.0;
        let to_image = Affine([a * m, b * m, a * ox + b * oy + c, d * m, e * m, d * ox + e * oy + f]);
        SquareView { to_image, scale: m, offset: (ox, oy) }
    }

    /// Crop pixels → view pixels (continuous coordinates).
    pub fn from_crop(&self, u: f32, v: f32) -> (f32, f32) {
        ((u - self.offset.0) / self.scale, (v - self.offset.1) / self.scale)
    }

    /// View pixels → crop pixels.
    pub fn to_crop(&self, u: f32, v: f32) -> (f32, f32) {
        (u * self.scale + self.offset.0, v * self.scale + self.offset.1)
    }
}

/// Bilinear sample of a row-major `height × width` plane at `(x, y)`, cell
/// centres at integers; 0 outside.
pub fn sample_plane(plane: &[f32], (height, width): (usize, usize), x: f32, y: f32) -> f32 {
    let (x0, y0) = (x.floor(), y.floor());
    let (tx, ty) = (x - x0, y - y0);
    let (x0, y0) = (x0 as i64, y0 as i64);
    let mut acc = 0.0;
    for (dy, wy) in [(0, 1.0 - ty), (1, ty)] {
        for (dx, wx) in [(0, 1.0 - tx), (1, tx)] {
            let (px, py) = (x0 + dx, y0 + dy);
            if px >= 0 && py >= 0 && (px as usize) < width && (py as usize) < height {
                acc += wx * wy * plane[py as usize * width + px as usize];
            }
        }
    }
    acc
}

/// One `T` (a tract plan, which runs one input at a time) per rayon thread.
pub struct PerThread<T>(Vec<Mutex<T>>);

impl<T> PerThread<T> {
    /// One per thread of rayon's pool, made by `make`.
    pub fn new(make: impl Fn() -> anyhow::Result<T>) -> anyhow::Result<PerThread<T>> {
        let n = rayon::current_num_threads().max(1);
        Ok(PerThread((0..n).map(|_| make().map(Mutex::new)).collect::<anyhow::Result<_>>()?))
    }

    /// The calling rayon thread's (shared, and then waited for, only off rayon's pool).
    pub fn mine(&self) -> MutexGuard<'_, T> {
        let i = rayon::current_thread_index().unwrap_or(0) % self.0.len();
        self.0[i].lock().unwrap_or_else(|e| e.into_inner())
    }
}
