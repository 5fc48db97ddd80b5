//! AVX-512 VNNI 4-bit kernel over the [`super::interleave`] layout: 16 columns per 512-bit
//! vector, `vpdpbusd` of the unpacked nibbles (u8) with four broadcast int8 activations, the
//! zero point taken off as `zp · Σq` (exact in f32: see below), then one fused multiply-add per
//! block by the combined scale. Bit-identical with [`super::interleave::dot_group`].

// Register tiles are indexed by row on purpose: the loops unroll over constants.
#![allow(clippy::needless_range_loop)]

use super::interleave::{Group, Rows, NG, STEP};
use std::arch::x86_64::*;

/// `R` rows × the group's 16 columns, before the bias.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VNNI; `g` must be a group of an [`super::interleave::Interleaved`]
/// and `a` hold `R` rows of `g.blocks · g.block` values with `R · g.blocks` scales and sums.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn dot_group<const R: usize>(g: Group<'_>, a: Rows<'_>) -> [[f32; NG]; R] {
    let steps = g.block / STEP;
    debug_assert!(g.bytes.len() >= g.blocks * steps * 64 && a.kp >= g.blocks * g.block);
    debug_assert!(a.q.len() >= R * a.kp && a.qsum.len() >= R * g.blocks);
    let nib = _mm512_set1_epi8(0x0f);
    let (bp, qp) = (g.bytes.as_ptr(), a.q.as_ptr());
    let mut acc = [_mm512_setzero_ps(); R];
    for bl in 0..g.blocks {
        let mut dot = [_mm512_setzero_si512(); R];
        for st in 0..steps {
            let k0 = bl * g.block + st * STEP;
            // SAFETY: the step's 64 bytes lie inside the group (length checked above), and
            // values k0 .. k0 + 8 inside each of the R rows of `q`.
            unsafe {
                let w = _mm512_loadu_si512(bp.add((bl * steps + st) * 64) as *const _);
                let wl = _mm512_and_si512(w, nib);
                let wh = _mm512_and_si512(_mm512_srli_epi16::<4>(w), nib);
                for r in 0..R {
                    let q = qp.add(r * a.kp + k0);
                    let q0 = _mm512_set1_epi32((q as *const i32).read_unaligned());
                    let q1 = _mm512_set1_epi32((q.add(4) as *const i32).read_unaligned());
                    dot[r] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(dot[r], wl, q0), wh, q1);
                }
            }
        }
        // SAFETY: block bl's 16 zero points and scales lie inside the group's slices.
        let (zp, sc) = unsafe {
            (
                _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(
                    g.zps.as_ptr().add(bl * NG) as *const _,
                ))),
                _mm512_loadu_ps(g.scales.as_ptr().add(bl * NG)),
            )
        };
        for r in 0..R {
            // `Σ q·w` and `zp · Σ q` are integers below 2^24 in magnitude (at most
            // 128 · 127 · 15 each), so the f32 conversion, product and difference are all exact:
            // the same value as the twin's i32 `s`.
            let qsum = _mm512_set1_ps(a.qsum[r * g.blocks + bl] as f32);
            let s = _mm512_fnmadd_ps(zp, qsum, _mm512_cvtepi32_ps(dot[r]));
            let scale = _mm512_mul_ps(sc, _mm512_set1_ps(a.qscale[r * g.blocks + bl]));
            acc[r] = _mm512_fmadd_ps(s, scale, acc[r]);
        }
    }
    let mut out = [[0f32; NG]; R];
    for r in 0..R {
        // SAFETY: `out[r]` holds 16 f32; unaligned store.
        unsafe { _mm512_storeu_ps(out[r].as_mut_ptr(), acc[r]) };
    }
    out
}
