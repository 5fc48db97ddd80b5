//! Operator implementations, built once from a node and its input types into a [`Kernel`] that
//! runs on plain slices. The engine runs them from its arena; constant folding
//! ([`eval_node`]) runs the very same kernels on tensors.

/// Defines `$name(args)` running `$body` (an `#[inline(always)]` function) compiled for
/// AVX2+FMA when [`crate::kernels::isa`] reports them, and as portable code otherwise. Both come
/// from the same source: the portable build is the scalar twin of the AVX2 one.
macro_rules! avx2_twin {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) => $body:path) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if crate::kernels::isa().has_avx2() {
                    // SAFETY: `isa()` reports AVX2 only after detecting AVX2 and FMA on this CPU.
                    unsafe { avx2($($arg),*) };
                    return;
                }
            }
            $body($($arg),*)
        }
    };
}

pub mod b1;
pub mod conv;
pub mod elementwise;
pub mod integer;
pub mod layout;
pub mod matmul;
pub mod nbits;
pub mod norm;
mod patches;
pub mod pool;
pub mod pool_hwc;
pub mod qelem;
pub mod quantized;

use crate::graph::shape::{
    constant_value, infer_node, matmul_shapes, norm_axis, pool_window, reduce_axes, shape_value,
    slice_axes, softmax_split, transpose_perm, ConvParams, GemmParams, ValueType,
};
use crate::graph::shape_int;
use crate::graph::{GraphError, Node};
use crate::kernels::f32::Activation;
use crate::tensor::{DataType, Tensor, TensorData};

use b1::{B1Layer, XnorLayer};
use conv::Conv;
use elementwise::{Arith, BinOp, Broadcast, Unary};
use integer::DynamicQuant;
use layout::{Concat, Gather, Slice, Transpose};
use matmul::MatMul;
use nbits::MatMulNBits;
use norm::{ChannelAffine, LayerNorm, ReduceMean, Softmax};
use pool::{Pool, PoolKind};
use qelem::QElem;
use quantized::QKernel;

/// One compiled operator.
#[derive(Debug, Clone)]
pub enum Kernel {
    /// Output shares the input's elements (Reshape, Flatten, Squeeze, Unsqueeze, Identity,
    /// Dropout, a Cast to the same type): no work, no copy.
    Alias,
    /// Elementwise function.
    Unary(Unary),
    /// Broadcast arithmetic.
    Binary(BinOp, Broadcast),
    /// Convolution (direct depthwise or im2col + GEMM).
    Conv(Box<Conv>),
    /// Max or average pooling.
    Pool(Pool),
    /// Mean of each plane of `size` elements.
    GlobalAveragePool {
        /// Elements per plane.
        size: usize,
    },
    /// Gemm or MatMul.
    MatMul(Box<MatMul>),
    /// Transpose.
    Transpose(Transpose),
    /// Concat.
    Concat(Concat),
    /// Slice.
    Slice(Slice),
    /// Gather with constant indices.
    Gather(Gather),
    /// ReduceMean.
    ReduceMean(ReduceMean),
    /// Softmax.
    Softmax(Softmax),
    /// LayerNormalization.
    LayerNorm(LayerNorm),
    /// BatchNormalization left unfolded.
    BatchNorm(ChannelAffine),
    /// QuantizeLinear/DequantizeLinear, integer MaxPool and fused integer layers, on u8/i8
    /// values stored packed in the arena.
    Quantized(Box<QKernel>),
    /// Elementwise work on u8/i8 values without an f32 round trip ([`qelem`]).
    QElem(Box<QElem>),
    /// A fused layer with ±1 weights on the binary kernels ([`b1`]).
    B1(Box<B1Layer>),
    /// A layer with `±α` weights reading `Sign` of its input, on the XNOR-popcount kernel
    /// ([`b1::XnorLayer`]).
    Xnor(Box<XnorLayer>),
    /// A dynamic INT8 MatMul or Conv chain folded into one node ([`integer`]).
    DynamicQuant(Box<DynamicQuant>),
    /// `com.microsoft::MatMulNBits`, 4-bit weights ([`nbits`]).
    MatMulNBits(Box<MatMulNBits>),
}

/// The activation a Relu or Clip node applies, when it can be fused into a GEMM store (Clip
/// bounds must be constant).
pub fn fusable_activation(
    node: &Node,
    opset: i64,
    consts: &[Option<&Tensor>],
) -> Result<Option<Activation>, GraphError> {
    if !node.domain.is_empty() {
        return Ok(None);
    }
    match node.op_type.as_str() {
        "Relu" => Ok(Some(Activation::Relu)),
        "Clip" => match clip_bounds(node, opset, consts) {
            Ok((lo, hi)) => Ok(Some(Activation::Clip(lo, hi))),
            Err(_) => Ok(None),
        },
        _ => Ok(None),
    }
}

fn clip_bounds(
    node: &Node,
    opset: i64,
    consts: &[Option<&Tensor>],
) -> Result<(f32, f32), GraphError> {
    if opset < 11 {
        return Ok((
            node.attr_float("min", f32::MIN)?,
            node.attr_float("max", f32::MAX)?,
        ));
    }
    let bound = |i: usize, default: f32| -> Result<f32, GraphError> {
        if node.input(i).is_none() {
            return Ok(default);
        }
        match consts.get(i).copied().flatten().map(|t| t.as_f32()) {
            Some(Ok([v])) => Ok(*v),
            _ => Err(node.error(format!("Clip bound {i} must be a constant f32 scalar"))),
        }
    };
    Ok((bound(1, f32::MIN)?, bound(2, f32::MAX)?))
}

fn const_f32<'a>(
    node: &Node,
    consts: &[Option<&'a Tensor>],
    i: usize,
    what: &str,
) -> Result<&'a [f32], GraphError> {
    consts
        .get(i)
        .copied()
        .flatten()
        .ok_or_else(|| node.error(format!("{what} must be a constant")))?
        .as_f32()
        .map_err(|e| node.error(format!("{what}: {e}")))
}

fn opt_const_f32<'a>(
    node: &Node,
    consts: &[Option<&'a Tensor>],
    i: usize,
    what: &str,
) -> Result<Option<&'a [f32]>, GraphError> {
    match node.input(i) {
        None => Ok(None),
        Some(_) => const_f32(node, consts, i, what).map(Some),
    }
}

impl Kernel {
    /// Compiles `node` for its input types (`None` for omitted inputs), the values of its
    /// constant inputs, and an activation to fuse into the store (Conv, Gemm and MatMul only;
    /// pass [`Activation::None`] otherwise).
    pub fn compile(
        node: &Node,
        opset: i64,
        types: &[Option<&ValueType>],
        consts: &[Option<&Tensor>],
        act: Activation,
    ) -> Result<Kernel, GraphError> {
        let shape = |i: usize| -> Result<&[usize], GraphError> {
            types
                .get(i)
                .copied()
                .flatten()
                .map(|t| t.shape.as_slice())
                .ok_or_else(|| node.error(format!("missing input {i}")))
        };
        if node.attr_int(b1::SIGN_INPUT, 0)? != 0 {
            return Ok(Kernel::Xnor(Box::new(XnorLayer::compile(
                node, types, consts, act,
            )?)));
        }
        if b1::chosen() {
            if let Some(b) = B1Layer::compile(node, types, consts)? {
                if act != Activation::None {
                    return Err(node.error("a quantized op takes no fused activation"));
                }
                return Ok(Kernel::B1(Box::new(b)));
            }
        }
        if let Some(e) = QElem::compile(node, types, consts)? {
            if act != Activation::None {
                return Err(node.error("a quantized op takes no fused activation"));
            }
            return Ok(Kernel::QElem(Box::new(e)));
        }
        if let Some(q) = QKernel::compile(node, types, consts)? {
            if act != Activation::None {
                return Err(node.error("a quantized op takes no fused activation"));
            }
            return Ok(Kernel::Quantized(Box::new(q)));
        }
        let x_type = || {
            types
                .first()
                .copied()
                .flatten()
                .ok_or_else(|| node.error("missing input 0"))
        };
        match (node.domain.as_str(), node.op_type.as_str()) {
            (integer::INTERNAL_DOMAIN, integer::DYNAMIC_MATMUL | integer::DYNAMIC_CONV) => {
                return Ok(Kernel::DynamicQuant(Box::new(DynamicQuant::compile(
                    node,
                    x_type()?,
                    consts,
                )?)))
            }
            (shape_int::MS_DOMAIN, "MatMulNBits") => {
                return Ok(Kernel::MatMulNBits(Box::new(MatMulNBits::compile(
                    node,
                    x_type()?,
                    consts,
                )?)))
            }
            _ => {}
        }
        if !node.domain.is_empty() && node.domain != "ai.onnx" {
            return Err(node.unsupported());
        }
        let fusing = act != Activation::None;
        if fusing && !matches!(node.op_type.as_str(), "Conv" | "Gemm" | "MatMul") {
            return Err(node.error("only Conv, Gemm and MatMul take a fused activation"));
        }
        Ok(match node.op_type.as_str() {
            "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" | "Identity" | "Dropout" => {
                Kernel::Alias
            }
            "Cast" => {
                let from = types.first().copied().flatten().map(|t| t.dtype);
                let to = infer_node(node, opset, types, consts)?;
                if from != to.first().map(|t| t.dtype) {
                    return Err(node.error("a Cast between types runs only on constants"));
                }
                Kernel::Alias
            }
            "Relu" => Kernel::Unary(Unary::Relu),
            "Sigmoid" => Kernel::Unary(Unary::Sigmoid),
            "Tanh" => Kernel::Unary(Unary::Tanh),
            "Erf" => Kernel::Unary(Unary::Erf),
            "Sqrt" => Kernel::Unary(Unary::Sqrt),
            "Sign" => Kernel::Unary(Unary::Sign),
            "HardSwish" => Kernel::Unary(Unary::HardSwish),
            "HardSigmoid" => Kernel::Unary(Unary::HardSigmoid {
                alpha: node.attr_float("alpha", 0.2)?,
                beta: node.attr_float("beta", 0.5)?,
            }),
            "Gelu" => Kernel::Unary(Unary::Gelu {
                tanh: match node.attr_str("approximate", "none")?.as_str() {
                    "none" => false,
                    "tanh" => true,
                    other => return Err(node.error(format!("unknown approximate `{other}`"))),
                },
            }),
            "Clip" => {
                let (lo, hi) = clip_bounds(node, opset, consts)?;
                Kernel::Unary(Unary::Clip { lo, hi })
            }
            op @ ("Add" | "Sub" | "Mul" | "Div" | "Pow") => {
                let same_type = types.first().copied().flatten().map(|t| t.dtype)
                    == types.get(1).copied().flatten().map(|t| t.dtype);
                if !same_type {
                    return Err(node.error("operands must have the same type"));
                }
                let (a, b) = (shape(0)?, shape(1)?);
                let bc = Broadcast::new(a, b).ok_or_else(|| {
                    node.error(format!("shapes {a:?} and {b:?} do not broadcast"))
                })?;
                let op = BinOp::from_op(op).ok_or_else(|| node.unsupported())?;
                Kernel::Binary(op, bc)
            }
            "Conv" => {
                let p = ConvParams::resolve(node, shape(0)?, shape(1)?)?;
                let w = const_f32(node, consts, 1, "Conv weight")?;
                let b = opt_const_f32(node, consts, 2, "Conv bias")?;
                Kernel::Conv(Box::new(Conv::new(p, w, b, act)))
            }
            op @ ("MaxPool" | "AveragePool") => {
                if node.outputs.len() > 1 && node.outputs.get(1).is_some_and(|o| !o.is_empty()) {
                    return Err(node.error("the Indices output of MaxPool is not supported"));
                }
                let kind = if op == "MaxPool" {
                    PoolKind::Max
                } else {
                    PoolKind::Average {
                        count_include_pad: node.attr_int("count_include_pad", 0)? != 0,
                    }
                };
                Kernel::Pool(Pool {
                    window: pool_window(node, shape(0)?)?,
                    kind,
                })
            }
            "GlobalAveragePool" => Kernel::GlobalAveragePool {
                size: shape(0)?.get(2..).unwrap_or(&[]).iter().product(),
            },
            "Gemm" => {
                let c_shape = types.get(2).copied().flatten().map(|t| t.shape.as_slice());
                let p = GemmParams::resolve(node, shape(0)?, shape(1)?, c_shape)?;
                let b = consts
                    .get(1)
                    .copied()
                    .flatten()
                    .map(|t| t.as_f32())
                    .transpose()
                    .map_err(|e| node.error(e.to_string()))?;
                let c = match (node.input(2), c_shape) {
                    (Some(_), Some(cs)) => Some((const_f32(node, consts, 2, "Gemm C")?, cs)),
                    _ => None,
                };
                Kernel::MatMul(Box::new(MatMul::gemm(&p, b, c, act)))
            }
            "MatMul" => {
                let (a, b) = (shape(0)?, shape(1)?);
                let s = matmul_shapes(node, a, b)?;
                let bd = consts
                    .get(1)
                    .copied()
                    .flatten()
                    .map(|t| t.as_f32())
                    .transpose()
                    .map_err(|e| node.error(e.to_string()))?;
                let mm = MatMul::batched(a, b, bd, &s, act);
                if fusing && !mm.is_packed() {
                    return Err(
                        node.error("an activation fuses only into a MatMul with constant 2-D B")
                    );
                }
                Kernel::MatMul(Box::new(mm))
            }
            "Transpose" => {
                let s = shape(0)?;
                Kernel::Transpose(Transpose::new(s, &transpose_perm(node, s.len())?))
            }
            "Concat" => {
                let s0 = shape(0)?;
                let axis = norm_axis(node, node.attr_int("axis", 0)?, s0.len(), false)?;
                let shapes = (0..node.inputs.len())
                    .map(shape)
                    .collect::<Result<Vec<_>, _>>()?;
                Kernel::Concat(Concat::new(&shapes, axis))
            }
            "Slice" => {
                let s = shape(0)?;
                Kernel::Slice(Slice::new(s, &slice_axes(node, opset, s, consts)?))
            }
            "Gather" => {
                let s = shape(0)?;
                let axis = norm_axis(node, node.attr_int("axis", 0)?, s.len(), false)?;
                let raw = consts
                    .get(1)
                    .copied()
                    .flatten()
                    .ok_or_else(|| node.error("indices must be a constant"))?
                    .to_i64_vec()
                    .map_err(|e| node.error(format!("indices: {e}")))?;
                let dim = s[axis] as i64;
                let indices = raw
                    .iter()
                    .map(|&i| {
                        let j = if i < 0 { i + dim } else { i };
                        if (0..dim).contains(&j) {
                            Ok(j as usize)
                        } else {
                            Err(node.error(format!(
                                "index {i} is out of range for axis {axis} of size {dim}"
                            )))
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Kernel::Gather(Gather::new(s, axis, indices))
            }
            "ReduceMean" => {
                let s = shape(0)?;
                let (axes, _) = reduce_axes(node, opset, s.len(), consts)?;
                Kernel::ReduceMean(ReduceMean::new(s, &axes))
            }
            "Softmax" => {
                let (outer, len, inner) = softmax_split(node, opset, shape(0)?)?;
                Kernel::Softmax(Softmax { outer, len, inner })
            }
            "LayerNormalization" => {
                let s = shape(0)?;
                let axis = norm_axis(node, node.attr_int("axis", -1)?, s.len(), false)?;
                let inner: usize = s[axis..].iter().product();
                let scale = const_f32(node, consts, 1, "LayerNormalization scale")?;
                let bias = opt_const_f32(node, consts, 2, "LayerNormalization bias")?;
                if scale.len() != inner || bias.is_some_and(|b| b.len() != inner) {
                    return Err(node.error(format!("scale and bias must hold {inner} elements")));
                }
                if node.outputs.iter().skip(1).any(|o| !o.is_empty()) {
                    return Err(node.error("the Mean and InvStdDev outputs are not supported"));
                }
                Kernel::LayerNorm(LayerNorm {
                    inner,
                    epsilon: node.attr_float("epsilon", 1e-5)?,
                    scale: scale.to_vec(),
                    bias: bias.map(<[f32]>::to_vec),
                })
            }
            "BatchNormalization" => {
                if node.attr_int("training_mode", 0)? != 0
                    || node.outputs.iter().skip(1).any(|o| !o.is_empty())
                {
                    return Err(node.error("training-mode BatchNormalization is not supported"));
                }
                let s = shape(0)?;
                let p = (1..5)
                    .map(|i| const_f32(node, consts, i, "BatchNormalization parameter"))
                    .collect::<Result<Vec<_>, _>>()?;
                let plane = s.get(2..).unwrap_or(&[]).iter().product();
                Kernel::BatchNorm(ChannelAffine::from_bn(
                    plane,
                    p[0],
                    p[1],
                    p[2],
                    p[3],
                    node.attr_float("epsilon", 1e-5)?,
                ))
            }
            _ => return Err(node.unsupported()),
        })
    }

    /// Floats of scratch memory the kernel needs while running.
    pub fn scratch_len(&self) -> usize {
        match self {
            Kernel::Conv(c) => c.scratch_len(),
            Kernel::MatMul(m) => m.scratch_len(),
            Kernel::Quantized(q) => q.scratch_len(),
            Kernel::B1(b) => b.scratch_len(),
            Kernel::Xnor(x) => x.scratch_len(),
            Kernel::DynamicQuant(d) => d.scratch_len(),
            _ => 0,
        }
    }

    /// Bytes of weights the kernel holds in its own layout.
    pub fn packed_bytes(&self) -> usize {
        match self {
            Kernel::Conv(c) => c.packed_bytes(),
            Kernel::MatMul(m) => m.packed_bytes(),
            Kernel::Quantized(q) => q.packed_bytes(),
            Kernel::B1(b) => b.packed_bytes(),
            Kernel::Xnor(x) => x.packed_bytes(),
            Kernel::DynamicQuant(d) => d.packed_bytes(),
            Kernel::MatMulNBits(m) => m.packed_bytes(),
            _ => 0,
        }
    }

    /// Name of the compute kernel this runs on, for records.
    pub fn kernel_name(&self) -> String {
        match self {
            Kernel::Conv(c) => c.kernel_name(),
            Kernel::MatMul(m) if m.is_packed() => crate::kernels::f32::gemm_kernel_name(),
            Kernel::MatMul(_) => "f32-matmul-direct".into(),
            Kernel::Alias => "alias".into(),
            Kernel::Unary(_) | Kernel::Binary(..) => "f32-elementwise".into(),
            Kernel::Pool(_) | Kernel::GlobalAveragePool { .. } => "f32-pool-direct".into(),
            Kernel::Transpose(_) | Kernel::Concat(_) | Kernel::Slice(_) | Kernel::Gather(_) => {
                "copy".into()
            }
            Kernel::ReduceMean(_)
            | Kernel::Softmax(_)
            | Kernel::LayerNorm(_)
            | Kernel::BatchNorm(_) => "f32-norm-direct".into(),
            Kernel::Quantized(q) => q.kernel_name(),
            Kernel::QElem(e) => e.kernel_name(),
            Kernel::B1(b) => b.kernel_name(),
            Kernel::Xnor(x) => x.kernel_name(),
            Kernel::DynamicQuant(d) => d.kernel_name(),
            Kernel::MatMulNBits(m) => m.kernel_name(),
        }
    }

    /// Whether the kernel does a layer's multiply-accumulates (GEMM, convolution), the work
    /// that dominates a model, rather than moving or normalising values.
    pub fn multiplies(&self) -> bool {
        match self {
            Kernel::Conv(_)
            | Kernel::MatMul(_)
            | Kernel::B1(_)
            | Kernel::Xnor(_)
            | Kernel::DynamicQuant(_)
            | Kernel::MatMulNBits(_) => true,
            Kernel::Quantized(q) => matches!(**q, QKernel::Conv(_) | QKernel::Gemm(_)),
            _ => false,
        }
    }

    /// Runs on f32 data: `ins` in node input order (empty for omitted or non-f32 constant
    /// inputs), `out` exactly the output's size, `scratch` at least [`Kernel::scratch_len`].
    pub fn run(&self, ins: &[&[f32]], out: &mut [f32], scratch: &mut [f32]) {
        let x = ins.first().copied().unwrap_or(&[]);
        match self {
            Kernel::Unary(u) => u.run(x, out),
            Kernel::Binary(op, bc) => {
                elementwise::binary_f32(bc, *op, x, ins.get(1).copied().unwrap_or(&[]), out)
            }
            Kernel::Conv(c) => c.run(x, out, scratch),
            Kernel::Pool(p) => p.run(x, out),
            Kernel::GlobalAveragePool { size } => pool::global_average(x, *size, out),
            Kernel::MatMul(m) => m.run(x, ins.get(1).copied().unwrap_or(&[]), out, scratch),
            Kernel::ReduceMean(r) => r.run(x, out),
            Kernel::Softmax(s) => s.run(x, out),
            Kernel::LayerNorm(l) => l.run(x, out),
            Kernel::BatchNorm(b) => b.run(x, out),
            Kernel::Quantized(q) => q.run(x, out, scratch),
            Kernel::QElem(e) => e.run(ins, out),
            Kernel::B1(b) => b.run(x, out, scratch),
            Kernel::Xnor(l) => l.run(x, out, scratch),
            Kernel::DynamicQuant(d) => d.run(x, out, scratch),
            Kernel::MatMulNBits(m) => m.run(x, out),
            _ => {
                let handled = self.run_generic(ins, out);
                debug_assert!(handled, "every kernel runs on f32");
            }
        }
    }

    /// Runs the kernels that work for any element type (arithmetic, data movement, aliasing).
    /// Returns `false` for an f32-only kernel.
    fn run_generic<T: Arith>(&self, ins: &[&[T]], out: &mut [T]) -> bool {
        let x = ins.first().copied().unwrap_or(&[]);
        match self {
            Kernel::Alias => out.copy_from_slice(x),
            Kernel::Binary(op, bc) => bc.run(*op, x, ins.get(1).copied().unwrap_or(&[]), out),
            Kernel::Transpose(t) => t.run(x, out),
            Kernel::Concat(c) => c.run(ins, out),
            Kernel::Slice(s) => s.run(x, out),
            Kernel::Gather(g) => g.run(x, out),
            _ => return false,
        }
        true
    }
}

/// Evaluates one node on constant tensors with the engine's kernels: the evaluator constant
/// folding uses ([`crate::graph::fold::fold_constants`]).
pub fn eval_node(
    node: &Node,
    opset: i64,
    inputs: &[Option<&Tensor>],
) -> Result<Vec<Tensor>, GraphError> {
    let bad = |e: crate::tensor::TensorError| node.error(e.to_string());
    let types: Vec<Option<ValueType>> = inputs.iter().map(|t| t.map(ValueType::of)).collect();
    let type_refs: Vec<Option<&ValueType>> = types.iter().map(Option::as_ref).collect();
    match node.op_type.as_str() {
        "Constant" => return Ok(vec![constant_value(node)?]),
        "Shape" => {
            let t = inputs
                .first()
                .copied()
                .flatten()
                .ok_or_else(|| node.error("missing input 0"))?;
            return Ok(vec![shape_value(node, t.shape())?]);
        }
        _ => {}
    }
    if let Some(t) = quantized::eval(node, inputs)? {
        return Ok(vec![t]);
    }
    let outs = infer_node(node, opset, &type_refs, inputs)?;
    let out_t = outs.first().ok_or_else(|| node.error("no output"))?;
    let x = inputs
        .first()
        .copied()
        .flatten()
        .ok_or_else(|| node.error("missing input 0"))?;
    if node.op_type == "Cast" {
        return Ok(vec![cast(x, out_t.dtype).map_err(bad)?]);
    }
    let kernel = Kernel::compile(node, opset, &type_refs, inputs, Activation::None)?;
    let n = out_t.numel();
    let data = match x.data() {
        TensorData::F32(_) => {
            let ins: Vec<&[f32]> = inputs
                .iter()
                .map(|t| t.and_then(|t| t.as_f32().ok()).unwrap_or(&[]))
                .collect();
            let mut out = vec![0.0f32; n];
            let mut scratch = vec![0.0f32; kernel.scratch_len()];
            kernel.run(&ins, &mut out, &mut scratch);
            TensorData::F32(out)
        }
        TensorData::I64(_) => TensorData::I64(run_typed(node, &kernel, inputs, n, |d| match d {
            TensorData::I64(v) => Some(v.as_slice()),
            _ => None,
        })?),
        TensorData::I32(_) => TensorData::I32(run_typed(node, &kernel, inputs, n, |d| match d {
            TensorData::I32(v) => Some(v.as_slice()),
            _ => None,
        })?),
        other => return Err(node.error(format!("cannot evaluate on {} constants", other.dtype()))),
    };
    Ok(vec![Tensor::new(out_t.shape.clone(), data).map_err(bad)?])
}

fn run_typed<T: Arith>(
    node: &Node,
    kernel: &Kernel,
    inputs: &[Option<&Tensor>],
    n: usize,
    get: impl Fn(&TensorData) -> Option<&[T]>,
) -> Result<Vec<T>, GraphError> {
    let ins: Vec<&[T]> = inputs
        .iter()
        .map(|t| t.and_then(|t| get(t.data())).unwrap_or(&[]))
        .collect();
    let mut out = vec![T::default(); n];
    if !kernel.run_generic(&ins, &mut out) {
        return Err(node.error(format!(
            "cannot evaluate on {} constants",
            inputs[0].map_or(DataType::F32, |t| t.dtype())
        )));
    }
    Ok(out)
}

/// Converts a tensor's elements to another type (float to integer truncates toward zero and
/// saturates, as Rust's `as` does).
fn cast(t: &Tensor, to: DataType) -> Result<Tensor, crate::tensor::TensorError> {
    let shape = t.shape().to_vec();
    let as_f64: Vec<f64> = match t.data() {
        TensorData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::I64(_) if to == DataType::I64 => return Ok(t.clone()),
        TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::I8(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::Bool(v) => v.iter().map(|&x| f64::from(u8::from(x))).collect(),
    };
    let data = match to {
        DataType::F32 => TensorData::F32(as_f64.iter().map(|&x| x as f32).collect()),
        DataType::I64 => TensorData::I64(as_f64.iter().map(|&x| x as i64).collect()),
        DataType::I32 => TensorData::I32(as_f64.iter().map(|&x| x as i32).collect()),
        DataType::U8 => TensorData::U8(as_f64.iter().map(|&x| x as u8).collect()),
        DataType::I8 => TensorData::I8(as_f64.iter().map(|&x| x as i8).collect()),
        DataType::Bool => TensorData::Bool(as_f64.iter().map(|&x| x != 0.0).collect()),
    };
    Tensor::new(shape, data)
}

/// `n` values in [-1, 1] (steps of 0.001) from a seeded xorshift, for the ops' unit tests.
#[cfg(test)]
pub(crate) fn test_values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}
