//! The INT8 convolution GEMM without an im2col matrix: the patches of an image stored H×W×C
//! with its padding written around it are read in place, each kernel row of a patch being one
//! contiguous run of `kw · C` values (unit width dilation), and written once, straight into the
//! row block the tile kernel reads (see `prepare`).

use super::prepare::{Act, Source};
use super::{check_out, dispatch, isa, Activations, Conv2d, I8Error, Kernel, Output, PackedI8};

impl Conv2d {
    /// Height and width of the image with its padding: `H + top + bottom`, `W + left + right`.
    pub fn padded(&self) -> [usize; 2] {
        [
            self.height + self.pads[0] + self.pads[2],
            self.width + self.pads[1] + self.pads[3],
        ]
    }
}

/// The patches of a padded H×W×C image: row `p` (output pixel `oy · OW + ox`) is `kh` runs of
/// `kw · C` values, ordered kernel row, kernel column, channel.
struct HwcPatches<'a> {
    image: &'a [u8],
    g: &'a Conv2d,
    /// Output width.
    ow: usize,
    /// Values per padded image row: `(W + left + right) · C`.
    row_len: usize,
    /// Values per kernel row of a patch: `kw · C`.
    run: usize,
}

impl Source for HwcPatches<'_> {
    #[inline(always)]
    fn runs(&self, i: usize, mut put: impl FnMut(usize, &[u8])) {
        let g = self.g;
        let (oy, ox) = (i / self.ow, i % self.ow);
        let x0 = ox * g.stride[1] * g.channels;
        for ky in 0..g.kernel[0] {
            let at = (oy * g.stride[0] + ky * g.dilation[0]) * self.row_len + x0;
            put(ky * self.run, &self.image[at..at + self.run]);
        }
    }
}

/// `out = epilogue(patches · B)`: the convolution GEMM of one image `image`, stored H×W×C with
/// its padding already written around it (`(H + top + bottom) × (W + left + right) × C` values,
/// the padding holding the activation zero point; see [`Conv2d::padded`]), reading each patch
/// in place instead of through an im2col matrix.
///
/// `g` describes the unpadded image; its width dilation must be 1. `b` holds the weights
/// `[OC][kh][kw][C]` (K ordered kernel row, kernel column, channel) packed by
/// [`PackedI8::from_n_by_k`]. The output is pixel-major (`[OH·OW][OC]`, the NHWC layout) with
/// row stride `ldc ≥ OC`. Row blocks are split over rayon's current pool when it has more than
/// one thread.
pub fn gemm_hwc(
    g: &Conv2d,
    image: Activations<'_>,
    b: &PackedI8,
    out: Output<'_>,
    ldc: usize,
) -> Result<(), I8Error> {
    gemm_hwc_with(Kernel::for_isa(isa()), g, image, b, out, ldc)
}

pub(super) fn gemm_hwc_with(
    kernel: Kernel,
    g: &Conv2d,
    image: Activations<'_>,
    b: &PackedI8,
    out: Output<'_>,
    ldc: usize,
) -> Result<(), I8Error> {
    let [oh, ow] = g.output_size()?;
    if g.dilation[1] != 1 {
        return Err(I8Error::Geometry {
            what: "patches read from an HWC image need unit width dilation",
        });
    }
    if b.k() != g.patch_len() {
        return Err(I8Error::Length {
            what: "weights' K (the patch length C·kh·kw)",
            expected: g.patch_len(),
            got: b.k(),
        });
    }
    let [hp, wp] = g.padded();
    let len = hp
        .checked_mul(wp)
        .and_then(|x| x.checked_mul(g.channels))
        .ok_or(I8Error::Geometry {
            what: "the padded image size overflows",
        })?;
    let (act, data) = Act::of(&image);
    if data.len() != len {
        return Err(I8Error::Length {
            what: "padded HWC image",
            expected: len,
            got: data.len(),
        });
    }
    let m = oh * ow;
    check_out(m, b, &out, ldc)?;
    let src = HwcPatches {
        image: data,
        g,
        ow,
        row_len: wp * g.channels,
        run: g.kernel[1] * g.channels,
    };
    dispatch(kernel, m, &src, act, b, out, ldc);
    Ok(())
}
