//! Scalar twins of the binary tile kernels.

/// `pop[r][c] = Σ_w popcount(a[r·words + w] XOR b[c·words + w])`, each word ANDed with the
/// nonzero mask `m[r·words + w]` when `MASK` (ternary activations; `m` is unread otherwise).
pub(super) fn xor_popcount<const R: usize, const C: usize, const MASK: bool>(
    a: &[u64],
    m: &[u64],
    b: &[u64],
    words: usize,
) -> [[u32; C]; R] {
    let mut out = [[0u32; C]; R];
    for (r, orow) in out.iter_mut().enumerate() {
        let ar = &a[r * words..(r + 1) * words];
        for (c, o) in orow.iter_mut().enumerate() {
            let bc = &b[c * words..(c + 1) * words];
            *o = (0..words)
                .map(|w| masked(ar[w] ^ bc[w], m, r * words + w, MASK).count_ones())
                .sum();
        }
    }
    out
}

/// `x AND m[at]` when `mask`, else `x`.
#[inline(always)]
pub(super) fn masked(x: u64, m: &[u64], at: usize, mask: bool) -> u64 {
    if mask {
        x & m[at]
    } else {
        x
    }
}

/// `s[r][c] = Σ_k a[r·stride + k] · bit_k(b_c)`: the sum of row r's u8 activations where column
/// c's weight is negative.
pub(super) fn masked_sums<const R: usize, const C: usize>(
    a: &[u8],
    stride: usize,
    b: &[u64],
    words: usize,
) -> [[u32; C]; R] {
    let mut out = [[0u32; C]; R];
    for (r, orow) in out.iter_mut().enumerate() {
        let ar = &a[r * stride..(r + 1) * stride];
        for (c, o) in orow.iter_mut().enumerate() {
            let bc = &b[c * words..(c + 1) * words];
            let mut s = 0u32;
            for (kk, &v) in ar.iter().enumerate() {
                s += v as u32 * ((bc[kk / 64] >> (kk % 64)) & 1) as u32;
            }
            *o = s;
        }
    }
    out
}
