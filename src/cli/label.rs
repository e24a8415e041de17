//! `vipnas label` (host): teacher pseudo-labels for unlabelled frames, as COCO.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use vipnas::arch::InputSize;
use vipnas::host::detect::{MultiPose, PersonDetector};
use vipnas::host::label::{label, LabelOptions, StartBox};
use vipnas::runtime::source::SourceSpec;
use vipnas::runtime::PoseModel;

/// Pseudo-label frames with a teacher (e.g. MoveNet Thunder) through crop
/// tracking; confident keypoints only; COCO person-keypoints output. People
/// are followed from given start boxes, from a person detector (MoveNet
/// MultiPose: every person who appears), or, with neither, one person found
/// on the whole frame.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  vipnas label --teacher data/models/movenet-thunder --source dir:data/vtest/frames --start-box 0:300,140,60,110 --out vtest.json\n  vipnas label --teacher T --source dir:frames --start-box 0:200,20,90,150 --start-box 110:140,170,90,170 --out two.json\n  vipnas label --teacher T --detector data/models/movenet-multipose.onnx --detector-input 480x640 --source dir:data/vtest/frames --out everyone.json"
)]
pub struct LabelArgs {
    /// Teacher model (bundle or bare ONNX).
    #[arg(long)]
    teacher: PathBuf,
    /// `dir:PATH` of frames (file names in the output are relative to it).
    #[arg(long)]
    source: SourceSpec,
    /// The COCO keypoint file to write (teacher labels, one annotation per followed person and frame).
    #[arg(long)]
    out: PathBuf,
    /// Keep keypoints with a teacher score at least this.
    #[arg(long, default_value_t = 0.4)]
    min_score: f32,
    /// Drop a person's annotation in a frame with fewer kept keypoints.
    #[arg(long, default_value_t = 5)]
    min_keypoints: usize,
    /// Follow a person from FRAME in box x,y,w,h (repeat for several people).
    #[arg(long = "start-box")]
    starts: Vec<StartBox>,
    /// A person detector (MoveNet MultiPose ONNX, int32 NHWC input, output [1, 6, 56]):
    /// a track starts for every detected person no track follows yet.
    #[arg(long)]
    detector: Option<PathBuf>,
    /// The detector's input, HEIGHTxWIDTH (multiples of 32; the frame is letterboxed
    /// into it). Small people need a large input.
    #[arg(long, default_value = "480x640")]
    detector_input: InputSize,
    /// Run the detector every N frames (people appear within N frames of entering).
    #[arg(long, default_value_t = 5)]
    detect_every: u64,
    /// Report detected people scoring at least this.
    #[arg(long, default_value_t = 0.3)]
    min_detection: f32,
    /// Every image is a scene of its own (still photos): no track carries over,
    /// the detector runs on every image.
    #[arg(long)]
    stills: bool,
    /// Stop after N frames.
    #[arg(long)]
    frames: Option<u64>,
    /// Inference threads for the teacher.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

pub fn run(a: LabelArgs) -> Result<()> {
    let SourceSpec::Dir(dir) = &a.source else {
        bail!("label reads frames from a directory (dir:PATH); extract video frames first (e.g. ffmpeg -i clip.mp4 frames/%06d.jpg)");
    };
    if a.stills && a.detector.is_none() {
        bail!("--stills needs --detector (each image's people are found by the detector)");
    }
    let model = PoseModel::load(&a.teacher, a.threads)?;
    let (mut detector, detector_note) = match &a.detector {
        Some(path) => (
            Some(MultiPose::load(path, a.detector_input, a.threads, a.min_detection)?),
            format!(
                ", detector {} at {} every {} frames, min score {}",
                path.display(),
                a.detector_input,
                a.detect_every,
                a.min_detection
            ),
        ),
        None => (None, String::new()),
    };
    let opts = LabelOptions {
        min_score: a.min_score,
        min_keypoints: a.min_keypoints,
        starts: a.starts.clone(),
        detect_every: a.detect_every,
        stills: a.stills,
        max_frames: a.frames,
        description: format!(
            "pseudo-labels by vipnas label: teacher {}, source {}, min_score {}, start boxes {:?}{detector_note}",
            a.teacher.display(),
            a.source,
            a.min_score,
            a.starts
        ),
    };
    let detector = detector.as_mut().map(|d| d as &mut dyn PersonDetector);
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} frames | ETA {eta}").expect("valid template"),
    );
    let (dataset, stats) = label(model, detector, dir, &opts, |i, n| {
        bar.set_length(n as u64);
        bar.set_position(i as u64);
    })?;
    bar.finish_and_clear();
    vipnas::bundle::write_atomic(&a.out, &serde_json::to_vec(&dataset)?)?;
    outln!(
        "wrote {}: {} frames ({} unreadable, skipped), {} people (tracks), {} annotations ({} person-frames skipped, {} tracks merged into another), {:.1} keypoints per annotation",
        a.out.display(),
        stats.frames,
        stats.unreadable.len(),
        stats.people,
        stats.annotations,
        stats.skipped,
        stats.merged,
        stats.keypoints as f64 / stats.annotations.max(1) as f64
    );
    Ok(())
}
