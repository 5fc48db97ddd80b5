//! AVX-512 VNNI INT8 tile kernels: u8 activations × s8 weights with `vpdpbusd`, on 512-bit
//! vectors for GEMM tiles ([`tile_z`]) and 256-bit vectors for single panels ([`tile`], GEMV),
//! and the 16-column epilogue steps of the GEMM tiles.
//!
//! `vpdpbusd` multiplies four u8 × s8 pairs per i32 lane and adds them and the accumulator with
//! wrapping i32 arithmetic: no intermediate step saturates (that is `vpdpbusds`), so the result is
//! exact while the true sum fits i32, which [`super::K_MAX`] guarantees. The packed panel layout
//! (`[c0k0..c0k3 c1k0 … c7k3]` per group of four K) is exactly one `vpdpbusd` operand, and the
//! lanes come out in column order.
// Register tiles are indexed by (row, column) on purpose: the loops unroll over constants.
#![allow(clippy::needless_range_loop)]

use super::pack::{panel_len, GS};
use super::{KQ, NR};
use std::arch::x86_64::*;

/// `R × NR` tile of `Σ_k a[r][k] · b[k][c]` with `a` the activation bytes read as u8.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI; `a` must hold `R` rows of `kp` bytes and `panel`
/// one packed panel (`panel_len(kp)` bytes, group `q` at `q · GS`), with `kp` a multiple of [`KQ`].
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

/// Rows of one GEMM register tile of [`tile_z`]: 12 rows × 2 blocks are 24 `zmm` accumulators,
/// leaving registers for the two weight vectors and the broadcast.
pub(super) const ZR: usize = 12;

/// An `R × 16·P` tile with 512-bit `vpdpbusd`: `R` rows of activations times `P` packed blocks
/// (16 columns each), returned as `acc[r][p]` (the 16 columns of block `p` of row `r`, in
/// order). Per K group: one 64-byte load per block, one 4-byte broadcast per row, `R · P`
/// independent accumulator chains.
///
/// `a` is the row block's activation bytes, `R` rows of `kp` (see `prepare::Block`).
///
/// # Safety
/// The CPU must support AVX-512 F/VNNI; `a` must hold `R · kp` bytes, every block of `blocks`
/// `kp · 16` bytes (group `q` at `q · GS`), `kp` a multiple of [`KQ`], and `R · P + P < 32`.
#[inline(always)]
pub(super) unsafe fn tile_z<const R: usize, const P: usize>(
    a: &[i8],
    kp: usize,
    blocks: [&[i8]; P],
) -> [[__m512i; P]; R] {
    debug_assert!(a.len() >= R * kp && kp.is_multiple_of(KQ) && R * P + P < 32);
    debug_assert!(blocks.iter().all(|b| b.len() >= kp / KQ * GS));
    // SAFETY: the caller guarantees AVX-512 F/VNNI and the lengths: for q < kp/4 the 64 bytes at
    // q·GS lie inside each block and the 4 bytes at r·kp + 4q inside `a`; unaligned accesses.
    unsafe {
        let mut acc = [[_mm512_setzero_si512(); P]; R];
        let ap = a.as_ptr();
        let bp = blocks.map(|b| b.as_ptr());
        for q in 0..kp / KQ {
            let b = bp.map(|p| _mm512_loadu_si512(p.add(q * GS) as *const _));
            let aq = ap.add(q * KQ);
            for r in 0..R {
                let av = _mm512_set1_epi32((aq.add(r * kp) as *const i32).read_unaligned());
                for p in 0..P {
                    acc[r][p] = _mm512_dpbusd_epi32(acc[r][p], av, b[p]);
                }
            }
        }
        acc
    }
}

/// The mask of the first `cols` (≤ 16) lanes.
#[inline(always)]
pub(super) fn lanes(cols: usize) -> __mmask16 {
    debug_assert!(cols <= 16);
    ((1u32 << cols) - 1) as __mmask16
}

/// `v[..]` (at most 16 values) in the low lanes of a vector, 0 in the others.
///
/// # Safety
/// AVX-512 F must be enabled in the caller.
#[inline(always)]
pub(super) unsafe fn load_f32(v: &[f32]) -> __m512 {
    // SAFETY: the masked load reads only the first `v.len()` floats, which `v` holds.
    unsafe { _mm512_maskz_loadu_ps(lanes(v.len()), v.as_ptr()) }
}

/// `v[..]` (at most 16 values) in the low lanes of a vector, 0 in the others.
///
/// # Safety
/// AVX-512 F must be enabled in the caller.
#[inline(always)]
pub(super) unsafe fn load_i32(v: &[i32]) -> __m512i {
    // SAFETY: the masked load reads only the first `v.len()` values, which `v` holds.
    unsafe { _mm512_maskz_loadu_epi32(lanes(v.len()), v.as_ptr()) }
}

/// Stores the low `out.len()` (≤ 16) lanes of `v`.
///
/// # Safety
/// AVX-512 F must be enabled in the caller.
#[inline(always)]
pub(super) unsafe fn store_i32(v: __m512i, out: &mut [i32]) {
    // SAFETY: the masked store writes only the first `out.len()` values, which `out` holds.
    unsafe { _mm512_mask_storeu_epi32(out.as_mut_ptr(), lanes(out.len()), v) }
}

/// Sixteen dequantized values `y = acc · scale + bias` (multiply, then add: not fused), then
/// `max(y, 0)` when `relu` (NaN and -0 give +0), stored to the low `out.len()` (≤ 16) lanes:
/// the arithmetic of `avx2::dequantize_row`.
///
/// # Safety
/// AVX-512 F must be enabled in the caller (it inlines into the VNNI row loop).
#[inline(always)]
pub(super) unsafe fn dequantize16(
    v: __m512i,
    scale: __m512,
    bias: __m512,
    relu: bool,
    out: &mut [f32],
) {
    // SAFETY: register arithmetic, then a masked store of the first `out.len()` floats.
    unsafe {
        let mut y = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(v), scale), bias);
        if relu {
            // maxps returns its second operand when the first is NaN or both are zero.
            y = _mm512_max_ps(y, _mm512_setzero_ps());
        }
        _mm512_mask_storeu_ps(out.as_mut_ptr(), lanes(out.len()), y);
    }
}

/// Sixteen requantized values: `round_half_even((acc + bias) · m)` clamped to `[lo, hi]` in f32
/// (NaN gives `lo`), converted and offset by `zp`, stored as their low bytes to the low
/// `out.len()` (≤ 16) lanes: the arithmetic of `avx2::requantize_row`. The values are inside
/// the output type once offset, so keeping the low byte changes nothing.
///
/// # Safety
/// AVX-512 F/BW/VL must be enabled in the caller (it inlines into the VNNI row loop).
#[inline(always)]
pub(super) unsafe fn requantize16(
    v: __m512i,
    bias: __m512i,
    m: __m512,
    lo: f32,
    hi: f32,
    zp: i32,
    out: &mut [u8],
) {
    // SAFETY: register arithmetic, then a masked store of the first `out.len()` bytes.
    unsafe {
        let x = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(v, bias)), m);
        let r = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x);
        // maxps returns its second operand (lo) when the first is NaN.
        let c = _mm512_min_ps(_mm512_max_ps(r, _mm512_set1_ps(lo)), _mm512_set1_ps(hi));
        let q = _mm512_add_epi32(_mm512_cvttps_epi32(c), _mm512_set1_epi32(zp));
        let bytes = _mm512_cvtepi32_epi8(q);
        _mm_mask_storeu_epi8(out.as_mut_ptr() as *mut i8, lanes(out.len()), bytes);
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
    debug_assert!(a.len() >= R * kp && panel.len() >= panel_len(kp) && kp.is_multiple_of(KQ));
    // SAFETY: the caller guarantees AVX-512 VNNI/VL; every load is checked below.
    unsafe {
        let mut acc = [[_mm256_setzero_si256(); R]; U];
        let (ap, bp) = (a.as_ptr(), panel.as_ptr());
        let groups = kp / KQ;
        let whole = groups / U * U;
        let mut q = 0;
        while q < whole {
            for u in 0..U {
                step::<R>(&mut acc[u], ap, kp, bp, q + u);
            }
            q += U;
        }
        for q in whole..groups {
            step::<R>(&mut acc[0], ap, kp, bp, q);
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
    kp: usize,
    bp: *const i8,
    q: usize,
) {
    // SAFETY: q < kp/4, so the 32 bytes at q·GS lie inside `panel` (panel_len(kp) bytes) and the
    // 4 bytes at r·kp + 4q inside `a`; unaligned loads throughout.
    unsafe {
        let b = _mm256_loadu_si256(bp.add(q * GS) as *const __m256i);
        for r in 0..R {
            let aq = (ap.add(r * kp + q * KQ) as *const i32).read_unaligned();
            acc[r] = _mm256_dpbusd_epi32(acc[r], _mm256_set1_epi32(aq), b);
        }
    }
}

/// Depthwise row kernel (see [`super::depthwise`]) with 512-bit `vpdpwssd`: `acc[ox] +=
/// Σ_p dot(q[ox + p·step], w[p])` for every `ox < acc.len()`, 16 outputs per vector and up to 4
/// vectors in registers. Exact: each lane adds two i16 × i16 products (|x|, |w| ≤ 255) to an
/// accumulator that [`super::K_MAX`] keeps inside i32.
///
/// # Safety
/// The CPU must support AVX-512 F/VNNI; `acc.len()` must be a multiple of 16 and `q` hold at
/// least `acc.len() + (w.len() - 1) · step` values.
#[target_feature(enable = "avx512f,avx512vnni")]
pub(super) unsafe fn depthwise_row(q: &[i32], w: &[i32], step: usize, acc: &mut [i32]) {
    let n = acc.len();
    debug_assert!(n.is_multiple_of(16) && q.len() + step >= n + w.len() * step);
    let mut ox = 0;
    while ox + 64 <= n {
        // SAFETY: forwarded from the caller, with `ox + 64 <= n`.
        unsafe { dw_block::<4>(q, w, step, acc, ox) };
        ox += 64;
    }
    while ox < n {
        // SAFETY: as above, with `ox + 16 <= n` (n is a multiple of 16).
        unsafe { dw_block::<1>(q, w, step, acc, ox) };
        ox += 16;
    }
}

/// `V` vectors of [`depthwise_row`] starting at output `ox`.
///
/// # Safety
/// AVX-512 F/VNNI must be present (inlined into [`depthwise_row`]); `ox + 16·V <= acc.len()`
/// and `q` as there.
#[inline(always)]
unsafe fn dw_block<const V: usize>(q: &[i32], w: &[i32], step: usize, acc: &mut [i32], ox: usize) {
    let (qp, ap) = (q.as_ptr(), acc.as_mut_ptr());
    // SAFETY: the caller guarantees that the 16·V accumulators at `ox` and, for every pair p,
    // the 16·V values at `ox + p·step` of `q` are in bounds; unaligned loads and stores.
    unsafe {
        let mut a = [_mm512_setzero_si512(); V];
        for v in 0..V {
            a[v] = _mm512_loadu_si512(ap.add(ox + 16 * v) as *const _);
        }
        for (p, &wp) in w.iter().enumerate() {
            let wv = _mm512_set1_epi32(wp);
            let base = qp.add(ox + p * step);
            for v in 0..V {
                let x = _mm512_loadu_si512(base.add(16 * v) as *const _);
                a[v] = _mm512_dpwssd_epi32(a[v], x, wv);
            }
        }
        for v in 0..V {
            _mm512_storeu_si512(ap.add(ox + 16 * v) as *mut _, a[v]);
        }
    }
}
