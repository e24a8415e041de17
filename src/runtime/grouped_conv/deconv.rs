//! A grouped transposed convolution (the heads' `ConvTranspose`) as
//! stride-1 grouped convolutions, one per output phase.
//!
//! A transposed convolution with stride `s` scatters each input pixel through
//! the kernel onto the output. Read from the output side instead, output row
//! `s·i + r` (phase `r`) receives only the kernel rows `t` with
//! `t ≡ r + pad_before (mod s)`, from input row `i + (r + pad_before − t)/s`:
//! a stride-1 correlation of the input with a `⌈k/s⌉`-tap sub-kernel. So the
//! `s_h·s_w` phases are ordinary stride-1 grouped convolutions, run by
//! [`GroupedConv`]'s kernel, and the output interleaves their planes. tract
//! lowers a grouped `Deconv` to an outer product followed by a scatter-add
//! (`DepthwiseDeconv`, `DeconvSum`), several times slower on our heads.
//! Training uses the same phases ([`phases`], [`spread`]) for the input
//! gradient of a grouped convolution, which is a transposed convolution.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::Deconv;

use super::kernel::{Clamp, ConvGeometry};
use super::{covered, eval_f32, GroupedConv};

/// One output phase of a transposed convolution: a stride-1 grouped
/// convolution, its geometry and OIHW sub-kernel, whose outputs are the
/// positions `[s_h·i + r_h, s_w·j + r_w]` of phase `(r_h, r_w)`.
pub struct Phase {
    pub geo: ConvGeometry,
    pub kernel: Vec<f32>,
}

/// The phases of the transposed convolution `geo` (`pad_before` and `output`
/// as for a transposed convolution), row-major over `(r_h, r_w)`. `kernel` is
/// `[out][in_per_group][kh][kw]` (ONNX's `[in][out_per_group][kh][kw]`
/// regrouped).
pub fn phases(geo: &ConvGeometry, kernel: &[f32]) -> Result<Vec<Phase>, String> {
    let (ipg, out_ch) = (geo.in_per_group(), geo.out_channels);
    let [kh, kw] = geo.kernel;
    let [sh, sw] = geo.stride;
    if kernel.len() != out_ch * ipg * kh * kw {
        return Err(format!("kernel has {} values, expected {}", kernel.len(), out_ch * ipg * kh * kw));
    }
    // Per axis and phase: the first input offset `d_min` and the taps, in
    // the order the correlation reads them (input offset ascending).
    let axis = |k: usize, s: usize, pad: usize, r: usize| -> Result<(usize, Vec<usize>), String> {
        let taps: Vec<usize> = (0..k).rev().filter(|t| (r + pad + s * k - t) % s == 0).collect();
        let d_min = taps.first().map_or(0, |&t| (r + pad) as isize - t as isize) / s as isize;
        if d_min > 0 {
            return Err(format!("padding {pad} above kernel {k} − stride {s}"));
        }
        Ok(((-d_min) as usize, taps))
    };
    let mut phases = Vec::with_capacity(sh * sw);
    for rh in 0..sh {
        for rw in 0..sw {
            let (ph, rows) = axis(kh, sh, geo.pad_before[0], rh)?;
            let (pw, cols) = axis(kw, sw, geo.pad_before[1], rw)?;
            let out = [geo.output[0].saturating_sub(rh).div_ceil(sh), geo.output[1].saturating_sub(rw).div_ceil(sw)];
            if rows.is_empty() || cols.is_empty() || out.contains(&0) {
                return Err(format!("phase ({rh}, {rw}) has no taps or no outputs"));
            }
            let mut sub = Vec::with_capacity(out_ch * ipg * rows.len() * cols.len());
            for o in 0..out_ch {
                for i in 0..ipg {
                    for &t in &rows {
                        for &u in &cols {
                            sub.push(kernel[((o * ipg + i) * kh + t) * kw + u]);
                        }
                    }
                }
            }
            let geo = ConvGeometry {
                kernel: [rows.len(), cols.len()],
                stride: [1, 1],
                pad_before: [ph, pw],
                output: out,
                ..geo.clone()
            };
            phases.push(Phase { geo, kernel: sub });
        }
    }
    Ok(phases)
}

/// Spreads the output planes `src` of phase `p` (of a transposed convolution
/// with `stride` and `output` planes) into their positions of `out`.
pub fn spread(
    stride: [usize; 2],
    output: [usize; 2],
    p: usize,
    phase_output: [usize; 2],
    src: &[f32],
    out: &mut [f32],
) {
    let [sh, sw] = stride;
    let [oh, ow] = output;
    let (rh, rw) = (p / sw, p % sw);
    let [ph, pw] = phase_output;
    for (plane, src) in src.chunks_exact(ph * pw).enumerate() {
        let dst = &mut out[plane * oh * ow..][..oh * ow];
        for (i, row) in src.chunks_exact(pw).enumerate() {
            let dst_row = &mut dst[(sh * i + rh) * ow..][..ow];
            for (j, &v) in row.iter().enumerate() {
                dst_row[sw * j + rw] = v;
            }
        }
    }
}

/// A grouped 2-D transposed convolution over an f32 NCHW input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupedDeconv {
    /// One stride-1 convolution per output phase, row-major over `(r_h, r_w)`;
    /// phase `(r_h, r_w)` makes the outputs `[s_h·i + r_h, s_w·j + r_w]`.
    phases: Vec<GroupedConv>,
    stride: [usize; 2],
    /// Output height, width.
    output: [usize; 2],
    batch: usize,
    channels: usize,
    batch_axis: bool,
}

impl GroupedDeconv {
    /// `geo` describes the transposed convolution (`pad_before` and `output` as
    /// tract computes them for it); `kernel` is as tract's `Deconv` holds it,
    /// `[out][in_per_group][kh][kw]` (ONNX's `[in][out_per_group][kh][kw]`
    /// regrouped), `bias` one per output channel.
    pub fn new(geo: &ConvGeometry, kernel: &[f32], bias: &[f32], batch_axis: bool) -> Result<GroupedDeconv, String> {
        let phases = phases(geo, kernel)?
            .into_iter()
            .map(|p| GroupedConv::new(p.geo, p.kernel, bias.to_vec(), true).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        Ok(GroupedDeconv {
            phases,
            stride: geo.stride,
            output: geo.output,
            batch: geo.batch,
            channels: geo.out_channels,
            batch_axis,
        })
    }

    fn output_shape(&self) -> TVec<usize> {
        super::output_shape(self.batch_axis, self.batch, self.channels, self.output)
    }

    /// The same transposed convolution with its outputs clamped to `clamp` too.
    pub fn clamped(&self, clamp: Clamp) -> GroupedDeconv {
        GroupedDeconv { phases: self.phases.iter().map(|p| p.clamped(clamp)).collect(), ..self.clone() }
    }

    pub fn clamp(&self) -> Clamp {
        self.phases[0].clamp()
    }
}

impl Op for GroupedDeconv {
    fn name(&self) -> StaticName {
        "VipnasGroupedDeconv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let g = self.phases[0].geometry();
        Ok(vec![format!(
            "stride {:?}, {} phases of {:?} taps, {} groups of {}→{}",
            self.stride,
            self.phases.len(),
            g.kernel,
            g.groups,
            g.in_per_group(),
            g.out_per_group()
        )])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for GroupedDeconv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        // The phases between them write every output value once (each output
        // position belongs to exactly one phase).
        let input_len = self.phases[0].geometry().input_len();
        eval_f32(self, inputs, input_len, &self.output_shape(), |x, out| {
            PHASE.with_borrow_mut(|scratch| self.interleave(x, out, scratch))
        })
    }
}

thread_local! {
    /// One phase's output, reused across runs.
    static PHASE: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl GroupedDeconv {
    /// Each phase convolved into `scratch`, then spread into its positions of `out`.
    fn interleave(&self, x: &[f32], out: &mut [f32], scratch: &mut Vec<f32>) -> TractResult<()> {
        for (p, phase) in self.phases.iter().enumerate() {
            let g = phase.geometry();
            scratch.resize(g.output_len(), 0.0);
            phase.convolve(x, scratch)?;
            spread(self.stride, self.output, p, g.output, scratch, out);
        }
        Ok(())
    }
}

impl TypedOp for GroupedDeconv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1 && inputs[0].datum_type == f32::datum_type());
        Ok(tvec!(f32::fact(self.output_shape())))
    }

    fn cost(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let macs: usize = self.phases.iter().map(|p| p.geometry().macs()).sum();
        Ok(tvec!((Cost::FMA(f32::datum_type()), macs.to_dim())))
    }

    as_op!();
}

/// The [`GroupedDeconv`] for a `Deconv` node, or why it is not covered.
pub(super) fn plan(model: &TypedModel, node: &TypedNode, deconv: &Deconv) -> Result<GroupedDeconv, String> {
    let spec = &deconv.pool_spec;
    let c = covered(model, node, spec, deconv.kernel_format, deconv.group, super::MAX_IN_PER_GROUP, false)?;
    let dims = spec
        .padding
        .compute_for_deconv(&c.input, &spec.kernel_shape, &spec.dilations(), &spec.strides(), &deconv.adjustments)
        .map_err(|e| e.to_string())?;
    let geo = c.geometry(
        spec,
        deconv.group,
        [dims[0].pad_before, dims[1].pad_before],
        [dims[0].deconvoluted, dims[1].deconvoluted],
    );
    GroupedDeconv::new(&geo, &c.kernel, &c.bias, c.batch_axis)
}

#[cfg(test)]
mod tests {
    use super::super::kernel::tests::values;
    use super::*;

    /// The textbook scatter: every input pixel through the kernel onto the output, in f64.
    fn reference(geo: &ConvGeometry, x: &[f32], k: &[f32], bias: &[f32]) -> Vec<f32> {
        let (ipg, opg) = (geo.in_per_group(), geo.out_per_group());
        let ([h, w], [oh, ow], [kh, kw], [sh, sw], [ph, pw]) =
            (geo.input, geo.output, geo.kernel, geo.stride, geo.pad_before);
        let mut out = vec![0f64; geo.batch * geo.out_channels * oh * ow];
        for n in 0..geo.batch {
            for o in 0..geo.out_channels {
                let plane = &mut out[(n * geo.out_channels + o) * oh * ow..][..oh * ow];
                plane.iter_mut().for_each(|v| *v = bias[o] as f64);
                let g = o / opg;
                for i in 0..ipg {
                    let xin = &x[(n * geo.in_channels + g * ipg + i) * h * w..][..h * w];
                    for y in 0..h {
                        for xx in 0..w {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let (oy, ox) =
                                        ((sh * y + ky) as isize - ph as isize, (sw * xx + kx) as isize - pw as isize);
                                    if oy < 0 || ox < 0 || oy as usize >= oh || ox as usize >= ow {
                                        continue;
                                    }
                                    plane[oy as usize * ow + ox as usize] +=
                                        xin[y * w + xx] as f64 * k[((o * ipg + i) * kh + ky) * kw + kx] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        out.into_iter().map(|v| v as f32).collect()
    }

    #[test]
    fn phases_match_the_scatter_definition() {
        // (in, out, groups, input, kernel, stride, pad_before, output): the heads' k4 s2 p1
        // (depthwise and 8 per group), odd kernels with an output adjustment, stride 1 and 3.
        let cases = [
            (16, 16, 16, [6, 5], [4, 4], [2, 2], [1, 1], [12, 10]),
            (32, 16, 4, [4, 3], [4, 4], [2, 2], [1, 1], [8, 6]),
            (8, 8, 8, [5, 4], [3, 3], [2, 2], [1, 1], [10, 8]),
            (4, 8, 2, [3, 3], [2, 2], [2, 2], [0, 0], [6, 6]),
            (6, 6, 3, [5, 6], [3, 5], [1, 1], [1, 2], [5, 6]),
            (4, 4, 4, [3, 2], [5, 3], [3, 2], [2, 0], [9, 5]),
        ];
        for (n, &(cin, cout, groups, input, kernel, stride, pad_before, output)) in cases.iter().enumerate() {
            let geo = ConvGeometry {
                batch: 2,
                in_channels: cin,
                out_channels: cout,
                groups,
                input,
                kernel,
                stride,
                pad_before,
                output,
            };
            let x = values(geo.input_len(), 1 + n as u32);
            let k = values(cout * (cin / groups) * kernel[0] * kernel[1], 100 + n as u32);
            let b = values(cout, 200 + n as u32);
            let op = GroupedDeconv::new(&geo, &k, &b, true).unwrap();
            let mut out = vec![f32::NAN; geo.output_len()];
            op.interleave(&x, &mut out, &mut Vec::new()).unwrap();
            let want = reference(&geo, &x, &k, &b);
            let worst = out.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-5, "case {n} {geo:?}: off by {worst}");
        }
    }

    #[test]
    fn padding_beyond_the_kernel_reach_is_left_to_tract() {
        let geo = ConvGeometry {
            batch: 1,
            in_channels: 4,
            out_channels: 4,
            groups: 4,
            input: [4, 4],
            kernel: [2, 2],
            stride: [2, 2],
            pad_before: [2, 2],
            output: [4, 4],
        };
        let e = GroupedDeconv::new(&geo, &[0.0; 16], &[0.0; 4], true).unwrap_err();
        assert_eq!(e, "padding 2 above kernel 2 − stride 2");
    }
}
