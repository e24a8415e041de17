//! The runtime on real data: the bundled MoveNet Lightning on the bundled
//! pose2sim clip (PCK against the labels, keypoints against onnxruntime on the
//! identical inputs), the loop's outputs, frame sources and bad input.

mod common;

use std::path::{Path, PathBuf};

use vipnas::runtime::budget::FrameBudget;
use vipnas::runtime::engine::InputTensor;
use vipnas::runtime::source::{jpeg_to_rgb, DirSource, FrameRead, FrameSource, SourceSpec, Y4mSource};
use vipnas::runtime::track::TrackConfig;
use vipnas::runtime::{run_frames, Estimator, Frame, Pose, PoseModel, RunOptions};

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

const CLIP: &str = "tests/data/pose2sim-cam03";
const LABELS: &str = "tests/data/pose2sim-cam03.json";
const MOVENET: &str = "models/movenet-lightning";

/// Labels of the clip by frame file name: 17 × (x, y, v) and the box.
fn labels() -> Vec<(String, Vec<[f64; 3]>, [f64; 4])> {
    let gt: serde_json::Value = serde_json::from_slice(&std::fs::read(repo(LABELS)).unwrap()).unwrap();
    let mut out: Vec<_> = gt["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|im| {
            let ann = gt["annotations"].as_array().unwrap().iter().find(|a| a["image_id"] == im["id"]).unwrap();
            let k: Vec<f64> = ann["keypoints"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            let b: Vec<f64> = ann["bbox"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            (
                im["file_name"].as_str().unwrap().to_string(),
                k.chunks(3).map(|c| [c[0], c[1], c[2]]).collect(),
                [b[0], b[1], b[2], b[3]],
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// PCK@t normalised by the longer side of the labelled box (as the data README).
fn pck(poses: &[[[f32; 3]; 17]], t: f64) -> f64 {
    let (mut hit, mut total) = (0, 0);
    for ((_, k, b), p) in labels().iter().zip(poses) {
        let size = b[2].max(b[3]);
        for (gt, pr) in k.iter().zip(p) {
            if gt[2] > 0.0 {
                total += 1;
                let d = ((pr[0] as f64 - 0.5 - gt[0]).powi(2) + (pr[1] as f64 - 0.5 - gt[1]).powi(2)).sqrt() / size;
                hit += (d < t) as usize;
            }
        }
    }
    hit as f64 / total as f64
}

#[test]
fn movenet_on_the_bundled_clip_matches_labels_and_onnxruntime() {
    let frames = if common::under_qemu() { 8 } else { 50 };
    let mut est = Estimator::new(PoseModel::load(&repo(MOVENET), 1).unwrap(), TrackConfig::default());
    let mut src = DirSource::open(&repo(CLIP)).unwrap();
    let dir = common::scratch("movenet_vs_ort");
    let (mut frame, mut pose) = (Frame::default(), Pose::default());
    let mut poses = Vec::new();
    let mut cases = Vec::new();
    for i in 0..frames {
        assert_eq!(src.read(&mut frame).unwrap(), FrameRead::Frame);
        est.step(&frame, 1.0 / 60.0, &mut pose).unwrap();
        poses.push(pose.keypoints);
        let (input, affine) = est.model.last_input();
        let InputTensor::I32(x) = input else { panic!("MoveNet takes int32") };
        let name = format!("input{i}.i32");
        std::fs::write(dir.join(&name), x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
        let kps: Vec<[f32; 3]> = pose.keypoints.iter().map(|k| [k[0] - 0.5, k[1] - 0.5, k[2]]).collect();
        cases.push(serde_json::json!({"input": name, "affine": affine.0, "keypoints": kps}));
    }
    let p10 = pck(&poses, 0.1);
    println!(
        "MoveNet Lightning on {frames} frames of pose2sim cam03: PCK@0.1 = {p10:.4}, PCK@0.05 = {:.4}",
        pck(&poses, 0.05)
    );
    assert!(p10 >= 0.95, "PCK@0.1 = {p10}");
    let spec = serde_json::json!({
        "model": repo(MOVENET).join("spatial.onnx"), "input_shape": [1, 192, 192, 3], "dtype": "i32",
        "kind": "keypoints", "frames": cases,
    });
    std::fs::write(dir.join("cases.json"), spec.to_string()).unwrap();
    if common::python_oracles("onnxruntime, numpy") {
        let report = common::run_oracle("keypoints_compare.py", &[&dir, Path::new("0.5")]);
        println!("{report}");
    }
}

#[test]
fn run_writes_one_jsonl_line_and_overlay_per_frame() {
    let out = common::scratch("run_loop");
    let mut src = SourceSpec::Dir(repo(CLIP)).open().unwrap();
    let mut est = Estimator::new(PoseModel::load(&repo(MOVENET), 1).unwrap(), TrackConfig::default());
    let n = if common::under_qemu() { 4 } else { 12 };
    let opts = RunOptions {
        max_frames: Some(n),
        budget: FrameBudget::from_fps(30.0),
        out_dir: out.clone(),
        overlay: true,
        draw_min_score: 0.3,
        live: None,
        rotate_bytes: None,
    };
    let summary = run_frames(src.as_mut(), &mut est, &opts).unwrap();
    assert_eq!(summary.frames, n);
    assert!(summary.p99_ms >= summary.p50_ms && summary.p50_ms > 0.0);
    let text = summary.to_string();
    assert!(text.lines().last().unwrap().starts_with(&format!("frames={n} fps=")), "{text}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("poses.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), n as usize);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["frame"], i as u64);
        assert_eq!(l["seq"], i as u64, "the file index in the clip");
        assert_eq!(l["keypoints"].as_array().unwrap().len(), 17);
        assert_eq!(l["box"].as_array().unwrap().len(), 4);
        assert_eq!(l["key"], true);
    }
    assert_eq!(lines[0]["reinit"], true, "the first frame starts from the whole frame");
    let pngs = std::fs::read_dir(out.join("overlay")).unwrap().count();
    assert_eq!(pngs, n as usize);
    // The overlay is drawn: the frame differs from the source image.
    let mut orig = Frame::default();
    vipnas::runtime::source::DirSource::open(&repo(CLIP)).unwrap().read(&mut orig).unwrap();
    let img = image::open(out.join("overlay/000000.png")).unwrap().into_rgb8();
    let changed = img.as_raw().iter().zip(&orig.rgb).filter(|(a, b)| a != b).count();
    assert!(changed > 500, "overlay changed only {changed} bytes");
}

/// Writes frames as a y4m (4:2:0, limited range) the way ffmpeg does.
fn write_y4m(path: &Path, frames: &[Frame], truncate_last: bool) {
    let (w, h) = (frames[0].width as usize, frames[0].height as usize);
    let mut bytes = format!("YUV4MPEG2 W{w} H{h} F30:1 Ip A1:1 C420jpeg\n").into_bytes();
    for (n, f) in frames.iter().enumerate() {
        bytes.extend_from_slice(b"FRAME\n");
        let px = |x: usize, y: usize| {
            let i = (y * w + x) * 3;
            (f.rgb[i] as f64, f.rgb[i + 1] as f64, f.rgb[i + 2] as f64)
        };
        let mut y_plane = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let (r, g, b) = px(x, y);
                y_plane.push((16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0).round() as u8);
            }
        }
        let (mut cb, mut cr) = (Vec::new(), Vec::new());
        for y in (0..h).step_by(2) {
            for x in (0..w).step_by(2) {
                let (r, g, b) = px(x, y);
                cb.push((128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0).round() as u8);
                cr.push((128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0).round() as u8);
            }
        }
        let mut frame = [y_plane, cb, cr].concat();
        if truncate_last && n == frames.len() - 1 {
            frame.truncate(frame.len() / 2);
        }
        bytes.extend_from_slice(&frame);
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn y4m_frames_round_trip_and_truncation_is_counted() {
    let dir = common::scratch("y4m");
    let mut src = DirSource::open(&repo(CLIP)).unwrap();
    let frames: Vec<Frame> = (0..3)
        .map(|_| {
            let mut f = Frame::default();
            src.read(&mut f).unwrap();
            // 4:2:0 needs even sizes: crop to 362x640.
            let mut c = Frame::new(f.width & !1, f.height & !1);
            for y in 0..c.height {
                for x in 0..c.width {
                    c.set_pixel(x, y, f.pixel(x, y));
                }
            }
            c
        })
        .collect();
    let path = dir.join("clip.y4m");
    write_y4m(&path, &frames, true);
    let mut y4m = Y4mSource::open(&path).unwrap();
    assert_eq!(y4m.fps(), Some(30.0));
    let mut f = Frame::default();
    for orig in &frames[..2] {
        assert_eq!(y4m.read(&mut f).unwrap(), FrameRead::Frame);
        assert_eq!((f.width, f.height), (orig.width, orig.height));
        // Chroma subsampling blurs colour edges; luma-dominated error stays small.
        let mad =
            f.rgb.iter().zip(&orig.rgb).map(|(a, b)| (*a as f64 - *b as f64).abs()).sum::<f64>() / f.rgb.len() as f64;
        assert!(mad < 4.0, "mean abs difference {mad}");
    }
    assert_eq!(y4m.read(&mut f).unwrap(), FrameRead::End, "the truncated last frame ends the stream");
    assert_eq!((y4m.stats().delivered, y4m.stats().lost), (2, 1));

    let bad = dir.join("bad.y4m");
    std::fs::write(&bad, b"YUV4MPEG2 W640\nFRAME\n").unwrap();
    let e = Y4mSource::open(&bad).err().unwrap();
    assert!(format!("{e:#}").contains("bad.y4m") && format!("{e:#}").contains("frame size"), "{e:#}");
}

#[test]
fn corrupt_and_empty_frames_are_counted_not_fatal() {
    let dir = common::scratch("dir_bad");
    std::fs::copy(repo(CLIP).join("000000.jpg"), dir.join("a.jpg")).unwrap();
    let bytes = std::fs::read(repo(CLIP).join("000001.jpg")).unwrap();
    std::fs::write(dir.join("b.jpg"), &bytes[..bytes.len() / 3]).unwrap(); // truncated
    std::fs::write(dir.join("c.png"), b"not a png").unwrap();
    std::fs::copy(repo(CLIP).join("000002.jpg"), dir.join("d.jpg")).unwrap();
    let mut src = DirSource::open(&dir).unwrap();
    let mut f = Frame::default();
    let reads: Vec<FrameRead> = (0..5).map(|_| src.read(&mut f).unwrap()).collect();
    assert_eq!(reads[0], FrameRead::Frame);
    assert!(matches!(&reads[2], FrameRead::Lost(m) if m.contains("c.png")), "{:?}", reads[2]);
    assert_eq!(reads[3], FrameRead::Frame);
    assert_eq!(reads[4], FrameRead::End);
    assert!(src.stats().lost >= 1 && src.stats().delivered + src.stats().lost == 4);
    let empty = common::scratch("dir_empty");
    assert!(format!("{:#}", DirSource::open(&empty).err().unwrap()).contains("no .jpg"));
}

#[test]
fn mjpeg_buffers_decode_like_the_original_frame() {
    let mut orig = Frame::default();
    DirSource::open(&repo(CLIP)).unwrap().read(&mut orig).unwrap();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 92)
        .encode(&orig.rgb, orig.width, orig.height, image::ExtendedColorType::Rgb8)
        .unwrap();
    let mut f = Frame::default();
    jpeg_to_rgb(&jpeg, &mut f).unwrap();
    let mad = f.rgb.iter().zip(&orig.rgb).map(|(a, b)| (*a as f64 - *b as f64).abs()).sum::<f64>() / f.rgb.len() as f64;
    assert!(mad < 3.0, "{mad}");
    assert!(jpeg_to_rgb(&jpeg[..200], &mut f).is_err());
}

#[test]
fn bad_models_fail_with_the_file_named() {
    let dir = common::scratch("bad_models");
    let e = |p: &Path| format!("{:#}", PoseModel::load(p, 1).err().unwrap());
    assert!(e(&dir.join("nope.onnx")).contains("no such model"));
    // Truncated ONNX.
    let onnx = std::fs::read(repo(MOVENET).join("spatial.onnx")).unwrap();
    let trunc = dir.join("trunc.onnx");
    std::fs::write(&trunc, &onnx[..onnx.len() / 2]).unwrap();
    let msg = e(&trunc);
    assert!(msg.contains("trunc.onnx") && msg.contains("not an ONNX model"), "{msg}");
    // A manifest that contradicts the model's input size.
    let bundle = dir.join("liar");
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::copy(repo(MOVENET).join("spatial.onnx"), bundle.join("spatial.onnx")).unwrap();
    let m = std::fs::read_to_string(repo(MOVENET).join("manifest.json")).unwrap();
    std::fs::write(bundle.join("manifest.json"), m.replace("\"height\": 192", "\"height\": 256")).unwrap();
    let msg = e(&bundle);
    assert!(msg.contains("manifest.json") && msg.contains("does not accept input"), "{msg}");
    // Output kind contradicting the model.
    std::fs::write(
        bundle.join("manifest.json"),
        m.replace("\"kind\": \"keypoints\"", "\"kind\": \"heatmap\", \"stride\": 4"),
    )
    .unwrap();
    let msg = e(&bundle);
    assert!(msg.contains("expects output [1, 17, 48, 48]") && msg.contains("[1, 1, 17, 3]"), "{msg}");
    // An input no board can run: refused by the manifest check, before tract.
    std::fs::write(bundle.join("manifest.json"), m.replace("\"height\": 192", "\"height\": 100000")).unwrap();
    let msg = e(&bundle);
    assert!(msg.contains("manifest.json: input: 100000x192 is larger than 2048x2048"), "{msg}");
    // A latency that is no latency.
    for (field, bad, shown) in [("latency_ms", "-3", "-3"), ("measured_ms", "0", "0"), ("measured_ms", "-0.0", "-0")] {
        let with = m.replacen("\"provenance\"", &format!("\"{field}\": {{\"rpi4\": {bad}}},\n  \"provenance\""), 1);
        std::fs::write(bundle.join("manifest.json"), with).unwrap();
        let msg = e(&bundle);
        assert!(msg.contains(&format!("manifest.json: {field}.rpi4 = {shown}: a latency must be positive")), "{msg}");
    }
    // A corrupt or missing spatial.onnx is named as such, not as a shape mismatch.
    std::fs::write(bundle.join("manifest.json"), &m).unwrap();
    std::fs::write(bundle.join("spatial.onnx"), &onnx[..onnx.len() / 3]).unwrap();
    let msg = e(&bundle);
    assert!(msg.contains("spatial.onnx: not an ONNX model") && !msg.contains("does not accept"), "{msg}");
    std::fs::remove_file(bundle.join("spatial.onnx")).unwrap();
    let msg = e(&bundle);
    assert!(msg.contains("spatial.onnx: no such file") && !msg.contains("does not accept"), "{msg}");
    // Corrupt manifest.
    std::fs::write(bundle.join("manifest.json"), "{\"format_version\": 1,").unwrap();
    let msg = e(&bundle);
    assert!(msg.contains("manifest.json: invalid manifest"), "{msg}");
}
