//! Training kernels for burn's Flex CPU backend, as a burn backend extension
//! with their own backward passes: the ops where burn's generic autodiff
//! spends most of a sandwich step's time.
//!
//! - **HardSwish, HardSigmoid**: burn's autodiff has neither; written with
//!   tensor ops, `x·clamp(x+3, 0, 6)/6` is seven passes over the activations
//!   forward (the clamp is two comparisons and two masked fills) and as many
//!   backward. Here: one pass each way (the derivative from the saved input).
//! - **Grouped convolutions with 1–2 channels per group** (depthwise, and
//!   the deconvolution head's groups): burn computes the weight gradient group
//!   by group, each an im2col of the whole batch as a convolution with the
//!   output gradient as kernel — k² copies of the input per channel — and the
//!   input gradient as a transposed convolution. Here forward, input and
//!   weight gradient are direct loops over planes; a transposed convolution
//!   is the same three loops with the roles swapped. With more channels per
//!   group burn's im2col and matrix product win ([`DIRECT_CHANNELS_PER_GROUP`]).
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

/// Element-wise passes split into chunks of this many values across threads.
const CHUNK: usize = 1 << 15;

/// The most channels per group (in or out) the direct grouped kernels take.
/// Their work per output grows with it where burn's im2col and matrix
/// product amortise it: measured forward + backward of one 16-image layer
/// (144 channels at 32×24, 7×7; 1 thread; before the taps' ranges were
/// worked out once), burn / ours: 1 channel per group 139 / 75 ms, 2: 311 /
/// 150, 4: 278 / 282, 8: 342 / 548, 16: 360 / 1 098.
const DIRECT_CHANNELS_PER_GROUP: usize = 2;

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

/// Output positions `o` (of `out` along one axis) whose input `o·stride + tap − pad` lies in `0..len`.
fn valid(tap: usize, stride: usize, pad: usize, len: usize, out: usize) -> std::ops::Range<usize> {
    let lo = pad.saturating_sub(tap).div_ceil(stride);
    let hi = if len + pad > tap { ((len + pad - tap - 1) / stride + 1).min(out) } else { 0 };
    lo..hi.max(lo)
}

/// Σ a[i]·b[i·stride], eight partial sums (so that it vectorises for stride 1).
#[inline(always)]
fn dot(a: &[f32], b: &[f32], stride: usize) -> f32 {
    if stride == 1 {
        let mut acc = [0f32; 8];
        let (ca, cb) = (a.chunks_exact(8), b[..a.len()].chunks_exact(8));
        let (ra, rb) = (ca.remainder(), cb.remainder());
        for (x, y) in ca.zip(cb) {
            for l in 0..8 {
                acc[l] += x[l] * y[l];
            }
        }
        acc.iter().sum::<f32>() + ra.iter().zip(rb).map(|(x, y)| x * y).sum::<f32>()
    } else {
        a.iter().enumerate().map(|(i, x)| x * b[i * stride]).sum()
    }
}

/// Geometry of one convolution between planes: input h×w, output oh×ow,
/// with each tap's valid rows and columns worked out once (the divisions
/// would otherwise cost more than a row's arithmetic).
struct Plane {
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    k: usize,
    stride: usize,
    /// Per tap row `ky`: its output rows.
    rows: Vec<std::ops::Range<usize>>,
    /// Per tap column `kx`: its output columns and first input column;
    /// `None` where it lands in the padding only (a plane narrower than the kernel).
    columns: Vec<Option<(std::ops::Range<usize>, usize)>>,
    pad: usize,
}

impl Plane {
    fn new(h: usize, w: usize, k: usize, stride: usize, pad: usize) -> Plane {
        assert!(h + 2 * pad >= k && w + 2 * pad >= k, "a {k}×{k} kernel on a {h}×{w} plane padded by {pad}");
        let (oh, ow) = ((h + 2 * pad - k) / stride + 1, (w + 2 * pad - k) / stride + 1);
        let rows = (0..k).map(|ky| valid(ky, stride, pad, h, oh)).collect();
        let columns = (0..k)
            .map(|kx| {
                let r = valid(kx, stride, pad, w, ow);
                let start = r.start * stride + kx - pad;
                (!r.is_empty()).then_some((r, start))
            })
            .collect();
        Plane { h, w, oh, ow, k, stride, rows, columns, pad }
    }

    fn input(&self) -> usize {
        self.h * self.w
    }

    fn output(&self) -> usize {
        self.oh * self.ow
    }

    /// The taps rows that land inside the input: (tap row, output row, input row).
    fn rows(&self) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        self.rows
            .iter()
            .enumerate()
            .flat_map(move |(ky, r)| r.clone().map(move |oy| (ky, oy, oy * self.stride + ky - self.pad)))
    }

    fn columns(&self, kx: usize) -> Option<(std::ops::Range<usize>, usize)> {
        self.columns[kx].clone()
    }

    /// Adds one input plane's contribution to an output plane: `y += Σ taps w·x(shifted)`.
    fn gather(&self, y: &mut [f32], x: &[f32], wk: &[f32]) {
        let (k, s) = (self.k, self.stride);
        for (ky, oy, iy) in self.rows() {
            let (yrow, xrow) = (&mut y[oy * self.ow..(oy + 1) * self.ow], &x[iy * self.w..(iy + 1) * self.w]);
            for kx in 0..k {
                let wv = wk[ky * k + kx];
                let Some((r, start)) = self.columns(kx) else { continue };
                if s == 1 {
                    for (o, &v) in yrow[r.clone()].iter_mut().zip(&xrow[start..start + r.len()]) {
                        *o += wv * v;
                    }
                } else {
                    for (i, o) in yrow[r].iter_mut().enumerate() {
                        *o += wv * xrow[start + i * s];
                    }
                }
            }
        }
    }

    /// Adds one output plane's gradient to an input plane's: `dx += Σ taps w·g` (scatter form).
    fn scatter(&self, dx: &mut [f32], g: &[f32], wk: &[f32]) {
        let (k, s) = (self.k, self.stride);
        for (ky, oy, iy) in self.rows() {
            let (row, grow) = (&mut dx[iy * self.w..(iy + 1) * self.w], &g[oy * self.ow..(oy + 1) * self.ow]);
            for kx in 0..k {
                let wv = wk[ky * k + kx];
                let Some((r, start)) = self.columns(kx) else { continue };
                if s == 1 {
                    for (d, &gv) in row[start..start + r.len()].iter_mut().zip(&grow[r]) {
                        *d += wv * gv;
                    }
                } else {
                    for (i, &gv) in grow[r].iter().enumerate() {
                        row[start + i * s] += wv * gv;
                    }
                }
            }
        }
    }

    /// Adds the weight gradient of one (output, input) plane pair: `dw[tap] += Σ g·x(shifted)`.
    fn correlate(&self, dw: &mut [f32], g: &[f32], x: &[f32]) {
        let k = self.k;
        for (ky, oy, iy) in self.rows() {
            let (row, grow) = (&x[iy * self.w..(iy + 1) * self.w], &g[oy * self.ow..(oy + 1) * self.ow]);
            for kx in 0..k {
                let Some((r, start)) = self.columns(kx) else { continue };
                dw[ky * k + kx] += dot(&grow[r], &row[start..], self.stride);
            }
        }
    }
}

/// Channels of a grouped convolution: `cin`/`cout` in all, per group `cin / groups`, `cout / groups`.
#[derive(Clone, Copy)]
struct Groups {
    cin: usize,
    cout: usize,
    groups: usize,
}

impl Groups {
    fn new(cin: usize, cout: usize, groups: usize) -> Groups {
        assert!(groups > 0 && cin % groups == 0 && cout % groups == 0, "{groups} groups of {cin} → {cout} channels");
        Groups { cin, cout, groups }
    }
    fn cin_g(&self) -> usize {
        self.cin / self.groups
    }
    fn cout_g(&self) -> usize {
        self.cout / self.groups
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
        let (p, c) = (Plane::new(h, w, k, stride, pad), Groups::new(cin, cout, groups));
        assert_eq!(dims4(&weight), [cout, c.cin_g(), k, k], "grouped_conv weight shape");
        let (xv, wv, kk) = (values(&x), values(&weight), k * k);
        let mut y = FlexTensor::zeros(Shape::new([n, cout, p.oh, p.ow]), DType::F32);
        y.storage_mut::<f32>().par_chunks_mut(p.output()).enumerate().for_each(|(j, plane)| {
            let (img, o) = (j / cout, j % cout);
            for il in 0..c.cin_g() {
                let i = img * cin + o / c.cout_g() * c.cin_g() + il;
                let taps = (o * c.cin_g() + il) * kk;
                p.gather(plane, &xv[i * p.input()..(i + 1) * p.input()], &wv[taps..taps + kk]);
            }
        });
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
        let (p, c) = (Plane::new(height, width, k, stride, pad), Groups::new(cin_g * groups, cout, groups));
        assert_eq!([oh, ow], [p.oh, p.ow], "grouped_conv_x_backward: gradient plane");
        let (g, wv, kk) = (values(&grad), values(&weight), k * k);
        let mut dx = FlexTensor::zeros(Shape::new([n, c.cin, height, width]), DType::F32);
        dx.storage_mut::<f32>().par_chunks_mut(p.input()).enumerate().for_each(|(j, plane)| {
            let (img, i) = (j / c.cin, j % c.cin);
            let (group, il) = (i / cin_g, i % cin_g);
            for ol in 0..c.cout_g() {
                let o = group * c.cout_g() + ol;
                let taps = (o * cin_g + il) * kk;
                let go = (img * cout + o) * p.output();
                p.scatter(plane, &g[go..go + p.output()], &wv[taps..taps + kk]);
            }
        });
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
        let (p, c) = (Plane::new(h, w, k, stride, pad), Groups::new(cin, cout, groups));
        assert_eq!([oh, ow], [p.oh, p.ow], "grouped_conv_weight_backward: gradient plane");
        let (g, xv, kk) = (values(&grad), values(&x), k * k);
        let mut dw = FlexTensor::zeros(Shape::new([cout, c.cin_g(), k, k]), DType::F32);
        dw.storage_mut::<f32>().par_chunks_mut(c.cin_g() * kk).enumerate().for_each(|(o, taps)| {
            let first = o / c.cout_g() * c.cin_g();
            for img in 0..n {
                let go = (img * cout + o) * p.output();
                for (il, t) in taps.chunks_mut(kk).enumerate() {
                    let xi = (img * cin + first + il) * p.input();
                    p.correlate(t, &g[go..go + p.output()], &xv[xi..xi + p.input()]);
                }
            }
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

/// Whether a convolution with `groups` groups of `in_per_group` → `out_per_group`
/// channels takes the direct grouped kernels ([`DIRECT_CHANNELS_PER_GROUP`]).
fn takes_direct(groups: usize, in_per_group: usize, out_per_group: usize) -> bool {
    groups > 1 && in_per_group.max(out_per_group) <= DIRECT_CHANNELS_PER_GROUP
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
    let [cout, cin_g, k, _] = w.dims();
    if bias.is_none() && on_flex(&x) {
        if takes_direct(groups, cin_g, cout / groups) {
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
    let [cin, cout_g, _, _] = w.dims();
    if bias.is_none() && takes_direct(groups, cin / groups, cout_g) && on_flex(&x) {
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
            (y.into_data().to_vec::<f32>().unwrap(), gx.into_data().to_vec::<f32>().unwrap())
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
    /// `forced`, the direct grouped kernels) against burn's own op.
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
            let out = |t: Tensor<4>| t.into_data().to_vec::<f32>().unwrap();
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
            compare_conv(2, 8, 8, hw, k, stride, 2, false, true); // 4 per group, forced
        }
        // 2 in, 4 out per group.
        compare_conv(2, 6, 12, [6, 5], 3, 1, 3, false, true);
        // Planes smaller than the kernel (the last stages of a small input).
        compare_conv(2, 4, 4, [2, 2], 7, 1, 4, false, false);
        compare_conv(2, 4, 4, [2, 3], 7, 1, 4, false, false);
        compare_conv(2, 4, 4, [1, 2], 5, 1, 2, false, false);
        compare_conv(2, 4, 4, [3, 2], 7, 2, 4, false, false);
    }

    #[test]
    fn grouped_transposed_convolutions_match_burn_forward_and_backward() {
        // The deconvolution head's shape: 4×4, stride 2, pad 1.
        compare_conv(2, 8, 8, [4, 3], 4, 2, 8, true, false);
        compare_conv(2, 8, 8, [4, 3], 4, 2, 4, true, false);
        compare_conv(2, 8, 16, [5, 4], 4, 2, 4, true, true);
        compare_conv(2, 6, 4, [3, 3], 4, 2, 2, true, true);
    }

    #[test]
    fn pointwise_convolution_matches_burn_forward_and_backward() {
        compare_conv(3, 5, 7, [6, 4], 1, 1, 1, false, false);
        compare_conv(2, 16, 3, [5, 9], 1, 1, 1, false, false);
    }

    #[test]
    fn other_convolutions_stay_burns() {
        // Strided 1×1, grouped 1×1 (not the pointwise kernel), full 3×3, 8
        // channels per group, an ungrouped transposed conv: burn's op, same results.
        compare_conv(2, 4, 6, [7, 5], 1, 2, 1, false, false);
        compare_conv(2, 8, 8, [5, 4], 1, 1, 2, false, false);
        compare_conv(2, 3, 8, [8, 6], 3, 2, 1, false, false);
        compare_conv(2, 16, 16, [6, 6], 3, 1, 2, false, false);
        compare_conv(2, 3, 5, [4, 4], 4, 2, 1, true, false);
    }

    #[test]
    fn valid_output_ranges_stay_inside_the_input() {
        // Every output position whose tap lands inside the input, and no other.
        for (len, k, stride) in [(7, 3, 1), (8, 5, 2), (5, 7, 1), (6, 7, 2), (1, 3, 1)] {
            let pad = k / 2;
            let out = (len + 2 * pad - k) / stride + 1;
            for tap in 0..k {
                let expected: Vec<usize> = (0..out)
                    .filter(|&o| (0..len as isize).contains(&((o * stride + tap) as isize - pad as isize)))
                    .collect();
                assert_eq!(
                    valid(tap, stride, pad, len, out).collect::<Vec<_>>(),
                    expected,
                    "len {len} k {k} s {stride} tap {tap}"
                );
            }
        }
    }

    #[test]
    fn fused_ops_run_without_autodiff() {
        let x = Tensor::<4>::from_floats([[[[-4.0, -3.0, 0.0, 1.5, 3.0, 4.0]]]], &Device::flex());
        let y = hard_swish(x.clone()).into_data().to_vec::<f32>().unwrap();
        assert_eq!(y, vec![0.0, 0.0, 0.0, 1.125, 3.0, 4.0]);
        let s = hard_sigmoid(x).into_data().to_vec::<f32>().unwrap();
        assert_eq!(s, vec![0.0, 0.0, 0.5, 0.75, 1.0, 1.0]);
    }
}
