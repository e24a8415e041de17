//! `synthetic[:N]`: a drawn figure walking across a gradient, with known
//! keypoints. For pipeline tests and demos without a camera; no allocation per
//! frame.

use anyhow::Result;
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{Circle, Line, PrimitiveStyle};

use super::{FrameRead, FrameSource, SourceStats};
use crate::coco::{KEYPOINTS, SKELETON};
use crate::runtime::frame::Frame;

pub struct SyntheticSource {
    width: u32,
    height: u32,
    frames: Option<u64>,
    index: u64,
    stats: SourceStats,
}

impl SyntheticSource {
    pub fn new(width: u32, height: u32, frames: Option<u64>) -> SyntheticSource {
        SyntheticSource { width, height, frames, index: 0, stats: SourceStats::default() }
    }

    /// The figure's 17 COCO keypoints (x, y in pixels) in frame `i`.
    pub fn keypoints(&self, i: u64) -> [[f32; 2]; KEYPOINTS] {
        let (w, h) = (self.width as f32, self.height as f32);
        let t = i as f32 * 0.15;
        let cx = w * (0.5 + 0.25 * (i as f32 * 0.02).sin());
        let s = h / 480.0;
        let swing = t.sin() * 25.0 * s;
        let p = |dx: f32, dy: f32| [cx + dx * s, h * 0.15 + dy * s];
        [
            p(0.0, 20.0),  // nose
            p(-6.0, 12.0), // eyes
            p(6.0, 12.0),
            p(-14.0, 16.0), // ears
            p(14.0, 16.0),
            p(-40.0, 70.0), // shoulders
            p(40.0, 70.0),
            [p(-55.0, 0.0)[0] + swing, p(0.0, 130.0)[1]], // elbows
            [p(55.0, 0.0)[0] - swing, p(0.0, 130.0)[1]],
            [p(-60.0, 0.0)[0] + 1.6 * swing, p(0.0, 185.0)[1]], // wrists
            [p(60.0, 0.0)[0] - 1.6 * swing, p(0.0, 185.0)[1]],
            p(-28.0, 190.0), // hips
            p(28.0, 190.0),
            [p(-30.0, 0.0)[0] - swing, p(0.0, 265.0)[1]], // knees
            [p(30.0, 0.0)[0] + swing, p(0.0, 265.0)[1]],
            [p(-32.0, 0.0)[0] - 1.5 * swing, p(0.0, 340.0)[1]], // ankles
            [p(32.0, 0.0)[0] + 1.5 * swing, p(0.0, 340.0)[1]],
        ]
    }

    /// Draws frame `i` into `frame`.
    pub fn draw(&self, i: u64, frame: &mut Frame) {
        frame.resize(self.width, self.height);
        let (w, h) = (self.width, self.height);
        for y in 0..h {
            for x in 0..w {
                let g = (40 + 120 * y / h) as u8;
                frame.set_pixel(x, y, [g / 2, g, (60 + 100 * x / w) as u8]);
            }
        }
        let kp = self.keypoints(i);
        let pt = |k: usize| Point::new(kp[k][0] as i32, kp[k][1] as i32);
        let s = (h as f32 / 480.0).max(0.25);
        let limb = PrimitiveStyle::with_stroke(Rgb888::new(230, 180, 140), (14.0 * s) as u32);
        for &(a, b) in SKELETON.iter().filter(|(a, b)| *a >= 5 && *b >= 5) {
            let _ = Line::new(pt(a as usize), pt(b as usize)).into_styled(limb).draw(frame);
        }
        let torso = PrimitiveStyle::with_stroke(Rgb888::new(60, 90, 200), (30.0 * s) as u32);
        let mid = |a: usize, b: usize| Point::new((kp[a][0] + kp[b][0]) as i32 / 2, (kp[a][1] + kp[b][1]) as i32 / 2);
        let _ = Line::new(mid(5, 6), mid(11, 12)).into_styled(torso).draw(frame);
        let d = (44.0 * s) as u32;
        let _ = Circle::with_center(pt(0) - Point::new(0, (4.0 * s) as i32), d)
            .into_styled(PrimitiveStyle::with_fill(Rgb888::new(230, 180, 140)))
            .draw(frame);
    }
}

impl FrameSource for SyntheticSource {
    fn read(&mut self, frame: &mut Frame) -> Result<FrameRead> {
        if self.frames.is_some_and(|n| self.index >= n) {
            return Ok(FrameRead::End);
        }
        self.draw(self.index, frame);
        frame.sequence = self.index;
        self.index += 1;
        self.stats.delivered += 1;
        Ok(FrameRead::Frame)
    }

    fn stats(&self) -> SourceStats {
        self.stats
    }

    fn fps(&self) -> Option<f64> {
        Some(30.0)
    }
}
