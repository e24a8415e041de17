//! `vipnas data merge` (host): COCO-format sets combined into one (training splits).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use vipnas::host::coco::CocoDataset;

/// Merge COCO keypoint files; each INPUT may carry `:PREFIX`, prepended to its
/// image file names so that all are relative to one root.
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  vipnas data merge --out train.json pose2sim/person_keypoints_cam01.json:pose2sim pose2sim/person_keypoints_cam02.json:pose2sim"
)]
pub struct DataArgs {
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
    println!("wrote {}: {} images, {} annotations", a.out.display(), merged.images.len(), merged.annotations.len());
    Ok(())
}
