//! Binary layers on the XNOR-popcount kernels ([`crate::kernels::b1`]).
//!
//! Quench exports binary weights `sign(W)·α` as int8 ±1 behind a per-channel
//! `DequantizeLinear` of scale α ("binary-as-int8", so ONNX Runtime runs them), and
//! [`crate::graph::qdq::fuse_qdq`] folds such a layer with INT8 activations into a fused
//! [`qdq::QCONV`]/[`qdq::QGEMM`] node like any INT8 layer. When that node's weights are all ±1
//! with zero weight zero points, the plan packs their signs 64 to a word and runs the layer on
//! [`b1::gemm_i8`] (binary weights × u8/i8 activations) instead of the int8 GEMM. Its exact
//! i32 dot products `Σ sign(w)·(a − za)` are the int8 GEMM's for the same weights, and they go
//! through the same epilogue ([`crate::kernels::i8::Output::store_with`]), so the outputs are
//! bit-equal to the int8 path. Depthwise and grouped convolutions stay on the int8 kernels.
//!
//! The b1 path is opt-in ([`chosen`]): on this project's AVX-512 VNNI build machine the int8
//! kernels ran the same binary layers of mnist-cnn faster (conv1 45 µs against 192, conv2 54
//! against 223, fc1 11 against 14, `QUENCH_PROFILE_OPS=1`), since this path still gathers
//! convolution patches byte by byte in NCHW and stores one value at a time.

use bytemuck::cast_slice_mut;

use super::integer::Geometry;
use super::quantized::{activations, bytes, bytes_mut, GemmDims, Layer};
use crate::graph::qdq::{self, QInputs};
use crate::graph::shape::{ConvParams, GemmParams, ValueType};
use crate::graph::{GraphError, Node};
use crate::kernels::b1::{self, BinaryActivations, PackedBinary, TernaryImage};
use crate::kernels::f32::Activation;
use crate::kernels::i8::{self as k8, Conv2d};
use crate::tensor::{Tensor, TensorData};

/// Whether binary-weight layers run on the b1 kernels: only with `QUENCH_BINARY_KERNEL=b1` in the
/// environment (read once), so a user can compare them with the faster int8 default.
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
    /// A group-1 2-D convolution through im2col, per image.
    Conv {
        batch: usize,
        geo: Conv2d,
        pixels: usize,
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
            let win = &p.window;
            let geo = super::integer::conv2d(&p);
            geo.output_size().map_err(|e| node.error(e.to_string()))?;
            let k = geo.patch_len();
            let shape = Shape::Conv {
                batch: p.batch,
                geo,
                pixels: win.output[0] * win.output[1],
            };
            (p.cout, k, shape, false)
        } else {
            let GemmDims { m, k, n, trans_b } = GemmDims::of(node, x, w)?;
            (n, k, Shape::Gemm { m }, !trans_b)
        };
        let (layer, wv, wz) = Layer::new(node, &q, consts, x.dtype, n)?;
        if wz.iter().any(|&z| z != 0) {
            return Ok(None);
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
        match self.shape {
            Shape::Gemm { .. } => b1::i8_kernel_name(),
            Shape::Conv { .. } => format!("{} (im2col)", b1::i8_kernel_name()),
        }
    }

    /// Rows of one GEMM call.
    fn rows(&self) -> usize {
        match self.shape {
            Shape::Gemm { m } => m,
            Shape::Conv { pixels, .. } => pixels,
        }
    }

    /// f32 slots of scratch: the i32 dot products, then (convolution) the im2col bytes.
    pub fn scratch_len(&self) -> usize {
        let dots = self.rows() * self.w.n();
        match self.shape {
            Shape::Gemm { .. } => dots,
            Shape::Conv { pixels, .. } => dots + (pixels * self.w.k()).div_ceil(4),
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
            Shape::Conv { batch, geo, pixels } => {
                let in_len = geo.channels * geo.height * geo.width;
                let out_len = n * pixels;
                let pad = l.x.put(l.x_zero);
                let col = &mut bytes_mut(rest)[..pixels * k];
                for b in 0..*batch {
                    let xi = &bytes(x)[b * in_len..(b + 1) * in_len];
                    checked(k8::im2col(geo, xi, pad, col));
                    let a = activations(l.x, l.x_zero, col);
                    checked(b1::gemm_i8(
                        *pixels,
                        a,
                        k,
                        1.0,
                        &self.w,
                        b1::Output::Dots(dots),
                        n,
                    ));
                    // The dot products are pixel-major; the output is channel-major (NCHW).
                    let o = l.store.output(out, b * out_len, out_len);
                    checked(o.store_with(out_len, n, |i| {
                        let (c, p) = (i / pixels, i % pixels);
                        (dots[p * n + c], c)
                    }));
                }
            }
        }
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
                b1::padded_bits(&geo).map_err(|e| node.error(e.to_string()))?;
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
            for requant in [false, true] {
                let (node, consts) = layer(op, &ws, n, requant);
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
                assert_eq!(bits(&ob), bits(&oq), "{op} {xs:?} requant {requant}");
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
