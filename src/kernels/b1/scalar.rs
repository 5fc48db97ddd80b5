//! Scalar twins of the binary tile kernels.

/// `pop[r][c] = Σ_w popcount(a[r·words + w] XOR b[c·words + w])`.
pub(super) fn xor_popcount<const R: usize, const C: usize>(
    a: &[u64],
    b: &[u64],
    words: usize,
) -> [[u32; C]; R] {
    let mut out = [[0u32; C]; R];
    for (r, orow) in out.iter_mut().enumerate() {
        let ar = &a[r * words..(r + 1) * words];
        for (c, o) in orow.iter_mut().enumerate() {
            let bc = &b[c * words..(c + 1) * words];
            *o = ar.iter().zip(bc).map(|(x, y)| (x ^ y).count_ones()).sum();
        }
    }
    out
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
