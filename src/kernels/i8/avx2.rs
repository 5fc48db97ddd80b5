//! AVX2 INT8 tile kernel: widened activations (i16) × sign-extended weights with `vpmaddwd`.
// Register tiles are indexed by (row, column) on purpose: the loops unroll over constants.
#![allow(clippy::needless_range_loop)]

use super::pack::{panel_len, GS};
use super::{KQ, NR};
use std::arch::x86_64::*;

/// `R × NR` tile: per group of 4 K values, the 4 activations of a row are broadcast as one
/// 64-bit word and `vpmaddwd` with the sign-extended weights gives, per column, two pair sums
/// (`a0b0+a1b1`, `a2b2+a3b3`) that are added horizontally at the end. Exact: no step saturates.
///
/// # Safety
/// The CPU must support AVX2; `a` must hold `R · kp` values and `panel` one packed panel
/// (`panel_len(kp)` bytes, group `q` at `q · GS`), with
/// `kp` a multiple of [`KQ`].
#[target_feature(enable = "avx2")]
pub(super) unsafe fn tile<const R: usize>(a: &[i16], kp: usize, panel: &[i8]) -> [[i32; NR]; R] {
    debug_assert!(a.len() >= R * kp && panel.len() >= panel_len(kp) && kp.is_multiple_of(KQ));
    let mut lo = [_mm256_setzero_si256(); R];
    let mut hi = [_mm256_setzero_si256(); R];
    let (ap, bp) = (a.as_ptr(), panel.as_ptr());
    for q in 0..kp / KQ {
        // SAFETY: q < kp/4, so the 32 bytes at q·GS lie inside `panel` (panel_len(kp) bytes), and the 4
        // i16 at r·kp + 4q lie inside row r of `a`; unaligned loads are used throughout.
        unsafe {
            let b = bp.add(q * GS);
            let b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(b as *const __m128i));
            let b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(b.add(16) as *const __m128i));
            for r in 0..R {
                let aq = (ap.add(r * kp + q * KQ) as *const i64).read_unaligned();
                let av = _mm256_set1_epi64x(aq);
                lo[r] = _mm256_add_epi32(lo[r], _mm256_madd_epi16(av, b0));
                hi[r] = _mm256_add_epi32(hi[r], _mm256_madd_epi16(av, b1));
            }
        }
    }
    let mut out = [[0i32; NR]; R];
    for r in 0..R {
        // hadd gives [c0 c1 c4 c5 | c2 c3 c6 c7]; the permute restores column order.
        let h = _mm256_hadd_epi32(lo[r], hi[r]);
        let v = _mm256_permute4x64_epi64::<0b11_01_10_00>(h);
        // SAFETY: `out[r]` is 8 i32 = 32 bytes; unaligned store.
        unsafe { _mm256_storeu_si256(out[r].as_mut_ptr() as *mut __m256i, v) };
    }
    out
}

/// One tile row dequantized: `y = acc · scale + bias` (multiply, then add: not fused), then
/// `max(y, 0)` when `relu`, which like the scalar form maps NaN and -0 to +0.
///
/// # Safety
/// The CPU must support AVX2. Not a `target_feature` function so that it inlines into the AVX2
/// row loop (`row_block_avx2`); its intrinsics are compiled there.
#[inline(always)]
pub(super) unsafe fn dequantize_row(
    v: &[i32; NR],
    scale: &[f32; NR],
    bias: &[f32; NR],
    relu: bool,
) -> [f32; NR] {
    // SAFETY: every pointer is to an 8-element array; unaligned loads and stores.
    unsafe {
        let acc = _mm256_cvtepi32_ps(_mm256_loadu_si256(v.as_ptr() as *const __m256i));
        let mut y = _mm256_add_ps(
            _mm256_mul_ps(acc, _mm256_loadu_ps(scale.as_ptr())),
            _mm256_loadu_ps(bias.as_ptr()),
        );
        if relu {
            // maxps returns its second operand when the first is NaN or both are zero.
            y = _mm256_max_ps(y, _mm256_setzero_ps());
        }
        let mut out = [0f32; NR];
        _mm256_storeu_ps(out.as_mut_ptr(), y);
        out
    }
}

/// One tile row requantized: `round_half_even((acc + bias) · m)` clamped to `[lo, hi]` in f32
/// (NaN gives `lo`, as the scalar `f32::max` does), converted, offset by `zp` and packed to bytes
/// (the s8 bits when `SIGNED`). The values are inside the output type once offset, so the
/// saturating packs change nothing.
///
/// # Safety
/// The CPU must support AVX2. Not a `target_feature` function so that it inlines into the AVX2
/// row loop (`row_block_avx2`); its intrinsics are compiled there.
#[inline(always)]
pub(super) unsafe fn requantize_row<const SIGNED: bool>(
    v: &[i32; NR],
    bias: &[i32; NR],
    m: &[f32; NR],
    lo: f32,
    hi: f32,
    zp: i32,
) -> [u8; NR] {
    // SAFETY: every pointer is to an 8-element array; unaligned loads.
    unsafe {
        let acc = _mm256_add_epi32(
            _mm256_loadu_si256(v.as_ptr() as *const __m256i),
            _mm256_loadu_si256(bias.as_ptr() as *const __m256i),
        );
        let x = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_loadu_ps(m.as_ptr()));
        let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x);
        // maxps returns its second operand (lo) when the first is NaN.
        let c = _mm256_min_ps(_mm256_max_ps(r, _mm256_set1_ps(lo)), _mm256_set1_ps(hi));
        let q = _mm256_add_epi32(_mm256_cvttps_epi32(c), _mm256_set1_epi32(zp));
        // Per 128-bit lane the packs leave that lane's four values in its low four bytes.
        let b = if SIGNED {
            let w = _mm256_packs_epi32(q, q);
            _mm256_packs_epi16(w, w)
        } else {
            let w = _mm256_packus_epi32(q, q);
            _mm256_packus_epi16(w, w)
        };
        let pair = _mm_unpacklo_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256::<1>(b));
        (_mm_cvtsi128_si64(pair) as u64).to_le_bytes()
    }
}

/// Depthwise row kernel (see [`super::depthwise`]): `acc[ox] += Σ_p vpmaddwd(q[ox + p·step],
/// w[p])` for every `ox < acc.len()`, 8 outputs per vector and up to 4 vectors in registers while
/// the weight pairs stream. Exact: each lane adds two i16 × i16 products (|x|, |w| ≤ 255).
///
/// # Safety
/// AVX2 must be present; `acc.len()` must be a multiple of 8 and `q` hold at least
/// `acc.len() + (w.len() - 1) · step` values.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn depthwise_row(q: &[i32], w: &[i32], step: usize, acc: &mut [i32]) {
    let n = acc.len();
    debug_assert!(n.is_multiple_of(8) && q.len() + step >= n + w.len() * step);
    let mut ox = 0;
    while ox + 32 <= n {
        // SAFETY: forwarded from the caller, with `ox + 32 <= n`.
        unsafe { dw_block::<4>(q, w, step, acc, ox) };
        ox += 32;
    }
    while ox < n {
        // SAFETY: as above, with `ox + 8 <= n` (n is a multiple of 8).
        unsafe { dw_block::<1>(q, w, step, acc, ox) };
        ox += 8;
    }
}

/// `V` vectors of [`depthwise_row`] starting at output `ox`.
///
/// # Safety
/// AVX2 must be present (inlined into [`depthwise_row`]); `ox + 8·V <= acc.len()` and `q` as
/// there.
#[inline(always)]
unsafe fn dw_block<const V: usize>(q: &[i32], w: &[i32], step: usize, acc: &mut [i32], ox: usize) {
    let (qp, ap) = (q.as_ptr(), acc.as_mut_ptr());
    // SAFETY: the caller guarantees that the 8·V accumulators at `ox` and, for every pair p,
    // the 8·V values at `ox + p·step` of `q` are in bounds; unaligned loads and stores.
    unsafe {
        let mut a = [_mm256_setzero_si256(); V];
        for v in 0..V {
            a[v] = _mm256_loadu_si256(ap.add(ox + 8 * v) as *const __m256i);
        }
        for (p, &wp) in w.iter().enumerate() {
            let wv = _mm256_set1_epi32(wp);
            let base = qp.add(ox + p * step);
            for v in 0..V {
                let x = _mm256_loadu_si256(base.add(8 * v) as *const __m256i);
                a[v] = _mm256_add_epi32(a[v], _mm256_madd_epi16(x, wv));
            }
        }
        for v in 0..V {
            _mm256_storeu_si256(ap.add(ox + 8 * v) as *mut __m256i, a[v]);
        }
    }
}
