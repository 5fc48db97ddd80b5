//! INT8 convolution support: the 2-D geometry, im2col on u8/s8 activations (padding holds the
//! activation zero point, so it adds nothing after centring), and the depthwise kernel.

use super::epilogue::{Finish, Raw};
use super::{isa, Activations, I8Error, Isa, Output, WeightZeroPoint};
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

    fn input_len(&self) -> usize {
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

/// Depthwise weights `[C][kh][kw]` (ONNX Conv with `group = C`, one output per channel), stored
/// centred (`w - zw[c]`, exact in i16).
#[derive(Debug, Clone)]
pub struct PackedDepthwise {
    channels: usize,
    kernel: [usize; 2],
    w: Vec<i16>,
}

impl PackedDepthwise {
    /// Packs `w` (`C · kh · kw` values) with its zero point(s).
    pub fn new(
        channels: usize,
        kernel: [usize; 2],
        w: &[i8],
        zp: WeightZeroPoint<'_>,
    ) -> Result<PackedDepthwise, I8Error> {
        let taps = kernel[0].saturating_mul(kernel[1]);
        if taps > super::K_MAX {
            return Err(I8Error::KTooLarge {
                k: taps,
                max: super::K_MAX,
            });
        }
        let expected = channels.saturating_mul(taps);
        if w.len() != expected {
            return Err(I8Error::Length {
                what: "depthwise weights",
                expected,
                got: w.len(),
            });
        }
        if let WeightZeroPoint::PerChannel(z) = zp {
            if z.len() != channels {
                return Err(I8Error::Length {
                    what: "depthwise zero points",
                    expected: channels,
                    got: z.len(),
                });
            }
        }
        let w = w
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let z = match zp {
                    WeightZeroPoint::None => 0,
                    WeightZeroPoint::PerTensor(z) => z,
                    WeightZeroPoint::PerChannel(z) => z[i / taps],
                };
                v as i16 - z as i16
            })
            .collect();
        Ok(PackedDepthwise {
            channels,
            kernel,
            w,
        })
    }

    /// Bytes held (centred i16 weights).
    pub fn size_bytes(&self) -> usize {
        self.w.len() * 2
    }
}

/// Which depthwise inner kernel runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum DwKernel {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "aarch64")]
    Neon,
}

impl DwKernel {
    pub(super) fn for_isa(isa: Isa) -> DwKernel {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::Avx512Vnni => DwKernel::Avx2,
            #[cfg(target_arch = "aarch64")]
            Isa::Neon | Isa::NeonDot => DwKernel::Neon,
            _ => DwKernel::Scalar,
        }
    }
}

/// Name of the depthwise kernel that [`depthwise`] runs in this process (the SIMD form covers
/// unit-stride interior columns; borders and other strides run the scalar form).
pub fn depthwise_kernel_name() -> String {
    let k = match DwKernel::for_isa(isa()) {
        DwKernel::Scalar => "scalar",
        #[cfg(target_arch = "x86_64")]
        DwKernel::Avx2 => "avx2",
        #[cfg(target_arch = "aarch64")]
        DwKernel::Neon => "neon",
    };
    format!("i8-depthwise-{k}")
}

/// Depthwise INT8 convolution of `x` (C×H×W, u8 or s8 with its zero point, which is also the
/// padding value) with `w`: `acc[c][oy][ox] = Σ (x - zx)(w - zw[c])`, stored through `out`
/// (`C · OH · OW` values, channel-major) with per-channel scales, biases and zero points taken
/// from channel `c`. Channels are split over rayon's pool when it has more than one thread.
pub fn depthwise(
    g: &Conv2d,
    x: Activations<'_>,
    w: &PackedDepthwise,
    out: Output<'_>,
) -> Result<(), I8Error> {
    depthwise_with(DwKernel::for_isa(isa()), g, x, w, out)
}

pub(super) fn depthwise_with(
    kernel: DwKernel,
    g: &Conv2d,
    x: Activations<'_>,
    w: &PackedDepthwise,
    out: Output<'_>,
) -> Result<(), I8Error> {
    if g.kernel != w.kernel || g.channels != w.channels {
        return Err(I8Error::Geometry {
            what: "depthwise weights do not match the convolution's channels or kernel",
        });
    }
    let [oh, ow] = g.output_size()?;
    if x.len() != g.input_len() {
        return Err(I8Error::Length {
            what: "depthwise input",
            expected: g.input_len(),
            got: x.len(),
        });
    }
    let got = out.check_params(g.channels)?;
    let need = g.channels * oh * ow;
    if got != need {
        return Err(I8Error::Length {
            what: "depthwise output",
            expected: need,
            got,
        });
    }
    if need == 0 {
        return Ok(());
    }
    let centred: Vec<i16> = (0..x.len()).map(|i| x.centred(i)).collect();
    let d = Dw {
        g,
        oh,
        ow,
        x: &centred,
        w,
    };
    match out {
        Output::I32(c) => d.run(kernel, c, &Raw),
        Output::F32(c, f) => d.run(kernel, c, &f),
        Output::U8(c, r) => d.run(kernel, c, &r.for_u8()),
        Output::S8(c, r) => d.run(kernel, c, &r.for_s8()),
    }
    Ok(())
}

/// One depthwise call: geometry, centred input and weights.
struct Dw<'a> {
    g: &'a Conv2d,
    oh: usize,
    ow: usize,
    x: &'a [i16],
    w: &'a PackedDepthwise,
}

impl Dw<'_> {
    fn run<T: Send, F: Finish<T> + Send>(&self, kernel: DwKernel, out: &mut [T], fin: &F) {
        let g = self.g;
        let plane = g.height * g.width;
        let taps = g.kernel[0] * g.kernel[1];
        // Columns where every kernel column is inside the image (unit stride only).
        let (x_lo, x_hi) = if g.stride[1] == 1 {
            let reach = (g.kernel[1] - 1) * g.dilation[1];
            (
                g.pads[1],
                (g.width + g.pads[1]).saturating_sub(reach).min(self.ow),
            )
        } else {
            (0, 0)
        };
        par::for_each_chunk(out, self.oh * self.ow, |c, dst| {
            let xc = &self.x[c * plane..(c + 1) * plane];
            let wc = &self.w.w[c * taps..(c + 1) * taps];
            for oy in 0..self.oh {
                let row = &mut dst[oy * self.ow..(oy + 1) * self.ow];
                let mut ox = 0;
                while ox < self.ow {
                    if kernel != DwKernel::Scalar && ox >= x_lo && ox + 8 <= x_hi {
                        let acc = simd8(kernel, g, xc, wc, oy, ox);
                        for (l, &v) in acc.iter().enumerate() {
                            row[ox + l] = fin.finish(v, c);
                        }
                        ox += 8;
                    } else {
                        row[ox] = fin.finish(pixel(g, xc, wc, oy, ox), c);
                        ox += 1;
                    }
                }
            }
        });
    }
}

/// The scalar definition of one output: `Σ` over the kernel taps inside the image (taps in the
/// padding see `x - zx = 0`).
#[inline(always)]
pub(super) fn pixel(g: &Conv2d, xc: &[i16], wc: &[i16], oy: usize, ox: usize) -> i32 {
    let mut acc = 0i32;
    for ky in 0..g.kernel[0] {
        let Some(iy) = g.in_y(oy, ky) else { continue };
        for kx in 0..g.kernel[1] {
            if let Some(ix) = g.in_x(ox, kx) {
                acc += xc[iy * g.width + ix] as i32 * wc[ky * g.kernel[1] + kx] as i32;
            }
        }
    }
    acc
}

/// Eight unit-stride interior outputs `ox .. ox + 8` of row `oy` with the SIMD kernel.
#[inline(always)]
fn simd8(kernel: DwKernel, g: &Conv2d, xc: &[i16], wc: &[i16], oy: usize, ox: usize) -> [i32; 8] {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 was detected; `ox .. ox + 8` is an interior unit-stride run, so every
        // 8-value load at `iy·W + ox + kx·dw - pad_left` lies inside the channel plane.
        DwKernel::Avx2 => unsafe { super::avx2::depthwise8(g, xc, wc, oy, ox) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: as above, with NEON detected.
        DwKernel::Neon => unsafe { super::neon::depthwise8(g, xc, wc, oy, ox) },
        DwKernel::Scalar => std::array::from_fn(|l| pixel(g, xc, wc, oy, ox + l)),
    }
}
