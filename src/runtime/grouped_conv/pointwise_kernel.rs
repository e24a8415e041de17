//! The arithmetic of a pointwise (1×1, stride 1, one group) convolution over
//! an f32 NCHW input, with no tract types.
//!
//! tract runs these as matrix products whose packing, tile stores and fused
//! epilogue cost more than the arithmetic on our shapes (few input channels,
//! large planes: 16→96 channels over 128×96 pixels runs ~10 GMAC/s there).
//! Here each input channel's plane is already a contiguous row, so no packing
//! is needed: a tile of `C` output channels × `N` vectors of pixels is held in
//! registers across every input channel (`N` vector loads and `C` broadcast
//! weights per input channel), then stored straight into the output planes,
//! clamped where a ReLU was folded in. The weights are packed once, per tile
//! and input-major, so a tile streams its weights in order.

use std::cell::RefCell;

#[cfg(target_arch = "aarch64")]
use super::kernel::simd::Neon;
use super::kernel::simd::Scalar4;
use super::kernel::simd::Vector;
#[cfg(target_arch = "x86_64")]
use super::kernel::simd::{Avx2, Avx512};
use super::kernel::{Clamp, Isa};

/// Shape of one pointwise convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PointwiseGeometry {
    pub batch: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    /// Pixels of one plane (height × width, unchanged by the convolution).
    pub pixels: usize,
}

impl PointwiseGeometry {
    pub fn input_len(&self) -> usize {
        self.batch * self.in_channels * self.pixels
    }

    pub fn output_len(&self) -> usize {
        self.batch * self.out_channels * self.pixels
    }

    pub fn macs(&self) -> usize {
        self.output_len() * self.in_channels
    }
}

/// Output channels computed together on `isa` (one register tile's rows: the
/// `C` that [`convolve_planes`] instantiates for it); the weights are packed
/// for it by [`pack_weights`].
pub fn tile_channels(isa: Isa) -> usize {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => 8,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => 4,
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => 8,
        Isa::Portable => 4,
    }
}

/// An OI (1×1) kernel packed for `isa`: per tile of [`tile_channels`] output
/// channels, input-major (`[in][channel in tile]`), so a tile streams its
/// weights in order; the channels after the last whole tile one by one
/// (`[in]`). Same length; channel `o`'s tile starts at `o · in_channels`.
pub fn pack_weights(isa: Isa, geo: &PointwiseGeometry, oi: &[f32]) -> Vec<f32> {
    let (k, m, c) = (geo.in_channels, geo.out_channels, tile_channels(isa));
    assert_eq!(oi.len(), k * m);
    let whole = m / c * c;
    let mut packed = vec![0.0; oi.len()];
    for o in 0..m {
        let (tile, width) = if o < whole { (o / c * c, c) } else { (o, 1) };
        for i in 0..k {
            packed[tile * k + i * width + o - tile] = oi[o * k + i];
        }
    }
    packed
}

/// Computes output channels `first ..` of one batch item (`input` is its
/// planes) into `out`, which holds a whole number of planes; `first` starts a
/// tile unless it lies after the last whole one, and the run ends at a tile's
/// end or at the last channel. `packed` is as [`pack_weights`] lays it out for
/// `isa`; every output is clamped.
#[allow(clippy::too_many_arguments)]
pub fn convolve_planes(
    isa: Isa,
    geo: &PointwiseGeometry,
    input: &[f32],
    packed: &[f32],
    bias: &[f32],
    clamp: Clamp,
    first: usize,
    out: &mut [f32],
) {
    let (k, m, p) = (geo.in_channels, geo.out_channels, geo.pixels);
    let c = tile_channels(isa);
    let whole = m / c * c;
    assert_eq!(input.len(), k * p);
    assert_eq!(packed.len(), k * m);
    assert_eq!(bias.len(), m);
    assert_eq!(out.len() % p, 0);
    let last = first + out.len() / p;
    assert!(last <= m && (first >= whole || first % c == 0) && (last >= whole || last % c == 0));
    let a = Args { geo, x: input, packed, bias, clamp, first, channels: last - first };
    // SAFETY: the asserts above bound every pointer the tile loops form, and
    // each variant runs only where `Isa::detect` found its instructions.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => planes_avx512(a, out),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => planes_avx2(a, out),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => planes::<Neon, 8, 3>(a, out),
            Isa::Portable => planes::<Scalar4, 4, 2>(a, out),
        }
    }
}

/// One batch item's run of output channels `first .. first + channels`.
struct Args<'a> {
    geo: &'a PointwiseGeometry,
    /// The batch item's input planes.
    x: &'a [f32],
    packed: &'a [f32],
    bias: &'a [f32],
    clamp: Clamp,
    first: usize,
    channels: usize,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn planes_avx512(a: Args, out: &mut [f32]) {
    // 24 of the 32 zmm registers accumulate; 3 hold the loads, 1 the weight.
    unsafe { planes::<Avx512, 8, 3>(a, out) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn planes_avx2(a: Args, out: &mut [f32]) {
    // 8 of the 16 ymm registers accumulate.
    unsafe { planes::<Avx2, 4, 2>(a, out) }
}

/// Output channels in tiles of `C` (those after the last whole tile one at a
/// time), pixels in tiles of `N` vectors, then of one vector; the last pixels
/// (fewer than a vector) through a zero-padded copy one vector wide. Planes
/// narrower than a vector (a squeeze-excitation's 1×1) take a plain loop.
#[inline(always)]
unsafe fn planes<V: Vector, const C: usize, const N: usize>(a: Args, out: &mut [f32]) {
    let (k, p) = (a.geo.in_channels, a.geo.pixels);
    if p < V::LANES {
        return narrow_planes::<C>(&a, out);
    }
    let channels = a.channels;
    let wide = p / (N * V::LANES) * (N * V::LANES);
    let vectors = p / V::LANES * V::LANES;
    // SAFETY: the input has `k` rows of `p`, the output `channels` rows of `p`.
    unsafe {
        channels_over::<V, C, N>(&a, a.x.as_ptr(), p, out.as_mut_ptr(), p, wide);
        channels_over::<V, C, 1>(&a, a.x.as_ptr().add(wide), p, out.as_mut_ptr().add(wide), p, vectors - wide);
    }
    if vectors < p {
        // Out of the thread-local and back: the work must not run in a
        // closure, which would not inherit the caller's instruction set.
        let (mut xs, mut outs) = TAIL.with_borrow_mut(std::mem::take);
        let width = V::LANES;
        xs.clear();
        for i in 0..k {
            xs.extend_from_slice(&a.x[i * p + vectors..(i + 1) * p]);
            xs.resize((i + 1) * width, 0.0);
        }
        outs.resize(channels * width, 0.0);
        // SAFETY: `xs` has `k` rows of `width`, `outs` `channels` rows of `width`.
        unsafe { channels_over::<V, C, 1>(&a, xs.as_ptr(), width, outs.as_mut_ptr(), width, width) };
        for (c, row) in outs.chunks_exact(width).take(channels).enumerate() {
            out[c * p + vectors..(c + 1) * p].copy_from_slice(&row[..p - vectors]);
        }
        TAIL.set((xs, outs));
    }
}

/// Planes of fewer pixels than a vector: per pixel, the tile's `C` channels
/// side by side (the packed weights' order), which the compiler vectorises.
#[inline(always)]
fn narrow_planes<const C: usize>(a: &Args, out: &mut [f32]) {
    let whole = a.geo.out_channels / C * C;
    let mut c = 0;
    while c < a.channels {
        if a.first + c < whole {
            narrow_tile::<C>(a, c, out);
            c += C;
        } else {
            narrow_tile::<1>(a, c, out);
            c += 1;
        }
    }
}

/// Channels `c .. c + W` of the run, every pixel, as [`narrow_planes`] says.
#[inline(always)]
fn narrow_tile<const W: usize>(a: &Args, c: usize, out: &mut [f32]) {
    let (k, p) = (a.geo.in_channels, a.geo.pixels);
    let o = a.first + c;
    let w = &a.packed[o * k..o * k + k * W];
    for t in 0..p {
        let mut acc = [0f32; W];
        acc.copy_from_slice(&a.bias[o..o + W]);
        for (i, wi) in w.chunks_exact(W).enumerate() {
            let x = a.x[i * p + t];
            for j in 0..W {
                acc[j] += wi[j] * x;
            }
        }
        for (j, &v) in acc.iter().enumerate() {
            out[(c + j) * p + t] = a.clamp.apply(v);
        }
    }
}

/// Every channel of the run over `pixels` pixels of `x` (`k` rows of `x_row`)
/// into `dst` (one row of `dst_row` per channel of the run). A function, not a
/// closure: a closure would not inherit the caller's instruction set.
#[inline(always)]
unsafe fn channels_over<V: Vector, const C: usize, const N: usize>(
    a: &Args,
    x: *const f32,
    x_row: usize,
    dst: *mut f32,
    dst_row: usize,
    pixels: usize,
) {
    let k = a.geo.in_channels;
    let whole = a.geo.out_channels / C * C;
    let mut c = 0;
    while c < a.channels {
        let o = a.first + c;
        let w = Weights { packed: &a.packed[o * k..], bias: &a.bias[o..], clamp: a.clamp };
        unsafe {
            if o < whole {
                channel_tile::<V, C, N>(x, x_row, k, &w, dst.add(c * dst_row), dst_row, pixels);
                c += C;
            } else {
                channel_tile::<V, 1, N>(x, x_row, k, &w, dst.add(c * dst_row), dst_row, pixels);
                c += 1;
            }
        }
    }
}

thread_local! {
    /// Per-thread padded copies of the last pixels (inputs, outputs), reused across runs.
    static TAIL: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// A tile's packed weights (`packed[i · C + c]`), its channels' biases and
/// the clamp of its outputs.
struct Weights<'a> {
    packed: &'a [f32],
    bias: &'a [f32],
    clamp: Clamp,
}

/// `C` output planes (rows `dst_row` apart) over `pixels` pixels (a multiple
/// of `N` vectors) from `k` input planes (rows `x_row` apart).
#[inline(always)]
#[allow(clippy::needless_range_loop)] // constant bounds keep the accumulators in registers
unsafe fn channel_tile<V: Vector, const C: usize, const N: usize>(
    x: *const f32,
    x_row: usize,
    k: usize,
    w: &Weights,
    dst: *mut f32,
    dst_row: usize,
    pixels: usize,
) {
    assert!(w.packed.len() >= k * C && w.bias.len() >= C);
    let weights = w.packed.as_ptr();
    let mut t = 0;
    unsafe {
        let (lo, hi) = (V::splat(w.clamp.lo), V::splat(w.clamp.hi));
        while t < pixels {
            let mut acc = [[V::splat(0.0); N]; C];
            for c in 0..C {
                acc[c] = [V::splat(w.bias[c]); N];
            }
            for i in 0..k {
                let src = x.add(i * x_row + t);
                let mut v = [V::splat(0.0); N];
                for n in 0..N {
                    v[n] = V::load(src.add(n * V::LANES));
                }
                for c in 0..C {
                    let wc = V::splat(*weights.add(i * C + c));
                    for n in 0..N {
                        acc[c][n] = acc[c][n].mul_add(v[n], wc);
                    }
                }
            }
            for c in 0..C {
                for n in 0..N {
                    acc[c][n].clamp(lo, hi).store(dst.add(c * dst_row + t + n * V::LANES));
                }
            }
            t += N * V::LANES;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::kernel::tests::values;
    use super::*;

    fn reference(geo: &PointwiseGeometry, x: &[f32], oi: &[f32], bias: &[f32]) -> Vec<f32> {
        let p = geo.pixels;
        let mut out = vec![0.0; geo.output_len()];
        for b in 0..geo.batch {
            for o in 0..geo.out_channels {
                for t in 0..p {
                    let mut s = bias[o] as f64;
                    for i in 0..geo.in_channels {
                        s += oi[o * geo.in_channels + i] as f64 * x[(b * geo.in_channels + i) * p + t] as f64;
                    }
                    out[(b * geo.out_channels + o) * p + t] = s as f32;
                }
            }
        }
        out
    }

    fn check(geo: PointwiseGeometry) {
        check_clamped(geo, Clamp::NONE);
    }

    fn check_clamped(geo: PointwiseGeometry, clamp: Clamp) {
        let x = values(geo.input_len(), 1);
        let oi = values(geo.in_channels * geo.out_channels, 2);
        let bias = values(geo.out_channels, 3);
        let want: Vec<f32> = reference(&geo, &x, &oi, &bias).into_iter().map(|v| clamp.apply(v)).collect();
        let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
        for isa in Isa::available() {
            let mut got = vec![f32::NAN; geo.output_len()];
            convolve(isa, &geo, &x, &pack_weights(isa, &geo, &oi), &bias, clamp, &mut got);
            let worst = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(worst <= 1e-6 * scale, "{} {geo:?}: max |diff| {worst} at scale {scale}", isa.name());
        }
    }

    #[test]
    fn matches_the_textbook_loop_for_tile_and_tail_shapes() {
        for (i, o) in [(1, 1), (3, 8), (16, 72), (24, 17), (7, 9), (160, 33)] {
            for pixels in [1, 5, 16, 47, 48, 100, 3072] {
                check(PointwiseGeometry { batch: 1, in_channels: i, out_channels: o, pixels });
            }
        }
        check(PointwiseGeometry { batch: 3, in_channels: 5, out_channels: 11, pixels: 37 });
    }

    #[test]
    fn a_folded_relu6_clamps_every_output_tail_included() {
        let relu6 = Clamp::NONE.at_least(0.0).at_most(0.3);
        for pixels in [48, 53] {
            check_clamped(PointwiseGeometry { batch: 1, in_channels: 9, out_channels: 19, pixels }, relu6);
        }
    }

    /// Every batch item, split at the tiles as the op splits them across
    /// threads: a run of whole tiles, then each channel after them alone.
    fn convolve(
        isa: Isa,
        geo: &PointwiseGeometry,
        x: &[f32],
        packed: &[f32],
        bias: &[f32],
        clamp: Clamp,
        out: &mut [f32],
    ) {
        let (k, m, p) = (geo.in_channels, geo.out_channels, geo.pixels);
        let whole = m / tile_channels(isa) * tile_channels(isa);
        for (b, out) in out.chunks_exact_mut(m * p).enumerate() {
            let x = &x[b * k * p..(b + 1) * k * p];
            let (tiles, rest) = out.split_at_mut(whole * p);
            for (t, tile) in tiles.chunks_exact_mut(tile_channels(isa) * p).enumerate() {
                convolve_planes(isa, geo, x, packed, bias, clamp, t * tile_channels(isa), tile);
            }
            for (j, plane) in rest.chunks_exact_mut(p).enumerate() {
                convolve_planes(isa, geo, x, packed, bias, clamp, whole + j, plane);
            }
        }
    }

    #[test]
    fn a_run_of_channels_that_does_not_start_a_tile_is_refused() {
        let geo = PointwiseGeometry { batch: 1, in_channels: 2, out_channels: 16, pixels: 4 };
        let isa = Isa::detect();
        let r = std::panic::catch_unwind(|| {
            let mut out = vec![0.0; 4];
            convolve_planes(isa, &geo, &[0.0; 8], &[0.0; 32], &[0.0; 16], Clamp::NONE, 1, &mut out);
        });
        assert!(r.is_err());
    }
}
