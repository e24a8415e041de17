//! `vipnas data merge` (host): COCO-format sets combined into one (training splits).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use vipnas::host::coco::CocoDataset;
use vipnas::host::openpose::{convert, OpenPoseConversion};

/// Merge COCO keypoint files; each INPUT may carry `:PREFIX`, prepended to its
/// image file names so that all are relative to one root.
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  vipnas data merge --out train.json pose2sim/person_keypoints_cam01.json:pose2sim pose2sim/person_keypoints_cam02.json:pose2sim"
)]
pub struct DataArgs {
    /// The merged COCO file to write.
    #[arg(long)]
    out: PathBuf,
    /// FILE.json[:PREFIX]
    #[arg(required = true)]
    inputs: Vec<String>,
}

pub fn run(a: DataArgs) -> Result<()> {
    let parts = a
        .inputs
        .iter()
        .map(|s| {
            let (file, prefix) = match s.rsplit_once(':') {
                Some((f, p)) if f.ends_with(".json") => (f, p.to_string()),
                _ => (s.as_str(), String::new()),
            };
            Ok((CocoDataset::load(&PathBuf::from(file))?, prefix))
        })
        .collect::<Result<Vec<_>>>()?;
    let merged = CocoDataset::merge(&parts)?;
    vipnas::bundle::write_atomic(&a.out, &serde_json::to_vec(&merged)?)?;
    outln!("wrote {}: {} images, {} annotations", a.out.display(), merged.images.len(), merged.annotations.len());
    Ok(())
}

/// Convert OpenPose BODY_25B per-frame json (Pose2Sim's labels) to COCO keypoints
/// for frames extracted from the same video.
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  vipnas data openpose --json-dir cam1_json --frames pose2sim/cam01 --prefix cam01 --id-base 100000 --source-size 1088x1920 --out cam01.json"
)]
pub struct OpenPoseArgs {
    /// OpenPose's per-frame json files (BODY_25B keypoints), one per frame.
    #[arg(long)]
    json_dir: PathBuf,
    /// Extracted frames NNNNNN.jpg, one per json file.
    #[arg(long)]
    frames: PathBuf,
    /// File-name prefix in the output (relative root).
    #[arg(long)]
    prefix: String,
    /// Image ids start here.
    #[arg(long, default_value_t = 0)]
    id_base: u64,
    /// Size of the video the labels were made on, WIDTHxHEIGHT.
    #[arg(long)]
    source_size: String,
    /// Joint confidence above which a joint is visible.
    #[arg(long, default_value_t = 0.1)]
    conf: f64,
    /// The COCO keypoint file to write.
    #[arg(long)]
    out: PathBuf,
}

pub fn run_openpose(a: OpenPoseArgs) -> Result<()> {
    let (w, h) = a
        .source_size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .ok_or_else(|| anyhow::anyhow!("--source-size `{}`: expected WIDTHxHEIGHT", a.source_size))?;
    let d = convert(&OpenPoseConversion {
        json_dir: &a.json_dir,
        frames_dir: &a.frames,
        prefix: &a.prefix,
        id_base: a.id_base,
        source_size: (w, h),
        conf: a.conf,
    })?;
    vipnas::bundle::write_atomic(&a.out, &serde_json::to_vec(&d)?)?;
    let primary = d.annotations.iter().filter(|a| a.is_primary == Some(1)).count();
    outln!(
        "wrote {}: {} images, {} annotations ({primary} primary)",
        a.out.display(),
        d.images.len(),
        d.annotations.len()
    );
    Ok(())
}

/// Fill the keypoints a COCO file lacks (LSPet has no face points) from a
/// teacher run on each person's box: confident ones become labels whose
/// training weight is the teacher's score; labelled keypoints stay.
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  vipnas data fill --teacher data/models/movenet-thunder --coco lspet/person_keypoints_lspet.json --images lspet --out lspet/filled.json"
)]
pub struct FillArgs {
    /// Teacher model (bundle or bare ONNX, e.g. MoveNet Thunder).
    #[arg(long)]
    teacher: PathBuf,
    /// COCO person-keypoints file with boxes.
    #[arg(long, value_name = "ANN.json")]
    coco: PathBuf,
    /// Directory the file's `file_name`s are relative to.
    #[arg(long, value_name = "DIR")]
    images: PathBuf,
    /// Keypoints with a teacher score at least this are filled.
    #[arg(long, default_value_t = 0.4)]
    min_score: f32,
    /// Inference threads for the teacher.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// The filled COCO file to write.
    #[arg(long)]
    out: PathBuf,
}

pub fn run_fill(a: FillArgs) -> Result<()> {
    anyhow::ensure!((0.0..=1.0).contains(&a.min_score), "--min-score must be in [0, 1]");
    let coco = CocoDataset::load(&a.coco)?;
    let mut model = vipnas::runtime::PoseModel::load(&a.teacher, a.threads)?;
    let bar = indicatif::ProgressBar::new(coco.annotations.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} people | ETA {eta}").expect("valid template"),
    );
    let (filled, stats) =
        vipnas::host::label::fill(&mut model, &coco, &a.images, a.min_score, |i| bar.set_position(i as u64))
            .map_err(|e| e.context(format!("filling {}", a.coco.display())))?;
    bar.finish_and_clear();
    vipnas::bundle::write_atomic(&a.out, &serde_json::to_vec(&filled)?)?;
    outln!(
        "wrote {}: {} people, {} keypoints filled by the teacher; on the {} labelled keypoints it agrees with {} ({:.1} %) within 0.1 of the box; {} images unreadable",
        a.out.display(),
        stats.annotations,
        stats.filled,
        stats.labelled,
        stats.agreeing,
        100.0 * stats.agreeing as f64 / stats.labelled.max(1) as f64,
        stats.unreadable.len()
    );
    Ok(())
}
