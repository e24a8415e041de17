//! A pointwise (1×1) convolution inside tract's plan, without tract's
//! matrix-product packing: the op around [`pointwise_kernel`]'s arithmetic.
//!
//! tract lowers a 1×1 convolution to a packing node and a matrix product
//! (`OptMatMulPack`, `OptMatMul`); on our blocks' shapes these ran 2–3.6×
//! slower than onnxruntime's. [`PointwiseConv`] reads the NCHW planes as they
//! are. What tract fused into its product (the activation, a residual add)
//! stays a node of its own after it.
//!
//! [`pointwise_kernel`]: super::pointwise_kernel

use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::conv::Conv;
use tract_onnx::tract_core::tract_linalg::multithread::par_chunks_mut;

use super::kernel::active_isa;
use super::kernel::{Clamp, Isa};
use super::pointwise_kernel::{convolve_planes, pack_weights, tile_channels, PointwiseGeometry};
use super::{covered, eval_f32, output_shape};

/// A 1×1, stride-1, single-group convolution with its weights, over an f32 NCHW input.
#[derive(Clone, Debug, PartialEq)]
pub struct PointwiseConv {
    geo: PointwiseGeometry,
    /// Input height, width (the output's too).
    plane: [usize; 2],
    /// The instruction set the weights are packed for (this machine's).
    isa: Isa,
    /// The kernel as [`pack_weights`] lays it out for `isa`.
    packed: Arc<Vec<f32>>,
    /// One per output channel.
    bias: Arc<Vec<f32>>,
    /// Whether input and output have the batch axis (NCHW, not CHW).
    batch_axis: bool,
    /// A ReLU or ReLU6 folded in (`fuse_activations`).
    clamp: Clamp,
}

// As for `GroupedConv`: weights compare by value.
impl Eq for PointwiseConv {}

impl PointwiseConv {
    /// `kernel` is OI (`[out][in]`, the 1×1 OIHW kernel), `bias` one per output channel.
    pub fn new(
        batch: usize,
        channels: [usize; 2],
        plane: [usize; 2],
        kernel: &[f32],
        bias: Vec<f32>,
        batch_axis: bool,
    ) -> Result<PointwiseConv, String> {
        let geo = PointwiseGeometry {
            batch,
            in_channels: channels[0],
            out_channels: channels[1],
            pixels: plane[0] * plane[1],
        };
        if kernel.len() != geo.in_channels * geo.out_channels || bias.len() != geo.out_channels {
            return Err(format!("{} weights and {} biases for {channels:?} channels", kernel.len(), bias.len()));
        }
        if geo.pixels == 0 || geo.in_channels == 0 || geo.out_channels == 0 || !(batch_axis || batch == 1) {
            return Err(format!("empty or batched CHW shape: batch {batch}, channels {channels:?}, plane {plane:?}"));
        }
        let isa = active_isa();
        let packed = Arc::new(pack_weights(isa, &geo, kernel));
        Ok(PointwiseConv { geo, plane, isa, packed, bias: Arc::new(bias), batch_axis, clamp: Clamp::NONE })
    }

    /// The same convolution with its outputs clamped to `clamp` too.
    pub fn clamped(&self, clamp: Clamp) -> PointwiseConv {
        PointwiseConv { clamp, ..self.clone() }
    }

    pub fn clamp(&self) -> Clamp {
        self.clamp
    }

    fn output_shape(&self) -> TVec<usize> {
        output_shape(self.batch_axis, self.geo.batch, self.geo.out_channels, self.plane)
    }

    /// The convolution of `x` into `out` (every value written): per batch
    /// item, the whole channel tiles split across the executor's threads,
    /// then the channels after them.
    fn convolve(&self, x: &[f32], out: &mut [f32]) -> TractResult<()> {
        let g = &self.geo;
        ensure!(x.len() == g.input_len() && out.len() == g.output_len());
        let (k, m, p) = (g.in_channels, g.out_channels, g.pixels);
        let tile = tile_channels(self.isa);
        let whole = m / tile * tile;
        for (b, out) in out.chunks_exact_mut(m * p).enumerate() {
            let x = &x[b * k * p..(b + 1) * k * p];
            let (tiles, rest) = out.split_at_mut(whole * p);
            if !tiles.is_empty() {
                par_chunks_mut(tiles, tile * p, whole * p * k, |first, chunk| {
                    convolve_planes(self.isa, g, x, &self.packed, &self.bias, self.clamp, first * tile, chunk);
                    Ok(())
                })?;
            }
            if !rest.is_empty() {
                convolve_planes(self.isa, g, x, &self.packed, &self.bias, self.clamp, whole, rest);
            }
        }
        Ok(())
    }
}

impl Op for PointwiseConv {
    fn name(&self) -> StaticName {
        "VipnasPointwiseConv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let g = &self.geo;
        Ok(vec![format!(
            "1×1 {}→{} over {:?}, clamp {:?}, {}",
            g.in_channels,
            g.out_channels,
            self.plane,
            self.clamp,
            self.isa.name()
        )])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for PointwiseConv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        eval_f32(self, inputs, self.geo.input_len(), &self.output_shape(), |x, out| self.convolve(x, out))
    }
}

impl TypedOp for PointwiseConv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1 && inputs[0].datum_type == f32::datum_type());
        Ok(tvec!(f32::fact(self.output_shape())))
    }

    fn cost(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        Ok(tvec!((Cost::FMA(f32::datum_type()), self.geo.macs().to_dim())))
    }

    as_op!();
}

/// Whether `conv` is a 1×1 convolution this op is meant for (else it is none
/// of our business and stays tract's without a word).
pub(super) fn is_pointwise(conv: &Conv) -> bool {
    let spec = &conv.pool_spec;
    conv.group == 1 && spec.rank() == 2 && spec.kernel_shape.iter().all(|&k| k == 1)
}

/// The [`PointwiseConv`] for a 1×1 `Conv` node, or why it is not covered.
pub(super) fn plan(model: &TypedModel, node: &TypedNode, conv: &Conv) -> Result<PointwiseConv, String> {
    let spec = &conv.pool_spec;
    let c = covered(model, node, spec, conv.kernel_fmt, 1, usize::MAX, conv.q_params.is_some())?;
    if spec.strides().iter().any(|&s| s != 1) {
        return Err(format!("stride {:?} (only 1 is covered)", spec.strides()));
    }
    let padding = spec.computed_padding(&c.input);
    if padding.iter().any(|p| p.pad_before != 0 || p.pad_after != 0) {
        return Err("padding (only none is covered)".into());
    }
    PointwiseConv::new(c.batch, [spec.input_channels, spec.output_channels], c.input, &c.kernel, c.bias, c.batch_axis)
}
