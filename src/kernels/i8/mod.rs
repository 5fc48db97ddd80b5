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
mod pack;
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
pub use pack::{PackedI8, WeightZeroPoint};

use super::par;
use super::{isa, Isa};
use epilogue::Finish;

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

    /// The constant with `a - za = shifted + offset`, where `shifted` is `a` moved to s8 (u8
    /// values XOR 0x80, s8 values as they are) for `sdot`; its bits XOR 0x80, read as u8, are
    /// the value shifted to u8 for `vpdpbusd` (offset 128 less).
    #[cfg_attr(
        not(any(target_arch = "aarch64", target_arch = "x86_64")),
        allow(dead_code)
    )]
    fn shift_offset(&self) -> i32 {
        match *self {
            Activations::U8 { zero_point, .. } => 128 - zero_point as i32,
            Activations::S8 { zero_point, .. } => -(zero_point as i32),
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

/// Activations made ready for the inner kernels: one copy per call, padded to whole tiles.
struct Prepared {
    /// Centred i16 values (`a - za`), `rows × kp`, for the widening kernels.
    wide: Vec<i16>,
    /// Shifted s8 values (`sdot`) or their u8 bits (`vpdpbusd`), `rows × kp`.
    narrow: Vec<i8>,
    /// `Σ_k (a - za)` per row, for the weight zero point.
    row_sums: Vec<i32>,
    /// `a - za = shifted + offset` (0 for the widening kernels).
    offset: i32,
    kp: usize,
}

impl Prepared {
    fn new(
        kernel: Kernel,
        m: usize,
        a: Activations<'_>,
        lda: usize,
        k: usize,
        kp: usize,
        tile_rows: usize,
    ) -> Prepared {
        let rows = m.div_ceil(tile_rows) * tile_rows;
        let narrow = kernel.narrow();
        // `sdot` reads s8; `vpdpbusd` reads the same value + 128 as u8, i.e. the bits XOR 0x80.
        let (flip, unsigned_shift) = if kernel.unsigned_bytes() {
            (0x80u8 as i8, 128)
        } else {
            (0, 0)
        };
        let mut p = Prepared {
            wide: if narrow {
                Vec::new()
            } else {
                vec![0; rows * kp]
            },
            narrow: if narrow {
                vec![0; rows * kp]
            } else {
                Vec::new()
            },
            row_sums: vec![0; rows],
            offset: if narrow {
                a.shift_offset() - unsigned_shift
            } else {
                0
            },
            kp,
        };
        // `vpdpbusd` tiles read their row block interleaved by K group (see `vnni::tile_z`);
        // `sdot` reads rows as they are.
        let group_rows = if kernel.unsigned_bytes() {
            tile_rows
        } else {
            1
        };
        for i in 0..m {
            let (row, at) = (i * lda, i * kp);
            // The element type is matched once per row, so each loop runs over plain bytes and
            // vectorizes. Padding columns stay 0 (i16) or contribute nothing: the weight padding
            // is 0.
            p.row_sums[i] = match a {
                Activations::U8 { data, zero_point } => {
                    let src = &data[row..row + k];
                    if narrow {
                        // Shifted to s8 is `x ^ 0x80`; `flip` undoes it for `vpdpbusd`.
                        if group_rows == 1 {
                            let bits = 0x80 ^ flip as u8;
                            for (d, &x) in p.narrow[at..at + k].iter_mut().zip(src) {
                                *d = (x ^ bits) as i8;
                            }
                        }
                    } else {
                        let z = i16::from(zero_point);
                        for (d, &x) in p.wide[at..at + k].iter_mut().zip(src) {
                            *d = i16::from(x) - z;
                        }
                    }
                    src.iter().map(|&x| x as i32).sum::<i32>() - k as i32 * zero_point as i32
                }
                Activations::S8 { data, zero_point } => {
                    let src = &data[row..row + k];
                    if narrow {
                        if group_rows == 1 {
                            for (d, &x) in p.narrow[at..at + k].iter_mut().zip(src) {
                                *d = x ^ flip;
                            }
                        }
                    } else {
                        let z = i16::from(zero_point);
                        for (d, &x) in p.wide[at..at + k].iter_mut().zip(src) {
                            *d = i16::from(x) - z;
                        }
                    }
                    src.iter().map(|&x| x as i32).sum::<i32>() - k as i32 * zero_point as i32
                }
            };
        }
        if narrow && group_rows > 1 {
            let (bytes, xor): (&[u8], u8) = match a {
                Activations::U8 { data, .. } => (data, 0x80 ^ flip as u8),
                Activations::S8 { data, .. } => (bytemuck::cast_slice(data), flip as u8),
            };
            interleave(&mut p.narrow, bytes, lda, m, k, kp, group_rows, xor);
        }
        p
    }
}

/// Copies the `m × k` activation bytes `src` (row stride `lda`), XOR `xor`, into `dst` in blocks
/// of `group_rows` rows (`kp` values each) interleaved by K group: group `q` of row `r` of a
/// block is the [`KQ`] bytes at `block start + (q · group_rows + r) · KQ`. Positions past `k` and
/// rows past `m` are left as they are (zero).
#[allow(clippy::too_many_arguments)]
fn interleave(
    dst: &mut [i8],
    src: &[u8],
    lda: usize,
    m: usize,
    k: usize,
    kp: usize,
    group_rows: usize,
    xor: u8,
) {
    let dst: &mut [u8] = bytemuck::cast_slice_mut(dst);
    for (blk, d) in dst.chunks_exact_mut(group_rows * kp).enumerate() {
        let row0 = blk * group_rows;
        if row0 >= m {
            break;
        }
        let rows = group_rows.min(m - row0);
        let row = |r: usize| &src[(row0 + r) * lda..(row0 + r) * lda + k];
        // Four rows at a time, 16 K values (four groups) at a time, as 4×4 transposes of words.
        #[cfg(target_arch = "x86_64")]
        let done = {
            let quads = rows / 4 * 4;
            for r in (0..quads).step_by(4) {
                let four = [row(r), row(r + 1), row(r + 2), row(r + 3)];
                vnni::interleave4(d, group_rows, r, four, xor);
            }
            (quads, k / 16 * 16)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let done = (0, 0);
        // The rest one byte at a time: K values past `done.1` of the rows done above, and every
        // value of the rows after them.
        for r in 0..rows {
            let from = if r < done.0 { done.1 } else { 0 };
            for (kk, &x) in row(r).iter().enumerate().skip(from) {
                d[((kk / KQ) * group_rows + r) * KQ + kk % KQ] = x ^ xor;
            }
        }
    }
}

/// Computes one `R × NR` tile: rows `row0..row0+R` of the prepared activations times one panel.
#[inline(always)]
fn tile<const R: usize>(kernel: Kernel, p: &Prepared, row0: usize, panel: &[i8]) -> [[i32; NR]; R] {
    let kp = p.kp;
    match kernel {
        Kernel::Scalar => scalar::tile::<R>(&p.wide[row0 * kp..(row0 + R) * kp], kp, panel),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => {
            let a = &p.wide[row0 * kp..(row0 + R) * kp];
            // SAFETY: `Kernel::Avx2` is only chosen when `isa()` detected AVX2; `a` holds R rows
            // of `kp` values and `panel` holds `kp * NR` bytes, as `avx2::tile` requires.
            unsafe { avx2::tile::<R>(a, kp, panel) }
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Vnni => {
            let a = &p.narrow[row0 * kp..(row0 + R) * kp];
            // SAFETY: `Kernel::Vnni` is only chosen when `isa()` detected AVX-512 F/BW/VL/VNNI,
            // and `tile` is only reached through `row_block_vnni`, which enables them; `a` holds
            // R rows of `kp` bytes and `panel` `kp * NR` bytes, as `vnni::tile` requires.
            unsafe { vnni::tile::<R>(a, kp, panel) }
        }
        #[cfg(target_arch = "aarch64")]
        Kernel::Neon => {
            let a = &p.wide[row0 * kp..(row0 + R) * kp];
            // SAFETY: NEON is detected by `isa()`; slice lengths as `neon::tile_widen` requires.
            unsafe { neon::tile_widen::<R>(a, kp, panel) }
        }
        #[cfg(target_arch = "aarch64")]
        Kernel::NeonDot => {
            let a = &p.narrow[row0 * kp..(row0 + R) * kp];
            // SAFETY: dotprod is detected by `isa()`; slice lengths as `neon::tile_dot` requires.
            unsafe { neon::tile_dot::<R>(a, kp, panel) }
        }
    }
}

/// Stores one tile through the epilogue, folding the zero-point terms in. `out` starts at row
/// `row0` and column `col0` of the output.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn store<T, F: Finish<T>, const R: usize>(
    kernel: Kernel,
    acc: &[[i32; NR]; R],
    p: &Prepared,
    b: &PackedI8,
    row0: usize,
    rows: usize,
    col0: usize,
    out: &mut [T],
    ldc: usize,
    fin: &F,
) {
    let cols = NR.min(b.n() - col0);
    let (sums, zps) = (b.col_sums(col0 / NR), b.zero_points(col0 / NR));
    let simd = kernel.simd_epilogue();
    for (r, acc_row) in acc.iter().enumerate().take(rows) {
        let row_sum = p.row_sums[row0 + r];
        let mut v = [0i32; NR];
        for c in 0..NR {
            v[c] = acc_row[c]
                .wrapping_add(p.offset.wrapping_mul(sums[c]))
                .wrapping_sub(zps[c].wrapping_mul(row_sum));
        }
        fin.finish_row(simd, &v, col0, &mut out[r * ldc..r * ldc + cols]);
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

fn gemm_with(
    kernel: Kernel,
    m: usize,
    a: Activations<'_>,
    lda: usize,
    b: &PackedI8,
    out: Output<'_>,
    ldc: usize,
) -> Result<(), I8Error> {
    let (k, n) = (b.k(), b.n());
    if lda < k {
        return Err(I8Error::Stride {
            what: "lda",
            got: lda,
            min: k,
        });
    }
    if ldc < n {
        return Err(I8Error::Stride {
            what: "ldc",
            got: ldc,
            min: n,
        });
    }
    check_len("activations", m, lda, k, a.len())?;
    out.check(m, n, ldc)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    match out {
        Output::I32(c) => run(kernel, m, a, lda, b, c, ldc, &epilogue::Raw),
        Output::F32(c, d) => run(kernel, m, a, lda, b, c, ldc, &d),
        Output::U8(c, r) => run(kernel, m, a, lda, b, c, ldc, &r.for_u8()),
        Output::S8(c, r) => run(kernel, m, a, lda, b, c, ldc, &r.for_s8()),
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn run<T: Send, F: Finish<T> + Send>(
    kernel: Kernel,
    m: usize,
    a: Activations<'_>,
    lda: usize,
    b: &PackedI8,
    c: &mut [T],
    ldc: usize,
    fin: &F,
) {
    if m == 1 {
        let p = Prepared::new(kernel, 1, a, lda, b.k(), b.kp(), 1);
        let n = b.n();
        let per = n
            .div_ceil(NR)
            .div_ceil(crate::kernels::threads() * 4)
            .max(1)
            * NR;
        par::for_each_chunk(&mut c[..n], per, |ci, chunk| {
            let first = ci * per / NR;
            let panels = first..first + chunk.len().div_ceil(NR);
            row_block::<T, F, 1>(kernel, &p, b, 0, 1, panels, chunk, ldc, fin)
        });
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Vnni {
        return run_rows::<T, F, { vnni::ZR }>(kernel, m, a, lda, b, c, ldc, fin);
    }
    run_rows::<T, F, MR>(kernel, m, a, lda, b, c, ldc, fin);
}

/// The GEMM path (`m > 1`): blocks of `R` rows split over the workers, each block times every
/// panel.
#[allow(clippy::too_many_arguments)]
fn run_rows<T: Send, F: Finish<T> + Send, const R: usize>(
    kernel: Kernel,
    m: usize,
    a: Activations<'_>,
    lda: usize,
    b: &PackedI8,
    c: &mut [T],
    ldc: usize,
    fin: &F,
) {
    let p = Prepared::new(kernel, m, a, lda, b.k(), b.kp(), R);
    par::for_each_chunk(&mut c[..(m - 1) * ldc + b.n()], R * ldc, |bi, chunk| {
        let row0 = bi * R;
        let rows = R.min(m - row0);
        row_block::<T, F, R>(kernel, &p, b, row0, rows, 0..b.panels(), chunk, ldc, fin);
    });
}

/// Rows `row0 .. row0 + rows` (an `R`-row tile) times the weight panels `panels`, stored into
/// `out`, which starts at that row and at column `panels.start · NR`. For AVX2 the whole loop runs
/// inside one AVX2 function so the tile kernel and the epilogue inline into it.
#[allow(clippy::too_many_arguments)]
fn row_block<T, F: Finish<T>, const R: usize>(
    kernel: Kernel,
    p: &Prepared,
    b: &PackedI8,
    row0: usize,
    rows: usize,
    panels: std::ops::Range<usize>,
    out: &mut [T],
    ldc: usize,
    fin: &F,
) {
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Avx2 {
        // SAFETY: `Kernel::Avx2` is chosen only when AVX2 was detected.
        unsafe { row_block_avx2::<T, F, R>(p, b, row0, rows, panels, out, ldc, fin) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Vnni {
        // SAFETY: `Kernel::Vnni` is chosen only when AVX-512 F/BW/VL/VNNI (and AVX2) were detected.
        unsafe { row_block_vnni::<T, F, R>(p, b, row0, rows, panels, out, ldc, fin) };
        return;
    }
    row_block_body::<T, F, R>(kernel, p, b, row0, rows, panels, out, ldc, fin);
}

/// [`row_block_body`] compiled with AVX2 enabled.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn row_block_avx2<T, F: Finish<T>, const R: usize>(
    p: &Prepared,
    b: &PackedI8,
    row0: usize,
    rows: usize,
    panels: std::ops::Range<usize>,
    out: &mut [T],
    ldc: usize,
    fin: &F,
) {
    row_block_body::<T, F, R>(Kernel::Avx2, p, b, row0, rows, panels, out, ldc, fin);
}

/// [`row_block_body`] compiled with AVX2 and AVX-512 VNNI enabled.
///
/// # Safety
/// The CPU must support AVX2, FMA and AVX-512 F/BW/VL/VNNI.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
#[allow(clippy::too_many_arguments)]
unsafe fn row_block_vnni<T, F: Finish<T>, const R: usize>(
    p: &Prepared,
    b: &PackedI8,
    row0: usize,
    rows: usize,
    panels: std::ops::Range<usize>,
    out: &mut [T],
    ldc: usize,
    fin: &F,
) {
    row_block_body::<T, F, R>(Kernel::Vnni, p, b, row0, rows, panels, out, ldc, fin);
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn row_block_body<T, F: Finish<T>, const R: usize>(
    kernel: Kernel,
    p: &Prepared,
    b: &PackedI8,
    row0: usize,
    rows: usize,
    panels: std::ops::Range<usize>,
    out: &mut [T],
    ldc: usize,
    fin: &F,
) {
    let first = panels.start;
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut pi = panels.start;
    // VNNI GEMM tiles run 512-bit `vpdpbusd` over whole blocks of two panels: 32 columns (two
    // blocks) at a time, then 16, so `R × 2` or `R` independent chains per K group share each
    // weight load; panels past N inside the last block are computed but not stored.
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Vnni && R > 1 && pi.is_multiple_of(pack::PAIR) {
        let kp = p.kp;
        let a = &p.narrow[row0 * kp..(row0 + R) * kp];
        let mut acc = [[[0i32; NR]; R]; 4];
        while pi < panels.end {
            let blk = pi / pack::PAIR;
            let two = pi + pack::PAIR < panels.end;
            // SAFETY: `Kernel::Vnni` runs only inside `row_block_vnni`, which enables AVX-512
            // F/BW/VL/VNNI after detection; `a` is this row block (R rows of `kp` bytes,
            // interleaved by `Prepared`) and every block `kp · 16` bytes, as `tile_z` requires.
            unsafe {
                if two {
                    vnni::tile_z::<R, 2>(a, kp, [b.block(blk), b.block(blk + 1)], &mut acc);
                } else {
                    vnni::tile_z::<R, 1>(a, kp, [b.block(blk)], &mut acc);
                }
            }
            let width = if two { 2 * pack::PAIR } else { pack::PAIR };
            for (h, acc) in acc.iter().enumerate().take(width.min(panels.end - pi)) {
                store_panel::<T, F, R>(kernel, acc, p, b, row0, rows, pi + h, first, out, ldc, fin);
            }
            pi += width;
        }
    }
    for pi in pi..panels.end {
        let acc = tile::<R>(kernel, p, row0, b.panel(pi));
        store_panel::<T, F, R>(kernel, &acc, p, b, row0, rows, pi, first, out, ldc, fin);
    }
}

/// [`store`] of panel `pi` into `out`, which starts at column `first · NR`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn store_panel<T, F: Finish<T>, const R: usize>(
    kernel: Kernel,
    acc: &[[i32; NR]; R],
    p: &Prepared,
    b: &PackedI8,
    row0: usize,
    rows: usize,
    pi: usize,
    first: usize,
    out: &mut [T],
    ldc: usize,
    fin: &F,
) {
    let off = (pi - first) * NR;
    store::<T, F, R>(
        kernel,
        acc,
        p,
        b,
        row0,
        rows,
        pi * NR,
        &mut out[off..],
        ldc,
        fin,
    );
}
