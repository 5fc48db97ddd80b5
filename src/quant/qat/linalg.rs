//! The dense algebra the training ops are built from: matrix products on
//! [`crate::kernels::f32::gemm`] (B packed per call; the GEMM splits its own work over rayon),
//! transposes, and `im2col`/`col2im` for 2-D convolution.

use crate::kernels::f32::{gemm, Activation, Epilogue, PackedB};

/// How B is stored for [`matmul`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BLayout {
    /// Row-major K×N.
    KByN,
    /// Row-major N×K (B transposed).
    NByK,
}

/// `C[m×n] = A[m×k] · B (+ bias per column)`, A row-major, B as `layout` says.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &[f32],
    layout: BLayout,
    bias: Option<&[f32]>,
    c: &mut [f32],
) {
    let packed = match layout {
        BLayout::KByN => PackedB::from_k_by_n(k, n, b),
        BLayout::NByK => PackedB::from_n_by_k(n, k, b),
    };
    let epi = Epilogue {
        bias,
        act: Activation::None,
    };
    gemm(m, a, k, &packed, epi, c, n);
}

/// The transpose of a row-major `rows×cols` matrix.
pub(crate) fn transpose(rows: usize, cols: usize, src: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; rows * cols];
    for r in 0..rows {
        for (c, &v) in src[r * cols..(r + 1) * cols].iter().enumerate() {
            out[c * rows + r] = v;
        }
    }
    out
}

/// `acc += x`, element by element.
pub(crate) fn add_into(acc: &mut [f32], x: &[f32]) {
    for (a, &v) in acc.iter_mut().zip(x) {
        *a += v;
    }
}

/// Geometry of a 2-D convolution over one image, NCHW, channels split into `groups` equal
/// groups (1: a plain convolution; `c`: depthwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConvGeom {
    /// Input channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub o: usize,
    /// Kernel height and width.
    pub kh: usize,
    pub kw: usize,
    /// Strides (vertical, horizontal).
    pub sh: usize,
    pub sw: usize,
    /// Padding at the top and left (bottom/right padding only shows in `oh`/`ow`).
    pub pt: usize,
    pub pl: usize,
    /// Dilations.
    pub dh: usize,
    pub dw: usize,
    /// Output height and width.
    pub oh: usize,
    pub ow: usize,
    /// Channel groups; `c` and `o` are multiples of it.
    pub groups: usize,
}

impl ConvGeom {
    /// Rows of the im2col matrix: `c·kh·kw`, group after group.
    pub fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Im2col rows (and weight columns) per group: `(c/groups)·kh·kw`.
    pub fn k_group(&self) -> usize {
        self.k() / self.groups
    }

    /// Output channels per group.
    pub fn o_group(&self) -> usize {
        self.o / self.groups
    }

    /// Output positions per channel: `oh·ow`.
    pub fn ohw(&self) -> usize {
        self.oh * self.ow
    }

    /// Input elements per image.
    pub fn in_len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Calls `f(col_index, input_index)` for every im2col element that reads the image (padding
    /// positions are skipped), in column-matrix order.
    fn for_each_tap(&self, mut f: impl FnMut(usize, usize)) {
        let ohw = self.ohw();
        for c in 0..self.c {
            for i in 0..self.kh {
                for j in 0..self.kw {
                    let row = (c * self.kh + i) * self.kw + j;
                    for oy in 0..self.oh {
                        let iy = (oy * self.sh + i * self.dh).wrapping_sub(self.pt);
                        if iy >= self.h {
                            continue;
                        }
                        for ox in 0..self.ow {
                            let ix = (ox * self.sw + j * self.dw).wrapping_sub(self.pl);
                            if ix < self.w {
                                f(
                                    row * ohw + oy * self.ow + ox,
                                    (c * self.h + iy) * self.w + ix,
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// The column matrix `[k × ohw]` of one image `[c×h×w]`; padding reads as 0.
    pub fn im2col(&self, x: &[f32], cols: &mut [f32]) {
        cols.fill(0.0);
        self.for_each_tap(|ci, xi| cols[ci] = x[xi]);
    }

    /// Adds a column-matrix gradient back onto the image gradient it was gathered from.
    pub fn col2im(&self, dcols: &[f32], dx: &mut [f32]) {
        self.for_each_tap(|ci, xi| dx[xi] += dcols[ci]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|kk| a[i * k + kk] * b[kk * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn matmul_matches_naive_in_both_layouts_and_split() {
        let (m, k, n) = (37, 5, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.5).collect();
        let want = naive(m, k, n, &a, &b);
        let mut c = vec![0.0; m * n];
        matmul(m, k, n, &a, &b, BLayout::KByN, None, &mut c);
        assert_eq!(c, want);
        let bt = transpose(k, n, &b);
        let mut c2 = vec![1.0; m * n];
        matmul(
            m,
            k,
            n,
            &a,
            &bt,
            BLayout::NByK,
            Some(&[1.0, 2.0, 3.0]),
            &mut c2,
        );
        for (i, (x, y)) in c2.iter().zip(&want).enumerate() {
            assert_eq!(*x, y + (i % n) as f32 + 1.0);
        }
    }

    #[test]
    fn im2col_reads_padded_windows() {
        // 1 channel 2×2 image, 2×2 kernel, pad 1: output 3×3, corner taps mostly padding.
        let g = ConvGeom {
            c: 1,
            h: 2,
            w: 2,
            o: 1,
            kh: 2,
            kw: 2,
            sh: 1,
            sw: 1,
            pt: 1,
            pl: 1,
            dh: 1,
            dw: 1,
            oh: 3,
            ow: 3,
            groups: 1,
        };
        let x = [1.0, 2.0, 3.0, 4.0];
        let mut cols = vec![9.0; 4 * 9];
        g.im2col(&x, &mut cols);
        // Tap (0,0) sees x at positions shifted down-right by one.
        assert_eq!(&cols[0..9], &[0., 0., 0., 0., 1., 2., 0., 3., 4.]);
        // Tap (1,1) sees x at positions shifted up-left.
        assert_eq!(&cols[27..36], &[1., 2., 0., 3., 4., 0., 0., 0., 0.]);
        let mut dx = vec![0.0; 4];
        g.col2im(&[1.0; 36], &mut dx);
        // Every pixel is read by all 4 taps.
        assert_eq!(dx, vec![4.0; 4]);
    }
}
