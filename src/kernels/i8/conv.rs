//! INT8 convolution support: the 2-D geometry and im2col on u8/s8 activations (padding holds the
//! activation zero point, so it adds nothing after centring). The depthwise kernel is in
//! [`super::depthwise`].

use super::I8Error;
use crate::kernels::par;

/// The shape of a 2-D convolution over one C×H×W image (NCHW, one batch item).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2d {
    /// Input channels C.
    pub channels: usize,
    /// Input height H.
    pub height: usize,
    /// Input width W.
    pub width: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Strides (height, width).
    pub stride: [usize; 2],
    /// Dilations (height, width).
    pub dilation: [usize; 2],
    /// Padding as ONNX `pads`: top, left, bottom, right.
    pub pads: [usize; 4],
}

impl Conv2d {
    /// Output height and width, or an error naming the bad field when the geometry is empty,
    /// has a zero stride/dilation/kernel, or overflows.
    pub fn output_size(&self) -> Result<[usize; 2], I8Error> {
        let dim = |axis: usize, size: usize, lo: usize, hi: usize| -> Result<usize, I8Error> {
            let (k, s, d) = (self.kernel[axis], self.stride[axis], self.dilation[axis]);
            if k == 0 || s == 0 || d == 0 {
                return Err(I8Error::Geometry {
                    what: "kernel, stride and dilation must be positive",
                });
            }
            let span = (k - 1).checked_mul(d).and_then(|x| x.checked_add(1));
            let padded = size.checked_add(lo).and_then(|x| x.checked_add(hi));
            match (span, padded) {
                (Some(span), Some(padded)) if padded >= span => Ok((padded - span) / s + 1),
                _ => Err(I8Error::Geometry {
                    what: "kernel larger than the padded input",
                }),
            }
        };
        Ok([
            dim(0, self.height, self.pads[0], self.pads[2])?,
            dim(1, self.width, self.pads[1], self.pads[3])?,
        ])
    }

    /// K of the GEMM that im2col feeds: `C · kh · kw`.
    pub fn patch_len(&self) -> usize {
        self.channels * self.kernel[0] * self.kernel[1]
    }

    pub(super) fn input_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Input row of output row `o` for kernel row `k`, if inside the image.
    #[inline(always)]
    pub(super) fn in_y(&self, o: usize, k: usize) -> Option<usize> {
        (o * self.stride[0] + k * self.dilation[0])
            .checked_sub(self.pads[0])
            .filter(|&y| y < self.height)
    }

    /// Input column of output column `o` for kernel column `k`, if inside the image.
    #[inline(always)]
    pub(super) fn in_x(&self, o: usize, k: usize) -> Option<usize> {
        (o * self.stride[1] + k * self.dilation[1])
            .checked_sub(self.pads[1])
            .filter(|&x| x < self.width)
    }
}

/// Writes the patches of `x` (C×H×W) as rows of `out` (`OH·OW` rows of `C·kh·kw`, ordered
/// channel, kernel row, kernel column, matching ONNX Conv weights `[OC][C][kh][kw]`), with `pad`
/// — the activation zero point — where a patch leaves the image. Feed the result to
/// [`super::gemm`] with weights packed by [`super::PackedI8::from_n_by_k`]; the output is then
/// pixel-major (`[OH·OW][OC]`).
pub fn im2col<T: Copy + Send + Sync>(
    g: &Conv2d,
    x: &[T],
    pad: T,
    out: &mut [T],
) -> Result<(), I8Error> {
    let [oh, ow] = g.output_size()?;
    if x.len() != g.input_len() {
        return Err(I8Error::Length {
            what: "im2col input",
            expected: g.input_len(),
            got: x.len(),
        });
    }
    let k = g.patch_len();
    if out.len() != oh * ow * k {
        return Err(I8Error::Length {
            what: "im2col output",
            expected: oh * ow * k,
            got: out.len(),
        });
    }
    if k == 0 {
        return Ok(());
    }
    let (kh, kw) = (g.kernel[0], g.kernel[1]);
    let plane_len = g.height * g.width;
    par::for_each_chunk(out, k, |p, row| {
        let (oy, ox) = (p / ow, p % ow);
        // A pixel whose kernel columns all fall inside the image with unit dilation copies each
        // kernel row as one contiguous slice.
        let x0 = (ox * g.stride[1]).checked_sub(g.pads[1]);
        let span = x0.filter(|&x0| g.dilation[1] == 1 && x0 + kw <= g.width);
        let mut at = 0;
        for c in 0..g.channels {
            let plane = &x[c * plane_len..(c + 1) * plane_len];
            for ky in 0..kh {
                let dst = &mut row[at..at + kw];
                match (g.in_y(oy, ky), span) {
                    (None, _) => dst.fill(pad),
                    (Some(y), Some(x0)) => copy_short(dst, &plane[y * g.width + x0..][..kw]),
                    (Some(y), None) => {
                        for (kx, d) in dst.iter_mut().enumerate() {
                            *d = match g.in_x(ox, kx) {
                                Some(xx) => plane[y * g.width + xx],
                                None => pad,
                            };
                        }
                    }
                }
                at += kw;
            }
        }
    });
    Ok(())
}

/// `dst.copy_from_slice(src)` for a kernel row (of [`im2col`] or of patches from an HWC copy):
/// the common widths copy as fixed-size arrays, which compile to a few moves instead of a
/// `memmove` call per kernel row.
#[inline(always)]
pub fn copy_short<T: Copy>(dst: &mut [T], src: &[T]) {
    fn fixed<T: Copy, const N: usize>(dst: &mut [T], src: &[T]) {
        if let (Ok(d), Ok(s)) = (<&mut [T; N]>::try_from(&mut *dst), <&[T; N]>::try_from(src)) {
            *d = *s;
        }
    }
    match dst.len() {
        1 => fixed::<T, 1>(dst, src),
        3 => fixed::<T, 3>(dst, src),
        5 => fixed::<T, 5>(dst, src),
        7 => fixed::<T, 7>(dst, src),
        _ => dst.copy_from_slice(src),
    }
}
