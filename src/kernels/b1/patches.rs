//! Convolution patches of ternary activations without a per-value gather: the image's signs are
//! packed once into a padded H×W×C bit image (a sign plane and a nonzero plane, the padding 0 in
//! the nonzero plane so it never counts), and each patch row is copied from it as `kh` runs of
//! `kw · C` bits (unit width dilation) or `kh · kw` runs of `C` bits, ordered kernel row, kernel
//! column, channel: the order of [`super::super::i8::Conv2d`]'s HWC patches, so the weights are
//! packed the same way as the int8 path's.

use super::super::i8::Conv2d;
use super::pack::BinaryActivations;
use super::B1Error;

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
        let words = padded_bits(g)?.div_ceil(64);
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

/// Largest padded image accepted, in bits (64 MiB per plane).
pub const MAX_IMAGE_BITS: usize = 1 << 29;

/// Bits of one plane of `g`'s padded image, checked against [`MAX_IMAGE_BITS`].
pub fn padded_bits(g: &Conv2d) -> Result<usize, B1Error> {
    let [hp, wp] = g.padded();
    hp.checked_mul(wp)
        .and_then(|v| v.checked_mul(g.channels))
        .filter(|&v| v <= MAX_IMAGE_BITS)
        .ok_or(B1Error::ImageTooLarge {
            max: MAX_IMAGE_BITS,
        })
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
        let words = padded_bits(g)?.div_ceil(64);
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

#[cfg(test)]
mod tests {
    use super::*;

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
