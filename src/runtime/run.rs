//! The per-frame loop: source → ROI → preprocess → infer → decode → track →
//! render → sinks, timed against the frame budget.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};

use super::budget::{FrameBudget, LatencyStats};
use super::frame::Frame;
use super::model::PoseModel;
use super::pose::Pose;
use super::render::{draw_pose, save_png};
use super::sink::{FrameRecord, JsonlSink, LiveOutput};
use super::source::{FrameRead, FrameSource, SourceStats};
use super::track::{TrackConfig, Tracker};

/// The per-frame core shared by `run` and `eval`: the tracker picks the ROI,
/// the model estimates the pose in it, the tracker takes the result.
pub struct Estimator {
    pub model: PoseModel,
    pub tracker: Tracker,
}

impl Estimator {
    pub fn new(model: PoseModel, track: TrackConfig) -> Estimator {
        Estimator { model, tracker: Tracker::new(track) }
    }

    /// Estimates the pose in `frame`; returns whether the tracker started afresh.
    pub fn step(&mut self, frame: &Frame, dt: f32, pose: &mut Pose) -> Result<bool> {
        Ok(track_step(&mut self.model, &mut self.tracker, frame, dt, pose)?.fresh)
    }
}

/// What one tracked estimate did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackStep {
    /// The crop was the whole frame (start, or after a loss).
    pub fresh: bool,
    /// The pose was too weak to follow: the person is lost in this frame.
    pub lost: bool,
}

/// One frame for one tracked person: the tracker's ROI, the model's pose in
/// it, the tracker updated from that pose.
pub fn track_step(
    model: &mut PoseModel,
    tracker: &mut Tracker,
    frame: &Frame,
    dt: f32,
    pose: &mut Pose,
) -> Result<TrackStep> {
    let aspect = model.aspect();
    let (roi, fresh) = tracker.next_roi(frame.width, frame.height, aspect);
    model.estimate(frame, &roi, pose)?;
    let lost = tracker.update(pose, aspect, dt);
    Ok(TrackStep { fresh, lost })
}

/// What `run` should do besides estimating.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Stop after this many frames (processed or lost).
    pub max_frames: Option<u64>,
    pub budget: FrameBudget,
    /// `poses.jsonl` and (with `overlay`) `overlay/NNNNNN.png` go here.
    pub out_dir: PathBuf,
    pub overlay: bool,
    /// Minimum score of drawn keypoints.
    pub draw_min_score: f32,
    /// A live copy of `poses.jsonl` for another program (a FIFO, best effort).
    pub live: Option<PathBuf>,
    /// Rotate `poses.jsonl` at this many bytes ([`JsonlSink::rotating`]);
    /// `None`: one file, replaced at start.
    pub rotate_bytes: Option<u64>,
}

/// The run's outcome; `Display` ends with the summary line.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub frames: u64,
    pub source: SourceStats,
    /// Frames whose crop was the whole frame (the first one, and each one
    /// after tracking was lost or the frame size changed): the frames whose
    /// `poses.jsonl` record says `"reinit":true`.
    pub reinits: u64,
    pub wall_s: f64,
    pub fps: f64,
    pub in_budget_pct: f64,
    pub budget_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
}

impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "captured={} lost={} errors={} reconnects={} reinits={} budget_ms={:.1} mean_ms={:.2} wall_s={:.2}",
            self.source.captured(),
            self.source.lost,
            self.source.errors,
            self.source.reconnects,
            self.reinits,
            self.budget_ms,
            self.mean_ms,
            self.wall_s
        )?;
        write!(
            f,
            "frames={} fps={:.1} in_budget={:.1}% p50_ms={:.2} p99_ms={:.2}",
            self.frames, self.fps, self.in_budget_pct, self.p50_ms, self.p99_ms
        )
    }
}

/// Runs the loop until the source ends, `max_frames` is reached or a signal
/// asks to stop ([`crate::shutdown`]); `poses.jsonl` is complete either way.
pub fn run_frames(source: &mut dyn FrameSource, est: &mut Estimator, opts: &RunOptions) -> Result<RunSummary> {
    std::fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("cannot create output directory {}", opts.out_dir.display()))?;
    let overlay_dir = opts.out_dir.join("overlay");
    if opts.overlay {
        std::fs::create_dir_all(&overlay_dir).with_context(|| format!("cannot create {}", overlay_dir.display()))?;
    }
    let mut sink = match opts.rotate_bytes {
        Some(max) => JsonlSink::rotating(&opts.out_dir.join("poses.jsonl"), max)?,
        None => JsonlSink::create(&opts.out_dir.join("poses.jsonl"))?,
    }
    .with_live(opts.live.as_deref().map(LiveOutput::new));
    let mut stats = LatencyStats::new(opts.budget);
    let mut frame = Frame::default();
    let mut pose = Pose::default();
    let dt = 1.0 / source.fps().unwrap_or(30.0) as f32;
    let start = Instant::now();
    let (mut index, mut reinits) = (0u64, 0u64);
    while opts.max_frames.is_none_or(|n| index < n) {
        if crate::shutdown::requested().is_some() {
            break;
        }
        match source.read(&mut frame)? {
            FrameRead::End => break,
            FrameRead::Lost(why) => {
                log::warn!("frame {index} lost: {why}");
                index += 1;
                continue;
            }
            FrameRead::Interrupted(why) => {
                log::warn!("capture interrupted: {why}");
                continue;
            }
            FrameRead::Frame => {}
        }
        let t0 = Instant::now();
        let reinit = est.step(&frame, dt, &mut pose)?;
        reinits += reinit as u64;
        if opts.overlay {
            draw_pose(&mut frame, &pose, opts.draw_min_score);
        }
        let latency_ms = t0.elapsed().as_secs_f64() * 1e3;
        stats.record(latency_ms);
        let record = FrameRecord { index, sequence: frame.sequence, key: true, reinit, net: "spatial", latency_ms };
        sink.write(&record, &pose)?;
        if opts.overlay {
            save_png(&frame, &overlay_dir.join(format!("{index:06}.png")))?;
        }
        index += 1;
    }
    if sink.live_dropped() > 0 {
        log::info!("live output: {} lines found no reader (poses.jsonl has them all)", sink.live_dropped());
    }
    sink.finish()?;
    let wall_s = start.elapsed().as_secs_f64();
    let frames = stats.count();
    Ok(RunSummary {
        frames,
        source: source.stats(),
        reinits,
        wall_s,
        fps: if wall_s > 0.0 { frames as f64 / wall_s } else { 0.0 },
        in_budget_pct: stats.in_budget_pct(),
        budget_ms: stats.budget().ms,
        p50_ms: stats.quantile(0.5),
        p99_ms: stats.quantile(0.99),
        mean_ms: stats.mean(),
    })
}
