//! Quantized operators: ONNX `QuantizeLinear`/`DequantizeLinear` with their exact semantics,
//! and the integer Conv (any group count)/Gemm/MaxPool that [`crate::graph::qdq::fuse_qdq`] folds QDQ patterns
//! into, running on the INT8 kernels ([`crate::kernels::i8`]) with requantization in the GEMM
//! epilogue so that chains of layers stay in integers.
//!
//! # Storage
//! The engine's arena holds f32 slots; a u8/i8 value is stored packed, four elements to a slot,
//! and read back as bytes ([`bytes`], [`bytes_mut`]). A quantized activation therefore moves one
//! byte per element between layers.

use bytemuck::{cast_slice, cast_slice_mut};

use super::integer::{conv2d, Geometry};
use super::pool::max_pool;
use super::pool_hwc::{max_pool_hwc_i8, max_pool_hwc_u8};
use crate::engine::nhwc;
use crate::graph::qdq::{self, QInputs};
use crate::graph::shape::{norm_axis, pool_window, ConvParams, ValueType, Window2d};
use crate::graph::{GraphError, Node};
use crate::kernels::i8::{
    self as k8, Activations, Conv2d, Dequantize, Output, PackedDepthwise, PackedI8, Requantize,
    Scale, WeightZeroPoint,
};
use crate::tensor::{DataType, Tensor, TensorData};

/// The element bytes of a u8/i8 value stored packed in f32 slots.
pub fn bytes(x: &[f32]) -> &[u8] {
    cast_slice(x)
}

/// The element bytes of a u8/i8 output stored packed in f32 slots.
pub fn bytes_mut(x: &mut [f32]) -> &mut [u8] {
    cast_slice_mut(x)
}

/// Arena slots (f32) a value of this type takes: one per f32 element, one per four u8/i8.
pub fn storage_len(t: &ValueType) -> usize {
    match t.dtype {
        DataType::U8 | DataType::I8 => t.numel().div_ceil(4),
        _ => t.numel(),
    }
}

/// An 8-bit quantized element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QType {
    /// ONNX `uint8`.
    U8,
    /// ONNX `int8`.
    S8,
}

impl QType {
    /// The quantized type of `dtype`, if it is one.
    pub fn of(dtype: DataType) -> Option<QType> {
        match dtype {
            DataType::U8 => Some(QType::U8),
            DataType::I8 => Some(QType::S8),
            _ => None,
        }
    }

    fn range(self) -> (i32, i32) {
        match self {
            QType::U8 => (0, 255),
            QType::S8 => (-128, 127),
        }
    }

    /// The tensor element type.
    pub fn dtype(self) -> DataType {
        match self {
            QType::U8 => DataType::U8,
            QType::S8 => DataType::I8,
        }
    }

    /// Reads element `i` of a packed value as i32.
    #[inline(always)]
    fn get(self, b: &[u8], i: usize) -> i32 {
        match self {
            QType::U8 => i32::from(b[i]),
            QType::S8 => i32::from(b[i] as i8),
        }
    }

    /// Stores a value already inside the type's range.
    #[inline(always)]
    pub(super) fn put(self, v: i32) -> u8 {
        match self {
            QType::U8 => v as u8,
            QType::S8 => (v as i8) as u8,
        }
    }
}

/// A quantization's scale and zero point, per tensor or per slice along one axis:
/// element `i` uses entry `(i / inner) % len`.
#[derive(Debug, Clone, PartialEq)]
pub struct Affine {
    /// Scales (one, or one per slice), each finite and positive.
    pub scale: Vec<f32>,
    /// Zero points, as many as scales.
    pub zero: Vec<i32>,
    /// Elements per slice after the axis (1 for per-tensor with `len == 1` it is unused).
    inner: usize,
}

impl Affine {
    /// The scale and zero point of element `i`.
    #[inline(always)]
    fn at(&self, i: usize) -> (f32, i32) {
        let c = if self.scale.len() == 1 {
            0
        } else {
            (i / self.inner) % self.scale.len()
        };
        (self.scale[c], self.zero[c])
    }

    /// The single scale and zero point of a per-tensor quantization.
    pub fn per_tensor(&self) -> Option<(f32, i32)> {
        (self.scale.len() == 1).then(|| (self.scale[0], self.zero[0]))
    }

    /// Reads the scale (input 1) and zero point (input 2) of a Q/DQ node for data of `shape`:
    /// scales must be finite and positive, zero points constant and inside their type's range.
    pub fn of_node(
        node: &Node,
        shape: &[usize],
        consts: &[Option<&Tensor>],
    ) -> Result<Affine, GraphError> {
        let scale = consts
            .get(1)
            .copied()
            .flatten()
            .ok_or_else(|| node.error("the scale must be a constant"))?;
        let s = scale
            .as_f32()
            .map_err(|e| node.error(format!("scale: {e}")))?;
        if let Some((i, v)) = s
            .iter()
            .enumerate()
            .find(|(_, v)| !(v.is_finite() && **v > 0.0))
        {
            return Err(node.error(format!(
                "scale[{i}] = {v}: a quantization scale must be finite and positive"
            )));
        }
        if s.is_empty() || scale.shape().len() > 1 {
            return Err(node.error(format!(
                "the scale must be a scalar or 1-D, got shape {:?}",
                scale.shape()
            )));
        }
        let zero: Vec<i32> = match (node.input(2), consts.get(2).copied().flatten()) {
            (None, _) => vec![0; s.len()],
            (Some(_), None) => return Err(node.error("the zero point must be a constant")),
            (Some(_), Some(z)) => match z.data() {
                TensorData::U8(v) => v.iter().map(|&x| i32::from(x)).collect(),
                TensorData::I8(v) => v.iter().map(|&x| i32::from(x)).collect(),
                TensorData::I32(v) => v.clone(),
                other => {
                    return Err(node.error(format!(
                        "zero point of type {} is not supported (u8, i8 or i32)",
                        other.dtype()
                    )))
                }
            },
        };
        if zero.len() != s.len() {
            return Err(node.error(format!("{} zero points for {} scales", zero.len(), s.len())));
        }
        if node.attr_int("block_size", 0)? != 0 {
            return Err(node.error("blocked quantization (block_size) is not supported"));
        }
        let mut inner = 1;
        if s.len() > 1 || scale.shape().len() == 1 {
            let axis = norm_axis(node, node.attr_int("axis", 1)?, shape.len(), false)?;
            if s.len() > 1 && shape[axis] != s.len() {
                return Err(node.error(format!(
                    "{} scales for axis {axis} of size {} (shape {shape:?})",
                    s.len(),
                    shape[axis]
                )));
            }
            inner = shape[axis + 1..].iter().product();
        }
        Ok(Affine {
            scale: s.to_vec(),
            zero,
            inner,
        })
    }
}

/// The output type of a `QuantizeLinear` node ([`qdq::quantize_output_type`]).
fn quantize_output(node: &Node, consts: &[Option<&Tensor>]) -> Result<QType, GraphError> {
    let t = qdq::quantize_output_type(node, consts)?;
    QType::of(t).ok_or_else(|| node.error(format!("output type {t} is not u8 or i8")))
}

/// `y = saturate(round_half_even(x / scale) + zero_point)`, as ONNX `QuantizeLinear`.
#[inline(always)]
fn quantize_one(x: f32, scale: f32, zero: i32, (lo, hi): (i32, i32)) -> i32 {
    let v = (x / scale).round_ties_even() + zero as f32;
    v.clamp(lo as f32, hi as f32) as i32
}

/// One compiled quantized operator.
#[derive(Debug, Clone)]
pub enum QKernel {
    /// `QuantizeLinear`: f32 to packed u8/i8.
    Quantize(Affine, QType),
    /// `DequantizeLinear`: packed u8/i8 to f32.
    Dequantize(Affine, QType),
    /// MaxPool on packed u8/i8 over this many planes.
    MaxPool(Window2d, QType, usize),
    /// MaxPool on packed u8/i8 NHWC images: window, type, images, channels
    /// ([`crate::engine::nhwc`]).
    MaxPoolNhwc(Window2d, QType, usize, usize),
    /// Fused integer convolution.
    Conv(Box<QConv>),
    /// Fused integer Gemm/MatMul.
    Gemm(Box<QGemm>),
}

/// What a fused integer layer stores: requantized u8/i8, or dequantized f32.
#[derive(Debug, Clone)]
pub(super) enum Store {
    Requant {
        ty: QType,
        multiplier: Vec<f32>,
        bias: Option<Vec<i32>>,
        zero: i32,
        relu: bool,
    },
    Dequant {
        scale: Vec<f32>,
        bias: Option<Vec<f32>>,
        relu: bool,
    },
}

impl Store {
    /// Elements of the output type per f32 slot: 4 for u8/i8, 1 for f32.
    fn per_slot(&self) -> usize {
        match self {
            Store::Requant { .. } => 4,
            Store::Dequant { .. } => 1,
        }
    }

    /// The epilogue writing `n` values into `out` (packed bytes or f32, from element `at`).
    pub(super) fn output<'a>(&'a self, out: &'a mut [f32], at: usize, n: usize) -> Output<'a> {
        match self {
            Store::Requant {
                ty,
                multiplier,
                bias,
                zero,
                relu,
            } => {
                let r = Requantize {
                    multiplier: Scale::PerChannel(multiplier),
                    bias: bias.as_deref(),
                    zero_point: *zero,
                    relu: *relu,
                };
                let b = &mut bytes_mut(out)[at..at + n];
                match ty {
                    QType::U8 => Output::U8(b, r),
                    QType::S8 => Output::S8(cast_slice_mut(b), r),
                }
            }
            Store::Dequant { scale, bias, relu } => Output::F32(
                &mut out[at..at + n],
                Dequantize {
                    scale: Scale::PerChannel(scale),
                    bias: bias.as_deref(),
                    relu: *relu,
                },
            ),
        }
    }
}

/// Packed u8/i8 activations with their zero point.
pub(super) fn activations(ty: QType, zero: i32, b: &[u8]) -> Activations<'_> {
    match ty {
        QType::U8 => Activations::U8 {
            data: b,
            zero_point: zero as u8,
        },
        QType::S8 => Activations::S8 {
            data: cast_slice(b),
            zero_point: zero as i8,
        },
    }
}

/// The parts every fused layer shares: activation type and zero point, weights, store.
#[derive(Debug, Clone)]
pub(super) struct Layer {
    pub(super) x: QType,
    pub(super) x_zero: i32,
    pub(super) store: Store,
    /// The weights are all ±1 (a binary layer exported as int8).
    pub(super) binary: bool,
}

impl Layer {
    /// Reads the quantization of a fused node's input, weights, bias and output for `n` output
    /// channels, and the weights' values and zero points (s8).
    pub(super) fn new(
        node: &Node,
        q: &QInputs,
        consts: &[Option<&Tensor>],
        x_type: DataType,
        n: usize,
    ) -> Result<(Layer, Vec<i8>, Vec<i8>), GraphError> {
        let x = QType::of(x_type)
            .ok_or_else(|| node.error(format!("input is {x_type}, expected u8 or i8")))?;
        let c = |i: usize, what: &str| {
            consts
                .get(i)
                .copied()
                .flatten()
                .ok_or_else(|| node.error(format!("{what} must be a constant")))
        };
        let scalar = |i: usize, what: &str| -> Result<f32, GraphError> {
            match c(i, what)?.as_f32() {
                Ok([v]) if v.is_finite() && *v > 0.0 => Ok(*v),
                _ => Err(node.error(format!("{what} must be one finite positive f32"))),
            }
        };
        let zero = |i: usize, what: &str| -> Result<i32, GraphError> {
            if node.input(i).is_none() {
                return Ok(0);
            }
            match c(i, what)?.data() {
                TensorData::U8(v) if v.len() == 1 => Ok(i32::from(v[0])),
                TensorData::I8(v) if v.len() == 1 => Ok(i32::from(v[0])),
                _ => Err(node.error(format!("{what} must be one u8 or i8"))),
            }
        };
        let sx = scalar(q.x_scale, "input scale")?;
        let x_zero = zero(q.x_zero, "input zero point")?;
        let w = match c(q.w, "weights")?.data() {
            TensorData::I8(v) => v.clone(),
            other => return Err(node.error(format!("weights are {}, expected i8", other.dtype()))),
        };
        let sw = c(q.w_scale, "weight scale")?
            .as_f32()
            .map_err(|e| node.error(format!("weight scale: {e}")))?;
        if sw.len() != 1 && sw.len() != n || sw.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(node.error(format!(
                "weight scales must be 1 or {n} finite positive values, got {:?}",
                &sw[..sw.len().min(4)]
            )));
        }
        let wz: Vec<i8> = match node.input(q.w_zero) {
            None => vec![0],
            Some(_) => match c(q.w_zero, "weight zero point")?.data() {
                TensorData::I8(v) if v.len() == sw.len() => v.clone(),
                _ => {
                    return Err(
                        node.error(format!("weight zero points must be {} i8 values", sw.len()))
                    )
                }
            },
        };
        let channel = |j: usize| if sw.len() == 1 { 0 } else { j };
        let acc_scale: Vec<f32> = (0..n).map(|j| sx * sw[channel(j)]).collect();
        let bias = match node.input(q.bias) {
            None => None,
            Some(_) => {
                let b = c(q.bias, "bias")?
                    .as_f32()
                    .map_err(|e| node.error(format!("bias: {e}")))?;
                if b.len() != n {
                    return Err(node.error(format!("bias has {} values, expected {n}", b.len())));
                }
                Some(b.to_vec())
            }
        };
        let relu = node.attr_int("relu", 0)? != 0;
        let store = match node.input(q.y_scale) {
            None => Store::Dequant {
                scale: acc_scale,
                bias,
                relu,
            },
            Some(_) => {
                let sy = scalar(q.y_scale, "output scale")?;
                let ty = match node.input(q.y_zero) {
                    None => QType::U8,
                    Some(_) => QType::of(c(q.y_zero, "output zero point")?.dtype())
                        .ok_or_else(|| node.error("output zero point must be u8 or i8"))?,
                };
                // The bias was quantized with scale sx·sw (as QLinearConv's B): recover the
                // integers, exact for a bias that came from an int32 DequantizeLinear.
                let bias = bias.map(|b| {
                    b.iter()
                        .zip(&acc_scale)
                        .map(|(v, s)| (v / s).round_ties_even() as i32)
                        .collect()
                });
                Store::Requant {
                    ty,
                    multiplier: acc_scale.iter().map(|s| s / sy).collect(),
                    bias,
                    zero: zero(q.y_zero, "output zero point")?,
                    relu,
                }
            }
        };
        let binary = w.iter().all(|&v| v == 1 || v == -1);
        Ok((
            Layer {
                x,
                x_zero,
                store,
                binary,
            },
            w,
            wz,
        ))
    }

    fn name(&self, kernel: String) -> String {
        if self.binary {
            format!("{kernel} (binary weights as int8)")
        } else {
            kernel
        }
    }
}

fn weight_zero(wz: &[i8]) -> WeightZeroPoint<'_> {
    match wz {
        [0] => WeightZeroPoint::None,
        [z] => WeightZeroPoint::PerTensor(*z),
        z if z.iter().all(|&v| v == 0) => WeightZeroPoint::None,
        z => WeightZeroPoint::PerChannel(z),
    }
}

fn kernel_error(node: &Node, e: k8::I8Error) -> GraphError {
    node.error(e.to_string())
}

/// A fused integer Gemm/MatMul: `[M×K]` u8/i8 times constant s8 `[K×N]`.
#[derive(Debug, Clone)]
pub struct QGemm {
    m: usize,
    layer: Layer,
    w: PackedI8,
}

/// A fused integer 2-D convolution (through patches + GEMM per group, or depthwise).
#[derive(Debug, Clone)]
pub struct QConv {
    batch: usize,
    /// Input elements per image.
    in_len: usize,
    cout: usize,
    /// Output pixels per image.
    pixels: usize,
    layer: Layer,
    body: ConvBody,
    /// The input is stored NHWC ([`nhwc::NHWC_IN`]).
    nhwc_in: bool,
    /// The output is stored NHWC ([`nhwc::NHWC_OUT`]): the GEMM's pixel-major rows as they are.
    nhwc_out: bool,
}

#[derive(Debug, Clone)]
enum ConvBody {
    /// The patches of each image (see [`Geometry::conv_gemm`]) times the weights, packed in
    /// the patches' order, one GEMM per group.
    Gemm(Geometry, Vec<PackedI8>),
    Depthwise(Conv2d, PackedDepthwise),
}

impl QKernel {
    /// Compiles a `QuantizeLinear`, `DequantizeLinear`, an integer MaxPool or a fused node of
    /// [`qdq::DOMAIN`]; `None` for any other node.
    pub fn compile(
        node: &Node,
        types: &[Option<&ValueType>],
        consts: &[Option<&Tensor>],
    ) -> Result<Option<QKernel>, GraphError> {
        let x = types
            .first()
            .copied()
            .flatten()
            .ok_or_else(|| node.error("missing input 0"));
        let standard = node.domain.is_empty() || node.domain == "ai.onnx";
        Ok(Some(match (standard, node.op_type.as_str()) {
            (true, "QuantizeLinear") => {
                let x = x?;
                if x.dtype != DataType::F32 {
                    return Err(node.error(format!("input is {}, expected f32", x.dtype)));
                }
                QKernel::Quantize(
                    Affine::of_node(node, &x.shape, consts)?,
                    quantize_output(node, consts)?,
                )
            }
            (true, "DequantizeLinear") => {
                let x = x?;
                let ty = QType::of(x.dtype).ok_or_else(|| {
                    node.error(format!(
                        "input is {} at run time; only u8/i8 dequantize at run time",
                        x.dtype
                    ))
                })?;
                QKernel::Dequantize(Affine::of_node(node, &x.shape, consts)?, ty)
            }
            (true, "MaxPool") => {
                let x = x?;
                match QType::of(x.dtype) {
                    Some(ty) if node.attr_int(nhwc::NHWC_POOL, 0)? != 0 => {
                        // The window checks that the input is 4-D.
                        let w = pool_window(node, &x.shape)?;
                        QKernel::MaxPoolNhwc(w, ty, x.shape[0], x.shape[1])
                    }
                    Some(ty) => {
                        let planes = x.shape.iter().take(2).product();
                        QKernel::MaxPool(pool_window(node, &x.shape)?, ty, planes)
                    }
                    None => return Ok(None),
                }
            }
            (false, op) if node.domain == qdq::DOMAIN => {
                let x = x?;
                let w = consts
                    .get(QInputs::LAYOUT.w)
                    .copied()
                    .flatten()
                    .ok_or_else(|| node.error("weights must be a constant"))?;
                match op {
                    qdq::QCONV => QKernel::Conv(Box::new(QConv::new(node, x, w, consts)?)),
                    qdq::QGEMM => QKernel::Gemm(Box::new(QGemm::new(node, x, w, consts)?)),
                    _ => return Err(node.unsupported()),
                }
            }
            _ => return Ok(None),
        }))
    }

    /// Name of the compute kernel, for records.
    pub fn kernel_name(&self) -> String {
        match self {
            QKernel::Quantize(..) => "quantize-linear".into(),
            QKernel::Dequantize(..) => "dequantize-linear".into(),
            QKernel::MaxPool(..) => "i8-pool-direct".into(),
            QKernel::MaxPoolNhwc(..) => format!("i8-pool-direct{}", nhwc::LAYOUT_SUFFIX),
            QKernel::Gemm(g) => g.layer.name(if g.m == 1 {
                k8::gemv_kernel_name()
            } else {
                k8::gemm_kernel_name()
            }),
            QKernel::Conv(c) => c.layer.name(match &c.body {
                ConvBody::Gemm(g, _) => {
                    let source = g.patch_source().unwrap_or_default();
                    format!("{} ({source})", k8::gemm_kernel_name())
                }
                ConvBody::Depthwise(..) => k8::depthwise_kernel_name(),
            }),
        }
    }

    /// f32 slots of scratch the kernel needs.
    pub fn scratch_len(&self) -> usize {
        match self {
            QKernel::Conv(c) => c.scratch_split().1,
            _ => 0,
        }
    }

    /// Bytes of packed weights held.
    pub fn packed_bytes(&self) -> usize {
        match self {
            QKernel::Gemm(g) => g.w.size_bytes(),
            QKernel::Conv(c) => match &c.body {
                ConvBody::Gemm(_, w) => w.iter().map(PackedI8::size_bytes).sum(),
                ConvBody::Depthwise(_, w) => w.size_bytes(),
            },
            _ => 0,
        }
    }

    /// Runs on arena slices: u8/i8 values packed, f32 values plain.
    pub fn run(&self, x: &[f32], out: &mut [f32], scratch: &mut [f32]) {
        match self {
            QKernel::Quantize(a, ty) => {
                let range = ty.range();
                let o = bytes_mut(out);
                let n = o.len().min(x.len());
                match (a.per_tensor(), ty) {
                    // Per tensor: `DynamicQuantizeLinear`'s loops, compiled for AVX2 where the
                    // CPU has it (the rounding is then one instruction, not a libm call). The
                    // zero points were checked against the type's range at compile time.
                    (Some((s, z)), QType::U8) => {
                        super::integer::quantize_u8(&x[..n], s, z as u8, &mut o[..n]);
                    }
                    (Some((s, z)), QType::S8) => {
                        let o: &mut [i8] = cast_slice_mut(&mut o[..n]);
                        super::integer::quantize_s8(&x[..n], s, z as i8, o);
                    }
                    (None, _) => {
                        for (i, (o, &v)) in o.iter_mut().zip(x).enumerate() {
                            let (s, z) = a.at(i);
                            *o = ty.put(quantize_one(v, s, z, range));
                        }
                    }
                }
            }
            QKernel::Dequantize(a, ty) => {
                let b = bytes(x);
                match (a.per_tensor(), ty) {
                    // Per tensor, each type in its own loop over plain slices, so it vectorizes.
                    (Some((s, z)), QType::U8) => {
                        for (o, &v) in out.iter_mut().zip(b) {
                            *o = (i32::from(v) - z) as f32 * s;
                        }
                    }
                    (Some((s, z)), QType::S8) => {
                        for (o, &v) in out.iter_mut().zip(b) {
                            *o = (i32::from(v as i8) - z) as f32 * s;
                        }
                    }
                    (None, _) => {
                        for (i, o) in out.iter_mut().enumerate() {
                            let (s, z) = a.at(i);
                            *o = (ty.get(b, i) - z) as f32 * s;
                        }
                    }
                }
            }
            QKernel::MaxPool(w, ty, planes) => {
                let m = planes * w.output[0] * w.output[1];
                let xin = planes * w.input[0] * w.input[1];
                match ty {
                    QType::U8 => max_pool(w, &bytes(x)[..xin], &mut bytes_mut(out)[..m]),
                    QType::S8 => max_pool::<i8>(
                        w,
                        cast_slice(&bytes(x)[..xin]),
                        cast_slice_mut(&mut bytes_mut(out)[..m]),
                    ),
                }
            }
            QKernel::MaxPoolNhwc(w, ty, batch, c) => {
                let len = |hw: [usize; 2]| batch * hw[0] * hw[1] * c;
                let (xb, ob) = (
                    &bytes(x)[..len(w.input)],
                    &mut bytes_mut(out)[..len(w.output)],
                );
                match ty {
                    QType::U8 => max_pool_hwc_u8(w, *c, xb, ob),
                    QType::S8 => max_pool_hwc_i8(w, *c, cast_slice(xb), cast_slice_mut(ob)),
                }
            }
            QKernel::Gemm(g) => g.run(x, out),
            QKernel::Conv(c) => c.run(x, out, scratch),
        }
    }
}

/// The run-time kernels cannot fail on the shapes their compile step checked; a failure would
/// be a bug in that check, reported in debug builds.
fn checked(r: Result<(), k8::I8Error>) {
    debug_assert!(r.is_ok(), "int8 kernel refused a planned shape: {r:?}");
}

impl QGemm {
    fn new(
        node: &Node,
        x: &ValueType,
        w: &Tensor,
        consts: &[Option<&Tensor>],
    ) -> Result<QGemm, GraphError> {
        let GemmDims { m, k, n, trans_b } = GemmDims::of(node, x, w)?;
        let (layer, mut wv, wz) = Layer::new(node, &QInputs::LAYOUT, consts, x.dtype, n)?;
        if let Some(chw) = node.attr_ints(nhwc::HWC_GEMM)? {
            wv = hwc_rows(node, chw, k, n, trans_b, &wv)?;
        }
        let zp = weight_zero(&wz);
        let w = if trans_b {
            PackedI8::from_n_by_k(n, k, &wv, zp)
        } else {
            PackedI8::from_k_by_n(k, n, &wv, zp)
        }
        .map_err(|e| kernel_error(node, e))?;
        Ok(QGemm { m, layer, w })
    }

    fn run(&self, x: &[f32], out: &mut [f32]) {
        let (k, n) = (self.w.k(), self.w.n());
        let a = activations(self.layer.x, self.layer.x_zero, &bytes(x)[..self.m * k]);
        let o = self.layer.store.output(out, 0, self.m * n);
        checked(k8::gemm(self.m, a, k, &self.w, o, n));
    }
}

/// Gemm weights `wv` (`K × N`, or `N × K` when `trans_b`) with their K rows reordered from an
/// NCHW image's flattening (`c, y, x`) to an NHWC one's (`y, x, c`), for input rows that are
/// NHWC images of shape `chw` ([`nhwc::HWC_GEMM`]).
pub(super) fn hwc_rows(
    node: &Node,
    chw: &[i64],
    k: usize,
    n: usize,
    trans_b: bool,
    wv: &[i8],
) -> Result<Vec<i8>, GraphError> {
    let dims: Vec<usize> = chw
        .iter()
        .map(|&d| usize::try_from(d).unwrap_or(0))
        .collect();
    let [c, h, w] = dims[..] else {
        return Err(node.error(format!(
            "{} must hold [C, H, W], got {chw:?}",
            nhwc::HWC_GEMM
        )));
    };
    if c * h * w != k || wv.len() != k * n {
        return Err(node.error(format!("{} {chw:?} does not match K = {k}", nhwc::HWC_GEMM)));
    }
    let mut out = vec![0i8; wv.len()];
    let hw = h * w;
    for ci in 0..c {
        for p in 0..hw {
            let (from, to) = (ci * hw + p, p * c + ci);
            if trans_b {
                for j in 0..n {
                    out[j * k + to] = wv[j * k + from];
                }
            } else {
                out[to * n..(to + 1) * n].copy_from_slice(&wv[from * n..(from + 1) * n]);
            }
        }
    }
    Ok(out)
}

/// The problem shape of a fused integer Gemm/MatMul: `m × k` activations times `k × n` weights,
/// stored `n × k` when `trans_b`.
pub(super) struct GemmDims {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub trans_b: bool,
}

impl GemmDims {
    /// Reads them from the node's `transB`, its 2-D weights and its input, which must end in K.
    pub(super) fn of(node: &Node, x: &ValueType, w: &Tensor) -> Result<GemmDims, GraphError> {
        let trans_b = node.attr_int("transB", 0)? != 0;
        let (k, n) = match (w.shape(), trans_b) {
            ([n, k], true) | ([k, n], false) => (*k, *n),
            s => return Err(node.error(format!("weights must be 2-D, got {s:?}"))),
        };
        if x.shape.last() != Some(&k) {
            return Err(node.error(format!("input {:?} does not end in K = {k}", x.shape)));
        }
        let m = x.shape[..x.shape.len() - 1].iter().product();
        Ok(GemmDims { m, k, n, trans_b })
    }
}

impl QConv {
    fn new(
        node: &Node,
        x: &ValueType,
        w: &Tensor,
        consts: &[Option<&Tensor>],
    ) -> Result<QConv, GraphError> {
        let p = ConvParams::resolve(node, &x.shape, w.shape())?;
        let win = &p.window;
        let geo = conv2d(&p);
        geo.output_size().map_err(|e| kernel_error(node, e))?;
        let (layer, wv, wz) = Layer::new(node, &QInputs::LAYOUT, consts, x.dtype, p.cout)?;
        let zp = weight_zero(&wz);
        let body = if p.group > 1 && p.group == p.cin && p.cout == p.cin {
            ConvBody::Depthwise(
                geo,
                PackedDepthwise::new(p.cin, win.kernel, &wv, zp)
                    .map_err(|e| kernel_error(node, e))?,
            )
        } else {
            let g = Geometry::of_conv(&p);
            let w = g
                .pack_conv(p.cout, wv, zp)
                .map_err(|e| kernel_error(node, e))?;
            ConvBody::Gemm(g, w)
        };
        let nhwc_in = node.attr_int(nhwc::NHWC_IN, 0)? != 0;
        let nhwc_out = node.attr_int(nhwc::NHWC_OUT, 0)? != 0;
        let gemm_reads_nhwc = matches!(&body, ConvBody::Gemm(g, _) if g.reads_nhwc());
        if (nhwc_in && !gemm_reads_nhwc) || (nhwc_out && !matches!(body, ConvBody::Gemm(..))) {
            return Err(
                node.error("an NHWC integer convolution must be group 1 with unit width dilation")
            );
        }
        Ok(QConv {
            batch: p.batch,
            nhwc_in,
            nhwc_out,
            in_len: p.cin * win.input[0] * win.input[1],
            cout: p.cout,
            pixels: win.output[0] * win.output[1],
            layer,
            body,
        })
    }

    /// f32 slots of the pixel-major GEMM result, and of the whole scratch (result + patches).
    fn scratch_split(&self) -> (usize, usize) {
        match &self.body {
            ConvBody::Depthwise(..) => (0, 0),
            ConvBody::Gemm(g, _) => {
                let res = if self.nhwc_out {
                    0
                } else {
                    (self.pixels * self.cout).div_ceil(self.layer.store.per_slot())
                };
                (res, res + g.cols_len().div_ceil(4))
            }
        }
    }

    fn run(&self, x: &[f32], out: &mut [f32], scratch: &mut [f32]) {
        let xb = bytes(x);
        let in_len = self.in_len;
        let out_len = self.cout * self.pixels;
        for b in 0..self.batch {
            let xi = &xb[b * in_len..(b + 1) * in_len];
            match &self.body {
                ConvBody::Depthwise(g, w) => {
                    let a = activations(self.layer.x, self.layer.x_zero, xi);
                    let o = self.layer.store.output(out, b * out_len, out_len);
                    checked(k8::depthwise(g, a, w, o));
                }
                ConvBody::Gemm(g, w) => {
                    let (res_len, _) = self.scratch_split();
                    let (res, rest) = scratch.split_at_mut(res_len);
                    let ty = (self.layer.x, self.layer.x_zero);
                    let buf = bytes_mut(rest);
                    if self.nhwc_out {
                        // Pixel-major is the NHWC layout: stored in place.
                        let o = self.layer.store.output(out, b * out_len, out_len);
                        checked(g.conv_gemm(xi, self.nhwc_in, ty, buf, w, o, self.cout));
                        continue;
                    }
                    let o = self.layer.store.output(res, 0, out_len);
                    checked(g.conv_gemm(xi, self.nhwc_in, ty, buf, w, o, self.cout));
                    // The GEMM result is pixel-major; the output is channel-major (NCHW).
                    match self.layer.store {
                        Store::Requant { .. } => super::conv::transpose2d_u8(
                            &bytes(res)[..out_len],
                            self.pixels,
                            self.cout,
                            &mut bytes_mut(out)[b * out_len..(b + 1) * out_len],
                        ),
                        Store::Dequant { .. } => super::conv::transpose2d(
                            &res[..out_len],
                            self.pixels,
                            self.cout,
                            &mut out[b * out_len..(b + 1) * out_len],
                        ),
                    }
                }
            }
        }
    }
}

/// Evaluates `QuantizeLinear`/`DequantizeLinear` on constant tensors (constant folding);
/// `None` for any other node.
pub fn eval(node: &Node, inputs: &[Option<&Tensor>]) -> Result<Option<Tensor>, GraphError> {
    let standard = node.domain.is_empty() || node.domain == "ai.onnx";
    if !standard || !matches!(node.op_type.as_str(), "QuantizeLinear" | "DequantizeLinear") {
        return Ok(None);
    }
    let x = inputs
        .first()
        .copied()
        .flatten()
        .ok_or_else(|| node.error("missing input 0"))?;
    let a = Affine::of_node(node, x.shape(), inputs)?;
    let shape = x.shape().to_vec();
    let data = if node.op_type == "QuantizeLinear" {
        let ty = quantize_output(node, inputs)?;
        let v = x.as_f32().map_err(|e| node.error(format!("input: {e}")))?;
        let q = v.iter().enumerate().map(|(i, &x)| {
            let (s, z) = a.at(i);
            quantize_one(x, s, z, ty.range())
        });
        match ty {
            QType::U8 => TensorData::U8(q.map(|v| v as u8).collect()),
            QType::S8 => TensorData::I8(q.map(|v| v as i8).collect()),
        }
    } else {
        let ints: Vec<i32> = match x.data() {
            TensorData::U8(v) => v.iter().map(|&x| i32::from(x)).collect(),
            TensorData::I8(v) => v.iter().map(|&x| i32::from(x)).collect(),
            TensorData::I32(v) => v.clone(),
            other => {
                return Err(node.error(format!(
                    "cannot dequantize {} (u8, i8 or i32)",
                    other.dtype()
                )))
            }
        };
        TensorData::F32(
            ints.iter()
                .enumerate()
                .map(|(i, &q)| {
                    let (s, z) = a.at(i);
                    (i64::from(q) - i64::from(z)) as f32 * s
                })
                .collect(),
        )
    };
    Tensor::new(shape, data)
        .map(Some)
        .map_err(|e| node.error(e.to_string()))
}
