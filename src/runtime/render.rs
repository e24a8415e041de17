//! Overlay with embedded-graphics straight onto the RGB frame buffer: limbs
//! and joints coloured by confidence (red → yellow → green), the ROI box in
//! blue. Drawing does not allocate.

use std::convert::Infallible;

use anyhow::Context;

use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{Circle, Line, PrimitiveStyle, Rectangle};

use super::frame::Frame;
use super::pose::Pose;
use crate::coco::SKELETON;

impl OriginDimensions for Frame {
    fn size(&self) -> Size {
        Size::new(self.width, self.height)
    }
}

impl DrawTarget for Frame {
    type Color = Rgb888;
    type Error = Infallible;

    fn draw_iter<I: IntoIterator<Item = Pixel<Rgb888>>>(&mut self, pixels: I) -> Result<(), Infallible> {
        for Pixel(p, c) in pixels {
            if p.x >= 0 && p.y >= 0 && (p.x as u32) < self.width && (p.y as u32) < self.height {
                self.set_pixel(p.x as u32, p.y as u32, [c.r(), c.g(), c.b()]);
            }
        }
        Ok(())
    }
}

/// Red (0) → yellow (0.5) → green (1).
pub fn score_color(score: f32) -> Rgb888 {
    let s = score.clamp(0.0, 1.0);
    let r = if s < 0.5 { 255 } else { (255.0 * (1.0 - s) * 2.0) as u8 };
    let g = if s > 0.5 { 255 } else { (255.0 * s * 2.0) as u8 };
    Rgb888::new(r, g, 40)
}

/// Draws the skeleton (keypoints above `min_score`) and the pose's box.
pub fn draw_pose(frame: &mut Frame, pose: &Pose, min_score: f32) {
    let scale = (frame.width.max(frame.height) as f32 / 640.0).max(0.5);
    let [bx, by, bw, bh] = pose.bbox;
    let _ = Rectangle::new(Point::new(bx as i32, by as i32), Size::new(bw.max(1.0) as u32, bh.max(1.0) as u32))
        .into_styled(PrimitiveStyle::with_stroke(Rgb888::new(60, 120, 255), 1))
        .draw(frame);
    let kp = &pose.keypoints;
    let pt = |k: usize| Point::new(kp[k][0].round() as i32, kp[k][1].round() as i32);
    for &(a, b) in &SKELETON {
        let (a, b) = (a as usize, b as usize);
        let s = kp[a][2].min(kp[b][2]);
        if s >= min_score {
            let style = PrimitiveStyle::with_stroke(score_color(s), (3.0 * scale) as u32);
            let _ = Line::new(pt(a), pt(b)).into_styled(style).draw(frame);
        }
    }
    let d = (7.0 * scale) as u32;
    for (k, p) in kp.iter().enumerate() {
        if p[2] >= min_score {
            let _ = Circle::with_center(pt(k), d).into_styled(PrimitiveStyle::with_fill(score_color(p[2]))).draw(frame);
        }
    }
}

/// Writes a frame as PNG (allocates: only with `--overlay`).
pub fn save_png(frame: &Frame, path: &std::path::Path) -> anyhow::Result<()> {
    image::save_buffer(path, &frame.rgb, frame.width, frame.height, image::ExtendedColorType::Rgb8)
        .with_context(|| format!("cannot write {}", path.display()))
}
