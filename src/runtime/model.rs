//! `PoseModel`: a model bundle (or a bare ONNX of a known kind) loaded into an
//! engine, with its preallocated input/output buffers: ROI in, pose out.

use std::path::Path;

use anyhow::{bail, Context, Result};
use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::dimension;
use tract_onnx::pb::type_proto;
use tract_onnx::prelude::Framework;

use super::decode::{decode_heatmaps, decode_keypoints, Refine};
use super::engine::{Engine, EngineOptions, InputTensor, TractEngine};
use super::frame::Frame;
use super::pose::Pose;
use super::preprocess::{crop_into, Affine, Roi};
use crate::bundle::{
    ColorOrder, InputSpec, InputType, Layout, Manifest, OutputKind, OutputSpec, Provenance, IMAGENET_MEAN, IMAGENET_STD,
};
use crate::coco::KEYPOINTS;

/// A loaded pose model: a spatial net (image in), or a temporal net (image
/// and the previous pose as heatmaps in, see [`crate::arch::TemporalNet`]).
pub struct PoseModel {
    pub manifest: Manifest,
    engine: Box<dyn Engine + Send>,
    input: InputTensor,
    /// A temporal net's second input, 17 × H/4 × W/4 (`None` for spatial nets).
    prior: Option<InputTensor>,
    output: Vec<f32>,
    scratch: Vec<f32>,
    /// Sub-pixel refinement of the heatmap peaks: [`Refine::Quarter`] for a
    /// spatial net (mmpose's default), [`Refine::Dark`] for a temporal net —
    /// its prior is a Gaussian per keypoint, which DARK decodes exactly, so a
    /// net that leaves its prior alone returns the pose it was given (with a
    /// quarter step it would move each keypoint up to a bin every frame).
    pub refine: Refine,
    /// The crop → image map of the last `estimate`.
    last_affine: Affine,
}

/// Declared input and output of an ONNX graph: (elem type, dims; -1 = symbolic).
fn declared_io(model: &pb::ModelProto) -> Option<((i32, Vec<i64>), (i32, Vec<i64>))> {
    let g = model.graph.as_ref()?;
    let inits: std::collections::HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    let describe = |v: &pb::ValueInfoProto| -> Option<(i32, Vec<i64>)> {
        let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref()?.value.as_ref() else {
            return None;
        };
        let dims = t
            .shape
            .as_ref()?
            .dim
            .iter()
            .map(|d| match d.value {
                Some(dimension::Value::DimValue(v)) => v,
                _ => -1,
            })
            .collect();
        Some((t.elem_type, dims))
    };
    let input = g.input.iter().find(|i| !inits.contains(i.name.as_str()))?;
    Some((describe(input)?, describe(g.output.first()?)?))
}

/// A manifest for a bare ONNX file of a kind we recognise: MoveNet single-pose
/// (int32 NHWC square input, 1×1×17×3 output) or a top-down heatmap model
/// (float NCHW input, N×17×h×w output, ImageNet normalisation, RGB).
pub fn infer_manifest(proto: &pb::ModelProto, path: &Path) -> Result<Manifest> {
    let Some(((in_type, in_dims), (_, out_dims))) = declared_io(proto) else {
        bail!(
            "{}: the graph does not declare its input/output shapes; give a bundle with a manifest.json",
            path.display()
        );
    };
    let g = proto.graph.as_ref().expect("checked");
    let (in_name, out_name) = (g.input[0].name.clone(), g.output[0].name.clone());
    let known = |d: i64| d > 0;
    let (input, output) = match (in_type, in_dims.as_slice(), out_dims.as_slice()) {
        (t, &[_, h, w, 3], &[_, 1, 17, 3]) if t == DataType::Int32 as i32 && known(h) && known(w) => (
            InputSpec {
                name: in_name,
                height: h as u32,
                width: w as u32,
                layout: Layout::Nhwc,
                dtype: InputType::I32,
                color: ColorOrder::Rgb,
                mean: [0.0; 3],
                std: [1.0; 3],
            },
            OutputSpec { name: out_name, kind: OutputKind::Keypoints, stride: None },
        ),
        (t, &[_, 3, h, w], &[_, 17, hh, _]) if t == DataType::Float as i32 && known(h) && known(w) && known(hh) => (
            InputSpec {
                name: in_name,
                height: h as u32,
                width: w as u32,
                layout: Layout::Nchw,
                dtype: InputType::F32,
                color: ColorOrder::Rgb,
                mean: IMAGENET_MEAN,
                std: IMAGENET_STD,
            },
            OutputSpec { name: out_name, kind: OutputKind::Heatmap, stride: Some((h / hh) as u32) },
        ),
        _ => bail!(
            "{}: unknown model kind (input type {in_type} dims {in_dims:?}, output dims {out_dims:?}); \
             known: MoveNet (int32 [1,S,S,3] → [1,1,17,3]) and heatmap models (float [1,3,H,W] → [1,17,h,w]); \
             otherwise give a bundle with a manifest.json",
            path.display()
        ),
    };
    let provenance = Provenance {
        created_by: "inferred from the ONNX graph".into(),
        created_at: String::new(),
        weights: path.display().to_string(),
        license: None,
    };
    Ok(Manifest::new(
        path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
        input,
        output,
        path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
        provenance,
    ))
}

impl PoseModel {
    /// Loads a bundle directory (manifest.json + ONNX) or a bare `.onnx` file.
    pub fn load(path: &Path, threads: usize) -> Result<PoseModel> {
        // `source`: the file errors about the model's interface name.
        let (manifest, source, proto) = if path.is_dir() {
            let m = Manifest::load(path)?;
            let onnx = path.join(&m.spatial);
            if !onnx.is_file() {
                bail!("{}: no such file (the manifest's `spatial`)", onnx.display());
            }
            let proto = read_proto(&onnx)?;
            (m, path.join(crate::bundle::MANIFEST), proto)
        } else if path.is_file() {
            let proto = read_proto(path)?;
            (infer_manifest(&proto, path)?, path.to_path_buf(), proto)
        } else {
            bail!("{}: no such model bundle or ONNX file", path.display());
        };
        Self::with_tract(manifest, &proto, &source.display().to_string(), threads)
    }

    /// `proto` in tract at the manifest's input; errors name `source`.
    fn with_tract(manifest: Manifest, proto: &pb::ModelProto, source: &str, threads: usize) -> Result<PoseModel> {
        let shape = input_shape(&manifest.input);
        let datum = manifest.input.dtype;
        let engine =
            TractEngine::from_proto_with(proto, &shape, &EngineOptions::new(datum, threads)).with_context(|| {
                format!("{source}: the model does not accept input {shape:?} ({:?})", manifest.input.dtype)
            })?;
        Self::from_engine(manifest, Box::new(engine)).with_context(|| source.to_string())
    }

    /// The temporal nets of the bundle at `dir` whose manifest is `key`, in
    /// manifest order (none without a temporal section). Each must be a
    /// two-input ONNX of the size its spec says, at the key net's aspect (the
    /// tracker's box serves both).
    pub fn load_temporal(dir: &Path, key: &Manifest, threads: usize) -> Result<Vec<PoseModel>> {
        let Some(temporal) = &key.temporal else { return Ok(Vec::new()) };
        let manifest = dir.join(crate::bundle::MANIFEST);
        let aspect = key.input.width as f32 / key.input.height as f32;
        let mut nets = Vec::with_capacity(temporal.nets.len());
        for (k, spec) in temporal.nets.iter().enumerate() {
            let field = format!("{}: temporal.nets[{k}]", manifest.display());
            let onnx = dir.join(&spec.file);
            if !onnx.is_file() {
                bail!("{}: no such file ({field}.file)", onnx.display());
            }
            let (h, w) = (spec.input.height, spec.input.width);
            if (w as f32 / h as f32 - aspect).abs() > 1e-3 {
                bail!(
                    "{field}.input: {h}x{w} is not at the key net's aspect ({}x{})",
                    key.input.height,
                    key.input.width
                );
            }
            let net_manifest = Manifest {
                input: spec.input.clone(),
                output: OutputSpec { name: "heatmaps".into(), kind: OutputKind::Heatmap, stride: Some(4) },
                spatial: spec.file.clone(),
                subnet: Some(spec.net.subnet.clone()),
                flops: spec.flops,
                latency_ms: spec.latency_ms.clone(),
                measured_ms: spec.measured_ms.clone(),
                temporal: None,
                ..key.clone()
            };
            let model = Self::with_tract(net_manifest, &read_proto(&onnx)?, &onnx.display().to_string(), threads)?;
            if !model.is_temporal() {
                bail!("{}: one input: a temporal net also takes the previous pose ({field})", onnx.display());
            }
            nets.push(model);
        }
        Ok(nets)
    }

    /// A model on any [`Engine`] whose input matches the manifest; checks that
    /// the engine's output is what the manifest's output kind needs.
    pub fn from_engine(manifest: Manifest, engine: Box<dyn Engine + Send>) -> Result<PoseModel> {
        let spec = &manifest.input;
        let (h, w) = (spec.height as usize, spec.width as usize);
        anyhow::ensure!(
            engine.input_shape() == input_shape(spec).as_slice(),
            "the engine takes input {:?}, the manifest says {:?}",
            engine.input_shape(),
            input_shape(spec)
        );
        let out = engine.output_shape().to_vec();
        let expected: Vec<usize> = match (manifest.output.kind, manifest.output.stride) {
            (OutputKind::Keypoints, _) => vec![1, 1, KEYPOINTS, 3],
            (OutputKind::Heatmap, Some(s)) if s > 0 => {
                vec![1, KEYPOINTS, h / s as usize, w / s as usize]
            }
            (OutputKind::Heatmap, _) => {
                bail!("output.stride must be a positive number for heatmap outputs")
            }
        };
        if out != expected {
            bail!(
                "output.kind {:?} with input {}x{} expects output {expected:?}, the model gives {out:?}",
                manifest.output.kind,
                spec.height,
                spec.width
            );
        }
        let prior = match engine.input_shapes() {
            [_] => None,
            [_, p] if manifest.output.kind == OutputKind::Heatmap && *p == out => {
                Some(InputTensor::F32(vec![0.0; p.iter().product()]))
            }
            [_, p] => bail!("the model's second input is {p:?}; a temporal net's prior has its output's shape {out:?}"),
            more => bail!("the model has {} inputs; pose models have 1 (spatial) or 2 (temporal)", more.len()),
        };
        let plane = out.iter().skip(2).product::<usize>();
        Ok(PoseModel {
            input: InputTensor::for_spec(spec),
            refine: if prior.is_some() { Refine::Dark } else { Refine::Quarter },
            prior,
            output: vec![0.0; out.iter().product()],
            scratch: vec![0.0; plane.max(9)],
            engine,
            manifest,
            last_affine: Affine([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
        })
    }

    /// Input width / height.
    pub fn aspect(&self) -> f32 {
        self.manifest.input.width as f32 / self.manifest.input.height as f32
    }

    /// Whether this is a temporal net (it needs the previous pose).
    pub fn is_temporal(&self) -> bool {
        self.prior.is_some()
    }

    /// Runs a spatial model on `roi` of `frame`; writes keypoints in image coordinates.
    pub fn estimate(&mut self, frame: &Frame, roi: &Roi, pose: &mut Pose) -> Result<()> {
        anyhow::ensure!(self.prior.is_none(), "a temporal net needs the previous pose (PoseModel::propagate)");
        self.infer(frame, roi, pose)
    }

    /// Runs a temporal model on `roi` of `frame` with `previous` (the pose of
    /// the frame before, image coordinates) drawn into the crop as its prior:
    /// keypoints scoring at least `min_score` as unit Gaussians
    /// ([`crate::heatmap::encode_prior`], σ as in training), the others absent.
    pub fn propagate(
        &mut self,
        frame: &Frame,
        roi: &Roi,
        previous: &Pose,
        min_score: f32,
        pose: &mut Pose,
    ) -> Result<()> {
        let spec = &self.manifest.input;
        let Some(InputTensor::F32(prior)) = &mut self.prior else {
            bail!("a spatial net takes no previous pose (PoseModel::estimate)");
        };
        let to_crop = Affine::crop_to_image(roi, spec.width, spec.height).inverse();
        let mut kps = [[0.0f32; 3]; KEYPOINTS];
        for (k, p) in kps.iter_mut().zip(&previous.keypoints) {
            let (u, v) = to_crop.apply(p[0], p[1]);
            *k = [u, v, if p[2] >= min_score { 1.0 } else { 0.0 }];
        }
        let size = crate::arch::InputSize { height: spec.height, width: spec.width };
        crate::heatmap::encode_prior(&kps, size, prior);
        self.infer(frame, roi, pose)
    }

    fn infer(&mut self, frame: &Frame, roi: &Roi, pose: &mut Pose) -> Result<()> {
        let spec = &self.manifest.input;
        let affine = Affine::crop_to_image(roi, spec.width, spec.height);
        crop_into(frame, &affine, spec, &mut self.input);
        match &self.prior {
            Some(prior) => self.engine.run(&[&self.input, prior], &mut self.output)?,
            None => self.engine.run(&[&self.input], &mut self.output)?,
        }
        let mut kps = [[0.0f32; 3]; KEYPOINTS];
        match self.manifest.output.kind {
            OutputKind::Keypoints => decode_keypoints(&self.output, (spec.width, spec.height), &mut kps),
            _ => {
                let shape = self.engine.output_shape();
                let (hh, hw) = (shape[2], shape[3]);
                let stride = (spec.width as f32 / hw as f32, spec.height as f32 / hh as f32);
                decode_heatmaps(&self.output, (hh, hw), stride, self.refine, &mut self.scratch, &mut kps);
            }
        }
        for (dst, k) in pose.keypoints.iter_mut().zip(kps) {
            let (x, y) = affine.apply(k[0], k[1]);
            *dst = [x, y, k[2]];
        }
        pose.bbox = roi.to_box();
        self.last_affine = affine;
        Ok(())
    }

    /// The input tensor and crop → image map of the last `estimate` (for
    /// checking our numerics against other engines on identical inputs).
    pub fn last_input(&self) -> (&InputTensor, Affine) {
        (&self.input, self.last_affine)
    }

    /// A temporal net's prior of the last `propagate` (17 × H/4 × W/4).
    pub fn last_prior(&self) -> Option<&[f32]> {
        match &self.prior {
            Some(InputTensor::F32(v)) => Some(v),
            _ => None,
        }
    }

    /// The raw output of the last `estimate`.
    pub fn last_output(&self) -> &[f32] {
        &self.output
    }
}

/// The NCHW / NHWC input shape of a spec (batch 1).
pub fn input_shape(spec: &InputSpec) -> Vec<usize> {
    let (h, w) = (spec.height as usize, spec.width as usize);
    match spec.layout {
        Layout::Nchw => vec![1, 3, h, w],
        Layout::Nhwc => vec![1, h, w, 3],
    }
}

fn read_proto(path: &Path) -> Result<pb::ModelProto> {
    tract_onnx::onnx()
        .proto_model_for_path(path)
        .with_context(|| format!("{}: not an ONNX model (corrupt or truncated?)", path.display()))
}
