//! The arithmetic of a grouped 2-D convolution (depthwise is the case of one
//! input and one output channel per group), f32, NCHW, with no tract types.
//!
//! Why it is fast where a direct loop is not: each group's input planes are
//! first copied, zero-padded, into *phase planes* — one per (row, column)
//! remainder of the stride — so that every kernel tap reads a contiguous run
//! of one phase plane, for stride 1 and 2 alike. An output row is then
//! computed `L` wide (the phase plane's width, a few columns wider than the
//! output), rows laid end to end, which turns the whole output plane into one
//! 1-D sequence: `out[t] = bias + Σ_tap w_tap · phase[offset_tap + t]`. That
//! sum is done a block of `B` outputs at a time, the block held in registers
//! across all taps, one broadcast weight and one vector load per tap and
//! vector. The extra `L − W` columns are computed and dropped (≤ k−1 per row).
//!
//! A group of exactly 16 output channels is computed the other way round
//! ([`lanes_layout`]): its channels in the vector lanes, a tile of positions
//! of one row in registers, one broadcast input value per tap — so that only
//! kept outputs are computed, which on small planes is most of the saving.
//!
//! The block loop is one generic function over a 4-operation vector type,
//! instantiated with `std::arch` intrinsics for AVX-512 and AVX2+FMA on x86_64
//! (chosen at run time) and NEON on aarch64 (part of the baseline), and with
//! plain `[f32; 4]` arithmetic as the portable fallback. The accumulators are
//! arrays of vectors with constant bounds, which the compiler keeps in
//! registers (auto-vectorised loops spilled them: 10× slower). Fused
//! multiply-add rounds once where tract's own op rounds twice: results agree
//! to ~1e-6 relative, not bit for bit (the portable loop rounds twice).

use std::cell::RefCell;

/// Shape of one grouped convolution over an NCHW input.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConvGeometry {
    pub batch: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub groups: usize,
    /// Input height, width.
    pub input: [usize; 2],
    /// Kernel height, width.
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// Zero rows above and columns left of the input.
    pub pad_before: [usize; 2],
    /// Output height, width.
    pub output: [usize; 2],
}

impl ConvGeometry {
    pub fn in_per_group(&self) -> usize {
        self.in_channels / self.groups
    }

    pub fn out_per_group(&self) -> usize {
        self.out_channels / self.groups
    }

    /// Phase-plane rows: enough for the last output row's lowest tap.
    fn phase_rows(&self) -> usize {
        self.output[0] - 1 + self.kernel[0].div_ceil(self.stride[0])
    }

    /// Phase-plane width `L`: the output width plus the kernel's reach.
    pub(super) fn phase_cols(&self) -> usize {
        self.output[1] - 1 + self.kernel[1].div_ceil(self.stride[1])
    }

    fn phase_plane_len(&self) -> usize {
        self.phase_rows() * self.phase_cols()
    }

    /// Outputs of one plane in the `L`-wide layout.
    pub(super) fn extended_len(&self) -> usize {
        self.output[0] * self.phase_cols()
    }

    /// Elements of the scratch holding one group's phase planes, with room
    /// for the last block's overrun: the block's padding past the plane's
    /// outputs and the kernel's reach past the last phase plane's end.
    pub(super) fn scratch_len(&self) -> usize {
        self.in_per_group() * self.stride[0] * self.stride[1] * self.phase_plane_len() + MAX_BLOCK + self.kernel[1]
    }

    /// Where each tap of a group's kernel reads, relative to the group's
    /// scratch, in the kernel's own `[in_per_group][kh][kw]` order.
    pub fn tap_offsets(&self) -> Vec<usize> {
        let [sh, sw] = self.stride;
        let (plane, cols) = (self.phase_plane_len(), self.phase_cols());
        let mut v = Vec::with_capacity(self.in_per_group() * self.kernel[0] * self.kernel[1]);
        for i in 0..self.in_per_group() {
            for ky in 0..self.kernel[0] {
                for kx in 0..self.kernel[1] {
                    let phase = (ky % sh) * sw + kx % sw;
                    v.push((i * sh * sw + phase) * plane + (ky / sh) * cols + kx / sw);
                }
            }
        }
        v
    }

    /// Input and output lengths.
    pub fn input_len(&self) -> usize {
        self.batch * self.in_channels * self.input[0] * self.input[1]
    }

    pub fn output_len(&self) -> usize {
        self.batch * self.out_channels * self.output[0] * self.output[1]
    }

    /// Multiply-adds of one run.
    pub fn macs(&self) -> usize {
        self.output_len() * self.in_per_group() * self.kernel[0] * self.kernel[1]
    }
}

/// Bounds every output is clamped to as it is stored: how a ReLU or ReLU6
/// after a convolution is folded into it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Clamp {
    pub lo: f32,
    pub hi: f32,
}

impl Clamp {
    /// No bounds.
    pub const NONE: Clamp = Clamp { lo: f32::NEG_INFINITY, hi: f32::INFINITY };

    /// Within `self` and `max(·, lo)` too.
    pub fn at_least(self, lo: f32) -> Clamp {
        Clamp { lo: self.lo.max(lo), hi: self.hi.max(lo) }
    }

    /// Within `self` and `min(·, hi)` too.
    pub fn at_most(self, hi: f32) -> Clamp {
        Clamp { lo: self.lo.min(hi), hi: self.hi.min(hi) }
    }

    pub fn apply(self, v: f32) -> f32 {
        v.max(self.lo).min(self.hi)
    }
}

/// The widest block any variant uses (outputs held in registers).
const MAX_BLOCK: usize = 128;

/// Output channels computed together where a group has several: they share
/// every input load.
const CHANNEL_BLOCK: usize = 4;

/// Computes groups `first_group ..` of the convolution into `out`, which holds
/// the outputs of exactly those groups (a whole number of them, NCHW order,
/// batch-major: group index `b * groups + g`).
///
/// `packed` is the kernel as [`pack_kernel`] lays it out, `bias` one value
/// per output channel, `taps` is `geo.tap_offsets()`; every output is clamped.
#[allow(clippy::too_many_arguments)]
pub fn convolve_groups(
    geo: &ConvGeometry,
    taps: &[usize],
    input: &[f32],
    packed: &[f32],
    bias: &[f32],
    clamp: Clamp,
    first_group: usize,
    out: &mut [f32],
) {
    convolve_groups_with(active_isa(), geo, taps, input, packed, bias, clamp, first_group, out)
}

/// [`convolve_groups`] on a given instruction set (which the CPU must have).
#[allow(clippy::too_many_arguments)]
fn convolve_groups_with(
    isa: Isa,
    geo: &ConvGeometry,
    taps: &[usize],
    input: &[f32],
    packed: &[f32],
    bias: &[f32],
    clamp: Clamp,
    first_group: usize,
    out: &mut [f32],
) {
    let (ipg, opg) = (geo.in_per_group(), geo.out_per_group());
    let [h, w] = geo.input;
    let [oh, ow] = geo.output;
    let in_plane = h * w;
    let out_plane = oh * ow;
    let group_out = opg * out_plane;
    debug_assert_eq!(out.len() % group_out, 0);
    let taps_per_out = ipg * geo.kernel[0] * geo.kernel[1];
    let cols = geo.phase_cols();
    let single = isa.block(geo.extended_len(), 1);
    let multi = isa.block(geo.extended_len(), CHANNEL_BLOCK);
    let ext_len = geo.extended_len().next_multiple_of(single.max(multi));
    // The lanes layout writes straight into `out`: no `L`-wide planes.
    let lanes = lanes_layout(geo);
    let ext_planes = if lanes { 0 } else { CHANNEL_BLOCK };
    SCRATCH.with_borrow_mut(|(scratch, extended, line)| {
        // Grown, never cleared: the phase planes are written whole for every
        // group, and what lies past them is read only for dropped outputs.
        grow(scratch, geo.scratch_len());
        grow(extended, ext_planes * ext_len);
        let scratch = &mut scratch[..geo.scratch_len()];
        let extended = &mut extended[..ext_planes * ext_len];
        for (k, group_out_slice) in out.chunks_exact_mut(group_out).enumerate() {
            let bg = first_group + k;
            let (b, g) = (bg / geo.groups, bg % geo.groups);
            let in_start = (b * geo.in_channels + g * ipg) * in_plane;
            fill_phase_planes(isa, geo, &input[in_start..in_start + ipg * in_plane], scratch, line);
            if lanes {
                let o = g * opg;
                let weights = &packed[o * taps_per_out..(o + opg) * taps_per_out];
                accumulate_lanes(isa, geo, scratch, taps, weights, &bias[o..o + opg], clamp, group_out_slice);
                continue;
            }
            for (o, n) in group_blocks(opg, g, false) {
                let weights = &packed[o * taps_per_out..(o + n) * taps_per_out];
                let block = if n == 1 { single } else { multi };
                accumulate(isa, block, n, scratch, taps, weights, &bias[o..o + n], clamp, &mut extended[..n * ext_len]);
                let j = o - g * opg;
                for (c, ext) in extended[..n * ext_len].chunks_exact(ext_len).enumerate() {
                    let plane_out = &mut group_out_slice[(j + c) * out_plane..(j + c + 1) * out_plane];
                    for (y, row) in plane_out.chunks_exact_mut(ow).enumerate() {
                        row.copy_from_slice(&ext[y * cols..y * cols + ow]);
                    }
                }
            }
        }
    });
}

fn grow(v: &mut Vec<f32>, len: usize) {
    if v.len() < len {
        v.resize(len, 0.0);
    }
}

thread_local! {
    /// Per-thread phase planes, `L`-wide output planes and a padded input
    /// row, reused across runs.
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
}

/// Copies a group's input planes, zero-padded, into its phase planes; `line`
/// is scratch for one padded input row.
pub(super) fn fill_phase_planes(
    isa: Isa,
    geo: &ConvGeometry,
    planes: &[f32],
    scratch: &mut [f32],
    line: &mut Vec<f32>,
) {
    if geo.stride[1] != 2 {
        return fill_phase_planes_scalar(geo, planes, scratch);
    }
    let [h, w] = geo.input;
    assert_eq!(planes.len() % (h * w), 0);
    assert!(scratch.len() >= planes.len() / (h * w) * geo.stride[0] * 2 * geo.phase_plane_len());
    // The padded row: padded column c is input column c − pad_before (zero
    // outside), long enough for both phases' columns.
    let pl = geo.pad_before[1];
    line.clear();
    line.resize((2 * geo.phase_cols()).max(pl + w), 0.0);
    let a = SplitArgs { geo, planes, scratch, line };
    // SAFETY: the asserts above and in `split_columns` bound every pointer it
    // forms, and each variant runs only where `Isa::detect` found its instructions.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => split_columns_avx512(a),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => split_columns_avx2(a),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => split_columns::<simd::Neon>(a),
            Isa::Portable => split_columns::<simd::Scalar4>(a),
        }
    }
}

/// The slices of one stride-2 [`fill_phase_planes`].
struct SplitArgs<'a> {
    geo: &'a ConvGeometry,
    planes: &'a [f32],
    scratch: &'a mut [f32],
    /// Zeroed, `2 · phase_cols` or more long.
    line: &'a mut [f32],
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn split_columns_avx512(a: SplitArgs) {
    unsafe { split_columns::<simd::Avx512>(a) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn split_columns_avx2(a: SplitArgs) {
    unsafe { split_columns::<simd::Avx2>(a) }
}

/// Phase planes for a column stride of 2: each input row, padded, is split
/// into its even and odd columns (phases 0 and 1) at once, a vector pair at
/// a time.
#[inline(always)]
unsafe fn split_columns<V: simd::EvenOdd>(a: SplitArgs) {
    let geo = a.geo;
    let [h, w] = geo.input;
    let sh = geo.stride[0];
    let [pt, pl] = geo.pad_before;
    let (rows, cols, plane_len) = (geo.phase_rows(), geo.phase_cols(), geo.phase_plane_len());
    let line = a.line;
    for (i, src) in a.planes.chunks_exact(h * w).enumerate() {
        for q in 0..sh {
            let base = (i * sh + q) * 2 * plane_len;
            let (even, odd) = a.scratch[base..base + 2 * plane_len].split_at_mut(plane_len);
            for r in 0..rows {
                let (even, odd) = (&mut even[r * cols..(r + 1) * cols], &mut odd[r * cols..(r + 1) * cols]);
                // Padded row r·sh+q is input row r·sh+q−pt.
                let y = (r * sh + q).wrapping_sub(pt);
                if y >= h {
                    even.fill(0.0);
                    odd.fill(0.0);
                    continue;
                }
                line[pl..pl + w].copy_from_slice(&src[y * w..(y + 1) * w]);
                let mut j = 0;
                // SAFETY: `line` holds 2·cols values, so 2·(j + LANES) ≤ 2·cols
                // reads inside it; the stores land inside `even` and `odd`.
                unsafe {
                    while j + V::LANES <= cols {
                        let (e, o) = V::load_even_odd(line.as_ptr().add(2 * j));
                        e.store(even.as_mut_ptr().add(j));
                        o.store(odd.as_mut_ptr().add(j));
                        j += V::LANES;
                    }
                }
                for j in j..cols {
                    even[j] = line[2 * j];
                    odd[j] = line[2 * j + 1];
                }
            }
        }
    }
}

/// [`fill_phase_planes`] for any stride, one phase and value at a time.
fn fill_phase_planes_scalar(geo: &ConvGeometry, planes: &[f32], scratch: &mut [f32]) {
    let [h, w] = geo.input;
    let [sh, sw] = geo.stride;
    let [pt, pl] = geo.pad_before;
    let (rows, cols, plane_len) = (geo.phase_rows(), geo.phase_cols(), geo.phase_plane_len());
    for (i, src) in planes.chunks_exact(h * w).enumerate() {
        for q in 0..sh {
            for p in 0..sw {
                let base = (i * sh * sw + q * sw + p) * plane_len;
                let dst = &mut scratch[base..base + plane_len];
                // Phase column j is padded column j·sw+p, input column j·sw+p−pl:
                // inside the input for j in [j0, j1).
                let j0 = pl.saturating_sub(p).div_ceil(sw).min(cols);
                let j1 = (w + pl).saturating_sub(p).div_ceil(sw).clamp(j0, cols);
                for r in 0..rows {
                    let row = &mut dst[r * cols..(r + 1) * cols];
                    // Padded row r·sh+q is input row r·sh+q−pt.
                    let y = (r * sh + q).wrapping_sub(pt);
                    if y >= h || j0 == j1 {
                        row.fill(0.0);
                        continue;
                    }
                    let x0 = j0 * sw + p - pl;
                    let src_row = &src[y * w + x0..(y + 1) * w];
                    row[..j0].fill(0.0);
                    let n = j1 - j0;
                    if sw == 1 {
                        row[j0..j1].copy_from_slice(&src_row[..n]);
                    } else {
                        // Every sw-th input: whole chunks (which the compiler
                        // vectorises with shuffles), then the last one.
                        let whole = n.min(src_row.len() / sw);
                        for (d, chunk) in row[j0..j0 + whole].iter_mut().zip(src_row.chunks_exact(sw)) {
                            *d = chunk[0];
                        }
                        if whole < n {
                            row[j0 + whole] = src_row[whole * sw];
                        }
                    }
                    row[j1..].fill(0.0);
                }
            }
        }
    }
}

/// The instruction set the block loop runs with, decided once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    #[cfg(target_arch = "aarch64")]
    Neon,
    /// Whatever the target's baseline gives (SSE2 on x86_64), unfused.
    Portable,
}

impl Isa {
    /// Every instruction set this CPU can run, the detected one first.
    pub fn available() -> Vec<Isa> {
        let mut v = vec![Isa::detect()];
        #[cfg(target_arch = "x86_64")]
        if v[0] == Isa::Avx512 {
            v.push(Isa::Avx2Fma);
        }
        if v[0] != Isa::Portable {
            v.push(Isa::Portable);
        }
        v
    }

    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma") {
                return Isa::Avx512;
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                return Isa::Avx2Fma;
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            return Isa::Neon;
        }
        #[allow(unreachable_code)]
        Isa::Portable
    }

    pub fn name(self) -> &'static str {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => "avx512",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => "avx2+fma",
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => "neon",
            Isa::Portable => "portable",
        }
    }

    /// Accumulators (f32) that fit in half the vector registers, leaving the
    /// rest for loads and broadcasts: 16 of AVX-512's 32 zmm, 8 of AVX2's 16
    /// ymm, 16 of NEON's 32 q, 8 of SSE2's 16 xmm.
    fn accumulators(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => 256,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => 64,
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => 64,
            Isa::Portable => 32,
        }
    }

    /// Block width for an `L`-wide plane of `n` outputs and `channels`
    /// output channels at once: within the registers, and small for small
    /// planes so that padding the last block wastes little.
    fn block(self, n: usize, channels: usize) -> usize {
        let fits = (self.accumulators() / channels).clamp(self.lanes(), MAX_BLOCK);
        let wanted = match n {
            n if n >= 4 * 128 => 128,
            n if n >= 4 * 64 => 64,
            n if n >= 4 * 32 => 32,
            n if n >= 4 * 16 => 16,
            _ => 8,
        };
        wanted.min(fits).max(self.lanes())
    }

    /// f32 lanes of one vector.
    pub(super) fn lanes(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => 16,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => 8,
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => 4,
            Isa::Portable => 4,
        }
    }
}

/// The instruction set the fast convolution uses on this machine, detected
/// once. `VIPNAS_CONV_ISA=portable` forces the unfused portable loop: to
/// compare, and for emulators that run fused multiply-add through software
/// floating point (TCG for x86 with AVX2/FMA).
pub fn active_isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| match std::env::var("VIPNAS_CONV_ISA") {
        Ok(v) if v == "portable" => Isa::Portable,
        Ok(v) => {
            log::warn!("VIPNAS_CONV_ISA={v}: unknown (only `portable`); using {}", Isa::detect().name());
            Isa::detect()
        }
        Err(_) => Isa::detect(),
    })
}

/// For each of `channels` output channels `c`:
/// `extended[c][t] = clamp(bias[c] + Σ_i weights[i][c] · scratch[taps[i] + t])`, for
/// every t (each plane of `extended` is a multiple of `block` long).
#[allow(clippy::too_many_arguments)]
fn accumulate(
    isa: Isa,
    block: usize,
    channels: usize,
    scratch: &[f32],
    taps: &[usize],
    weights: &[f32],
    bias: &[f32],
    clamp: Clamp,
    extended: &mut [f32],
) {
    assert_eq!(bias.len(), channels);
    assert_eq!(weights.len(), taps.len() * channels);
    assert_eq!(extended.len() % (channels * block), 0);
    let plane = extended.len() / channels;
    // Every read of the block loops is inside `scratch`: checked here once.
    let reach = taps.iter().max().map_or(0, |&m| m + plane);
    assert!(reach <= scratch.len(), "taps reach {reach} of {} scratch", scratch.len());
    let a = Args { scratch, taps, weights, bias, clamp, extended };
    // SAFETY: the asserts above bound every pointer the block loops form, and
    // each variant runs only where `Isa::detect` found its instructions.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => accumulate_avx512(block, channels, a),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => accumulate_avx2(block, channels, a),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => dispatch::<simd::Neon>(block, channels, a),
            Isa::Portable => dispatch::<simd::Scalar4>(block, channels, a),
        }
    }
}

/// The slices of one [`accumulate`] call.
struct Args<'a> {
    scratch: &'a [f32],
    taps: &'a [usize],
    weights: &'a [f32],
    bias: &'a [f32],
    clamp: Clamp,
    extended: &'a mut [f32],
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn accumulate_avx512(block: usize, channels: usize, a: Args) {
    dispatch::<simd::Avx512>(block, channels, a)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn accumulate_avx2(block: usize, channels: usize, a: Args) {
    dispatch::<simd::Avx2>(block, channels, a)
}

/// One vector type per instruction set, behind the four operations the block
/// loop needs. Its functions are inlined into a caller compiled with the
/// instruction set enabled (the `accumulate_*` wrappers).
pub(super) mod simd {
    pub trait Vector: Copy {
        const LANES: usize;
        unsafe fn splat(x: f32) -> Self;
        unsafe fn load(p: *const f32) -> Self;
        /// `self + a · b`.
        unsafe fn mul_add(self, a: Self, b: Self) -> Self;
        /// Lane-wise `min(max(self, lo), hi)`.
        unsafe fn clamp(self, lo: Self, hi: Self) -> Self;
        unsafe fn store(self, p: *mut f32);
    }

    /// A [`Vector`] over one SIMD register type and its intrinsics.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    macro_rules! simd_vector {
        ($name:ident($reg:ty), $lanes:expr, $splat:ident, $load:ident, $store:ident, $max:ident, $min:ident, |$acc:ident, $a:ident, $b:ident| $fma:expr) => {
            #[derive(Clone, Copy)]
            pub struct $name(pub $reg);

            impl super::Vector for $name {
                const LANES: usize = $lanes;
                #[inline(always)]
                unsafe fn splat(x: f32) -> Self {
                    $name(unsafe { $splat(x) })
                }
                #[inline(always)]
                unsafe fn load(p: *const f32) -> Self {
                    $name(unsafe { $load(p) })
                }
                #[inline(always)]
                unsafe fn mul_add(self, a: Self, b: Self) -> Self {
                    let ($acc, $a, $b) = (self.0, a.0, b.0);
                    $name(unsafe { $fma })
                }
                #[inline(always)]
                unsafe fn clamp(self, lo: Self, hi: Self) -> Self {
                    $name(unsafe { $min($max(self.0, lo.0), hi.0) })
                }
                #[inline(always)]
                unsafe fn store(self, p: *mut f32) {
                    unsafe { $store(p, self.0) }
                }
            }
        };
    }

    #[cfg(target_arch = "x86_64")]
    mod x86 {
        use std::arch::x86_64::*;

        simd_vector!(
            Avx512(__m512),
            16,
            _mm512_set1_ps,
            _mm512_loadu_ps,
            _mm512_storeu_ps,
            _mm512_max_ps,
            _mm512_min_ps,
            |acc, a, b| _mm512_fmadd_ps(a, b, acc)
        );
        simd_vector!(
            Avx2(__m256),
            8,
            _mm256_set1_ps,
            _mm256_loadu_ps,
            _mm256_storeu_ps,
            _mm256_max_ps,
            _mm256_min_ps,
            |acc, a, b| _mm256_fmadd_ps(a, b, acc)
        );
    }
    #[cfg(target_arch = "x86_64")]
    pub use x86::{Avx2, Avx512};

    /// A [`Vector`] that can load `2 · LANES` values split into their even
    /// and odd positions (a stride-2 convolution's two column phases).
    pub trait EvenOdd: Vector {
        unsafe fn load_even_odd(p: *const f32) -> (Self, Self);
    }

    #[cfg(target_arch = "x86_64")]
    impl EvenOdd for Avx512 {
        #[inline(always)]
        unsafe fn load_even_odd(p: *const f32) -> (Self, Self) {
            use std::arch::x86_64::*;
            unsafe {
                let (a, b) = (_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16)));
                let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
                let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
                (Avx512(_mm512_permutex2var_ps(a, even, b)), Avx512(_mm512_permutex2var_ps(a, odd, b)))
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    impl EvenOdd for Avx2 {
        #[inline(always)]
        unsafe fn load_even_odd(p: *const f32) -> (Self, Self) {
            use std::arch::x86_64::*;
            unsafe {
                let (a, b) = (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)));
                // [a0 a2 b0 b2 | a4 a6 b4 b6], then 64-bit lanes 0, 2, 1, 3.
                let even = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
                let odd = _mm256_shuffle_ps::<0b11_01_11_01>(a, b);
                let order = |v: __m256| _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)));
                (Avx2(order(even)), Avx2(order(odd)))
            }
        }
    }

    #[cfg(target_arch = "aarch64")]
    mod arm {
        use std::arch::aarch64::*;

        simd_vector!(Neon(float32x4_t), 4, vdupq_n_f32, vld1q_f32, vst1q_f32, vmaxq_f32, vminq_f32, |acc, a, b| {
            vfmaq_f32(acc, a, b)
        });
    }
    #[cfg(target_arch = "aarch64")]
    pub use arm::Neon;

    #[cfg(target_arch = "aarch64")]
    impl EvenOdd for Neon {
        #[inline(always)]
        unsafe fn load_even_odd(p: *const f32) -> (Self, Self) {
            let v = unsafe { std::arch::aarch64::vld2q_f32(p) };
            (Neon(v.0), Neon(v.1))
        }
    }

    /// Four lanes of plain f32 (two roundings, as tract's op): what the
    /// target's baseline vectorises.
    #[derive(Clone, Copy)]
    pub struct Scalar4([f32; 4]);

    impl EvenOdd for Scalar4 {
        #[inline(always)]
        unsafe fn load_even_odd(p: *const f32) -> (Self, Self) {
            let v = unsafe { std::ptr::read_unaligned(p as *const [f32; 8]) };
            (Scalar4(std::array::from_fn(|i| v[2 * i])), Scalar4(std::array::from_fn(|i| v[2 * i + 1])))
        }
    }

    impl Vector for Scalar4 {
        const LANES: usize = 4;
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            Scalar4([x; 4])
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Scalar4(unsafe { std::ptr::read_unaligned(p as *const [f32; 4]) })
        }
        #[inline(always)]
        unsafe fn mul_add(self, a: Self, b: Self) -> Self {
            Scalar4(std::array::from_fn(|i| self.0[i] + a.0[i] * b.0[i]))
        }
        #[inline(always)]
        unsafe fn clamp(self, lo: Self, hi: Self) -> Self {
            Scalar4(std::array::from_fn(|i| self.0[i].max(lo.0[i]).min(hi.0[i])))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            unsafe { std::ptr::write_unaligned(p as *mut [f32; 4], self.0) }
        }
    }
}

use simd::Vector;

/// Runs the block loop with `block` outputs (`block / LANES` vectors) per
/// channel and `channels` channels at once.
#[inline(always)]
unsafe fn dispatch<V: Vector>(block: usize, channels: usize, a: Args) {
    let vectors = (block / V::LANES).max(1);
    unsafe {
        match (channels, vectors) {
            (1, 8..) => blocks::<V, 8, 1>(a),
            (1, 4..) => blocks::<V, 4, 1>(a),
            (1, 2..) => blocks::<V, 2, 1>(a),
            (1, _) => blocks::<V, 1, 1>(a),
            (CHANNEL_BLOCK, 4..) => blocks::<V, 4, CHANNEL_BLOCK>(a),
            (CHANNEL_BLOCK, 2..) => blocks::<V, 2, CHANNEL_BLOCK>(a),
            (CHANNEL_BLOCK, _) => blocks::<V, 1, CHANNEL_BLOCK>(a),
            _ => unreachable!("channel blocks are 1 or {CHANNEL_BLOCK}"),
        }
    }
}

/// `N` vectors × `C` channels of accumulators, held in registers across all
/// taps. Callers guarantee (checked in [`accumulate`]) that every tap's block
/// lies inside the scratch and that the planes are whole blocks long.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // constant bounds keep the accumulators in registers
unsafe fn blocks<V: Vector, const N: usize, const C: usize>(a: Args) {
    let plane = a.extended.len() / C;
    let step = N * V::LANES;
    debug_assert_eq!(plane % step, 0);
    let src = a.scratch.as_ptr();
    let dst = a.extended.as_mut_ptr();
    let (lo, hi) = unsafe { (V::splat(a.clamp.lo), V::splat(a.clamp.hi)) };
    let mut t0 = 0;
    while t0 < plane {
        unsafe {
            let mut acc = [[V::splat(0.0); N]; C];
            for c in 0..C {
                acc[c] = [V::splat(a.bias[c]); N];
            }
            // Weights are packed tap-major: the C channels' weights of one
            // tap are adjacent.
            for (i, &offset) in a.taps.iter().enumerate() {
                let p = src.add(offset + t0);
                let mut x = [V::splat(0.0); N];
                for n in 0..N {
                    x[n] = V::load(p.add(n * V::LANES));
                }
                for c in 0..C {
                    let w = V::splat(*a.weights.get_unchecked(i * C + c));
                    for n in 0..N {
                        acc[c][n] = acc[c][n].mul_add(x[n], w);
                    }
                }
            }
            for c in 0..C {
                for n in 0..N {
                    acc[c][n].clamp(lo, hi).store(dst.add(c * plane + t0 + n * V::LANES));
                }
            }
        }
        t0 += step;
    }
}

/// Output channels per group that [`accumulate_lanes`] computes: one AVX-512
/// vector (two AVX2, four NEON).
const LANES_CHANNELS: usize = 16;

/// Whether a convolution runs in the lanes layout: its groups' output
/// channels in the vector lanes instead of its output columns.
///
/// Why: the column layout computes `L − W = k − 1` dropped columns per row,
/// which on the small planes of a network's later stages is most of the work
/// (a 7×7 kernel on a 12-wide plane: 18 computed for 12 kept). With the
/// group's 16 output channels across the lanes, each tap is one broadcast
/// input value times one vector of 16 weights, and only kept outputs are
/// computed, whatever the plane's width.
pub fn lanes_layout(geo: &ConvGeometry) -> bool {
    geo.out_per_group() == LANES_CHANNELS
}

/// The most output positions [`accumulate_lanes`] holds in registers (16
/// channels each): 16 on AVX-512 (16 zmm), 4 on AVX2 (8 ymm) and NEON (16 q),
/// 2 in the portable loop — half the registers, as [`Isa::accumulators`].
fn lanes_positions(isa: Isa) -> usize {
    isa.accumulators() / LANES_CHANNELS
}

/// Positions per register tile: the largest count ≤ `most` that divides the
/// output width, so that a tile never crosses a row (the tile's reads are
/// then one run of the phase plane per tap).
fn lanes_tile(width: usize, most: usize) -> usize {
    [16, 12, 8, 6, 4, 3, 2, 1].into_iter().find(|&r| r <= most && width % r == 0).unwrap_or(1)
}

/// One group in the lanes layout: `out[c][y][x] = clamp(bias[c] + Σ_i
/// weights[i][c] · scratch[taps[i] + y·L + x])` for the group's 16 output
/// channels `c` (`weights` tap-major, `[tap][16]`), straight into `out`'s
/// 16 planes.
#[allow(clippy::too_many_arguments)]
fn accumulate_lanes(
    isa: Isa,
    geo: &ConvGeometry,
    scratch: &[f32],
    taps: &[usize],
    weights: &[f32],
    bias: &[f32],
    clamp: Clamp,
    out: &mut [f32],
) {
    assert_eq!(bias.len(), LANES_CHANNELS);
    assert_eq!(weights.len(), taps.len() * LANES_CHANNELS);
    assert_eq!(out.len(), LANES_CHANNELS * geo.output[0] * geo.output[1]);
    // Every read is inside `scratch`: the last output's position is below the extended plane's length.
    let reach = taps.iter().max().map_or(0, |&m| m + geo.extended_len());
    assert!(reach <= scratch.len(), "taps reach {reach} of {} scratch", scratch.len());
    let tile = lanes_tile(geo.output[1], lanes_positions(isa));
    let a = LanesArgs { geo, scratch, taps, weights, bias, clamp, out };
    // SAFETY: the asserts above bound every pointer the tile loop forms, and
    // each variant runs only where `Isa::detect` found its instructions.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => lanes_avx512(tile, a),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => lanes_avx2(tile, a),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => lanes_dispatch::<simd::Neon, 4>(tile, a),
            Isa::Portable => lanes_dispatch::<simd::Scalar4, 4>(tile, a),
        }
    }
}

/// The slices of one [`accumulate_lanes`] call.
struct LanesArgs<'a> {
    geo: &'a ConvGeometry,
    scratch: &'a [f32],
    taps: &'a [usize],
    weights: &'a [f32],
    bias: &'a [f32],
    clamp: Clamp,
    out: &'a mut [f32],
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn lanes_avx512(tile: usize, a: LanesArgs) {
    unsafe { lanes_dispatch::<simd::Avx512, 1>(tile, a) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn lanes_avx2(tile: usize, a: LanesArgs) {
    unsafe { lanes_dispatch::<simd::Avx2, 2>(tile, a) }
}

/// Runs the tile loop with `tile` positions of `NV` vectors (`NV · LANES =
/// 16` channels) each.
#[inline(always)]
unsafe fn lanes_dispatch<V: Vector, const NV: usize>(tile: usize, a: LanesArgs) {
    debug_assert_eq!(NV * V::LANES, LANES_CHANNELS);
    unsafe {
        match tile {
            16 => lanes_tiles::<V, 16, NV>(a),
            12 => lanes_tiles::<V, 12, NV>(a),
            8 => lanes_tiles::<V, 8, NV>(a),
            6 => lanes_tiles::<V, 6, NV>(a),
            4 => lanes_tiles::<V, 4, NV>(a),
            3 => lanes_tiles::<V, 3, NV>(a),
            2 => lanes_tiles::<V, 2, NV>(a),
            _ => lanes_tiles::<V, 1, NV>(a),
        }
    }
}

/// `R` positions × `NV` vectors of accumulators, held in registers across all
/// taps; each tile then goes through a small buffer into the 16 planes.
/// `R` divides the output width ([`lanes_tile`]).
#[inline(always)]
#[allow(clippy::needless_range_loop)] // constant bounds keep the accumulators in registers
unsafe fn lanes_tiles<V: Vector, const R: usize, const NV: usize>(a: LanesArgs) {
    let [oh, ow] = a.geo.output;
    let cols = a.geo.phase_cols();
    let plane = oh * ow;
    debug_assert_eq!(ow % R, 0);
    let src = a.scratch.as_ptr();
    let w = a.weights.as_ptr();
    let mut buf = [0f32; 16 * LANES_CHANNELS];
    unsafe {
        let (lo, hi) = (V::splat(a.clamp.lo), V::splat(a.clamp.hi));
        let mut bias = [V::splat(0.0); NV];
        for v in 0..NV {
            bias[v] = V::load(a.bias.as_ptr().add(v * V::LANES));
        }
        for y in 0..oh {
            for x0 in (0..ow).step_by(R) {
                let mut acc = [bias; R];
                for (i, &offset) in a.taps.iter().enumerate() {
                    let p = src.add(offset + y * cols + x0);
                    let mut wv = [V::splat(0.0); NV];
                    for v in 0..NV {
                        wv[v] = V::load(w.add(i * LANES_CHANNELS + v * V::LANES));
                    }
                    for r in 0..R {
                        let x = V::splat(*p.add(r));
                        for v in 0..NV {
                            acc[r][v] = acc[r][v].mul_add(wv[v], x);
                        }
                    }
                }
                for r in 0..R {
                    for v in 0..NV {
                        acc[r][v].clamp(lo, hi).store(buf.as_mut_ptr().add(r * LANES_CHANNELS + v * V::LANES));
                    }
                }
                let at = y * ow + x0;
                for c in 0..LANES_CHANNELS {
                    let row = &mut a.out[c * plane + at..c * plane + at + R];
                    for r in 0..R {
                        row[r] = buf[r * LANES_CHANNELS + c];
                    }
                }
            }
        }
    }
}

/// The channel blocks [`convolve_groups`] computes, in order: `(first output
/// channel, channels)`; in the lanes layout, each group whole.
fn channel_blocks(geo: &ConvGeometry) -> impl Iterator<Item = (usize, usize)> + '_ {
    let (opg, whole) = (geo.out_per_group(), lanes_layout(geo));
    (0..geo.groups).flat_map(move |g| group_blocks(opg, g, whole))
}

/// The channel blocks of group `g` (of `opg` output channels): blocks of
/// [`CHANNEL_BLOCK`], then single channels; or the group `whole`.
fn group_blocks(opg: usize, g: usize, whole: bool) -> impl Iterator<Item = (usize, usize)> {
    let block = if whole { opg } else { CHANNEL_BLOCK };
    let mut j = 0;
    std::iter::from_fn(move || {
        (j < opg).then(|| {
            let n = if opg - j >= block { block } else { 1 };
            j += n;
            (g * opg + j - n, n)
        })
    })
}

/// An OIHW kernel re-laid for [`convolve_groups`]: per channel block (in the
/// lanes layout, per group), tap-major (`[tap][channel in block]`). Same
/// length; a block starting at output channel `o` starts at `o · taps`.
pub fn pack_kernel(geo: &ConvGeometry, oihw: &[f32]) -> Vec<f32> {
    let ntaps = geo.in_per_group() * geo.kernel[0] * geo.kernel[1];
    let mut packed = vec![0.0; oihw.len()];
    for (o, n) in channel_blocks(geo) {
        for c in 0..n {
            for i in 0..ntaps {
                packed[o * ntaps + i * n + c] = oihw[(o + c) * ntaps + i];
            }
        }
    }
    packed
}

/// The textbook loop, for tests: every output as its own sum.
pub fn reference(geo: &ConvGeometry, input: &[f32], kernel: &[f32], bias: &[f32]) -> Vec<f32> {
    let (ipg, opg) = (geo.in_per_group(), geo.out_per_group());
    let [h, w] = geo.input;
    let [oh, ow] = geo.output;
    let [kh, kw] = geo.kernel;
    let mut out = vec![0.0; geo.output_len()];
    for b in 0..geo.batch {
        for o in 0..geo.out_channels {
            let g = o / opg;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = bias[o] as f64;
                    for i in 0..ipg {
                        let c = g * ipg + i;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let y = (oy * geo.stride[0] + ky).wrapping_sub(geo.pad_before[0]);
                                let x = (ox * geo.stride[1] + kx).wrapping_sub(geo.pad_before[1]);
                                if y < h && x < w {
                                    let v = input[((b * geo.in_channels + c) * h + y) * w + x] as f64;
                                    s += v * kernel[((o * ipg + i) * kh + ky) * kw + kx] as f64;
                                }
                            }
                        }
                    }
                    out[((b * geo.out_channels + o) * oh + oy) * ow + ox] = s as f32;
                }
            }
        }
    }
    out
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn geometry(c: usize, groups: usize, hw: [usize; 2], k: usize, s: usize) -> ConvGeometry {
        let pad = k / 2;
        let output = [(hw[0] + 2 * pad - k) / s + 1, (hw[1] + 2 * pad - k) / s + 1];
        ConvGeometry {
            batch: 1,
            in_channels: c,
            out_channels: c,
            groups,
            input: hw,
            kernel: [k, k],
            stride: [s, s],
            pad_before: [pad, pad],
            output,
        }
    }

    /// Deterministic values in [-1, 1] (xorshift), for the kernels' tests.
    pub(in crate::runtime::grouped_conv) fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    fn run(isa: Isa, geo: &ConvGeometry, input: &[f32], kernel: &[f32], bias: &[f32]) -> Vec<f32> {
        let mut out = vec![f32::NAN; geo.output_len()];
        convolve_groups_with(
            isa,
            geo,
            &geo.tap_offsets(),
            input,
            &pack_kernel(geo, kernel),
            bias,
            Clamp::NONE,
            0,
            &mut out,
        );
        out
    }

    /// On every instruction set this CPU has.
    fn check(geo: &ConvGeometry) {
        let input = values(geo.input_len(), 1);
        let kernel = values(geo.out_channels * geo.in_per_group() * geo.kernel[0] * geo.kernel[1], 2);
        let bias = values(geo.out_channels, 3);
        let want = reference(geo, &input, &kernel, &bias);
        let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
        // Rounding grows with the square root of the terms summed: 1e-6 up to a
        // 7×7 depthwise kernel's 49, 4e-6 for 16 channels of it (784).
        let terms = geo.in_per_group() * geo.kernel[0] * geo.kernel[1];
        let tolerance = 1e-6 * (terms as f32 / 49.0).sqrt().max(1.0);
        for isa in Isa::available() {
            let got = run(isa, geo, &input, &kernel, &bias);
            let worst = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(worst <= tolerance * scale, "{} {geo:?}: max |diff| {worst} at scale {scale}", isa.name());
        }
    }

    #[test]
    fn depthwise_matches_the_textbook_loop_for_every_kernel_stride_and_small_plane() {
        for k in [1, 3, 5, 7] {
            for s in [1, 2] {
                for hw in [[1, 1], [2, 3], [3, 2], [7, 5], [8, 6], [16, 12], [33, 17], [64, 48]] {
                    check(&geometry(4, 4, hw, k, s));
                }
            }
        }
    }

    #[test]
    fn grouped_matches_the_textbook_loop() {
        for (c, g) in [(16, 8), (16, 4), (32, 2), (12, 3), (8, 1)] {
            for k in [3, 5] {
                for s in [1, 2] {
                    check(&geometry(c, g, [13, 10], k, s));
                }
            }
        }
    }

    #[test]
    fn the_lanes_layout_matches_the_textbook_loop_on_every_tile_width() {
        // 16 output channels per group; widths whose tile is 16, 12, 8, 6, 4, 3, 2 and 1.
        for (c, g) in [(32, 2), (16, 1)] {
            for k in [3, 7] {
                for s in [1, 2] {
                    for hw in [[5, 32], [4, 24], [3, 16], [6, 12], [2, 8], [3, 6], [4, 4], [1, 1], [13, 10], [7, 7]] {
                        let geo = geometry(c, g, [hw[0], hw[1] * s], k, s);
                        assert!(lanes_layout(&geo));
                        check(&geo);
                    }
                }
            }
        }
        // A stem: 3 input channels, one group of 16 outputs.
        let stem = ConvGeometry { in_channels: 3, out_channels: 16, groups: 1, ..geometry(16, 1, [12, 18], 3, 2) };
        assert!(lanes_layout(&stem));
        check(&stem);
        assert_eq!([48, 24, 12, 6, 3, 10, 7].map(|w| lanes_tile(w, 16)), [16, 12, 12, 6, 3, 2, 1]);
        assert_eq!([48, 24, 12, 6, 3].map(|w| lanes_tile(w, 4)), [4, 4, 4, 3, 3]);
    }

    #[test]
    fn asymmetric_padding_strides_and_batches() {
        let geo = ConvGeometry {
            batch: 2,
            in_channels: 6,
            out_channels: 12,
            groups: 3,
            input: [9, 11],
            kernel: [3, 5],
            stride: [2, 1],
            pad_before: [0, 2],
            output: [4, 9],
        };
        check(&geo);
    }

    #[test]
    fn a_slice_of_groups_computes_only_those_groups() {
        let geo = geometry(8, 8, [10, 10], 3, 1);
        let input = values(geo.input_len(), 4);
        let kernel = values(8 * 9, 5);
        let bias = values(8, 6);
        let whole = run(active_isa(), &geo, &input, &kernel, &bias);
        let plane = 100;
        let mut part = vec![0.0; 3 * plane];
        convolve_groups(
            &geo,
            &geo.tap_offsets(),
            &input,
            &pack_kernel(&geo, &kernel),
            &bias,
            Clamp::NONE,
            2,
            &mut part,
        );
        assert_eq!(part, whole[2 * plane..5 * plane]);
    }
}
