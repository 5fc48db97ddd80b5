//! aarch64 4-bit column kernels: 8 lanes as two `float32x4_t`, so every lane sees the same
//! operations as in the AVX2 and scalar forms. Int8 uses `sdot` (dotprod) or widening multiplies.

// Register tiles are indexed by row on purpose: the loops unroll over constants.
#![allow(clippy::needless_range_loop)]

use super::{hsum8, Column, CHUNK};
use crate::kernels::arm::sdot;
use std::arch::aarch64::*;

/// Two 4-lane halves of the 8 shared lanes.
type Lanes = [float32x4_t; 2];

#[inline(always)]
unsafe fn finish(a0: Lanes, a1: Lanes) -> f32 {
    let mut v = [0f32; 8];
    // SAFETY: `v` holds 8 f32.
    unsafe {
        vst1q_f32(v.as_mut_ptr(), vaddq_f32(a0[0], a1[0]));
        vst1q_f32(v.as_mut_ptr().add(4), vaddq_f32(a0[1], a1[1]));
    }
    hsum8(v)
}

/// Runs `chunk(c, acc)` for every chunk, even chunks into one accumulator and odd ones into
/// another (unrolled by two so both stay in registers), then gives each row's final sum.
#[inline(always)]
unsafe fn two_chains<const R: usize>(
    chunks: usize,
    mut chunk: impl FnMut(usize, &mut [Lanes; R]),
) -> [f32; R] {
    // SAFETY: callers run with NEON enabled.
    unsafe {
        let zero = vdupq_n_f32(0.0);
        let mut acc0 = [[zero; 2]; R];
        let mut acc1 = [[zero; 2]; R];
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

/// u8 nibbles (8 of them, in a `uint8x8_t`) as f32 minus `zp`, in two 4-lane halves.
#[inline(always)]
unsafe fn to_f32(x: uint8x8_t, zp: float32x4_t) -> Lanes {
    let w = vmovl_u8(x);
    [
        vsubq_f32(vcvtq_f32_u32(vmovl_u16(vget_low_u16(w))), zp),
        vsubq_f32(vcvtq_f32_u32(vmovl_high_u16(w)), zp),
    ]
}

/// f32 activations × dequantized 4-bit column for `R` rows.
///
/// # Safety
/// NEON must be present; `a` holds `R · kp` values, `col.bytes` `kp / 2` bytes.
#[target_feature(enable = "neon")]
pub(super) unsafe fn dot_f32<const R: usize>(a: &[f32], kp: usize, col: Column<'_>) -> [f32; R] {
    debug_assert!(a.len() >= R * kp && col.bytes.len() * 2 >= kp);
    let (ap, bp) = (a.as_ptr(), col.bytes.as_ptr());
    let chunk = |c: usize, acc: &mut [Lanes; R]| {
        let bl = col.block_of(c);
        let zp = vdupq_n_f32(col.zp(bl) as f32);
        let s = vdupq_n_f32(col.scales[bl]);
        // SAFETY: chunk c's 16 bytes lie inside the column and its 32 values inside each row.
        unsafe {
            let raw = vld1q_u8(bp.add(c * 16));
            let lo = vandq_u8(raw, vdupq_n_u8(0xf));
            let hi = vshrq_n_u8::<4>(raw);
            let w = [
                to_f32(vget_low_u8(lo), zp),
                to_f32(vget_high_u8(lo), zp),
                to_f32(vget_low_u8(hi), zp),
                to_f32(vget_high_u8(hi), zp),
            ];
            for r in 0..R {
                let ar = ap.add(r * kp + c * CHUNK);
                for h in 0..2 {
                    let mut t = vmulq_f32(w[0][h], vld1q_f32(ar.add(4 * h)));
                    for v in 1..4 {
                        t = vfmaq_f32(t, w[v][h], vld1q_f32(ar.add(8 * v + 4 * h)));
                    }
                    acc[r][h] = vfmaq_f32(acc[r][h], t, s);
                }
            }
        }
    };
    // SAFETY: NEON is enabled here.
    unsafe { two_chains::<R>(kp / CHUNK, chunk) }
}

/// The signed weights `q - zp` of a chunk: low nibbles (permuted positions 0–15), high (16–31).
#[inline(always)]
unsafe fn weights_s8(bytes: *const u8, zp: u8) -> [int8x16_t; 2] {
    // SAFETY: callers pass a pointer to the chunk's 16 bytes.
    unsafe {
        let raw = vld1q_u8(bytes);
        let z = vdupq_n_s8(zp as i8);
        [
            vsubq_s8(vreinterpretq_s8_u8(vandq_u8(raw, vdupq_n_u8(0xf))), z),
            vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8::<4>(raw)), z),
        ]
    }
}

/// Shared Int8 loop: `lanes(w, q_row_chunk)` gives the 8 exact i32 lane sums of a chunk.
#[inline(always)]
unsafe fn dot_i8_with<const R: usize>(
    q: &[i8],
    qscale: &[f32],
    kp: usize,
    col: Column<'_>,
    lanes: impl Fn([int8x16_t; 2], *const i8) -> [int32x4_t; 2],
) -> [f32; R] {
    let blocks = kp / col.block;
    let chunk = |c: usize, acc: &mut [Lanes; R]| {
        let bl = col.block_of(c);
        let sw = col.scales[bl];
        // SAFETY: chunk c's 16 bytes lie inside the column and its 32 values inside each row.
        unsafe {
            let w = weights_s8(col.bytes.as_ptr().add(c * 16), col.zp(bl));
            for r in 0..R {
                let t = lanes(w, q.as_ptr().add(r * kp + c * CHUNK));
                let s = vdupq_n_f32(sw * qscale[r * blocks + bl]);
                for h in 0..2 {
                    acc[r][h] = vfmaq_f32(acc[r][h], vcvtq_f32_s32(t[h]), s);
                }
            }
        }
    };
    // SAFETY: NEON is enabled in every caller.
    unsafe { two_chains::<R>(kp / CHUNK, chunk) }
}

/// Int8 activations × 4-bit column with `sdot` (four 4-way dot products per instruction).
///
/// # Safety
/// NEON and dotprod must be present; `q` holds `R · kp` values, `col.bytes` `kp / 2` bytes.
#[target_feature(enable = "neon,dotprod")]
pub(super) unsafe fn dot_i8_sdot<const R: usize>(
    q: &[i8],
    qscale: &[f32],
    kp: usize,
    col: Column<'_>,
) -> [f32; R] {
    debug_assert!(q.len() >= R * kp && col.bytes.len() * 2 >= kp);
    // SAFETY: the closure reads the row chunk's 32 values; dotprod is enabled here.
    unsafe {
        dot_i8_with::<R>(q, qscale, kp, col, |w, a| {
            let zero = vdupq_n_s32(0);
            [
                sdot(zero, w[0], vld1q_s8(a)),
                sdot(zero, w[1], vld1q_s8(a.add(16))),
            ]
        })
    }
}

/// Int8 activations × 4-bit column with widening multiplies and pairwise adds.
///
/// # Safety
/// NEON must be present; `q` holds `R · kp` values, `col.bytes` `kp / 2` bytes.
#[target_feature(enable = "neon")]
pub(super) unsafe fn dot_i8_widen<const R: usize>(
    q: &[i8],
    qscale: &[f32],
    kp: usize,
    col: Column<'_>,
) -> [f32; R] {
    debug_assert!(q.len() >= R * kp && col.bytes.len() * 2 >= kp);
    // SAFETY: the closure reads the row chunk's 32 values.
    unsafe {
        dot_i8_with::<R>(q, qscale, kp, col, |w, a| {
            let quad = |wv: int8x16_t, av: int8x16_t| {
                let p0 = vpaddlq_s16(vmull_s8(vget_low_s8(wv), vget_low_s8(av)));
                let p1 = vpaddlq_s16(vmull_high_s8(wv, av));
                vpaddq_s32(p0, p1)
            };
            [quad(w[0], vld1q_s8(a)), quad(w[1], vld1q_s8(a.add(16)))]
        })
    }
}
