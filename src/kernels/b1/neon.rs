//! aarch64 binary tile kernels: `eor` + `cnt` popcount, and bit-to-byte-mask expansion with `cmtst`.
// Register tiles are indexed by (row, column) on purpose: the loops unroll over constants.
#![allow(clippy::needless_range_loop)]

use std::arch::aarch64::*;

/// `pop[r][c] = Σ popcount(a_r XOR b_c)` over `words` u64 per row/column, ANDed with the
/// nonzero mask `m_r` when `MASK` (as [`super::scalar::xor_popcount`]).
///
/// # Safety
/// NEON must be present; `a` (and `m` when `MASK`) hold `R · words` and `b` `C · words` words.
#[target_feature(enable = "neon")]
pub(super) unsafe fn xor_popcount<const R: usize, const C: usize, const MASK: bool>(
    a: &[u64],
    m: &[u64],
    b: &[u64],
    words: usize,
) -> [[u32; C]; R] {
    debug_assert!(a.len() >= R * words && b.len() >= C * words);
    debug_assert!(!MASK || m.len() >= R * words);
    let mut acc = [[vdupq_n_u32(0); C]; R];
    let vec_words = words / 2 * 2;
    let (ap, mp, bp) = (a.as_ptr(), m.as_ptr(), b.as_ptr());
    // u16 lanes gain at most 16 per step: flush to u32 every 4096 steps.
    let mut w = 0;
    while w < vec_words {
        let end = vec_words.min(w + 2 * 4096);
        let mut acc16 = [[vdupq_n_u16(0); C]; R];
        while w < end {
            // SAFETY: w + 2 ≤ vec_words ≤ words: the 16-byte loads lie inside their rows.
            unsafe {
                for c in 0..C {
                    let bv = vld1q_u64(bp.add(c * words + w));
                    for r in 0..R {
                        let av = vld1q_u64(ap.add(r * words + w));
                        let mut x = veorq_u64(av, bv);
                        if MASK {
                            x = vandq_u64(x, vld1q_u64(mp.add(r * words + w)));
                        }
                        let cnt = vcntq_u8(vreinterpretq_u8_u64(x));
                        acc16[r][c] = vpadalq_u8(acc16[r][c], cnt);
                    }
                }
            }
            w += 2;
        }
        for r in 0..R {
            for c in 0..C {
                acc[r][c] = vpadalq_u16(acc[r][c], acc16[r][c]);
            }
        }
    }
    let mut out = [[0u32; C]; R];
    for r in 0..R {
        for c in 0..C {
            let tail: u32 = (vec_words..words)
                .map(|t| {
                    super::scalar::masked(
                        a[r * words + t] ^ b[c * words + t],
                        m,
                        r * words + t,
                        MASK,
                    )
                    .count_ones()
                })
                .sum();
            out[r][c] = vaddvq_u32(acc[r][c]) + tail;
        }
    }
    out
}

/// `s[r][c] = Σ_k a_r[k] · bit_k(b_c)`: 16 weight bits become byte masks (`cmtst`), ANDed with
/// 16 activations and widened into u32 sums.
///
/// # Safety
/// NEON must be present; `a` holds `R · stride` bytes with `stride = words · 64`; `b` holds
/// `C · words` words.
#[target_feature(enable = "neon")]
pub(super) unsafe fn masked_sums<const R: usize, const C: usize>(
    a: &[u8],
    stride: usize,
    b: &[u64],
    words: usize,
) -> [[u32; C]; R] {
    debug_assert!(stride == words * 64 && a.len() >= R * stride && b.len() >= C * words);
    let sel: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    // SAFETY: `sel` is 16 bytes.
    let bitsel = unsafe { vld1q_u8(sel.as_ptr()) };
    let mut acc = [[vdupq_n_u32(0); C]; R];
    let ap = a.as_ptr();
    for h in 0..words * 4 {
        let mut masks = [vdupq_n_u8(0); C];
        for (c, mk) in masks.iter_mut().enumerate() {
            let bits = (b[c * words + h / 4] >> (16 * (h % 4))) as u16;
            let v = vcombine_u8(vdup_n_u8(bits as u8), vdup_n_u8((bits >> 8) as u8));
            *mk = vtstq_u8(v, bitsel);
        }
        for r in 0..R {
            // SAFETY: h < 4·words so the 16 bytes at r·stride + 16h lie inside row r.
            let av = unsafe { vld1q_u8(ap.add(r * stride + 16 * h)) };
            for c in 0..C {
                acc[r][c] = vpadalq_u16(acc[r][c], vpaddlq_u8(vandq_u8(av, masks[c])));
            }
        }
    }
    let mut out = [[0u32; C]; R];
    for r in 0..R {
        for c in 0..C {
            out[r][c] = vaddvq_u32(acc[r][c]);
        }
    }
    out
}
