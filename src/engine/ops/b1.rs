//! Binary layers on the XNOR-popcount kernels ([`crate::kernels::b1`]).
//!
//! # Binary weights × binary activations ([`XnorLayer`])
//! With `--binary-acts binary` quench exports `Sign(x)` feeding a Conv/Gemm/MatMul whose weights
//! are `DequantizeLinear(±1 int8, α per channel)`; constant folding makes them f32 `±α`, and
//! [`crate::engine::fuse_b1`] folds the `Sign` into the layer, which then runs on
//! [`b1::gemm_binary`] with ternary activations (ONNX `Sign(0) = 0`: a sign plane and a nonzero
//! plane, `dot = nz − 2·popcount(nz AND (a XOR w))`), times α, plus the bias. A convolution packs
//! its input's signs once into a padded H×W×C bit image and copies each patch row from it as
//! bit runs; padded positions are 0 in the nonzero plane, as they are 0 in the f32 model.
//! Measured on mnist-cnn (batch 1, one thread, this project's AVX-512 VPOPCNTDQ machine under
//! load from other builds, `QUENCH_BENCH_CLOCK=cpu cargo run --release --example engine_vs_ort
//! 40 mnist-cnn mnist-cnn:/tmp/cnn-binbin.onnx`): 149 µs native against ORT's 205 µs on the same
//! file (0.73×) but 1.27× native FP32: the per-value f32 epilogue of the wide kernel (35% of the
//! profile), the bit patches (12%) and the image packing (6%) cost more than the popcounts.
//!
//! # Binary weights × INT8 activations ([`B1Layer`])
//! Quench exports binary weights `sign(W)·α` as int8 ±1 behind a per-channel
//! `DequantizeLinear` of scale α ("binary-as-int8", so ONNX Runtime runs them), and
//! [`crate::graph::qdq::fuse_qdq`] folds such a layer with INT8 activations into a fused
//! [`qdq::QCONV`]/[`qdq::QGEMM`] node like any INT8 layer. When that node's weights are all ±1
//! with zero weight zero points, the plan can pack their signs 64 to a word and run the layer on
//! [`b1::gemm_i8`] / [`b1::gemm_i8_hwc`] (binary weights × u8/i8 activations) instead of the int8
//! GEMM. Its exact i32 dot products `Σ sign(w)·(a − za)` are the int8 GEMM's for the same
//! weights, and they go through the same epilogue ([`crate::kernels::i8::Output::store_with`]),
//! so the outputs are bit-equal to the int8 path. Convolutions read their patches in place from
//! a padded HWC copy like the int8 path (im2col only for non-unit width dilation), and honour
//! the NHWC layout the plan chooses ([`crate::engine::nhwc`]). Depthwise and grouped
//! convolutions stay on the int8 kernels.
//!
//! The b1 path is opt-in ([`chosen`]): it was measured slower than the int8 kernels on every
//! binary layer of mnist-cnn, the GEMV included (`QUENCH_PROFILE_OPS=1 quench eval
//! /tmp/cnn-bin.onnx --manifest assets/models/mnist-cnn.toml --limit 200 --runtime native`, with
//! and without `QUENCH_BINARY_KERNEL=b1`, batch-1 plan, loaded machine): with AVX-512 VNNI conv1
//! 237 µs against 48, conv2 192 against 48, fc1 28 against 9; forcing AVX2
//! (`QUENCH_KERNELS=avx2`) conv1 233 against 62, conv2 206 against 115, fc1 19.1 against 18.4.
//! The bit-mask expansion does about 4 vector instructions per 32 products per column where
//! `vpdpbusd` does 64, and fc1's 401 KB of int8 weights stay in L2 here, so reading 1/8 of the
//! bytes does not pay.

use bytemuck::cast_slice_mut;

use super::integer::{pad_from_hwc, pad_hwc, Geometry};
use super::quantized::QType;
use super::quantized::{activations, bytes, bytes_mut, GemmDims, Layer};
use crate::engine::nhwc;
use crate::graph::qdq::{self, QInputs};
use crate::graph::shape::{ConvParams, GemmParams, ValueType};
use crate::graph::{GraphError, Node};
use crate::kernels::b1::{self, BinaryActivations, PackedBinary, TernaryImage};
use crate::kernels::f32::Activation;
use crate::kernels::i8::{self as k8, Conv2d};
use crate::tensor::{Tensor, TensorData};

/// Whether binary-weight layers with INT8 activations run on the b1 kernels: only with
/// `QUENCH_BINARY_KERNEL=b1` in the environment (read once), so a user can compare them with the
/// int8 default, measured faster (see the module docs). Binary activations always run on b1.
pub fn chosen() -> bool {
    static CHOSEN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CHOSEN.get_or_init(|| std::env::var("QUENCH_BINARY_KERNEL").is_ok_and(|v| v == "b1"))
}

/// A fused binary-weight layer with INT8 activations, weights packed for the b1 kernels.
#[derive(Debug, Clone)]
pub struct B1Layer {
    layer: Layer,
    w: PackedBinary,
    shape: Shape,
}

#[derive(Debug, Clone)]
enum Shape {
    /// `[m × K]` times the weights.
    Gemm { m: usize },
    /// A group-1 2-D convolution, per image: patches read in place from a padded HWC copy
    /// (unit width dilation, see [`Geometry::conv_gemm`]) or written by im2col.
    Conv {
        batch: usize,
        geo: Geometry,
        pixels: usize,
        /// Input elements per image.
        in_len: usize,
        /// The input is stored NHWC ([`nhwc::NHWC_IN`]).
        nhwc_in: bool,
        /// The output is stored NHWC ([`nhwc::NHWC_OUT`]): the pixel-major result as it is.
        nhwc_out: bool,
    },
}

impl B1Layer {
    /// The b1 form of a fused [`qdq::DOMAIN`] Conv/Gemm node whose i8 weights are all ±1 with
    /// zero weight zero points; `None` for any other node (it runs on the int8 kernels).
    pub fn compile(
        node: &Node,
        types: &[Option<&ValueType>],
        consts: &[Option<&Tensor>],
    ) -> Result<Option<B1Layer>, GraphError> {
        if node.domain != qdq::DOMAIN || !matches!(node.op_type.as_str(), qdq::QCONV | qdq::QGEMM) {
            return Ok(None);
        }
        let q = QInputs::LAYOUT;
        let (Some(x), Some(w)) = (
            types.first().copied().flatten(),
            consts.get(q.w).copied().flatten(),
        ) else {
            return Ok(None);
        };
        match w.data() {
            TensorData::I8(v) if !v.is_empty() && v.iter().all(|&b| b == 1 || b == -1) => {}
            _ => return Ok(None),
        }
        let (n, k, shape, trans) = if node.op_type == qdq::QCONV {
            let p = ConvParams::resolve(node, &x.shape, w.shape())?;
            if p.group != 1 {
                return Ok(None);
            }
            let geo = Geometry::of_conv(&p);
            super::integer::conv2d(&p)
                .output_size()
                .map_err(|e| node.error(e.to_string()))?;
            let nhwc_in = node.attr_int(nhwc::NHWC_IN, 0)? != 0;
            let nhwc_out = node.attr_int(nhwc::NHWC_OUT, 0)? != 0;
            if nhwc_in && !geo.reads_nhwc() {
                return Err(node.error("an NHWC integer convolution needs unit width dilation"));
            }
            let shape = Shape::Conv {
                batch: p.batch,
                geo,
                pixels: geo.rows(),
                in_len: p.cin * p.window.input[0] * p.window.input[1],
                nhwc_in,
                nhwc_out,
            };
            (p.cout, geo.k(), shape, false)
        } else {
            let GemmDims { m, k, n, trans_b } = GemmDims::of(node, x, w)?;
            (n, k, Shape::Gemm { m }, !trans_b)
        };
        let (layer, mut wv, wz) = Layer::new(node, &q, consts, x.dtype, n)?;
        if wz.iter().any(|&z| z != 0) {
            return Ok(None);
        }
        match &shape {
            // In the patches' order (kernel row, kernel column, channel from an HWC copy).
            Shape::Conv { geo, .. } => wv = geo.order_weights(wv),
            // Input rows that are NHWC images take their weight rows in HWC order.
            Shape::Gemm { .. } => {
                if let Some(chw) = node.attr_ints(nhwc::HWC_GEMM)? {
                    wv = super::quantized::hwc_rows(node, chw, k, n, !trans, &wv)?;
                }
            }
        }
        // Row-major N×K signs; a MatMul/Gemm without transB holds K×N.
        let signs: Vec<f32> = (0..n * k)
            .map(|i| {
                let (j, kk) = (i / k, i % k);
                f32::from(if trans { wv[kk * n + j] } else { wv[i] })
            })
            .collect();
        // α stays 1: the scales are applied by the int8 epilogue the layer shares.
        let ones = vec![1.0; n];
        let w = PackedBinary::from_n_by_k(n, k, &signs, Some(&ones))
            .map_err(|e| node.error(e.to_string()))?;
        Ok(Some(B1Layer { layer, w, shape }))
    }

    /// Name of the compute kernel, for records.
    pub fn kernel_name(&self) -> String {
        match &self.shape {
            Shape::Gemm { .. } => b1::i8_kernel_name(),
            Shape::Conv { geo, .. } => format!(
                "{} ({})",
                b1::i8_kernel_name(),
                geo.patch_source().unwrap_or_default()
            ),
        }
    }

    /// Rows of one GEMM call.
    fn rows(&self) -> usize {
        match self.shape {
            Shape::Gemm { m } => m,
            Shape::Conv { pixels, .. } => pixels,
        }
    }

    /// f32 slots of scratch: the i32 dot products, then (convolution) the padded HWC copy or
    /// the im2col bytes.
    pub fn scratch_len(&self) -> usize {
        let dots = self.rows() * self.w.n();
        match &self.shape {
            Shape::Gemm { .. } => dots,
            Shape::Conv { geo, .. } => dots + geo.cols_len().div_ceil(4),
        }
    }

    /// Bytes of packed weights held.
    pub fn packed_bytes(&self) -> usize {
        self.w.size_bytes()
    }

    /// Runs on arena slices: u8/i8 input packed, output packed u8/i8 or f32 as the layer stores.
    pub fn run(&self, x: &[f32], out: &mut [f32], scratch: &mut [f32]) {
        let (k, n, rows) = (self.w.k(), self.w.n(), self.rows());
        let (dots, rest) = scratch.split_at_mut(rows * n);
        let dots: &mut [i32] = cast_slice_mut(dots);
        let l = &self.layer;
        match &self.shape {
            Shape::Gemm { m } => {
                let a = activations(l.x, l.x_zero, &bytes(x)[..m * k]);
                checked(b1::gemm_i8(
                    *m,
                    a,
                    k,
                    1.0,
                    &self.w,
                    b1::Output::Dots(dots),
                    n,
                ));
                let o = l.store.output(out, 0, m * n);
                checked(o.store_with(m * n, n, |i| (dots[i], i % n)));
            }
            Shape::Conv {
                batch,
                geo,
                pixels,
                in_len,
                nhwc_in,
                nhwc_out,
            } => {
                let out_len = n * pixels;
                let buf = &mut bytes_mut(rest)[..geo.cols_len()];
                for b in 0..*batch {
                    let xi = &bytes(x)[b * in_len..(b + 1) * in_len];
                    let ty = (l.x, l.x_zero);
                    checked(conv_dots(geo, xi, *nhwc_in, ty, buf, &self.w, dots));
                    let o = l.store.output(out, b * out_len, out_len);
                    if *nhwc_out {
                        // Pixel-major is the NHWC layout: stored as it is.
                        checked(o.store_with(out_len, n, |i| (dots[i], i % n)));
                    } else {
                        // The dot products are pixel-major; the output is channel-major (NCHW).
                        checked(o.store_with(out_len, n, |i| {
                            let (c, p) = (i / pixels, i % pixels);
                            (dots[p * n + c], c)
                        }));
                    }
                }
            }
        }
    }
}

/// The exact dot products of one image's convolution into `dots` (pixel-major): the image `x`
/// (C×H×W, or H×W×C when `nhwc`) copied into `buf` as padded HWC and its patches read in
/// place ([`b1::gemm_i8_hwc`]), or with non-unit width dilation written out by im2col.
fn conv_dots(
    geo: &Geometry,
    x: &[u8],
    nhwc: bool,
    (ty, zero): (QType, i32),
    buf: &mut [u8],
    w: &PackedBinary,
    dots: &mut [i32],
) -> Result<(), b1::B1Error> {
    let Geometry::Conv { conv, pixels, .. } = *geo else {
        return Err(b1::B1Error::Conv(k8::I8Error::Geometry {
            what: "a MatMul has no convolution patches",
        }));
    };
    let pad = ty.put(zero);
    let n = w.n();
    if geo.reads_nhwc() {
        if nhwc {
            pad_from_hwc(&conv, x, pad, buf);
        } else {
            pad_hwc(&conv, x, pad, buf);
        }
        b1::gemm_i8_hwc(
            &conv,
            activations(ty, zero, buf),
            1.0,
            w,
            b1::Output::Dots(dots),
            n,
        )
    } else {
        k8::im2col(&conv, x, pad, buf)?;
        let k = conv.patch_len();
        let a = activations(ty, zero, buf);
        b1::gemm_i8(pixels, a, k, 1.0, w, b1::Output::Dots(dots), n)
    }
}

/// Attribute the plan sets on a Conv/Gemm/MatMul whose input 0 was an ONNX `Sign` of the value
/// it now reads ([`crate::engine::fuse_b1`]): the layer binarizes its input itself.
pub const SIGN_INPUT: &str = "quench_sign_input";

/// The per-output-channel α of binary f32 weights: `n` channels of `k` values each (`at(j, kk)`
/// reads value kk of channel j), every value of a channel `±α` with the same finite α > 0.
/// `None` for any other weights.
pub fn binary_alphas(n: usize, k: usize, at: impl Fn(usize, usize) -> f32) -> Option<Vec<f32>> {
    if k == 0 {
        return None;
    }
    (0..n)
        .map(|j| {
            let a = at(j, 0).abs();
            let ok = a.is_finite() && a > 0.0 && (1..k).all(|kk| at(j, kk).abs() == a);
            ok.then_some(a)
        })
        .collect()
}

/// A binary layer with binary activations: `Sign(x)` times weights `±α` per output channel
/// (plus bias, optionally ReLU), on the XNOR-popcount kernel ([`b1::gemm_binary`]) with
/// ternary activations, since ONNX `Sign(0) = 0`: the exact integer dot product over the nonzero
/// inputs times α, then the bias. The f32 path computes the same sum of `±α` terms in f32, so
/// the two agree up to its rounding.
#[derive(Debug, Clone)]
pub struct XnorLayer {
    w: PackedBinary,
    bias: Option<Vec<f32>>,
    relu: bool,
    shape: XnorShape,
}

#[derive(Debug, Clone)]
enum XnorShape {
    /// `[m × K]` f32 rows times the weights.
    Gemm { m: usize },
    /// A group-1 2-D convolution of `batch` NCHW images, patches from a packed bit image.
    Conv {
        batch: usize,
        geo: Conv2d,
        pixels: usize,
    },
}

impl XnorLayer {
    /// Compiles a Conv (group 1, 2-D), Gemm (`transA = 0`, `alpha = beta = 1`, bias `[N]` or
    /// `[1, N]`) or MatMul (2-D B) whose constant f32 weights are binary ([`binary_alphas`]),
    /// reading `Sign` of input 0; `act` may be ReLU. Anything else is an error naming the node
    /// (the fusion pass only marks layers this accepts).
    pub fn compile(
        node: &Node,
        types: &[Option<&ValueType>],
        consts: &[Option<&Tensor>],
        act: Activation,
    ) -> Result<XnorLayer, GraphError> {
        let relu = match act {
            Activation::None => false,
            Activation::Relu => true,
            _ => return Err(node.error("a binary-activation layer fuses ReLU only")),
        };
        let x = types
            .first()
            .copied()
            .flatten()
            .ok_or_else(|| node.error("missing input 0"))?;
        let w = consts
            .get(1)
            .copied()
            .flatten()
            .ok_or_else(|| node.error("binary weights must be a constant"))?;
        let wv = w
            .as_f32()
            .map_err(|e| node.error(format!("weights: {e}")))?;
        let not_binary = || node.error("weights are not ±α per output channel");
        let bias_of = |i: usize, n: usize| -> Result<Option<Vec<f32>>, GraphError> {
            match node.input(i) {
                None => Ok(None),
                Some(_) => {
                    let b = consts
                        .get(i)
                        .copied()
                        .flatten()
                        .ok_or_else(|| node.error("the bias must be a constant"))?;
                    let ok_shape = matches!(b.shape(), [x] | [1, x] if *x == n);
                    match b.as_f32() {
                        Ok(v) if ok_shape => Ok(Some(v.to_vec())),
                        _ => Err(node.error(format!(
                            "the bias must be f32 [{n}] or [1, {n}], got {:?}",
                            b.shape()
                        ))),
                    }
                }
            }
        };
        let (w, bias, shape) = match node.op_type.as_str() {
            "Conv" => {
                let p = ConvParams::resolve(node, &x.shape, w.shape())?;
                let g = Geometry::of_conv(&p);
                if p.group != 1 || !g.reads_nhwc() {
                    return Err(node.error(
                        "a binary-activation Conv must be group 1 with unit width dilation",
                    ));
                }
                let geo = super::integer::conv2d(&p);
                geo.output_size().map_err(|e| node.error(e.to_string()))?;
                b1::padded_len(&geo).map_err(|e| node.error(e.to_string()))?;
                let k = geo.patch_len();
                let alpha =
                    binary_alphas(p.cout, k, |j, kk| wv[j * k + kk]).ok_or_else(not_binary)?;
                // Kernel row, kernel column, channel: the order of the bit patches.
                let ordered = g.order_weights(wv.to_vec());
                let w = PackedBinary::from_n_by_k(p.cout, k, &ordered, Some(&alpha))
                    .map_err(|e| node.error(e.to_string()))?;
                let shape = XnorShape::Conv {
                    batch: p.batch,
                    geo,
                    pixels: p.window.output[0] * p.window.output[1],
                };
                (w, bias_of(2, p.cout)?, shape)
            }
            "Gemm" | "MatMul" => {
                let (m, k, n, trans_b) = if node.op_type == "Gemm" {
                    let c = types.get(2).copied().flatten().map(|t| t.shape.as_slice());
                    let p = GemmParams::resolve(node, &x.shape, w.shape(), c)?;
                    if p.trans_a || p.alpha != 1.0 || (c.is_some() && p.beta != 1.0) {
                        return Err(node.error(
                            "a binary-activation Gemm needs transA = 0 and alpha = beta = 1",
                        ));
                    }
                    (p.m, p.k, p.n, p.trans_b)
                } else {
                    let [k, n] = w.shape() else {
                        return Err(node.error("a binary-activation MatMul needs 2-D weights"));
                    };
                    if x.shape.last() != Some(k) {
                        return Err(
                            node.error(format!("input {:?} does not end in K = {k}", x.shape))
                        );
                    }
                    let m = x.shape[..x.shape.len() - 1].iter().product();
                    (m, *k, *n, false)
                };
                // Row-major N×K whichever way B is stored.
                let at = |j: usize, kk: usize| {
                    if trans_b {
                        wv[j * k + kk]
                    } else {
                        wv[kk * n + j]
                    }
                };
                let alpha = binary_alphas(n, k, at).ok_or_else(not_binary)?;
                let nk: Vec<f32> = (0..n * k).map(|i| at(i / k, i % k)).collect();
                let w = PackedBinary::from_n_by_k(n, k, &nk, Some(&alpha))
                    .map_err(|e| node.error(e.to_string()))?;
                let bias = if node.op_type == "Gemm" {
                    bias_of(2, n)?
                } else {
                    None
                };
                (w, bias, XnorShape::Gemm { m })
            }
            other => return Err(node.error(format!("{other} does not take binary activations"))),
        };
        Ok(XnorLayer {
            w,
            bias,
            relu,
            shape,
        })
    }

    /// Name of the compute kernel, for records: the XNOR-popcount kernel with ternary inputs.
    pub fn kernel_name(&self) -> String {
        let name = b1::binary_kernel_name().replacen("b1-xnor-gemm", "b1-xnor-popcount", 1);
        match self.shape {
            XnorShape::Gemm { .. } => format!("{name} (sign inputs)"),
            XnorShape::Conv { .. } => format!("{name} (sign inputs, bit patches)"),
        }
    }

    /// f32 slots of scratch: the pixel-major result of a convolution image.
    pub fn scratch_len(&self) -> usize {
        match self.shape {
            XnorShape::Gemm { .. } => 0,
            XnorShape::Conv { pixels, .. } => pixels * self.w.n(),
        }
    }

    /// Bytes of packed weights held.
    pub fn packed_bytes(&self) -> usize {
        self.w.size_bytes() + self.bias.as_ref().map_or(0, |b| b.len() * 4)
    }

    /// The f32 epilogue: `dot · α + bias`, ReLU when fused.
    fn output<'a>(&'a self, out: &'a mut [f32]) -> b1::Output<'a> {
        b1::Output::F32 {
            out,
            bias: self.bias.as_deref(),
            relu: self.relu,
        }
    }

    /// Runs on f32 arena slices: `x` the layer's input before `Sign`, `out` its f32 output.
    pub fn run(&self, x: &[f32], out: &mut [f32], scratch: &mut [f32]) {
        let (k, n) = (self.w.k(), self.w.n());

        match &self.shape {
            XnorShape::Gemm { m } => {
                let a = BinaryActivations::pack_ternary(*m, k, x, k);
                checked(
                    a.and_then(|a| b1::gemm_binary(&a, &self.w, self.output(&mut out[..m * n]), n)),
                );
            }
            XnorShape::Conv { batch, geo, pixels } => {
                let in_len = geo.channels * geo.height * geo.width;
                let out_len = n * pixels;
                let res = &mut scratch[..out_len];
                let mut img = TernaryImage::new();
                for b in 0..*batch {
                    let xi = &x[b * in_len..(b + 1) * in_len];
                    let r = img
                        .pack_nchw(geo, xi)
                        .and_then(|()| BinaryActivations::conv_patches(geo, &img));
                    checked(r.and_then(|a| b1::gemm_binary(&a, &self.w, self.output(res), n)));
                    // Pixel-major result; the output is channel-major (NCHW).
                    super::conv::transpose2d(
                        res,
                        *pixels,
                        n,
                        &mut out[b * out_len..(b + 1) * out_len],
                    );
                }
            }
        }
    }
}

/// The run-time kernels cannot fail on the shapes the compile step checked; a failure would be
/// a bug in that check, reported in debug builds.
fn checked<E: std::fmt::Debug>(r: Result<(), E>) {
    debug_assert!(r.is_ok(), "binary kernel refused a planned shape: {r:?}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ops::quantized::{storage_len, QKernel};
    use crate::graph::Attr;
    use crate::tensor::DataType;

    fn t(shape: &[usize], data: TensorData) -> Tensor {
        Tensor::new(shape.to_vec(), data).unwrap()
    }

    /// A fused node of `op` on an u8 input with ±1 weights `w_shape` (per-channel
    /// α), and its constants in [`QInputs::LAYOUT`] order; `requant` adds an u8 output grid.
    fn layer(op: &str, w_shape: &[usize], n: usize, requant: bool) -> (Node, Vec<Option<Tensor>>) {
        let wn: usize = w_shape.iter().product();
        let w: Vec<i8> = (0..wn)
            .map(|i| if (i * 7919) % 13 < 6 { -1 } else { 1 })
            .collect();
        let names = ["x", "sx", "zx", "w", "sw", "", "b", "sy", "zy"];
        let mut consts = vec![
            None,
            Some(t(&[], TensorData::F32(vec![0.02]))),
            Some(t(&[], TensorData::U8(vec![7]))),
            Some(t(w_shape, TensorData::I8(w))),
            Some(t(
                &[n],
                TensorData::F32((0..n).map(|j| 0.1 + 0.03 * j as f32).collect()),
            )),
            None,
            Some(t(
                &[n],
                TensorData::F32((0..n).map(|j| j as f32 * 0.25 - 1.0).collect()),
            )),
            None,
            None,
        ];
        let mut inputs: Vec<String> = names[..7].iter().map(|s| s.to_string()).collect();
        if requant {
            consts[7] = Some(t(&[], TensorData::F32(vec![0.5])));
            consts[8] = Some(t(&[], TensorData::U8(vec![3])));
            inputs.extend(["sy".to_string(), "zy".to_string()]);
        }
        let mut attrs = std::collections::BTreeMap::new();
        attrs.insert("relu".to_string(), Attr::Int(1));
        if op == qdq::QCONV {
            attrs.insert("pads".to_string(), Attr::Ints(vec![1, 0, 1, 2]));
            attrs.insert("strides".to_string(), Attr::Ints(vec![1, 2]));
        } else {
            attrs.insert("transB".to_string(), Attr::Int(i64::from(w_shape[0] == n)));
        }
        let node = Node {
            name: "layer".into(),
            op_type: op.into(),
            domain: qdq::DOMAIN.into(),
            inputs,
            outputs: vec!["y".into()],
            attrs,
        };
        (node, consts)
    }

    /// The b1 kernels give the int8 kernels' bits on the same fused layer: Gemm (both weight
    /// layouts) and Conv, f32 and requantized u8 outputs, with a K that is not a whole word.
    #[test]
    fn b1_layers_match_the_int8_path_bit_for_bit() {
        type Case = (&'static str, Vec<usize>, Vec<usize>, usize, Vec<usize>);
        let cases: [Case; 3] = [
            (qdq::QGEMM, vec![3, 70], vec![9, 70], 9, vec![3, 9]),
            (qdq::QGEMM, vec![5, 67], vec![67, 6], 6, vec![5, 6]),
            (
                qdq::QCONV,
                vec![2, 3, 6, 7],
                vec![5, 3, 3, 2],
                5,
                vec![2, 5, 6, 4],
            ),
        ];
        for (op, xs, ws, n, ys) in cases {
            for (requant, layout) in [(false, false), (true, false), (true, true), (false, true)] {
                let (mut node, consts) = layer(op, &ws, n, requant);
                // The NHWC layouts the plan picks (input and output NHWC for a Conv, HWC weight
                // rows for a Gemm reading NHWC images): both paths must read them alike.
                if layout && op == qdq::QCONV {
                    node.attrs.insert(nhwc::NHWC_IN.into(), Attr::Int(1));
                    node.attrs.insert(nhwc::NHWC_OUT.into(), Attr::Int(1));
                }
                if layout && op == qdq::QGEMM {
                    let chw = if xs[1] == 70 {
                        vec![7, 2, 5]
                    } else {
                        vec![67, 1, 1]
                    };
                    node.attrs.insert(nhwc::HWC_GEMM.into(), Attr::Ints(chw));
                }
                let x_type = ValueType {
                    dtype: DataType::U8,
                    shape: xs.clone(),
                };
                let types: Vec<Option<&ValueType>> = std::iter::once(Some(&x_type))
                    .chain(std::iter::repeat_n(None, 8))
                    .collect();
                let cref: Vec<Option<&Tensor>> = consts.iter().map(Option::as_ref).collect();
                let b = B1Layer::compile(&node, &types, &cref).unwrap().unwrap();
                let q = QKernel::compile(&node, &types, &cref).unwrap().unwrap();
                assert!(
                    b.kernel_name().starts_with("b1-i8-gemm"),
                    "{}",
                    b.kernel_name()
                );
                let xn: usize = xs.iter().product();
                let xb: Vec<u8> = (0..xn).map(|i| (i * 37 % 256) as u8).collect();
                let mut x = vec![0f32; xn.div_ceil(4)];
                bytes_mut(&mut x)[..xn].copy_from_slice(&xb);
                let out_type = ValueType {
                    dtype: if requant { DataType::U8 } else { DataType::F32 },
                    shape: ys.clone(),
                };
                let len = storage_len(&out_type);
                let (mut ob, mut oq) = (vec![0f32; len], vec![0f32; len]);
                let mut sb = vec![0f32; b.scratch_len()];
                let mut sq = vec![0f32; q.scratch_len()];
                b.run(&x, &mut ob, &mut sb);
                q.run(&x, &mut oq, &mut sq);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&ob),
                    bits(&oq),
                    "{op} {xs:?} requant {requant} layout {layout}"
                );
                assert!(ob.iter().any(|&v| v != 0.0));
            }
        }
        // Weights that are not all ±1 are left to the int8 kernels.
        let (node, mut consts) = layer(qdq::QGEMM, &[4, 2], 2, false);
        consts[3] = Some(t(&[4, 2], TensorData::I8(vec![1, -1, 2, 1, 1, 1, -1, 1])));
        let x_type = ValueType {
            dtype: DataType::U8,
            shape: vec![1, 4],
        };
        let types = [Some(&x_type)];
        let cref: Vec<Option<&Tensor>> = consts.iter().map(Option::as_ref).collect();
        assert!(B1Layer::compile(&node, &types, &cref).unwrap().is_none());
    }
}
