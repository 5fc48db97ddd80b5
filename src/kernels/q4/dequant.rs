//! The F32-mode path for many rows: weights dequantized a strip at a time and multiplied on the
//! f32 GEMM.
//!
//! The column kernels unpack every nibble once per group of [`super::MR`] rows, so their cost
//! per multiply-add stays that of a GEMV. With `m >= DEQUANT_MIN_M` rows this path instead
//! dequantizes [`STRIP`] columns of W (`(q - zp) · scale`, exact per value) into a
//! row-major f32 buffer and runs the blocked f32 GEMM with that strip as A (read in place) and
//! the activations, packed once per call, as B: `strip[STRIP×K] · Aᵀ[K×m]`. The strip's result
//! (columns of Y) is added to the bias as it is stored. Each weight is dequantized once per
//! call, whatever m is.
//!
//! The dequantization is one portable function, compiled a second time with AVX2 enabled (it
//! vectorizes); both give the same bits, since a subtraction and a product round the same way
//! whatever the vector width. Results differ from the column kernels only by the f32 GEMM's
//! order of summation: the tests bound the difference as the f32 GEMM's are bounded.

use super::PackedQ4;
use crate::kernels::f32 as kf32;

/// Rows from which the SIMD kernels take this path in F32 mode. Not tuned: at 16 and 64 rows
/// × 4096² this path measured on par with ONNX Runtime's `accuracy_level=0`, between 1 and 7
/// rows it is untested against the column kernels.
pub(super) const DEQUANT_MIN_M: usize = 8;
/// Weight columns dequantized at a time: the f32 GEMM's M block (144 rows), whose 256-deep K
/// block (144 KiB) it keeps in L2 while every activation panel passes; fewer, taller strips
/// stream the packed activations fewer times.
const STRIP: usize = 144;

/// `out[m×N] = A[m×K] · dequant(B)ᵀ + bias`, with the rows split over the rayon pool.
pub(super) fn gemm(
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedQ4,
    bias: Option<&[f32]>,
    out: &mut [f32],
    ldc: usize,
) {
    let threads = crate::kernels::threads();
    let rows = if threads > 1 {
        m.div_ceil(threads).max(1)
    } else {
        m
    };
    crate::kernels::par::for_each_chunk(out, rows * ldc, |ci, ch| {
        let r0 = ci * rows;
        let r = rows.min(m - r0);
        crate::kernels::serial(|| rows_block(r, &a[r0 * lda..], lda, b, bias, ch, ldc));
    });
}

/// [`gemm`] for one block of `m` rows on the calling thread.
fn rows_block(
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedQ4,
    bias: Option<&[f32]>,
    out: &mut [f32],
    ldc: usize,
) {
    let (n, k) = (b.n(), b.k());
    let kpad = b.blocks() * b.block();
    let acts = kf32::PackedB::from_n_by_k_strided(m, k, a, lda);
    let mut strip = vec![0f32; STRIP.min(n) * kpad];
    let mut y = vec![0f32; STRIP.min(n) * m];
    let epi = kf32::Epilogue {
        bias: None,
        act: kf32::Activation::None,
    };
    for j0 in (0..n).step_by(STRIP) {
        let cols = STRIP.min(n - j0);
        for (c, dst) in strip.chunks_exact_mut(kpad).take(cols).enumerate() {
            dequantize(b, j0 + c, dst);
        }
        kf32::gemm(cols, &strip, kpad, &acts, epi, &mut y, m);
        // Row by row of `out`, so stores are contiguous; the strided reads of `y` revisit the
        // same `cols` cache lines for 16 rows in a row.
        for (i, orow) in out.chunks_mut(ldc).take(m).enumerate() {
            for (c, o) in orow[j0..j0 + cols].iter_mut().enumerate() {
                *o = y[c * m + i] + bias.map_or(0.0, |bv| bv[j0 + c]);
            }
        }
    }
}

/// Column `j` of W dequantized into `dst` (`blocks · block` values, padding included).
fn dequantize(b: &PackedQ4, j: usize, dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::isa().has_avx2() {
        #[target_feature(enable = "avx2,fma")]
        fn avx2(b: &PackedQ4, j: usize, dst: &mut [f32]) {
            dequantize_portable(b, j, dst);
        }
        // SAFETY: `isa()` reports AVX2 only after detecting AVX2 and FMA on this CPU.
        unsafe { avx2(b, j, dst) };
        return;
    }
    dequantize_portable(b, j, dst);
}

/// The portable body of [`dequantize`]: value `kk` is `(nibble - zp) · scale` of its block.
#[inline(always)]
pub(super) fn dequantize_portable(b: &PackedQ4, j: usize, dst: &mut [f32]) {
    let half = b.block() / 2;
    let (bytes, scales) = (b.column(j), b.column_scales(j));
    for (bl, (src, out)) in bytes
        .chunks_exact(half)
        .zip(dst.chunks_exact_mut(b.block()))
        .enumerate()
    {
        let (zp, s) = (f32::from(b.zero_point(j, bl)), scales[bl]);
        for (&byte, pair) in src.iter().zip(out.chunks_exact_mut(2)) {
            pair[0] = (f32::from(byte & 0xf) - zp) * s;
            pair[1] = (f32::from(byte >> 4) - zp) * s;
        }
    }
}
