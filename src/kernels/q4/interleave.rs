//! The 4-bit weights re-laid for `vpdpbusd` ([`Interleaved`]) and the scalar twin of the
//! kernel that reads them.
//!
//! Columns are taken 16 at a time (one 512-bit vector of i32 lanes, one lane per column). For
//! each group, block and step of 8 values along K, 64 bytes hold, for column lane `j` and
//! `t = 0..4`, byte `4j + t` = value `k0 + t` in the low nibble and value `k0 + 4 + t` in the
//! high nibble (`k0` = the step's first K). One load then gives two `vpdpbusd` operands, the low
//! nibbles (`b & 0x0f`) and the high nibbles times 16 (`b & 0xf0`), each meeting four int8
//! activations broadcast to every lane, and the lanes come out as the 16 columns' sums: no
//! horizontal reduction is ever needed. Activations are block-quantized as in [`super::Q4Mode::Int8`]
//! but kept in natural order.
//!
//! # Order of operations (kernel and twin alike, lane by lane, so results are bit-identical)
//! Per column and block: the exact integer `s = Σ q·w − zp · Σ q` over the block; then
//! `acc = fma(s as f32, scale · qscale, acc)` over blocks in order (`scale · qscale` rounded
//! first); the output is `acc + bias`.

use super::PackedQ4;

/// Columns per group: the i32 lanes of one 512-bit vector.
pub(super) const NG: usize = 16;
/// K values per step: one 64-byte load covers 8 values of 16 columns.
pub(super) const STEP: usize = 8;
/// Bytes per step of one group.
const STEP_BYTES: usize = NG * STEP / 2;

/// [`PackedQ4`] regrouped for the `vpdpbusd` kernel; columns past N are zero (scale 0).
#[derive(Debug, Clone)]
pub(super) struct Interleaved {
    groups: usize,
    blocks: usize,
    block: usize,
    /// `[group][block][step][64]`.
    bytes: Vec<u8>,
    /// `[group][block][16]`.
    scales: Vec<f32>,
    /// `[group][block][16]` zero points; empty when the model stores none (all 8).
    zps: Vec<u8>,
}

impl Interleaved {
    pub(super) fn new(b: &PackedQ4) -> Interleaved {
        let (n, block, blocks) = (b.n(), b.block(), b.blocks());
        let groups = n.div_ceil(NG);
        let steps = block / STEP;
        let mut il = Interleaved {
            groups,
            blocks,
            block,
            bytes: vec![0; groups * blocks * steps * STEP_BYTES],
            scales: vec![0.0; groups * blocks * NG],
            zps: if b.zero_points().is_some() {
                vec![0; groups * blocks * NG]
            } else {
                Vec::new()
            },
        };
        for j in 0..n {
            let (g, lane) = (j / NG, j % NG);
            let col = b.column(j);
            let nib = |kk: usize| (col[kk / 2] >> (4 * (kk % 2))) & 0xf;
            for bl in 0..blocks {
                let gb = g * blocks + bl;
                il.scales[gb * NG + lane] = b.column_scales(j)[bl];
                if let Some(z) = il.zps.get_mut(gb * NG + lane) {
                    *z = b.zero_point(j, bl);
                }
                for s in 0..steps {
                    let k0 = bl * block + s * STEP;
                    let at = (gb * steps + s) * STEP_BYTES + 4 * lane;
                    for t in 0..4 {
                        il.bytes[at + t] = nib(k0 + t) | (nib(k0 + 4 + t) << 4);
                    }
                }
            }
        }
        il
    }

    /// Column groups.
    pub(super) fn groups(&self) -> usize {
        self.groups
    }

    /// Bytes held.
    pub(super) fn size_bytes(&self) -> usize {
        self.bytes.len() + self.scales.len() * 4 + self.zps.len()
    }

    /// Group `g`'s bytes (`[block][step][64]`), scales and zero points (`[block][16]`, `None`
    /// when all are 8).
    pub(super) fn group(&self, g: usize) -> Group<'_> {
        let per = self.blocks * (self.block / STEP) * STEP_BYTES;
        Group {
            bytes: &self.bytes[g * per..(g + 1) * per],
            scales: &self.scales[g * self.blocks * NG..(g + 1) * self.blocks * NG],
            zps: (!self.zps.is_empty())
                .then(|| &self.zps[g * self.blocks * NG..(g + 1) * self.blocks * NG]),
            blocks: self.blocks,
            block: self.block,
        }
    }
}

/// One group of 16 columns as the kernels read it.
#[derive(Clone, Copy)]
pub(super) struct Group<'a> {
    pub bytes: &'a [u8],
    pub scales: &'a [f32],
    /// Zero points, `None` when all are 8.
    pub zps: Option<&'a [u8]>,
    pub blocks: usize,
    pub block: usize,
}

/// Int8 activations prepared for the grouped kernels, `R` rows starting at the row they need.
#[derive(Clone, Copy)]
pub(super) struct Rows<'a> {
    /// Quantized values in natural order, `kp` per row.
    pub q: &'a [i8],
    /// One scale per row and block.
    pub qscale: &'a [f32],
    /// `Σ q` per row and block.
    pub qsum: &'a [i32],
    /// Row stride of `q` (blocks · block).
    pub kp: usize,
}

/// The scalar twin: `R` rows × the group's 16 columns, before the bias.
pub(super) fn dot_group<const R: usize>(g: Group<'_>, a: Rows<'_>) -> [[f32; NG]; R] {
    let steps = g.block / STEP;
    std::array::from_fn(|r| {
        std::array::from_fn(|j| {
            let mut acc = 0f32;
            for bl in 0..g.blocks {
                let mut s: i32 = 0;
                for st in 0..steps {
                    let k0 = bl * g.block + st * STEP;
                    let at = ((bl * steps + st) * STEP_BYTES) + 4 * j;
                    for t in 0..4 {
                        let byte = g.bytes[at + t];
                        s += i32::from(byte & 0xf) * i32::from(a.q[r * a.kp + k0 + t]);
                        s += i32::from(byte >> 4) * i32::from(a.q[r * a.kp + k0 + 4 + t]);
                    }
                }
                let blocks = g.blocks;
                let zp = g.zps.map_or(8, |z| z[bl * NG + j]);
                s -= i32::from(zp) * a.qsum[r * blocks + bl];
                acc = (s as f32).mul_add(g.scales[bl * NG + j] * a.qscale[r * blocks + bl], acc);
            }
            acc
        })
    })
}
