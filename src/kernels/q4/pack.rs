//! 4-bit weights in ONNX Runtime's `com.microsoft.MatMulNBits` layout (bits = 4).
//!
//! B is `[N, n_blocks, blob]` u8 with `n_blocks = ceil(K / block)` and `blob = block / 2`: the
//! values of column `n` along K, two per byte, low nibble first (value `k` is in byte `k / 2`,
//! low nibble when `k` is even). `scales` is `[N · n_blocks]` f32. `zero_points`, when present, is
//! `[N · ceil(n_blocks / 2)]` u8, two per byte, low nibble first; absent means 8. A weight is
//! `(q - zp) · scale`.

use super::interleave::Interleaved;
use super::Q4Error;
use std::sync::OnceLock;

/// Group sizes accepted along K.
pub const BLOCK_SIZES: [usize; 3] = [32, 64, 128];

/// 4-bit group-quantized weights (N×K), kept in the MatMulNBits layout, which the kernels read
/// directly (one pass over each column's bytes).
#[derive(Debug, Clone)]
pub struct PackedQ4 {
    n: usize,
    k: usize,
    block: usize,
    blocks: usize,
    data: Vec<u8>,
    scales: Vec<f32>,
    zero_points: Option<Vec<u8>>,
    /// The copy the grouped (AVX-512 VNNI) kernels read, made on their first call.
    interleaved: OnceLock<Interleaved>,
}

impl PackedQ4 {
    /// Takes MatMulNBits tensors as they are stored in a model: `b` `[N, n_blocks, block/2]`,
    /// `scales` `[N · n_blocks]`, `zero_points` `[N · ceil(n_blocks/2)]` (packed u4) or absent.
    pub fn from_matmul_nbits(
        n: usize,
        k: usize,
        block: usize,
        b: &[u8],
        scales: &[f32],
        zero_points: Option<&[u8]>,
    ) -> Result<PackedQ4, Q4Error> {
        if !BLOCK_SIZES.contains(&block) {
            return Err(Q4Error::BlockSize { block });
        }
        let blocks = k.div_ceil(block);
        let len = |what, expected: usize, got: usize| {
            if expected == got {
                Ok(())
            } else {
                Err(Q4Error::Length {
                    what,
                    expected,
                    got,
                })
            }
        };
        len(
            "B",
            n.saturating_mul(blocks).saturating_mul(block / 2),
            b.len(),
        )?;
        len("scales", n.saturating_mul(blocks), scales.len())?;
        if let Some(z) = zero_points {
            len("zero_points", n.saturating_mul(blocks.div_ceil(2)), z.len())?;
        }
        Ok(PackedQ4 {
            n,
            k,
            block,
            blocks,
            data: b.to_vec(),
            scales: scales.to_vec(),
            zero_points: zero_points.map(<[u8]>::to_vec),
            interleaved: OnceLock::new(),
        })
    }

    /// Quantizes f32 weights given row-major N×K (`w[j * k + kk]`) by round-to-nearest per
    /// block: symmetric (`scale = max|w| / 7`, zero point 8, none stored) or asymmetric
    /// (`scale = (max - min) / 15` over a range that includes 0, zero point stored).
    pub fn quantize(
        n: usize,
        k: usize,
        block: usize,
        w: &[f32],
        zero_points: bool,
    ) -> Result<PackedQ4, Q4Error> {
        if !BLOCK_SIZES.contains(&block) {
            return Err(Q4Error::BlockSize { block });
        }
        if w.len() != n.saturating_mul(k) {
            return Err(Q4Error::Length {
                what: "weights",
                expected: n.saturating_mul(k),
                got: w.len(),
            });
        }
        let blocks = k.div_ceil(block);
        let mut data = vec![0u8; n * blocks * block / 2];
        let mut scales = vec![0f32; n * blocks];
        let zp_stride = blocks.div_ceil(2);
        let mut zps = vec![0u8; if zero_points { n * zp_stride } else { 0 }];
        for j in 0..n {
            for bl in 0..blocks {
                let (k0, k1) = (bl * block, ((bl + 1) * block).min(k));
                let vals = &w[j * k + k0..j * k + k1];
                let (scale, zp) = if zero_points {
                    let lo = vals.iter().fold(0f32, |m, &x| m.min(x));
                    let hi = vals.iter().fold(0f32, |m, &x| m.max(x));
                    let s = (hi - lo) / 15.0;
                    let z = if s > 0.0 {
                        (-lo / s).round_ties_even().clamp(0.0, 15.0) as u8
                    } else {
                        8
                    };
                    (s, z)
                } else {
                    (vals.iter().fold(0f32, |m, &x| m.max(x.abs())) / 7.0, 8)
                };
                scales[j * blocks + bl] = scale;
                if zero_points {
                    zps[j * zp_stride + bl / 2] |= zp << (4 * (bl % 2));
                }
                let base = (j * blocks + bl) * block / 2;
                for (i, &x) in vals.iter().enumerate() {
                    let q = if scale > 0.0 {
                        (x / scale).round_ties_even() + zp as f32
                    } else {
                        zp as f32
                    };
                    let q = q.clamp(0.0, 15.0) as u8;
                    data[base + i / 2] |= q << (4 * (i % 2));
                }
                // Padding past K holds the zero point, as ORT's quantizer writes it.
                for i in vals.len()..block {
                    data[base + i / 2] |= zp << (4 * (i % 2));
                }
            }
        }
        Ok(PackedQ4 {
            n,
            k,
            block,
            blocks,
            data,
            scales,
            zero_points: zero_points.then_some(zps),
            interleaved: OnceLock::new(),
        })
    }

    /// Output columns N.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Inner dimension K.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Group size along K.
    pub fn block(&self) -> usize {
        self.block
    }

    /// The MatMulNBits `B` tensor bytes.
    pub fn b(&self) -> &[u8] {
        &self.data
    }

    /// The MatMulNBits `scales` tensor.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// The MatMulNBits `zero_points` tensor (packed u4), when present.
    pub fn zero_points(&self) -> Option<&[u8]> {
        self.zero_points.as_deref()
    }

    /// Bytes held: packed values, scales and zero points, plus the interleaved copy once an
    /// AVX-512 VNNI Int8 call has made it.
    pub fn size_bytes(&self) -> usize {
        self.data.len()
            + self.scales.len() * 4
            + self.zero_points.as_ref().map_or(0, Vec::len)
            + self.interleaved.get().map_or(0, Interleaved::size_bytes)
    }

    /// The weights regrouped for the grouped kernels, made on first use.
    pub(super) fn interleaved(&self) -> &Interleaved {
        self.interleaved.get_or_init(|| Interleaved::new(self))
    }

    /// The dequantized weight `(q - zp) · scale` of column `j` at `kk`.
    pub fn weight(&self, j: usize, kk: usize) -> f32 {
        let bl = kk / self.block;
        let byte = self.data[(j * self.blocks + bl) * self.block / 2 + (kk % self.block) / 2];
        let q = (byte >> (4 * (kk % 2))) & 0xf;
        (q as f32 - self.zero_point(j, bl) as f32) * self.scales[j * self.blocks + bl]
    }

    pub(super) fn blocks(&self) -> usize {
        self.blocks
    }

    /// Column `j`'s packed bytes (`blocks · block / 2`).
    #[inline(always)]
    pub(super) fn column(&self, j: usize) -> &[u8] {
        let len = self.blocks * self.block / 2;
        &self.data[j * len..(j + 1) * len]
    }

    /// Column `j`'s scales (`blocks`).
    #[inline(always)]
    pub(super) fn column_scales(&self, j: usize) -> &[f32] {
        &self.scales[j * self.blocks..(j + 1) * self.blocks]
    }

    /// The zero point of block `bl` of column `j` (8 when none are stored).
    #[inline(always)]
    pub(super) fn zero_point(&self, j: usize, bl: usize) -> u8 {
        match &self.zero_points {
            None => 8,
            Some(z) => (z[j * self.blocks.div_ceil(2) + bl / 2] >> (4 * (bl % 2))) & 0xf,
        }
    }
}
