//! Gemm and MatMul: one packed GEMM call when B is constant, a plain batched product when both
//! operands are computed at run time.

use crate::graph::shape::{GemmParams, MatMulShape};
use crate::kernels::f32::{gemm, Activation, Epilogue, PackedB};

use super::conv::transpose2d;

/// Where the right-hand operand comes from.
#[derive(Debug, Clone)]
enum Rhs {
    /// Constant, packed at plan time (with alpha folded in).
    Packed(PackedB),
    /// Computed at run time (input 1), row-major K×N or, when `trans`, N×K.
    Runtime { trans: bool },
}

/// A matrix product `act(alpha·A·B + C)` over one or more batches.
#[derive(Debug, Clone)]
pub struct MatMul {
    m: usize,
    k: usize,
    n: usize,
    /// Rows handed to one GEMM call when B is packed (all batches stacked).
    rows: usize,
    trans_a: bool,
    alpha: f32,
    rhs: Rhs,
    /// Per-column addend (bias).
    bias: Option<Vec<f32>>,
    /// Full [rows × n] addend, for a C that varies by row.
    addend: Option<Vec<f32>>,
    act: Activation,
    /// (A offset, B offset) of each batch on the run-time path.
    batches: Vec<(usize, usize)>,
}

impl MatMul {
    /// An ONNX Gemm: `b` is B's data when constant, `c` is C's data and shape when given.
    pub fn gemm(
        p: &GemmParams,
        b: Option<&[f32]>,
        c: Option<(&[f32], &[usize])>,
        act: Activation,
    ) -> MatMul {
        let (m, k, n) = (p.m, p.k, p.n);
        let rhs = match b {
            Some(b) => {
                let scaled: Vec<f32> = b.iter().map(|v| v * p.alpha).collect();
                Rhs::Packed(if p.trans_b {
                    PackedB::from_n_by_k(n, k, &scaled)
                } else {
                    PackedB::from_k_by_n(k, n, &scaled)
                })
            }
            None => Rhs::Runtime { trans: p.trans_b },
        };
        let (mut bias, mut addend) = (None, None);
        if let Some((c, shape)) = c {
            let (cr, cc) = match shape {
                [] => (1, 1),
                [a] => (1, *a),
                [a, b, ..] => (*a, *b),
            };
            let at = |i: usize, j: usize| {
                p.beta * c[(if cr == 1 { 0 } else { i }) * cc + if cc == 1 { 0 } else { j }]
            };
            if cr == 1 {
                bias = Some((0..n).map(|j| at(0, j)).collect());
            } else {
                addend = Some((0..m * n).map(|x| at(x / n, x % n)).collect());
            }
        }
        MatMul {
            m,
            k,
            n,
            rows: m,
            trans_a: p.trans_a,
            alpha: if b.is_some() { 1.0 } else { p.alpha },
            rhs,
            bias,
            addend,
            act,
            batches: vec![(0, 0)],
        }
    }

    /// An ONNX MatMul of A (`a` shape) and B (`b` shape, data when constant) with numpy batch
    /// broadcasting, resolved by [`crate::graph::shape::matmul_shapes`] into `s`.
    pub fn batched(
        a: &[usize],
        b: &[usize],
        b_data: Option<&[f32]>,
        s: &MatMulShape,
        act: Activation,
    ) -> MatMul {
        let (batch, m, k, n) = (&s.batch, s.m, s.k, s.n);
        let nbatch: usize = batch.iter().product();
        let packed = b_data.filter(|_| b.len() <= 2);
        let batches = if packed.is_some() {
            vec![(0, 0)]
        } else {
            let bstr = |s: &[usize], mat: usize| -> Vec<usize> {
                let own = if s.len() > 2 {
                    &s[..s.len() - 2]
                } else {
                    &[][..]
                };
                let pad = batch.len() - own.len();
                let mut st = vec![0; batch.len()];
                let mut acc = mat;
                for i in (0..own.len()).rev() {
                    st[i + pad] = if own[i] == 1 { 0 } else { acc };
                    acc *= own[i];
                }
                st
            };
            let (sa, sb) = (bstr(a, m * k), bstr(b, k * n));
            (0..nbatch)
                .map(|mut flat| {
                    let (mut ao, mut bo) = (0, 0);
                    for d in (0..batch.len()).rev() {
                        let i = flat % batch[d];
                        flat /= batch[d];
                        ao += i * sa[d];
                        bo += i * sb[d];
                    }
                    (ao, bo)
                })
                .collect()
        };
        MatMul {
            m,
            k,
            n,
            rows: nbatch * m,
            trans_a: false,
            alpha: 1.0,
            rhs: match packed {
                Some(b) => Rhs::Packed(PackedB::from_k_by_n(k, n, b)),
                None => Rhs::Runtime { trans: false },
            },
            bias: None,
            addend: None,
            act,
            batches,
        }
    }

    /// Floats of scratch needed (a transposed copy of A).
    pub fn scratch_len(&self) -> usize {
        if self.trans_a {
            self.m * self.k
        } else {
            0
        }
    }

    /// True when B was packed at plan time.
    pub fn is_packed(&self) -> bool {
        matches!(self.rhs, Rhs::Packed(_))
    }

    /// Bytes of packed weights held.
    pub fn packed_bytes(&self) -> usize {
        match &self.rhs {
            Rhs::Packed(p) => p.size_bytes(),
            Rhs::Runtime { .. } => 0,
        }
    }

    /// `out = act(alpha·A·B + C)`; `b` is ignored when B was packed.
    pub fn run(&self, a: &[f32], b: &[f32], out: &mut [f32], scratch: &mut [f32]) {
        let a = if self.trans_a {
            let t = &mut scratch[..self.m * self.k];
            transpose2d(a, self.k, self.m, t);
            &*t
        } else {
            a
        };
        let late_act = self.addend.is_some();
        let act = if late_act { Activation::None } else { self.act };
        match &self.rhs {
            Rhs::Packed(pb) => {
                let epi = Epilogue {
                    bias: self.bias.as_deref(),
                    act,
                };
                gemm(self.rows, a, self.k, pb, epi, out, self.n);
            }
            Rhs::Runtime { trans } => {
                let (m, k, n) = (self.m, self.k, self.n);
                for (bi, &(ao, bo)) in self.batches.iter().enumerate() {
                    let o = &mut out[bi * m * n..(bi + 1) * m * n];
                    product(m, k, n, &a[ao..ao + m * k], &b[bo..bo + k * n], *trans, o);
                    for row in o.chunks_mut(n.max(1)) {
                        for (j, v) in row.iter_mut().enumerate() {
                            *v = act.apply(
                                *v * self.alpha + self.bias.as_ref().map_or(0.0, |bv| bv[j]),
                            );
                        }
                    }
                }
            }
        }
        if let Some(add) = &self.addend {
            out.iter_mut()
                .zip(add)
                .for_each(|(o, &c)| *o = self.act.apply(*o + c));
        }
    }
}

/// `out[m×n] = a[m×k] · b` with b row-major K×N, or N×K when `trans_b`.
fn product(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], trans_b: bool, out: &mut [f32]) {
    for i in 0..m {
        let arow = &a[i * k..(i + 1) * k];
        let orow = &mut out[i * n..(i + 1) * n];
        if trans_b {
            for (j, o) in orow.iter_mut().enumerate() {
                *o = arow
                    .iter()
                    .zip(&b[j * k..(j + 1) * k])
                    .map(|(x, y)| x * y)
                    .sum();
            }
        } else {
            orow.fill(0.0);
            for (kk, &av) in arow.iter().enumerate() {
                orow.iter_mut()
                    .zip(&b[kk * n..(kk + 1) * n])
                    .for_each(|(o, &bv)| *o += av * bv);
            }
        }
    }
}
