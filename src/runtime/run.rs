//! The per-frame loop: source → ROI → preprocess → infer → decode → track →
//! render → sinks, timed against the frame budget.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

use super::budget::{FrameBudget, LatencyStats};
use super::frame::Frame;
use super::key_worker::KeyWorker;
use super::model::PoseModel;
use super::pose::Pose;
use super::render::{draw_pose, save_png};
use super::schedule::{NetChoice, Schedule};
use super::sink::{FrameRecord, JsonlSink, LiveOutput};
use super::source::{FrameRead, FrameSource, SourceStats};
use super::track::{TrackConfig, Tracker};

/// The per-frame core shared by `run` and `eval`: the tracker picks the ROI,
/// the schedule picks the net — the key (spatial) net, or for a temporal
/// bundle a temporal net fed the frame before's pose — the net estimates the
/// pose in the ROI, the tracker takes the result.
pub struct Estimator {
    /// The key (spatial) net.
    pub model: PoseModel,
    /// The bundle's temporal nets (empty: the key net runs every frame).
    pub temporal: Vec<PoseModel>,
    schedule: Option<Schedule>,
    /// Keypoints of the previous pose below this score stay out of the prior.
    prior_min_score: f32,
    pub tracker: Tracker,
    /// The last frame's pose as the net gave it (before smoothing), while the
    /// person is followed: what a temporal net propagates.
    previous: Option<Pose>,
    /// `spatial`, then each temporal net's file stem (`poses.jsonl`'s `net`).
    names: Vec<String>,
    /// The key net on its own thread ([`Estimator::start_key_worker`]).
    worker: Option<KeyWorker>,
    /// Bumped at every restart: key results from before it are stale.
    generation: u64,
}

/// What one frame ran and found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// The crop was the whole frame (start, or after a loss).
    pub fresh: bool,
    /// The person was lost in this frame.
    pub lost: bool,
    /// The net whose pose this frame got.
    pub net: NetChoice,
    /// A key frame: the key net ran on it (with a key worker, in the
    /// background while `net`, a temporal net, gave the pose).
    pub key: bool,
}

impl Estimator {
    /// Decodes every net's heatmaps with `refine` (`--refine` of `run` and `eval`).
    pub fn set_refine(&mut self, refine: super::decode::Refine) {
        self.model.refine = refine;
        self.temporal.iter_mut().for_each(|t| t.refine = refine);
    }

    /// The key net on every frame; the tracker's thresholds follow its kind of
    /// output ([`TrackConfig::for_output`]).
    pub fn new(model: PoseModel, track: TrackConfig) -> Estimator {
        let track = track.for_output(model.manifest.output.kind);
        Estimator {
            model,
            temporal: Vec::new(),
            schedule: None,
            prior_min_score: 0.0,
            tracker: Tracker::new(track),
            previous: None,
            names: vec!["spatial".into()],
            worker: None,
            generation: 0,
        }
    }

    /// Runs key frames on `key` (a second copy of the key net) on its own
    /// thread from now on: temporal nets give every frame's pose, and each
    /// key result, when it comes, is what the next frame propagates. Only a
    /// restart (nothing to propagate) waits for the key net.
    pub fn start_key_worker(&mut self, key: PoseModel) -> Result<()> {
        anyhow::ensure!(
            !self.temporal.is_empty(),
            "a key-frame worker needs a temporal bundle: without temporal nets every frame waits for the key net"
        );
        self.worker = Some(KeyWorker::spawn(key)?);
        Ok(())
    }

    /// A bundle's key net and its temporal nets ([`PoseModel::load_temporal`]),
    /// on the bundle's cycle; with `budget_ms`, a controller adapts the cycle
    /// to keep frames inside it ([`Schedule`]).
    pub fn with_temporal(
        model: PoseModel,
        temporal: Vec<PoseModel>,
        track: TrackConfig,
        budget_ms: Option<f64>,
    ) -> Result<Estimator> {
        let mut est = Estimator::new(model, track);
        if temporal.is_empty() {
            return Ok(est);
        }
        let t = est
            .model
            .manifest
            .temporal
            .as_ref()
            .context("temporal nets given, but the manifest has no temporal section")?;
        anyhow::ensure!(
            t.nets.len() == temporal.len(),
            "{} temporal nets given, the manifest lists {}",
            temporal.len(),
            t.nets.len()
        );
        est.schedule = Some(Schedule::new(t, budget_ms));
        est.prior_min_score = t.prior_min_score;
        est.names.extend(t.nets.iter().map(|n| n.file.trim_end_matches(".onnx").to_string()));
        est.temporal = temporal;
        Ok(est)
    }

    /// Loads a bundle (or bare ONNX) with its temporal nets unless
    /// `spatial_only`; `budget_ms` as in [`Estimator::with_temporal`].
    pub fn load(
        path: &Path,
        threads: usize,
        track: TrackConfig,
        spatial_only: bool,
        budget_ms: Option<f64>,
    ) -> Result<Estimator> {
        let model = PoseModel::load(path, threads)?;
        let temporal = if spatial_only || !path.is_dir() {
            Vec::new()
        } else {
            PoseModel::load_temporal(path, &model.manifest, threads)?
        };
        Self::with_temporal(model, temporal, track, budget_ms)
    }

    /// Estimates the pose in `frame`.
    pub fn step(&mut self, frame: &Frame, dt: f32, pose: &mut Pose) -> Result<Step> {
        let aspect = self.model.aspect();
        let (roi, fresh) = self.tracker.next_roi(frame.width, frame.height, aspect);
        if let Some(w) = &mut self.worker {
            if let Some((generation, key_pose)) = w.poll()? {
                if generation == self.generation && self.previous.is_some() {
                    self.previous = Some(key_pose);
                }
            }
        }
        let restart = fresh || self.previous.is_none();
        self.generation += restart as u64;
        let mut key = false;
        let net = match &mut self.schedule {
            None => NetChoice::Key,
            Some(s) => match (s.choose(restart), &mut self.worker) {
                (NetChoice::Key, Some(w)) if !restart => {
                    if !w.busy() {
                        w.submit(frame, roi, self.generation)?;
                        key = true;
                    }
                    s.choose(false)
                }
                (choice, _) => choice,
            },
        };
        key |= net == NetChoice::Key;
        match (net, &self.previous) {
            (NetChoice::Temporal(k), Some(previous)) => {
                self.temporal[k].propagate(frame, &roi, previous, self.prior_min_score, pose)?;
                // A propagated keypoint is no more certain than the one it came
                // from: the net's own heatmap peak says how well it found it
                // again, not how right the key net was.
                for (k, p) in pose.keypoints.iter_mut().zip(&previous.keypoints) {
                    k[2] = k[2].min(p[2]);
                }
            }
            _ => self.model.estimate(frame, &roi, pose)?,
        }
        if self.schedule.is_some() {
            self.previous = Some(*pose);
        }
        let lost = self.tracker.update(pose, aspect, dt);
        if lost {
            self.previous = None;
        }
        Ok(Step { fresh, lost, net, key })
    }

    /// Takes the measured latency of a frame (the budget controller's input).
    pub fn observe(&mut self, net: NetChoice, latency_ms: f64) {
        if let Some(s) = &mut self.schedule {
            s.observe(net, latency_ms);
        }
    }

    /// The name of a net in `poses.jsonl` and the summary.
    pub fn net_name(&self, net: NetChoice) -> &str {
        &self.names[net.index()]
    }

    /// What the bundle's latencies for `board` (measured where recorded, else
    /// predicted) say about `budget`, loudly, before the first frame: no net
    /// meets it (every frame will be late), or the key net alone does not
    /// (key frames will be late; the controller spaces them out).
    pub fn budget_warnings(&self, board: &str, budget: FrameBudget) -> Vec<String> {
        let latency = |measured: &std::collections::BTreeMap<String, f64>,
                       predicted: &std::collections::BTreeMap<String, f64>| {
            measured.get(board).map(|&ms| (ms, "measured")).or(predicted.get(board).map(|&ms| (ms, "predicted")))
        };
        let key = &self.model.manifest;
        // Per net, key net first (`names` order); `None` where nothing is known.
        let nets: Vec<Option<(f64, &str)>> = std::iter::once(&self.model)
            .chain(&self.temporal)
            .map(|m| latency(&m.manifest.measured_ms, &m.manifest.latency_ms))
            .collect();
        let over = |l: &Option<(f64, &str)>| l.is_some_and(|(ms, _)| ms > budget.ms);
        if nets.iter().all(over) {
            let (k, (ms, how)) = nets
                .iter()
                .enumerate()
                .filter_map(|(k, l)| l.map(|l| (k, l)))
                .min_by(|a, b| a.1 .0.total_cmp(&b.1 .0))
                .expect("every net has a latency");
            return vec![format!(
                "no net of {} meets the {:.1} ms frame budget on {board}: the fastest, {}, takes {ms:.1} ms ({how}); every frame will be late",
                key.name, budget.ms, self.names[k]
            )];
        }
        match nets[0] {
            Some((ms, how)) if !self.temporal.is_empty() && ms > budget.ms => vec![format!(
                "the key net of {} takes {ms:.1} ms ({how}) on {board}, over the {:.1} ms frame budget: key frames will be late (the budget controller spaces them out)",
                key.name, budget.ms
            )],
            _ => Vec::new(),
        }
    }

    /// How many nets there are (the key net, then the temporal ones).
    pub fn nets(&self) -> usize {
        self.names.len()
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
    /// Key frames: the key (spatial) net ran on them (with a key worker, in
    /// the background).
    pub key_frames: u64,
    /// Frames per net, by name (`spatial`, then the temporal nets').
    pub per_net: Vec<(String, u64)>,
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
        if self.per_net.len() > 1 {
            let nets: Vec<String> = self.per_net.iter().map(|(n, c)| format!("{n}:{c}")).collect();
            writeln!(
                f,
                "key_frames={} propagated={} nets={}",
                self.key_frames,
                self.frames - self.per_net[0].1,
                nets.join(",")
            )?;
        }
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
    let mut per_net = vec![0u64; est.nets()];
    let mut key_frames = 0u64;
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
        let step = est.step(&frame, dt, &mut pose)?;
        reinits += step.fresh as u64;
        if opts.overlay {
            draw_pose(&mut frame, &pose, opts.draw_min_score);
        }
        let latency_ms = t0.elapsed().as_secs_f64() * 1e3;
        stats.record(latency_ms);
        est.observe(step.net, latency_ms);
        key_frames += step.key as u64;
        per_net[step.net.index()] += 1;
        let record = FrameRecord {
            index,
            sequence: frame.sequence,
            key: step.key,
            reinit: step.fresh,
            net: est.net_name(step.net),
            latency_ms,
        };
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
        key_frames,
        per_net: est.names.iter().cloned().zip(per_net).collect(),
        wall_s,
        fps: if wall_s > 0.0 { frames as f64 / wall_s } else { 0.0 },
        in_budget_pct: stats.in_budget_pct(),
        budget_ms: stats.budget().ms,
        p50_ms: stats.quantile(0.5),
        p99_ms: stats.quantile(0.99),
        mean_ms: stats.mean(),
    })
}
