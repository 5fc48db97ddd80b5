//! The QOperator integer operators — `QLinearConv`, `QLinearMatMul` and ORT's
//! `com.microsoft::QGemm` — on quench's INT8 kernels.
//!
//! The engine's arena holds f32 values, so [`crate::engine::fuse_qop`] carries every u8/s8 value
//! `q` of a QOperator graph on its grid `(scale, zp)` as the f32 `(q - zp) · scale` (what
//! `DequantizeLinear` gives). The integer is recovered exactly from it
//! (`round_half_even(v / scale) + zp`: the f32 error of `(q - zp) · scale` is far below half a
//! step for |q - zp| ≤ 255), the product is the exact i32 one, and the result is requantized as
//! ONNX defines it (`saturate(round_half_even((acc + bias) · x_scale · w_scale / y_scale) +
//! y_zp)`) and carried on as `(y - y_zp) · y_scale`, exactly what the final `DequantizeLinear`
//! of the graph would compute. `MaxPool`, `Flatten`, `Reshape` and the like commute with this
//! carrying (it is increasing), so they run unchanged on the f32 values.

use crate::graph::shape::{GemmParams, ValueType};
use crate::graph::shape_int::{QGEMM, QLINEAR_CONV};
use crate::graph::{GraphError, Node};
use crate::kernels::i8::{
    gemm, im2col, Activations, Dequantize, I8Error, Output, PackedI8, Requantize, Scale,
};
use crate::tensor::{Tensor, TensorData};

use super::conv::transpose2d;
use super::integer::{
    check_scales, constant, f32_values, quantize_s8, quantize_u8, quantize_value, Geometry,
    IntWeight,
};

/// A per-tensor quantization grid of an activation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    /// Scale.
    pub scale: f32,
    /// Zero point.
    pub zp: i32,
    /// s8 (true) or u8 values.
    pub signed: bool,
}

impl Grid {
    /// The grid of scalar constants `scale` and `zp` (u8 or s8; absent means u8 0) of `node`.
    pub fn of(node: &Node, scale: &Tensor, zp: Option<&Tensor>) -> Result<Grid, GraphError> {
        let s = f32_values(node, scale, "the scale")?;
        let scale = match s {
            [s] => *s,
            _ => {
                return Err(node.error(format!(
                    "an activation scale must be one value (per tensor), found {}",
                    s.len()
                )))
            }
        };
        check_scales(node, "the activation scale", &[scale], 1)?;
        let (zp, signed) = match zp.map(Tensor::data) {
            None => (0, false),
            Some(TensorData::U8(z)) if z.len() == 1 => (i32::from(z[0]), false),
            Some(TensorData::I8(z)) if z.len() == 1 => (i32::from(z[0]), true),
            Some(other) => {
                return Err(node.error(format!(
                    "an activation zero point must be one uint8 or int8 value, found {} {:?}",
                    other.dtype(),
                    zp.map(Tensor::shape)
                )))
            }
        };
        Ok(Grid { scale, zp, signed })
    }

    /// `(q - zp) · scale`: the f32 a value of this grid is carried as.
    pub fn carry(&self, q: i32) -> f32 {
        (q - self.zp) as f32 * self.scale
    }

    /// ONNX `QuantizeLinear` of `x` to this grid, carried: `out = carry(quantize(x))`.
    pub fn quantize_carried(&self, x: &[f32], out: &mut [f32]) {
        let (lo, hi) = if self.signed {
            (-128.0, 127.0)
        } else {
            (0.0, 255.0)
        };
        let zp = self.zp as f32;
        for (o, &v) in out.iter_mut().zip(x) {
            *o = self.carry(quantize_value(v, self.scale, zp, lo, hi) as i32);
        }
    }
}

/// What the node stores.
#[derive(Debug, Clone)]
enum Store {
    /// Requantized to the output grid (multiplier `x_scale · w_scale[j] / y_scale`).
    Requantize { multiplier: Vec<f32>, y: Grid },
    /// f32 (`QGemm` without an output scale): `acc · x_scale · w_scale[j]`.
    Float { scale: Vec<f32> },
}

/// A compiled `QLinearConv`, `QLinearMatMul` or `QGemm`.
#[derive(Debug, Clone)]
pub struct QLinear {
    geometry: Geometry,
    packed: PackedI8,
    x: Grid,
    bias: Option<Vec<i32>>,
    store: Store,
    n: usize,
}

fn need<'a>(
    node: &Node,
    consts: &[Option<&'a Tensor>],
    i: usize,
    what: &str,
) -> Result<&'a Tensor, GraphError> {
    constant(node, consts, i, what)?.ok_or_else(|| node.error(format!("{what} is missing")))
}

impl QLinear {
    /// Compiles a carried `QLinearConv` / `QLinearMatMul` / `QGemm` node for input type `x`.
    pub fn compile(
        node: &Node,
        x: &ValueType,
        consts: &[Option<&Tensor>],
    ) -> Result<QLinear, GraphError> {
        let w = need(node, consts, 3, "the weight")?;
        let conv = node.op_type == QLINEAR_CONV;
        let gemm_op = node.op_type == QGEMM;
        let (geometry, n, trans_b) = if conv {
            let (g, n) = Geometry::conv(node, &x.shape, w.shape())?;
            (g, n, true)
        } else if gemm_op {
            let p = GemmParams::resolve(node, &x.shape, w.shape(), None)?;
            if p.trans_a || p.alpha != 1.0 {
                return Err(node.error("QGemm with transA or alpha ≠ 1 is not supported natively"));
            }
            (Geometry::MatMul { rows: p.m, k: p.k }, p.n, p.trans_b)
        } else {
            let (g, n) = Geometry::matmul(node, &x.shape, w.shape())?;
            (g, n, false)
        };
        let k = geometry.k();
        let xg = Grid::of(
            node,
            need(node, consts, 1, "the input scale")?,
            constant(node, consts, 2, "the input zero point")?,
        )?;
        let iw = IntWeight::new(
            node,
            w,
            constant(node, consts, 5, "the weight zero point")?,
            n,
        )?;
        let packed = if trans_b {
            PackedI8::from_n_by_k(n, k, &iw.values, iw.zero_point())
        } else {
            PackedI8::from_k_by_n(k, n, &iw.values, iw.zero_point())
        }
        .map_err(|e| node.error(e.to_string()))?;
        let ws = f32_values(
            node,
            need(node, consts, 4, "the weight scale")?,
            "the weight scale",
        )?;
        check_scales(node, "the weight scale", ws, n)?;
        let w_scale = |j: usize| if ws.len() == 1 { ws[0] } else { ws[j] };
        let (bias_at, y_at) = if gemm_op { (6, 7) } else { (8, 6) };
        let bias = match constant(node, consts, bias_at, "the bias")?.map(Tensor::data) {
            None => None,
            Some(TensorData::I32(b)) if b.len() == n => Some(b.clone()),
            Some(other) => {
                return Err(node.error(format!(
                    "the bias must be {n} int32 values, found {} of {}",
                    other.len(),
                    other.dtype()
                )))
            }
        };
        let store = match constant(node, consts, y_at, "the output scale")? {
            Some(ys) => {
                let y = Grid::of(
                    node,
                    ys,
                    constant(node, consts, y_at + 1, "the output zero point")?,
                )?;
                Store::Requantize {
                    multiplier: (0..n).map(|j| xg.scale * w_scale(j) / y.scale).collect(),
                    y,
                }
            }
            None if gemm_op => Store::Float {
                scale: (0..n).map(|j| xg.scale * w_scale(j)).collect(),
            },
            None => return Err(node.error("the output scale is missing")),
        };
        Ok(QLinear {
            geometry,
            packed,
            x: xg,
            bias,
            store,
            n,
        })
    }

    /// f32 scratch: the pixel-major result of one image for a Conv.
    pub fn scratch_len(&self) -> usize {
        match self.geometry {
            Geometry::MatMul { .. } => 0,
            Geometry::Conv { pixels, .. } => pixels * self.n,
        }
    }

    /// Bytes of the packed weights.
    pub fn packed_bytes(&self) -> usize {
        self.geometry.k() * self.n + 4 * self.bias.as_ref().map_or(0, Vec::len)
    }

    /// Name of the kernel, for records.
    pub fn kernel_name(&self) -> String {
        self.geometry.kernel_name("qlinear")
    }

    /// Runs on the carried input `x`, writing the carried (or f32) output.
    pub fn run(&self, x: &[f32], out: &mut [f32], scratch: &mut [f32]) {
        let r = if self.x.signed {
            let mut q = vec![0i8; x.len()];
            quantize_s8(x, self.x.scale, self.x.zp as i8, &mut q);
            self.run_on(&q, self.x.zp as i8, out, scratch, |data, zero_point| {
                Activations::S8 { data, zero_point }
            })
        } else {
            let mut q = vec![0u8; x.len()];
            quantize_u8(x, self.x.scale, self.x.zp as u8, &mut q);
            self.run_on(&q, self.x.zp as u8, out, scratch, |data, zero_point| {
                Activations::U8 { data, zero_point }
            })
        };
        if let Err(e) = r {
            // Shapes and parameters were checked when the node was compiled.
            debug_assert!(false, "QLinear kernel refused a checked shape: {e}");
            out.fill(f32::NAN);
        }
    }

    fn run_on<T: Copy + Default + Send + Sync>(
        &self,
        q: &[T],
        zp: T,
        out: &mut [f32],
        scratch: &mut [f32],
        acts: impl for<'a> Fn(&'a [T], T) -> Activations<'a>,
    ) -> Result<(), I8Error> {
        match self.geometry {
            Geometry::MatMul { rows, k } => self.product(rows, acts(q, zp), k, out),
            Geometry::Conv {
                batch,
                conv,
                pixels,
            } => {
                let k = conv.patch_len();
                let mut cols = vec![T::default(); pixels * k];
                let image = q.len() / batch.max(1);
                let tmp = &mut scratch[..pixels * self.n];
                for b in 0..batch {
                    im2col(&conv, &q[b * image..(b + 1) * image], zp, &mut cols)?;
                    self.product(pixels, acts(&cols, zp), k, tmp)?;
                    let o = &mut out[b * pixels * self.n..(b + 1) * pixels * self.n];
                    transpose2d(tmp, pixels, self.n, o);
                }
                Ok(())
            }
        }
    }

    /// One GEMM of `rows` rows into `out` (row-major `rows × N`, carried or f32).
    fn product(
        &self,
        rows: usize,
        a: Activations<'_>,
        k: usize,
        out: &mut [f32],
    ) -> Result<(), I8Error> {
        let n = self.n;
        match &self.store {
            Store::Float { scale } => {
                let deq = Dequantize {
                    scale: Scale::PerChannel(scale),
                    bias: None,
                    relu: false,
                };
                match &self.bias {
                    // The i32 bias joins the accumulator before scaling: run exact i32 first.
                    Some(bias) => {
                        let mut acc = vec![0i32; rows * n];
                        gemm(rows, a, k, &self.packed, Output::I32(&mut acc), n)?;
                        for (i, (o, &v)) in out.iter_mut().zip(&acc).enumerate() {
                            let j = i % n;
                            *o = v.wrapping_add(bias[j]) as f32 * scale[j];
                        }
                        Ok(())
                    }
                    None => gemm(rows, a, k, &self.packed, Output::F32(out, deq), n),
                }
            }
            Store::Requantize { multiplier, y } => {
                let req = Requantize {
                    multiplier: Scale::PerChannel(multiplier),
                    bias: self.bias.as_deref(),
                    zero_point: y.zp,
                    relu: false,
                };
                if y.signed {
                    let mut v = vec![0i8; rows * n];
                    gemm(rows, a, k, &self.packed, Output::S8(&mut v, req), n)?;
                    for (o, &q) in out.iter_mut().zip(&v) {
                        *o = y.carry(i32::from(q));
                    }
                } else {
                    let mut v = vec![0u8; rows * n];
                    gemm(rows, a, k, &self.packed, Output::U8(&mut v, req), n)?;
                    for (o, &q) in out.iter_mut().zip(&v) {
                        *o = y.carry(i32::from(q));
                    }
                }
                Ok(())
            }
        }
    }
}
