//! Integer MaxPool on pixel-major (NHWC) u8/i8 images: each window tap is one run of C
//! channel values, folded into the output pixel with a byte-wise max (`vpmaxub`/`vpmaxsb` on
//! AVX2), instead of one plane at a time with a scalar max per tap.

use super::conv::taps;
use crate::graph::shape::Window2d;

/// Max pool of `batch` NHWC images of `channels` channels (`x`: `batch·H·W·C`, `out`:
/// `batch·OH·OW·C`). Taps in the padding never win; a window with no tap inside the image gives
/// the type's lowest value, as the plane-wise max pool does.
#[inline(always)]
fn max_pool_hwc_body<T: Copy + Ord>(
    w: &Window2d,
    channels: usize,
    lowest: T,
    x: &[T],
    out: &mut [T],
) {
    let (ih, iw) = (w.input[0], w.input[1]);
    let (oh, ow) = (w.output[0], w.output[1]);
    let c = channels;
    if c == 0 {
        return;
    }
    let image = ih * iw * c;
    // The common case: four runs per output pixel and no tap arithmetic.
    let plain_2x2 = w.is_plain_2x2();
    for (b, o_img) in out.chunks_exact_mut((oh * ow * c).max(1)).enumerate() {
        let x_img = &x[b * image..(b + 1) * image];
        if plain_2x2 {
            for (p, o) in o_img.chunks_exact_mut(c).enumerate() {
                let (oy, ox) = (p / ow, p % ow);
                let at = |y: usize, xx: usize| &x_img[(y * iw + xx) * c..][..c];
                let (r0, r1) = (at(2 * oy, 2 * ox), at(2 * oy + 1, 2 * ox));
                let (s0, s1) = (at(2 * oy, 2 * ox + 1), at(2 * oy + 1, 2 * ox + 1));
                let taps = r0.iter().zip(s0).zip(r1.iter().zip(s1));
                for (d, ((&a, &b), (&e, &f))) in o.iter_mut().zip(taps) {
                    *d = a.max(b).max(e.max(f));
                }
            }
            continue;
        }
        for oy in 0..oh {
            let (ylo, yhi, ys) = taps(oy, w.strides[0], w.pads[0], w.dilations[0], w.kernel[0], ih);
            for ox in 0..ow {
                let (xlo, xhi, xs) =
                    taps(ox, w.strides[1], w.pads[1], w.dilations[1], w.kernel[1], iw);
                let o = &mut o_img[(oy * ow + ox) * c..][..c];
                o.fill(lowest);
                for ky in ylo..yhi {
                    let y = (ys + (ky * w.dilations[0]) as isize) as usize;
                    for kx in xlo..xhi {
                        let xx = (xs + (kx * w.dilations[1]) as isize) as usize;
                        let src = &x_img[(y * iw + xx) * c..][..c];
                        for (d, &v) in o.iter_mut().zip(src) {
                            *d = (*d).max(v);
                        }
                    }
                }
            }
        }
    }
}

#[inline(always)]
fn max_pool_hwc_u8_body(w: &Window2d, channels: usize, x: &[u8], out: &mut [u8]) {
    max_pool_hwc_body(w, channels, u8::MIN, x, out)
}

#[inline(always)]
fn max_pool_hwc_i8_body(w: &Window2d, channels: usize, x: &[i8], out: &mut [i8]) {
    max_pool_hwc_body(w, channels, i8::MIN, x, out)
}

avx2_twin!(
    /// Max pool of NHWC u8 images (see `max_pool_hwc_body`).
    pub fn max_pool_hwc_u8(w: &Window2d, channels: usize, x: &[u8], out: &mut [u8]) => max_pool_hwc_u8_body
);
avx2_twin!(
    /// Max pool of NHWC i8 images (see `max_pool_hwc_body`).
    pub fn max_pool_hwc_i8(w: &Window2d, channels: usize, x: &[i8], out: &mut [i8]) => max_pool_hwc_i8_body
);

#[cfg(test)]
mod tests {
    use super::super::pool::{max_pool, odd_windows};
    use super::*;

    #[test]
    fn nhwc_max_pool_equals_the_planewise_pool_transposed() {
        let cases = odd_windows();
        for w in cases {
            for (batch, c) in [(1, 33), (2, 5), (1, 64)] {
                let (ih, iw) = (w.input[0], w.input[1]);
                let (oh, ow) = (w.output[0], w.output[1]);
                let nchw: Vec<u8> = (0..batch * c * ih * iw)
                    .map(|i| ((i * 151 + 7) % 256) as u8)
                    .collect();
                let mut want = vec![0u8; batch * c * oh * ow];
                max_pool(&w, &nchw, &mut want);
                let to_nhwc = |v: &[u8], hw: usize| {
                    let mut t = vec![0u8; v.len()];
                    for (i, &e) in v.iter().enumerate() {
                        let (b, r) = (i / (c * hw), i % (c * hw));
                        t[b * c * hw + (r % hw) * c + r / hw] = e;
                    }
                    t
                };
                let x = to_nhwc(&nchw, ih * iw);
                let mut got = vec![0u8; want.len()];
                max_pool_hwc_u8(&w, c, &x, &mut got);
                assert_eq!(got, to_nhwc(&want, oh * ow), "{w:?} c {c}");
                let xs: Vec<i8> = x.iter().map(|&v| (v ^ 0x80) as i8).collect();
                let mut got_s = vec![0i8; want.len()];
                max_pool_hwc_i8(&w, c, &xs, &mut got_s);
                let want_s: Vec<i8> = to_nhwc(&want, oh * ow)
                    .iter()
                    .map(|&v| (v ^ 0x80) as i8)
                    .collect();
                assert_eq!(got_s, want_s, "{w:?} c {c}");
            }
        }
    }
}
