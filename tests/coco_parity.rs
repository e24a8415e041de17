//! Golden tests: our COCO keypoint evaluation (hotcoco) against pycocotools,
//! the reference, to 1e-6 on all 10 metrics — on real labelled sets with
//! teacher results, and on hand-made edge cases. Then `vipnas eval` of the
//! bundled MoveNet on the bundled clip, with pycocotools scoring the same results.

mod common;

use std::path::{Path, PathBuf};

use vipnas::arch::rng::Rng;
use vipnas::host::coco::{load_results, CocoAnnotation, CocoCategory, CocoDataset, CocoImage, CocoResult};
use vipnas::host::eval::{coco_stats, pck, predict, RoiMode};
use vipnas::runtime::PoseModel;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// pycocotools' 10 stats, or None (reported) without the oracle.
fn pycocotools(gt: &Path, dt: &Path) -> Option<Vec<f64>> {
    if !common::python_oracles("pycocotools") {
        return None;
    }
    let out = common::run_oracle("coco_eval.py", &[gt, dt]);
    Some(serde_json::from_str(out.trim().lines().last().unwrap()).unwrap())
}

fn assert_parity(name: &str, gt_path: &Path, dt_path: &Path) -> [f64; 10] {
    let gt = CocoDataset::load(gt_path).unwrap();
    let results = load_results(dt_path, &gt).unwrap();
    let ours = coco_stats(&gt, &results).unwrap();
    if let Some(reference) = pycocotools(gt_path, dt_path) {
        for (i, (a, b)) in ours.iter().zip(&reference).enumerate() {
            assert!(
                (a - b).abs() <= 1e-6,
                "{name}: stat {i}: ours {a} vs pycocotools {b}\nours {ours:?}\nref  {reference:?}"
            );
        }
        println!("{name}: AP={:.4} AP50={:.4} AR={:.4} — equal to pycocotools within 1e-6", ours[0], ours[1], ours[5]);
    }
    ours
}

#[test]
fn parity_on_the_bundled_clip_with_teacher_results() {
    for m in ["lightning", "thunder"] {
        let dt = repo(&format!("tests/data/pose2sim-cam03-movenet-{m}-results.json"));
        assert_parity(&format!("cam03[0..50] movenet-{m}"), &repo("tests/data/pose2sim-cam03.json"), &dt);
    }
}

#[test]
fn parity_on_the_shared_labelled_sets() {
    let shared = repo("../shared/data/pose2sim_demo");
    if !shared.is_dir() {
        eprintln!(
            "\n!!!!!!!! SKIPPING: {} is absent (CI has it; scripts/fetch-data.sh rebuilds it) !!!!!!!!\n",
            shared.display()
        );
        return;
    }
    for cam in ["cam01", "cam02", "cam03"] {
        for m in ["lightning", "thunder"] {
            let gt = shared.join(format!("annotations/person_keypoints_{cam}.json"));
            let dt = shared.join(format!("teacher/movenet_{m}_{cam}_results.json"));
            assert_parity(&format!("{cam} movenet-{m}"), &gt, &dt);
        }
    }
}

/// A person with keypoints inside `box`, some invisible.
fn person(rng: &mut Rng, id: u64, image_id: u64, bbox: [f64; 4], visible: usize) -> CocoAnnotation {
    let mut keypoints = Vec::new();
    for k in 0..17 {
        if k < visible {
            keypoints.extend([bbox[0] + rng.uniform() * bbox[2], bbox[1] + rng.uniform() * bbox[3], 2.0]);
        } else {
            keypoints.extend([0.0, 0.0, 0.0]);
        }
    }
    CocoAnnotation {
        keypoint_weights: None,
        id,
        image_id,
        category_id: 1,
        keypoints,
        num_keypoints: visible as u32,
        bbox,
        area: bbox[2] * bbox[3] * 0.6,
        iscrowd: 0,
        is_primary: None,
    }
}

/// A detection near `a` with noise `sigma` pixels.
fn detect(rng: &mut Rng, a: &CocoAnnotation, sigma: f64, score: f64) -> CocoResult {
    let mut keypoints = Vec::new();
    for k in 0..17 {
        let (x, y) = if a.keypoints[3 * k + 2] > 0.0 {
            (a.keypoints[3 * k], a.keypoints[3 * k + 1])
        } else {
            (a.bbox[0] + a.bbox[2] / 2.0, a.bbox[1] + a.bbox[3] / 2.0)
        };
        keypoints.extend([x + sigma * rng.normal(), y + sigma * rng.normal(), 1.0]);
    }
    CocoResult { image_id: a.image_id, category_id: 1, keypoints, score }
}

#[test]
fn parity_on_hand_made_edge_cases() {
    let dir = common::scratch("coco_edge_cases");
    let mut rng = Rng::new(42);
    let images: Vec<CocoImage> = (1..=7)
        .map(|id| CocoImage { id, file_name: format!("{id}.jpg"), width: 640, height: 480, frame_index: None })
        .collect();
    // 1: two people (large and medium), 2: a small-area and a medium one,
    // 3: no GT at all, 4: a GT with 0 visible keypoints and a crowd region,
    // 5: one person with 30 detections, 6: few visible keypoints, 7: large.
    let specs: [(u64, [f64; 4], usize, u8); 9] = [
        (1, [10.0, 10.0, 200.0, 300.0], 17, 0),
        (1, [300.0, 50.0, 60.0, 90.0], 17, 0),
        (2, [20.0, 20.0, 30.0, 40.0], 12, 0),
        (2, [200.0, 100.0, 70.0, 120.0], 17, 0),
        (4, [50.0, 50.0, 100.0, 200.0], 0, 0),
        (4, [300.0, 100.0, 200.0, 200.0], 10, 1),
        (5, [100.0, 80.0, 150.0, 250.0], 17, 0),
        (6, [400.0, 200.0, 120.0, 200.0], 3, 0),
        (7, [0.0, 0.0, 400.0, 470.0], 17, 0),
    ];
    let gt: Vec<CocoAnnotation> = specs
        .iter()
        .enumerate()
        .map(|(i, &(image, bbox, visible, crowd))| {
            let mut a = person(&mut rng, i as u64 + 1, image, bbox, visible);
            a.iscrowd = crowd;
            a
        })
        .collect();
    let mut dts = Vec::new();
    for a in &gt {
        let sigma = [1.0, 3.0, 8.0, 20.0][(a.id % 4) as usize];
        let score = 0.5 + 0.4 * rng.uniform();
        dts.push(detect(&mut rng, a, sigma, score));
    }
    // Duplicates of image 1's detections, slightly lower scores.
    let dup: Vec<CocoResult> =
        dts.iter().filter(|d| d.image_id == 1).map(|d| CocoResult { score: d.score - 0.01, ..d.clone() }).collect();
    dts.extend(dup);
    // Detections on an image without GT.
    let ghost = person(&mut rng, 999, 3, [10.0, 10.0, 100.0, 100.0], 17);
    dts.push(detect(&mut rng, &ghost, 2.0, 0.95));
    // More than 20 detections on image 5 (maxDets = 20), mostly poor, some good late.
    let target = gt.iter().find(|a| a.image_id == 5).unwrap().clone();
    for i in 0..30 {
        dts.push(detect(&mut rng, &target, if i % 7 == 0 { 2.0 } else { 60.0 }, 0.3 + 0.02 * i as f64));
    }
    // On the 0-visible GT and the crowd region.
    for a in gt.iter().filter(|a| a.image_id == 4) {
        dts.push(detect(&mut rng, a, 5.0, 0.7));
    }
    let gt_set = CocoDataset {
        info: None,
        licenses: None,
        images,
        annotations: gt,
        categories: vec![CocoCategory { id: 1, name: "person".into(), keypoints: None, skeleton: None }],
    };
    let (gt_path, dt_path) = (dir.join("gt.json"), dir.join("dt.json"));
    std::fs::write(&gt_path, serde_json::to_vec(&gt_set).unwrap()).unwrap();
    std::fs::write(&dt_path, serde_json::to_vec(&dts).unwrap()).unwrap();
    let stats = assert_parity("edge cases", &gt_path, &dt_path);
    // The case is not trivial: neither perfect nor empty, medium and large both scored.
    assert!(stats[0] > 0.05 && stats[0] < 0.95, "{stats:?}");
    assert!(stats[3] >= 0.0 && stats[4] >= 0.0, "medium and large areas present: {stats:?}");
}

#[test]
fn eval_of_bundled_movenet_on_bundled_clip() {
    let gt_path = repo("tests/data/pose2sim-cam03.json");
    let gt = CocoDataset::load(&gt_path).unwrap();
    let model = PoseModel::load(&repo("models/movenet-lightning"), 1).unwrap();
    let p = predict(model, &gt, &repo("tests/data/pose2sim-cam03"), RoiMode::Track).unwrap();
    assert_eq!(p.results.len(), 50);
    let ours = coco_stats(&gt, &p.results).unwrap();
    let pck = pck(&gt, &p.results, &[0.1, 0.2]);
    println!(
        "bundled MoveNet Lightning on the bundled clip: AP={:.4} PCK@0.1={:.4} PCK@0.2={:.4}",
        ours[0], pck.overall[0], pck.overall[1]
    );
    assert!(ours[0] > 0.6, "AP {}", ours[0]);
    assert!(pck.overall[0] > 0.95, "PCK@0.1 {}", pck.overall[0]);
    let dir = common::scratch("eval_bundled");
    let dt_path = dir.join("results.json");
    vipnas::host::eval::write_results(&dt_path, &p.results).unwrap();
    if let Some(reference) = pycocotools(&gt_path, &dt_path) {
        assert!((ours[0] - reference[0]).abs() <= 0.02, "AP ours {} vs pycocotools {}", ours[0], reference[0]);
        println!("pycocotools on the same results: AP={:.4}", reference[0]);
    }
}

#[test]
fn teacher_labels_agree_with_the_real_labels() {
    use vipnas::host::label::{label, LabelOptions, StartBox};
    let gt = CocoDataset::load(&repo("tests/data/pose2sim-cam03.json")).unwrap();
    // Followed from a box around the subject on frame 0, as for sports2d/vtest.
    let first = gt.annotations.iter().find(|a| a.image_id == gt.images_in_order()[0].id).unwrap();
    let b = first.bbox.map(|v| v as f32);
    let opts = LabelOptions {
        starts: vec![StartBox { frame: 0, bbox: b }],
        max_frames: Some(30),
        ..LabelOptions::new("test")
    };
    let model = PoseModel::load(&repo("models/movenet-lightning"), 1).unwrap();
    let (labels, stats) = label(model, None, &repo("tests/data/pose2sim-cam03"), &opts, |_, _| {}).unwrap();
    assert_eq!(stats.frames, 30);
    assert!(stats.annotations >= 28, "{stats:?}");
    assert!(labels.annotations.iter().all(|a| a.num_keypoints >= 5 && a.bbox[2] > 0.0));
    // The pseudo-labels, read as results, score high against the real labels.
    let as_results: Vec<CocoResult> = labels
        .annotations
        .iter()
        .map(|a| {
            let file = &labels.images.iter().find(|i| i.id == a.image_id).unwrap().file_name;
            let image_id = gt.images.iter().find(|i| &i.file_name == file).unwrap().id;
            CocoResult { image_id, category_id: 1, keypoints: a.keypoints.clone(), score: 1.0 }
        })
        .collect();
    let p = pck(&gt, &as_results, &[0.1]);
    // Only the first 30 frames were labelled: score those.
    let labelled: std::collections::HashSet<u64> = as_results.iter().map(|r| r.image_id).collect();
    let mut sub = gt.clone();
    sub.annotations.retain(|a| labelled.contains(&a.image_id));
    let p30 = pck(&sub, &as_results, &[0.1]);
    println!(
        "teacher labels vs real labels on 30 frames: PCK@0.1 = {:.3} over {} labelled keypoints",
        p30.overall[0], p30.keypoints
    );
    assert!(p30.overall[0] > 0.9, "{}", p30.overall[0]);
    assert!(p.overall[0] < p30.overall[0], "unlabelled frames count as misses");
}

/// Replays the human boxes of a labelled set as detections: it recognises
/// the frame it is given by its pixels.
struct LabelBoxes {
    /// Per frame: a hash of its pixels, its boxes.
    frames: Vec<(u64, Vec<[f32; 4]>)>,
    /// The frames it was called on.
    calls: Vec<usize>,
}

impl vipnas::host::detect::PersonDetector for LabelBoxes {
    fn detect(&mut self, f: &vipnas::runtime::Frame) -> anyhow::Result<Vec<vipnas::host::detect::Detection>> {
        let i = self.frames.iter().position(|(h, _)| *h == pixels_hash(f)).expect("a frame of the set");
        self.calls.push(i);
        Ok(self.frames[i].1.iter().map(|&bbox| vipnas::host::detect::Detection { bbox, score: 1.0 }).collect())
    }
}

fn pixels_hash(f: &vipnas::runtime::Frame) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    f.rgb.hash(&mut h);
    h.finish()
}

#[test]
fn a_detector_starts_one_track_per_person_and_the_teacher_labels_both() {
    use vipnas::host::label::{label, LabelOptions};
    let shared = repo("../shared/data/pose2sim_demo");
    if !shared.is_dir() {
        eprintln!("\n!!!!!!!! SKIPPING: {} is absent (CI has it) !!!!!!!!\n", shared.display());
        return;
    }
    // pose2sim cam01: the runner and a person in the background, both labelled by hand.
    let gt = CocoDataset::load(&shared.join("annotations/person_keypoints_cam01.json")).unwrap();
    let dir = common::scratch("label-detector");
    let frames = dir.join("cam01");
    std::fs::create_dir_all(&frames).unwrap();
    let images: Vec<_> = gt.images_in_order().into_iter().take(30).cloned().collect();
    let mut detector = LabelBoxes { frames: Vec::new(), calls: Vec::new() };
    let mut frame = vipnas::runtime::Frame::default();
    for im in &images {
        let name = Path::new(&im.file_name).file_name().unwrap();
        std::fs::copy(shared.join("frames").join(&im.file_name), frames.join(name)).unwrap();
        vipnas::runtime::frame::load_image(&frames.join(name), &mut frame).unwrap();
        let boxes = gt.annotations.iter().filter(|a| a.image_id == im.id).map(|a| a.bbox.map(|v| v as f32)).collect();
        detector.frames.push((pixels_hash(&frame), boxes));
    }
    let every = 5;
    let opts = LabelOptions { detect_every: every, ..LabelOptions::new("test") };
    let model = PoseModel::load(&repo("models/movenet-lightning"), 1).unwrap();
    let (labels, stats) = label(model, Some(&mut detector), &frames, &opts, |_, _| {}).unwrap();
    println!("{stats:?}");
    assert_eq!(detector.calls, (0..30).step_by(every as usize).collect::<Vec<_>>(), "detector every {every} frames");
    assert_eq!(stats.frames, 30);
    // Both people followed from frame 0; the later detections of them start nothing.
    assert_eq!(stats.people, 2, "{stats:?}");
    assert!(stats.annotations >= 56, "{stats:?}");
    assert!(labels.images.iter().all(|im| labels.annotations.iter().filter(|a| a.image_id == im.id).count() <= 2));
    // Each person's labels land on that person: PCK@0.1 against the human labels.
    let as_results: Vec<CocoResult> = labels
        .annotations
        .iter()
        .map(|a| {
            let file = &labels.images.iter().find(|i| i.id == a.image_id).unwrap().file_name;
            let image_id = images.iter().find(|i| i.file_name.ends_with(file.as_str())).unwrap().id;
            CocoResult { image_id, category_id: 1, keypoints: a.keypoints.clone(), score: 1.0 }
        })
        .collect();
    let mut sub = gt.clone();
    sub.annotations.retain(|a| images.iter().any(|i| i.id == a.image_id));
    let p = pck(&sub, &as_results, &[0.1]);
    println!(
        "teacher labels of both people vs the human labels: PCK@0.1 = {:.3} over {} keypoints",
        p.overall[0], p.keypoints
    );
    assert!(p.overall[0] > 0.8, "{}", p.overall[0]);
}

#[test]
fn openpose_body25b_converts_to_coco_with_scaling_boxes_and_primary() {
    use vipnas::host::openpose::{convert, OpenPoseConversion};
    let dir = common::scratch("openpose");
    let (json, frames) = (dir.join("cam1_json"), dir.join("frames"));
    std::fs::create_dir_all(&json).unwrap();
    std::fs::create_dir_all(&frames).unwrap();
    // Source video 200x400, frames 100x200 (scale 0.5).
    for i in 0..2 {
        image::RgbImage::new(100, 200).save(frames.join(format!("{i:06}.jpg"))).unwrap();
    }
    let person = |x0: f64, y0: f64, size: f64, conf: f64| -> Vec<f64> {
        (0..25)
            .flat_map(|j| [x0 + size * (j % 5) as f64, y0 + size * (j / 5) as f64, if j == 3 { 0.05 } else { conf }])
            .collect()
    };
    let frame0 = serde_json::json!({"people": [{"pose_keypoints_2d": person(10.0, 20.0, 10.0, 0.9)}, {"pose_keypoints_2d": person(100.0, 100.0, 20.0, 0.8)}]});
    std::fs::write(json.join("cam01.0000.json"), frame0.to_string()).unwrap();
    std::fs::write(json.join("cam01.0001.json"), serde_json::json!({"people": []}).to_string()).unwrap();
    let d = convert(&OpenPoseConversion {
        json_dir: &json,
        frames_dir: &frames,
        prefix: "cam01",
        id_base: 100000,
        source_size: (200, 400),
        conf: 0.1,
    })
    .unwrap();
    assert_eq!(d.images.len(), 2);
    assert_eq!(d.images[0].file_name, "cam01/000000.jpg");
    assert_eq!(d.annotations.len(), 2, "frame 1 has nobody");
    let big = d.annotations.iter().find(|a| a.is_primary == Some(1)).unwrap();
    // Joint 0 of the big person: (100 + 0.5) * 0.5 - 0.5 = 49.75, y likewise.
    assert_eq!((big.keypoints[0], big.keypoints[1], big.keypoints[2]), (49.75, 49.75, 2.0));
    assert_eq!(&big.keypoints[9..12], &[0.0, 0.0, 0.0], "joint 3 below the confidence threshold");
    assert_eq!(big.num_keypoints, 16);
    // Box over all 25 joints (x 100..180, y 100..180 in the source), +10 % per side.
    let (x0, x1) = (49.75, 89.75);
    assert!((big.bbox[0] - (x0 - 4.0)).abs() < 1e-9 && (big.bbox[2] - 48.0).abs() < 1e-9, "{:?}", big.bbox);
    assert!((big.area - big.bbox[2] * big.bbox[3] * 0.53).abs() < 1e-9);
    assert!(x1 > x0);
    assert_eq!(d.annotations.iter().filter(|a| a.is_primary == Some(0)).count(), 1);
}

#[test]
fn missing_images_are_named() {
    let gt = CocoDataset::load(&repo("tests/data/pose2sim-cam03.json")).unwrap();
    let model = PoseModel::load(&repo("models/movenet-lightning"), 1).unwrap();
    let e = predict(model, &gt, Path::new("/nonexistent/frames"), RoiMode::Track).err().unwrap();
    let msg = format!("{e:#}");
    assert!(msg.contains("image 300000") && msg.contains("/nonexistent/frames/000000.jpg"), "{msg}");
}
