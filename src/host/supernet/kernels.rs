//! Training kernels for burn's Flex CPU backend, as a burn backend extension
//! with their own backward passes: the ops where burn's generic autodiff
//! spends most of a sandwich step's time.
//!
//! - **HardSwish, HardSigmoid**: burn's autodiff has neither; written with
//!   tensor ops, `x·clamp(x+3, 0, 6)/6` is seven passes over the activations
//!   forward (the clamp is two comparisons and two masked fills) and as many
//!   backward. Here: one pass each way (the derivative from the saved input).
//! - **Grouped convolutions** (depthwise, the max subnet's 16 channels per
//!   group, the deconvolution head): burn computes them as an im2col and a
//!   matrix product per group — k² copies of the input — and the weight
//!   gradient group by group as a convolution over the whole batch with the
//!   output gradient as kernel. Here they run on the runtime's own grouped
//!   kernels (vectorised over the output row or over 16 output channels):
//!   forward as at inference, the input gradient as the transposed
//!   convolution it is (stride-1 phases), the weight gradient as dot products
//!   over the same phase planes. A transposed convolution is the same three
//!   with the roles swapped.
//! - **Pointwise convolution** (1×1, stride 1, one group, no bias): forward
//!   stays Flex's, the gradients are the two matrix products they are
//!   (Wᵀ·g per image; Σₙ g·xᵀ) instead of a transposed convolution and a
//!   convolution over swapped axes.
//!
//! Other backends (CUDA) keep burn's ops: [`hard_swish`], [`hard_sigmoid`],
//! [`conv2d`] and [`conv_transpose2d`] choose by the tensor's device. The tests below hold every
//! kernel to burn's own ops, forward and backward.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::TensorMetadata;
use burn::backend::{backend_extension, Autodiff, AutodiffBackend, Backend, Dispatch, DispatchDevice, Flex};
use burn::tensor::module;
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{DType, Shape, Tensor};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use crate::runtime::grouped_conv::kernel::{convolve_groups, pack_kernel, Clamp, ConvGeometry};
use crate::runtime::grouped_conv::weight_grad::weight_gradient_groups;
use crate::runtime::grouped_conv::{phases, spread, Phase};

/// Element-wise passes split into chunks of this many values across threads.
const CHUNK: usize = 1 << 15;

/// The training kernels (see the module doc). Convolution arguments are
/// NCHW; `stride`/`pad` are the same on both axes.
#[backend_extension(Flex, Autodiff)]
pub trait TrainKernels: Backend {
    /// `x · clamp(x + 3, 0, 6) / 6`.
    fn hswish(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// The gradient of [`TrainKernels::hswish`] at `x`, times `grad`.
    fn hswish_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `clamp(x + 3, 0, 6) / 6`.
    fn hsigmoid(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// The gradient of [`TrainKernels::hsigmoid`] at `x`, times `grad`.
    fn hsigmoid_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Grouped convolution of `x` (N×Cin×H×W) by `weight` (Cout×Cin/groups×k×k), no bias.
    fn grouped_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        pad: usize,
        groups: usize,
    ) -> FloatTensor<Self>;
    /// The input gradient of [`TrainKernels::grouped_conv`], whose input planes are `height`×`width`.
    fn grouped_conv_x_backward(
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        height: usize,
        width: usize,
        stride: usize,
        pad: usize,
        groups: usize,
    ) -> FloatTensor<Self>;
    /// The weight gradient of [`TrainKernels::grouped_conv`] (kernel `k`×`k`).
    fn grouped_conv_weight_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        k: usize,
        stride: usize,
        pad: usize,
        groups: usize,
    ) -> FloatTensor<Self>;
    /// Grouped transposed convolution of `x` (N×Cin×H×W) by `weight`
    /// (Cin×Cout/groups×k×k), no bias, no output padding: the input gradient
    /// of the [`TrainKernels::grouped_conv`] it inverts.
    fn grouped_conv_transpose(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        pad: usize,
        groups: usize,
    ) -> FloatTensor<Self>;
    /// 1×1 convolution of `x` (N×Cin×H×W) by `weight` (Cout×Cin×1×1), no bias.
    fn pointwise_conv(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self>;
    /// The input gradient of [`TrainKernels::pointwise_conv`]: Wᵀ·g per image.
    fn pointwise_x_backward(weight: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let [n, cout, h, w] = grad.shape().dims();
        let [_, cin, _, _] = weight.shape().dims();
        let wt = Self::float_swap_dims(Self::float_reshape(weight, Shape::new([1, cout, cin])), 1, 2);
        let g = Self::float_reshape(grad, Shape::new([n, cout, h * w]));
        Self::float_reshape(Self::float_matmul(wt, g), Shape::new([n, cin, h, w]))
    }
    /// The weight gradient of [`TrainKernels::pointwise_conv`]: Σₙ g·xᵀ.
    fn pointwise_weight_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let [n, cout, h, w] = grad.shape().dims();
        let [_, cin, _, _] = x.shape().dims();
        let xt = Self::float_swap_dims(Self::float_reshape(x, Shape::new([n, cin, h * w])), 1, 2);
        let g = Self::float_reshape(grad, Shape::new([n, cout, h * w]));
        let per_image = Self::float_matmul(g, xt);
        Self::float_reshape(Self::float_sum_dim(per_image, 0), Shape::new([cout, cin, 1, 1]))
    }
}

#[inline(always)]
fn hswish_at(x: f32) -> f32 {
    x * (x + 3.0).clamp(0.0, 6.0) * (1.0 / 6.0)
}

/// d/dx of [`hswish_at`]: 0 below −3, 1 above 3, (2x + 3)/6 between (the
/// one-sided values PyTorch uses at the kinks).
#[inline(always)]
fn hswish_grad_at(x: f32) -> f32 {
    if x < -3.0 {
        0.0
    } else if x > 3.0 {
        1.0
    } else {
        (2.0 * x + 3.0) * (1.0 / 6.0)
    }
}

#[inline(always)]
fn hsigmoid_at(x: f32) -> f32 {
    (x + 3.0).clamp(0.0, 6.0) * (1.0 / 6.0)
}

#[inline(always)]
fn hsigmoid_grad_at(x: f32) -> f32 {
    if x > -3.0 && x < 3.0 {
        1.0 / 6.0
    } else {
        0.0
    }
}

/// `t` as a dense f32 tensor (moved, so that a unique one stays writable in place).
fn dense(t: FlexTensor, op: &str) -> FlexTensor {
    assert_eq!(t.dtype(), DType::F32, "{op}: the training kernels are f32 only");
    if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("a dense tensor")
}

fn dims4(t: &FlexTensor) -> [usize; 4] {
    t.layout().shape().dims()
}

fn map(x: FloatTensor<Flex>, f: impl Fn(f32) -> f32 + Sync, op: &str) -> FloatTensor<Flex> {
    let x = dense(x, op);
    let src = values(&x);
    let mut out = FlexTensor::empty(x.layout().shape().clone(), DType::F32);
    out.storage_mut::<f32>().par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(o, s)| {
        for (o, &v) in o.iter_mut().zip(s) {
            *o = f(v);
        }
    });
    out
}

fn map_grad(
    x: FloatTensor<Flex>,
    grad: FloatTensor<Flex>,
    df: impl Fn(f32) -> f32 + Sync,
    op: &str,
) -> FloatTensor<Flex> {
    assert_eq!(x.layout().shape(), grad.layout().shape(), "{op}: gradient shape");
    let (x, mut grad) = (dense(x, op), dense(grad, op));
    let src = values(&x);
    // In place when the gradient is not shared (the usual case); copied first otherwise.
    grad.storage_mut::<f32>().par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(g, s)| {
        for (g, &v) in g.iter_mut().zip(s) {
            *g *= df(v);
        }
    });
    grad
}

/// The runtime kernel's description of a convolution of `n` images of `hw`
/// planes, `[cin, cout, groups]` channels, by a `k`×`k` kernel.
fn geometry(
    n: usize,
    [cin, cout, groups]: [usize; 3],
    hw: [usize; 2],
    k: usize,
    stride: usize,
    pad: usize,
) -> ConvGeometry {
    assert!(groups > 0 && cin % groups == 0 && cout % groups == 0, "{groups} groups of {cin} → {cout} channels");
    assert!(hw.iter().all(|&l| l + 2 * pad >= k), "a {k}×{k} kernel on a {hw:?} plane padded by {pad}");
    ConvGeometry {
        batch: n,
        in_channels: cin,
        out_channels: cout,
        groups,
        input: hw,
        kernel: [k; 2],
        stride: [stride; 2],
        pad_before: [pad; 2],
        output: hw.map(|l| (l + 2 * pad - k) / stride + 1),
    }
}

/// The transposed convolution that maps the output gradient of `geo` to its input's.
fn transposed_geometry(geo: &ConvGeometry) -> ConvGeometry {
    ConvGeometry {
        in_channels: geo.out_channels,
        out_channels: geo.in_channels,
        input: geo.output,
        output: geo.input,
        ..geo.clone()
    }
}

/// The OIHW weights of the convolution `geo` as the kernel of its transposed
/// convolution ([`phases`]' `[out][in_per_group][kh][kw]`, out = the
/// convolution's input channel).
fn regroup(geo: &ConvGeometry, w: &[f32]) -> Vec<f32> {
    let (kk, cin_g, cout_g) = (geo.kernel[0] * geo.kernel[1], geo.in_per_group(), geo.out_per_group());
    let mut out = Vec::with_capacity(w.len());
    for i in 0..geo.in_channels {
        let (group, il) = (i / cin_g, i % cin_g);
        for ol in 0..cout_g {
            let o = group * cout_g + ol;
            out.extend_from_slice(&w[(o * cin_g + il) * kk..][..kk]);
        }
    }
    out
}

/// The grouped convolution `geo` of `x` by OIHW `weight` into `out`, on the
/// runtime's kernel, the (image, group) pairs split across rayon's threads.
fn convolve(geo: &ConvGeometry, x: &[f32], weight: &[f32], out: &mut [f32]) {
    let (taps, packed, bias) = (geo.tap_offsets(), pack_kernel(geo, weight), vec![0.0; geo.out_channels]);
    let group_len = geo.out_per_group() * geo.output[0] * geo.output[1];
    out.par_chunks_mut(group_len).enumerate().for_each(|(first, chunk)| {
        convolve_groups(geo, &taps, x, &packed, &bias, Clamp::NONE, first, chunk);
    });
}

/// The transposed convolution `geo`, given as its `phases`, of `x` into `out`.
fn transposed(phases: &[Phase], geo: &ConvGeometry, x: &[f32], out: &mut [f32]) {
    if let [phase] = phases {
        // Stride 1: the one phase is the whole output.
        return convolve(&phase.geo, x, &phase.kernel, out);
    }
    for (i, phase) in phases.iter().enumerate() {
        let mut buf = vec![0.0; phase.geo.output_len()];
        convolve(&phase.geo, x, &phase.kernel, &mut buf);
        spread(geo.stride, geo.output, i, phase.geo.output, &buf, out);
    }
}

impl TrainKernels for Flex {
    fn hswish(x: FloatTensor<Self>) -> FloatTensor<Self> {
        map(x, hswish_at, "hswish")
    }
    fn hswish_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        map_grad(x, grad, hswish_grad_at, "hswish_backward")
    }
    fn hsigmoid(x: FloatTensor<Self>) -> FloatTensor<Self> {
        map(x, hsigmoid_at, "hsigmoid")
    }
    fn hsigmoid_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        map_grad(x, grad, hsigmoid_grad_at, "hsigmoid_backward")
    }
    fn grouped_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        pad: usize,
        groups: usize,
    ) -> FloatTensor<Self> {
        let (x, weight) = (dense(x, "grouped_conv"), dense(weight, "grouped_conv"));
        let ([n, cin, h, w], [cout, _, k, _]) = (dims4(&x), dims4(&weight));
        let geo = geometry(n, [cin, cout, groups], [h, w], k, stride, pad);
        assert_eq!(dims4(&weight), [cout, geo.in_per_group(), k, k], "grouped_conv weight shape");
        let mut y = FlexTensor::empty(Shape::new([n, cout, geo.output[0], geo.output[1]]), DType::F32);
        convolve(&geo, values(&x), values(&weight), y.storage_mut());
        y
    }
    fn grouped_conv_x_backward(
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        height: usize,
        width: usize,
        stride: usize,
        pad: usize,
        groups: usize,
    ) -> FloatTensor<Self> {
        let (weight, grad) = (dense(weight, "grouped_conv_x_backward"), dense(grad, "grouped_conv_x_backward"));
        let ([n, cout, oh, ow], [_, cin_g, k, _]) = (dims4(&grad), dims4(&weight));
        let geo = geometry(n, [cin_g * groups, cout, groups], [height, width], k, stride, pad);
        assert_eq!([oh, ow], geo.output, "grouped_conv_x_backward: gradient plane");
        let back = transposed_geometry(&geo);
        let phases = phases(&back, &regroup(&geo, values(&weight)))
            .unwrap_or_else(|e| panic!("grouped_conv_x_backward of {geo:?} (not one `takes_grouped` takes): {e}"));
        let mut dx = FlexTensor::empty(Shape::new([n, geo.in_channels, height, width]), DType::F32);
        transposed(&phases, &back, values(&grad), dx.storage_mut());
        dx
    }
    fn grouped_conv_weight_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        k: usize,
        stride: usize,
        pad: usize,
        groups: usize,
    ) -> FloatTensor<Self> {
        let (x, grad) = (dense(x, "grouped_conv_weight_backward"), dense(grad, "grouped_conv_weight_backward"));
        let ([n, cin, h, w], [_, cout, oh, ow]) = (dims4(&x), dims4(&grad));
        let geo = geometry(n, [cin, cout, groups], [h, w], k, stride, pad);
        assert_eq!([oh, ow], geo.output, "grouped_conv_weight_backward: gradient plane");
        let (taps, xv, g) = (geo.tap_offsets(), values(&x), values(&grad));
        let mut dw = FlexTensor::empty(Shape::new([cout, geo.in_per_group(), k, k]), DType::F32);
        dw.storage_mut::<f32>().par_chunks_mut(geo.out_per_group() * taps.len()).enumerate().for_each(|(group, dw)| {
            weight_gradient_groups(&geo, &taps, xv, g, group, dw);
        });
        dw
    }
    fn grouped_conv_transpose(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        pad: usize,
        groups: usize,
    ) -> FloatTensor<Self> {
        let ([_, _, h, w], k) = (dims4(&x), dims4(&weight)[2]);
        let out = |l: usize| (l - 1) * stride + k - 2 * pad;
        Flex::grouped_conv_x_backward(weight, x, out(h), out(w), stride, pad, groups)
    }
    fn pointwise_conv(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        Flex::conv2d(x, weight, None, ConvOptions::new([1, 1], [0, 0], [1, 1], 1))
    }
}

/// The backward step of HardSwish/HardSigmoid: its state is the input.
#[derive(Debug)]
struct ActivationBackward {
    swish: bool,
}

impl<B: Backend + TrainKernels> Backward<B, 1> for ActivationBackward {
    type State = B::FloatTensorPrimitive;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let x = ops.state;
        let swish = self.swish;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            if swish {
                B::hswish_backward(x, grad)
            } else {
                B::hsigmoid_backward(x, grad)
            }
        });
    }
}

fn activation<B: Backend + TrainKernels, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    swish: bool,
) -> FloatTensor<Autodiff<B, C>> {
    let forward = |x| if swish { B::hswish(x) } else { B::hsigmoid(x) };
    let (primitive, node) = x.into_parts();
    match (ActivationBackward { swish }).prepare::<C>([node]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(primitive.clone(), forward(primitive)),
        OpsKind::UnTracked(prep) => prep.finish(forward(primitive)),
    }
}

/// Which convolution a [`ConvBackward`] step differentiates.
#[derive(Clone, Copy, Debug)]
enum ConvKind {
    Pointwise,
    Grouped { stride: usize, pad: usize, groups: usize },
    Transposed { stride: usize, pad: usize, groups: usize },
}

/// The backward step of a convolution: its state is the input and the weight.
#[derive(Debug)]
struct ConvBackward {
    kind: ConvKind,
}

impl<B: Backend + TrainKernels> Backward<B, 2> for ConvBackward {
    type State = (B::FloatTensorPrimitive, B::FloatTensorPrimitive);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, w) = ops.state;
        let [_, _, h, width] = x.shape().dims();
        let k = w.shape().dims::<4>()[2];
        if let Some(node) = node_x {
            let dx = match self.kind {
                ConvKind::Pointwise => B::pointwise_x_backward(w.clone(), grad.clone()),
                ConvKind::Grouped { stride, pad, groups } => {
                    B::grouped_conv_x_backward(w.clone(), grad.clone(), h, width, stride, pad, groups)
                }
                ConvKind::Transposed { stride, pad, groups } => {
                    B::grouped_conv(grad.clone(), w.clone(), stride, pad, groups)
                }
            };
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_w {
            let dw = match self.kind {
                ConvKind::Pointwise => B::pointwise_weight_backward(x, grad),
                ConvKind::Grouped { stride, pad, groups } => {
                    B::grouped_conv_weight_backward(x, grad, k, stride, pad, groups)
                }
                // The convolution this one inverts maps the output gradient to the input.
                ConvKind::Transposed { stride, pad, groups } => {
                    B::grouped_conv_weight_backward(grad, x, k, stride, pad, groups)
                }
            };
            grads.register::<B>(node.id, dw);
        }
    }
}

fn convolution<B: Backend + TrainKernels, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    weight: FloatTensor<Autodiff<B, C>>,
    kind: ConvKind,
) -> FloatTensor<Autodiff<B, C>> {
    let forward = |x, w| match kind {
        ConvKind::Pointwise => B::pointwise_conv(x, w),
        ConvKind::Grouped { stride, pad, groups } => B::grouped_conv(x, w, stride, pad, groups),
        ConvKind::Transposed { stride, pad, groups } => B::grouped_conv_transpose(x, w, stride, pad, groups),
    };
    let (xp, xn) = x.into_parts();
    let (wp, wn) = weight.into_parts();
    match (ConvBackward { kind }).prepare::<C>([xn, wn]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish((xp.clone(), wp.clone()), forward(xp, wp)),
        OpsKind::UnTracked(prep) => prep.finish(forward(xp, wp)),
    }
}

/// The backward kernels run on the inner backend and are not themselves
/// differentiated: training here is first-order.
impl<B: Backend + TrainKernels, C: CheckpointStrategy> TrainKernels for Autodiff<B, C> {
    fn hswish(x: FloatTensor<Self>) -> FloatTensor<Self> {
        activation::<B, C>(x, true)
    }
    fn hswish_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::from_inner(B::hswish_backward(Self::inner(x), Self::inner(grad)))
    }
    fn hsigmoid(x: FloatTensor<Self>) -> FloatTensor<Self> {
        activation::<B, C>(x, false)
    }
    fn hsigmoid_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::from_inner(B::hsigmoid_backward(Self::inner(x), Self::inner(grad)))
    }
    fn grouped_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        pad: usize,
        groups: usize,
    ) -> FloatTensor<Self> {
        convolution::<B, C>(x, weight, ConvKind::Grouped { stride, pad, groups })
    }
    fn grouped_conv_x_backward(
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        height: usize,
        width: usize,
        stride: usize,
        pad: usize,
        groups: usize,
    ) -> FloatTensor<Self> {
        let dx = B::grouped_conv_x_backward(Self::inner(weight), Self::inner(grad), height, width, stride, pad, groups);
        Self::from_inner(dx)
    }
    fn grouped_conv_weight_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        k: usize,
        stride: usize,
        pad: usize,
        groups: usize,
    ) -> FloatTensor<Self> {
        Self::from_inner(B::grouped_conv_weight_backward(Self::inner(x), Self::inner(grad), k, stride, pad, groups))
    }
    fn grouped_conv_transpose(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        pad: usize,
        groups: usize,
    ) -> FloatTensor<Self> {
        convolution::<B, C>(x, weight, ConvKind::Transposed { stride, pad, groups })
    }
    fn pointwise_conv(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        convolution::<B, C>(x, weight, ConvKind::Pointwise)
    }
}

/// Whether `x` lives on the Flex backend (the kernels above), with or without autodiff.
fn on_flex(x: &Tensor<4>) -> bool {
    matches!(x.device().inner().as_dispatch(), DispatchDevice::Flex(_))
}

/// HardSwish: one pass each way on Flex, tensor ops elsewhere.
pub fn hard_swish(x: Tensor<4>) -> Tensor<4> {
    if on_flex(&x) {
        Tensor::from_dispatch(<Dispatch as TrainKernels>::hswish(x.into_dispatch()))
    } else {
        x.clone() * (x + 3.0).clamp(0.0, 6.0) / 6.0
    }
}

/// HardSigmoid (`relu6(x + 3)/6`): one pass each way on Flex, tensor ops elsewhere.
pub fn hard_sigmoid(x: Tensor<4>) -> Tensor<4> {
    if on_flex(&x) {
        Tensor::from_dispatch(<Dispatch as TrainKernels>::hsigmoid(x.into_dispatch()))
    } else {
        (x + 3.0).clamp(0.0, 6.0) / 6.0
    }
}

/// Whether the grouped kernels take a convolution with `groups` groups, a
/// `k`×`k` kernel and an `hw` input: more than one group, and an input
/// gradient that splits into stride-1 phases that each have taps and outputs
/// ([`phases`]). Every grouped convolution of the search spaces does.
fn takes_grouped(groups: usize, k: usize, stride: usize, pad: usize, hw: [usize; 2]) -> bool {
    groups > 1 && pad + stride <= k && hw.iter().all(|&l| l >= stride && l + 2 * pad >= k)
}

/// `conv2d` with symmetric `stride`/`pad`: the grouped and pointwise kernels
/// above where they apply on Flex, burn's op otherwise.
pub fn conv2d(
    x: Tensor<4>,
    w: Tensor<4>,
    bias: Option<Tensor<1>>,
    stride: usize,
    pad: usize,
    groups: usize,
) -> Tensor<4> {
    let [_, _, k, _] = w.dims();
    let [_, _, h, width] = x.dims();
    if bias.is_none() && on_flex(&x) {
        if takes_grouped(groups, k, stride, pad, [h, width]) {
            let y = <Dispatch as TrainKernels>::grouped_conv(x.into_dispatch(), w.into_dispatch(), stride, pad, groups);
            return Tensor::from_dispatch(y);
        }
        if k == 1 && stride == 1 && pad == 0 && groups == 1 {
            return Tensor::from_dispatch(<Dispatch as TrainKernels>::pointwise_conv(
                x.into_dispatch(),
                w.into_dispatch(),
            ));
        }
    }
    module::conv2d(x, w, bias, options(stride, pad, groups))
}

/// `conv_transpose2d` with symmetric `stride`/`pad`, no output padding: the
/// grouped kernel above where it applies on Flex, burn's op otherwise.
pub fn conv_transpose2d(
    x: Tensor<4>,
    w: Tensor<4>,
    bias: Option<Tensor<1>>,
    stride: usize,
    pad: usize,
    groups: usize,
) -> Tensor<4> {
    // The convolution it inverts runs from this one's output to its input.
    let [_, _, k, _] = w.dims();
    let [_, _, h, width] = x.dims();
    let out = |l: usize| ((l.max(1) - 1) * stride + k).saturating_sub(2 * pad);
    if bias.is_none() && takes_grouped(groups, k, stride, pad, [out(h), out(width)]) && on_flex(&x) {
        let (x, w) = (x.into_dispatch(), w.into_dispatch());
        return Tensor::from_dispatch(<Dispatch as TrainKernels>::grouped_conv_transpose(x, w, stride, pad, groups));
    }
    module::conv_transpose2d(x, w, bias, transpose_options(stride, pad, groups))
}

fn options(stride: usize, pad: usize, groups: usize) -> ConvOptions<2> {
    ConvOptions::new([stride; 2], [pad; 2], [1, 1], groups)
}

fn transpose_options(stride: usize, pad: usize, groups: usize) -> ConvTransposeOptions<2> {
    ConvTransposeOptions::new([stride; 2], [pad; 2], [0, 0], [1, 1], groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    /// Forward values and input gradients of `fused` and `reference` on the
    /// same data (spread over both kinks), through burn's autodiff.
    fn compare(fused: fn(Tensor<4>) -> Tensor<4>, reference: fn(Tensor<4>) -> Tensor<4>, transpose: bool) {
        let device = Device::flex().autodiff();
        device.seed(7);
        let data: Tensor<4> = Tensor::random([2, 5, 7, 9], Distribution::Normal(0.0, 4.0), &device);
        let weights: Tensor<4> = Tensor::random([2, 5, 7, 9], Distribution::Normal(0.0, 1.0), &device);
        let run = |f: fn(Tensor<4>) -> Tensor<4>| {
            let x = data.clone().detach().require_grad();
            // A non-contiguous view exercises the copy to a dense layout.
            let input = if transpose { x.clone().swap_dims(2, 3) } else { x.clone() };
            let w = if transpose { weights.clone().swap_dims(2, 3) } else { weights.clone() };
            let y = f(input);
            let grads = (y.clone() * w).sum().backward();
            let gx = x.grad(&grads).expect("a gradient reaches the input");
            (y.into_data().try_to_vec::<f32>().unwrap(), gx.into_data().try_to_vec::<f32>().unwrap())
        };
        let (y, g) = run(fused);
        let (y_ref, g_ref) = run(reference);
        for (a, b) in y.iter().zip(&y_ref).chain(g.iter().zip(&g_ref)) {
            assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "{a} vs {b}");
        }
        assert!(y.iter().any(|&v| v == 0.0) && g.iter().any(|&v| v == 0.0), "the data reaches the flat part");
    }

    #[test]
    fn hard_swish_matches_tensor_ops_forward_and_backward() {
        let reference = |x: Tensor<4>| x.clone() * (x + 3.0).clamp(0.0, 6.0) / 6.0;
        compare(hard_swish, reference, false);
        compare(hard_swish, reference, true);
    }

    #[test]
    fn hard_sigmoid_matches_tensor_ops_forward_and_backward() {
        let reference = |x: Tensor<4>| (x + 3.0).clamp(0.0, 6.0) / 6.0;
        compare(hard_sigmoid, reference, false);
        compare(hard_sigmoid, reference, true);
    }

    /// The direct grouped kernels whatever the channels per group.
    fn direct(x: Tensor<4>, w: Tensor<4>, stride: usize, pad: usize, groups: usize, transposed: bool) -> Tensor<4> {
        let (x, w) = (x.into_dispatch(), w.into_dispatch());
        Tensor::from_dispatch(if transposed {
            <Dispatch as TrainKernels>::grouped_conv_transpose(x, w, stride, pad, groups)
        } else {
            <Dispatch as TrainKernels>::grouped_conv(x, w, stride, pad, groups)
        })
    }

    /// Output and both gradients of [`conv2d`] (or [`conv_transpose2d`]; with
    /// `forced`, the trait's grouped op itself) against burn's own op.
    /// `cin`/`cout`: the op's input/output channels.
    #[allow(clippy::too_many_arguments)]
    fn compare_conv(
        n: usize,
        cin: usize,
        cout: usize,
        hw: [usize; 2],
        k: usize,
        stride: usize,
        groups: usize,
        transposed: bool,
        forced: bool,
    ) {
        let device = Device::flex().autodiff();
        device.seed(11);
        let pad = if transposed { 1 } else { k / 2 };
        let weight = if transposed { [cin, cout / groups, k, k] } else { [cout, cin / groups, k, k] };
        let x0: Tensor<4> = Tensor::random([n, cin, hw[0], hw[1]], Distribution::Normal(0.0, 1.0), &device);
        let w0: Tensor<4> = Tensor::random(weight, Distribution::Normal(0.0, 1.0), &device);
        let out_hw =
            hw.map(|l| if transposed { (l - 1) * stride + k - 2 * pad } else { (l + 2 * pad - k) / stride + 1 });
        // Weights for a weighted sum, so that every output position has its own gradient.
        let g: Tensor<4> = Tensor::random([n, cout, out_hw[0], out_hw[1]], Distribution::Normal(0.0, 1.0), &device);
        let run = |ours: bool| {
            let (x, w) = (x0.clone().detach().require_grad(), w0.clone().detach().require_grad());
            let y = match (ours, transposed) {
                (true, _) if forced => direct(x.clone(), w.clone(), stride, pad, groups, transposed),
                (true, false) => conv2d(x.clone(), w.clone(), None, stride, pad, groups),
                (true, true) => conv_transpose2d(x.clone(), w.clone(), None, stride, pad, groups),
                (false, false) => module::conv2d(x.clone(), w.clone(), None, options(stride, pad, groups)),
                (false, true) => {
                    module::conv_transpose2d(x.clone(), w.clone(), None, transpose_options(stride, pad, groups))
                }
            };
            let grads = (y.clone() * g.clone()).sum().backward();
            let out = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().unwrap();
            [out(y), out(x.grad(&grads).unwrap()), out(w.grad(&grads).unwrap())]
        };
        let (ours, theirs) = (run(true), run(false));
        for (what, (a, b)) in ["output", "input gradient", "weight gradient"].iter().zip(ours.iter().zip(&theirs)) {
            assert_eq!(a.len(), b.len(), "{what}");
            let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (u, v) in a.iter().zip(b) {
                assert!(
                    (u - v).abs() <= 1e-5 * scale,
                    "{what} k{k} s{stride} g{groups} {hw:?} transposed {transposed}: {u} vs {v}"
                );
            }
        }
    }

    #[test]
    fn grouped_convolutions_match_burn_forward_and_backward() {
        for (k, stride, hw) in
            [(3, 1, [9, 7]), (5, 1, [8, 6]), (7, 1, [12, 10]), (3, 2, [9, 7]), (5, 2, [8, 8]), (7, 2, [7, 5])]
        {
            compare_conv(2, 6, 6, hw, k, stride, 6, false, false); // depthwise
            compare_conv(2, 8, 8, hw, k, stride, 4, false, false); // 2 channels per group
            compare_conv(2, 8, 8, hw, k, stride, 2, false, true); // 4 per group, the trait's op
            compare_conv(2, 32, 32, hw, k, stride, 2, false, false); // 16: the max subnet's
        }
        // 2 in, 4 out per group; 8 per group; a grouped 1×1.
        compare_conv(2, 6, 12, [6, 5], 3, 1, 3, false, true);
        compare_conv(2, 16, 16, [6, 6], 3, 1, 2, false, false);
        compare_conv(2, 8, 8, [5, 4], 1, 1, 2, false, false);
        // Planes smaller than the kernel (the last stages of a small input).
        compare_conv(2, 4, 4, [2, 2], 7, 1, 4, false, false);
        compare_conv(2, 4, 4, [2, 3], 7, 1, 4, false, false);
        compare_conv(2, 4, 4, [1, 2], 5, 1, 2, false, false);
        compare_conv(2, 4, 4, [3, 2], 7, 2, 4, false, false);
        compare_conv(2, 32, 32, [4, 3], 7, 2, 2, false, false);
    }

    #[test]
    fn grouped_transposed_convolutions_match_burn_forward_and_backward() {
        // The deconvolution head's shape: 4×4, stride 2, pad 1; its first
        // layer's 5 → 8 per group.
        compare_conv(2, 8, 8, [4, 3], 4, 2, 8, true, false);
        compare_conv(2, 8, 8, [4, 3], 4, 2, 4, true, false);
        compare_conv(2, 8, 16, [5, 4], 4, 2, 4, true, true);
        compare_conv(2, 6, 4, [3, 3], 4, 2, 2, true, true);
        compare_conv(2, 10, 16, [4, 3], 4, 2, 2, true, false);
    }

    #[test]
    fn pointwise_convolution_matches_burn_forward_and_backward() {
        compare_conv(3, 5, 7, [6, 4], 1, 1, 1, false, false);
        compare_conv(2, 16, 3, [5, 9], 1, 1, 1, false, false);
    }

    #[test]
    fn other_convolutions_stay_burns() {
        // Strided 1×1 (grouped: its input gradient has phases without taps,
        // so `takes_grouped` leaves it), full 3×3, an ungrouped transposed
        // conv: burn's op, same results.
        assert!(!takes_grouped(2, 1, 2, 0, [7, 5]));
        compare_conv(2, 4, 6, [7, 5], 1, 2, 1, false, false);
        compare_conv(2, 4, 6, [7, 5], 1, 2, 2, false, false);
        compare_conv(2, 3, 8, [8, 6], 3, 2, 1, false, false);
        compare_conv(2, 3, 5, [4, 4], 4, 2, 1, true, false);
    }

    #[test]
    fn fused_ops_run_without_autodiff() {
        let x = Tensor::<4>::from_floats([[[[-4.0, -3.0, 0.0, 1.5, 3.0, 4.0]]]], &Device::flex());
        let y = hard_swish(x.clone()).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(y, vec![0.0, 0.0, 0.0, 1.125, 3.0, 4.0]);
        let s = hard_sigmoid(x).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(s, vec![0.0, 0.0, 0.5, 0.75, 1.0, 1.0]);
    }
}
