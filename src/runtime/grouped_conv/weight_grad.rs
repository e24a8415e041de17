//! The weight gradient of a grouped 2-D convolution (training's backward
//! pass; inference never needs it), on the forward kernel's phase planes.
//!
//! `dW[o][i][ky][kx] = Σ_n Σ_{y,x} g[n][o][y][x] · x_pad[n][i][s·y + ky][s·x + kx]`.
//! With an image's input planes copied into the forward kernel's phase planes
//! (see [`super::kernel`]), tap `t = (i, ky, kx)` reads the run
//! `phase[taps[t] + y·L + x]`; with the output gradient laid out `L` wide too,
//! zeros in the `L − W` dropped columns, every weight's gradient is one dot
//! product of length `oh·L`: `dw[o][t] = Σ_n ⟨g_n[o], phase_n[taps[t]..]⟩`.
//! The dots are taken for a block of `C` channels × 4 taps at a time, the
//! partial sums in vector registers, so that each vector of the gradient and
//! of the phase planes is loaded once per block. The partial sums stay
//! vectors across images (in memory between them) and their lanes are summed
//! once per group: per image, on small planes (a few vectors per dot), that
//! sum cost more than the dots. The dropped columns cost `(L − W)/L` of the
//! work, as in the forward kernel's column layout.

use super::kernel::simd::{self, Vector};
use super::kernel::{active_isa, fill_phase_planes, ConvGeometry, Isa};

/// Taps whose dots one block takes together.
const TAP_BLOCK: usize = 4;

/// The weight gradient of groups `first_group ..` into `dw`, which holds
/// exactly those groups' gradients (a whole number of them, each
/// `out_per_group × taps.len()` values in OIHW order), overwritten.
///
/// `input` is the convolution's whole NCHW input, `grad` the gradient of its
/// whole NCHW output, `taps` is `geo.tap_offsets()`.
pub fn weight_gradient_groups(
    geo: &ConvGeometry,
    taps: &[usize],
    input: &[f32],
    grad: &[f32],
    first_group: usize,
    dw: &mut [f32],
) {
    weight_gradient_with(active_isa(), geo, taps, input, grad, first_group, dw)
}

/// [`weight_gradient_groups`] on a given instruction set (which the CPU must have).
fn weight_gradient_with(
    isa: Isa,
    geo: &ConvGeometry,
    taps: &[usize],
    input: &[f32],
    grad: &[f32],
    first_group: usize,
    dw: &mut [f32],
) {
    let (ipg, opg) = (geo.in_per_group(), geo.out_per_group());
    assert_eq!(taps.len(), ipg * geo.kernel[0] * geo.kernel[1], "taps of {geo:?}");
    assert_eq!(input.len(), geo.input_len());
    assert_eq!(grad.len(), geo.output_len());
    let group_len = opg * taps.len();
    assert_eq!(dw.len() % group_len, 0, "whole groups");
    let in_planes = ipg * geo.input[0] * geo.input[1];
    let [oh, ow] = geo.output;
    let cols = geo.phase_cols();
    let ext = geo.extended_len().next_multiple_of(isa.lanes());
    // Zeroed: what lies past the phase planes is read only against zero
    // gradients (dropped columns, the last vector's tail) and must be finite.
    let reach = taps.iter().max().map_or(0, |&m| m + ext);
    let mut scratch = vec![0f32; geo.scratch_len().max(reach)];
    let mut line = Vec::new();
    // The gradient planes `L` wide; only the kept columns are ever written.
    let mut wide = vec![0f32; opg * ext];
    // Per weight, one vector of partial sums (room for the widest vector).
    let mut partial = vec![0f32; group_len * MAX_LANES];
    for (k, dw) in dw.chunks_exact_mut(group_len).enumerate() {
        partial.fill(0.0);
        let g = first_group + k;
        for b in 0..geo.batch {
            let first = (b * geo.in_channels + g * ipg) * geo.input[0] * geo.input[1];
            fill_phase_planes(isa, geo, &input[first..first + in_planes], &mut scratch, &mut line);
            let first = (b * geo.out_channels + g * opg) * oh * ow;
            for (src, dst) in grad[first..first + opg * oh * ow].chunks_exact(oh * ow).zip(wide.chunks_exact_mut(ext)) {
                for (y, row) in src.chunks_exact(ow).enumerate() {
                    dst[y * cols..y * cols + ow].copy_from_slice(row);
                }
            }
            dots(isa, Dots { scratch: &scratch, taps, wide: &wide, ext, partial: &mut partial });
        }
        for (d, lanes) in dw.iter_mut().zip(partial.chunks_exact(MAX_LANES)) {
            *d = lanes[..isa.lanes()].iter().sum();
        }
    }
}

/// The most f32 lanes of any [`Isa`]'s vector.
const MAX_LANES: usize = 16;

/// The slices of one image's [`dots`].
struct Dots<'a> {
    scratch: &'a [f32],
    taps: &'a [usize],
    /// One plane of `ext` values per output channel.
    wide: &'a [f32],
    ext: usize,
    /// Per channel and tap, [`MAX_LANES`] values of which the first `LANES` are partial sums.
    partial: &'a mut [f32],
}

/// `partial[o][t] += ⟨wide[o], scratch[taps[t] .. taps[t] + ext]⟩` for every
/// channel and tap, lane by lane (summed across lanes later).
fn dots(isa: Isa, a: Dots) {
    assert_eq!(a.ext % isa.lanes(), 0);
    assert_eq!(a.wide.len() * a.taps.len() * MAX_LANES, a.partial.len() * a.ext);
    let reach = a.taps.iter().max().map_or(0, |&m| m + a.ext);
    assert!(reach <= a.scratch.len(), "taps reach {reach} of {} scratch", a.scratch.len());
    // SAFETY: the asserts above bound every pointer the block loop forms, and
    // each variant runs only where `Isa::detect` found its instructions.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => dots_avx512(a),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => dots_avx2(a),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => channel_blocks::<simd::Neon, 4>(a),
            Isa::Portable => channel_blocks::<simd::Scalar4, 2>(a),
        }
    }
}

// Channels per block: 4 × 4 accumulators of AVX-512's 32 registers, 2 × 4 of AVX2's 16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn dots_avx512(a: Dots) {
    unsafe { channel_blocks::<simd::Avx512, 4>(a) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dots_avx2(a: Dots) {
    unsafe { channel_blocks::<simd::Avx2, 2>(a) }
}

/// Blocks of `C` channels, then single channels.
#[inline(always)]
unsafe fn channel_blocks<V: Vector, const C: usize>(a: Dots) {
    let channels = a.wide.len() / a.ext;
    let mut o = 0;
    while o < channels {
        unsafe {
            if channels - o >= C {
                tap_blocks::<V, C>(&a, o);
                o += C;
            } else {
                tap_blocks::<V, 1>(&a, o);
                o += 1;
            }
        }
    }
}

/// Blocks of [`TAP_BLOCK`] taps, then single taps, for channels `o .. o + C`.
#[inline(always)]
unsafe fn tap_blocks<V: Vector, const C: usize>(a: &Dots, o: usize) {
    let mut t = 0;
    while t < a.taps.len() {
        unsafe {
            if a.taps.len() - t >= TAP_BLOCK {
                block::<V, C, TAP_BLOCK>(a, o, t);
                t += TAP_BLOCK;
            } else {
                block::<V, C, 1>(a, o, t);
                t += 1;
            }
        }
    }
}

/// The `C × T` dots of channels `o ..` and taps `t ..`, added into `partial`.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // constant bounds keep the accumulators in registers
unsafe fn block<V: Vector, const C: usize, const T: usize>(a: &Dots, o: usize, t: usize) {
    let ntaps = a.taps.len();
    let (src, wide) = (a.scratch.as_ptr(), a.wide.as_ptr());
    let offsets: [usize; T] = std::array::from_fn(|j| a.taps[t + j]);
    unsafe {
        let mut acc = [[V::splat(0.0); T]; C];
        let mut p = 0;
        while p < a.ext {
            let mut g = [V::splat(0.0); C];
            for c in 0..C {
                g[c] = V::load(wide.add((o + c) * a.ext + p));
            }
            for j in 0..T {
                let x = V::load(src.add(offsets[j] + p));
                for c in 0..C {
                    acc[c][j] = acc[c][j].mul_add(g[c], x);
                }
            }
            p += V::LANES;
        }
        let partial = a.partial.as_ptr() as *mut f32;
        for c in 0..C {
            for j in 0..T {
                let at = partial.add(((o + c) * ntaps + t + j) * MAX_LANES);
                V::load(at).mul_add(acc[c][j], V::splat(1.0)).store(at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::kernel::tests::values;
    use super::*;

    /// The definition, in f64.
    fn reference(geo: &ConvGeometry, x: &[f32], g: &[f32]) -> Vec<f32> {
        let (ipg, opg) = (geo.in_per_group(), geo.out_per_group());
        let ([h, w], [oh, ow], [kh, kw], [sh, sw], [ph, pw]) =
            (geo.input, geo.output, geo.kernel, geo.stride, geo.pad_before);
        let mut dw = vec![0f64; geo.out_channels * ipg * kh * kw];
        for n in 0..geo.batch {
            for o in 0..geo.out_channels {
                for i in 0..ipg {
                    let c = o / opg * ipg + i;
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let mut s = 0f64;
                            for y in 0..oh {
                                for xx in 0..ow {
                                    let (iy, ix) = ((sh * y + ky).wrapping_sub(ph), (sw * xx + kx).wrapping_sub(pw));
                                    if iy < h && ix < w {
                                        s += g[((n * geo.out_channels + o) * oh + y) * ow + xx] as f64
                                            * x[((n * geo.in_channels + c) * h + iy) * w + ix] as f64;
                                    }
                                }
                            }
                            dw[((o * ipg + i) * kh + ky) * kw + kx] += s;
                        }
                    }
                }
            }
        }
        dw.into_iter().map(|v| v as f32).collect()
    }

    #[test]
    fn weight_gradient_matches_the_definition_on_every_isa() {
        // (in, out, groups, input, kernel, stride, pad): the max subnet's 16 per group at 7×7
        // (stride 1 and 2), 4 and 8 per group, the head's 5 → 8, planes narrower than the
        // kernel, a channel count that leaves single-channel blocks, taps not a multiple of 4.
        let cases = [
            (32, 32, 2, [9, 7], 7, 1, 3),
            (32, 32, 2, [10, 9], 7, 2, 3),
            (16, 16, 4, [6, 5], 5, 1, 2),
            (16, 16, 2, [7, 8], 3, 2, 1),
            (10, 16, 2, [5, 4], 3, 1, 1),
            (6, 6, 2, [2, 3], 7, 1, 3),
            (9, 9, 3, [5, 5], 3, 1, 1),
        ];
        for isa in Isa::available() {
            for (n, &(cin, cout, groups, input, k, s, p)) in cases.iter().enumerate() {
                let output = [(input[0] + 2 * p - k) / s + 1, (input[1] + 2 * p - k) / s + 1];
                let geo = ConvGeometry {
                    batch: 2,
                    in_channels: cin,
                    out_channels: cout,
                    groups,
                    input,
                    kernel: [k, k],
                    stride: [s, s],
                    pad_before: [p, p],
                    output,
                };
                let x = values(geo.input_len(), 1 + n as u32);
                let g = values(geo.output_len(), 50 + n as u32);
                let mut dw = vec![f32::NAN; cout * (cin / groups) * k * k];
                let half = dw.len() / groups * (groups / 2).max(1);
                let taps = geo.tap_offsets();
                // In two calls where there are several groups, as the callers split them.
                let (a, b) = dw.split_at_mut(half);
                weight_gradient_with(isa, &geo, &taps, &x, &g, 0, a);
                if !b.is_empty() {
                    weight_gradient_with(isa, &geo, &taps, &x, &g, (groups / 2).max(1), b);
                }
                let want = reference(&geo, &x, &g);
                let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
                let worst = dw.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                assert!(worst <= 1e-5 * scale, "{} case {n} {geo:?}: off by {worst} of {scale}", isa.name());
            }
        }
    }
}
