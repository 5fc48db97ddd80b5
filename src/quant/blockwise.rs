//! 4-bit weight-only quantization in ONNX Runtime's `com.microsoft::MatMulNBits` layout, with the
//! numerics of ORT's `MatMulNBitsQuantizer` (MLAS `BlockwiseQuantizer`, `range2scale` /
//! `range2scalezp`).
//!
//! For a weight `B [K, N]` and block (group) size `bs`, `n_blocks = ceil(K / bs)`:
//! * data `[N, n_blocks, bs / 2]` u8: column `n`'s block `b` holds rows `b·bs ..`, two per byte,
//!   the lower row in the low nibble; rows past K are zero nibbles (as ORT leaves them);
//! * scales `[N · n_blocks]` f32, column-major over blocks;
//! * zero points (asymmetric only) `[N · ceil(n_blocks / 2)]` u8, two blocks per byte, low nibble
//!   first, a missing last nibble padded with 8. Without zero points MatMulNBits uses 8.
//!
//! Symmetric: `scale = v / −8` where `v` is the block's value of largest magnitude (so the scale
//! may be negative, as in ORT), zero point 8. Asymmetric: the range is widened to hold 0,
//! `scale = (max − min) / 15`, zero point `roundf(−min / scale)` clamped to `[0, 15]`. Values are
//! `clamp(roundf(v · (1/scale) + zp), 0, 15)` where `roundf` rounds half away from zero (C's
//! `roundf`, not ONNX's half-to-even: this is what ORT's quantizer does).

use crate::quant::QuantError;

/// A `B [K, N]` weight in MatMulNBits form.
#[derive(Debug, Clone, PartialEq)]
pub struct Q4Weight {
    /// Rows of B (the reduction dimension).
    pub k: usize,
    /// Columns of B (outputs).
    pub n: usize,
    /// Group size along K.
    pub block_size: usize,
    /// Packed nibbles, `[N, n_blocks, block_size / 2]`.
    pub data: Vec<u8>,
    /// Scales, `[N · n_blocks]`.
    pub scales: Vec<f32>,
    /// Packed zero points `[N · ceil(n_blocks / 2)]`, or `None` for symmetric (implicit 8).
    pub zero_points: Option<Vec<u8>>,
}

impl Q4Weight {
    /// Blocks per column.
    pub fn n_blocks(&self) -> usize {
        self.k.div_ceil(self.block_size)
    }

    /// The weight back in f32, `[K, N]` row-major, as MatMulNBits dequantizes it.
    pub fn dequantize(&self) -> Vec<f32> {
        let nb = self.n_blocks();
        let blob = self.block_size / 2;
        let mut out = vec![0.0f32; self.k * self.n];
        for col in 0..self.n {
            for row in 0..self.k {
                let b = row / self.block_size;
                let within = row % self.block_size;
                let byte = self.data[(col * nb + b) * blob + within / 2];
                let q = if within.is_multiple_of(2) {
                    byte & 15
                } else {
                    byte >> 4
                };
                let zp = self.zero_point(col, b);
                out[row * self.n + col] =
                    (f32::from(q) - f32::from(zp)) * self.scales[col * nb + b];
            }
        }
        out
    }

    fn zero_point(&self, col: usize, block: usize) -> u8 {
        match &self.zero_points {
            None => 8,
            Some(z) => {
                let byte = z[col * self.n_blocks().div_ceil(2) + block / 2];
                if block.is_multiple_of(2) {
                    byte & 15
                } else {
                    byte >> 4
                }
            }
        }
    }
}

/// Quantizes `b` (`[K, N]` row-major) block-wise along K. `name` labels errors: a block size
/// ORT does not support, a size mismatch, or non-finite weights.
pub fn quantize_q4(
    name: &str,
    b: &[f32],
    k: usize,
    n: usize,
    block_size: usize,
    symmetric: bool,
) -> Result<Q4Weight, QuantError> {
    if ![16, 32, 64, 128, 256].contains(&block_size) {
        return Err(QuantError::graph(
            name,
            format!("4-bit block size {block_size} is not one ORT supports (16, 32, 64, 128, 256)"),
        ));
    }
    if k.checked_mul(n) != Some(b.len()) || k == 0 || n == 0 {
        return Err(QuantError::graph(
            name,
            format!("weight holds {} values, not K={k} × N={n}", b.len()),
        ));
    }
    if let Some(i) = b.iter().position(|v| !v.is_finite()) {
        return Err(QuantError::graph(
            name,
            format!("weight element {i} is {}", b[i]),
        ));
    }
    let nb = k.div_ceil(block_size);
    let blob = block_size / 2;
    let mut data = vec![0u8; n * nb * blob];
    let mut scales = vec![0.0f32; n * nb];
    let mut zps = vec![0x88u8; n * nb.div_ceil(2)];
    let mut q = vec![0u8; block_size];
    for col in 0..n {
        for blk in 0..nb {
            let rows = blk * block_size..((blk + 1) * block_size).min(k);
            let (mut lo, mut hi) = (f32::MAX, -f32::MAX);
            for r in rows.clone() {
                lo = lo.min(b[r * n + col]);
                hi = hi.max(b[r * n + col]);
            }
            let (scale, zp) = if symmetric {
                let v = if hi.abs() > lo.abs() { hi } else { lo };
                (v / -8.0, 8u8)
            } else {
                range_to_scale_zp(lo, hi)
            };
            let recip = if scale != 0.0 { 1.0 / scale } else { 0.0 };
            q.fill(0);
            for (i, r) in rows.enumerate() {
                q[i] = (b[r * n + col] * recip + f32::from(zp))
                    .round()
                    .clamp(0.0, 15.0) as u8;
            }
            let dst = &mut data[(col * nb + blk) * blob..][..blob];
            for (j, byte) in dst.iter_mut().enumerate() {
                *byte = (q[2 * j] & 15) | (q[2 * j + 1] << 4);
            }
            scales[col * nb + blk] = scale;
            let z = &mut zps[col * nb.div_ceil(2) + blk / 2];
            *z = if blk.is_multiple_of(2) {
                (*z & 0xF0) | zp
            } else {
                (*z & 0x0F) | (zp << 4)
            };
        }
    }
    Ok(Q4Weight {
        k,
        n,
        block_size,
        data,
        scales,
        zero_points: (!symmetric).then_some(zps),
    })
}

/// MLAS `range2scalezp` for 4 bits.
fn range_to_scale_zp(min: f32, max: f32) -> (f32, u8) {
    let (min, max) = (min.min(0.0), max.max(0.0));
    let scale = (max - min) / 15.0;
    let zp = if scale != 0.0 { -min / scale } else { min };
    let zp = if zp < 0.0 {
        0
    } else if zp > 15.0 {
        15
    } else {
        zp.round() as u8
    };
    (scale, zp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_block_matches_ort_quantize_matmul_4bits() {
        // K=4 (one block of 32, padded), N=2. Reference from
        // onnxruntime.capi._pybind_state.quantize_matmul_4bits(..., block_size=32, is_symmetric=True)
        // on b = [[1.0, -0.5], [-0.25, 0.3], [0.5, 2.0], [0.0, -1.0]].
        let b = [1.0, -0.5, -0.25, 0.3, 0.5, 2.0, 0.0, -1.0];
        let w = quantize_q4("w", &b, 4, 2, 32, true).unwrap();
        assert_eq!(w.scales, vec![-0.125, -0.25]);
        // column 0: 1/-0.125 + 8 = 0, -0.25 -> 10, 0.5 -> 4, 0 -> 8; rows past K: 0 (as ORT).
        assert_eq!(&w.data[..3], &[0xA0, 0x84, 0x00]);
        // column 1: -0.5 -> 10, 0.3 -> 6.8 -> 7, 2.0 -> 0, -1.0 -> 12.
        assert_eq!(&w.data[16..18], &[0x7A, 0xC0]);
        assert!(w.zero_points.is_none());
        let d = w.dequantize();
        assert_eq!(d[0], 1.0);
        assert_eq!(d[3], 0.25); // (7 - 8) * -0.25
    }

    #[test]
    fn asymmetric_blocks_pack_zero_points_low_nibble_first() {
        // K=40, block 16 -> 3 blocks, N=1. Reference from ORT's quantize_matmul_4bits
        // (is_symmetric=False): scales [0.1, 0.1, 0.1], zero points [0xf0, 0x08], data bytes
        // 0 and 8 and 16 = 0xf0, 0xf0, 0xf1, rest of the blocks 0x00/0xff/0x88 by their zp.
        let mut b = [0.0f32; 40];
        b[..2].copy_from_slice(&[0.0, 1.5]);
        b[16..18].copy_from_slice(&[-1.5, 0.0]);
        b[32..34].copy_from_slice(&[-0.75, 0.75]);
        let w = quantize_q4("w", &b, 40, 1, 16, false).unwrap();
        assert_eq!(w.scales, vec![0.1, 0.1, 0.1]);
        assert_eq!(w.zero_points, Some(vec![0xF0, 0x88]));
        assert_eq!((w.data[0], w.data[8], w.data[16]), (0xF0, 0xF0, 0xF1));
        assert_eq!(
            (w.data[1], w.data[9], w.data[17], w.data[20]),
            (0x00, 0xFF, 0x88, 0x00)
        );
        let d = w.dequantize();
        assert!((d[1] - 1.5).abs() < 1e-6 && (d[32] + 0.7).abs() < 1e-6);
    }

    #[test]
    fn bad_inputs_name_the_weight() {
        assert!(quantize_q4("fc.w", &[0.0; 6], 4, 2, 32, true).is_err());
        let err = quantize_q4("fc.w", &[f32::NAN; 4], 2, 2, 32, true).unwrap_err();
        assert!(err.to_string().contains("fc.w"), "{err}");
        assert!(quantize_q4("fc.w", &[0.0; 4], 2, 2, 48, true).is_err());
    }
}
