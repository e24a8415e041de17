//! `vipnas label`: pseudo-labels for unlabelled frames from a teacher model run
//! through the runtime's crop tracking. Confident keypoints keep visibility 2,
//! the rest are written as (0, 0, 0); a person with too few confident
//! keypoints in a frame gets no annotation there. Several people are followed
//! from hand-given starting boxes, each by its own tracker.

use std::path::Path;
use std::str::FromStr;

use anyhow::{bail, Context, Result};

use super::coco::{CocoAnnotation, CocoCategory, CocoDataset, CocoImage};
use super::dataset::SKIP_CAP;
use crate::coco::KEYPOINTS;
use crate::runtime::frame::load_image;
use crate::runtime::preprocess::Roi;
use crate::runtime::run::track_step;
use crate::runtime::source::DirSource;
use crate::runtime::track::{TrackConfig, Tracker};
use crate::runtime::{Frame, Pose, PoseModel};

/// `FRAME:x,y,w,h` — follow the person in this box from this frame on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StartBox {
    pub frame: u64,
    pub bbox: [f32; 4],
}

impl FromStr for StartBox {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let err = || format!("start box `{s}`: expected FRAME:x,y,w,h (e.g. 0:200,20,80,150)");
        let (frame, b) = s.split_once(':').ok_or_else(err)?;
        let v: Vec<f32> = b.split(',').map(|x| x.trim().parse()).collect::<Result<_, _>>().map_err(|_| err())?;
        match (frame.trim().parse(), v.as_slice()) {
            (Ok(frame), &[x, y, w, h]) if w > 0.0 && h > 0.0 => Ok(StartBox { frame, bbox: [x, y, w, h] }),
            _ => Err(err()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct LabelOptions {
    /// Keypoints at or above this teacher score are kept (visibility 2).
    pub min_score: f32,
    /// Fewer kept keypoints than this: no annotation for that person and frame.
    pub min_keypoints: usize,
    /// People to follow; empty = one person, found on the whole frame.
    pub starts: Vec<StartBox>,
    pub max_frames: Option<u64>,
    pub description: String,
}

/// Counts for the report.
#[derive(Clone, Copy, Debug, Default)]
pub struct LabelStats {
    pub frames: usize,
    pub annotations: usize,
    pub skipped: usize,
    pub keypoints: usize,
}

fn annotation(id: u64, image: &CocoImage, pose: &Pose, opts: &LabelOptions) -> Option<CocoAnnotation> {
    let mut keypoints = Vec::with_capacity(51);
    let (mut x0, mut y0, mut x1, mut y1, mut n) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN, 0u32);
    for k in &pose.keypoints {
        if k[2] >= opts.min_score {
            let (x, y) = (k[0] as f64 - 0.5, k[1] as f64 - 0.5);
            keypoints.extend([x, y, 2.0]);
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            n += 1;
        } else {
            keypoints.extend([0.0, 0.0, 0.0]);
        }
    }
    if (n as usize) < opts.min_keypoints {
        return None;
    }
    // The box: visible keypoints + 10 % of the size per side, clipped to the image
    // (the rule the pose2sim labels were made with); area = w·h·0.53 likewise.
    let (w, h) = (x1 - x0, y1 - y0);
    let (bx0, by0) = ((x0 - 0.1 * w).max(0.0), (y0 - 0.1 * h).max(0.0));
    let (bx1, by1) = ((x1 + 0.1 * w).min(image.width as f64 - 1.0), (y1 + 0.1 * h).min(image.height as f64 - 1.0));
    let bbox = [bx0, by0, (bx1 - bx0).max(1.0), (by1 - by0).max(1.0)];
    Some(CocoAnnotation {
        keypoint_weights: None,
        id,
        image_id: image.id,
        category_id: 1,
        keypoints,
        num_keypoints: n,
        bbox,
        area: bbox[2] * bbox[3] * 0.53,
        iscrowd: 0,
        is_primary: None,
    })
}

/// Labels every frame of `dir` (JPEG/PNG, name order); file names in the
/// output are relative to `dir`.
pub fn label(mut model: PoseModel, dir: &Path, opts: &LabelOptions) -> Result<(CocoDataset, LabelStats)> {
    let files = DirSource::open(dir)?.files().to_vec();
    let people = if opts.starts.is_empty() { vec![None] } else { opts.starts.iter().map(Some).collect() };
    let cfg = TrackConfig { hold_on_loss: !opts.starts.is_empty(), ..TrackConfig::default() };
    let mut trackers: Vec<Tracker> = people.iter().map(|_| Tracker::new(cfg)).collect();
    let aspect = model.aspect();
    let (mut frame, mut pose) = (Frame::default(), Pose::default());
    let mut images = Vec::new();
    let mut annotations = Vec::new();
    let mut stats = LabelStats::default();
    for (i, path) in files.iter().enumerate().take(opts.max_frames.map_or(usize::MAX, |n| n as usize)) {
        load_image(path, &mut frame).with_context(|| format!("{}: cannot load", path.display()))?;
        let name = path.strip_prefix(dir).unwrap_or(path).to_string_lossy().into_owned();
        let image = CocoImage {
            id: i as u64 + 1,
            file_name: name,
            width: frame.width,
            height: frame.height,
            frame_index: Some(i as u64),
        };
        for (start, tracker) in people.iter().zip(trackers.iter_mut()) {
            if let Some(s) = start {
                if (i as u64) < s.frame {
                    continue;
                }
                if i as u64 == s.frame {
                    let [x, y, w, h] = s.bbox;
                    tracker.start_at(Roi::from_box(x, y, w, h, aspect, 1.25));
                }
            }
            let lost = track_step(&mut model, tracker, &frame, 1.0 / 30.0, &mut pose)?.lost;
            match (!lost).then(|| annotation(annotations.len() as u64 + 1, &image, &pose, opts)).flatten() {
                Some(a) => {
                    stats.keypoints += a.num_keypoints as usize;
                    annotations.push(a);
                }
                None => stats.skipped += 1,
            }
        }
        images.push(image);
    }
    if images.is_empty() {
        bail!("{}: no frames", dir.display());
    }
    stats.frames = images.len();
    stats.annotations = annotations.len();
    let dataset = CocoDataset {
        info: Some(serde_json::json!({ "description": opts.description, "min_score": opts.min_score })),
        licenses: None,
        images,
        annotations,
        categories: vec![CocoCategory::person()],
    };
    dataset.check()?;
    Ok((dataset, stats))
}

/// Counts of [`fill`], for the report.
#[derive(Clone, Debug, Default)]
pub struct FillStats {
    pub annotations: usize,
    /// Keypoints the teacher added (confident, unlabelled before).
    pub filled: usize,
    /// Labelled keypoints, and those the teacher put within 0.1 of the box's
    /// longer side of the label (how far the teacher agrees with the labels).
    pub labelled: usize,
    pub agreeing: usize,
    /// Images that could not be read (`file: why`); their annotations are kept as they were.
    pub unreadable: Vec<String>,
}

/// Fills the unlabelled keypoints of every person of `coco` from the teacher:
/// each person's box is cropped (padded 1.25) and the teacher's keypoints with
/// score ≥ `min_score` become labels (visibility 2) whose training weight is
/// the score (`keypoint_weights`). Labelled keypoints stay as they are, weight 1.
pub fn fill(
    model: &mut PoseModel,
    coco: &CocoDataset,
    images: &Path,
    min_score: f32,
    mut progress: impl FnMut(usize),
) -> Result<(CocoDataset, FillStats)> {
    let mut out = coco.clone();
    let mut stats = FillStats { annotations: out.annotations.len(), ..FillStats::default() };
    let by_id: std::collections::HashMap<u64, &CocoImage> = coco.images.iter().map(|im| (im.id, im)).collect();
    let mut order: Vec<usize> = (0..out.annotations.len()).collect();
    order.sort_by_key(|&i| out.annotations[i].image_id);
    let aspect = model.aspect();
    let (mut frame, mut pose, mut loaded) = (Frame::default(), Pose::default(), None);
    for (done, i) in order.into_iter().enumerate() {
        progress(done);
        let a = &mut out.annotations[i];
        let image = by_id[&a.image_id];
        // The image in `frame`, and whether it loaded (an unreadable one is counted once).
        if loaded.is_none_or(|(id, _)| id != image.id) {
            let path = images.join(&image.file_name);
            let result = load_image(&path, &mut frame);
            loaded = Some((image.id, result.is_ok()));
            if let Err(e) = result {
                stats.unreadable.push(format!("{}: {e:#}", path.display()));
                // The training set's rule: past SKIP_CAP of the images, stop.
                let cap = (SKIP_CAP * coco.images.len() as f64).max(1.0);
                if stats.unreadable.len() as f64 > cap {
                    bail!(
                        "{} of {} images unreadable, e.g. {}",
                        stats.unreadable.len(),
                        coco.images.len(),
                        stats.unreadable[0]
                    );
                }
            }
        }
        if loaded.is_some_and(|(_, ok)| !ok) {
            continue;
        }
        let [x, y, w, h] = a.bbox.map(|v| v as f32);
        model.estimate(&frame, &Roi::from_box(x, y, w, h, aspect, 1.25), &mut pose)?;
        let size = w.max(h) as f64;
        let mut weights = a.keypoint_weights.clone().unwrap_or_else(|| vec![1.0; KEYPOINTS]);
        for (k, (kp, t)) in a.keypoints.chunks_mut(3).zip(&pose.keypoints).enumerate() {
            let (tx, ty) = (t[0] as f64 - 0.5, t[1] as f64 - 0.5);
            if kp[2] > 0.0 {
                stats.labelled += 1;
                if t[2] >= min_score && (tx - kp[0]).hypot(ty - kp[1]) <= 0.1 * size {
                    stats.agreeing += 1;
                }
                continue;
            }
            let inside = tx >= 0.0 && ty >= 0.0 && tx < image.width as f64 && ty < image.height as f64;
            if t[2] >= min_score && inside {
                kp.copy_from_slice(&[tx, ty, 2.0]);
                weights[k] = (t[2] as f64).min(1.0);
                stats.filled += 1;
            } else {
                weights[k] = 0.0;
            }
        }
        a.num_keypoints = a.keypoints.chunks(3).filter(|k| k[2] > 0.0).count() as u32;
        a.keypoint_weights = Some(weights);
    }
    for u in &stats.unreadable {
        log::warn!("skipped {u}");
    }
    out.check()?;
    Ok((out, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_boxes_parse() {
        assert_eq!("12:1,2,30,40".parse::<StartBox>().unwrap(), StartBox { frame: 12, bbox: [1.0, 2.0, 30.0, 40.0] });
        assert!("1,2,3,4".parse::<StartBox>().unwrap_err().contains("FRAME:x,y,w,h"));
        assert!("0:1,2,0,4".parse::<StartBox>().is_err());
        assert!("0:1,2,3".parse::<StartBox>().is_err());
    }
}
