//! Int8 activations for [`super::Q4Mode::Int8`]: each block of a row gets the scale
//! `max|a| / 127` and its values `round_half_even(a / scale)` clamped to ±127 (ORT
//! MatMulNBits' accuracy level 4), in natural order.
//!
//! One portable body serves every kernel; the AVX-512 VNNI kernel runs it compiled with
//! AVX-512 enabled, where the compiler vectorizes it (and inlines the rounding, a libm call
//! otherwise). Both compute the same IEEE operations per value, so the bits are the same; the
//! grouped scalar twin runs the portable build and the kernel tests compare the two.

/// Lanes of the running maximum: a maximum does not depend on the order it is taken in, so
/// lane-wise partial maxima give the same value as a sequential fold.
const LANES: usize = 16;

/// Quantizes one row `x` (`k` values) block by block into `scales` (one per block) and `q`
/// (at least `k` values; the rest is left as it is).
pub(super) fn quantize_row(simd: bool, x: &[f32], block: usize, scales: &mut [f32], q: &mut [i8]) {
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: `simd` is set only for the AVX-512 VNNI kernel, which runs only on CPUs with
        // AVX-512 F/BW/VL.
        unsafe { quantize_row_avx512(x, block, scales, q) };
        return;
    }
    let _ = simd;
    quantize_row_portable(x, block, scales, q);
}

/// [`quantize_row_portable`] compiled for AVX-512.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn quantize_row_avx512(x: &[f32], block: usize, scales: &mut [f32], q: &mut [i8]) {
    quantize_row_portable(x, block, scales, q);
}

#[inline(always)]
fn quantize_row_portable(x: &[f32], block: usize, scales: &mut [f32], q: &mut [i8]) {
    for ((vals, out), scale) in x.chunks(block).zip(q.chunks_mut(block)).zip(scales) {
        let mut lanes = [0f32; LANES];
        let mut chunks = vals.chunks_exact(LANES);
        for c in chunks.by_ref() {
            for (m, &v) in lanes.iter_mut().zip(c) {
                *m = m.max(v.abs());
            }
        }
        let tail = chunks.remainder().iter().fold(0f32, |m, &v| m.max(v.abs()));
        let s = lanes.iter().fold(tail, |m, &v| m.max(v)) / 127.0;
        *scale = s;
        let out = &mut out[..vals.len()];
        if s > 0.0 {
            for (o, &v) in out.iter_mut().zip(vals) {
                *o = (v / s).round_ties_even().clamp(-127.0, 127.0) as i8;
            }
        } else {
            out.fill(0);
        }
    }
}
