//! AVX-512 VPOPCNTDQ binary tile kernel: `vpxor` + `vpopcntq` + `vpaddq` on 256-bit vectors, three
//! instructions per 256 bits of each row/column pair where the AVX2 nibble-table count needs
//! eight, and no byte counters to flush.
// Register tiles are indexed by (row, column) on purpose: the loops unroll over constants.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

/// `pop[r][c] = Σ popcount(a_r XOR b_c)` over `words` u64 per row/column.
///
/// # Safety
/// AVX2 and AVX-512 F/VL/VPOPCNTDQ must be present; `a` holds `R · words` and `b` `C · words`
/// words.
#[inline(always)]
pub(super) unsafe fn xor_popcount<const R: usize, const C: usize>(
    a: &[u64],
    b: &[u64],
    words: usize,
) -> [[u32; C]; R] {
    debug_assert!(a.len() >= R * words && b.len() >= C * words);
    // SAFETY: the caller guarantees the features; w + 4 ≤ vec_words ≤ words, so every 32-byte
    // load lies inside its row or column.
    unsafe {
        let zero = _mm256_setzero_si256();
        let mut acc = [[zero; C]; R];
        let vec_words = words / 4 * 4;
        let (ap, bp) = (a.as_ptr(), b.as_ptr());
        let mut w = 0;
        while w < vec_words {
            let mut av = [zero; R];
            for (r, v) in av.iter_mut().enumerate() {
                *v = _mm256_loadu_si256(ap.add(r * words + w) as *const __m256i);
            }
            for c in 0..C {
                let bv = _mm256_loadu_si256(bp.add(c * words + w) as *const __m256i);
                for r in 0..R {
                    let x = _mm256_popcnt_epi64(_mm256_xor_si256(av[r], bv));
                    acc[r][c] = _mm256_add_epi64(acc[r][c], x);
                }
            }
            w += 4;
        }
        let mut out = [[0u32; C]; R];
        for r in 0..R {
            for c0 in (0..C).step_by(4) {
                let t: [__m256i; 4] =
                    std::array::from_fn(|i| if c0 + i < C { acc[r][c0 + i] } else { zero });
                let sums = super::avx2::hsum4_u64(t);
                for (i, &s) in sums.iter().enumerate().take(C - c0) {
                    let c = c0 + i;
                    let tail: u32 = (vec_words..words)
                        .map(|t| (a[r * words + t] ^ b[c * words + t]).count_ones())
                        .sum();
                    out[r][c] = s as u32 + tail;
                }
            }
        }
        out
    }
}
