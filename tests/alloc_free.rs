//! The per-frame path allocates nothing of its own in steady state: a counting
//! global allocator watches the production loop (`vipnas::runtime::run`: y4m
//! capture, preprocess, inference, decode, tracking, smoothing, jsonl sink)
//! over 100+ frames after warm-up, with counting paused inside the engine call.
//! What tract allocates per inference is measured and reported separately
//! (it takes ownership of a fresh input tensor and allocates intermediates).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

use vipnas::bundle::InputType;
use vipnas::runtime::budget::FrameBudget;
use vipnas::runtime::engine::InputTensor;
use vipnas::runtime::engine::{Engine, EngineOptions, TractEngine};
use vipnas::runtime::source::{FrameSource, SyntheticSource, Y4mSource};
use vipnas::runtime::track::{OneEuroConfig, TrackConfig};
use vipnas::runtime::{run_frames, Estimator, Frame, PoseModel, RunOptions};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    static PAUSED: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if !PAUSED.with(|p| p.get()) {
        ALLOCS.with(|c| c.set(c.get() + 1));
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

/// Tract, with allocation counting paused for the duration of each run.
struct Uncounted(TractEngine);

impl Engine for Uncounted {
    fn input_shapes(&self) -> &[Vec<usize>] {
        self.0.input_shapes()
    }
    fn output_shape(&self) -> &[usize] {
        self.0.output_shape()
    }
    fn run(&mut self, inputs: &[&InputTensor], output: &mut [f32]) -> anyhow::Result<()> {
        PAUSED.with(|p| p.set(true));
        let r = self.0.run(inputs, output);
        PAUSED.with(|p| p.set(false));
        r
    }
}

/// A y4m clip of the synthetic walker (raw planar frames, no decoder).
fn write_clip(path: &Path, n: u64) {
    let (w, h) = (320u32, 240u32);
    let src = SyntheticSource::new(w, h, None);
    let mut f = Frame::default();
    let mut bytes = format!("YUV4MPEG2 W{w} H{h} F30:1 C444 XCOLORRANGE=FULL\n").into_bytes();
    for i in 0..n {
        src.draw(i, &mut f);
        bytes.extend_from_slice(b"FRAME\n");
        let px: Vec<(f32, f32, f32)> = f.rgb.chunks(3).map(|p| (p[0] as f32, p[1] as f32, p[2] as f32)).collect();
        bytes.extend(px.iter().map(|(r, g, b)| (0.299 * r + 0.587 * g + 0.114 * b).round() as u8));
        bytes.extend(
            px.iter().map(|(r, g, b)| (128.0 - 0.168736 * r - 0.331264 * g + 0.5 * b).round().clamp(0.0, 255.0) as u8),
        );
        bytes.extend(
            px.iter().map(|(r, g, b)| (128.0 + 0.5 * r - 0.418688 * g - 0.081312 * b).round().clamp(0.0, 255.0) as u8),
        );
    }
    std::fs::write(path, bytes).unwrap();
}

/// Allocations of `measured` steady-state frames of the production loop with
/// the model at `bundle` (counting paused inside the engine), and tract's own
/// allocations per inference.
fn steady_state_allocations(bundle: &Path, clip: &Path, warm: u64, measured: u64) -> (u64, f64) {
    let dir = clip.parent().unwrap();
    let track = TrackConfig { smoothing: Some(OneEuroConfig::default()), ..TrackConfig::default() };
    let manifest = vipnas::bundle::Manifest::load(bundle).unwrap();
    let shape = vipnas::runtime::model::input_shape(&manifest.input);
    let datum = manifest.input.dtype;
    let onnx = bundle.join(&manifest.spatial);
    let tract = TractEngine::from_path_with(&onnx, &shape, &EngineOptions::new(datum, 1)).unwrap();
    let model = PoseModel::from_engine(manifest, Box::new(Uncounted(tract))).unwrap();
    let mut est = Estimator::new(model, track);
    let opts = |n: u64| RunOptions {
        max_frames: Some(n),
        budget: FrameBudget::from_fps(30.0),
        out_dir: dir.join("out"),
        overlay: false,
        draw_min_score: 0.3,
        live: None,
        rotate_bytes: None,
    };
    // The same run setup twice; the difference is `measured` steady-state frames.
    let count_run = |est: &mut Estimator, n: u64| {
        let mut src: Box<dyn FrameSource> = Box::new(Y4mSource::open(clip).unwrap());
        let o = opts(n);
        let before = allocs();
        let s = run_frames(src.as_mut(), est, &o).unwrap();
        let used = allocs() - before;
        assert_eq!(s.frames, n);
        used
    };
    let short = count_run(&mut est, warm);
    let long = count_run(&mut est, warm + measured);

    // tract alone, same model, for the record.
    let mut engine = TractEngine::from_path_with(&onnx, &shape, &EngineOptions::new(datum, 1)).unwrap();
    let n: usize = shape.iter().product();
    let input = match datum {
        InputType::I32 => InputTensor::I32(vec![100; n]),
        InputType::F32 => InputTensor::F32(vec![0.5; n]),
    };
    let mut out = vec![0.0; engine.output_shape().iter().product()];
    engine.run(&[&input], &mut out).unwrap();
    let before = allocs();
    for _ in 0..10 {
        engine.run(&[&input], &mut out).unwrap();
    }
    (long - short, (allocs() - before) as f64 / 10.0)
}

#[test]
fn steady_state_frames_allocate_only_inside_tract() {
    let dir = common::scratch("alloc_free");
    let (warm, measured) = (20u64, 110u64);
    let clip = dir.join("walker.y4m");
    write_clip(&clip, warm + measured);
    // A small exported heatmap subnet (fast enough under qemu), and on the
    // host also MoveNet (keypoint output): both decode paths.
    let heatmap = dir.join("mbv3-min-64");
    let out = common::vipnas_command()
        .args(["export", "--space", "mbv3", "--sample", "min", "--input", "64x64", "--out"])
        .arg(&heatmap)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut bundles = vec![heatmap];
    if !common::under_qemu() {
        bundles.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/movenet-lightning"));
    }
    for bundle in &bundles {
        let (ours, tract_per_run) = steady_state_allocations(bundle, &clip, warm, measured);
        println!(
            "{}: {ours} allocations in {measured} steady-state frames outside the engine; tract: {tract_per_run:.1} per inference",
            bundle.file_name().unwrap().to_string_lossy()
        );
        assert!(tract_per_run > 0.0, "the counter counts");
        assert_eq!(ours, 0, "the per-frame path allocated {ours} times in {measured} frames");
    }

    // Drawing the overlay (without PNG encoding, which allocates) is free too.
    let mut frame = Frame::new(320, 240);
    let pose = vipnas::runtime::Pose { keypoints: [[100.0, 100.0, 0.9]; 17], bbox: [10.0, 10.0, 200.0, 200.0] };
    let before = allocs();
    for _ in 0..10 {
        vipnas::runtime::render::draw_pose(&mut frame, &pose, 0.3);
    }
    assert_eq!(allocs() - before, 0, "drawing allocates");
    let rss = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines().find(|l| l.starts_with("VmHWM")).map(|l| l.split_whitespace().nth(1).unwrap().to_string())
    });
    println!("peak RSS of the test process: {} kB", rss.unwrap_or_default());
}
