//! Sign-bit packing of binary weights and activations, and the u8 copy of int8 activations.

use super::super::i8::Activations;
use super::{B1Error, K_MAX, MR, NR};

/// Packs the signs of `row` into `out` (one u64 per 64 values, the last word's unused bits 0),
/// bit 1 for `x < 0`. Returns `Σ|x|`.
fn pack_signs(row: &[f32], out: &mut [u64]) -> f64 {
    // Word by word, with the |x| sum in 8 independent f64 chains: a single chain runs at one
    // value per f64 addition latency.
    let mut abs = [0.0f64; 8];
    for (chunk, word) in row.chunks(64).zip(out.iter_mut()) {
        let mut bits = 0u64;
        for (i, &x) in chunk.iter().enumerate() {
            bits |= u64::from(x < 0.0) << i;
            abs[i % 8] += f64::from(x.abs());
        }
        *word = bits;
    }
    ((abs[0] + abs[4]) + (abs[2] + abs[6])) + ((abs[1] + abs[5]) + (abs[3] + abs[7]))
}

fn check_k(k: usize) -> Result<usize, B1Error> {
    if k > K_MAX {
        return Err(B1Error::KTooLarge { k, max: K_MAX });
    }
    Ok(k.div_ceil(64))
}

/// Checks that `len` values hold `m` rows of `k` with row stride `lda`.
fn check_rows(m: usize, k: usize, lda: usize, len: usize) -> Result<(), B1Error> {
    if lda < k {
        return Err(B1Error::Stride {
            what: "lda",
            got: lda,
            min: k,
        });
    }
    let need = if m == 0 { 0 } else { (m - 1) * lda + k };
    if len < need {
        return Err(B1Error::Length {
            what: "activations",
            expected: need,
            got: len,
        });
    }
    Ok(())
}

fn check_len(what: &'static str, expected: usize, got: usize) -> Result<(), B1Error> {
    if got != expected {
        return Err(B1Error::Length {
            what,
            expected,
            got,
        });
    }
    Ok(())
}

/// Binary weights: sign bits of W (N×K), one row of `words` u64 per output column (N padded to
/// a whole tile with zero columns), the scale α per column and the count of negative weights.
#[derive(Debug, Clone)]
pub struct PackedBinary {
    k: usize,
    n: usize,
    words: usize,
    bits: Vec<u64>,
    alpha: Vec<f32>,
    neg: Vec<u32>,
}

impl PackedBinary {
    /// Binarizes W given row-major N×K (`w[j * k + kk]`, the layout of Gemm `transB=1` and Conv):
    /// `sign(w)` with α<sub>j</sub> = `alpha[j]` when given (e.g. learned in QAT), else mean |w| of the
    /// column (XNOR-Net).
    pub fn from_n_by_k(
        n: usize,
        k: usize,
        w: &[f32],
        alpha: Option<&[f32]>,
    ) -> Result<PackedBinary, B1Error> {
        let words = check_k(k)?;
        check_len("weights", n.saturating_mul(k), w.len())?;
        if let Some(a) = alpha {
            check_len("alpha", n, a.len())?;
        }
        let np = n.div_ceil(NR) * NR;
        let mut bits = vec![0u64; np * words];
        let mut al = vec![0f32; np];
        let mut neg = vec![0u32; np];
        for j in 0..n {
            let row = &w[j * k..(j + 1) * k];
            let abs = pack_signs(row, &mut bits[j * words..(j + 1) * words]);
            al[j] = match alpha {
                Some(a) => a[j],
                None if k > 0 => (abs / k as f64) as f32,
                None => 0.0,
            };
            neg[j] = row.iter().filter(|&&x| x < 0.0).count() as u32;
        }
        Ok(PackedBinary {
            k,
            n,
            words,
            bits,
            alpha: al,
            neg,
        })
    }

    /// Inner dimension K.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Output columns N.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The scale α of column `j`.
    pub fn alpha(&self, j: usize) -> f32 {
        self.alpha[j]
    }

    /// Bytes held: sign bits, α and the negative counts.
    pub fn size_bytes(&self) -> usize {
        self.bits.len() * 8 + self.alpha.len() * 4 + self.neg.len() * 4
    }

    pub(super) fn words(&self) -> usize {
        self.words
    }

    /// Columns `j0 .. j0 + cols` (`cols · words` u64); `j0 + cols` must not pass the padding.
    pub(super) fn cols_from(&self, j0: usize, cols: usize) -> &[u64] {
        &self.bits[j0 * self.words..(j0 + cols) * self.words]
    }

    pub(super) fn neg_count(&self, j: usize) -> u32 {
        self.neg[j]
    }
}

/// Binary activations: sign bits of A (M×K) with a per-row scale β, and for ternary
/// activations ({-1, 0, +1}, ONNX `Sign`) a second plane of nonzero bits.
#[derive(Debug, Clone)]
pub struct BinaryActivations {
    m: usize,
    k: usize,
    words: usize,
    bits: Vec<u64>,
    /// Nonzero bits (1 where the value is not 0), laid out as `bits`; `None`: every value is ±1.
    mask: Option<Vec<u64>>,
    /// Per row, the values that count: K, or the row's nonzero count. `dot = count - 2·pop`.
    counts: Vec<i32>,
    beta: Vec<f32>,
}

impl BinaryActivations {
    /// Binarizes A, row-major M×K with row stride `lda`: `sign(a)` with β<sub>i</sub> = mean |a_i| when
    /// `row_scale` is true (XNOR-Net), else 1.
    pub fn pack(
        m: usize,
        k: usize,
        a: &[f32],
        lda: usize,
        row_scale: bool,
    ) -> Result<BinaryActivations, B1Error> {
        let words = check_k(k)?;
        check_rows(m, k, lda, a.len())?;
        let mp = m.div_ceil(MR) * MR;
        let mut bits = vec![0u64; mp * words];
        let mut beta = vec![1f32; m];
        // Row by row over the workers, like the product itself.
        crate::kernels::par::for_each_chunk_pair(
            &mut bits[..m * words],
            words,
            &mut beta,
            1,
            |i, row_bits, b| {
                let abs = pack_signs(&a[i * lda..i * lda + k], row_bits);
                if row_scale && k > 0 {
                    b[0] = (abs / k as f64) as f32;
                }
            },
        );
        Ok(BinaryActivations {
            m,
            k,
            words,
            bits,
            mask: None,
            counts: vec![k as i32; mp],
            beta,
        })
    }

    /// Ternary activations `sign(a)` with ONNX `Sign` semantics (−1, 0 or +1; −0.0 is 0), from
    /// A row-major M×K with row stride `lda`: a sign plane (1 for `x < 0`) and a nonzero plane
    /// (1 for `x != 0`), so `dot = nz - 2·popcount(nz AND (a XOR w))` is the exact
    /// `Σ sign(a)·sign(w)`. β is 1. A NaN counts as +1 (ONNX gives NaN).
    pub fn pack_ternary(
        m: usize,
        k: usize,
        a: &[f32],
        lda: usize,
    ) -> Result<BinaryActivations, B1Error> {
        check_rows(m, k, lda, a.len())?;
        BinaryActivations::ternary_rows(m, k, |i, sign, nonzero| {
            pack_ternary_row(&a[i * lda..i * lda + k], sign, nonzero);
        })
    }

    /// Ternary activations whose rows `fill(i, sign, nonzero)` writes: row `i`'s sign and
    /// nonzero planes (`words` u64 each, zeroed; bit `k % 64` of word `k / 64` is value k). Bits
    /// at or past K must stay 0 in the nonzero plane (they are masked out whatever the sign
    /// plane holds). Rows are filled in parallel over rayon's current pool.
    pub fn ternary_rows(
        m: usize,
        k: usize,
        fill: impl Fn(usize, &mut [u64], &mut [u64]) + Sync + Send,
    ) -> Result<BinaryActivations, B1Error> {
        let words = check_k(k)?;
        let mp = m.div_ceil(MR) * MR;
        let mut bits = vec![0u64; mp * words];
        let mut mask = vec![0u64; mp * words];
        let mut counts = vec![0i32; mp];
        if words > 0 {
            crate::kernels::par::for_each_chunk_pair(
                &mut bits[..m * words],
                words,
                &mut mask[..m * words],
                words,
                |i, sign, nonzero| fill(i, sign, nonzero),
            );
        }
        for (c, row) in counts.iter_mut().zip(mask.chunks(words.max(1))).take(m) {
            *c = row.iter().map(|w| w.count_ones() as i32).sum();
        }
        Ok(BinaryActivations {
            m,
            k,
            words,
            bits,
            mask: Some(mask),
            counts,
            beta: vec![1.0; m],
        })
    }

    /// Rows M.
    pub fn m(&self) -> usize {
        self.m
    }

    /// Inner dimension K.
    pub fn k(&self) -> usize {
        self.k
    }

    pub(super) fn scales(&self) -> &[f32] {
        &self.beta
    }

    pub(super) fn rows_from(&self, i0: usize, rows: usize) -> &[u64] {
        &self.bits[i0 * self.words..(i0 + rows) * self.words]
    }

    /// The nonzero plane's rows `i0 .. i0 + rows`, for ternary activations.
    pub(super) fn mask_from(&self, i0: usize, rows: usize) -> Option<&[u64]> {
        let m = self.mask.as_ref()?;
        Some(&m[i0 * self.words..(i0 + rows) * self.words])
    }

    /// Values that count in row `i`'s dot product (K, or its nonzero count).
    pub(super) fn count(&self, i: usize) -> i32 {
        self.counts[i]
    }
}

/// The sign (`x < 0`) and nonzero (`x != 0`) bits of `row` into `sign` and `nonzero`.
pub(super) fn pack_ternary_row(row: &[f32], sign: &mut [u64], nonzero: &mut [u64]) {
    for ((chunk, s), z) in row.chunks(64).zip(sign.iter_mut()).zip(nonzero.iter_mut()) {
        let (mut sb, mut zb) = (0u64, 0u64);
        for (i, &x) in chunk.iter().enumerate() {
            sb |= u64::from(x < 0.0) << i;
            zb |= u64::from(x != 0.0) << i;
        }
        *s = sb;
        *z = zb;
    }
}

/// The bytes of `a`, whether they are s8, and the zero point.
pub(super) fn raw(a: Activations<'_>) -> (&[u8], bool, i32) {
    match a {
        Activations::U8 { data, zero_point } => (data, false, i32::from(zero_point)),
        Activations::S8 { data, zero_point } => {
            (bytemuck::cast_slice(data), true, i32::from(zero_point))
        }
    }
}

/// Int8 activations as u8 (s8 shifted by 128), rows padded with zeros to whole words of K and
/// whole tiles of rows, with their row sums and the zero point in the same shift.
pub(super) struct Unsigned {
    data: Vec<u8>,
    pub(super) stride: usize,
    pub(super) row_sums: Vec<i32>,
    pub(super) zero_point: i32,
}

impl Unsigned {
    /// From a row-major `m × k` matrix with row stride `lda`.
    pub(super) fn new(
        m: usize,
        a: Activations<'_>,
        lda: usize,
        k: usize,
        stride: usize,
        tile_rows: usize,
    ) -> Result<Unsigned, B1Error> {
        let need = if m == 0 { 0 } else { (m - 1) * lda + k };
        let (src, signed, zero_point) = raw(a);
        if src.len() < need {
            return Err(B1Error::Length {
                what: "activations",
                expected: need,
                got: src.len(),
            });
        }
        Ok(Unsigned::from_rows(
            m,
            k,
            stride,
            tile_rows,
            (signed, zero_point),
            |i, row| row.copy_from_slice(&src[i * lda..i * lda + k]),
        ))
    }

    /// From rows that `fill(i, row)` writes as raw bytes (K of them) of activations of the
    /// given signedness and zero point; rows are filled in parallel over rayon's current pool.
    pub(super) fn from_rows(
        m: usize,
        k: usize,
        stride: usize,
        tile_rows: usize,
        (signed, zero_point): (bool, i32),
        fill: impl Fn(usize, &mut [u8]) + Sync + Send,
    ) -> Unsigned {
        let mp = m.div_ceil(tile_rows) * tile_rows;
        let mut data = vec![0u8; mp * stride];
        let mut row_sums = vec![0i32; mp];
        crate::kernels::par::for_each_chunk_pair(
            &mut data[..m * stride],
            stride,
            &mut row_sums[..m],
            1,
            |i, row, sum| {
                let row = &mut row[..k];
                fill(i, row);
                if signed {
                    for v in row.iter_mut() {
                        *v ^= 0x80;
                    }
                }
                sum[0] = row.iter().map(|&v| v as i32).sum();
            },
        );
        Unsigned {
            data,
            stride,
            row_sums,
            // s8 shifted by 128 to u8: the zero point moves with it.
            zero_point: zero_point + if signed { 128 } else { 0 },
        }
    }

    pub(super) fn rows_from(&self, i0: usize, rows: usize) -> &[u8] {
        &self.data[i0 * self.stride..(i0 + rows) * self.stride]
    }
}
