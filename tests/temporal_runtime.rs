//! Temporal bundles in the runtime: the bundled MoveNet as the key net and a
//! temporal net (seeded random weights: these tests check the machinery, not
//! accuracy) on the bundled clip — the cycle in `poses.jsonl` and the
//! summary, `--spatial-only`, the prior drawn from the previous pose, and
//! bundles that must be refused.

mod common;

use std::path::{Path, PathBuf};

use common::temporal::{bundle, bundle_with, tnet, MOVENET};
use vipnas::arch::{FusionOp, InputSize, Weights};
use vipnas::onnx::{to_bytes, write_network, WriteOptions};
use vipnas::runtime::budget::FrameBudget;
use vipnas::runtime::schedule::NetChoice;
use vipnas::runtime::source::DirSource;
use vipnas::runtime::track::TrackConfig;
use vipnas::runtime::{run_frames, Estimator, Frame, Pose, RunOptions};

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

const CLIP: &str = "tests/data/pose2sim-cam03";
fn run_clip(est: &mut Estimator, out: &Path, frames: u64) -> (vipnas::runtime::RunSummary, Vec<serde_json::Value>) {
    let mut src = DirSource::open(&repo(CLIP)).unwrap();
    let opts = RunOptions {
        max_frames: Some(frames),
        budget: FrameBudget::from_fps(30.0),
        out_dir: out.to_path_buf(),
        overlay: false,
        draw_min_score: 0.3,
        live: None,
        rotate_bytes: None,
    };
    let summary = run_frames(&mut src, est, &opts).unwrap();
    let lines = std::fs::read_to_string(out.join("poses.jsonl")).unwrap();
    (summary, lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect())
}

#[test]
fn key_frames_and_temporal_nets_alternate_on_the_bundles_cycle() {
    let dir = common::scratch("temporal_cycle");
    let nets = [tnet(FusionOp::Add), tnet(FusionOp::Concat)];
    let b = bundle(&dir.join("bundle"), InputSize::new(128, 128).unwrap(), &nets, vec![0, 1, 1]);
    // Every keypoint counts and nobody is lost: the cycle alone decides.
    let track = TrackConfig {
        min_keypoint_score: f32::NEG_INFINITY,
        reinit_below: f32::NEG_INFINITY,
        ..TrackConfig::default()
    };
    let mut est = Estimator::load(&b, 1, track, false, None).unwrap();
    assert_eq!(est.temporal.len(), 2);
    let (summary, records) = run_clip(&mut est, &dir.join("out"), 12);
    let nets: Vec<&str> = records.iter().map(|r| r["net"].as_str().unwrap()).collect();
    let cycle = ["spatial", "temporal_0", "temporal_1", "temporal_1"];
    assert_eq!(nets, cycle.iter().cycle().take(12).copied().collect::<Vec<_>>());
    for r in &records {
        assert_eq!(r["key"].as_bool().unwrap(), r["net"] == "spatial", "{r}");
    }
    assert_eq!(summary.key_frames, 3);
    assert_eq!(summary.per_net, vec![("spatial".into(), 3), ("temporal_0".into(), 3), ("temporal_1".into(), 6)]);
    let text = summary.to_string();
    assert!(text.contains("key_frames=3 propagated=9 nets=spatial:3,temporal_0:3,temporal_1:6"), "{text}");
    assert!(text.lines().last().unwrap().starts_with("frames=12 "), "the summary line stays last: {text}");
}

#[test]
fn a_key_worker_runs_key_frames_in_the_background() {
    let dir = common::scratch("temporal_worker");
    let b = bundle(&dir.join("bundle"), InputSize::new(128, 128).unwrap(), &[tnet(FusionOp::Add)], vec![0, 0, 0]);
    let track = TrackConfig {
        min_keypoint_score: f32::NEG_INFINITY,
        reinit_below: f32::NEG_INFINITY,
        ..TrackConfig::default()
    };
    let mut est = Estimator::load(&b, 1, track, false, None).unwrap();
    est.start_key_worker(vipnas::runtime::PoseModel::load(&b, 1).unwrap()).unwrap();
    let (summary, records) = run_clip(&mut est, &dir.join("out"), 12);
    // Frame 0 has nothing to propagate: the key net, waited for. After it,
    // temporal nets give every pose; frame 4 (a cycle on) is a key frame
    // whose key net runs on the worker (idle then: its only job so far).
    assert_eq!(records[0]["net"], "spatial");
    assert!(records[1..].iter().all(|r| r["net"] == "temporal_0"), "{records:?}");
    assert_eq!(records[4]["key"], true);
    assert!(records[1..4].iter().all(|r| r["key"] == false));
    assert_eq!(summary.per_net[0], ("spatial".into(), 1));
    assert!(summary.key_frames >= 2, "{summary}");
    // Without temporal nets there is nothing to run meanwhile.
    let mut plain = Estimator::load(&repo(MOVENET), 1, TrackConfig::default(), false, None).unwrap();
    let e = plain.start_key_worker(vipnas::runtime::PoseModel::load(&repo(MOVENET), 1).unwrap()).unwrap_err();
    assert!(e.to_string().starts_with("a key-frame worker needs a temporal bundle"), "{e}");
}

#[test]
fn spatial_only_runs_the_key_net_on_every_frame() {
    let dir = common::scratch("temporal_spatial_only");
    let b = bundle(&dir.join("bundle"), InputSize::new(128, 128).unwrap(), &[tnet(FusionOp::Mul)], vec![0, 0]);
    let mut est = Estimator::load(&b, 1, TrackConfig::default(), true, Some(33.3)).unwrap();
    assert!(est.temporal.is_empty());
    let (summary, records) = run_clip(&mut est, &dir.join("out"), 6);
    assert!(records.iter().all(|r| r["net"] == "spatial" && r["key"] == true));
    assert_eq!(summary.key_frames, 6);
    assert!(!summary.to_string().contains("propagated="), "no temporal line for a spatial run");
}

#[test]
fn a_lost_person_brings_the_key_net_back_at_once() {
    let dir = common::scratch("temporal_lost");
    // A temporal net whose heatmaps are all far below zero: every pose it
    // gives is too weak to follow, so the frame after it restarts from the
    // whole frame, with the key net, not the next net of the cycle.
    let weak = |w: &mut Weights| w.tensors.get_mut("head.final.bias").unwrap().data.fill(-100.0);
    let input = InputSize::new(128, 128).unwrap();
    let b = bundle_with(&dir.join("bundle"), input, &[tnet(FusionOp::Add)], vec![0, 0, 0, 0], weak);
    let mut est = Estimator::load(&b, 1, TrackConfig::default(), false, None).unwrap();
    let (summary, records) = run_clip(&mut est, &dir.join("out"), 10);
    let nets: Vec<&str> = records.iter().map(|r| r["net"].as_str().unwrap()).collect();
    assert_eq!(nets, ["spatial", "temporal_0"].repeat(5), "a key frame after every lost propagated frame");
    assert!(records.iter().skip(2).step_by(2).all(|r| r["reinit"] == true));
    assert_eq!(summary.key_frames, 5);
}

#[test]
fn the_prior_is_the_previous_pose_drawn_into_the_crop() {
    // A temporal net whose output is its prior (the fusion's own heatmaps):
    // propagating a pose must give it back, wherever the crop is.
    let dir = common::scratch("temporal_prior");
    let b = bundle(&dir.join("bundle"), InputSize::new(128, 128).unwrap(), &[tnet(FusionOp::Add)], vec![0]);
    let est = Estimator::load(&b, 1, TrackConfig::default(), false, None).unwrap();
    let mut model = est.temporal.into_iter().next().unwrap();
    let mut frame = Frame::default();
    vipnas::runtime::frame::load_image(&repo(CLIP).join("000000.jpg"), &mut frame).unwrap();
    let mut previous = Pose::default();
    for (k, p) in previous.keypoints.iter_mut().enumerate() {
        *p = [100.0 + 3.0 * k as f32, 150.0 + 9.0 * k as f32, if k == 4 { 0.1 } else { 0.9 }];
    }
    let roi = vipnas::runtime::preprocess::Roi { cx: 130.0, cy: 220.0, w: 200.0, h: 200.0 };
    let mut pose = Pose::default();
    model.propagate(&frame, &roi, &previous, 0.3, &mut pose).unwrap();
    let prior = model.last_prior().unwrap();
    let (hh, hw) = (32usize, 32usize);
    for k in 0..17 {
        let plane = &prior[k * hh * hw..(k + 1) * hh * hw];
        let (at, max) = plane.iter().enumerate().fold((0, 0f32), |m, (i, &v)| if v > m.1 { (i, v) } else { m });
        if k == 4 {
            assert_eq!(max, 0.0, "a keypoint below the score threshold is left out");
            continue;
        }
        // Heatmap bin j covers crop pixels [4j, 4j+4): back to image pixels.
        let (u, v) = ((at % hw) as f32 * 4.0 + 2.0, (at / hw) as f32 * 4.0 + 2.0);
        let (x, y) = (roi.cx - roi.w / 2.0 + u * roi.w / 128.0, roi.cy - roi.h / 2.0 + v * roi.h / 128.0);
        let (px, py) = (previous.keypoints[k][0], previous.keypoints[k][1]);
        assert!(
            (x - px).abs() <= 200.0 / 32.0 && (y - py).abs() <= 200.0 / 32.0,
            "keypoint {k}: ({x}, {y}) vs ({px}, {py})"
        );
    }
}

#[test]
fn a_net_that_keeps_its_prior_gives_the_previous_pose_back() {
    // Output layer zeroed: the heatmaps are the prior alone (the output skip).
    // Temporal nets decode with DARK, exact for the prior's Gaussians, so the
    // pose comes back where it was; a quarter-bin step would move it.
    let dir = common::scratch("temporal_keep");
    let zero_head = |w: &mut Weights| {
        for t in ["head.final.weight", "head.final.bias"] {
            w.tensors.get_mut(t).unwrap().data.fill(0.0);
        }
    };
    let input = InputSize::new(128, 128).unwrap();
    let b = bundle_with(&dir.join("bundle"), input, &[tnet(FusionOp::Add)], vec![0], zero_head);
    let est = Estimator::load(&b, 1, TrackConfig::default(), false, None).unwrap();
    let mut model = est.temporal.into_iter().next().unwrap();
    assert_eq!(model.refine, vipnas::runtime::decode::Refine::Dark, "temporal nets decode with DARK");
    let mut frame = Frame::default();
    vipnas::runtime::frame::load_image(&repo(CLIP).join("000000.jpg"), &mut frame).unwrap();
    let mut previous = Pose::default();
    for (k, p) in previous.keypoints.iter_mut().enumerate() {
        *p = [90.0 + 7.3 * k as f32, 140.0 + 8.9 * k as f32, 0.9];
    }
    let roi = vipnas::runtime::preprocess::Roi { cx: 150.0, cy: 210.0, w: 200.0, h: 200.0 };
    let worst = |model: &mut vipnas::runtime::PoseModel| {
        let mut pose = Pose::default();
        model.propagate(&frame, &roi, &previous, 0.3, &mut pose).unwrap();
        (0..17)
            .map(|k| {
                let (a, b) = (pose.keypoints[k], previous.keypoints[k]);
                (a[0] - b[0]).abs().max((a[1] - b[1]).abs())
            })
            .fold(0f32, f32::max)
    };
    let dark = worst(&mut model);
    assert!(dark < 0.2, "DARK: a keypoint moved {dark} px");
    model.refine = vipnas::runtime::decode::Refine::Quarter;
    let quarter = worst(&mut model);
    assert!(quarter > 1.0, "a quarter step moves keypoints off the Gaussian's centre ({quarter} px)");
}

#[test]
fn bundles_with_broken_temporal_nets_are_refused_by_name() {
    let dir = common::scratch("temporal_refused");
    let input = InputSize::new(128, 128).unwrap();
    // A missing file.
    let b = bundle(&dir.join("missing"), input, &[tnet(FusionOp::Add)], vec![0]);
    std::fs::remove_file(b.join("temporal_0.onnx")).unwrap();
    let e = format!("{:#}", Estimator::load(&b, 1, TrackConfig::default(), false, None).err().unwrap());
    assert!(e.contains("temporal_0.onnx: no such file ("), "{e}");
    assert!(e.contains("manifest.json: temporal.nets[0].file"), "{e}");
    // With --spatial-only the temporal nets are not read.
    assert!(Estimator::load(&b, 1, TrackConfig::default(), true, None).is_ok());
    // Another aspect than the key net's (MoveNet is square).
    let b = bundle(&dir.join("aspect"), InputSize::new(128, 96).unwrap(), &[tnet(FusionOp::Add)], vec![0]);
    let e = format!("{:#}", Estimator::load(&b, 1, TrackConfig::default(), false, None).err().unwrap());
    assert!(e.contains("temporal.nets[0].input: 128x96 is not at the key net's aspect (192x192)"), "{e}");
    // A one-input (spatial) ONNX where a temporal net belongs.
    let b = bundle(&dir.join("spatial"), input, &[tnet(FusionOp::Add)], vec![0]);
    let plain = tnet(FusionOp::Add).subnet.network(input).unwrap();
    let model = write_network(&plain, &Weights::random(&plain, 1), &WriteOptions::default()).unwrap();
    std::fs::write(b.join("temporal_0.onnx"), to_bytes(&model)).unwrap();
    let e = format!("{:#}", Estimator::load(&b, 1, TrackConfig::default(), false, None).err().unwrap());
    assert!(e.contains("temporal_0.onnx: one input: a temporal net also takes the previous pose"), "{e}");
    // A cycle naming a net that is not there, and a fusion stage outside the space.
    let b = bundle(&dir.join("cycle"), input, &[tnet(FusionOp::Add)], vec![0, 0]);
    let text = std::fs::read_to_string(b.join("manifest.json")).unwrap();
    let mut m: serde_json::Value = serde_json::from_str(&text).unwrap();
    m["temporal"]["cycle"][1] = 3.into();
    std::fs::write(b.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    let e = format!("{:#}", Estimator::load(&b, 1, TrackConfig::default(), false, None).err().unwrap());
    assert!(e.ends_with("manifest.json: temporal: cycle: net 3 does not exist (1 nets)"), "{e}");
    m["temporal"]["cycle"][1] = 0.into();
    m["temporal"]["nets"][0]["net"]["fusion"]["stage"] = 9.into();
    std::fs::write(b.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    let e = format!("{:#}", Estimator::load(&b, 1, TrackConfig::default(), false, None).err().unwrap());
    assert!(e.ends_with("temporal: nets[0].net: fusion: stage 9 is not a stage of mbv3 (1..=6)"), "{e}");
}

#[test]
fn a_budget_no_net_meets_is_said_before_the_first_frame() {
    let dir = common::scratch("temporal_budget");
    let b = bundle(&dir.join("bundle"), InputSize::new(128, 128).unwrap(), &[tnet(FusionOp::Add)], vec![0]);
    let text = std::fs::read_to_string(b.join("manifest.json")).unwrap();
    let mut m: serde_json::Value = serde_json::from_str(&text).unwrap();
    m["measured_ms"] = serde_json::json!({"host": 21.5});
    m["temporal"]["nets"][0]["measured_ms"] = serde_json::json!({"host": 7.0});
    std::fs::write(b.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    let est = Estimator::load(&b, 1, TrackConfig::default(), false, Some(5.0)).unwrap();
    assert_eq!(
        est.budget_warnings("host", FrameBudget { ms: 5.0 }),
        ["no net of movenet-temporal-test meets the 5.0 ms frame budget on host: the fastest, temporal_0, takes 7.0 ms (measured); every frame will be late"]
    );
    assert_eq!(
        est.budget_warnings("host", FrameBudget { ms: 10.0 }),
        ["the key net of movenet-temporal-test takes 21.5 ms (measured) on host, over the 10.0 ms frame budget: key frames will be late (the budget controller spaces them out)"]
    );
    assert!(est.budget_warnings("host", FrameBudget { ms: 33.3 }).is_empty());
    assert!(
        est.budget_warnings("rpi4", FrameBudget { ms: 5.0 }).is_empty(),
        "no latency known for rpi4: nothing to say"
    );
    assert_eq!(est.net_name(NetChoice::Temporal(0)), "temporal_0");
}
