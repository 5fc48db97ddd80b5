//! AVX-512 VNNI INT8 tile kernel: u8 activations × s8 weights with `vpdpbusd` on 256-bit vectors.
//!
//! `vpdpbusd` multiplies four u8 × s8 pairs per i32 lane and adds them and the accumulator with
//! wrapping i32 arithmetic: no intermediate step saturates (that is `vpdpbusds`), so the result is
//! exact while the true sum fits i32, which [`super::K_MAX`] guarantees. The packed panel layout
//! (`[c0k0..c0k3 c1k0 … c7k3]` per group of four K) is exactly one `vpdpbusd` operand, and the
//! lanes come out in column order.
// Register tiles are indexed by (row, column) on purpose: the loops unroll over constants.
#![allow(clippy::needless_range_loop)]

use super::{KQ, NR};
use std::arch::x86_64::*;

/// `R × NR` tile of `Σ_k a[r][k] · b[k][c]` with `a` the activation bytes read as u8.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI; `a` must hold `R · kp` bytes and `panel` `kp · NR`
/// bytes, with `kp` a multiple of [`KQ`].
#[inline(always)]
pub(super) unsafe fn tile<const R: usize>(a: &[i8], kp: usize, panel: &[i8]) -> [[i32; NR]; R] {
    // One row has a single accumulator chain: split it over four K groups to hide the latency.
    if R == 1 {
        // SAFETY: forwarded from the caller.
        unsafe { tile_u::<R, 4>(a, kp, panel) }
    } else {
        // SAFETY: forwarded from the caller.
        unsafe { tile_u::<R, 2>(a, kp, panel) }
    }
}

/// Two `R × NR` tiles, of panels `p0` and `p1`, in one pass over the activations.
///
/// # Safety
/// As [`tile`], for both panels.
#[inline(always)]
pub(super) unsafe fn tile2<const R: usize>(
    a: &[i8],
    kp: usize,
    p0: &[i8],
    p1: &[i8],
) -> ([[i32; NR]; R], [[i32; NR]; R]) {
    debug_assert!(a.len() >= R * kp && p0.len() >= kp * NR && p1.len() >= kp * NR);
    debug_assert!(kp.is_multiple_of(KQ));
    // SAFETY: the caller guarantees AVX-512 VNNI/VL and the lengths; for q < kp/4 the 32 bytes
    // at q·32 lie inside each panel and the 4 bytes at r·kp + 4q inside row r of `a`.
    unsafe {
        let mut acc0 = [_mm256_setzero_si256(); R];
        let mut acc1 = [_mm256_setzero_si256(); R];
        let (ap, b0p, b1p) = (a.as_ptr(), p0.as_ptr(), p1.as_ptr());
        for q in 0..kp / KQ {
            let b0 = _mm256_loadu_si256(b0p.add(q * KQ * NR) as *const __m256i);
            let b1 = _mm256_loadu_si256(b1p.add(q * KQ * NR) as *const __m256i);
            for r in 0..R {
                let aq = (ap.add(r * kp + q * KQ) as *const i32).read_unaligned();
                let av = _mm256_set1_epi32(aq);
                acc0[r] = _mm256_dpbusd_epi32(acc0[r], av, b0);
                acc1[r] = _mm256_dpbusd_epi32(acc1[r], av, b1);
            }
        }
        let (mut out0, mut out1) = ([[0i32; NR]; R], [[0i32; NR]; R]);
        for r in 0..R {
            _mm256_storeu_si256(out0[r].as_mut_ptr() as *mut __m256i, acc0[r]);
            _mm256_storeu_si256(out1[r].as_mut_ptr() as *mut __m256i, acc1[r]);
        }
        (out0, out1)
    }
}

/// [`tile`] with `U` independent accumulator sets, one per K group of an unrolled step.
///
/// # Safety
/// As [`tile`].
#[inline(always)]
unsafe fn tile_u<const R: usize, const U: usize>(
    a: &[i8],
    kp: usize,
    panel: &[i8],
) -> [[i32; NR]; R] {
    debug_assert!(a.len() >= R * kp && panel.len() >= kp * NR && kp.is_multiple_of(KQ));
    // SAFETY: the caller guarantees AVX-512 VNNI/VL; every load is checked below.
    unsafe {
        let mut acc = [[_mm256_setzero_si256(); R]; U];
        let (ap, bp) = (a.as_ptr(), panel.as_ptr());
        let groups = kp / KQ;
        let whole = groups / U * U;
        let mut q = 0;
        while q < whole {
            for u in 0..U {
                step::<R>(&mut acc[u], ap, bp, kp, q + u);
            }
            q += U;
        }
        for q in whole..groups {
            step::<R>(&mut acc[0], ap, bp, kp, q);
        }
        let mut out = [[0i32; NR]; R];
        for r in 0..R {
            let mut v = acc[0][r];
            for u in 1..U {
                v = _mm256_add_epi32(v, acc[u][r]);
            }
            _mm256_storeu_si256(out[r].as_mut_ptr() as *mut __m256i, v);
        }
        out
    }
}

/// Adds K group `q` of every row times the panel into `acc`.
///
/// # Safety
/// As [`tile`], with `q < kp / KQ`, `ap` the start of `a` and `bp` of `panel`.
#[inline(always)]
unsafe fn step<const R: usize>(
    acc: &mut [__m256i; R],
    ap: *const i8,
    bp: *const i8,
    kp: usize,
    q: usize,
) {
    // SAFETY: q < kp/4, so the 32 bytes at q·32 lie inside `panel` (kp·NR bytes) and the 4 bytes
    // at r·kp + 4q inside row r of `a`; unaligned loads throughout.
    unsafe {
        let b = _mm256_loadu_si256(bp.add(q * KQ * NR) as *const __m256i);
        for r in 0..R {
            let aq = (ap.add(r * kp + q * KQ) as *const i32).read_unaligned();
            acc[r] = _mm256_dpbusd_epi32(acc[r], _mm256_set1_epi32(aq), b);
        }
    }
}
