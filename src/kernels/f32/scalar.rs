//! The scalar reference twin: defines what every SIMD f32 GEMM computes.
//!
//! Per output value: start from the bias, add `a[i,kk]·b[kk,j]` for `kk` ascending (a separate
//! multiply and add, no fusing), then apply the activation. Serial and plain by design.

use super::packed::{Panels, NR};
use super::{panel_bias, Epilogue};

/// `C = act(A·B + bias)`; operands already checked by the caller.
pub(super) fn gemm(
    m: usize,
    a: &[f32],
    lda: usize,
    b: Panels<'_>,
    epi: Epilogue<'_>,
    c: &mut [f32],
    ldc: usize,
) {
    let k = b.k();
    for i in 0..m {
        let arow = &a[i * lda..i * lda + k];
        let crow = &mut c[i * ldc..i * ldc + b.n()];
        for (p, out) in crow.chunks_mut(NR).enumerate() {
            let mut acc = [0.0f32; NR];
            if let Some(bias) = panel_bias(&epi, p, out.len()) {
                acc[..out.len()].copy_from_slice(bias);
            }
            for (&av, brow) in arow.iter().zip(b.panel(p).chunks_exact(NR)) {
                for (s, &bv) in acc.iter_mut().zip(brow) {
                    *s += av * bv;
                }
            }
            for (o, &s) in out.iter_mut().zip(&acc) {
                *o = epi.act.apply(s);
            }
        }
    }
}
