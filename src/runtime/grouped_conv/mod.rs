//! Fast convolutions inside tract's plan: grouped (and depthwise),
//! transposed grouped, and pointwise (1×1).
//!
//! tract turns a depthwise convolution into its `DepthWiseConv` op, which on
//! x86 runs ~1.6 GFLOP/s on the 7×7 kernels our spaces are full of, a
//! convolution with a few channels per group into one im2col + matrix product
//! per group, and a 1×1 convolution into a packed matrix product whose
//! packing and tile stores cost more than its arithmetic on our shapes.
//! [`install_pointwise`] rewrites a typed model before tract's declutter
//! (which would make 1×1 convolutions matrix products): every f32 NCHW 1×1,
//! stride-1, single-group convolution becomes a [`PointwiseConv`].
//! [`install`] rewrites the decluttered model before tract optimises it:
//! every f32 NCHW 2-D convolution with more than one group, or with one group
//! of at most [`MAX_IN_PER_GROUP`] input channels (a stem on the image), with
//! constant weights and no dilation, becomes a [`GroupedConv`], whose
//! arithmetic is in [`kernel`], and every grouped transposed convolution (the
//! heads' `ConvTranspose`) a [`GroupedDeconv`]: one stride-1 [`GroupedConv`]
//! per output phase. [`fuse_activations`] then folds each ReLU or ReLU6 that
//! follows one of them into it. tract's public op API is all it uses (no fork
//! of tract); the rest of the plan — and every convolution it does not cover,
//! named once in the log at load — is tract's own.
//!
//! With a multithreaded executor the groups (pointwise: tiles of output
//! channels) are split across its threads.
//!
//! The supernet's training (host builds) runs its grouped convolutions on
//! the same kernels: forward as here, the input gradient as a transposed
//! convolution ([`phases`]), the weight gradient in [`weight_grad`].

mod deconv;
pub mod kernel;
mod pointwise;
mod pointwise_kernel;
#[cfg(feature = "host")]
pub mod weight_grad;

use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::conv::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::cnn::{Deconv, PoolSpec};
use tract_onnx::tract_core::ops::nn::DataFormat;
use tract_onnx::tract_core::tract_linalg::multithread::par_chunks_mut;

pub use deconv::{phases, spread, GroupedDeconv, Phase};
use kernel::{active_isa, convolve_groups, Clamp, ConvGeometry};
pub use pointwise::PointwiseConv;

/// Named in latency tables so that a table says which kernels it measured:
/// bump it whenever the kernel's speed changes (2: transposed convolutions
/// too; 3: pointwise convolutions, folded activations, stems; 4: groups of 16
/// output channels in the vector lanes).
pub const KERNEL_VERSION: &str = "vipnas-grouped-conv/4";

/// Which convolutions [`install`] would take over: at most this many input
/// channels per group (above it tract's matrix products win), and more than
/// one group or a convolution on the image.
pub const MAX_IN_PER_GROUP: usize = 16;

/// A grouped 2-D convolution with its weights, over an f32 NCHW input.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupedConv {
    geo: ConvGeometry,
    /// As [`kernel::pack_kernel`] lays it out.
    packed: Arc<Vec<f32>>,
    /// One per output channel.
    bias: Arc<Vec<f32>>,
    /// `geo.tap_offsets()`, computed once.
    taps: Arc<Vec<usize>>,
    /// Whether input and output have the batch axis (NCHW, not CHW).
    batch_axis: bool,
    /// A ReLU or ReLU6 folded in ([`fuse_activations`]).
    clamp: Clamp,
}

// tract compares ops to merge identical nodes; weights compare by value (a
// NaN weight only makes two such ops unequal, never a wrong merge).
impl Eq for GroupedConv {}

impl GroupedConv {
    /// `kernel` is OIHW (`[out][in_per_group][kh][kw]`), `bias` one per output channel.
    pub fn new(geo: ConvGeometry, kernel: Vec<f32>, bias: Vec<f32>, batch_axis: bool) -> TractResult<GroupedConv> {
        ensure!(geo.groups > 0 && geo.in_channels % geo.groups == 0 && geo.out_channels % geo.groups == 0);
        ensure!(kernel.len() == geo.out_channels * geo.in_per_group() * geo.kernel[0] * geo.kernel[1]);
        ensure!(bias.len() == geo.out_channels);
        ensure!(geo.output.iter().chain(&geo.kernel).chain(&geo.stride).all(|&v| v > 0));
        ensure!(batch_axis || geo.batch == 1);
        let taps = geo.tap_offsets();
        let packed = kernel::pack_kernel(&geo, &kernel);
        Ok(GroupedConv {
            geo,
            packed: Arc::new(packed),
            bias: Arc::new(bias),
            taps: Arc::new(taps),
            batch_axis,
            clamp: Clamp::NONE,
        })
    }

    /// The same convolution with its outputs clamped to `clamp` too.
    pub fn clamped(&self, clamp: Clamp) -> GroupedConv {
        GroupedConv { clamp, ..self.clone() }
    }

    pub fn clamp(&self) -> Clamp {
        self.clamp
    }

    pub fn geometry(&self) -> &ConvGeometry {
        &self.geo
    }

    fn output_shape(&self) -> TVec<usize> {
        let g = &self.geo;
        output_shape(self.batch_axis, g.batch, g.out_channels, g.output)
    }
}

/// NCHW, or CHW where tract dropped a batch axis of 1.
fn output_shape(batch_axis: bool, batch: usize, channels: usize, [h, w]: [usize; 2]) -> TVec<usize> {
    if batch_axis {
        tvec![batch, channels, h, w]
    } else {
        tvec![channels, h, w]
    }
}

impl Op for GroupedConv {
    fn name(&self) -> StaticName {
        "VipnasGroupedConv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let g = &self.geo;
        Ok(vec![format!(
            "{}×{} stride {:?}, {} groups of {}→{}, clamp {:?}, {}",
            g.kernel[0],
            g.kernel[1],
            g.stride,
            g.groups,
            g.in_per_group(),
            g.out_per_group(),
            self.clamp,
            active_isa().name()
        )])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for GroupedConv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        eval_f32(self, inputs, self.geo.input_len(), &self.output_shape(), |x, out| self.convolve(x, out))
    }
}

/// One of our ops' evaluation: its one f32 input (of `input_len` values) and
/// a fresh output of `shape`, which `compute` must write whole (it is not
/// initialised).
fn eval_f32(
    op: &dyn Op,
    inputs: TVec<TValue>,
    input_len: usize,
    shape: &[usize],
    compute: impl FnOnce(&[f32], &mut [f32]) -> TractResult<()>,
) -> TractResult<TVec<TValue>> {
    let input = args_1!(inputs);
    let x_view = input.try_as_plain_ram()?;
    let x = x_view.as_slice::<f32>()?;
    ensure!(x.len() == input_len, "{}: input has {} values, expected {input_len}", op.name(), x.len());
    // SAFETY: every caller's `compute` writes every output value; nothing reads the tensor before.
    let mut output = unsafe { Tensor::uninitialized::<f32>(shape)? };
    let mut out_view = output.try_as_plain_ram_mut()?;
    compute(x, out_view.as_slice_mut::<f32>()?)?;
    Ok(tvec!(output.into_tvalue()))
}

impl GroupedConv {
    /// The convolution of `x` into `out` (NCHW, every value written), the
    /// groups split across the executor's threads.
    fn convolve(&self, x: &[f32], out: &mut [f32]) -> TractResult<()> {
        let g = &self.geo;
        ensure!(x.len() == g.input_len() && out.len() == g.output_len());
        let group_len = g.out_per_group() * g.output[0] * g.output[1];
        par_chunks_mut(out, group_len, g.macs(), |first, chunk| {
            convolve_groups(g, &self.taps, x, &self.packed, &self.bias, self.clamp, first, chunk);
            Ok(())
        })
    }
}

impl TypedOp for GroupedConv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1 && inputs[0].datum_type == f32::datum_type());
        Ok(tvec!(f32::fact(self.output_shape())))
    }

    fn cost(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        Ok(tvec!((Cost::FMA(f32::datum_type()), self.geo.macs().to_dim())))
    }

    as_op!();
}

/// What [`install`] did to a model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Installed {
    /// Convolutions now run by [`GroupedConv`].
    pub replaced: usize,
    /// Grouped convolutions left to tract, with why.
    pub left: Vec<String>,
}

/// Replaces every grouped convolution of a decluttered `model` that
/// [`GroupedConv`] covers, and every grouped transposed convolution that
/// [`GroupedDeconv`] covers; the rest stay tract's.
pub fn install(model: &mut TypedModel) -> TractResult<Installed> {
    replace(model, |model, node| {
        if let Some(conv) = node.op_as::<Conv>() {
            // One group of a few input channels (a stem on the image) is a case too.
            let ours = conv.group > 1 || conv.pool_spec.input_channels <= MAX_IN_PER_GROUP;
            ours.then(|| plan(model, node, conv).map(|op| Box::new(op) as _))
        } else if let Some(deconv) = node.op_as::<Deconv>() {
            (deconv.group > 1).then(|| deconv::plan(model, node, deconv).map(|op| Box::new(op) as _))
        } else {
            None
        }
    })
}

/// Replaces every 1×1 convolution of a typed, not yet decluttered `model`
/// (tract's declutter turns them into matrix products) that [`PointwiseConv`]
/// covers; the rest stay tract's.
pub fn install_pointwise(model: &mut TypedModel) -> TractResult<Installed> {
    replace(model, |model, node| {
        let conv = node.op_as::<Conv>().filter(|c| pointwise::is_pointwise(c))?;
        Some(pointwise::plan(model, node, conv).map(|op| Box::new(op) as _))
    })
}

/// Folds each ReLU or ReLU6 (tract's `Max`/`Min` with a constant) that
/// alone reads one of our convolutions into it, as a clamp of its outputs:
/// one pass over the activations fewer per fold. Returns the folds.
pub fn fuse_activations(model: &mut TypedModel) -> TractResult<usize> {
    let mut folds = 0;
    while let Some((conv, act, op)) = next_fold(model)? {
        let mut patch = TypedModelPatch::new("vipnas-fold-activation");
        let x = patch.tap_model(model, model.node(conv).inputs[0])?;
        let y = patch.wire_node(&model.node(conv).name, op, &[x])?[0];
        patch.shunt_outside(model, act.into(), y)?;
        patch.apply(model)?;
        // Compacted at once: the next fold's "alone reads it" must not count
        // the nodes this one left behind.
        *model = std::mem::take(model).into_compact()?;
        folds += 1;
    }
    Ok(folds)
}

/// The first (our convolution, its activation, the convolution clamped) in `model`.
fn next_fold(model: &TypedModel) -> TractResult<Option<(usize, usize, Box<dyn TypedOp>)>> {
    use tract_onnx::tract_core::ops::binary::TypedBinOp;
    use tract_onnx::tract_core::ops::math::{Max, Min};
    for node in model.eval_order()?.into_iter().map(|id| model.node(id)) {
        let out = OutletId::new(node.id, 0);
        let [succ] = &*node.outputs[0].successors else { continue };
        if node.outputs.len() != 1 || model.outputs.contains(&out) {
            continue;
        }
        let act = model.node(succ.node);
        let Some(bin) = act.op_as::<TypedBinOp>() else { continue };
        let other = model.outlet_fact(act.inputs[1 - succ.slot])?;
        // A constant of one value that broadcasts without growing the output.
        let Some(k) = other.konst.as_ref().filter(|_| other.shape.volume().is_one()) else {
            continue;
        };
        let Ok(v) = k.cast_to_scalar::<f32>() else { continue };
        if model.outlet_fact(OutletId::new(act.id, 0))?.shape != model.outlet_fact(out)?.shape {
            continue;
        }
        let tighten = |c: Clamp| {
            if bin.0.is::<Max>() {
                Some(c.at_least(v))
            } else if bin.0.is::<Min>() {
                Some(c.at_most(v))
            } else {
                None
            }
        };
        let op: Option<Box<dyn TypedOp>> = if let Some(op) = node.op_as::<GroupedConv>() {
            tighten(op.clamp()).map(|c| Box::new(op.clamped(c)) as _)
        } else if let Some(op) = node.op_as::<PointwiseConv>() {
            tighten(op.clamp()).map(|c| Box::new(op.clamped(c)) as _)
        } else if let Some(op) = node.op_as::<GroupedDeconv>() {
            tighten(op.clamp()).map(|c| Box::new(op.clamped(c)) as _)
        } else {
            None
        };
        if let Some(op) = op {
            return Ok(Some((node.id, act.id, op)));
        }
    }
    Ok(None)
}

/// Swaps each node `pick` plans an op for (`None`: not ours to consider).
fn replace(
    model: &mut TypedModel,
    pick: impl Fn(&TypedModel, &TypedNode) -> Option<Result<Box<dyn TypedOp>, String>>,
) -> TractResult<Installed> {
    let mut done = Installed::default();
    for id in model.eval_order()? {
        let node = model.node(id);
        match pick(model, node) {
            None => {}
            Some(Ok(op)) => {
                let mut patch = TypedModelPatch::new("vipnas-grouped-conv");
                let x = patch.tap_model(model, node.inputs[0])?;
                let y = patch.wire_node(&node.name, op, &[x])?[0];
                patch.shunt_outside(model, node.id.into(), y)?;
                patch.apply(model)?;
                done.replaced += 1;
            }
            Some(Err(why)) => done.left.push(format!("{}: {why}", node.name)),
        }
    }
    if done.replaced > 0 {
        *model = std::mem::take(model).into_compact()?;
    }
    Ok(done)
}

/// The [`GroupedConv`] for `node`, or why it is not covered.
fn plan(model: &TypedModel, node: &TypedNode, conv: &Conv) -> Result<GroupedConv, String> {
    let spec = &conv.pool_spec;
    let c = covered(model, node, spec, conv.kernel_fmt, conv.group, MAX_IN_PER_GROUP, conv.q_params.is_some())?;
    let padding = spec.computed_padding(&c.input);
    let geo = c.geometry(
        spec,
        conv.group,
        [padding[0].pad_before, padding[1].pad_before],
        [padding[0].convoluted, padding[1].convoluted],
    );
    GroupedConv::new(geo, c.kernel, c.bias, c.batch_axis).map_err(|e| e.to_string())
}

/// What a (transposed) convolution node must be for our ops to take it, read off it.
struct Covered {
    batch: usize,
    /// Input height, width.
    input: [usize; 2],
    /// The node's constant kernel, as tract holds it (`[out][in_per_group][kh][kw]`).
    kernel: Vec<f32>,
    /// One per output channel.
    bias: Vec<f32>,
    /// NCHW (else CHW: tract's declutter drops a batch axis of 1).
    batch_axis: bool,
}

impl Covered {
    /// The node's shape with the padding and output size its op computes.
    fn geometry(&self, spec: &PoolSpec, groups: usize, pad_before: [usize; 2], output: [usize; 2]) -> ConvGeometry {
        ConvGeometry {
            batch: self.batch,
            in_channels: spec.input_channels,
            out_channels: spec.output_channels,
            groups,
            input: self.input,
            kernel: [spec.kernel_shape[0], spec.kernel_shape[1]],
            stride: [spec.stride(0), spec.stride(1)],
            pad_before,
            output,
        }
    }
}

/// The checks a convolution or transposed convolution passes to be ours: f32,
/// 2-D channels-first with an OIHW kernel, no dilation, at most
/// `max_in_per_group` input channels per group, a concrete input shape,
/// constant kernel and bias; or why not.
fn covered(
    model: &TypedModel,
    node: &TypedNode,
    spec: &PoolSpec,
    kernel_fmt: KernelFormat,
    group: usize,
    max_in_per_group: usize,
    quantized: bool,
) -> Result<Covered, String> {
    let x = model.outlet_fact(node.inputs[0]).map_err(|e| e.to_string())?;
    if quantized || x.datum_type != f32::datum_type() {
        return Err(format!("{:?} (only f32 is covered)", x.datum_type));
    }
    if !matches!(spec.data_format, DataFormat::NCHW | DataFormat::CHW)
        || spec.rank() != 2
        || kernel_fmt != KernelFormat::OIHW
    {
        return Err(format!(
            "{:?} {:?} rank {} (only 2-D channels-first, OIHW)",
            spec.data_format,
            kernel_fmt,
            spec.rank()
        ));
    }
    if spec.dilations().iter().any(|&d| d != 1) {
        return Err(format!("dilation {:?}", spec.dilations()));
    }
    let in_per_group = spec.input_channels / group;
    if in_per_group > max_in_per_group {
        return Err(format!(
            "{in_per_group} input channels per group (tract's matrix products are faster above {max_in_per_group})"
        ));
    }
    let shape = x.shape.as_concrete().ok_or("input shape not concrete")?;
    let (batch, h, w) = match *shape {
        [n, _, h, w] if spec.data_format == DataFormat::NCHW => (n, h, w),
        [_, h, w] if spec.data_format == DataFormat::CHW => (1, h, w),
        _ => return Err(format!("input shape {shape:?} for {:?}", spec.data_format)),
    };
    let constant = |i: usize, what: &str| -> Result<Vec<f32>, String> {
        let t = constant_value(model, node.inputs[i]).ok_or(format!("{what} is not a constant"))?;
        let t = t.cast_to::<f32>().map_err(|e| e.to_string())?;
        let view = t.try_as_plain_ram().map_err(|e| e.to_string())?;
        Ok(view.as_slice::<f32>().map_err(|e| e.to_string())?.to_vec())
    };
    let kernel = constant(1, "kernel")?;
    let mut bias = constant(2, "bias")?;
    if bias.len() == 1 {
        bias = vec![bias[0]; spec.output_channels];
    }
    if bias.len() != spec.output_channels {
        return Err(format!("{} bias values for {} channels", bias.len(), spec.output_channels));
    }
    Ok(Covered { batch, input: [h, w], kernel, bias, batch_axis: spec.data_format == DataFormat::NCHW })
}

/// The value of `outlet` if it is a constant: known to tract, or computed by
/// stateless nodes from constants (before tract's declutter folds them, a
/// convolution's bias still comes through a `Cast`).
fn constant_value(model: &TypedModel, outlet: OutletId) -> Option<Arc<Tensor>> {
    let fact = model.outlet_fact(outlet).ok()?;
    if let Some(k) = &fact.konst {
        return Some(k.clone());
    }
    let node = model.node(outlet.node);
    if node.inputs.is_empty() {
        return None;
    }
    let inputs: TVec<TValue> =
        node.inputs.iter().map(|&i| constant_value(model, i).map(|t| t.into_tvalue())).collect::<Option<_>>()?;
    let mut outputs = node.op.eval_out_of_plan(inputs).ok()??;
    (outlet.slot < outputs.len()).then(|| outputs.swap_remove(outlet.slot).into_arc_tensor())
}
