//! The wide XNOR-popcount kernel for AVX-512 VPOPCNTDQ: rows in vector lanes, no horizontal sums.
//!
//! The activations of one call are regrouped eight rows at a time ([`RowGroups`]: for each group
//! and word, the eight rows' words side by side), so one 512-bit load holds the same word of
//! eight rows. A tile of [`RG`]` · 8` rows × up to [`NC`] columns keeps `RG · NC` accumulators
//! whose lanes are rows: per word it loads `RG` row vectors, broadcasts each column's weight word
//! and does `vpxorq` + `vpopcntq` + `vpaddq` per accumulator, so each loaded or broadcast word
//! serves `NC` (or `8 · RG`) row/column pairs, and the lanes come out as finished popcounts.
//!
//! Popcounts are exact integers, so the result is the scalar twin's
//! ([`super::scalar::xor_popcount`]) whatever the order; [`tile_portable`] is this tile's own
//! scalar twin, tested against the SIMD tile on random shapes.

/// Rows per group: the u64 lanes of one 512-bit vector.
pub(super) const LANES: usize = 8;
/// Row groups per tile.
pub(super) const RG: usize = 2;
/// Rows per tile.
pub(super) const ROWS: usize = RG * LANES;
/// Columns per tile.
pub(super) const NC: usize = 6;

/// Binary activations regrouped for the wide kernel: `[group][word][8 rows]`, rows past M zero.
pub(super) struct RowGroups {
    words: usize,
    bits: Vec<u64>,
}

impl RowGroups {
    /// Regroups `m` rows of `words` u64 each (`bits[i * words + w]`), padding to whole tiles.
    pub(super) fn new(m: usize, words: usize, bits: &[u64]) -> RowGroups {
        let groups = m.div_ceil(ROWS) * RG;
        let mut out = vec![0u64; groups * words * LANES];
        for i in 0..m {
            let (g, lane) = (i / LANES, i % LANES);
            for w in 0..words {
                out[(g * words + w) * LANES + lane] = bits[i * words + w];
            }
        }
        RowGroups { words, bits: out }
    }

    /// The `RG` groups of the tile starting at row `i0` (a multiple of [`ROWS`]).
    pub(super) fn tile_rows(&self, i0: usize) -> &[u64] {
        let per = self.words * LANES;
        let g0 = i0 / LANES;
        &self.bits[g0 * per..(g0 + RG) * per]
    }
}

/// `pop[c][r] = Σ_w popcount(row r XOR column c)` for the tile's [`ROWS`] rows (`rows` as
/// [`RowGroups::tile_rows`] gives them) and `C` columns (`cols`, `C · words` u64, column-major
/// as [`super::PackedBinary`] stores them); each word ANDed with the rows' nonzero mask
/// (`masks`, grouped like `rows`) when `MASK`, `masks` unread otherwise.
pub(super) fn tile_portable<const C: usize, const MASK: bool>(
    rows: &[u64],
    masks: &[u64],
    cols: &[u64],
    words: usize,
) -> [[u64; ROWS]; C] {
    std::array::from_fn(|c| {
        std::array::from_fn(|r| {
            let (g, lane) = (r / LANES, r % LANES);
            (0..words)
                .map(|w| {
                    let at = (g * words + w) * LANES + lane;
                    let x = super::scalar::masked(rows[at] ^ cols[c * words + w], masks, at, MASK);
                    u64::from(x.count_ones())
                })
                .sum()
        })
    })
}

/// The AVX-512 tile: same contract and result as [`tile_portable`]; the masked form is one
/// `vpternlogq` (`(a XOR w) AND m`) per accumulator.
///
/// # Safety
/// The CPU must support AVX-512 F and VPOPCNTDQ; `rows` (and `masks` when `MASK`) hold
/// `RG · words · 8` and `cols` `C · words` u64.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq")]
pub(super) unsafe fn tile_avx512<const C: usize, const MASK: bool>(
    rows: &[u64],
    masks: &[u64],
    cols: &[u64],
    words: usize,
) -> [[u64; ROWS]; C] {
    use std::arch::x86_64::*;
    debug_assert!(rows.len() >= RG * words * LANES && cols.len() >= C * words);
    debug_assert!(!MASK || masks.len() >= RG * words * LANES);
    let (rp, mp, cp) = (rows.as_ptr(), masks.as_ptr(), cols.as_ptr());
    let mut acc = [[_mm512_setzero_si512(); RG]; C];
    for w in 0..words {
        // SAFETY: w < words, so group g's word w (8 u64) lies inside `rows` (and `masks` when
        // read) and column c's word w inside `cols` (lengths checked by the caller's contract).
        unsafe {
            let av: [__m512i; RG] =
                std::array::from_fn(|g| _mm512_loadu_si512(rp.add((g * words + w) * LANES) as _));
            let mv: [__m512i; RG] = std::array::from_fn(|g| {
                if MASK {
                    _mm512_loadu_si512(mp.add((g * words + w) * LANES) as _)
                } else {
                    _mm512_setzero_si512()
                }
            });
            for (c, accc) in acc.iter_mut().enumerate() {
                let bv = _mm512_set1_epi64(cp.add(c * words + w).read() as i64);
                for (g, x) in accc.iter_mut().enumerate() {
                    // 0x28 = (A XOR B) AND C for A = rows, B = weights, C = mask.
                    let v = if MASK {
                        _mm512_ternarylogic_epi64::<0x28>(av[g], bv, mv[g])
                    } else {
                        _mm512_xor_si512(av[g], bv)
                    };
                    *x = _mm512_add_epi64(*x, _mm512_popcnt_epi64(v));
                }
            }
        }
    }
    let mut out = [[0u64; ROWS]; C];
    for (o, accc) in out.iter_mut().zip(&acc) {
        for (g, v) in accc.iter().enumerate() {
            // SAFETY: `o[g·8 ..]` holds 8 u64; unaligned store.
            unsafe { _mm512_storeu_si512(o[g * LANES..].as_mut_ptr() as _, *v) };
        }
    }
    out
}
