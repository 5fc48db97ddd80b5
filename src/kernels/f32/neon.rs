//! aarch64 NEON micro-kernels: up to 6×16 tiles of C in 24 `q` accumulators.
//!
//! Per K step: four loads of the B panel row, then per row of A one broadcast load (`ld1r`) and
//! four `fmla`; 24 accumulators + 4 B + 1 A registers fit the 32 vector registers. The 1-row
//! kernel (GEMV) keeps two accumulator sets over interleaved K steps for 8 independent chains.
//! Column tails go through a 16-value stack buffer, so C beyond the tile is never touched.

use super::driver::{MicroTile, Simd, MR};
use super::packed::NR;
use super::Activation;
use std::arch::aarch64::*;

static NEON: Simd = Simd {
    name: "f32-gemm-neon-6x16",
    micro: [
        micro::<1, 2>,
        micro::<2, 1>,
        micro::<3, 1>,
        micro::<4, 1>,
        micro::<5, 1>,
        micro::<6, 1>,
    ],
};

/// The NEON kernel family when this CPU has NEON.
pub(super) fn kernel() -> Option<&'static Simd> {
    std::arch::is_aarch64_feature_detected!("neon").then_some(&NEON)
}

/// `R` rows, `U` interleaved accumulator sets. Safety: see [`super::driver::MicroKernel`].
#[target_feature(enable = "neon")]
unsafe fn micro<const R: usize, const U: usize>(t: &MicroTile<'_>) {
    const { assert!(R >= 1 && R <= MR && U >= 1) };
    let mut acc = [[[vdupq_n_f32(0.0); 4]; R]; U];
    let (a, b) = (t.a, t.b);
    let step = |acc: &mut [[float32x4_t; 4]; R], k: usize| {
        // SAFETY: k < kc, so row k of the panel slice (16 values) and A[i][k] for i < R are in
        // bounds (the caller's guarantee).
        unsafe {
            let bp = b.add(k * NR);
            let bv = [
                vld1q_f32(bp),
                vld1q_f32(bp.add(4)),
                vld1q_f32(bp.add(8)),
                vld1q_f32(bp.add(12)),
            ];
            for (i, row) in acc.iter_mut().enumerate() {
                let av = vld1q_dup_f32(a.add(i * t.lda + k));
                for (x, &y) in row.iter_mut().zip(&bv) {
                    *x = vfmaq_f32(*x, y, av);
                }
            }
        }
    };
    let full = t.kc / U * U;
    for k0 in (0..full).step_by(U) {
        for (u, set) in acc.iter_mut().enumerate() {
            step(set, k0 + u);
        }
    }
    for k in full..t.kc {
        step(&mut acc[0], k);
    }
    let (first, rest) = acc.split_at_mut(1);
    let first = &mut first[0];
    for set in rest.iter() {
        for (x, y) in first.iter_mut().zip(set.iter()) {
            for (xv, &yv) in x.iter_mut().zip(y) {
                *xv = vaddq_f32(*xv, yv);
            }
        }
    }
    store(t, first);
}

/// Writes the accumulated rows to C: adds C's contents when accumulating, then the bias and
/// activation on the last K block. Partial tiles are staged through a 16-value buffer.
#[target_feature(enable = "neon")]
unsafe fn store(t: &MicroTile<'_>, acc: &[[float32x4_t; 4]]) {
    let cols = t.cols;
    let full = cols == NR;
    let bias = t.finish.and_then(|f| f.bias).map(|bias| {
        let mut buf = [0.0f32; NR];
        buf[..cols].copy_from_slice(&bias[..cols]);
        // SAFETY: `buf` holds 16 values.
        unsafe { load4(buf.as_ptr()) }
    });
    let act = t.finish.map(|f| f.act);
    for (i, row) in acc.iter().enumerate() {
        let mut buf = [0.0f32; NR];
        // SAFETY: row i < R of the tile is in C with `cols` valid columns (the caller's
        // guarantee); a full tile is read and written in place, a partial one copied to and from
        // `buf`, touching only `cols` values of C.
        unsafe {
            let cp = t.c.add(i * t.ldc);
            let dst = if full { cp } else { buf.as_mut_ptr() };
            if t.accumulate && !full {
                std::ptr::copy_nonoverlapping(cp, dst, cols);
            }
            let old = t.accumulate.then(|| load4(dst));
            for h in 0..4 {
                let mut v = row[h];
                if let Some(old) = old {
                    v = vaddq_f32(v, old[h]);
                }
                if let Some(bv) = bias {
                    v = vaddq_f32(v, bv[h]);
                }
                if let Some(act) = act {
                    v = activate(v, act);
                }
                vst1q_f32(dst.add(4 * h), v);
            }
            if !full {
                std::ptr::copy_nonoverlapping(dst, cp, cols);
            }
        }
    }
}

/// Loads 16 values as four vectors. Safety: `p` must point at 16 readable values.
#[target_feature(enable = "neon")]
unsafe fn load4(p: *const f32) -> [float32x4_t; 4] {
    [
        vld1q_f32(p),
        vld1q_f32(p.add(4)),
        vld1q_f32(p.add(8)),
        vld1q_f32(p.add(12)),
    ]
}

/// [`Activation::apply`] on 4 lanes (`fmaxnm` returns the number for a NaN operand, like
/// `f32::max`).
#[target_feature(enable = "neon")]
fn activate(v: float32x4_t, act: Activation) -> float32x4_t {
    match act {
        Activation::None => v,
        Activation::Relu => vmaxnmq_f32(v, vdupq_n_f32(0.0)),
        Activation::Clip(lo, hi) => vminnmq_f32(vmaxnmq_f32(v, vdupq_n_f32(lo)), vdupq_n_f32(hi)),
    }
}
