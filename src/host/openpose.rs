//! OpenPose BODY_25B per-frame JSON (what Pose2Sim ships as labels) to COCO
//! person keypoints. BODY_25B's first 17 joints are COCO's 17 in COCO order;
//! the rest (neck, head top, feet) only widen the box.
//!
//! Rules (the ones the shared pose2sim labels were made with): a joint is
//! visible when its confidence exceeds `conf`; coordinates are rescaled from
//! the source video to the frames with the pixel-centre map
//! `x' = (x + 0.5)·sx − 0.5`; the box spans every visible joint (all 25) plus
//! 10 % of its size on each side, clipped; area = w·h·0.53; the largest box in
//! a frame is the primary subject.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::coco::{CocoAnnotation, CocoCategory, CocoDataset, CocoImage};
use crate::coco::KEYPOINTS;

#[derive(Deserialize)]
struct OpenPoseFrame {
    people: Vec<OpenPosePerson>,
}

#[derive(Deserialize)]
struct OpenPosePerson {
    pose_keypoints_2d: Vec<f64>,
}

/// How to convert one camera.
pub struct OpenPoseConversion<'a> {
    /// `camN_json/` with one `…NNNN.json` per frame.
    pub json_dir: &'a Path,
    /// The extracted frames, `NNNNNN.jpg`, one per json file.
    pub frames_dir: &'a Path,
    /// Prefix of the file names in the output (e.g. `cam01`).
    pub prefix: &'a str,
    /// Image ids are `id_base + frame`.
    pub id_base: u64,
    /// Source video size (the labels' pixel grid).
    pub source_size: (u32, u32),
    pub conf: f64,
}

/// The trailing frame number of an OpenPose json name (`cam01.0042.json` → 42).
fn frame_number(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".json")?;
    let digits: String = stem.chars().rev().take_while(char::is_ascii_digit).collect();
    digits.chars().rev().collect::<String>().parse().ok()
}

pub fn convert(c: &OpenPoseConversion) -> Result<CocoDataset> {
    let mut files: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(c.json_dir)
        .with_context(|| format!("cannot read {}", c.json_dir.display()))?
        .filter_map(|e| {
            let p = e.ok()?.path();
            Some((frame_number(p.file_name()?.to_str()?)?, p))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: no OpenPose json files", c.json_dir.display());
    }
    let first = c.frames_dir.join(format!("{:06}.jpg", 0));
    let (w, h) = image::image_dimensions(&first).with_context(|| format!("{}: cannot read", first.display()))?;
    let (sx, sy) = (w as f64 / c.source_size.0 as f64, h as f64 / c.source_size.1 as f64);
    let mut images = Vec::new();
    let mut annotations = Vec::new();
    for (i, (_, path)) in files.iter().enumerate() {
        let frame = format!("{i:06}.jpg");
        if !c.frames_dir.join(&frame).is_file() {
            bail!("{}: no frame {frame} for {}", c.frames_dir.display(), path.display());
        }
        let id = c.id_base + i as u64;
        images.push(CocoImage {
            id,
            file_name: format!("{}/{frame}", c.prefix),
            width: w,
            height: h,
            frame_index: Some(i as u64),
        });
        let text = std::fs::read_to_string(path)?;
        let f: OpenPoseFrame = serde_json::from_str(&text).with_context(|| path.display().to_string())?;
        let mut people = Vec::new();
        for p in &f.people {
            let k = &p.pose_keypoints_2d;
            if k.len() != 75 {
                bail!("{}: a person has {} values, BODY_25B has 75", path.display(), k.len());
            }
            let joint =
                |j: usize| ((k[3 * j] + 0.5) * sx - 0.5, (k[3 * j + 1] + 0.5) * sy - 0.5, k[3 * j + 2] > c.conf);
            let visible: Vec<(f64, f64)> = (0..25).map(joint).filter(|j| j.2).map(|j| (j.0, j.1)).collect();
            let num = (0..KEYPOINTS).filter(|&j| joint(j).2).count();
            if num == 0 {
                continue;
            }
            let (x0, x1) = visible.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
            let (y0, y1) = visible.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
            let (bw, bh) = (x1 - x0, y1 - y0);
            let (bx0, by0) = ((x0 - 0.1 * bw).max(0.0), (y0 - 0.1 * bh).max(0.0));
            let (bx1, by1) = ((x1 + 0.1 * bw).min(w as f64 - 1.0), (y1 + 0.1 * bh).min(h as f64 - 1.0));
            let keypoints = (0..KEYPOINTS)
                .flat_map(|j| match joint(j) {
                    (x, y, true) => [x, y, 2.0],
                    _ => [0.0, 0.0, 0.0],
                })
                .collect();
            let bbox = [bx0, by0, bx1 - bx0, by1 - by0];
            people.push(CocoAnnotation {
                keypoint_weights: None,
                id: 0,
                image_id: id,
                category_id: 1,
                keypoints,
                num_keypoints: num as u32,
                bbox,
                area: bbox[2] * bbox[3] * 0.53,
                iscrowd: 0,
                is_primary: Some(0),
            });
        }
        if let Some(prim) = (0..people.len()).max_by(|&a, &b| {
            (people[a].bbox[2] * people[a].bbox[3]).total_cmp(&(people[b].bbox[2] * people[b].bbox[3]))
        }) {
            people[prim].is_primary = Some(1);
        }
        for (n, mut a) in people.into_iter().enumerate() {
            a.id = id * 10 + n as u64 + 1;
            annotations.push(a);
        }
    }
    let d = CocoDataset {
        info: Some(serde_json::json!({
            "description": format!("OpenPose BODY_25B labels of {} converted to COCO-17 by vipnas data openpose", c.json_dir.display()),
            "conf_threshold": c.conf, "scale_x": sx, "scale_y": sy,
        })),
        licenses: None,
        images,
        annotations,
        categories: vec![CocoCategory::person()],
    };
    d.check()?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn frame_numbers_from_openpose_names() {
        assert_eq!(super::frame_number("cam01.0042.json"), Some(42));
        assert_eq!(super::frame_number("cam1_000000000007_keypoints.json"), None);
        assert_eq!(super::frame_number("x7.json"), Some(7));
    }
}
