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

use super::quantized::{activations, bytes, bytes_mut, GemmDims, Layer};
use crate::graph::qdq::{self, QInputs};
use crate::graph::shape::{ConvParams, ValueType};
use crate::graph::{GraphError, Node};
use crate::kernels::b1::{self, PackedBinary};
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
