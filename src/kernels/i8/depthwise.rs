//! INT8 depthwise convolution (ONNX Conv with `group = C`, one output channel per input channel)
//! on channel-major (NCHW) images, vectorised along the output row.
//!
//! Each input row of a channel is first widened into a row of tap *pairs*: `Q[m]` holds the two
//! centred inputs `x - zx` (i16) that kernel columns `2p` and `2p + 1` read for output column
//! `m - p·step`, in one 32-bit lane. Every horizontal tap, border and stride then becomes one
//! plain load per vector of outputs, and a pair of taps one `vpmaddwd` (AVX2, 8 outputs) or
//! `vpdpwssd` (AVX-512 VNNI, 16 outputs) against the broadcast pair of centred weights. Padding
//! columns hold 0 (= the activation zero point after centring), so no border needs a branch; kernel
//! rows outside the image are skipped. The requantize/dequantize epilogue runs on 8 outputs of
//! one channel at a time with the same AVX2 arithmetic as the GEMM's.
//!
//! With stride `s` and dilation `d` along W, `Q[m] = (R[s·m], R[s·m + d])` on the zero-padded
//! centred row `R`, and pair `p` of output `ox` is `Q[ox + p · 2d/s]`: this needs `s` to divide
//! `2d` (strides 1 and 2 with unit dilation, the MobileNet cases). Other geometries run the
//! scalar definition ([`pixel`]) output by output.
//!
//! Why along W rather than across channels: quench keeps depthwise activations NCHW (their
//! producers and readers are `QuantizeLinear`/`DequantizeLinear` and f32 elementwise ops in
//! MobileNet-style models), so a row run needs no layout change, while a channel run would need
//! two transposes per layer.

use std::cell::RefCell;

use super::conv::Conv2d;
use super::epilogue::{Finish, Raw};
use super::{isa, Activations, I8Error, Isa, Output, WeightZeroPoint, NR};
use crate::kernels::par;

/// Output columns per block that every pairs kernel computes: row buffers are padded to it.
const LANES: usize = 16;

/// Depthwise weights `[C][kh][kw]` (ONNX Conv with `group = C`, one output per channel), stored
/// centred (`w - zw[c]`, exact in i16), and as tap pairs `[C][kh][⌈kw/2⌉]` for the row kernels.
#[derive(Debug, Clone)]
pub struct PackedDepthwise {
    channels: usize,
    kernel: [usize; 2],
    w: Vec<i16>,
    /// Centred weights of kernel columns `2p` (low 16 bits) and `2p + 1` (high 16 bits, 0 past
    /// the last column).
    pairs: Vec<i32>,
}

/// Two i16 in one 32-bit lane, `lo` in the low half as `vpmaddwd` pairs them.
#[inline(always)]
fn pack_pair(lo: i16, hi: i16) -> i32 {
    (u32::from(lo as u16) | (u32::from(hi as u16) << 16)) as i32
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
        let w: Vec<i16> = w
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
        let kw = kernel[1];
        let pairs = w
            .chunks(kw.max(1))
            .flat_map(|row| {
                row.chunks(2)
                    .map(|p| pack_pair(p[0], p.get(1).copied().unwrap_or(0)))
            })
            .collect();
        Ok(PackedDepthwise {
            channels,
            kernel,
            w,
            pairs,
        })
    }

    /// Bytes held (centred i16 weights and their pairs).
    pub fn size_bytes(&self) -> usize {
        self.w.len() * 2 + self.pairs.len() * 4
    }

    /// Tap pairs per kernel row.
    fn pairs_per_row(&self) -> usize {
        self.kernel[1].div_ceil(2)
    }
}

/// Which depthwise row kernel runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum DwKernel {
    /// The pairs arithmetic in portable code (the twin of every SIMD form).
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
    #[cfg(target_arch = "aarch64")]
    Neon,
}

impl DwKernel {
    pub(super) fn for_isa(isa: Isa) -> DwKernel {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => DwKernel::Avx2,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => DwKernel::Avx512Vnni,
            #[cfg(target_arch = "aarch64")]
            Isa::Neon | Isa::NeonDot => DwKernel::Neon,
            _ => DwKernel::Scalar,
        }
    }

    /// Whether the epilogue may use its AVX2 form.
    fn simd_epilogue(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if self != DwKernel::Scalar {
            return true;
        }
        false
    }
}

/// Name of the depthwise kernel that [`depthwise`] runs in this process (tap pairs along the
/// output row; geometries whose W stride does not divide twice the W dilation run the scalar
/// definition).
pub fn depthwise_kernel_name() -> String {
    let k = match DwKernel::for_isa(isa()) {
        DwKernel::Scalar => "scalar",
        #[cfg(target_arch = "x86_64")]
        DwKernel::Avx2 => "avx2",
        #[cfg(target_arch = "x86_64")]
        DwKernel::Avx512Vnni => "avx512vnni",
        #[cfg(target_arch = "aarch64")]
        DwKernel::Neon => "neon",
    };
    format!("i8-depthwise-{k} (pairs)")
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
    let d = Dw {
        g,
        oh,
        ow,
        x,
        w,
        rows: Rows::of(g, ow, w.pairs_per_row()),
    };
    match out {
        Output::I32(c) => d.run(kernel, c, &Raw),
        Output::F32(c, f) => d.run(kernel, c, &f),
        Output::U8(c, r) => d.run(kernel, c, &r.for_u8()),
        Output::S8(c, r) => d.run(kernel, c, &r.for_s8()),
    }
    Ok(())
}

/// The pair-row layout of one geometry: `Q[m] = (R[s·m], R[s·m + d])` along W.
#[derive(Debug, Clone, Copy)]
struct Rows {
    /// W stride `s`.
    stride: usize,
    /// W dilation `d`.
    dilation: usize,
    /// Pair offset between consecutive tap pairs of one output: `2d / s`.
    step: usize,
    /// Output columns computed per row: OW rounded up to [`LANES`].
    cols: usize,
    /// Pairs per widened row: `cols + (pairs - 1) · step`.
    len: usize,
}

impl Rows {
    /// The layout, or `None` when `s` does not divide `2d`.
    fn of(g: &Conv2d, ow: usize, pairs: usize) -> Option<Rows> {
        let (s, d) = (g.stride[1], g.dilation[1]);
        if (2 * d) % s != 0 {
            return None;
        }
        let step = 2 * d / s;
        let cols = ow.div_ceil(LANES) * LANES;
        Some(Rows {
            stride: s,
            dilation: d,
            step,
            cols,
            len: cols + (pairs.max(1) - 1) * step,
        })
    }
}

/// One depthwise call: geometry, input and weights.
struct Dw<'a> {
    g: &'a Conv2d,
    oh: usize,
    ow: usize,
    x: Activations<'a>,
    w: &'a PackedDepthwise,
    rows: Option<Rows>,
}

thread_local! {
    /// Per-thread widened rows and accumulators, reused across calls so the hot loop allocates
    /// only when a layer is larger than any before it on this thread.
    static SCRATCH: RefCell<Vec<i32>> = const { RefCell::new(Vec::new()) };
}

impl Dw<'_> {
    fn run<T: Send, F: Finish<T> + Send>(&self, kernel: DwKernel, out: &mut [T], fin: &F) {
        let g = self.g;
        let taps = g.kernel[0] * g.kernel[1];
        let Some(rows) = self.rows else {
            // The scalar definition, output by output.
            let plane = g.height * g.width;
            par::for_each_chunk(out, self.oh * self.ow, |c, dst| {
                let xc: Vec<i16> = (c * plane..(c + 1) * plane)
                    .map(|i| self.x.centred(i))
                    .collect();
                let wc = &self.w.w[c * taps..(c + 1) * taps];
                for (p, o) in dst.iter_mut().enumerate() {
                    *o = fin.finish(pixel(g, &xc, wc, p / self.ow, p % self.ow), c);
                }
            });
            return;
        };
        par::for_each_chunk(out, self.oh * self.ow, |c, dst| {
            SCRATCH.with_borrow_mut(|scratch| {
                let need = g.height * rows.len + rows.cols;
                if scratch.len() < need {
                    scratch.resize(need, 0);
                }
                let scratch = &mut scratch[..need];
                match kernel {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: the AVX2 kernel is chosen only after AVX2 was detected.
                    DwKernel::Avx2 => unsafe { self.channel_avx2(rows, c, dst, fin, scratch) },
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: the AVX-512 kernel is chosen only after AVX2 and AVX-512 F/VNNI
                    // were detected.
                    DwKernel::Avx512Vnni => unsafe {
                        self.channel_avx512(rows, c, dst, fin, scratch)
                    },
                    _ => self.channel(kernel, rows, c, dst, fin, scratch),
                }
            });
        });
    }

    /// [`Self::channel`] compiled for AVX2, so that the epilogue's intrinsics inline.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn channel_avx2<T, F: Finish<T>>(
        &self,
        rows: Rows,
        c: usize,
        dst: &mut [T],
        fin: &F,
        scratch: &mut [i32],
    ) {
        self.channel(DwKernel::Avx2, rows, c, dst, fin, scratch)
    }

    /// [`Self::channel`] compiled for AVX-512 VNNI (and AVX2 for the epilogue).
    ///
    /// # Safety
    /// The CPU must support AVX2 and AVX-512 F/VNNI.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,avx512f,avx512vnni")]
    unsafe fn channel_avx512<T, F: Finish<T>>(
        &self,
        rows: Rows,
        c: usize,
        dst: &mut [T],
        fin: &F,
        scratch: &mut [i32],
    ) {
        self.channel(DwKernel::Avx512Vnni, rows, c, dst, fin, scratch)
    }

    /// Output plane `dst` of channel `c`: widens the channel's rows into `scratch` (which holds
    /// `H · rows.len` pairs, then `rows.cols` accumulators), then runs each output row's valid
    /// kernel rows and stores 8 outputs at a time through `fin`.
    #[inline(always)]
    fn channel<T, F: Finish<T>>(
        &self,
        kernel: DwKernel,
        rows: Rows,
        c: usize,
        dst: &mut [T],
        fin: &F,
        scratch: &mut [i32],
    ) {
        let g = self.g;
        let np = self.w.pairs_per_row();
        let simd = kernel.simd_epilogue();
        let (q, acc) = scratch.split_at_mut(g.height * rows.len);
        for (iy, qrow) in q.chunks_exact_mut(rows.len).enumerate() {
            widen_row(self.x, g, rows, c, iy, qrow);
        }
        let wc = &self.w.pairs[c * g.kernel[0] * np..(c + 1) * g.kernel[0] * np];
        for (oy, orow) in dst.chunks_exact_mut(self.ow).enumerate() {
            acc.fill(0);
            for ky in 0..g.kernel[0] {
                let Some(iy) = g.in_y(oy, ky) else { continue };
                let qrow = &q[iy * rows.len..(iy + 1) * rows.len];
                row_taps(kernel, qrow, &wc[ky * np..(ky + 1) * np], rows.step, acc);
            }
            for (v, o) in acc.chunks_exact(NR).zip(orow.chunks_mut(NR)) {
                if let Ok(v) = <&[i32; NR]>::try_from(v) {
                    fin.finish_col(simd, v, c, o);
                }
            }
        }
    }
}

/// Writes the widened pair row `q` (`rows.len` pairs) of input row `iy` of channel `c`:
/// `q[m] = (R[s·m], R[s·m + d])` with `R[i] = x[iy][i - pad_left] - zx` inside the row, 0 outside.
#[inline(always)]
fn widen_row(x: Activations<'_>, g: &Conv2d, rows: Rows, c: usize, iy: usize, q: &mut [i32]) {
    let start = (c * g.height + iy) * g.width;
    match x {
        Activations::U8 { data, zero_point } => {
            widen(g, rows, q, &data[start..start + g.width], zero_point)
        }
        Activations::S8 { data, zero_point } => {
            widen(g, rows, q, &data[start..start + g.width], zero_point)
        }
    }
}

#[inline(always)]
fn widen<T: Copy + Into<i16>>(g: &Conv2d, rows: Rows, q: &mut [i32], row: &[T], zx: T) {
    let (s, d, pad) = (rows.stride, rows.dilation, g.pads[1]);
    let zx: i16 = zx.into();
    let centred = |v: T| v.into() - zx;
    let at = |i: usize| match i.checked_sub(pad) {
        Some(x) if x < g.width => centred(row[x]),
        _ => 0,
    };
    // Pairs whose both inputs are inside the row: m in [lo, hi).
    let lo = pad.div_ceil(s).min(q.len());
    let hi = (pad + g.width)
        .checked_sub(d)
        .map_or(0, |end| end.div_ceil(s))
        .clamp(lo, q.len());
    for (m, v) in q[..lo].iter_mut().enumerate() {
        *v = pack_pair(at(s * m), at(s * m + d));
    }
    // The interior as zipped slices, so that it vectorizes: s·(hi - 1) + d < pad + W.
    let (n, i0) = (hi - lo, s * lo - pad);
    let inner = &mut q[lo..hi];
    match (s, d) {
        // No interior (a row narrower than the dilation): `row[i0 + d..]` may not exist.
        _ if n == 0 => {}
        (1, _) => {
            let (a, b) = (&row[i0..i0 + n], &row[i0 + d..i0 + d + n]);
            for ((v, &x0), &x1) in inner.iter_mut().zip(a).zip(b) {
                *v = pack_pair(centred(x0), centred(x1));
            }
        }
        (2, 1) => {
            for (v, p) in inner.iter_mut().zip(row[i0..i0 + 2 * n].chunks_exact(2)) {
                *v = pack_pair(centred(p[0]), centred(p[1]));
            }
        }
        _ => {
            for (m, v) in inner.iter_mut().enumerate() {
                let i = i0 + s * m;
                *v = pack_pair(centred(row[i]), centred(row[i + d]));
            }
        }
    }
    for (m, v) in q[hi..].iter_mut().enumerate() {
        let m = hi + m;
        *v = pack_pair(at(s * m), at(s * m + d));
    }
}

/// `acc[ox] += Σ_p dot(q[ox + p·step], w[p])` for every `ox < acc.len()` (a multiple of
/// [`LANES`]), where `dot` multiplies the two i16 halves of each lane and adds them.
#[inline(always)]
fn row_taps(kernel: DwKernel, q: &[i32], w: &[i32], step: usize, acc: &mut [i32]) {
    debug_assert!(acc.len().is_multiple_of(LANES));
    debug_assert!(q.len() >= acc.len() + (w.len().max(1) - 1) * step);
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 was detected; the lengths are as `row_taps` documents and asserts.
        DwKernel::Avx2 => unsafe { super::avx2::depthwise_row(q, w, step, acc) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512 F/VNNI was detected; the lengths are as above.
        DwKernel::Avx512Vnni => unsafe { super::vnni::depthwise_row(q, w, step, acc) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON was detected; the lengths are as above.
        DwKernel::Neon => unsafe { super::neon::depthwise_row(q, w, step, acc) },
        DwKernel::Scalar => row_taps_scalar(q, w, step, acc),
    }
}

/// The portable twin of the SIMD row kernels.
fn row_taps_scalar(q: &[i32], w: &[i32], step: usize, acc: &mut [i32]) {
    for (p, &wp) in w.iter().enumerate() {
        let (w0, w1) = (wp as i16 as i32, (wp >> 16) as i16 as i32);
        for (a, &v) in acc.iter_mut().zip(&q[p * step..]) {
            *a += (v as i16 as i32) * w0 + ((v >> 16) as i16 as i32) * w1;
        }
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
