//! AVX2+FMA 4-bit column kernels. Nibbles are unpacked once per chunk and shared by the `R`
//! rows; F32 converts them to f32 and uses FMA, Int8 multiplies them exactly with
//! `vpmaddubsw(|a|, sign(q - zp, a))` (|a| ≤ 127, |q - zp| ≤ 15: no saturation) and `vpmaddwd`.

// Register tiles are indexed by row on purpose: the loops unroll over constants.
#![allow(clippy::needless_range_loop)]

use super::{hsum8, Column, CHUNK};
use std::arch::x86_64::*;

/// The shared final sum: accumulators added lane-wise, then [`hsum8`].
#[inline(always)]
unsafe fn finish(a0: __m256, a1: __m256) -> f32 {
    let mut v = [0f32; 8];
    // SAFETY: `v` holds 8 f32; unaligned store. Callers run with AVX enabled.
    unsafe { _mm256_storeu_ps(v.as_mut_ptr(), _mm256_add_ps(a0, a1)) };
    hsum8(v)
}

/// Runs `chunk(c, acc)` for every chunk, even chunks into one accumulator and odd ones into
/// another (unrolled by two so both stay in registers), then gives each row's final sum.
#[inline(always)]
unsafe fn two_chains<const R: usize>(
    chunks: usize,
    mut chunk: impl FnMut(usize, &mut [__m256; R]),
) -> [f32; R] {
    // SAFETY: callers run with AVX2 enabled.
    unsafe {
        let mut acc0 = [_mm256_setzero_ps(); R];
        let mut acc1 = [_mm256_setzero_ps(); R];
        let mut c = 0;
        while c + 1 < chunks {
            chunk(c, &mut acc0);
            chunk(c + 1, &mut acc1);
            c += 2;
        }
        if c < chunks {
            chunk(c, &mut acc0);
        }
        std::array::from_fn(|r| finish(acc0[r], acc1[r]))
    }
}

/// f32 activations × dequantized 4-bit column for `R` rows.
///
/// # Safety
/// AVX2 and FMA must be present; `a` holds `R · kp` values, `col.bytes` `kp / 2` bytes and
/// `col.scales` one scale per block.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dot_f32<const R: usize>(a: &[f32], kp: usize, col: Column<'_>) -> [f32; R] {
    debug_assert!(a.len() >= R * kp && col.bytes.len() * 2 >= kp);
    let nib = _mm256_set1_epi32(0xf);
    let (ap, bp) = (a.as_ptr(), col.bytes.as_ptr());
    let chunk = |c: usize, acc: &mut [__m256; R]| {
        let bl = col.block_of(c);
        let zp = _mm256_set1_ps(col.zp(bl) as f32);
        let s = _mm256_set1_ps(col.scales[bl]);
        // SAFETY: chunk c's 16 bytes lie inside the column (kp / 2 bytes) and its 32 values
        // inside each row of `a`.
        unsafe {
            let b0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(bp.add(c * 16) as *const __m128i));
            let b1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(bp.add(c * 16 + 8) as *const __m128i));
            let w = [
                _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_and_si256(b0, nib)), zp),
                _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_and_si256(b1, nib)), zp),
                _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32::<4>(b0)), zp),
                _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32::<4>(b1)), zp),
            ];
            for r in 0..R {
                let ar = ap.add(r * kp + c * CHUNK);
                let mut t = _mm256_mul_ps(w[0], _mm256_loadu_ps(ar));
                t = _mm256_fmadd_ps(w[1], _mm256_loadu_ps(ar.add(8)), t);
                t = _mm256_fmadd_ps(w[2], _mm256_loadu_ps(ar.add(16)), t);
                t = _mm256_fmadd_ps(w[3], _mm256_loadu_ps(ar.add(24)), t);
                acc[r] = _mm256_fmadd_ps(t, s, acc[r]);
            }
        }
    };
    two_chains::<R>(kp / CHUNK, chunk)
}

/// Int8 block-quantized activations (`abs` = |q|, `q` signed) × 4-bit column for `R` rows.
///
/// # Safety
/// AVX2 and FMA must be present; `abs` and `q` hold `R · kp` values, `qscale` `R` rows of one
/// scale per block, `col.bytes` `kp / 2` bytes.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dot_i8<const R: usize>(
    abs: &[u8],
    q: &[i8],
    qscale: &[f32],
    kp: usize,
    col: Column<'_>,
) -> [f32; R] {
    debug_assert!(abs.len() >= R * kp && q.len() >= R * kp && col.bytes.len() * 2 >= kp);
    let blocks = kp / col.block;
    let nib = _mm_set1_epi8(0xf);
    let ones = _mm256_set1_epi16(1);
    let bp = col.bytes.as_ptr();
    let chunk = |c: usize, acc: &mut [__m256; R]| {
        let bl = col.block_of(c);
        let sw = col.scales[bl];
        // SAFETY: chunk c's 16 bytes lie inside the column; its 32 values inside each row.
        unsafe {
            let raw = _mm_loadu_si128(bp.add(c * 16) as *const __m128i);
            let lo = _mm_and_si128(raw, nib);
            let hi = _mm_and_si128(_mm_srli_epi16::<4>(raw), nib);
            let w = _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(col.zp(bl) as i8));
            for r in 0..R {
                let off = r * kp + c * CHUNK;
                let av = _mm256_loadu_si256(q.as_ptr().add(off) as *const __m256i);
                let aa = _mm256_loadu_si256(abs.as_ptr().add(off) as *const __m256i);
                let t = _mm256_madd_epi16(_mm256_maddubs_epi16(aa, _mm256_sign_epi8(w, av)), ones);
                let s = _mm256_set1_ps(sw * qscale[r * blocks + bl]);
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(t), s, acc[r]);
            }
        }
    };
    two_chains::<R>(kp / CHUNK, chunk)
}
