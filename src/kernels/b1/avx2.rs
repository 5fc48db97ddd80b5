//! AVX2 binary tile kernels: `vpxor` + `vpshufb` nibble-LUT popcount + `vpsadbw`, and the
//! bit-to-byte-mask expansion for int8 activations.
// Register tiles are indexed by (row, column) on purpose: the loops unroll over constants.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

/// Vectors of 4 words per byte-counter block: each step adds at most 8 to a byte, 31·8 < 256.
const BLOCK: usize = 31;

/// The four lane sums of four u64x4 vectors at once (two unpacks, two lane swaps, three adds).
#[target_feature(enable = "avx2")]
pub(super) fn hsum4_u64(t: [__m256i; 4]) -> [u64; 4] {
    let s01 = _mm256_add_epi64(
        _mm256_unpacklo_epi64(t[0], t[1]),
        _mm256_unpackhi_epi64(t[0], t[1]),
    );
    let s23 = _mm256_add_epi64(
        _mm256_unpacklo_epi64(t[2], t[3]),
        _mm256_unpackhi_epi64(t[2], t[3]),
    );
    let v = _mm256_add_epi64(
        _mm256_permute2x128_si256::<0x20>(s01, s23),
        _mm256_permute2x128_si256::<0x31>(s01, s23),
    );
    let mut out = [0u64; 4];
    // SAFETY: `out` is 32 bytes; unaligned store.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, v) };
    out
}

/// `pop[r][c] = Σ popcount(a_r XOR b_c)` over `words` u64 per row/column, ANDed with the
/// nonzero mask `m_r` when `MASK` (as [`super::scalar::xor_popcount`]).
///
/// # Safety
/// AVX2 must be present; `a` (and `m` when `MASK`) hold `R · words` and `b` `C · words` words.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn xor_popcount<const R: usize, const C: usize, const MASK: bool>(
    a: &[u64],
    m: &[u64],
    b: &[u64],
    words: usize,
) -> [[u32; C]; R] {
    debug_assert!(a.len() >= R * words && b.len() >= C * words);
    debug_assert!(!MASK || m.len() >= R * words);
    let lut = _mm256_setr_epi8(
        0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3,
        3, 4,
    );
    let nib = _mm256_set1_epi8(0x0f);
    let zero = _mm256_setzero_si256();
    let mut tot = [[zero; C]; R];
    let vec_words = words / 4 * 4;
    let (ap, mp, bp) = (a.as_ptr(), m.as_ptr(), b.as_ptr());
    let mut w = 0;
    while w < vec_words {
        let end = vec_words.min(w + 4 * BLOCK);
        let mut acc = [[zero; C]; R];
        while w < end {
            // SAFETY: w + 4 ≤ vec_words ≤ words, so every 32-byte load lies inside its row.
            unsafe {
                let mut av = [zero; R];
                let mut mv = [zero; R];
                for r in 0..R {
                    av[r] = _mm256_loadu_si256(ap.add(r * words + w) as *const __m256i);
                    if MASK {
                        mv[r] = _mm256_loadu_si256(mp.add(r * words + w) as *const __m256i);
                    }
                }
                for c in 0..C {
                    let bv = _mm256_loadu_si256(bp.add(c * words + w) as *const __m256i);
                    for r in 0..R {
                        let mut x = _mm256_xor_si256(av[r], bv);
                        if MASK {
                            x = _mm256_and_si256(x, mv[r]);
                        }
                        let lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(x, nib));
                        let hi = _mm256_shuffle_epi8(
                            lut,
                            _mm256_and_si256(_mm256_srli_epi16::<4>(x), nib),
                        );
                        acc[r][c] = _mm256_add_epi8(acc[r][c], _mm256_add_epi8(lo, hi));
                    }
                }
            }
            w += 4;
        }
        for r in 0..R {
            for c in 0..C {
                tot[r][c] = _mm256_add_epi64(tot[r][c], _mm256_sad_epu8(acc[r][c], zero));
            }
        }
    }
    let mut out = [[0u32; C]; R];
    for r in 0..R {
        for c0 in (0..C).step_by(4) {
            let t: [__m256i; 4] =
                std::array::from_fn(|i| if c0 + i < C { tot[r][c0 + i] } else { zero });
            let sums = hsum4_u64(t);
            for (i, &s) in sums.iter().enumerate().take(C - c0) {
                let c = c0 + i;
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
                out[r][c] = s as u32 + tail;
            }
        }
    }
    out
}

/// `s[r][c] = Σ_k a_r[k] · bit_k(b_c)` for u8 activations: each 32 weight bits are expanded
/// to byte masks (`vpshufb` + `vpcmpeqb`), ANDed with 32 activations and summed by `vpsadbw`.
///
/// # Safety
/// AVX2 must be present; `a` holds `R · stride` bytes with `stride = words · 64`; `b` holds
/// `C · words` words.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn masked_sums<const R: usize, const C: usize>(
    a: &[u8],
    stride: usize,
    b: &[u64],
    words: usize,
) -> [[u32; C]; R] {
    debug_assert!(stride == words * 64 && a.len() >= R * stride && b.len() >= C * words);
    let spread = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3,
        3, 3,
    );
    let bitsel = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let zero = _mm256_setzero_si256();
    let mut acc = [[zero; C]; R];
    let (ap, bp) = (a.as_ptr(), b.as_ptr() as *const u32);
    for h in 0..words * 2 {
        // SAFETY: h < 2·words so the u32 at c·2·words + h lies inside column c (little-endian:
        // half h holds bits 32h..32h+31); the 32 bytes at r·stride + 32h lie inside row r.
        unsafe {
            let mut masks = [zero; C];
            for (c, mk) in masks.iter_mut().enumerate() {
                let bits = bp.add(c * words * 2 + h).read_unaligned();
                let v = _mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), spread);
                *mk = _mm256_cmpeq_epi8(_mm256_and_si256(v, bitsel), bitsel);
            }
            for r in 0..R {
                let av = _mm256_loadu_si256(ap.add(r * stride + 32 * h) as *const __m256i);
                for c in 0..C {
                    let x = _mm256_sad_epu8(_mm256_and_si256(av, masks[c]), zero);
                    acc[r][c] = _mm256_add_epi64(acc[r][c], x);
                }
            }
        }
    }
    let mut out = [[0u32; C]; R];
    for r in 0..R {
        for c0 in (0..C).step_by(4) {
            let t: [__m256i; 4] =
                std::array::from_fn(|i| if c0 + i < C { acc[r][c0 + i] } else { zero });
            for (i, &s) in hsum4_u64(t).iter().enumerate().take(C - c0) {
                out[r][c0 + i] = s as u32;
            }
        }
    }
    out
}
