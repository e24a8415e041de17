//! `vipnas label`: pseudo-labels for unlabelled frames from a teacher model run
//! through the runtime's crop tracking. Confident keypoints keep visibility 2,
//! the rest are written as (0, 0, 0); a person with too few confident
//! keypoints in a frame gets no annotation there. Several people are followed,
//! each by its own tracker, from hand-given starting boxes or from a person
//! detector's boxes (a track for everyone who appears, ended when they leave).

use std::path::Path;
use std::str::FromStr;

use anyhow::{bail, Result};

use super::coco::{CocoAnnotation, CocoCategory, CocoDataset, CocoImage};
use super::dataset::{PADDING, SKIP_CAP};
use super::detect::{iou, PersonDetector};
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
    /// People to follow from given boxes; with neither these nor a detector,
    /// one person, found on the whole frame.
    pub starts: Vec<StartBox>,
    /// With a detector: look for people no track covers every this many frames.
    pub detect_every: u64,
    /// Every image is a scene of its own (still images): no track carries over.
    pub stills: bool,
    pub max_frames: Option<u64>,
    pub description: String,
}

impl LabelOptions {
    /// `vipnas label`'s defaults: keypoints scoring ≥ 0.4, people with ≥ 5 of
    /// them, one person from the whole frame, every frame.
    pub fn new(description: impl Into<String>) -> LabelOptions {
        LabelOptions {
            min_score: 0.4,
            min_keypoints: 5,
            starts: Vec::new(),
            detect_every: 1,
            stills: false,
            max_frames: None,
            description: description.into(),
        }
    }
}

/// Counts for the report.
#[derive(Clone, Debug, Default)]
pub struct LabelStats {
    pub frames: usize,
    pub annotations: usize,
    /// Frames in which a followed person was lost or too uncertain: no annotation.
    pub skipped: usize,
    pub keypoints: usize,
    /// Tracks with at least one annotation: distinct people, counted once per
    /// track (someone lost for good and found again later counts twice).
    pub people: usize,
    /// People the detector reported (each detection frame, all of them).
    pub detections: usize,
    /// Tracks ended because they had converged on a person another track follows.
    pub merged: usize,
    /// Frames that could not be read (`file: why`), skipped.
    pub unreadable: Vec<String>,
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

/// A person followed by [`label`].
struct Track {
    tracker: Tracker,
    /// Started by a detection: ends after [`MAX_MISSES`] lost frames in a row
    /// (a start box is followed to the end, holding its crop while lost).
    detected: bool,
    misses: u32,
    annotations: usize,
}

impl Track {
    fn end(self, stats: &mut LabelStats) {
        stats.people += usize::from(self.annotations > 0);
    }
}

/// A detected person lost this many frames in a row has left: the track ends.
const MAX_MISSES: u32 = 10;
/// A detection overlapping a followed person's box this much (IoU) is that person.
const SAME_PERSON_DETECTION: f32 = 0.3;
/// Two followed people whose boxes overlap this much are one: the younger track ends.
const SAME_PERSON_TRACKS: f32 = 0.6;

/// Labels every frame of `dir` (JPEG/PNG, name order); file names in the
/// output are relative to `dir`. People are followed from `opts.starts`, from
/// `detector`'s detections (a new track for each person no track covers,
/// every `opts.detect_every` frames), or, with neither, one person from the
/// whole frame. `progress(frames done, frames)` is called before each frame.
pub fn label(
    mut model: PoseModel,
    mut detector: Option<&mut dyn PersonDetector>,
    dir: &Path,
    opts: &LabelOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<(CocoDataset, LabelStats)> {
    let files = DirSource::open(dir)?.files().to_vec();
    let followed = !opts.starts.is_empty() || detector.is_some();
    let cfg = TrackConfig { hold_on_loss: followed, ..TrackConfig::default() }.for_output(model.manifest.output.kind);
    let new_track = |detected| Track { tracker: Tracker::new(cfg), detected, misses: 0, annotations: 0 };
    let mut tracks: Vec<Track> = if followed { Vec::new() } else { vec![new_track(false)] };
    let aspect = model.aspect();
    let (mut frame, mut pose) = (Frame::default(), Pose::default());
    let mut images = Vec::new();
    let mut annotations = Vec::new();
    let mut stats = LabelStats::default();
    let files = &files[..files.len().min(opts.max_frames.map_or(usize::MAX, |n| n as usize))];
    for (i, path) in files.iter().enumerate() {
        progress(i, files.len());
        if let Err(e) = load_image(path, &mut frame) {
            // Skipped and counted: the tracks go on with the next frame. Past
            // SKIP_CAP of the frames the labelling stops.
            log::warn!("skipped {}: {e:#}", path.display());
            stats.unreadable.push(format!("{}: {e:#}", path.display()));
            if stats.unreadable.len() as f64 > (SKIP_CAP * files.len() as f64).max(1.0) {
                bail!("{} of {} frames unreadable, e.g. {}", stats.unreadable.len(), files.len(), stats.unreadable[0]);
            }
            continue;
        }
        let name = path.strip_prefix(dir).unwrap_or(path).to_string_lossy().into_owned();
        let image = CocoImage {
            id: i as u64 + 1,
            file_name: name,
            width: frame.width,
            height: frame.height,
            frame_index: Some(i as u64),
        };
        if opts.stills {
            tracks.drain(..).for_each(|t| t.end(&mut stats));
        }
        for s in opts.starts.iter().filter(|s| s.frame == i as u64) {
            let mut t = new_track(false);
            let [x, y, w, h] = s.bbox;
            t.tracker.start_at(Roi::from_box(x, y, w, h, aspect, PADDING));
            tracks.push(t);
        }
        // This frame's annotation of each track, in track order.
        let mut found: Vec<Option<CocoAnnotation>> = Vec::with_capacity(tracks.len());
        for t in tracks.iter_mut() {
            found.push(step(&mut model, &mut t.tracker, &frame, &image, opts, &mut pose)?);
        }
        let detect_now = opts.stills || (i as u64).is_multiple_of(opts.detect_every.max(1));
        if let Some(d) = detector.as_deref_mut().filter(|_| detect_now) {
            let mut people = d.detect(&frame)?;
            people.sort_by(|a, b| b.score.total_cmp(&a.score));
            stats.detections += people.len();
            for p in people {
                if found.iter().flatten().any(|a| iou(&p.bbox, &a.bbox.map(|v| v as f32)) >= SAME_PERSON_DETECTION) {
                    continue;
                }
                let mut t = new_track(true);
                let [x, y, w, h] = p.bbox;
                t.tracker.start_at(Roi::from_box(x, y, w, h, aspect, PADDING));
                found.push(step(&mut model, &mut t.tracker, &frame, &image, opts, &mut pose)?);
                tracks.push(t);
            }
        }
        // Two tracks on one person (one drifted onto the other): the younger ends.
        let mut keep = vec![true; tracks.len()];
        for j in 0..tracks.len() {
            for k in 0..j {
                if let (true, Some(a), Some(b)) = (keep[k], &found[k], &found[j]) {
                    if iou(&a.bbox.map(|v| v as f32), &b.bbox.map(|v| v as f32)) >= SAME_PERSON_TRACKS {
                        keep[j] = false;
                        stats.merged += 1;
                        break;
                    }
                }
            }
        }
        let mut kept = Vec::with_capacity(tracks.len());
        for ((mut t, a), keep) in tracks.drain(..).zip(found).zip(keep) {
            match (keep, a) {
                (false, _) => {
                    t.end(&mut stats);
                    continue;
                }
                (true, Some(mut a)) => {
                    a.id = annotations.len() as u64 + 1;
                    stats.keypoints += a.num_keypoints as usize;
                    annotations.push(a);
                    t.annotations += 1;
                    t.misses = 0;
                }
                (true, None) => {
                    stats.skipped += 1;
                    t.misses += 1;
                }
            }
            if t.detected && t.misses > MAX_MISSES {
                t.end(&mut stats);
            } else {
                kept.push(t);
            }
        }
        tracks = kept;
        images.push(image);
    }
    tracks.into_iter().for_each(|t| t.end(&mut stats));
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

/// One frame of one track: the teacher's pose in the tracker's crop, as an
/// annotation (id 0, set when kept) when the person is not lost and enough
/// keypoints are confident.
fn step(
    model: &mut PoseModel,
    tracker: &mut Tracker,
    frame: &Frame,
    image: &CocoImage,
    opts: &LabelOptions,
    pose: &mut Pose,
) -> Result<Option<CocoAnnotation>> {
    let lost = track_step(model, tracker, frame, 1.0 / 30.0, pose)?.lost;
    Ok((!lost).then(|| annotation(0, image, pose, opts)).flatten())
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
        model.estimate(&frame, &Roi::from_box(x, y, w, h, aspect, PADDING), &mut pose)?;
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

    /// `n` frames of the bundled clip in a fresh directory, the frames in `broken` overwritten with text.
    fn clip(n: usize, broken: &[usize]) -> tempfile::TempDir {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = tempfile::tempdir().unwrap();
        for i in 0..n {
            let to = dir.path().join(format!("{i:06}.jpg"));
            std::fs::copy(repo.join(format!("tests/data/pose2sim-cam03/{i:06}.jpg")), &to).unwrap();
            if broken.contains(&i) {
                std::fs::write(&to, "not a JPEG").unwrap();
            }
        }
        dir
    }

    #[test]
    fn unreadable_frames_are_skipped_and_counted_up_to_the_cap() {
        let model =
            || PoseModel::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/movenet-lightning"), 1).unwrap();
        let dir = clip(20, &[7]);
        let (set, stats) = label(model(), None, dir.path(), &LabelOptions::new("test"), |_, _| {}).unwrap();
        assert_eq!(stats.unreadable.len(), 1);
        assert!(stats.unreadable[0].contains("000007.jpg"), "{:?}", stats.unreadable);
        assert_eq!(set.images.len(), 19);
        assert!(set.images.iter().all(|im| im.file_name != "000007.jpg"));
        assert!(stats.annotations >= 18, "{stats:?}");
        // 2 of 20 is past 5 %: stop, naming a file.
        let dir = clip(20, &[3, 9]);
        let err = label(model(), None, dir.path(), &LabelOptions::new("test"), |_, _| {}).unwrap_err().to_string();
        assert!(err.starts_with("2 of 20 frames unreadable, e.g. ") && err.contains("000003.jpg"), "{err}");
    }

    #[test]
    fn start_boxes_parse() {
        assert_eq!("12:1,2,30,40".parse::<StartBox>().unwrap(), StartBox { frame: 12, bbox: [1.0, 2.0, 30.0, 40.0] });
        assert!("1,2,3,4".parse::<StartBox>().unwrap_err().contains("FRAME:x,y,w,h"));
        assert!("0:1,2,0,4".parse::<StartBox>().is_err());
        assert!("0:1,2,3".parse::<StartBox>().is_err());
    }
}
