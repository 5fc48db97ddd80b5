//! Convolution patches of ternary activations without a per-value gather: the image's signs are
//! packed once into a padded H×W×C bit image (a sign plane and a nonzero plane, the padding 0 in
//! the nonzero plane so it never counts), and each patch row is copied from it as `kh` runs of
//! `kw · C` bits (unit width dilation) or `kh · kw` runs of `C` bits, ordered kernel row, kernel
//! column, channel: the order of [`super::super::i8::Conv2d`]'s HWC patches, so the weights are
//! packed the same way as the int8 path's.
//!
//! Int8 activations ([`gemm_i8_hwc`]) read their patches the same way from a padded H×W×C
//! byte image, as [`super::super::i8::gemm_hwc`] does: each kernel row of a patch is one run of
//! `kw · C` bytes copied into the rows the tile kernel reads, with no im2col matrix.

use super::super::i8::{copy_short, Activations, Conv2d};
use super::pack::{self, BinaryActivations};
use super::{isa, B1Error, Kernel, Output, PackedBinary, MR};

/// An image's ONNX signs as padded H×W×C bit planes: bit `((y · Wp) + x) · C + c` of each plane
/// is channel c of padded pixel (y, x).
#[derive(Debug, Clone, Default)]
pub struct TernaryImage {
    sign: Vec<u64>,
    nonzero: Vec<u64>,
}

impl TernaryImage {
    /// An empty image, to be filled by [`TernaryImage::pack_nchw`] (its buffers are reused).
    pub fn new() -> TernaryImage {
        TernaryImage::default()
    }

    /// Packs `x` (one C×H×W image as `g` describes it, f32) into the planes: sign bit for
    /// `x < 0`, nonzero bit for `x != 0` (−0.0 is 0; NaN counts as +1).
    pub fn pack_nchw(&mut self, g: &Conv2d, x: &[f32]) -> Result<(), B1Error> {
        g.output_size()?;
        let (c, h, w) = (g.channels, g.height, g.width);
        if x.len() != c * h * w {
            return Err(B1Error::Length {
                what: "convolution input image",
                expected: c * h * w,
                got: x.len(),
            });
        }
        let [_, wp] = g.padded();
        let words = padded_len(g)?.div_ceil(64);
        for plane in [&mut self.sign, &mut self.nonzero] {
            plane.clear();
            plane.resize(words, 0);
        }
        let plane = h * w;
        for y in 0..h {
            for xx in 0..w {
                let base = ((y + g.pads[0]) * wp + xx + g.pads[1]) * c;
                for ci in 0..c {
                    let v = x[ci * plane + y * w + xx];
                    let (word, bit) = ((base + ci) / 64, (base + ci) % 64);
                    self.sign[word] |= u64::from(v < 0.0) << bit;
                    self.nonzero[word] |= u64::from(v != 0.0) << bit;
                }
            }
        }
        Ok(())
    }
}

/// Largest padded image accepted, in values (bits of a ternary plane, bytes of an int8 image).
pub const MAX_IMAGE_LEN: usize = 1 << 29;

/// Values in `g`'s padded image (`Hp · Wp · C`), checked against [`MAX_IMAGE_LEN`].
pub fn padded_len(g: &Conv2d) -> Result<usize, B1Error> {
    let [hp, wp] = g.padded();
    hp.checked_mul(wp)
        .and_then(|v| v.checked_mul(g.channels))
        .filter(|&v| v <= MAX_IMAGE_LEN)
        .ok_or(B1Error::ImageTooLarge { max: MAX_IMAGE_LEN })
}

/// `n ≤ 64` bits of `src` from bit `from`, in the low bits.
#[inline(always)]
fn read_bits(src: &[u64], from: usize, n: usize) -> u64 {
    let (w, s) = (from / 64, from % 64);
    let mut v = src[w] >> s;
    if s != 0 && s + n > 64 {
        v |= src[w + 1] << (64 - s);
    }
    if n < 64 {
        v & ((1u64 << n) - 1)
    } else {
        v
    }
}

/// ORs the low `n ≤ 64` bits of `v` (higher bits 0) into `dst` from bit `at`.
#[inline(always)]
fn or_bits(dst: &mut [u64], at: usize, v: u64, n: usize) {
    let (w, s) = (at / 64, at % 64);
    dst[w] |= v << s;
    if s != 0 && s + n > 64 {
        dst[w + 1] |= v >> (64 - s);
    }
}

/// ORs `len` bits of `src` from bit `from` into `dst` from bit `at`.
fn copy_bits(dst: &mut [u64], at: usize, src: &[u64], from: usize, len: usize) {
    let mut done = 0;
    while done < len {
        let n = (len - done).min(64);
        or_bits(dst, at + done, read_bits(src, from + done, n), n);
        done += n;
    }
}

impl BinaryActivations {
    /// The convolution patches of `image` (packed for `g` by [`TernaryImage::pack_nchw`]) as
    /// ternary activation rows: row `oy · OW + ox`, K = `C · kh · kw` ordered kernel row, kernel
    /// column, channel. Weights for them are `[OC][kh][kw][C]`.
    pub fn conv_patches(g: &Conv2d, image: &TernaryImage) -> Result<BinaryActivations, B1Error> {
        let [oh, ow] = g.output_size()?;
        let [_, wp] = g.padded();
        let c = g.channels;
        let words = padded_len(g)?.div_ceil(64);
        if image.sign.len() != words {
            return Err(B1Error::Length {
                what: "packed convolution image words",
                expected: words,
                got: image.sign.len(),
            });
        }
        let (kh, kw) = (g.kernel[0], g.kernel[1]);
        // Unit width dilation: a kernel row is one run of kw·C bits.
        let (runs_x, run) = if g.dilation[1] == 1 {
            (1, kw * c)
        } else {
            (kw, c)
        };
        BinaryActivations::ternary_rows(oh * ow, g.patch_len(), |i, sign, nonzero| {
            let (oy, ox) = (i / ow, i % ow);
            let mut at = 0;
            for ky in 0..kh {
                let y = oy * g.stride[0] + ky * g.dilation[0];
                for kx in 0..runs_x {
                    let x = ox * g.stride[1] + kx * g.dilation[1];
                    let from = (y * wp + x) * c;
                    copy_bits(sign, at, &image.sign, from, run);
                    copy_bits(nonzero, at, &image.nonzero, from, run);
                    at += run;
                }
            }
        })
    }
}

/// Binary weights × int8 activations for the convolution of one image stored H×W×C with its
/// padding already written around it (`(H + top + bottom) × (W + left + right) × C` values,
/// the padding holding the activation zero point; see [`Conv2d::padded`]), reading each patch
/// in place: `dot[p][j] = Σ_k sign(w_jk)·(patch_pk − za)`, stored as [`Output`] with row scale
/// `scale_a`. `g` describes the unpadded image and needs unit width dilation; `b` holds the
/// weights `[OC][kh][kw][C]` (kernel row, kernel column, channel). The output is pixel-major
/// (`[OH·OW][OC]`) with row stride `ldc`.
pub fn gemm_i8_hwc(
    g: &Conv2d,
    image: Activations<'_>,
    scale_a: f32,
    b: &PackedBinary,
    out: Output<'_>,
    ldc: usize,
) -> Result<(), B1Error> {
    let [oh, ow] = g.output_size()?;
    if g.dilation[1] != 1 {
        return Err(B1Error::Conv(super::super::i8::I8Error::Geometry {
            what: "patches read from an HWC image need unit width dilation",
        }));
    }
    let k = g.patch_len();
    if b.k() != k {
        return Err(B1Error::InnerDim { a: k, b: b.k() });
    }
    let len = padded_len(g)?;
    let (data, signed, zero_point) = pack::raw(image);
    if data.len() != len {
        return Err(B1Error::Length {
            what: "padded HWC image",
            expected: len,
            got: data.len(),
        });
    }
    let [_, wp] = g.padded();
    let c = g.channels;
    let run = g.kernel[1] * c;
    let m = oh * ow;
    let p = pack::Unsigned::from_rows(m, k, b.words() * 64, MR, (signed, zero_point), |i, row| {
        let (oy, ox) = (i / ow, i % ow);
        for ky in 0..g.kernel[0] {
            let at = ((oy * g.stride[0] + ky * g.dilation[0]) * wp + ox * g.stride[1]) * c;
            copy_short(&mut row[ky * run..(ky + 1) * run], &data[at..at + run]);
        }
    });
    super::run_i8(Kernel::for_isa(isa()), m, &p, scale_a, b, out, ldc)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Int8 patches read in place from a padded HWC image give the dot products of
    /// im2col rows (NCHW, weights `[OC][C][kh][kw]`) through `gemm_i8`, for u8 and s8.
    #[test]
    fn i8_hwc_patches_match_im2col() {
        use super::super::super::i8::im2col;
        use super::super::gemm_i8;
        for (c, h, w, kernel, stride, pads) in [
            (
                1usize,
                6usize,
                7usize,
                [3usize, 3usize],
                [1usize, 1usize],
                [1usize, 1, 1, 1],
            ),
            (5, 8, 6, [3, 2], [2, 1], [0, 1, 2, 0]),
            (33, 4, 5, [2, 3], [1, 2], [1, 0, 0, 1]),
        ] {
            let g = Conv2d {
                channels: c,
                height: h,
                width: w,
                kernel,
                stride,
                dilation: [1, 1],
                pads,
            };
            let (n, k) = (7, g.patch_len());
            let wf: Vec<f32> = (0..n * k)
                .map(|i| if (i * 7919) % 7 < 3 { -1.0 } else { 1.0 })
                .collect();
            let [hp, wp] = g.padded();
            let [oh, ow] = g.output_size().unwrap();
            // Weights reordered to kernel row, kernel column, channel for the HWC patches.
            let mut hwc_w = vec![0f32; n * k];
            for o in 0..n {
                for ci in 0..c {
                    for ky in 0..kernel[0] {
                        for kx in 0..kernel[1] {
                            hwc_w[o * k + (ky * kernel[1] + kx) * c + ci] =
                                wf[o * k + (ci * kernel[0] + ky) * kernel[1] + kx];
                        }
                    }
                }
            }
            let b_nchw = PackedBinary::from_n_by_k(n, k, &wf, None).unwrap();
            let b_hwc = PackedBinary::from_n_by_k(n, k, &hwc_w, None).unwrap();
            for (signed, zp) in [(false, 7u8), (true, 0xfe)] {
                let x: Vec<u8> = (0..c * h * w).map(|i| (i * 37 % 251) as u8).collect();
                let mut padded = vec![zp; hp * wp * c];
                for ci in 0..c {
                    for y in 0..h {
                        for xx in 0..w {
                            padded[((y + pads[0]) * wp + xx + pads[1]) * c + ci] =
                                x[(ci * h + y) * w + xx];
                        }
                    }
                }
                let mut cols = vec![0u8; oh * ow * k];
                im2col(&g, &x, zp, &mut cols).unwrap();
                let act = |d: &'static [u8]| {
                    if signed {
                        Activations::S8 {
                            data: bytemuck::cast_slice(d),
                            zero_point: zp as i8,
                        }
                    } else {
                        Activations::U8 {
                            data: d,
                            zero_point: zp,
                        }
                    }
                };
                let cols: &'static [u8] = cols.leak();
                let padded: &'static [u8] = padded.leak();
                let mut want = vec![0i32; oh * ow * n];
                gemm_i8(
                    oh * ow,
                    act(cols),
                    k,
                    1.0,
                    &b_nchw,
                    Output::Dots(&mut want),
                    n,
                )
                .unwrap();
                let mut got = vec![0i32; oh * ow * n];
                gemm_i8_hwc(&g, act(padded), 1.0, &b_hwc, Output::Dots(&mut got), n).unwrap();
                assert_eq!(got, want, "{g:?} signed {signed}");
            }
        }
    }

    /// Patch rows from the bit image hold exactly the signs of a naive im2col (zeros where the
    /// patch leaves the image), for strides, pads, dilations and channel counts that make runs
    /// straddle words.
    #[test]
    fn patches_match_naive_im2col() {
        let cases = [
            (1, 5, 6, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
            (3, 7, 5, [3, 2], [2, 1], [1, 1], [0, 1, 2, 0]),
            (32, 6, 6, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
            (5, 9, 9, [3, 3], [1, 2], [2, 2], [2, 0, 1, 3]),
            (70, 3, 4, [2, 2], [1, 1], [1, 1], [0, 0, 0, 0]),
        ];
        for (c, h, w, kernel, stride, dilation, pads) in cases {
            let g = Conv2d {
                channels: c,
                height: h,
                width: w,
                kernel,
                stride,
                dilation,
                pads,
            };
            let x: Vec<f32> = (0..c * h * w)
                .map(|i| match (i * 7919) % 5 {
                    0 => 0.0,
                    1 | 2 => -0.5,
                    _ => 1.5,
                })
                .collect();
            let mut img = TernaryImage::new();
            img.pack_nchw(&g, &x).unwrap();
            let a = BinaryActivations::conv_patches(&g, &img).unwrap();
            let [oh, ow] = g.output_size().unwrap();
            assert_eq!(a.m(), oh * ow);
            let k = g.patch_len();
            for p in 0..oh * ow {
                let (oy, ox) = (p / ow, p % ow);
                let sign = a.rows_from(p, 1);
                let nz = a.mask_from(p, 1).unwrap();
                let mut count = 0;
                for ky in 0..kernel[0] {
                    for kx in 0..kernel[1] {
                        for ci in 0..c {
                            let kk = (ky * kernel[1] + kx) * c + ci;
                            let y = (oy * stride[0] + ky * dilation[0]).checked_sub(pads[0]);
                            let xx = (ox * stride[1] + kx * dilation[1]).checked_sub(pads[1]);
                            let want = match (y.filter(|&y| y < h), xx.filter(|&xx| xx < w)) {
                                (Some(y), Some(xx)) => x[(ci * h + y) * w + xx],
                                _ => 0.0,
                            };
                            let bit = |v: &[u64]| (v[kk / 64] >> (kk % 64)) & 1 == 1;
                            assert_eq!(bit(nz), want != 0.0, "{g:?} pixel {p} k {kk}");
                            if want != 0.0 {
                                assert_eq!(bit(sign), want < 0.0, "{g:?} pixel {p} k {kk}");
                                count += 1;
                            }
                        }
                    }
                }
                assert_eq!(a.count(p), count);
                let words = k.div_ceil(64);
                assert!(nz[..words]
                    .iter()
                    .enumerate()
                    .all(|(wi, &v)| wi < words - 1 || k.is_multiple_of(64) || v >> (k % 64) == 0));
            }
        }
    }
}
