//! Forward and backward of each trainable operator over a whole batch (samples contiguous,
//! row-major). Convolution and pooling run one image per rayon task; the dense layers are one
//! GEMM over the batch.

use rayon::prelude::*;

use crate::quant::qat::linalg::{add_into, matmul, transpose, BLayout, ConvGeom};

/// Geometry of a 2-D max pool over one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolGeom {
    /// Channels, input height and width.
    pub c: usize,
    pub h: usize,
    pub w: usize,
    /// Window height and width.
    pub kh: usize,
    pub kw: usize,
    /// Strides.
    pub sh: usize,
    pub sw: usize,
    /// Top and left padding (padding never wins the max).
    pub pt: usize,
    pub pl: usize,
    /// Output height and width.
    pub oh: usize,
    pub ow: usize,
}

/// `y = conv(x, w) + b` for a batch of images.
pub(crate) fn conv_forward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    batch: usize,
) -> Vec<f32> {
    let (k, ohw, o) = (g.k(), g.ohw(), g.o);
    let (kg, og) = (g.k_group(), g.o_group());
    let mut y = vec![0.0; batch * o * ohw];
    y.par_chunks_mut(o * ohw)
        .zip(x.par_chunks(g.in_len()))
        .for_each_init(
            || vec![0.0; k * ohw],
            |cols, (yi, xi)| {
                g.im2col(xi, cols);
                // Per group: y[og × ohw] = W[og × kg] · cols[kg × ohw], bias per row after.
                for ((yg, wg), cg) in yi
                    .chunks_mut(og * ohw)
                    .zip(w.chunks(og * kg))
                    .zip(cols.chunks(kg * ohw))
                {
                    matmul(og, kg, ohw, wg, cg, BLayout::KByN, None, yg);
                }
                if let Some(b) = b {
                    for (row, &bv) in yi.chunks_mut(ohw).zip(b) {
                        row.iter_mut().for_each(|v| *v += bv);
                    }
                }
            },
        );
    y
}

/// Gradients of [`conv_forward`]: `(dx if asked, dw, db)`.
pub(crate) fn conv_backward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    batch: usize,
    want_dx: bool,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    let (k, ohw, o) = (g.k(), g.ohw(), g.o);
    let (kg, og) = (g.k_group(), g.o_group());
    // Each group's weights transposed, [kg × og], group after group.
    let w_t: Vec<f32> = w
        .chunks(og * kg)
        .flat_map(|wg| transpose(og, kg, wg))
        .collect();
    // Per image and group: dW += dy·colsᵀ, db += row sums of dy, dcols = Wᵀ·dy scattered
    // into dx.
    let image = |n: usize, dx: Option<&mut [f32]>, acc: &mut (Vec<f32>, Vec<f32>, Vec<f32>)| {
        let (dw, db, cols) = acc;
        let dyi = &dy[n * o * ohw..(n + 1) * o * ohw];
        g.im2col(&x[n * g.in_len()..(n + 1) * g.in_len()], cols);
        let mut dwg = vec![0.0; og * kg];
        for ((dw, dyg), cg) in dw
            .chunks_mut(og * kg)
            .zip(dyi.chunks(og * ohw))
            .zip(cols.chunks(kg * ohw))
        {
            matmul(og, ohw, kg, dyg, cg, BLayout::NByK, None, &mut dwg);
            add_into(dw, &dwg);
        }
        for (d, row) in db.iter_mut().zip(dyi.chunks(ohw)) {
            *d += row.iter().sum::<f32>();
        }
        if let Some(dx) = dx {
            let mut dcols = vec![0.0; k * ohw];
            for ((dcg, wtg), dyg) in dcols
                .chunks_mut(kg * ohw)
                .zip(w_t.chunks(kg * og))
                .zip(dyi.chunks(og * ohw))
            {
                matmul(kg, og, ohw, wtg, dyg, BLayout::KByN, None, dcg);
            }
            g.col2im(&dcols, dx);
        }
    };
    let init = || (vec![0.0; o * kg], vec![0.0; o], vec![0.0; k * ohw]);
    let merge = |mut a: (Vec<f32>, Vec<f32>, Vec<f32>), b: (Vec<f32>, Vec<f32>, Vec<f32>)| {
        add_into(&mut a.0, &b.0);
        add_into(&mut a.1, &b.1);
        a
    };
    let (dx, (dw, db, _)) = if want_dx {
        let mut dx = vec![0.0; batch * g.in_len()];
        let acc = dx
            .par_chunks_mut(g.in_len())
            .enumerate()
            .fold(init, |mut acc, (n, dxi)| {
                image(n, Some(dxi), &mut acc);
                acc
            })
            .reduce(init, merge);
        (Some(dx), acc)
    } else {
        let acc = (0..batch)
            .into_par_iter()
            .fold(init, |mut acc, n| {
                image(n, None, &mut acc);
                acc
            })
            .reduce(init, merge);
        (None, acc)
    };
    (dx, dw, db)
}

/// `y[batch × n] = x[batch × k] · op(w) + b`, `op(w) = wᵀ` when `trans_b` (w stored n×k).
pub(crate) fn dense_forward(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    trans_b: bool,
    (batch, k, n): (usize, usize, usize),
) -> Vec<f32> {
    let mut y = vec![0.0; batch * n];
    let layout = if trans_b {
        BLayout::NByK
    } else {
        BLayout::KByN
    };
    matmul(batch, k, n, x, w, layout, b, &mut y);
    y
}

/// Gradients of [`dense_forward`]: `(dx if asked, dw, db)`.
pub(crate) fn dense_backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    trans_b: bool,
    (batch, k, n): (usize, usize, usize),
    want_dx: bool,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    let dx = want_dx.then(|| {
        // dx = dy · op(w)ᵀ; op(w)ᵀ is n×k, which is w itself when trans_b.
        let mut dx = vec![0.0; batch * k];
        let layout = if trans_b {
            BLayout::KByN
        } else {
            BLayout::NByK
        };
        matmul(batch, n, k, dy, w, layout, None, &mut dx);
        dx
    });
    let mut dw = vec![0.0; k * n];
    if trans_b {
        // dw[n×k] = dyᵀ · x
        matmul(
            n,
            batch,
            k,
            &transpose(batch, n, dy),
            x,
            BLayout::KByN,
            None,
            &mut dw,
        );
    } else {
        // dw[k×n] = xᵀ · dy
        matmul(
            k,
            batch,
            n,
            &transpose(batch, k, x),
            dy,
            BLayout::KByN,
            None,
            &mut dw,
        );
    }
    let mut db = vec![0.0; n];
    for row in dy.chunks(n) {
        add_into(&mut db, row);
    }
    (dx, dw, db)
}

/// Max pool of a batch: the output and, per output element, the input index that won.
pub(crate) fn max_pool_forward(g: &PoolGeom, x: &[f32], batch: usize) -> (Vec<f32>, Vec<u32>) {
    let (in_len, out_len) = (g.c * g.h * g.w, g.c * g.oh * g.ow);
    let mut y = vec![0.0; batch * out_len];
    let mut arg = vec![0u32; batch * out_len];
    y.par_chunks_mut(out_len)
        .zip(arg.par_chunks_mut(out_len))
        .zip(x.par_chunks(in_len))
        .for_each(|((yi, ai), xi)| {
            for c in 0..g.c {
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let (mut best, mut at) = (f32::NEG_INFINITY, 0usize);
                        for i in 0..g.kh {
                            let iy = (oy * g.sh + i).wrapping_sub(g.pt);
                            if iy >= g.h {
                                continue;
                            }
                            for j in 0..g.kw {
                                let ix = (ox * g.sw + j).wrapping_sub(g.pl);
                                if ix < g.w {
                                    let idx = (c * g.h + iy) * g.w + ix;
                                    if xi[idx] > best || best == f32::NEG_INFINITY {
                                        (best, at) = (xi[idx], idx);
                                    }
                                }
                            }
                        }
                        let o = (c * g.oh + oy) * g.ow + ox;
                        yi[o] = best;
                        // The input index is below c·h·w, which fits u32 for any image the
                        // compiler accepts (checked there).
                        ai[o] = at as u32;
                    }
                }
            }
        });
    (y, arg)
}

/// Gradient of [`max_pool_forward`]: each output's gradient goes to the input that won.
pub(crate) fn max_pool_backward(g: &PoolGeom, dy: &[f32], arg: &[u32], batch: usize) -> Vec<f32> {
    let (in_len, out_len) = (g.c * g.h * g.w, g.c * g.oh * g.ow);
    let mut dx = vec![0.0; batch * in_len];
    dx.par_chunks_mut(in_len)
        .zip(dy.par_chunks(out_len).zip(arg.par_chunks(out_len)))
        .for_each(|(dxi, (dyi, ai))| {
            for (&d, &a) in dyi.iter().zip(ai) {
                dxi[a as usize] += d;
            }
        });
    dx
}
