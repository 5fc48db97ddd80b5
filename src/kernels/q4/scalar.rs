//! Scalar twins of the 4-bit column kernels, following the order of operations in the module
//! documentation exactly (fused multiply-adds via `f32::mul_add`).

// Lanes are indexed by number on purpose: they mirror the SIMD registers' lanes.
#![allow(clippy::needless_range_loop)]

use super::{hsum8, Column, CHUNK};

/// The 4-bit value at permuted position `i` (0..32) of a chunk's 16 bytes: low nibbles first.
#[inline(always)]
fn nibble(bytes: &[u8], i: usize) -> u8 {
    if i < 16 {
        bytes[i] & 0xf
    } else {
        bytes[i - 16] >> 4
    }
}

/// f32 activations × dequantized 4-bit column, `R` rows.
pub(super) fn dot_f32<const R: usize>(a: &[f32], kp: usize, col: Column<'_>) -> [f32; R] {
    std::array::from_fn(|r| {
        let mut acc = [[0f32; 8]; 2];
        for c in 0..kp / CHUNK {
            let bl = col.block_of(c);
            let (zp, s) = (col.zp(bl) as f32, col.scales[bl]);
            let bytes = &col.bytes[c * 16..c * 16 + 16];
            let ar = &a[r * kp + c * CHUNK..r * kp + (c + 1) * CHUNK];
            for l in 0..8 {
                let w = |v: usize| nibble(bytes, v * 8 + l) as f32 - zp;
                let mut t = w(0) * ar[l];
                for v in 1..4 {
                    t = w(v).mul_add(ar[v * 8 + l], t);
                }
                acc[c % 2][l] = t.mul_add(s, acc[c % 2][l]);
            }
        }
        hsum8(std::array::from_fn(|l| acc[0][l] + acc[1][l]))
    })
}

/// Int8 block-quantized activations × 4-bit column, `R` rows: exact integer lane sums.
pub(super) fn dot_i8<const R: usize>(
    q: &[i8],
    qscale: &[f32],
    kp: usize,
    col: Column<'_>,
) -> [f32; R] {
    let blocks = kp / col.block;
    std::array::from_fn(|r| {
        let mut acc = [[0f32; 8]; 2];
        for c in 0..kp / CHUNK {
            let bl = col.block_of(c);
            let zp = col.zp(bl) as i32;
            let s = col.scales[bl] * qscale[r * blocks + bl];
            let bytes = &col.bytes[c * 16..c * 16 + 16];
            let qr = &q[r * kp + c * CHUNK..r * kp + (c + 1) * CHUNK];
            for l in 0..8 {
                let t: i32 = (4 * l..4 * l + 4)
                    .map(|i| (nibble(bytes, i) as i32 - zp) * qr[i] as i32)
                    .sum();
                acc[c % 2][l] = (t as f32).mul_add(s, acc[c % 2][l]);
            }
        }
        hsum8(std::array::from_fn(|l| acc[0][l] + acc[1][l]))
    })
}
