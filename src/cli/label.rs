//! `vipnas label` (host): teacher pseudo-labels for unlabelled frames, as COCO.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use vipnas::host::label::{label, LabelOptions, StartBox};
use vipnas::runtime::source::SourceSpec;
use vipnas::runtime::PoseModel;

/// Pseudo-label frames with a teacher (e.g. MoveNet Thunder) through crop
/// tracking; confident keypoints only; COCO person-keypoints output.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  vipnas label --teacher data/models/movenet-thunder --source dir:data/vtest/frames --start-box 0:300,140,60,110 --out vtest.json\n  vipnas label --teacher T --source dir:frames --start-box 0:200,20,90,150 --start-box 110:140,170,90,170 --out two.json"
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
    let model = PoseModel::load(&a.teacher, a.threads)?;
    let opts = LabelOptions {
        min_score: a.min_score,
        min_keypoints: a.min_keypoints,
        starts: a.starts.clone(),
        max_frames: a.frames,
        description: format!(
            "pseudo-labels by vipnas label: teacher {}, source {}, min_score {}, start boxes {:?}",
            a.teacher.display(),
            a.source,
            a.min_score,
            a.starts
        ),
    };
    let (dataset, stats) = label(model, dir, &opts)?;
    vipnas::bundle::write_atomic(&a.out, &serde_json::to_vec(&dataset)?)?;
    outln!(
        "wrote {}: {} frames, {} annotations ({} person-frames skipped), {:.1} keypoints per annotation",
        a.out.display(),
        stats.frames,
        stats.annotations,
        stats.skipped,
        stats.keypoints as f64 / stats.annotations.max(1) as f64
    );
    Ok(())
}
