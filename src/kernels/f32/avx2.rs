//! x86_64 AVX2 + FMA micro-kernels: up to 6×16 tiles of C in 12 `ymm` accumulators.
//!
//! Per K step: two loads of the B panel row, then per row of A one broadcast and two
//! FMAs. Short tiles (1–3 rows) keep extra accumulator sets over interleaved K steps so at least
//! 8 independent FMA chains hide the 4-cycle FMA latency (the 1-row kernel is the GEMV path).
//! Column tails use masked loads and stores, so C beyond the tile is never touched.

use super::driver::{MicroTile, Simd, MR};
use super::packed::NR;
use super::Activation;
use std::arch::x86_64::*;

static AVX2: Simd = Simd {
    name: "f32-gemm-avx2-6x16",
    micro: [
        micro::<1, 4>,
        micro::<2, 2>,
        micro::<3, 2>,
        micro::<4, 1>,
        micro::<5, 1>,
        micro::<6, 1>,
    ],
};

/// The AVX2 kernel family when this CPU has AVX2 and FMA.
pub(super) fn kernel() -> Option<&'static Simd> {
    (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")).then_some(&AVX2)
}

/// `R` rows, `U` interleaved accumulator sets. Safety: see [`super::driver::MicroKernel`].
#[target_feature(enable = "avx2,fma")]
unsafe fn micro<const R: usize, const U: usize>(t: &MicroTile<'_>) {
    const { assert!(R >= 1 && R <= MR && U >= 1) };
    let mut acc = [[[_mm256_setzero_ps(); 2]; R]; U];
    let (a, b) = (t.a, t.b);
    let step = |acc: &mut [[__m256; 2]; R], k: usize| {
        // SAFETY: k < kc, so row k of the panel slice (16 values) and
        // A[i][k] for i < R are in bounds (the caller's guarantee).
        unsafe {
            let b0 = _mm256_loadu_ps(b.add(k * NR));
            let b1 = _mm256_loadu_ps(b.add(k * NR + 8));
            for (i, row) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*a.add(i * t.lda + k));
                row[0] = _mm256_fmadd_ps(av, b0, row[0]);
                row[1] = _mm256_fmadd_ps(av, b1, row[1]);
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
            x[0] = _mm256_add_ps(x[0], y[0]);
            x[1] = _mm256_add_ps(x[1], y[1]);
        }
    }
    store(t, first);
}

/// Writes the accumulated rows to C: adds C's contents when accumulating, then the bias and
/// activation on the last K block.
#[target_feature(enable = "avx2,fma")]
unsafe fn store(t: &MicroTile<'_>, acc: &[[__m256; 2]]) {
    let cols = t.cols as i32;
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let mask = [
        _mm256_cmpgt_epi32(_mm256_set1_epi32(cols), lane),
        _mm256_cmpgt_epi32(_mm256_set1_epi32(cols - 8), lane),
    ];
    let full = t.cols == NR;
    // SAFETY: with a full tile all 16 columns are in C (and in the bias); otherwise masked
    // loads and stores touch only the `cols` valid columns, and the caller guarantees the tile's
    // rows lie in C.
    let load = |p: *const f32, h: usize| unsafe {
        if full {
            _mm256_loadu_ps(p.add(8 * h))
        } else {
            _mm256_maskload_ps(p.add(8 * h), mask[h])
        }
    };
    let bias = t.finish.and_then(|f| f.bias).map(|bias| {
        let p = bias.as_ptr();
        [load(p, 0), load(p, 1)]
    });
    let act = t.finish.map(|f| f.act);
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: row i < R of the tile is in C (see above).
        let cp = unsafe { t.c.add(i * t.ldc) };
        for h in 0..2 {
            let mut v = row[h];
            if t.accumulate {
                v = _mm256_add_ps(v, load(cp, h));
            }
            if let Some(bv) = bias {
                v = _mm256_add_ps(v, bv[h]);
            }
            if let Some(act) = act {
                v = activate(v, act);
            }
            // SAFETY: as for the loads above.
            unsafe {
                if full {
                    _mm256_storeu_ps(cp.add(8 * h), v);
                } else {
                    _mm256_maskstore_ps(cp.add(8 * h), mask[h], v);
                }
            }
        }
    }
}

/// [`Activation::apply`] on 8 lanes (`max_ps(x, lo)` returns `lo` for a NaN `x`, like
/// `f32::max`).
#[target_feature(enable = "avx2,fma")]
fn activate(v: __m256, act: Activation) -> __m256 {
    match act {
        Activation::None => v,
        Activation::Relu => _mm256_max_ps(v, _mm256_setzero_ps()),
        Activation::Clip(lo, hi) => {
            _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(lo)), _mm256_set1_ps(hi))
        }
    }
}
