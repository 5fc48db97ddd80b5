//! aarch64 INT8 tile kernels: `sdot` on shifted s8 activations (dotprod), or widening
//! `smlal` on centred i16 activations (plain NEON).
// Register tiles are indexed by (row, column) on purpose: the loops unroll over constants.
#![allow(clippy::needless_range_loop)]

use super::pack::{panel_len, GS};
use super::{KQ, NR};
use crate::kernels::arm::sdot;
use std::arch::aarch64::*;

/// `R × NR` tile with `sdot`: per group of 4 K values the row's 4 shifted activations are
/// duplicated into every lane and dotted with 4 columns' 4 weights at once.
///
/// # Safety
/// The CPU must support NEON and dotprod; `a` must hold `R · kp` values and `panel` one
/// packed panel (`panel_len(kp)` bytes, group `q` at `q · GS`).
#[target_feature(enable = "neon,dotprod")]
pub(super) unsafe fn tile_dot<const R: usize>(a: &[i8], kp: usize, panel: &[i8]) -> [[i32; NR]; R] {
    debug_assert!(a.len() >= R * kp && panel.len() >= panel_len(kp) && kp.is_multiple_of(KQ));
    let mut lo = [vdupq_n_s32(0); R];
    let mut hi = [vdupq_n_s32(0); R];
    let (ap, bp) = (a.as_ptr(), panel.as_ptr());
    for q in 0..kp / KQ {
        // SAFETY: the 32 bytes at q·GS lie inside `panel`; the 4 bytes at r·kp + 4q inside `a`.
        unsafe {
            let b0 = vld1q_s8(bp.add(q * GS));
            let b1 = vld1q_s8(bp.add(q * GS + 16));
            for r in 0..R {
                let aq = (ap.add(r * kp + q * KQ) as *const i32).read_unaligned();
                let av = vreinterpretq_s8_s32(vdupq_n_s32(aq));
                lo[r] = sdot(lo[r], b0, av);
                hi[r] = sdot(hi[r], b1, av);
            }
        }
    }
    let mut out = [[0i32; NR]; R];
    for r in 0..R {
        // SAFETY: `out[r]` holds 8 i32.
        unsafe {
            vst1q_s32(out[r].as_mut_ptr(), lo[r]);
            vst1q_s32(out[r].as_mut_ptr().add(4), hi[r]);
        }
    }
    out
}

/// `R × NR` tile with widening multiply-accumulate: each column keeps 4 partial sums (one per
/// K position in the group) that are added pairwise at the end.
///
/// # Safety
/// The CPU must support NEON; `a` must hold `R · kp` values and `panel` one packed panel
/// (`panel_len(kp)` bytes, group `q` at `q · GS`).
#[target_feature(enable = "neon")]
pub(super) unsafe fn tile_widen<const R: usize>(
    a: &[i16],
    kp: usize,
    panel: &[i8],
) -> [[i32; NR]; R] {
    debug_assert!(a.len() >= R * kp && panel.len() >= panel_len(kp) && kp.is_multiple_of(KQ));
    let (ap, bp) = (a.as_ptr(), panel.as_ptr());
    let mut out = [[0i32; NR]; R];
    // One row at a time keeps the 8 accumulators in registers; the panel stays in L1.
    for (r, out_row) in out.iter_mut().enumerate() {
        let mut acc = [vdupq_n_s32(0); NR];
        for q in 0..kp / KQ {
            // SAFETY: the 32 bytes at q·GS lie inside `panel`; the 4 i16 at r·kp + 4q inside `a`.
            unsafe {
                let b0 = vld1q_s8(bp.add(q * GS));
                let b1 = vld1q_s8(bp.add(q * GS + 16));
                // Each i16x8 holds two columns' 4 weights.
                let w = [
                    vmovl_s8(vget_low_s8(b0)),
                    vmovl_high_s8(b0),
                    vmovl_s8(vget_low_s8(b1)),
                    vmovl_high_s8(b1),
                ];
                let a4 = vld1_s16(ap.add(r * kp + q * KQ));
                let a8 = vcombine_s16(a4, a4);
                for (pair, wv) in w.iter().enumerate() {
                    acc[2 * pair] = vmlal_s16(acc[2 * pair], vget_low_s16(*wv), a4);
                    acc[2 * pair + 1] = vmlal_high_s16(acc[2 * pair + 1], *wv, a8);
                }
            }
        }
        let c0123 = vpaddq_s32(vpaddq_s32(acc[0], acc[1]), vpaddq_s32(acc[2], acc[3]));
        let c4567 = vpaddq_s32(vpaddq_s32(acc[4], acc[5]), vpaddq_s32(acc[6], acc[7]));
        // SAFETY: `out_row` holds 8 i32.
        unsafe {
            vst1q_s32(out_row.as_mut_ptr(), c0123);
            vst1q_s32(out_row.as_mut_ptr().add(4), c4567);
        }
    }
    out
}

/// Depthwise row kernel (see [`super::depthwise`]): `acc[ox] += Σ_p dot(q[ox + p·step], w[p])`
/// for every `ox < acc.len()`, 8 outputs at a time: `vld2q_s16` splits 8 pairs into the
/// first and second taps, which widen-multiply-accumulate (`smlal`) with the pair's two weights.
/// Exact: |x|, |w| ≤ 255.
///
/// # Safety
/// NEON must be present; `acc.len()` must be a multiple of 8 and `q` hold at least
/// `acc.len() + (w.len() - 1) · step` values.
#[target_feature(enable = "neon")]
pub(super) unsafe fn depthwise_row(q: &[i32], w: &[i32], step: usize, acc: &mut [i32]) {
    let n = acc.len();
    debug_assert!(n.is_multiple_of(8) && q.len() + step >= n + w.len() * step);
    let (qp, ap) = (q.as_ptr(), acc.as_mut_ptr());
    for ox in (0..n).step_by(8) {
        // SAFETY: the caller guarantees that the 8 accumulators at `ox` and, for every pair p,
        // the 8 pairs (16 i16) at `ox + p·step` of `q` are in bounds.
        unsafe {
            let (mut lo, mut hi) = (vld1q_s32(ap.add(ox)), vld1q_s32(ap.add(ox + 4)));
            for (p, &wp) in w.iter().enumerate() {
                let (w0, w1) = (wp as i16, (wp >> 16) as i16);
                let x = vld2q_s16(qp.add(ox + p * step) as *const i16);
                lo = vmlal_n_s16(lo, vget_low_s16(x.0), w0);
                hi = vmlal_high_n_s16(hi, x.0, w0);
                lo = vmlal_n_s16(lo, vget_low_s16(x.1), w1);
                hi = vmlal_high_n_s16(hi, x.1, w1);
            }
            vst1q_s32(ap.add(ox), lo);
            vst1q_s32(ap.add(ox + 4), hi);
        }
    }
}
