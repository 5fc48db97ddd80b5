//! The s8 weight matrix B packed once into column panels of [`NR`] with K in groups of [`KQ`].
//!
//! Layout: panel `p` covers columns `p·NR .. p·NR+NR`; inside it, for each group `q` of four K
//! values, the 8 columns follow each other with their 4 values adjacent
//! (`[c0k0 c0k1 c0k2 c0k3 c1k0 … c7k3]`, 32 bytes). Panels come in blocks of [`PAIR`]: the groups
//! of a block's panels alternate (`[panel 2b, group q][panel 2b+1, group q]`, [`GS`] bytes per
//! group), so the 16 columns of a block are one 512-bit `vpdpbusd` operand while an 8-column
//! kernel reads its panel with a stride of [`GS`]. Padding (K up to a multiple of 4, N up to a
//! multiple of 16) holds 0, so it adds nothing to any sum.

use super::{I8Error, KQ, K_MAX, NR};

/// Panels per block (a block is 16 columns: one 64-byte row per K group).
pub(super) const PAIR: usize = 2;
/// Bytes from one K group of a panel to the next: one group of every panel of its block.
pub(super) const GS: usize = KQ * NR * PAIR;
/// Columns per block.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) const BLOCK: usize = NR * PAIR;

/// Bytes a panel slice must hold for `kp` padded K values: up to the end of its last group.
pub(super) fn panel_len(kp: usize) -> usize {
    (kp / KQ).saturating_sub(1) * GS + KQ * NR
}

/// The weights' zero point: none (symmetric), one per tensor, or one per output column.
#[derive(Debug, Clone, Copy)]
pub enum WeightZeroPoint<'a> {
    /// Symmetric weights (zero point 0).
    None,
    /// One zero point for all columns.
    PerTensor(i8),
    /// One zero point per output column (N values).
    PerChannel(&'a [i8]),
}

impl<'a> WeightZeroPoint<'a> {
    /// The zero points of columns `j0 .. j0 + n` (the same for none or one per tensor).
    pub fn columns(self, j0: usize, n: usize) -> Result<WeightZeroPoint<'a>, I8Error> {
        Ok(match self {
            WeightZeroPoint::PerChannel(z) => WeightZeroPoint::PerChannel(
                super::epilogue::columns_of("weight zero points", z, j0, n)?,
            ),
            other => other,
        })
    }
}

/// B (K×N, s8) packed for the INT8 kernels, with its column sums and zero points.
#[derive(Debug, Clone)]
pub struct PackedI8 {
    k: usize,
    n: usize,
    kp: usize,
    data: Vec<i8>,
    /// `Σ_k b[k][j]` per column (padded to whole blocks), for folding an activation shift back.
    col_sums: Vec<i32>,
    /// Zero point per column (padded to whole blocks; 0 for symmetric weights), as i32 so a
    /// tile row reads it as one vector.
    zero_points: Vec<i32>,
    /// Whether any zero point is not 0 (else the activations' row sums are not needed).
    has_zero_points: bool,
}

impl PackedI8 {
    /// Packs B given row-major as K×N (`b[kk * n + j]`): the layout of ONNX MatMul's B.
    pub fn from_k_by_n(
        k: usize,
        n: usize,
        b: &[i8],
        zp: WeightZeroPoint<'_>,
    ) -> Result<PackedI8, I8Error> {
        Self::check(k, n, b.len(), zp)?;
        Ok(Self::build(k, n, zp, |kk, j| b[kk * n + j]))
    }

    /// Packs B given as its transpose, row-major N×K (`w[j * k + kk]`): the layout of Gemm with
    /// `transB=1` and of Conv weights.
    pub fn from_n_by_k(
        n: usize,
        k: usize,
        w: &[i8],
        zp: WeightZeroPoint<'_>,
    ) -> Result<PackedI8, I8Error> {
        Self::check(k, n, w.len(), zp)?;
        Ok(Self::build(k, n, zp, |kk, j| w[j * k + kk]))
    }

    fn check(k: usize, n: usize, len: usize, zp: WeightZeroPoint<'_>) -> Result<(), I8Error> {
        if k > K_MAX {
            return Err(I8Error::KTooLarge { k, max: K_MAX });
        }
        let expected = k.checked_mul(n).ok_or(I8Error::Length {
            what: "weights",
            expected: usize::MAX,
            got: len,
        })?;
        if len != expected {
            return Err(I8Error::Length {
                what: "weights",
                expected,
                got: len,
            });
        }
        if let WeightZeroPoint::PerChannel(z) = zp {
            if z.len() != n {
                return Err(I8Error::Length {
                    what: "weight zero points",
                    expected: n,
                    got: z.len(),
                });
            }
        }
        Ok(())
    }

    fn build(
        k: usize,
        n: usize,
        zp: WeightZeroPoint<'_>,
        get: impl Fn(usize, usize) -> i8,
    ) -> PackedI8 {
        let kp = k.div_ceil(KQ) * KQ;
        let panels = n.div_ceil(NR);
        let blocks = panels.div_ceil(PAIR);
        let mut data = vec![0i8; blocks * kp * NR * PAIR];
        let mut col_sums = vec![0i32; blocks * BLOCK];
        for (j, sum) in col_sums.iter_mut().enumerate().take(n) {
            let (blk, c) = (j / (NR * PAIR), j % (NR * PAIR));
            let base = blk * kp * NR * PAIR + c * KQ;
            for kk in 0..k {
                let v = get(kk, j);
                data[base + (kk / KQ) * GS + kk % KQ] = v;
                *sum += v as i32;
            }
        }
        let mut zero_points = vec![0i32; blocks * BLOCK];
        for (j, z) in zero_points.iter_mut().enumerate().take(n) {
            *z = match zp {
                WeightZeroPoint::None => 0,
                WeightZeroPoint::PerTensor(z) => z as i32,
                WeightZeroPoint::PerChannel(z) => z[j] as i32,
            };
        }
        PackedI8 {
            k,
            n,
            kp,
            data,
            col_sums,
            has_zero_points: zero_points.iter().any(|&z| z != 0),
            zero_points,
        }
    }

    /// Inner dimension K.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Output columns N.
    pub fn n(&self) -> usize {
        self.n
    }

    /// K padded to a multiple of [`KQ`].
    pub(super) fn kp(&self) -> usize {
        self.kp
    }

    /// Number of [`NR`]-column panels.
    pub(super) fn panels(&self) -> usize {
        self.n.div_ceil(NR)
    }

    /// The packed bytes of panel `p`: group `q` is the [`KQ`]` · `[`NR`] bytes at `q · GS`.
    #[inline(always)]
    pub(super) fn panel(&self, p: usize) -> &[i8] {
        let block = self.block(p / PAIR);
        // An empty block (K = 0) has no groups to offset into.
        &block[((p % PAIR) * KQ * NR).min(block.len())..]
    }

    /// The packed bytes of block `b` (panels `PAIR·b ..`): group `q` is the [`GS`] bytes at
    /// `q · GS`.
    #[inline(always)]
    pub(super) fn block(&self, b: usize) -> &[i8] {
        let len = self.kp * NR * PAIR;
        &self.data[b * len..(b + 1) * len]
    }

    /// `Σ_k b[k][j]` for the [`NR`] columns of panel `p`.
    #[inline(always)]
    pub(super) fn col_sums(&self, p: usize) -> &[i32; NR] {
        self.col_sums[p * NR..(p + 1) * NR]
            .try_into()
            .expect("padded to whole panels")
    }

    /// The weight zero points of the [`NR`] columns of panel `p`.
    #[inline(always)]
    pub(super) fn zero_points(&self, p: usize) -> &[i32; NR] {
        self.zero_points[p * NR..(p + 1) * NR]
            .try_into()
            .expect("padded to whole panels")
    }

    /// `Σ_k b[k][j]` for the [`BLOCK`] columns of block `b`.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    #[inline(always)]
    pub(super) fn block_col_sums(&self, b: usize) -> &[i32] {
        &self.col_sums[b * BLOCK..(b + 1) * BLOCK]
    }

    /// The weight zero points of the [`BLOCK`] columns of block `b`.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    #[inline(always)]
    pub(super) fn block_zero_points(&self, b: usize) -> &[i32] {
        &self.zero_points[b * BLOCK..(b + 1) * BLOCK]
    }

    /// Whether any weight zero point is not 0.
    #[inline(always)]
    pub(super) fn has_zero_points(&self) -> bool {
        self.has_zero_points
    }

    /// Bytes held by the packed form: weights, column sums and zero points.
    pub fn size_bytes(&self) -> usize {
        self.data.len() + (self.col_sums.len() + self.zero_points.len()) * 4
    }
}
