//! The scalar twin of the INT8 tile kernels: the definition every SIMD kernel is tested against.

use super::pack::GS;
use super::{KQ, NR};

/// `acc[r][c] = Σ_k a[r·kp + k] · panel(k, c)` for `R` rows of centred i16 activations; group
/// `q` of the panel is the `KQ · NR` bytes at `q · GS`.
pub(super) fn tile<const R: usize>(a: &[i16], kp: usize, panel: &[i8]) -> [[i32; NR]; R] {
    let mut acc = [[0i32; NR]; R];
    for (r, acc_row) in acc.iter_mut().enumerate() {
        let arow = &a[r * kp..(r + 1) * kp];
        for q in 0..kp / KQ {
            let group = &panel[q * GS..q * GS + KQ * NR];
            let aq = &arow[q * KQ..(q + 1) * KQ];
            for (c, col) in group.chunks_exact(KQ).enumerate() {
                for (&av, &bv) in aq.iter().zip(col) {
                    acc_row[c] = acc_row[c].wrapping_add(av as i32 * bv as i32);
                }
            }
        }
    }
    acc
}
