//! The production loop under a hostile source: 10 000 frames (1 000 under
//! qemu) of injected
//! faults — unreadable frames, device failures, frames whose size changes
//! every few frames down to 1×1 — with a scripted engine (the `Engine` seam)
//! so that the loop, not inference, is what runs. Every frame is accounted
//! for (captured = processed + lost), one pose line per processed frame, and
//! no pose lands outside the frame it was found in.

mod common;

use std::path::Path;

use anyhow::Result;
use vipnas::arch::rng::Rng;
use vipnas::runtime::budget::FrameBudget;
use vipnas::runtime::engine::InputTensor;
use vipnas::runtime::source::{FrameRead, FrameSource, SourceStats};
use vipnas::runtime::track::TrackConfig;
use vipnas::runtime::{run_frames, Engine, Estimator, Frame, PoseModel, RunOptions};

/// Sizes a source can switch between: a camera's modes, a directory of
/// mixed images, degenerate slivers.
const SIZES: [(u32, u32); 5] = [(320, 240), (640, 360), (31, 17), (1, 1), (17, 301)];

/// A source that fails as cameras and files do, from a seeded script.
struct FaultySource {
    rng: Rng,
    remaining: u64,
    size: (u32, u32),
    stats: SourceStats,
    /// The size of every delivered frame, by sequence number.
    sizes: Vec<(u32, u32)>,
}

impl FrameSource for FaultySource {
    fn read(&mut self, frame: &mut Frame) -> Result<FrameRead> {
        if self.remaining == 0 {
            return Ok(FrameRead::End);
        }
        let r = self.rng.uniform();
        if r < 0.03 {
            // A device failure: no frame lost, the next read reconnects.
            self.stats.errors += 1;
            return Ok(FrameRead::Interrupted("injected: device failure".into()));
        }
        self.remaining -= 1;
        let sequence = self.stats.captured();
        if r < 0.10 {
            self.stats.lost += 1;
            self.sizes.push((0, 0));
            return Ok(FrameRead::Lost(format!("injected: frame {sequence} unreadable")));
        }
        if r > 0.93 {
            self.size = self.rng.pick(&SIZES);
        }
        let (w, h) = self.size;
        frame.resize(w, h);
        for (i, px) in frame.rgb.iter_mut().enumerate() {
            *px = (i as u64 * 7 + sequence) as u8;
        }
        frame.sequence = sequence;
        self.sizes.push((w, h));
        self.stats.delivered += 1;
        Ok(FrameRead::Frame)
    }

    fn stats(&self) -> SourceStats {
        self.stats
    }
}

/// MoveNet's interface (int32 NHWC in, 17 × (y, x, score) out) with
/// keypoints from a seeded script: confident poses anywhere in the crop,
/// weak ones that make the tracker restart.
struct ScriptedEngine {
    rng: Rng,
    shapes: Vec<Vec<usize>>,
}

impl Engine for ScriptedEngine {
    fn input_shapes(&self) -> &[Vec<usize>] {
        &self.shapes
    }
    fn output_shape(&self) -> &[usize] {
        &[1, 1, 17, 3]
    }
    fn run(&mut self, _inputs: &[&InputTensor], output: &mut [f32]) -> Result<()> {
        let weak = self.rng.uniform() < 0.2;
        for k in output.chunks_exact_mut(3) {
            k[0] = self.rng.uniform() as f32;
            k[1] = self.rng.uniform() as f32;
            k[2] = if weak { 0.05 } else { 0.5 + 0.5 * self.rng.uniform() as f32 };
        }
        Ok(())
    }
}

#[test]
fn ten_thousand_faulty_frames_are_all_accounted_for() {
    let dir = common::scratch("faults");
    let bundle = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/movenet-lightning");
    let manifest = vipnas::bundle::Manifest::load(&bundle).unwrap();
    let model = PoseModel::from_engine(
        manifest,
        Box::new(ScriptedEngine { rng: Rng::new(2), shapes: vec![vec![1, 192, 192, 3]] }),
    )
    .unwrap();
    let mut est = Estimator::new(model, TrackConfig::default());
    // Preprocessing a frame costs ~1 ms here, ~20x that under qemu.
    let frames = if common::under_qemu() { 1_000 } else { 10_000 };
    let mut src = FaultySource {
        rng: Rng::new(1),
        remaining: frames,
        size: SIZES[0],
        stats: SourceStats::default(),
        sizes: Vec::new(),
    };
    let opts = RunOptions {
        max_frames: None,
        budget: FrameBudget::from_fps(30.0),
        out_dir: dir.clone(),
        overlay: false,
        draw_min_score: 0.3,
        live: None,
        rotate_bytes: None,
    };
    let summary = run_frames(&mut src, &mut est, &opts).unwrap();

    let s = summary.source;
    assert_eq!(s.captured(), frames, "every frame the source produced is delivered or lost");
    assert_eq!(summary.frames, s.delivered, "every delivered frame is processed");
    println!("{summary}");
    assert!(s.lost > frames / 20 && s.errors > frames / 50, "the script injected faults: {s:?}");
    let sizes_seen: std::collections::HashSet<_> = src.sizes.iter().filter(|s| s.0 > 0).collect();
    assert_eq!(sizes_seen.len(), SIZES.len(), "every frame size occurred");
    assert!(summary.reinits > frames / 100, "weak poses and size changes restart tracking: {}", summary.reinits);

    let text = std::fs::read_to_string(dir.join("poses.jsonl")).unwrap();
    assert_eq!(text.lines().count() as u64, summary.frames);
    let marked = text.lines().filter(|l| l.contains("\"reinit\":true")).count() as u64;
    assert_eq!(marked, summary.reinits, "the summary counts the records marked reinit, the first frame included");
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let (w, h) = src.sizes[v["seq"].as_u64().unwrap() as usize];
        // The crop is the frame padded to the model's square aspect, or a box
        // found in this frame's own poses: never a box from another size.
        let side = w.max(h) as f64 * 1.5;
        for k in v["keypoints"].as_array().unwrap() {
            let (x, y) = (k[0].as_f64().unwrap(), k[1].as_f64().unwrap());
            assert!(
                (x - w as f64 / 2.0).abs() <= side && (y - h as f64 / 2.0).abs() <= side,
                "keypoint ({x}, {y}) far outside its {w}x{h} frame: {line}"
            );
        }
    }
}
