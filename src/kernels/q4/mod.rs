//! 4-bit weight-only GEMM/GEMV: `Y = A · dequant(B)ᵀ + bias` with B in ONNX Runtime's
//! MatMulNBits layout ([`PackedQ4`]), A in f32.
//!
//! Two ways to run, chosen by [`Q4Mode`]:
//! - [`Q4Mode::F32`]: the weights are dequantized on the fly and multiplied with f32
//!   activations (ORT's default accuracy level).
//! - [`Q4Mode::Int8`]: each block of 32/64/128 activations is quantized to int8 on the fly
//!   (symmetric, `scale = max|a| / 127`, round half to even) and the block's dot product is exact
//!   integer arithmetic (ORT's `accuracy_level = 4`); faster, slightly less accurate.
//!
//! Each column's bytes are read once per group of up to [`MR`] rows, so M = 1 (GEMV) streams the
//! packed weights exactly once. In F32 mode the SIMD kernels take another path from
//! `dequant::DEQUANT_MIN_M` rows on: the weights are dequantized a strip at a time and
//! multiplied on the f32 GEMM (kernel name `q4-gemm-*-dequant-f32`; see `dequant.rs`).
//!
//! On AVX-512 VNNI CPUs the Int8 mode runs a different kernel (`q4-*-avx512vnni-i8`) on a copy of
//! the weights regrouped 16 columns at a time (built on first use), with its own order of
//! operations and scalar twin: see `interleave`. What follows describes the other kernels.
//!
//! # Order of operations (shared by every kernel, so results are bit-identical)
//! K is walked in chunks of 32. A chunk's activations are stored permuted: the 16 even positions
//! then the 16 odd ones, so that low nibbles meet the first half and high nibbles the second.
//! Each chunk gives 8 lane partials `t[l]` — F32: `t = q0·a0`, then three fused multiply-adds
//! over the four 8-value groups (low nibbles of bytes 0–7, 8–15, high nibbles of bytes 0–7,
//! 8–15); Int8: the exact sum of the 4 products at permuted positions `4l .. 4l+3` — which are
//! folded with one fused multiply-add by the block's scale into accumulator `c % 2` (two chains
//! to hide latency). At the end the two accumulators are added lane-wise and the 8 lanes summed as
//! `((v0+v4)+(v2+v6)) + ((v1+v5)+(v3+v7))`, then the bias is added.

mod actq;
mod dequant;
mod interleave;
mod pack;
mod scalar;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "x86_64")]
mod vnni;

#[cfg(test)]
mod tests;

pub use pack::{PackedQ4, BLOCK_SIZES};

use super::par;
use super::{isa, Isa};

/// Rows sharing one pass over a column's bytes.
pub const MR: usize = 4;
/// Rows sharing one pass over a column group's bytes in the grouped kernels (a multiple of
/// [`MR`], so rows padded for it are padded for both).
const GROUPED_MR: usize = 8;
const _: () = assert!(GROUPED_MR.is_multiple_of(MR));
/// Values per chunk (two 16-byte halves of nibbles).
const CHUNK: usize = 32;

/// Errors from the 4-bit kernels.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Q4Error {
    /// A block size other than 32, 64 or 128.
    #[error("4-bit kernel: block size {block} is not one of 32, 64, 128")]
    BlockSize {
        /// Block size given.
        block: usize,
    },
    /// A buffer does not match its shape.
    #[error("4-bit kernel: {what} holds {got} elements, expected {expected}")]
    Length {
        /// Which buffer.
        what: &'static str,
        /// Elements required.
        expected: usize,
        /// Elements given.
        got: usize,
    },
    /// A row stride smaller than the row.
    #[error("4-bit kernel: {what} = {got} is smaller than the row length {min}")]
    Stride {
        /// Which stride.
        what: &'static str,
        /// Stride given.
        got: usize,
        /// Row length.
        min: usize,
    },
}

/// How activations meet the 4-bit weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Q4Mode {
    /// f32 activations, weights dequantized on the fly.
    F32,
    /// Activations quantized to int8 per block on the fly; integer block dot products.
    Int8,
}

/// Which inner kernel runs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kernel {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512 VNNI over the interleaved layout in Int8 mode (AVX2 in F32 mode).
    #[cfg(target_arch = "x86_64")]
    Vnni,
    /// The scalar twin of [`Kernel::Vnni`] (Int8 mode; [`Kernel::Scalar`] in F32 mode).
    Grouped,
    #[cfg(target_arch = "aarch64")]
    Neon,
    #[cfg(target_arch = "aarch64")]
    NeonDot,
}

impl Kernel {
    fn for_isa(isa: Isa) -> Kernel {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Kernel::Avx2,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => Kernel::Vnni,
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => Kernel::Neon,
            #[cfg(target_arch = "aarch64")]
            Isa::NeonDot => Kernel::NeonDot,
            _ => Kernel::Scalar,
        }
    }

    /// The kernel that runs in `mode`: the grouped kernels serve Int8 only.
    fn in_mode(self, mode: Q4Mode) -> Kernel {
        match (self, mode) {
            #[cfg(target_arch = "x86_64")]
            (Kernel::Vnni, Q4Mode::F32) => Kernel::Avx2,
            (Kernel::Grouped, Q4Mode::F32) => Kernel::Scalar,
            (k, _) => k,
        }
    }

    /// Whether the kernel reads the interleaved layout.
    fn grouped(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if self == Kernel::Vnni {
            return true;
        }
        self == Kernel::Grouped
    }

    /// Whether the Int8 kernel reads `|q|` separately (AVX2's `vpmaddubsw` sign trick).
    fn uses_magnitudes(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if self == Kernel::Avx2 {
            return true;
        }
        false
    }

    /// Whether `m` rows in `mode` run on [`dequant`] (SIMD kernels in F32 mode with many rows).
    fn dequantizes(self, m: usize, mode: Q4Mode) -> bool {
        mode == Q4Mode::F32
            && m >= dequant::DEQUANT_MIN_M
            && !matches!(self, Kernel::Scalar | Kernel::Grouped)
    }

    fn suffix(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            Kernel::Grouped => "grouped-scalar",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni => "avx512vnni",
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => "neon",
            #[cfg(target_arch = "aarch64")]
            Kernel::NeonDot => "neon-sdot",
        }
    }
}

/// Name of the 4-bit kernel that [`gemm`] runs for `m` rows in `mode` in this process.
pub fn kernel_name(m: usize, mode: Q4Mode) -> String {
    let kind = if m == 1 { "gemv" } else { "gemm" };
    let k = Kernel::for_isa(isa()).in_mode(mode);
    let suffix = match (k, mode) {
        (Kernel::Scalar, _) => "scalar",
        #[cfg(target_arch = "aarch64")]
        (Kernel::NeonDot, Q4Mode::F32) => "neon",
        _ => k.suffix(),
    };
    let act = match mode {
        Q4Mode::F32 if k.dequantizes(m, mode) => "dequant-f32",
        Q4Mode::F32 => "f32",
        Q4Mode::Int8 => "i8",
    };
    format!("q4-{kind}-{suffix}-{act}")
}

/// One column's weights as the kernels read them.
#[derive(Clone, Copy)]
pub(super) struct Column<'a> {
    /// `blocks · block / 2` packed bytes.
    bytes: &'a [u8],
    /// `blocks` scales.
    scales: &'a [f32],
    /// The column's packed zero points, when stored.
    zps: Option<&'a [u8]>,
    block: usize,
    /// `log2(block / CHUNK)`: chunk `c` lies in block `c >> chunk_shift`.
    chunk_shift: u32,
}

impl Column<'_> {
    /// The block holding chunk `c` (a shift: blocks are powers of two).
    #[inline(always)]
    fn block_of(&self, c: usize) -> usize {
        c >> self.chunk_shift
    }

    /// Zero point of block `bl`.
    #[inline(always)]
    fn zp(&self, bl: usize) -> u8 {
        self.zps.map_or(8, |z| (z[bl / 2] >> (4 * (bl % 2))) & 0xf)
    }
}

/// Activations prepared once per call: permuted per chunk, rows padded to whole tiles, K to
/// whole blocks (padding is 0 and adds nothing).
struct Prepared {
    kpad: usize,
    blocks: usize,
    /// F32 mode: permuted values.
    f: Vec<f32>,
    /// Int8 mode: permuted quantized values, their magnitudes (AVX2's sign trick only; empty
    /// otherwise), and per-block scales.
    q: Vec<i8>,
    abs: Vec<u8>,
    qscale: Vec<f32>,
    /// Int8 mode, grouped kernels: `Σ q` per row and block (empty otherwise).
    qsum: Vec<i32>,
}

/// Position of value `i` of a chunk in its permuted order (even positions first).
#[inline(always)]
fn permuted(i: usize) -> usize {
    (i % 2) * 16 + i / 2
}

impl Prepared {
    fn new(
        kernel: Kernel,
        mode: Q4Mode,
        m: usize,
        a: &[f32],
        lda: usize,
        b: &PackedQ4,
    ) -> Prepared {
        let (k, block, blocks) = (b.k(), b.block(), b.blocks());
        let kpad = blocks * block;
        let rows = m.div_ceil(GROUPED_MR) * GROUPED_MR;
        let mut p = Prepared {
            kpad,
            blocks,
            f: Vec::new(),
            q: Vec::new(),
            abs: Vec::new(),
            qscale: Vec::new(),
            qsum: Vec::new(),
        };
        // The grouped kernels read activations in natural order, the others permuted per chunk.
        let natural = kernel.grouped();
        match mode {
            Q4Mode::F32 => {
                p.f = vec![0.0; rows * kpad];
                for i in 0..m {
                    for kk in 0..k {
                        p.f[i * kpad + kk / CHUNK * CHUNK + permuted(kk % CHUNK)] = a[i * lda + kk];
                    }
                }
            }
            Q4Mode::Int8 => {
                // Row by row over the workers, like the product itself.
                p.qscale = vec![0.0; rows * blocks];
                p.q = vec![0; rows * kpad];
                #[cfg(target_arch = "x86_64")]
                let simd = kernel == Kernel::Vnni;
                #[cfg(not(target_arch = "x86_64"))]
                let simd = false;
                par::for_each_chunk_pair(
                    &mut p.qscale[..m * blocks],
                    blocks,
                    &mut p.q[..m * kpad],
                    kpad,
                    |i, scales, q| {
                        actq::quantize_row(simd, &a[i * lda..i * lda + k], block, scales, q);
                        if !natural {
                            for ch in q.chunks_exact_mut(CHUNK) {
                                let nat: [i8; CHUNK] = std::array::from_fn(|t| ch[t]);
                                for (t, &v) in nat.iter().enumerate() {
                                    ch[permuted(t)] = v;
                                }
                            }
                        }
                    },
                );
                let q = &p.q;
                if natural {
                    // Blocks lie in natural order: block `bl` of row `i` is one run of `q`.
                    p.qsum = vec![0; rows * blocks];
                    par::for_each_chunk(&mut p.qsum[..m * blocks], blocks, |i, sums| {
                        let qi = &q[i * kpad..(i + 1) * kpad];
                        for (s, qb) in sums.iter_mut().zip(qi.chunks(block)) {
                            *s = qb.iter().map(|&v| i32::from(v)).sum();
                        }
                    });
                }
                if kernel.uses_magnitudes() {
                    p.abs = vec![0; rows * kpad];
                    par::for_each_chunk(&mut p.abs, kpad, |i, abs| {
                        for (mag, &v) in abs.iter_mut().zip(&q[i * kpad..(i + 1) * kpad]) {
                            *mag = v.unsigned_abs();
                        }
                    });
                }
            }
        }
        p
    }
}

/// The final lane sum shared by every kernel: `((v0+v4)+(v2+v6)) + ((v1+v5)+(v3+v7))`.
#[inline(always)]
fn hsum8(v: [f32; 8]) -> f32 {
    let s4 = [v[0] + v[4], v[1] + v[5], v[2] + v[6], v[3] + v[7]];
    let s2 = [s4[0] + s4[2], s4[1] + s4[3]];
    s2[0] + s2[1]
}

/// `Y[m×N] = A[m×K] · dequant(B)ᵀ + bias`, A row-major with stride `lda`, Y with stride `ldc`.
/// Rows (or, for `m == 1`, columns) are split over rayon's pool when it has more than one thread.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedQ4,
    mode: Q4Mode,
    bias: Option<&[f32]>,
    out: &mut [f32],
    ldc: usize,
) -> Result<(), Q4Error> {
    gemm_with(Kernel::for_isa(isa()), m, a, lda, b, mode, bias, out, ldc)
}

/// `R` prepared rows from `row0` against the `G` column groups from `g0` of the interleaved
/// weights.
fn grouped_dot<const R: usize, const G: usize>(
    kernel: Kernel,
    p: &Prepared,
    il: &interleave::Interleaved,
    row0: usize,
    g0: usize,
) -> [[[f32; interleave::NG]; G]; R] {
    let rows = interleave::Rows {
        q: &p.q[row0 * p.kpad..(row0 + R) * p.kpad],
        qscale: &p.qscale[row0 * p.blocks..(row0 + R) * p.blocks],
        qsum: &p.qsum[row0 * p.blocks..(row0 + R) * p.blocks],
        kp: p.kpad,
    };
    let groups = std::array::from_fn(|x| il.group(g0 + x));
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Kernel::Vnni` is chosen only on CPUs with AVX-512 F/BW/VL/VNNI; `rows` holds
        // R prepared rows of `kpad` values, whose blocks match the groups'.
        Kernel::Vnni => unsafe { vnni::dot_groups::<R, G>(groups, rows) },
        _ => {
            let y: [[[f32; interleave::NG]; R]; G] =
                groups.map(|g| interleave::dot_group::<R>(g, rows));
            std::array::from_fn(|r| std::array::from_fn(|x| y[x][r]))
        }
    }
}

/// The grouped kernels' driver (Int8 mode): `out` starts at row 0, column 0 and holds exactly
/// the rows and columns written. M = 1 splits column groups over threads and runs them two at
/// a time, M > 1 splits row blocks.
fn grouped(
    kernel: Kernel,
    m: usize,
    p: &Prepared,
    b: &PackedQ4,
    bias: Option<&[f32]>,
    out: &mut [f32],
    ldc: usize,
) {
    use interleave::NG;
    let il = b.interleaved();
    let n = b.n();
    let bj = |j: usize| bias.map_or(0.0, |bv| bv[j]);
    if m == 1 {
        // Chunks of an even number of groups, so only the last group can run alone.
        let per = il
            .groups()
            .div_ceil(rayon::current_num_threads() * 4)
            .next_multiple_of(2)
            * NG;
        let store = |g: usize, y: &[f32; NG], oc: &mut [f32]| {
            for (c, o) in oc.iter_mut().enumerate() {
                *o = y[c] + bj(g * NG + c);
            }
        };
        par::for_each_chunk(out, per, |ci, ch| {
            let g0 = ci * per / NG;
            let mut pairs = ch.chunks_mut(2 * NG);
            for (pi, oc) in pairs.by_ref().enumerate() {
                let g = g0 + 2 * pi;
                if oc.len() > NG {
                    let [y] = grouped_dot::<1, 2>(kernel, p, il, 0, g);
                    let (o0, o1) = oc.split_at_mut(NG);
                    store(g, &y[0], o0);
                    store(g + 1, &y[1], o1);
                } else {
                    let [[y]] = grouped_dot::<1, 1>(kernel, p, il, 0, g);
                    store(g, &y, oc);
                }
            }
        });
        return;
    }
    par::for_each_chunk(out, GROUPED_MR * ldc, |bi, ch| {
        let row0 = bi * GROUPED_MR;
        let rows = GROUPED_MR.min(m - row0);
        for g in 0..il.groups() {
            let y = grouped_dot::<GROUPED_MR, 1>(kernel, p, il, row0, g);
            let j0 = g * NG;
            for (r, yr) in y.iter().enumerate().take(rows) {
                for (c, &v) in yr[0].iter().enumerate().take(NG.min(n - j0)) {
                    ch[r * ldc + j0 + c] = v + bj(j0 + c);
                }
            }
        }
    });
}

#[allow(clippy::too_many_arguments)]
fn gemm_with(
    kernel: Kernel,
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedQ4,
    mode: Q4Mode,
    bias: Option<&[f32]>,
    out: &mut [f32],
    ldc: usize,
) -> Result<(), Q4Error> {
    let (k, n) = (b.k(), b.n());
    if lda < k {
        return Err(Q4Error::Stride {
            what: "lda",
            got: lda,
            min: k,
        });
    }
    if ldc < n {
        return Err(Q4Error::Stride {
            what: "ldc",
            got: ldc,
            min: n,
        });
    }
    let need = |rows: usize, stride: usize, cols: usize| {
        if rows == 0 {
            0
        } else {
            (rows - 1) * stride + cols
        }
    };
    if a.len() < need(m, lda, k) {
        return Err(Q4Error::Length {
            what: "activations",
            expected: need(m, lda, k),
            got: a.len(),
        });
    }
    if out.len() < need(m, ldc, n) {
        return Err(Q4Error::Length {
            what: "output",
            expected: need(m, ldc, n),
            got: out.len(),
        });
    }
    if let Some(bv) = bias {
        if bv.len() != n {
            return Err(Q4Error::Length {
                what: "bias",
                expected: n,
                got: bv.len(),
            });
        }
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let kernel = kernel.in_mode(mode);
    if kernel.dequantizes(m, mode) {
        dequant::gemm(m, a, lda, b, bias, &mut out[..need(m, ldc, n)], ldc);
        return Ok(());
    }
    let p = Prepared::new(kernel, mode, m, a, lda, b);
    let used = &mut out[..need(m, ldc, n)];
    if kernel.grouped() {
        grouped(kernel, m, &p, b, bias, used, ldc);
        return Ok(());
    }
    if m == 1 {
        let per = n.div_ceil(crate::kernels::threads() * 4).max(1);
        par::for_each_chunk(used, per, |ci, ch| {
            columns::<1>(
                kernel,
                mode,
                &p,
                b,
                0,
                1,
                ci * per..ci * per + ch.len(),
                bias,
                ch,
                ldc,
            )
        });
        return Ok(());
    }
    par::for_each_chunk(used, MR * ldc, |bi, ch| {
        let row0 = bi * MR;
        columns::<MR>(
            kernel,
            mode,
            &p,
            b,
            row0,
            MR.min(m - row0),
            0..n,
            bias,
            ch,
            ldc,
        );
    });
    Ok(())
}

/// Rows `row0 .. row0 + rows` (an `R`-row group) for the columns `cols`, where `out` starts at
/// row `row0`, column `cols.start`.
#[allow(clippy::too_many_arguments)]
fn columns<const R: usize>(
    kernel: Kernel,
    mode: Q4Mode,
    p: &Prepared,
    b: &PackedQ4,
    row0: usize,
    rows: usize,
    cols: std::ops::Range<usize>,
    bias: Option<&[f32]>,
    out: &mut [f32],
    ldc: usize,
) {
    let zp_stride = b.blocks().div_ceil(2);
    let j0 = cols.start;
    for j in cols {
        let c = j - j0;
        let col = Column {
            bytes: b.column(j),
            scales: b.column_scales(j),
            zps: b
                .zero_points()
                .map(|z| &z[j * zp_stride..(j + 1) * zp_stride]),
            block: b.block(),
            chunk_shift: (b.block() / CHUNK).trailing_zeros(),
        };
        let y = column_dot::<R>(kernel, mode, p, row0, col);
        let bj = bias.map_or(0.0, |bv| bv[j]);
        for (r, &v) in y.iter().enumerate().take(rows) {
            out[r * ldc + c] = v + bj;
        }
    }
}

/// One column against `R` prepared rows.
#[inline(always)]
fn column_dot<const R: usize>(
    kernel: Kernel,
    mode: Q4Mode,
    p: &Prepared,
    row0: usize,
    col: Column<'_>,
) -> [f32; R] {
    let kp = p.kpad;
    match mode {
        Q4Mode::F32 => {
            let a = &p.f[row0 * kp..(row0 + R) * kp];
            match kernel {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: AVX2 and FMA were detected (`Isa::Avx2` requires both); `a` holds R rows
                // of `kp` values matching the column's `kp / 2` bytes.
                Kernel::Avx2 | Kernel::Vnni => unsafe { avx2::dot_f32::<R>(a, kp, col) },
                #[cfg(target_arch = "aarch64")]
                // SAFETY: NEON was detected; `a` holds R rows of `kp` values.
                Kernel::Neon | Kernel::NeonDot => unsafe { neon::dot_f32::<R>(a, kp, col) },
                Kernel::Scalar | Kernel::Grouped => scalar::dot_f32::<R>(a, kp, col),
            }
        }
        Q4Mode::Int8 => {
            let q = &p.q[row0 * kp..(row0 + R) * kp];
            let s = &p.qscale[row0 * p.blocks..(row0 + R) * p.blocks];
            match kernel {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: AVX2 and FMA were detected; slices hold R rows as `dot_i8` requires.
                Kernel::Avx2 => unsafe {
                    let abs = &p.abs[row0 * kp..(row0 + R) * kp];
                    avx2::dot_i8::<R>(abs, q, s, kp, col)
                },
                #[cfg(target_arch = "aarch64")]
                // SAFETY: NEON was detected; slices hold R rows as `dot_i8_widen` requires.
                Kernel::Neon => unsafe { neon::dot_i8_widen::<R>(q, s, kp, col) },
                #[cfg(target_arch = "aarch64")]
                // SAFETY: NEON and dotprod were detected; slices hold R rows.
                Kernel::NeonDot => unsafe { neon::dot_i8_sdot::<R>(q, s, kp, col) },
                Kernel::Scalar => scalar::dot_i8::<R>(q, s, kp, col),
                #[cfg(target_arch = "x86_64")]
                Kernel::Vnni => unreachable!("grouped kernels run in `grouped`"),
                Kernel::Grouped => unreachable!("grouped kernels run in `grouped`"),
            }
        }
    }
}
