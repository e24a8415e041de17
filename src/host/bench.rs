//! `vipnas bench`: tract (ours) against onnxruntime (the peer, through Python)
//! on the same ONNX files and inputs, at each thread count, run back to back so
//! both see the same machine load; the pipeline's own cost per stage; and
//! tract's time per op kind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::arch::published::published;
use crate::arch::{InputSize, Sample, SearchSpace, SpaceName, Subnet, Weights};
use crate::bundle::{InputType, Manifest};
use crate::onnx::{to_bytes, write_network, WriteOptions};
use crate::runtime::decode::decode_keypoints;
use crate::runtime::engine::{Convolutions, Engine, EngineOptions, InputTensor, OpTime, TractEngine};
use crate::runtime::model::input_shape;
use crate::runtime::preprocess::{crop_into, Affine};
use crate::runtime::render::draw_pose;
use crate::runtime::source::{DirSource, FrameRead, FrameSource};
use crate::runtime::track::{TrackConfig, Tracker};
use crate::runtime::{Frame, Pose};

/// One model to compare.
pub struct BenchModel {
    pub name: String,
    pub onnx: PathBuf,
    pub shape: Vec<usize>,
    pub datum: InputType,
}

/// One row of the comparison.
#[derive(Clone, Debug)]
pub struct LatencyRow {
    pub model: String,
    pub threads: usize,
    /// Ours: tract with the fast grouped convolution.
    pub tract_ms: f64,
    /// tract with its own convolutions (what ours replaced).
    pub tract_own_ms: f64,
    pub ort_ms: Option<f64>,
}

impl LatencyRow {
    /// Ours / onnxruntime.
    pub fn ratio(&self) -> Option<f64> {
        self.ort_ms.map(|o| self.tract_ms / o)
    }

    /// tract's own convolutions / onnxruntime (before the fast op).
    pub fn ratio_before(&self) -> Option<f64> {
        self.ort_ms.map(|o| self.tract_own_ms / o)
    }
}

/// The median of timings.
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    crate::runtime::budget::quantile(&v, 0.5)
}

/// A deterministic input of the model's type.
fn bench_input(m: &BenchModel) -> InputTensor {
    let n: usize = m.shape.iter().product();
    match m.datum {
        InputType::I32 => InputTensor::I32((0..n).map(|i| ((i * 7919) % 256) as i32).collect()),
        InputType::F32 => InputTensor::F32((0..n).map(|i| (((i * 7919) % 1000) as f32 / 500.0) - 1.0).collect()),
    }
}

/// Median tract latency (ms) over `runs` after warm-up.
pub fn tract_latency(m: &BenchModel, threads: usize, runs: usize, convolutions: Convolutions) -> Result<f64> {
    let opts = EngineOptions { datum: m.datum, threads, convolutions };
    let mut engine = TractEngine::from_path_with(&m.onnx, &m.shape, &opts)?;
    let input = bench_input(m);
    let mut out = vec![0.0; engine.output_shape().iter().product()];
    for _ in 0..5 {
        engine.run(&[&input], &mut out)?;
    }
    let times = (0..runs)
        .map(|_| {
            let t = Instant::now();
            engine.run(&[&input], &mut out).map(|_| t.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<Vec<f64>>>()?;
    Ok(median(times))
}

/// The Python that runs the onnxruntime peer: `$VIPNAS_PYTHON`, else the test
/// script's venv under `repo`, else `python3`.
pub fn peer_python(repo: &Path) -> String {
    std::env::var("VIPNAS_PYTHON").unwrap_or_else(|_| {
        let venv = repo.join(".cache/venv/bin/python");
        if venv.exists() {
            venv.display().to_string()
        } else {
            "python3".into()
        }
    })
}

/// Median onnxruntime latency via `benches/ort_latency.py`; `None` (reported)
/// when the Python oracle is not installed.
pub fn ort_latency(python: &str, script: &Path, m: &BenchModel, threads: usize, runs: usize) -> Result<Option<f64>> {
    let dtype = match m.datum {
        InputType::F32 => "f32",
        InputType::I32 => "i32",
    };
    let shape: Vec<String> = m.shape.iter().map(usize::to_string).collect();
    let out = Command::new(python)
        .arg(script)
        .arg(&m.onnx)
        .args([dtype, &shape.join("x"), &threads.to_string(), &runs.to_string()])
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            log::warn!("onnxruntime peer failed: {}", String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or(""));
            return Ok(None);
        }
        Err(e) => {
            log::warn!("cannot run {python}: {e}");
            return Ok(None);
        }
    };
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("ort_latency.py output")?;
    Ok(v["median_ms"].as_f64())
}

/// The models of the runtime benchmark: the bundled MoveNet Lightning, and
/// ViPNAS-MobileNetV3 subnets exported at 256×192 — mmpose's published one,
/// the max, the min and five random ones (random weights: latency does not
/// depend on weight values).
pub fn default_models(repo: &Path, scratch: &Path) -> Result<Vec<BenchModel>> {
    let movenet = repo.join("models/movenet-lightning");
    let m = Manifest::load(&movenet)?;
    let mut models = vec![BenchModel {
        name: "movenet-lightning".into(),
        onnx: movenet.join(&m.spatial),
        shape: input_shape(&m.input),
        datum: m.input.dtype.into(),
    }];
    let space = SearchSpace::get(SpaceName::Mbv3);
    let mut subnets = vec![
        ("mmpose", published(SpaceName::Mbv3).expect("mmpose publishes an MBV3 subnet").subnet),
        ("max", Subnet::sample(&space, Sample::Max)),
        ("min", Subnet::sample(&space, Sample::Min)),
    ];
    const RANDOM: [&str; 5] = ["random1", "random2", "random3", "random4", "random5"];
    for (seed, name) in RANDOM.iter().enumerate() {
        subnets.push((name, Subnet::sample(&space, Sample::Random(seed as u64 + 1))));
    }
    std::fs::create_dir_all(scratch)?;
    for (name, subnet) in subnets {
        let net = subnet.network(InputSize::DEFAULT)?;
        let model = write_network(&net, &Weights::random(&net, 0), &WriteOptions::default())?;
        let path = scratch.join(format!("vipnas-mbv3-{name}-256x192.onnx"));
        std::fs::write(&path, to_bytes(&model))?;
        models.push(BenchModel {
            name: format!("vipnas-mbv3 {name}"),
            onnx: path,
            shape: vec![1, 3, 256, 192],
            datum: InputType::F32,
        });
    }
    Ok(models)
}

/// Per-stage cost of the pipeline on real frames (MoveNet bundle), ms per frame.
#[derive(Clone, Debug, Default)]
pub struct StageTimes {
    pub frames: usize,
    pub capture: f64,
    pub preprocess: f64,
    pub infer: f64,
    pub decode_track: f64,
    pub render: f64,
}

impl StageTimes {
    /// Everything but inference, relative to inference.
    pub fn overhead_fraction(&self) -> f64 {
        (self.capture + self.preprocess + self.decode_track + self.render) / self.infer
    }
}

/// Times each stage over the frames of `clip` with the MoveNet bundle.
pub fn pipeline_stages(bundle: &Path, clip: &Path, threads: usize) -> Result<StageTimes> {
    let m = Manifest::load(bundle)?;
    let shape = input_shape(&m.input);
    let datum = m.input.dtype;
    let mut engine =
        TractEngine::from_path_with(&bundle.join(&m.spatial), &shape, &EngineOptions::new(datum, threads))?;
    let mut input = InputTensor::for_spec(&m.input);
    let mut out = vec![0.0; engine.output_shape().iter().product()];
    let mut tracker = Tracker::new(TrackConfig::default().for_output(m.output.kind));
    let aspect = m.input.width as f32 / m.input.height as f32;
    let (mut frame, mut pose, mut kps) = (Frame::default(), Pose::default(), [[0.0f32; 3]; 17]);
    let mut src = DirSource::open(clip)?;
    let mut t = StageTimes::default();
    let ms = |s: Instant| s.elapsed().as_secs_f64() * 1e3;
    loop {
        let s = Instant::now();
        match src.read(&mut frame)? {
            FrameRead::End => break,
            FrameRead::Lost(why) | FrameRead::Interrupted(why) => bail!("{why}"),
            FrameRead::Frame => {}
        }
        t.capture += ms(s);
        let (roi, _) = tracker.next_roi(frame.width, frame.height, aspect);
        let affine = Affine::crop_to_image(&roi, m.input.width, m.input.height);
        let s = Instant::now();
        crop_into(&frame, &affine, &m.input, &mut input);
        t.preprocess += ms(s);
        let s = Instant::now();
        engine.run(&[&input], &mut out)?;
        t.infer += ms(s);
        let s = Instant::now();
        decode_keypoints(&out, (m.input.width, m.input.height), &mut kps);
        for (dst, k) in pose.keypoints.iter_mut().zip(kps) {
            let (x, y) = affine.apply(k[0], k[1]);
            *dst = [x, y, k[2]];
        }
        pose.bbox = roi.to_box();
        tracker.update(&mut pose, aspect, 1.0 / 60.0);
        t.decode_track += ms(s);
        let s = Instant::now();
        draw_pose(&mut frame, &pose, 0.3);
        t.render += ms(s);
        t.frames += 1;
    }
    let n = t.frames.max(1) as f64;
    for v in [&mut t.capture, &mut t.preprocess, &mut t.infer, &mut t.decode_track, &mut t.render] {
        *v /= n;
    }
    Ok(t)
}

/// tract's per-op profile of a model at one thread.
pub fn op_profile(m: &BenchModel, runs: usize) -> Result<Vec<OpTime>> {
    let mut engine = TractEngine::from_path_with(&m.onnx, &m.shape, &EngineOptions::new(m.datum, 1))?;
    engine.profile(&bench_input(m), runs)
}

/// One row of the peer table: a MoveNet model on one labelled camera.
#[derive(Clone, Debug)]
pub struct PeerRow {
    pub model: String,
    pub set: String,
    pub ap: f64,
    pub pck10: f64,
    /// ms per frame (preprocess + inference + decode) at 1 and 2 threads.
    pub ms: [f64; 2],
}

/// MoveNet Lightning and Thunder through our runtime (crop tracking, no
/// smoothing) on the labelled pose2sim cameras under `data` (scripts/fetch-data.sh),
/// scored against the primary subject.
pub fn peer_rows(data: &Path) -> Result<Vec<PeerRow>> {
    use super::coco::CocoDataset;
    use super::eval::{coco_stats, pck, predict, RoiMode};
    use crate::runtime::PoseModel;
    let mut rows = Vec::new();
    for m in ["lightning", "thunder"] {
        let bundle = data.join(format!("models/movenet-{m}"));
        for cam in ["cam01", "cam02", "cam03"] {
            let gt = CocoDataset::load(&data.join(format!("pose2sim/person_keypoints_{cam}.json")))?.primary_only();
            let mut ms = [0.0; 2];
            let mut scored = None;
            for (i, threads) in [1, 2].into_iter().enumerate() {
                let p = predict(PoseModel::load(&bundle, threads)?, &gt, &data.join("pose2sim"), RoiMode::Track)?;
                ms[i] = p.ms_per_estimate;
                if scored.is_none() {
                    let stats = coco_stats(&gt, &p.results)?;
                    scored = Some((stats[0], pck(&gt, &p.results, &[0.1]).overall[0]));
                }
            }
            let (ap, pck10) = scored.expect("scored");
            rows.push(PeerRow { model: format!("movenet-{m}"), set: cam.into(), ap, pck10, ms });
        }
    }
    Ok(rows)
}
