//! The integer ONNX operators of dynamic INT8 models on quench's INT8 kernels
//! ([`crate::kernels::i8`]).
//!
//! ONNX's dynamic form is a chain: `DynamicQuantizeLinear(x) → [x_q u8, x_scale, x_zero_point]`,
//! then `MatMulInteger` / `ConvInteger` (i32 accumulators), `Cast` to f32, `Mul` by
//! `x_scale · w_scale`, `Add` of the bias (ORT's `quantize_dynamic` and quench's export write it
//! this way; quench's export writes Conv as `DynamicQuantizeLinear → DequantizeLinear` into a
//! Conv on a `DequantizeLinear` s8 weight, which is the same integer arithmetic). The engine's
//! arena holds f32 values, so [`crate::engine::fuse_int`] folds each chain into one
//! [`DynamicQuant`] node (f32 in, f32 out) that does exactly what the chain does:
//!
//! * `DynamicQuantizeLinear` as ONNX and ORT define it: the range is widened to hold 0,
//!   `scale = (max - min) / 255` (1 when the range is empty), `zero_point =
//!   round_half_even(clamp(-min / scale, 0, 255))`, `q = clamp(round_half_even(x / scale) +
//!   zero_point, 0, 255)`;
//! * the exact i32 product of the INT8 kernels (u8 activations, s8 weights; u8 weights are
//!   shifted to s8 with their zero point, which leaves every `w - zw` unchanged);
//! * `acc as f32 · (x_scale · w_scale[j]) + bias[j]`, then the ReLU when one followed.
//!
//! Weights are packed once, when the plan is built. A depthwise Conv (group = input channels =
//! output channels, as MobileNets have) runs on the direct depthwise kernel the static path uses
//! ([`crate::kernels::i8::depthwise`]); any other grouped Conv runs each group's input channels
//! through the patches + GEMM of a group-1 Conv ([`Geometry::conv_gemm`], shared with the static
//! path's fused Conv).

use std::cell::RefCell;

use crate::graph::shape::{matmul_shapes, ConvParams, ValueType};
use crate::graph::{GraphError, Node};
use crate::kernels::i8::{
    depthwise, depthwise_kernel_name, gemm, gemm_hwc, im2col, Activations, Conv2d, Dequantize,
    I8Error, Output, PackedDepthwise, PackedI8, Scale, WeightZeroPoint,
};
use crate::tensor::{Tensor, TensorData};

use super::conv::transpose2d;
use super::quantized::{activations, QType};

pub use crate::graph::shape_int::{DYNAMIC_CONV, DYNAMIC_MATMUL, INTERNAL_DOMAIN};

thread_local! {
    /// Quantized activations and im2col patches of the running step. Kept per thread and grown
    /// on demand, so a plan run allocates nothing once warm.
    static BYTES: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The `DynamicQuantizeLinear` grid of `x`: `(scale, zero_point)`, as ONNX Runtime computes it
/// (NaN values are ignored; an all-zero tensor gets scale 1).
pub fn dynamic_qparams(x: &[f32]) -> (f32, u8) {
    let (lo, hi) = min_max(x);
    let scale = if hi == lo { 1.0 } else { (hi - lo) / 255.0 };
    let zp = (-lo / scale).clamp(0.0, 255.0).round_ties_even() as u8;
    (scale, zp)
}

fn min_max(x: &[f32]) -> (f32, f32) {
    let mut r = (0.0f32, 0.0f32);
    min_max_into(x, &mut r);
    r
}

#[inline(always)]
fn min_max_body(x: &[f32], r: &mut (f32, f32)) {
    // Eight independent lanes so the loop vectorizes; 0 seeds both, as the range must hold 0.
    let (mut lo, mut hi) = ([0.0f32; 8], [0.0f32; 8]);
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..8 {
            lo[l] = lo[l].min(c[l]);
            hi[l] = hi[l].max(c[l]);
        }
    }
    for &v in tail {
        lo[0] = lo[0].min(v);
        hi[0] = hi[0].max(v);
    }
    *r = (
        lo.iter().fold(0.0f32, |a, &b| a.min(b)),
        hi.iter().fold(0.0f32, |a, &b| a.max(b)),
    );
}

avx2_twin!(fn min_max_into(x: &[f32], r: &mut (f32, f32)) => min_max_body);

/// `DynamicQuantizeLinear`'s quantization of `x` on the grid `(scale, zp)` into `out`:
/// `clamp(round_half_even(x / scale) + zp, 0, 255)`.
pub fn quantize_u8(x: &[f32], scale: f32, zp: u8, out: &mut [u8]) {
    quantize_u8_into(x, scale, f32::from(zp), out)
}

/// ONNX `QuantizeLinear` of `x` to s8 on the grid `(scale, zp)`:
/// `clamp(round_half_even(x / scale) + zp, -128, 127)`.
pub fn quantize_s8(x: &[f32], scale: f32, zp: i8, out: &mut [i8]) {
    quantize_s8_into(x, scale, f32::from(zp), out)
}

/// `clamp(round_half_even(v / scale) + zp, lo, hi)`, and 0 for NaN (what `NaN as i8/u8` gives).
/// Written as a NaN select and `max`/`min` rather than `clamp` so that the loops vectorize.
#[inline(always)]
pub(super) fn quantize_value(v: f32, scale: f32, zp: f32, lo: f32, hi: f32) -> f32 {
    let r = (v / scale).round_ties_even() + zp;
    if r.is_nan() {
        0.0
    } else {
        r.max(lo).min(hi)
    }
}

/// `1.5 · 2^23`: added to an integral f32 `r` with `|r| <= 2^22`, the sum is exact and its low
/// mantissa bits hold `r` in two's complement, so the low byte of its bits is `r` as u8/i8.
const MAGIC: f32 = 12_582_912.0;

/// The low byte of an integral f32 in `[-128, 255]` (a [`quantize_value`] result). Rust's
/// saturating `f32 as i32` compiles to per-lane compares and branches; this is one add and a
/// truncation per lane, so the loops around it vectorize.
#[inline(always)]
pub(super) fn low_byte(r: f32) -> u8 {
    (r + MAGIC).to_bits() as u8
}

#[inline(always)]
fn quantize_u8_body(x: &[f32], scale: f32, zp: f32, out: &mut [u8]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = low_byte(quantize_value(v, scale, zp, 0.0, 255.0));
    }
}

#[inline(always)]
fn quantize_s8_body(x: &[f32], scale: f32, zp: f32, out: &mut [i8]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = low_byte(quantize_value(v, scale, zp, -128.0, 127.0)) as i8;
    }
}

avx2_twin!(fn quantize_u8_into(x: &[f32], scale: f32, zp: f32, out: &mut [u8]) => quantize_u8_body);
avx2_twin!(fn quantize_s8_into(x: &[f32], scale: f32, zp: f32, out: &mut [i8]) => quantize_s8_body);

/// The problem shape of an integer node.
#[derive(Debug, Clone, Copy)]
pub(super) enum Geometry {
    /// `rows × K` times `K × N`.
    MatMul { rows: usize, k: usize },
    /// A 2-D convolution of `batch` images by patches + GEMM in `groups` groups: group `g`
    /// convolves input channels `g·C/groups ..` into its `N/groups` output channels. `conv` is
    /// one group's geometry (its channels are the group's input channels).
    Conv {
        batch: usize,
        conv: Conv2d,
        pixels: usize,
        groups: usize,
    },
}

/// Whether a convolution reads its patches in place from a padded HWC copy ([`gemm_hwc`]): when
/// its width dilation is 1, so that each kernel row of a patch is one contiguous run.
fn hwc(conv: &Conv2d) -> bool {
    conv.dilation[1] == 1
}

/// Writes image `x` (C×H×W) into `xp` as HWC with `pad` (the zero point) around it.
pub(super) fn pad_hwc<T: Copy>(g: &Conv2d, x: &[T], pad: T, xp: &mut [T]) {
    let [_, wp] = g.padded();
    let (c, h, w) = (g.channels, g.height, g.width);
    xp.fill(pad);
    for y in 0..h {
        for xx in 0..w {
            let at = ((y + g.pads[0]) * wp + xx + g.pads[1]) * c;
            for (ci, d) in xp[at..at + c].iter_mut().enumerate() {
                *d = x[(ci * h + y) * w + xx];
            }
        }
    }
}

/// Writes image `x`, already HWC, into `xp` with `pad` (the zero point) around it: one copy per
/// image row.
pub(super) fn pad_from_hwc<T: Copy>(g: &Conv2d, x: &[T], pad: T, xp: &mut [T]) {
    let [hp, wp] = g.padded();
    let c = g.channels;
    let run = g.width * c;
    let (top, left) = (g.pads[0], g.pads[1] * c);
    xp[..top * wp * c].fill(pad);
    xp[(top + g.height) * wp * c..hp * wp * c].fill(pad);
    for (y, src) in x.chunks_exact(run.max(1)).take(g.height).enumerate() {
        let row = &mut xp[(top + y) * wp * c..(top + y + 1) * wp * c];
        row[..left].fill(pad);
        row[left..left + run].copy_from_slice(src);
        row[left + run..].fill(pad);
    }
}

/// The per-image convolution geometry of a resolved Conv node, as the INT8 kernels take it.
pub(super) fn conv2d(p: &ConvParams) -> Conv2d {
    let win = &p.window;
    Conv2d {
        channels: p.cin,
        height: win.input[0],
        width: win.input[1],
        kernel: win.kernel,
        stride: win.strides,
        dilation: win.dilations,
        pads: win.pads,
    }
}

impl Geometry {
    /// The convolution `p` (any group count; [`ConvParams::resolve`] checked that the groups
    /// divide both channel counts) as a Geometry.
    pub(super) fn of_conv(p: &ConvParams) -> Geometry {
        let groups = p.group.max(1);
        Geometry::Conv {
            batch: p.batch,
            conv: Conv2d {
                channels: p.cin / groups,
                ..conv2d(p)
            },
            pixels: p.window.output[0] * p.window.output[1],
            groups,
        }
    }

    /// A MatMul of A shape `a` by a 2-D constant of shape `w`; returns it and N.
    pub(super) fn matmul(
        node: &Node,
        a: &[usize],
        w: &[usize],
    ) -> Result<(Geometry, usize), GraphError> {
        if w.len() != 2 {
            return Err(node.error(format!(
                "the integer weight must be 2-D [K, N], found {w:?}"
            )));
        }
        let s = matmul_shapes(node, a, w)?;
        let rows = s.batch.iter().product::<usize>() * s.m;
        Ok((Geometry::MatMul { rows, k: s.k }, s.n))
    }

    /// K of the GEMM (of one group's GEMM for a grouped Conv).
    pub(super) fn k(&self) -> usize {
        match *self {
            Geometry::MatMul { k, .. } => k,
            Geometry::Conv { conv, .. } => conv.patch_len(),
        }
    }

    /// Rows of one GEMM call.
    pub(super) fn rows(&self) -> usize {
        match *self {
            Geometry::MatMul { rows, .. } => rows,
            Geometry::Conv { pixels, .. } => pixels,
        }
    }

    /// Bytes of the buffer [`Geometry::conv_gemm`] needs: the padded HWC copy, or the im2col
    /// matrix, of one group (0 for a MatMul).
    pub(super) fn cols_len(&self) -> usize {
        match *self {
            Geometry::MatMul { .. } => 0,
            Geometry::Conv { conv, pixels, .. } => {
                if hwc(&conv) {
                    let [hp, wp] = conv.padded();
                    hp * wp * conv.channels
                } else {
                    pixels * conv.patch_len()
                }
            }
        }
    }

    /// Conv weights `[OC][C/groups][kh][kw]` in the order of this geometry's patches (kernel
    /// row, kernel column, channel when they come from an HWC copy). A MatMul's stay as they are.
    pub(super) fn order_weights<T: Copy + Default>(&self, w: Vec<T>) -> Vec<T> {
        let Geometry::Conv { conv, .. } = *self else {
            return w;
        };
        if !hwc(&conv) {
            return w;
        }
        let (c, kh, kw) = (conv.channels, conv.kernel[0], conv.kernel[1]);
        let k = c * kh * kw;
        let mut out = vec![T::default(); w.len()];
        for (o, dst) in out.chunks_exact_mut(k.max(1)).enumerate() {
            for ci in 0..c {
                for ky in 0..kh {
                    for kx in 0..kw {
                        dst[(ky * kw + kx) * c + ci] = w[o * k + (ci * kh + ky) * kw + kx];
                    }
                }
            }
        }
        out
    }

    /// Packs `n` output channels of Conv weights `[n][C/groups][kh][kw]` (s8, with zero points
    /// `zp`) for [`Geometry::conv_gemm`]: in the patches' order, one GEMM operand per group.
    pub(super) fn pack_conv(
        &self,
        n: usize,
        w: Vec<i8>,
        zp: WeightZeroPoint<'_>,
    ) -> Result<Vec<PackedI8>, I8Error> {
        let Geometry::Conv { conv, groups, .. } = *self else {
            return Err(I8Error::Geometry {
                what: "a MatMul has no convolution weights",
            });
        };
        if !n.is_multiple_of(groups) {
            return Err(I8Error::Geometry {
                what: "the output channels do not divide into the groups",
            });
        }
        let (k, ng) = (conv.patch_len(), n / groups);
        if w.len() != n * k {
            return Err(I8Error::Length {
                what: "convolution weights",
                expected: n * k,
                got: w.len(),
            });
        }
        let w = self.order_weights(w);
        (0..groups)
            .map(|g| {
                let wg = &w[g * ng * k..(g + 1) * ng * k];
                PackedI8::from_n_by_k(ng, k, wg, zp.columns(g * ng, ng)?)
            })
            .collect()
    }

    /// The convolution GEMM of one image `x` (C×H×W, or H×W×C when `nhwc`, which needs the
    /// HWC path of a group-1 Conv: unit width dilation, see [`Geometry::reads_nhwc`]) times the
    /// weights `b` of [`Geometry::pack_conv`] into `out` (pixel major, row stride `ldc`). Each
    /// group's input channels are convolved on their own into the group's output columns. With
    /// unit width dilation the group's image is copied into `buf` as padded HWC and the GEMM
    /// reads its patches in place ([`gemm_hwc`]); otherwise im2col writes the patches into
    /// `buf` for [`gemm`]. The bytes are of type `ty` with zero point `zero`. `buf` holds at
    /// least [`Geometry::cols_len`] bytes.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn conv_gemm(
        &self,
        x: &[u8],
        nhwc: bool,
        ty: (QType, i32),
        buf: &mut [u8],
        b: &[PackedI8],
        mut out: Output<'_>,
        ldc: usize,
    ) -> Result<(), I8Error> {
        let Geometry::Conv { conv, groups, .. } = *self else {
            return Err(I8Error::Geometry {
                what: "a MatMul has no convolution patches",
            });
        };
        if b.len() != groups {
            return Err(I8Error::Length {
                what: "weight groups",
                expected: groups,
                got: b.len(),
            });
        }
        if groups == 1 {
            return self.group_gemm(x, nhwc, ty, buf, &b[0], out, ldc);
        }
        if nhwc {
            return Err(I8Error::Geometry {
                what: "patches of a grouped convolution come from a C×H×W image",
            });
        }
        let len = conv.channels * conv.height * conv.width;
        if x.len() < groups * len {
            return Err(I8Error::Length {
                what: "image",
                expected: groups * len,
                got: x.len(),
            });
        }
        let mut j0 = 0;
        for (xg, bg) in x.chunks_exact(len.max(1)).zip(b) {
            let o = out.columns(j0, bg.n())?;
            self.group_gemm(xg, false, ty, buf, bg, o, ldc)?;
            j0 += bg.n();
        }
        Ok(())
    }

    /// [`Geometry::conv_gemm`] of one group: its image `x` times its weights `b`.
    #[allow(clippy::too_many_arguments)]
    fn group_gemm(
        &self,
        x: &[u8],
        nhwc: bool,
        (ty, zero): (QType, i32),
        buf: &mut [u8],
        b: &PackedI8,
        out: Output<'_>,
        ldc: usize,
    ) -> Result<(), I8Error> {
        let Geometry::Conv { conv, pixels, .. } = *self else {
            return Err(I8Error::Geometry {
                what: "a MatMul has no convolution patches",
            });
        };
        let buf = &mut buf[..self.cols_len()];
        let pad = ty.put(zero);
        let act = |b| activations(ty, zero, b);
        if hwc(&conv) {
            if nhwc {
                pad_from_hwc(&conv, x, pad, buf);
            } else {
                pad_hwc(&conv, x, pad, buf);
            }
            gemm_hwc(&conv, act(buf), b, out, ldc)
        } else if nhwc {
            Err(I8Error::Geometry {
                what: "patches from an HWC image need unit width dilation",
            })
        } else {
            im2col(&conv, x, pad, buf)?;
            gemm(pixels, act(buf), conv.patch_len(), b, out, ldc)
        }
    }

    /// Whether the patches can come from an H×W×C image ([`Geometry::conv_gemm`]).
    pub(super) fn reads_nhwc(&self) -> bool {
        matches!(self, Geometry::Conv { conv, groups: 1, .. } if hwc(conv))
    }

    /// The kernel name for records.
    pub(super) fn kernel_name(&self, prefix: &str) -> String {
        let name = if self.rows() == 1 {
            crate::kernels::i8::gemv_kernel_name()
        } else {
            crate::kernels::i8::gemm_kernel_name()
        };
        match self.patch_source() {
            None => format!("{prefix}-{name}"),
            Some(source) => format!("{prefix}-{name} ({source})"),
        }
    }

    /// How a convolution's patches reach the GEMM, for kernel names: read in place from the
    /// padded HWC copy, or written out by im2col, and in how many groups when more than one;
    /// `None` for a MatMul.
    pub(super) fn patch_source(&self) -> Option<String> {
        let Geometry::Conv { conv, groups, .. } = self else {
            return None;
        };
        let source = if hwc(conv) { "hwc patches" } else { "im2col" };
        Some(match groups {
            1 => source.to_string(),
            g => format!("{source}, {g} groups"),
        })
    }
}

/// A dynamic INT8 MatMul or Conv: quantizes its f32 input per tensor at run time, multiplies on
/// the INT8 kernels and dequantizes into f32 (see the module docs for the exact arithmetic).
#[derive(Debug, Clone)]
pub struct DynamicQuant {
    body: Body,
    /// Weight scale: one, or one per output channel.
    w_scale: Vec<f32>,
    bias: Option<Vec<f32>>,
    relu: bool,
    n: usize,
}

/// How a [`DynamicQuant`] multiplies.
#[derive(Debug, Clone)]
enum Body {
    /// A MatMul (one packed weight), or a Conv through patches (one per group), on the GEMM.
    Gemm(Geometry, Vec<PackedI8>),
    /// A depthwise Conv of `batch` images on the direct depthwise kernel.
    Depthwise {
        batch: usize,
        conv: Conv2d,
        w: PackedDepthwise,
    },
}

/// The s8 values and zero points of an integer weight: u8 weights are shifted by 128 (values
/// and zero points alike, so every `w - zw` is unchanged).
pub struct IntWeight {
    /// Values as s8.
    pub values: Vec<i8>,
    /// Zero points as s8: empty (symmetric), one, or one per output channel.
    pub zero_points: Vec<i8>,
}

impl IntWeight {
    /// Reads weight `w` (s8 or u8) and its optional zero point (same type, scalar or `n`
    /// values) of `node`.
    pub fn new(
        node: &Node,
        w: &Tensor,
        zp: Option<&Tensor>,
        n: usize,
    ) -> Result<IntWeight, GraphError> {
        let shift = |v: &[u8]| v.iter().map(|&x| (x ^ 0x80) as i8).collect::<Vec<i8>>();
        let (values, unsigned) = match w.data() {
            TensorData::I8(v) => (v.clone(), false),
            TensorData::U8(v) => (shift(v), true),
            other => {
                return Err(node.error(format!(
                    "the integer weight must be int8 or uint8, found {}",
                    other.dtype()
                )))
            }
        };
        let zero_points = match zp.map(Tensor::data) {
            None => Vec::new(),
            Some(TensorData::I8(z)) if !unsigned => z.clone(),
            Some(TensorData::U8(z)) if unsigned => shift(z),
            Some(other) => {
                return Err(node.error(format!(
                    "the weight zero point is {} but the weight is {}",
                    other.dtype(),
                    w.dtype()
                )))
            }
        };
        if zero_points.len() > 1 && zero_points.len() != n {
            return Err(node.error(format!(
                "the weight zero point holds {} values; expected 1 or {n} (one per output channel)",
                zero_points.len()
            )));
        }
        Ok(IntWeight {
            values,
            zero_points,
        })
    }

    /// The zero point in the kernels' terms.
    pub fn zero_point(&self) -> WeightZeroPoint<'_> {
        match self.zero_points.as_slice() {
            [] => WeightZeroPoint::None,
            [z] => WeightZeroPoint::PerTensor(*z),
            z => WeightZeroPoint::PerChannel(z),
        }
    }
}

/// Checks that `scale` holds 1 or `n` finite positive values; names `what` otherwise.
pub fn check_scales(node: &Node, what: &str, scale: &[f32], n: usize) -> Result<(), GraphError> {
    if scale.len() != 1 && scale.len() != n {
        return Err(node.error(format!(
            "{what} holds {} values; expected 1 or {n}",
            scale.len()
        )));
    }
    if let Some(bad) = scale.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return Err(node.error(format!("{what} {bad} is not a finite positive number")));
    }
    Ok(())
}

/// Input `i` of `node` as a constant tensor: `None` when the optional input is absent, an error
/// naming `what` when it is present but not a constant.
pub(super) fn constant<'a>(
    node: &Node,
    consts: &[Option<&'a Tensor>],
    i: usize,
    what: &str,
) -> Result<Option<&'a Tensor>, GraphError> {
    match node.input(i) {
        None => Ok(None),
        Some(_) => consts
            .get(i)
            .copied()
            .flatten()
            .map(Some)
            .ok_or_else(|| node.error(format!("{what} must be a constant"))),
    }
}

pub(super) fn f32_values<'a>(
    node: &Node,
    t: &'a Tensor,
    what: &str,
) -> Result<&'a [f32], GraphError> {
    t.as_f32().map_err(|e| node.error(format!("{what}: {e}")))
}

impl DynamicQuant {
    /// Compiles a [`DYNAMIC_MATMUL`] or [`DYNAMIC_CONV`] node for input type `x`.
    pub fn compile(
        node: &Node,
        x: &ValueType,
        consts: &[Option<&Tensor>],
    ) -> Result<DynamicQuant, GraphError> {
        let w = constant(node, consts, 1, "the weight")?
            .ok_or_else(|| node.error("the weight is missing"))?;
        let conv = node.op_type == DYNAMIC_CONV;
        let zp = constant(node, consts, 2, "the weight zero point")?;
        let depthwise = match conv {
            true => Some(ConvParams::resolve(node, &x.shape, w.shape())?)
                .filter(|p| p.group > 1 && p.group == p.cin && p.cout == p.cin),
            false => None,
        };
        let (body, n) = match depthwise {
            Some(p) => {
                let iw = IntWeight::new(node, w, zp, p.cout)?;
                let packed =
                    PackedDepthwise::new(p.cin, p.window.kernel, &iw.values, iw.zero_point())
                        .map_err(|e| node.error(e.to_string()))?;
                let body = Body::Depthwise {
                    batch: p.batch,
                    conv: conv2d(&p),
                    w: packed,
                };
                (body, p.cout)
            }
            None => {
                let (geometry, n) = if conv {
                    let p = ConvParams::resolve(node, &x.shape, w.shape())?;
                    (Geometry::of_conv(&p), p.cout)
                } else {
                    Geometry::matmul(node, &x.shape, w.shape())?
                };
                let mut iw = IntWeight::new(node, w, zp, n)?;
                let values = std::mem::take(&mut iw.values);
                let packed = if conv {
                    geometry.pack_conv(n, values, iw.zero_point())
                } else {
                    PackedI8::from_k_by_n(geometry.k(), n, &values, iw.zero_point())
                        .map(|b| vec![b])
                }
                .map_err(|e| node.error(e.to_string()))?;
                (Body::Gemm(geometry, packed), n)
            }
        };
        let ws = constant(node, consts, 3, "the weight scale")?
            .ok_or_else(|| node.error("the weight scale is missing"))?;
        let w_scale = f32_values(node, ws, "the weight scale")?.to_vec();
        check_scales(node, "the weight scale", &w_scale, n)?;
        let bias = match constant(node, consts, 4, "the bias")? {
            Some(b) => {
                let b = f32_values(node, b, "the bias")?;
                if b.len() != n {
                    return Err(
                        node.error(format!("the bias holds {} values; expected {n}", b.len()))
                    );
                }
                Some(b.to_vec())
            }
            None => None,
        };
        Ok(DynamicQuant {
            body,
            w_scale,
            bias,
            relu: node.attr_int("relu", 0)? != 0,
            n,
        })
    }

    /// f32 scratch: per-channel scales, plus the pixel-major output of one image for a Conv.
    pub fn scratch_len(&self) -> usize {
        let scales = if self.w_scale.len() > 1 { self.n } else { 0 };
        match self.body {
            Body::Gemm(Geometry::Conv { pixels, .. }, _) => scales + pixels * self.n,
            Body::Gemm(Geometry::MatMul { .. }, _) | Body::Depthwise { .. } => scales,
        }
    }

    /// Bytes of the packed weights.
    pub fn packed_bytes(&self) -> usize {
        let w = match &self.body {
            Body::Gemm(g, _) => g.k() * self.n,
            Body::Depthwise { w, .. } => w.size_bytes(),
        };
        w + 4 * (self.w_scale.len() + self.bias.as_ref().map_or(0, Vec::len))
    }

    /// Name of the kernel, for records.
    pub fn kernel_name(&self) -> String {
        match &self.body {
            Body::Gemm(g, _) => g.kernel_name("dynamic"),
            Body::Depthwise { .. } => format!("dynamic-{}", depthwise_kernel_name()),
        }
    }

    /// Runs on `x`, writing `out`; `scratch` holds at least [`DynamicQuant::scratch_len`].
    pub fn run(&self, x: &[f32], out: &mut [f32], scratch: &mut [f32]) {
        let (s_x, zp) = dynamic_qparams(x);
        let (scales, rest) = scratch.split_at_mut(if self.w_scale.len() > 1 { self.n } else { 0 });
        let scale = match self.w_scale.as_slice() {
            [w] => Scale::PerTensor(s_x * w),
            ws => {
                for (s, w) in scales.iter_mut().zip(ws) {
                    *s = s_x * w;
                }
                Scale::PerChannel(scales)
            }
        };
        let deq = Dequantize {
            scale,
            bias: self.bias.as_deref(),
            relu: self.relu,
        };
        let result = BYTES.with_borrow_mut(|bytes| {
            let cols_len = match &self.body {
                Body::Gemm(g, _) => g.cols_len(),
                Body::Depthwise { .. } => 0,
            };
            if bytes.len() < x.len() + cols_len {
                bytes.resize(x.len() + cols_len, 0);
            }
            let (q, cols) = bytes.split_at_mut(x.len());
            quantize_u8(x, s_x, zp, q);
            match &self.body {
                Body::Gemm(Geometry::MatMul { rows, k }, packed) => {
                    let a = Activations::U8 {
                        data: q,
                        zero_point: zp,
                    };
                    let [packed] = packed.as_slice() else {
                        return Err(I8Error::Geometry {
                            what: "a MatMul has one packed weight",
                        });
                    };
                    gemm(*rows, a, *k, packed, Output::F32(out, deq), self.n)
                }
                Body::Gemm(g @ Geometry::Conv { batch, pixels, .. }, packed) => {
                    let (batch, pixels) = (*batch, *pixels);
                    let tmp = &mut rest[..pixels * self.n];
                    let image = q.len() / batch.max(1);
                    for b in 0..batch {
                        let x = &q[b * image..(b + 1) * image];
                        let (o, ty) = (Output::F32(tmp, deq), (QType::U8, i32::from(zp)));
                        g.conv_gemm(x, false, ty, cols, packed, o, self.n)?;
                        let o = &mut out[b * pixels * self.n..(b + 1) * pixels * self.n];
                        transpose2d(tmp, pixels, self.n, o);
                    }
                    Ok(())
                }
                Body::Depthwise { batch, conv, w } => {
                    let image = q.len() / (*batch).max(1);
                    let [oh, ow] = conv.output_size()?;
                    let out_len = self.n * oh * ow;
                    for b in 0..*batch {
                        let a = Activations::U8 {
                            data: &q[b * image..(b + 1) * image],
                            zero_point: zp,
                        };
                        let o = &mut out[b * out_len..(b + 1) * out_len];
                        depthwise(conv, a, w, Output::F32(o, deq))?;
                    }
                    Ok(())
                }
            }
        });
        if let Err(e) = result {
            // Shapes and parameters were checked when the node was compiled.
            debug_assert!(false, "dynamic INT8 kernel refused a checked shape: {e}");
            out.fill(f32::NAN);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The convolution GEMM on patches read from a padded HWC copy (of a C×H×W or an H×W×C
    /// image) with reordered weights gives the sums of im2col + GEMM with the weights as ONNX
    /// stores them.
    #[test]
    fn hwc_patches_with_reordered_weights_match_im2col() {
        let cases = [
            (1, 5, 7, [3, 3], [1, 1], [1, 1, 1, 1]),
            (3, 6, 5, [2, 3], [2, 1], [0, 1, 2, 0]),
            (4, 4, 4, [1, 1], [1, 1], [0, 0, 0, 0]),
            (2, 7, 6, [3, 2], [1, 2], [2, 0, 1, 1]),
            (32, 6, 6, [3, 3], [1, 1], [1, 1, 1, 1]),
        ];
        for (c, h, w, kernel, stride, pads) in cases {
            let g = Conv2d {
                channels: c,
                height: h,
                width: w,
                kernel,
                stride,
                dilation: [2, 1],
                pads,
            };
            let x: Vec<u8> = (0..c * h * w).map(|i| (i * 37 % 251) as u8).collect();
            let [oh, ow] = g.output_size().unwrap();
            let (k, n) = (g.patch_len(), 3);
            let mut cols = vec![0u8; oh * ow * k];
            im2col(&g, &x, 9, &mut cols).unwrap();
            let wt: Vec<i8> = (0..n * k).map(|i| (i as i8).wrapping_mul(29)).collect();
            let b = PackedI8::from_n_by_k(n, k, &wt, WeightZeroPoint::PerTensor(-3)).unwrap();
            let a = Activations::U8 {
                data: &cols,
                zero_point: 9,
            };
            let mut want = vec![0i32; oh * ow * n];
            gemm(oh * ow, a, k, &b, Output::I32(&mut want), n).unwrap();
            let geo = Geometry::Conv {
                batch: 1,
                conv: g,
                pixels: oh * ow,
                groups: 1,
            };
            let br = geo
                .pack_conv(n, wt.clone(), WeightZeroPoint::PerTensor(-3))
                .unwrap();
            let mut x_hwc = vec![0u8; x.len()];
            for (i, &v) in x.iter().enumerate() {
                let (ci, p) = (i / (h * w), i % (h * w));
                x_hwc[p * c + ci] = v;
            }
            for (image, nhwc) in [(&x, false), (&x_hwc, true)] {
                let mut buf = vec![7u8; geo.cols_len()];
                let mut got = vec![0i32; oh * ow * n];
                let out = Output::I32(&mut got);
                geo.conv_gemm(image, nhwc, (QType::U8, 9), &mut buf, &br, out, n)
                    .unwrap();
                assert_eq!(got, want, "{g:?} nhwc {nhwc}");
            }
        }
    }

    /// The quantize loops (AVX2 form where the CPU has it, scalar twin otherwise) round half to
    /// even, saturate ±inf and out-of-range values, and give 0 for NaN, on odd lengths.
    #[test]
    fn quantize_rounds_saturates_and_zeroes_nan() {
        let x = [
            0.5,
            1.5,
            2.5,
            -0.5,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1e9,
            -1e9,
        ];
        let x: Vec<f32> = x.iter().cycle().take(9 * 3 + 2).copied().collect();
        let mut u = vec![0u8; x.len()];
        quantize_u8(&x, 1.0, 3, &mut u);
        let mut s = vec![0i8; x.len()];
        quantize_s8(&x, 1.0, -3, &mut s);
        let (wu, ws) = (
            [3, 5, 5, 3, 0, 255, 0, 255, 0],
            [-3, -1, -1, -3, 0, 127, -128, 127, -128],
        );
        for i in 0..x.len() {
            assert_eq!((u[i], s[i]), (wu[i % 9], ws[i % 9]), "x = {}", x[i]);
        }
    }
}
