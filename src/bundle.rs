//! The model bundle: `models/<name>/manifest.json` + `spatial.onnx` (+ the
//! temporal nets, `temporal_<k>.onnx`). The manifest says everything the
//! runtime needs to feed the models and read their output, and where they
//! came from.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::arch::{Cost, InputSize, SpaceName, Subnet, TemporalNet};
use crate::coco::{FLIP_PAIRS, KEYPOINT_NAMES, SKELETON};

/// Bumped whenever a manifest written by this version could not be read by an older one.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST: &str = "manifest.json";
pub const SPATIAL_ONNX: &str = "spatial.onnx";
/// The name of a temporal net's second input (the previous pose's heatmaps).
pub const PRIOR_INPUT: &str = "prior";

/// The file of the bundle's `k`-th temporal net.
pub fn temporal_onnx(k: usize) -> String {
    format!("temporal_{k}.onnx")
}

/// ImageNet mean/std on 0–255 RGB (mmpose's data preprocessor).
pub const IMAGENET_MEAN: [f32; 3] = [123.675, 116.28, 103.53];
pub const IMAGENET_STD: [f32; 3] = [58.395, 57.12, 57.375];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorOrder {
    Rgb,
    Bgr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Nchw,
    Nhwc,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    F32,
    I32,
}

/// How to turn an RGB crop into the model's input tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub name: String,
    pub height: u32,
    pub width: u32,
    pub layout: Layout,
    pub dtype: InputType,
    pub color: ColorOrder,
    /// Subtracted from 0–255 pixel values, per channel in `color` order.
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl InputSpec {
    /// The input of our heatmap subnets: NCHW float RGB, ImageNet normalisation
    /// (what the trainer feeds and the exporter writes into the manifest).
    pub fn for_subnet(input: InputSize) -> InputSpec {
        InputSpec {
            name: "input".into(),
            height: input.height,
            width: input.width,
            layout: Layout::Nchw,
            dtype: InputType::F32,
            color: ColorOrder::Rgb,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }
}

/// What the model outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// N×17×(H/stride)×(W/stride) heatmaps.
    Heatmap,
    /// N×1×17×3 (y, x, score) normalised to the input (MoveNet).
    Keypoints,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub name: String,
    pub kind: OutputKind,
    /// Input pixels per heatmap pixel (heatmap outputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stride: Option<u32>,
}

/// Where the weights came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// `vipnas <version>`.
    pub created_by: String,
    /// UTC, RFC 3339.
    pub created_at: String,
    /// `random (seed N)`, or the checkpoint / upstream model it came from.
    pub weights: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
}

/// One temporal net of a bundle (T-ViPNet): its image input is `input`, its
/// second input ([`PRIOR_INPUT`]) the previous pose as 17 heatmaps the size
/// of its output (a quarter of `input`), its output heatmaps (stride 4).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemporalNetSpec {
    /// The ONNX file, relative to the bundle (`temporal_<k>.onnx`).
    pub file: String,
    pub net: TemporalNet,
    pub input: InputSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flops: Option<u64>,
    /// Predicted latency (ms) per board name, from the board's table.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub latency_ms: BTreeMap<String, f64>,
    /// Latency (ms, p50) measured per board name where it was made.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub measured_ms: BTreeMap<String, f64>,
    pub provenance: Provenance,
}

/// How a bundle propagates poses between key frames: a key frame runs the
/// spatial net, the `key_interval` frames after it run temporal nets, each
/// fed the pose of the frame before.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Temporal {
    /// Frames propagated after each key frame (a cycle is `key_interval + 1` frames).
    pub key_interval: u32,
    /// The temporal net of each propagated frame of a cycle (indices into
    /// `nets`; `key_interval` entries).
    pub cycle: Vec<usize>,
    /// Heaviest first: a budget controller falls back to later, lighter ones
    /// when frames run late.
    pub nets: Vec<TemporalNetSpec>,
    /// Keypoints of the previous pose scoring below this are left out of the prior.
    pub prior_min_score: f32,
}

/// The whole manifest: `manifest.json` of a bundle directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format_version: u32,
    pub name: String,
    /// Absent for models not made by vipnas (e.g. MoveNet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space: Option<SpaceName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<Subnet>,
    pub input: InputSpec,
    pub output: OutputSpec,
    pub keypoints: Vec<String>,
    pub skeleton: Vec<[u8; 2]>,
    pub flip_pairs: Vec<[u8; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flops: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<u64>,
    /// The spatial (key-frame) network file, relative to the bundle.
    pub spatial: String,
    /// Predicted latency (ms) per board name, from the board's table.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub latency_ms: BTreeMap<String, f64>,
    /// Latency (ms, p50) measured per board name, for boards the bundle was
    /// made on: where the board's table was measured on this machine's CPU.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub measured_ms: BTreeMap<String, f64>,
    /// Temporal nets between key frames; absent: the spatial net runs every frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temporal: Option<Temporal>,
    pub provenance: Provenance,
}

impl Manifest {
    /// A manifest of a model of COCO's 17 keypoints, with nothing optional
    /// (space, subnet, costs, latencies) filled in.
    pub fn new(
        name: String,
        input: InputSpec,
        output: OutputSpec,
        spatial: String,
        provenance: Provenance,
    ) -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            name,
            space: None,
            subnet: None,
            input,
            output,
            keypoints: KEYPOINT_NAMES.iter().map(|s| s.to_string()).collect(),
            skeleton: SKELETON.iter().map(|&(a, b)| [a, b]).collect(),
            flip_pairs: FLIP_PAIRS.iter().map(|&(a, b)| [a, b]).collect(),
            flops: None,
            params: None,
            spatial,
            latency_ms: BTreeMap::new(),
            measured_ms: BTreeMap::new(),
            temporal: None,
            provenance,
        }
    }

    /// The manifest of one of our heatmap subnets.
    pub fn for_subnet(name: &str, subnet: &Subnet, input: InputSize, cost: Cost, weights: String) -> Manifest {
        let provenance = Provenance {
            created_by: format!("vipnas {}", env!("CARGO_PKG_VERSION")),
            created_at: crate::timestamp::utc_now_rfc3339(),
            weights,
            license: None,
        };
        let output = OutputSpec { name: "heatmaps".into(), kind: OutputKind::Heatmap, stride: Some(4) };
        Manifest {
            space: Some(subnet.space),
            subnet: Some(subnet.clone()),
            flops: Some(cost.flops),
            params: Some(cost.params),
            ..Manifest::new(name.into(), InputSpec::for_subnet(input), output, SPATIAL_ONNX.into(), provenance)
        }
    }

    /// Reads and checks `DIR/manifest.json`; errors name the file and field.
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST);
        let text = fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(&text).with_context(|| path.display().to_string())
    }

    /// A manifest's JSON, checked.
    pub fn parse(text: &str) -> Result<Manifest> {
        let m: Manifest = serde_json::from_str(text).context("invalid manifest")?;
        m.check()?;
        Ok(m)
    }

    /// Internal consistency (format version, keypoint count, subnet validity).
    pub fn check(&self) -> Result<()> {
        if self.format_version != FORMAT_VERSION {
            bail!("format_version {} is not supported (this vipnas reads {FORMAT_VERSION})", self.format_version);
        }
        if self.keypoints.len() != KEYPOINT_NAMES.len() {
            bail!("keypoints: {} names, expected {}", self.keypoints.len(), KEYPOINT_NAMES.len());
        }
        if self.input.height == 0 || self.input.width == 0 {
            bail!("input: height and width must be positive");
        }
        let max = crate::arch::InputSize::MAX_SIDE;
        if self.input.height > max || self.input.width > max {
            bail!(
                "input: {}x{} is larger than {max}x{max}, the largest input vipnas runs",
                self.input.height,
                self.input.width
            );
        }
        if self.input.std.iter().any(|&s| s <= 0.0 || !s.is_finite()) {
            bail!("input.std: every value must be positive and finite");
        }
        if let Some(subnet) = &self.subnet {
            subnet.check_structure().context("subnet")?;
            if Some(subnet.space) != self.space {
                bail!("space: `{:?}` does not match subnet.space `{}`", self.space, subnet.space);
            }
        }
        check_latencies("", &self.latency_ms, &self.measured_ms)?;
        if let Some(t) = &self.temporal {
            t.check(self.space).context("temporal")?;
        }
        for [a, b] in self.skeleton.iter().chain(&self.flip_pairs) {
            if *a as usize >= self.keypoints.len() || *b as usize >= self.keypoints.len() {
                bail!("skeleton/flip_pairs: index out of range ({a}, {b})");
            }
        }
        Ok(())
    }
}

fn check_latencies(prefix: &str, predicted: &BTreeMap<String, f64>, measured: &BTreeMap<String, f64>) -> Result<()> {
    for (field, map) in [("latency_ms", predicted), ("measured_ms", measured)] {
        if let Some((board, ms)) = map.iter().find(|(_, &ms)| !(ms > 0.0 && ms.is_finite())) {
            bail!("{prefix}{field}.{board} = {ms}: a latency must be positive and finite");
        }
    }
    Ok(())
}

impl TemporalNetSpec {
    /// `net` at `input` with `weights` as a bundle's temporal net `k`: its
    /// spec (no latencies yet) and ONNX bytes.
    pub fn write(
        net: &TemporalNet,
        input: InputSize,
        weights: &crate::arch::Weights,
        k: usize,
        provenance: Provenance,
    ) -> Result<(TemporalNetSpec, Vec<u8>)> {
        use crate::onnx::{to_bytes, write_network, WriteOptions};
        let graph = net.network(input)?;
        let opts = WriteOptions {
            doc: serde_json::to_string(net)?,
            graph_name: format!("vipnas-temporal-{}", net.subnet.space),
            ..Default::default()
        };
        let model = write_network(&graph, weights, &opts)?;
        let spec = TemporalNetSpec {
            file: temporal_onnx(k),
            net: net.clone(),
            input: InputSpec::for_subnet(input),
            flops: Some(graph.cost().flops),
            latency_ms: BTreeMap::new(),
            measured_ms: BTreeMap::new(),
            provenance,
        };
        Ok((spec, to_bytes(&model)))
    }
}

impl Temporal {
    /// One net on every propagated frame of a `key_interval` cycle.
    pub fn single(net: TemporalNetSpec, key_interval: u32, prior_min_score: f32) -> Temporal {
        Temporal { key_interval, cycle: vec![0; key_interval as usize], nets: vec![net], prior_min_score }
    }

    /// The longest propagation a bundle may ask for (a pose carried further
    /// drifts; a budget controller may still lengthen cycles at run time).
    pub const MAX_KEY_INTERVAL: u32 = 30;

    /// Consistency: a cycle entry per propagated frame, each naming a net;
    /// nets of the bundle's space with valid fusions and heatmap inputs.
    pub fn check(&self, space: Option<SpaceName>) -> Result<()> {
        if !(1..=Self::MAX_KEY_INTERVAL).contains(&self.key_interval) {
            bail!("key_interval {}: must lie in 1..={}", self.key_interval, Self::MAX_KEY_INTERVAL);
        }
        if self.nets.is_empty() {
            bail!("nets: a temporal section needs at least one net");
        }
        if self.cycle.len() != self.key_interval as usize {
            bail!("cycle: {} entries for key_interval {}", self.cycle.len(), self.key_interval);
        }
        if let Some(&k) = self.cycle.iter().find(|&&k| k >= self.nets.len()) {
            bail!("cycle: net {k} does not exist ({} nets)", self.nets.len());
        }
        if !(0.0..=1.0).contains(&self.prior_min_score) {
            bail!("prior_min_score {}: must lie in [0, 1]", self.prior_min_score);
        }
        for (k, n) in self.nets.iter().enumerate() {
            let place = format!("nets[{k}]");
            n.net.check().and_then(|_| n.net.subnet.check_structure()).with_context(|| format!("{place}.net"))?;
            if space.is_some_and(|s| s != n.net.subnet.space) {
                bail!("{place}.net: space {} differs from the bundle's {:?}", n.net.subnet.space, space);
            }
            let i = &n.input;
            if InputSize::new(i.height, i.width).is_err() || i.layout != Layout::Nchw || i.dtype != InputType::F32 {
                bail!("{place}.input: temporal nets take NCHW float input whose sides are multiples of 32");
            }
            if i.std.iter().any(|&s| s <= 0.0 || !s.is_finite()) {
                bail!("{place}.input.std: every value must be positive and finite");
            }
            if n.file.contains('/') || n.file.contains("..") || n.file.is_empty() {
                bail!("{place}.file `{}`: must name a file inside the bundle", n.file);
            }
            check_latencies(&format!("{place}."), &n.latency_ms, &n.measured_ms)?;
        }
        Ok(())
    }
}

/// Writes `files` (name → bytes) and the manifest into `dir`, each through a
/// temporary file renamed into place, so an interrupted export never leaves a
/// half-written file under a final name.
pub fn write_bundle(dir: &Path, manifest: &Manifest, files: &[(&str, Vec<u8>)]) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create output directory {}", dir.display()))?;
    for (name, bytes) in files {
        write_atomic(&dir.join(name), bytes)?;
    }
    let json = serde_json::to_vec_pretty(manifest)?;
    write_atomic(&dir.join(MANIFEST), &json)?;
    Ok(dir.join(MANIFEST))
}

/// Writes a temporal bundle into `out`: the bundle at `key` (its manifest
/// and spatial net, copied) with `temporal` as its temporal section and
/// `onnx[k]` as the file of `temporal.nets[k]`. The key bundle's own
/// temporal nets, if any, are not carried over.
pub fn write_temporal_bundle(
    key: &Path,
    out: &Path,
    name: &str,
    temporal: Temporal,
    onnx: Vec<Vec<u8>>,
) -> Result<PathBuf> {
    let mut manifest = Manifest::load(key)?;
    anyhow::ensure!(
        onnx.len() == temporal.nets.len(),
        "{} ONNX files for {} temporal nets",
        onnx.len(),
        temporal.nets.len()
    );
    temporal.check(manifest.space).context("temporal")?;
    let spatial = key.join(&manifest.spatial);
    let bytes = fs::read(&spatial).with_context(|| format!("cannot read {}", spatial.display()))?;
    manifest.name = name.into();
    manifest.temporal = Some(temporal);
    let t = manifest.temporal.as_ref().expect("just set");
    let names = std::iter::once(manifest.spatial.as_str()).chain(t.nets.iter().map(|n| n.file.as_str()));
    let files: Vec<(&str, Vec<u8>)> = names.zip(std::iter::once(bytes).chain(onnx)).collect();
    write_bundle(out, &manifest, &files)
}

/// Write-then-rename in the same directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().with_context(|| format!("cannot write {}", path.display()))
}
