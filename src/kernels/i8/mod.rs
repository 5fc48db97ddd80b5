//! INT8 GEMM and GEMV: `C = A · B` with s8 weights B, u8 or s8 activations A, i32 accumulation,
//! zero points folded in, and an epilogue that stores i32, dequantizes to f32 or requantizes to
//! u8/s8 with the ONNX `QuantizeLinear` rounding (round half to even, saturate).
//!
//! # Why "widen" and not `vpmaddubsw`
//! The classic AVX2 int8 inner step (`vpmaddubsw` then `vpmaddwd` with ones) saturates its int16
//! pair sum for u8×s8 (255·127·2 > 32767), so it is not exact for every input. This module widens
//! instead: activations are stored once per call as i16 with their zero point already subtracted
//! (`a - za` ∈ [-255, 255]), weights are sign-extended from the packed i8 as they are loaded
//! (`vpmovsxbw`), and `vpmaddwd` multiplies and adds pairs into i32 with no intermediate
//! saturation. Its cost: one multiply instruction does 16 MACs instead of 32, but it replaces the
//! two multiplies (`vpmaddubsw` + `vpmaddwd`) of the classic path, so on cores with two vector
//! multiply ports (Zen 3) the multiply throughput per MAC is the same; the extra work is one
//! sign-extending load per 16 weight bytes, shared by all rows of a register tile, and an i16
//! activation copy (2·M·K bytes) per call. On aarch64 with dotprod, `sdot` (s8×s8 → i32, exact)
//! runs on activations shifted to s8 and the shift is folded back through the weights' column sums.
//! On x86_64 with AVX-512 VNNI, `vpdpbusd` (u8×s8 → i32, four products per lane, no saturation)
//! runs on the activation bytes as u8 (s8 activations shifted by +128), folded back the same way,
//! as MLAS does.
//!
//! # Numerics
//! With `za` the activation zero point and `zb[j]` the weight zero point of column j,
//! `acc[i][j] = Σ_k (a[i][k] - za) · (b[k][j] - zb[j])`, computed as
//! `Σ_k (a - za)·b - zb[j] · Σ_k (a - za)` (the row sum is taken while the activations are widened).
//! K is limited to [`K_MAX`] so that no i32 sum can overflow.

mod conv;
mod depthwise;
mod epilogue;
mod hwc;
mod pack;
mod prepare;
mod scalar;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "x86_64")]
mod vnni;

#[cfg(test)]
mod conv_tests;
#[cfg(test)]
mod tests;

pub use conv::{copy_short, im2col, Conv2d};
pub use depthwise::{depthwise, depthwise_kernel_name, PackedDepthwise};
pub use epilogue::{Dequantize, Output, Requantize, Scale};
pub use hwc::gemm_hwc;
pub use pack::{PackedI8, WeightZeroPoint};

use super::par;
use super::{isa, Isa};
use epilogue::Finish;
use prepare::{with_block, Act, Block, Matrix, Rows, Source};

/// Columns per packed weight panel (one register tile is `MR × NR`).
pub const NR: usize = 8;
/// K is padded to a multiple of this many values (one `sdot` / two `vpmaddwd` pairs).
pub const KQ: usize = 4;
/// Largest inner dimension accepted: `K_MAX · 255 · 255 < 2^31`, so no i32 sum can overflow.
pub const K_MAX: usize = 32_768;
/// Rows per register tile in the GEMM path (the AVX-512 VNNI tiles take `vnni::ZR`).
const MR: usize = 6;

/// Errors from the INT8 kernels: a shape or parameter that does not fit.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum I8Error {
    /// A buffer is shorter or longer than its shape requires.
    #[error("int8 kernel: {what} holds {got} elements, expected {expected}")]
    Length {
        /// Which buffer.
        what: &'static str,
        /// Elements required.
        expected: usize,
        /// Elements given.
        got: usize,
    },
    /// The inner dimension is too large for exact i32 accumulation.
    #[error("int8 kernel: K = {k} exceeds {max}, the largest K whose i32 sums cannot overflow")]
    KTooLarge {
        /// The K given.
        k: usize,
        /// [`K_MAX`].
        max: usize,
    },
    /// A row stride is smaller than the row it must hold.
    #[error("int8 kernel: {what} = {got} is smaller than the row length {min}")]
    Stride {
        /// Which stride.
        what: &'static str,
        /// Stride given.
        got: usize,
        /// Row length.
        min: usize,
    },
    /// A convolution geometry that gives no output or overflows.
    #[error("int8 convolution: {what}")]
    Geometry {
        /// What is wrong.
        what: &'static str,
    },
    /// An output zero point outside the output type's range.
    #[error("int8 kernel: output zero point {zp} is outside [{lo}, {hi}]")]
    ZeroPoint {
        /// Zero point given.
        zp: i32,
        /// Smallest allowed.
        lo: i32,
        /// Largest allowed.
        hi: i32,
    },
}

/// Quantized activations A, row-major M×K with a row stride, and their zero point.
#[derive(Debug, Clone, Copy)]
pub enum Activations<'a> {
    /// Unsigned activations (ONNX `uint8`), the asymmetric default of ORT.
    U8 {
        /// Row-major values.
        data: &'a [u8],
        /// Zero point `za`.
        zero_point: u8,
    },
    /// Signed activations (ONNX `int8`).
    S8 {
        /// Row-major values.
        data: &'a [i8],
        /// Zero point `za`.
        zero_point: i8,
    },
}

impl Activations<'_> {
    fn len(&self) -> usize {
        match self {
            Activations::U8 { data, .. } => data.len(),
            Activations::S8 { data, .. } => data.len(),
        }
    }

    /// `a[idx] - za`, exact in i16.
    #[inline(always)]
    fn centred(&self, idx: usize) -> i16 {
        match *self {
            Activations::U8 { data, zero_point } => data[idx] as i16 - zero_point as i16,
            Activations::S8 { data, zero_point } => data[idx] as i16 - zero_point as i16,
        }
    }
}

/// Which inner kernel runs: decided from [`isa`] once per call.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kernel {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Vnni,
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

    fn suffix(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => "avx2-widen",
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni => "avx512-vnni",
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => "neon-widen",
            #[cfg(target_arch = "aarch64")]
            Kernel::NeonDot => "neon-sdot",
        }
    }

    /// Whether the epilogue may use the AVX2 tile-row stores.
    fn simd_epilogue(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if matches!(self, Kernel::Avx2 | Kernel::Vnni) {
            return true;
        }
        false
    }

    /// Whether activations are stored as shifted bytes (for `sdot` or `vpdpbusd`) instead of
    /// centred i16.
    fn narrow(self) -> bool {
        #[cfg(target_arch = "aarch64")]
        if self == Kernel::NeonDot {
            return true;
        }
        self.unsigned_bytes()
    }

    /// Whether the shifted bytes are read as u8 (`vpdpbusd`): stored XOR 0x80, offset 128 less.
    fn unsigned_bytes(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if self == Kernel::Vnni {
            return true;
        }
        false
    }
}

/// Name of the INT8 GEMM kernel that [`gemm`] runs for `m > 1` in this process.
pub fn gemm_kernel_name() -> String {
    format!("i8-gemm-{}", Kernel::for_isa(isa()).suffix())
}

/// Name of the INT8 GEMV kernel that [`gemm`] runs for `m == 1` in this process.
pub fn gemv_kernel_name() -> String {
    format!("i8-gemv-{}", Kernel::for_isa(isa()).suffix())
}

/// Computes one `R × NR` tile: the block's rows times one panel.
#[inline(always)]
fn tile<const R: usize>(kernel: Kernel, p: &Block<'_, R>, panel: &[i8]) -> [[i32; NR]; R] {
    let kp = p.kp;
    match kernel {
        Kernel::Scalar => scalar::tile::<R>(&p.wide[..R * kp], kp, panel),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => {
            let a = &p.wide[..R * kp];
            // SAFETY: `Kernel::Avx2` is only chosen when `isa()` detected AVX2; `a` holds R rows
            // of `kp` values and `panel` holds `kp * NR` bytes, as `avx2::tile` requires.
            unsafe { avx2::tile::<R>(a, kp, panel) }
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Vnni => {
            let a = &p.narrow[..R * kp];
            // SAFETY: `Kernel::Vnni` is only chosen when `isa()` detected AVX-512 F/BW/VL/VNNI,
            // and `tile` is only reached through `row_block_vnni`, which enables them; `a` holds
            // R rows of `kp` bytes and `panel` `kp * NR` bytes, as `vnni::tile` requires.
            unsafe { vnni::tile::<R>(a, kp, panel) }
        }
        #[cfg(target_arch = "aarch64")]
        Kernel::Neon => {
            let a = &p.wide[..R * kp];
            // SAFETY: NEON is detected by `isa()`; slice lengths as `neon::tile_widen` requires.
            unsafe { neon::tile_widen::<R>(a, kp, panel) }
        }
        #[cfg(target_arch = "aarch64")]
        Kernel::NeonDot => {
            let a = &p.narrow[..R * kp];
            // SAFETY: dotprod is detected by `isa()`; slice lengths as `neon::tile_dot` requires.
            unsafe { neon::tile_dot::<R>(a, kp, panel) }
        }
    }
}

/// Stores one tile of panel `pi` through the epilogue, folding the zero-point terms in. `out`
/// starts at the block's first row and at column `first · NR` of the output.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn store<T, F: Finish<T>, const R: usize>(
    kernel: Kernel,
    acc: &[[i32; NR]; R],
    p: &Block<'_, R>,
    b: &PackedI8,
    rows: usize,
    pi: usize,
    first: usize,
    out: &mut [T],
    ldc: usize,
    fin: &F,
) {
    let col0 = pi * NR;
    let off = (pi - first) * NR;
    let cols = NR.min(b.n() - col0);
    let (sums, zps) = (b.col_sums(pi), b.zero_points(pi));
    let simd = kernel.simd_epilogue();
    for (r, acc_row) in acc.iter().enumerate().take(rows) {
        let row_sum = p.row_sums[r];
        let mut v = [0i32; NR];
        for c in 0..NR {
            v[c] = acc_row[c]
                .wrapping_add(p.offset.wrapping_mul(sums[c]))
                .wrapping_sub(zps[c].wrapping_mul(row_sum));
        }
        let at = r * ldc + off;
        fin.finish_row(simd, &v, col0, &mut out[at..at + cols]);
    }
}

/// `C = epilogue(A[m×K] · B)`: INT8 GEMM (or GEMV when `m == 1`) with the output chosen by `out`.
///
/// `a` is row-major with row stride `lda ≥ K`; the output has row stride `ldc ≥ N`. Rows are split
/// over rayon's current pool when it has more than one thread.
pub fn gemm(
    m: usize,
    a: Activations<'_>,
    lda: usize,
    b: &PackedI8,
    out: Output<'_>,
    ldc: usize,
) -> Result<(), I8Error> {
    gemm_with(Kernel::for_isa(isa()), m, a, lda, b, out, ldc)
}

fn check_len(
    what: &'static str,
    rows: usize,
    stride: usize,
    cols: usize,
    got: usize,
) -> Result<(), I8Error> {
    let expected = if rows == 0 {
        0
    } else {
        (rows - 1) * stride + cols
    };
    if got < expected {
        return Err(I8Error::Length {
            what,
            expected,
            got,
        });
    }
    Ok(())
}

/// Checks that the output strides and buffer fit an `m × N` result of `b`.
fn check_out(m: usize, b: &PackedI8, out: &Output<'_>, ldc: usize) -> Result<(), I8Error> {
    if ldc < b.n() {
        return Err(I8Error::Stride {
            what: "ldc",
            got: ldc,
            min: b.n(),
        });
    }
    out.check(m, b.n(), ldc)
}

fn gemm_with(
    kernel: Kernel,
    m: usize,
    a: Activations<'_>,
    lda: usize,
    b: &PackedI8,
    out: Output<'_>,
    ldc: usize,
) -> Result<(), I8Error> {
    let k = b.k();
    if lda < k {
        return Err(I8Error::Stride {
            what: "lda",
            got: lda,
            min: k,
        });
    }
    check_out(m, b, &out, ldc)?;
    check_len("activations", m, lda, k, a.len())?;
    let (act, data) = Act::of(&a);
    dispatch(kernel, m, &Matrix { data, lda, k }, act, b, out, ldc);
    Ok(())
}

/// Runs the GEMM of `m` rows of `src` (checked against `b` and `out` by the caller) into `out`.
fn dispatch(
    kernel: Kernel,
    m: usize,
    src: &impl Source,
    act: Act,
    b: &PackedI8,
    out: Output<'_>,
    ldc: usize,
) {
    if m == 0 || b.n() == 0 {
        return;
    }
    match out {
        Output::I32(c) => run(kernel, m, src, act, b, c, ldc, &epilogue::Raw),
        Output::F32(c, d) => run(kernel, m, src, act, b, c, ldc, &d),
        Output::U8(c, r) => run(kernel, m, src, act, b, c, ldc, &r.for_u8()),
        Output::S8(c, r) => run(kernel, m, src, act, b, c, ldc, &r.for_s8()),
    }
}

#[allow(clippy::too_many_arguments)]
fn run<T: Send, F: Finish<T> + Send>(
    kernel: Kernel,
    m: usize,
    src: &impl Source,
    act: Act,
    b: &PackedI8,
    c: &mut [T],
    ldc: usize,
    fin: &F,
) {
    let rows = |row0: usize, rows: usize| Rows {
        kernel,
        act,
        row0,
        rows,
        kp: b.kp(),
        sums: b.has_zero_points(),
    };
    if m == 1 {
        let n = b.n();
        // Whole blocks of columns per chunk, so every chunk starts at a block.
        let per = n
            .div_ceil(pack::BLOCK)
            .div_ceil(crate::kernels::threads() * 4)
            .max(1)
            * pack::BLOCK;
        with_block::<1, _>(src, rows(0, 1), |p| {
            par::for_each_chunk(&mut c[..n], per, |ci, chunk| {
                let first = ci * per / NR;
                let panels = first..first + chunk.len().div_ceil(NR);
                row_block::<T, F, 1>(kernel, p, b, 1, panels, chunk, ldc, fin)
            })
        });
        return;
    }
    // The GEMM path: blocks of `R` rows split over the workers, each block prepared by its
    // worker and run times every panel.
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Vnni {
        return run_rows::<T, F, { vnni::ZR }>(kernel, m, src, &rows, b, c, ldc, fin);
    }
    run_rows::<T, F, MR>(kernel, m, src, &rows, b, c, ldc, fin);
}

#[allow(clippy::too_many_arguments)]
fn run_rows<T: Send, F: Finish<T> + Send, const R: usize>(
    kernel: Kernel,
    m: usize,
    src: &impl Source,
    rows: &(impl Fn(usize, usize) -> Rows + Sync),
    b: &PackedI8,
    c: &mut [T],
    ldc: usize,
    fin: &F,
) {
    par::for_each_chunk(&mut c[..(m - 1) * ldc + b.n()], R * ldc, |bi, chunk| {
        let row0 = bi * R;
        let n = R.min(m - row0);
        with_block::<R, _>(src, rows(row0, n), |p| {
            row_block::<T, F, R>(kernel, p, b, n, 0..b.panels(), chunk, ldc, fin)
        });
    });
}

/// The block's first `rows` rows times the weight panels `panels`, stored into `out`, which starts
/// at the block's first row and at column `panels.start · NR`. For AVX2 and AVX-512 the whole
/// loop runs inside one function with those features enabled so the tile kernel and the epilogue
/// inline into it.
#[allow(clippy::too_many_arguments)]
fn row_block<T, F: Finish<T>, const R: usize>(
    kernel: Kernel,
    p: &Block<'_, R>,
    b: &PackedI8,
    rows: usize,
    panels: std::ops::Range<usize>,
    out: &mut [T],
    ldc: usize,
    fin: &F,
) {
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Avx2 {
        // SAFETY: `Kernel::Avx2` is chosen only when AVX2 was detected.
        unsafe { row_block_avx2::<T, F, R>(p, b, rows, panels, out, ldc, fin) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Vnni {
        // SAFETY: `Kernel::Vnni` is chosen only when AVX-512 F/BW/VL/VNNI (and AVX2) were detected.
        unsafe { row_block_vnni::<T, F, R>(p, b, rows, panels, out, ldc, fin) };
        return;
    }
    row_block_panels::<T, F, R>(kernel, p, b, rows, panels, out, ldc, fin);
}

/// [`row_block_panels`] compiled with AVX2 enabled.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn row_block_avx2<T, F: Finish<T>, const R: usize>(
    p: &Block<'_, R>,
    b: &PackedI8,
    rows: usize,
    panels: std::ops::Range<usize>,
    out: &mut [T],
    ldc: usize,
    fin: &F,
) {
    row_block_panels::<T, F, R>(Kernel::Avx2, p, b, rows, panels, out, ldc, fin);
}

/// The VNNI row loop, compiled with AVX2 and AVX-512 VNNI enabled: 512-bit `vpdpbusd` over
/// whole blocks of two panels (16 columns), so the independent accumulator chains of a K group
/// share each weight load and each activation broadcast, stored 16 columns per vector from the
/// registers; panels past N inside the last block are computed but not stored. GEMM blocks
/// (`R > 1`) run 32 columns (two blocks) at a time, then 16; the GEMV (`R = 1`) 64 columns (four
/// chains), then 32, then 16. Panel ranges that do not start at a block run 8-column panels.
///
/// # Safety
/// The CPU must support AVX2, FMA and AVX-512 F/BW/VL/VNNI.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
#[allow(clippy::too_many_arguments)]
unsafe fn row_block_vnni<T, F: Finish<T>, const R: usize>(
    p: &Block<'_, R>,
    b: &PackedI8,
    rows: usize,
    panels: std::ops::Range<usize>,
    out: &mut [T],
    ldc: usize,
    fin: &F,
) {
    if !panels.start.is_multiple_of(pack::PAIR) {
        return row_block_panels::<T, F, R>(Kernel::Vnni, p, b, rows, panels, out, ldc, fin);
    }
    let kp = p.kp;
    let a = &p.narrow[..R * kp];
    let (first, end) = (panels.start / pack::PAIR, panels.end.div_ceil(pack::PAIR));
    let col0 = first * pack::BLOCK;
    let mut blk = first;
    while blk < end {
        // SAFETY: AVX-512 F/BW/VL/VNNI are enabled on this function; `a` is the block's R rows
        // of `kp` bytes and every weight block `kp · 16` bytes, as `tile_z` requires (R · P
        // accumulators fit the 32 zmm registers); `store_z` gets the registers of existing
        // blocks inside `panels`.
        unsafe {
            if R == 1 && blk + 3 < end {
                let w = [
                    b.block(blk),
                    b.block(blk + 1),
                    b.block(blk + 2),
                    b.block(blk + 3),
                ];
                let acc = vnni::tile_z::<R, 4>(a, kp, w);
                store_z::<T, F, R, 4>(&acc, p, b, rows, blk, col0, out, ldc, fin);
                blk += 4;
            } else if blk + 1 < end {
                let acc = vnni::tile_z::<R, 2>(a, kp, [b.block(blk), b.block(blk + 1)]);
                store_z::<T, F, R, 2>(&acc, p, b, rows, blk, col0, out, ldc, fin);
                blk += 2;
            } else {
                let acc = vnni::tile_z::<R, 1>(a, kp, [b.block(blk)]);
                store_z::<T, F, R, 1>(&acc, p, b, rows, blk, col0, out, ldc, fin);
                blk += 1;
            }
        }
    }
}

/// Stores the `R × 16·P` accumulators of weight blocks `blk0 ..` through the epilogue, 16
/// columns per vector, folding the zero-point terms in with vector arithmetic (the same
/// wrapping i32 operations as [`store`]). `out` starts at the block's first row and at column
/// `col0`; blocks past N are skipped.
///
/// # Safety
/// AVX-512 F/BW/VL must be enabled in the caller (it inlines into `row_block_vnni`).
#[cfg(target_arch = "x86_64")]
// The register tile is indexed by (row, block) on purpose: the loops unroll over constants.
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
#[inline(always)]
unsafe fn store_z<T, F: Finish<T>, const R: usize, const P: usize>(
    acc: &[[std::arch::x86_64::__m512i; P]; R],
    p: &Block<'_, R>,
    b: &PackedI8,
    rows: usize,
    blk0: usize,
    col0: usize,
    out: &mut [T],
    ldc: usize,
    fin: &F,
) {
    use std::arch::x86_64::*;
    let n = b.n();
    for h in 0..P {
        let j0 = (blk0 + h) * pack::BLOCK;
        if j0 >= n {
            break;
        }
        let cols = pack::BLOCK.min(n - j0);
        // SAFETY: AVX-512 F is enabled by the caller; `col_sums`/`zero_points` of a block are
        // 16 i32 (padded to whole blocks); unaligned loads.
        unsafe {
            let sums = _mm512_loadu_si512(b.block_col_sums(blk0 + h).as_ptr() as *const _);
            let zps = _mm512_loadu_si512(b.block_zero_points(blk0 + h).as_ptr() as *const _);
            let fold = _mm512_mullo_epi32(_mm512_set1_epi32(p.offset), sums);
            for r in 0..R {
                if r >= rows {
                    break;
                }
                let mut v = _mm512_add_epi32(acc[r][h], fold);
                if b.has_zero_points() {
                    let term = _mm512_mullo_epi32(zps, _mm512_set1_epi32(p.row_sums[r]));
                    v = _mm512_sub_epi32(v, term);
                }
                let at = r * ldc + j0 - col0;
                fin.finish16(v, j0, &mut out[at..at + cols]);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn row_block_panels<T, F: Finish<T>, const R: usize>(
    kernel: Kernel,
    p: &Block<'_, R>,
    b: &PackedI8,
    rows: usize,
    panels: std::ops::Range<usize>,
    out: &mut [T],
    ldc: usize,
    fin: &F,
) {
    let first = panels.start;
    for pi in panels {
        let acc = tile::<R>(kernel, p, b.panel(pi));
        store::<T, F, R>(kernel, &acc, p, b, rows, pi, first, out, ldc, fin);
    }
}
