//! QDQ graphs: the types of `QuantizeLinear`/`DequantizeLinear` and of quench's fused integer
//! layers, and the pass ([`fuse_qdq`]) that folds QDQ patterns into those layers.
//!
//! A QDQ model computes every layer in f32 between `DequantizeLinear` (DQ) and `QuantizeLinear`
//! (Q) nodes. Training frameworks export weights as f32 constants quantized in the graph
//! (PyTorch's `torch.onnx.export` of a QAT model writes `W → QuantizeLinear → DequantizeLinear`);
//! [`fold_constant_quantize`] turns such a `QuantizeLinear` of constants into the integer
//! constant it computes, so those weights look like any exported i8 weight. The pass then
//! rewrites, until nothing changes:
//! - `DQ(x) → MaxPool/Reshape/Flatten/Squeeze/Unsqueeze` into the same op on the integers
//!   followed by the DQ (exact: max commutes with a positive-scale dequantization, the others
//!   only move elements);
//! - `Q(DQ(q))` with the same scale, zero point and type into `q` (exact);
//! - `DQ(x) → Conv/Gemm/MatMul(·, DQ(W), bias) → [Relu] → [Q]` into one [`QCONV`]/[`QGEMM`]
//!   node of [`DOMAIN`] that takes the integer input and weights and stores either requantized
//!   u8/i8 (when a Q follows) or f32, with the Relu fused.
//!
//! Patterns that do not fit (u8 weights, per-tensor parameters that are not constants, Gemm with
//! transA/alpha/beta) are left as they are and run through the standalone Q/DQ kernels, which are
//! exact too.

use super::shape::{ConvParams, ValueType};
use super::{Graph, GraphError, Node};
use crate::tensor::{DataType, Tensor, TensorData};

/// Domain of quench's fused quantized nodes (internal to a plan: never written to a file).
pub const DOMAIN: &str = "ai.quench";
/// Fused integer convolution: inputs as [`QInputs::LAYOUT`], the Conv attributes, `relu`.
pub const QCONV: &str = "QConv";
/// Fused integer Gemm/MatMul: inputs as [`QInputs::LAYOUT`], `transB`, `relu`.
pub const QGEMM: &str = "QGemm";
/// `DequantizeLinear → single-input f32 ops → QuantizeLinear` as one byte-to-byte lookup:
/// inputs `x` (u8/i8) and a constant 256-entry u8/i8 table indexed by `x`'s byte, whose type is
/// the output's.
pub const QLOOKUP: &str = "QLookup";
/// `Add(a, b) → QuantizeLinear` with each operand u8/i8 (dequantized per tensor inside) or f32:
/// inputs as [`QBinaryInputs::LAYOUT`]. `b` has `a`'s shape, or broadcasts one value over each
/// trailing plane of `a`.
pub const QADD: &str = "QAdd";
/// `Mul(a, b) → QuantizeLinear`, inputs and shapes as [`QADD`].
pub const QMUL: &str = "QMul";
/// `DequantizeLinear → GlobalAveragePool` on the u8/i8 value: inputs `x`, its scale and zero
/// point; f32 output.
pub const QGLOBAL_AVERAGE_POOL: &str = "QGlobalAveragePool";

/// Positions of the inputs of [`QADD`]/[`QMUL`]. An operand whose scale is the empty name is
/// f32 (no zero point either); the output scale and zero point are those of the Q it absorbed.
#[derive(Debug, Clone, Copy)]
pub struct QBinaryInputs {
    /// Operand `a` (the full-shape one).
    pub a: usize,
    /// Its scale, or empty for an f32 operand.
    pub a_scale: usize,
    /// Its zero point.
    pub a_zero: usize,
    /// Operand `b`.
    pub b: usize,
    /// Its scale, or empty for an f32 operand.
    pub b_scale: usize,
    /// Its zero point.
    pub b_zero: usize,
    /// Output scale.
    pub y_scale: usize,
    /// Output zero point (its type is the output type; u8 when absent).
    pub y_zero: usize,
}

impl QBinaryInputs {
    /// The input order of [`QADD`] and [`QMUL`].
    pub const LAYOUT: QBinaryInputs = QBinaryInputs {
        a: 0,
        a_scale: 1,
        a_zero: 2,
        b: 3,
        b_scale: 4,
        b_zero: 5,
        y_scale: 6,
        y_zero: 7,
    };
}

/// Positions of a fused node's inputs. Omitted optional inputs are empty names: no bias, no
/// weight zero point, and no output scale/zero point for an f32 output.
#[derive(Debug, Clone, Copy)]
pub struct QInputs {
    /// u8/i8 input at run time.
    pub x: usize,
    /// Its scale (f32 scalar).
    pub x_scale: usize,
    /// Its zero point (u8/i8 scalar).
    pub x_zero: usize,
    /// Constant i8 weights (Conv layout, or Gemm B as `transB` says).
    pub w: usize,
    /// Weight scales, per tensor or per output channel.
    pub w_scale: usize,
    /// Weight zero points (i8), as many as scales.
    pub w_zero: usize,
    /// f32 bias per output channel (a folded int32 DequantizeLinear).
    pub bias: usize,
    /// Output scale (f32 scalar); absent for an f32 output.
    pub y_scale: usize,
    /// Output zero point (u8/i8 scalar; its type is the output type).
    pub y_zero: usize,
}

impl QInputs {
    /// The input order of [`QCONV`] and [`QGEMM`].
    pub const LAYOUT: QInputs = QInputs {
        x: 0,
        x_scale: 1,
        x_zero: 2,
        w: 3,
        w_scale: 4,
        w_zero: 5,
        bias: 6,
        y_scale: 7,
        y_zero: 8,
    };
}

/// The output type of a `QuantizeLinear` node: its zero point's type, u8 without one.
pub fn quantize_output_type(
    node: &Node,
    consts: &[Option<&Tensor>],
) -> Result<DataType, GraphError> {
    match (node.input(2), consts.get(2).copied().flatten()) {
        (None, _) => Ok(DataType::U8),
        (Some(_), Some(z)) if matches!(z.dtype(), DataType::U8 | DataType::I8) => Ok(z.dtype()),
        (Some(_), Some(z)) => Err(node.error(format!(
            "zero point of type {} is not supported (u8 or i8)",
            z.dtype()
        ))),
        (Some(_), None) => Err(node.error("the zero point must be a constant")),
    }
}

/// Whether `node` is the default-domain operator `op`.
pub(crate) fn is_standard(node: &Node, op: &str) -> bool {
    (node.domain.is_empty() || node.domain == "ai.onnx") && node.op_type == op
}

/// Output types of Q/DQ and fused nodes; `None` for any other node.
pub fn infer(
    node: &Node,
    types: &[Option<&ValueType>],
    consts: &[Option<&Tensor>],
) -> Result<Option<Vec<ValueType>>, GraphError> {
    let x = || {
        types
            .first()
            .copied()
            .flatten()
            .ok_or_else(|| node.error("missing input 0"))
    };
    if is_standard(node, "QuantizeLinear") {
        let x = x()?;
        if x.dtype != DataType::F32 {
            return Err(node.error(format!("input is {}, expected f32", x.dtype)));
        }
        let t = quantize_output_type(node, consts)?;
        return Ok(Some(vec![ValueType::new(t, x.shape.clone())]));
    }
    if is_standard(node, "DequantizeLinear") {
        let x = x()?;
        if !matches!(x.dtype, DataType::U8 | DataType::I8 | DataType::I32) {
            return Err(node.error(format!("input is {}, expected u8, i8 or i32", x.dtype)));
        }
        return Ok(Some(vec![ValueType::new(DataType::F32, x.shape.clone())]));
    }
    if node.domain != DOMAIN {
        return Ok(None);
    }
    if let Some(t) = infer_elementwise(node, types, consts)? {
        return Ok(Some(vec![t]));
    }
    let q = QInputs::LAYOUT;
    let x = x()?;
    let w = types
        .get(q.w)
        .copied()
        .flatten()
        .ok_or_else(|| node.error("missing weights"))?;
    let shape = match node.op_type.as_str() {
        QCONV => ConvParams::resolve(node, &x.shape, &w.shape)?.output_shape(),
        QGEMM => {
            let n = match (w.shape.as_slice(), node.attr_int("transB", 0)? != 0) {
                ([n, _], true) | ([_, n], false) => *n,
                (s, _) => return Err(node.error(format!("weights must be 2-D, got {s:?}"))),
            };
            let mut s = x.shape.clone();
            match s.last_mut() {
                Some(d) => *d = n,
                None => return Err(node.error("input must have at least one axis")),
            }
            s
        }
        _ => return Err(node.unsupported()),
    };
    let dtype = match (node.input(q.y_scale), node.input(q.y_zero)) {
        (None, _) => DataType::F32,
        (Some(_), None) => DataType::U8,
        (Some(_), Some(_)) => types
            .get(q.y_zero)
            .copied()
            .flatten()
            .map(|t| t.dtype)
            .ok_or_else(|| node.error("missing output zero point"))?,
    };
    Ok(Some(vec![ValueType::new(dtype, shape)]))
}

/// The output type of a [`QLOOKUP`], [`QADD`], [`QMUL`] or [`QGLOBAL_AVERAGE_POOL`] node;
/// `None` for other nodes.
fn infer_elementwise(
    node: &Node,
    types: &[Option<&ValueType>],
    consts: &[Option<&Tensor>],
) -> Result<Option<ValueType>, GraphError> {
    let ty = |i: usize| crate::graph::shape::need(node, types, i);
    Ok(Some(match node.op_type.as_str() {
        QLOOKUP => {
            let table = consts
                .get(1)
                .copied()
                .flatten()
                .filter(|t| t.len() == 256 && matches!(t.dtype(), DataType::U8 | DataType::I8))
                .ok_or_else(|| node.error("the table must be a constant of 256 u8 or i8"))?;
            ValueType::new(table.dtype(), ty(0)?.shape.clone())
        }
        QADD | QMUL => {
            let l = QBinaryInputs::LAYOUT;
            let shape = ty(l.a)?.shape.clone();
            let dtype = match node.input(l.y_zero) {
                None => DataType::U8,
                Some(_) => ty(l.y_zero)?.dtype,
            };
            ValueType::new(dtype, shape)
        }
        QGLOBAL_AVERAGE_POOL => {
            let x = ty(0)?;
            let shape = x
                .shape
                .iter()
                .enumerate()
                .map(|(i, &d)| if i < 2 { d } else { 1 })
                .collect();
            ValueType::new(DataType::F32, shape)
        }
        _ => return Ok(None),
    }))
}

/// Replaces every default-domain `QuantizeLinear` whose inputs are all constants (an f32 weight
/// quantized in the graph, as PyTorch exports QAT weights) by the integer constant `eval`
/// computes for it: the engine's own `QuantizeLinear`, so the folded values are exactly the
/// ones it would compute at run time, and a bad scale (0, negative, NaN) or a zero point that
/// does not fit is the same error naming the node. A `QuantizeLinear` whose output is a graph
/// output stays. Returns the number folded.
pub fn fold_constant_quantize(
    g: &mut Graph,
    eval: &super::fold::Evaluator<'_>,
) -> Result<usize, GraphError> {
    super::fold::fold_constant_nodes(g, eval, |n| is_standard(n, "QuantizeLinear"))
}

/// Folds QDQ patterns into fused integer nodes (see the module docs). Run it before constant
/// folding, which would otherwise turn the weights' DequantizeLinear into f32 constants.
/// Returns the number of rewrites.
pub fn fuse_qdq(g: &mut Graph) -> Result<usize, GraphError> {
    let mut total = 0;
    loop {
        let n = sink_dequantize(g) + drop_requantize(g) + fuse_layer(g)?;
        if n == 0 {
            break;
        }
        total += n;
        remove_dead(g);
    }
    Ok(total)
}

fn producer(g: &Graph, name: &str) -> Option<usize> {
    g.nodes
        .iter()
        .position(|n| n.outputs.iter().any(|o| o == name))
}

fn consumers(g: &Graph, name: &str) -> Vec<usize> {
    (0..g.nodes.len())
        .filter(|&i| g.nodes[i].inputs.iter().any(|x| x == name))
        .collect()
}

/// Scale (positive, finite) and zero point (value and type) of a per-tensor Q/DQ node whose
/// parameters are constants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PerTensor {
    /// The scale.
    pub scale: f32,
    /// The zero point.
    pub zero: i32,
    /// The quantized type (the zero point's).
    pub dtype: DataType,
}

/// The per-tensor constant parameters of a Q/DQ node, if it has them.
pub(crate) fn per_tensor(g: &Graph, node: &Node) -> Option<PerTensor> {
    let scale = match g.initializers.get(node.input(1)?)?.as_f32() {
        Ok([s]) if s.is_finite() && *s > 0.0 => *s,
        _ => return None,
    };
    let (zero, dtype) = match node.input(2) {
        None => (0, DataType::U8),
        Some(z) => match g.initializers.get(z)?.data() {
            TensorData::U8(v) if v.len() == 1 => (i32::from(v[0]), DataType::U8),
            TensorData::I8(v) if v.len() == 1 => (i32::from(v[0]), DataType::I8),
            _ => return None,
        },
    };
    Some(PerTensor { scale, zero, dtype })
}

/// The DQ node producing `name` from a run-time value with constant per-tensor parameters.
pub(crate) fn activation_dq(g: &Graph, name: &str) -> Option<(usize, PerTensor)> {
    let i = producer(g, name)?;
    let d = &g.nodes[i];
    if !is_standard(d, "DequantizeLinear") || g.initializers.contains_key(d.input(0)?) {
        return None;
    }
    Some((i, per_tensor(g, d)?))
}

fn fresh_name(g: &Graph, base: &str) -> String {
    let taken = |n: &str| {
        g.initializers.contains_key(n)
            || g.inputs.iter().any(|v| v.name == n)
            || g.nodes.iter().any(|x| x.outputs.iter().any(|o| o == n))
    };
    let mut name = format!("{base}_int");
    let mut k = 1;
    while taken(&name) {
        name = format!("{base}_int{k}");
        k += 1;
    }
    name
}

/// `DQ(q) → P` into `P(q) → DQ` for the ops that commute with dequantization.
fn sink_dequantize(g: &mut Graph) -> usize {
    for pi in 0..g.nodes.len() {
        let p = &g.nodes[pi];
        let movable = ["MaxPool", "Reshape", "Flatten", "Squeeze", "Unsqueeze"]
            .iter()
            .any(|op| is_standard(p, op));
        let single_out = p.outputs.len() == 1 || p.outputs[1..].iter().all(String::is_empty);
        let Some(x) = p.input(0) else { continue };
        if !movable || !single_out {
            continue;
        }
        let Some((di, _)) = activation_dq(g, x) else {
            continue;
        };
        let d = g.nodes[di].clone();
        let old_out = g.nodes[pi].outputs[0].clone();
        let int_out = fresh_name(g, &old_out);
        let p = &mut g.nodes[pi];
        p.inputs[0] = d.inputs[0].clone();
        p.outputs[0] = int_out.clone();
        let mut dq = d;
        dq.name = format!("{}_dequantize", p.name);
        dq.inputs[0] = int_out;
        dq.outputs = vec![old_out];
        g.nodes.insert(pi + 1, dq);
        return 1;
    }
    0
}

/// `Q(DQ(q))` with equal parameters into `q`.
fn drop_requantize(g: &mut Graph) -> usize {
    for qi in 0..g.nodes.len() {
        let q = &g.nodes[qi];
        if !is_standard(q, "QuantizeLinear") || q.outputs.len() != 1 || g.is_output(&q.outputs[0]) {
            continue;
        }
        let (Some(x), Some(qp)) = (q.input(0), per_tensor(g, q)) else {
            continue;
        };
        let Some((di, dp)) = activation_dq(g, x) else {
            continue;
        };
        if dp != qp {
            continue;
        }
        let (from, to) = (q.outputs[0].clone(), g.nodes[di].inputs[0].clone());
        for n in &mut g.nodes {
            for i in n.inputs.iter_mut().filter(|i| **i == from) {
                i.clone_from(&to);
            }
        }
        g.nodes.remove(qi);
        return 1;
    }
    0
}

/// The weights of a layer: an i8 constant through a DQ whose scales are per tensor or per
/// output channel along `axis`. Returns the DQ's input names (weights, scale, zero point).
fn weight_dq(g: &Graph, name: &str, channel_axis: i64) -> Option<[String; 3]> {
    let d = &g.nodes[producer(g, name)?];
    if !is_standard(d, "DequantizeLinear") {
        return None;
    }
    let w = g.initializers.get(d.input(0)?)?;
    let s = g.initializers.get(d.input(1)?)?.as_f32().ok()?;
    if w.dtype() != DataType::I8 || s.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
        return None;
    }
    if s.len() > 1 {
        let rank = w.shape().len() as i64;
        let axis = d.attr_int("axis", 1).ok()?;
        let axis = if axis < 0 { axis + rank } else { axis };
        if axis != channel_axis || w.shape().get(axis as usize) != Some(&s.len()) {
            return None;
        }
    }
    if let Some(z) = d.input(2) {
        let z = g.initializers.get(z)?;
        if z.dtype() != DataType::I8 || z.len() != s.len() {
            return None;
        }
    }
    Some([
        d.inputs[0].clone(),
        d.inputs[1].clone(),
        d.input(2).unwrap_or("").to_string(),
    ])
}

/// A bias the fused node can take: absent, or a constant (or DQ of constants) of N values.
fn bias_ok(g: &Graph, name: Option<&str>, n: usize) -> bool {
    let Some(name) = name else { return true };
    if let Some(t) = g.initializers.get(name) {
        return t.dtype() == DataType::F32 && t.len() == n && t.shape().len() <= 1;
    }
    let Some(d) = producer(g, name).map(|i| &g.nodes[i]) else {
        return false;
    };
    is_standard(d, "DequantizeLinear")
        && d.inputs
            .iter()
            .all(|i| i.is_empty() || g.initializers.contains_key(i))
        && d.input(0)
            .and_then(|x| g.initializers.get(x))
            .is_some_and(|t| t.len() == n && t.shape().len() == 1)
}

/// Fuses one `DQ → Conv/Gemm/MatMul → [Relu] → [Q]` pattern.
fn fuse_layer(g: &mut Graph) -> Result<usize, GraphError> {
    for ni in 0..g.nodes.len() {
        let node = &g.nodes[ni];
        let (op, channel_axis) = if is_standard(node, "Conv") {
            (QCONV, 0)
        } else if is_standard(node, "Gemm") {
            let plain = node.attr_int("transA", 0)? == 0
                && node.attr_float("alpha", 1.0)? == 1.0
                && node.attr_float("beta", 1.0)? == 1.0;
            if !plain {
                continue;
            }
            (
                QGEMM,
                if node.attr_int("transB", 0)? != 0 {
                    0
                } else {
                    1
                },
            )
        } else if is_standard(node, "MatMul") {
            (QGEMM, 1)
        } else {
            continue;
        };
        let (Some(x), Some(w)) = (node.input(0), node.input(1)) else {
            continue;
        };
        let Some((xi, _)) = activation_dq(g, x) else {
            continue;
        };
        let Some([wq, ws, wz]) = weight_dq(g, w, channel_axis) else {
            continue;
        };
        let wshape = g.initializers[&wq].shape().to_vec();
        let n = match (op, wshape.as_slice()) {
            // Any group count: the fused Conv runs depthwise or per group on the GEMM.
            (QCONV, [cout, _, _, _]) => *cout,
            (QGEMM, [k, n]) => {
                if channel_axis == 0 {
                    *k
                } else {
                    *n
                }
            }
            _ => continue,
        };
        if !bias_ok(g, node.input(2), n) || node.outputs.len() != 1 {
            continue;
        }
        // Follow the output through a sole Relu and a sole per-tensor Q.
        let mut removed = Vec::new();
        let mut out = node.outputs[0].clone();
        let mut relu = false;
        let sole = |g: &Graph, v: &str| -> Option<usize> {
            match consumers(g, v).as_slice() {
                [c] if !g.is_output(v) => Some(*c),
                _ => None,
            }
        };
        if let Some(r) = sole(g, &out).filter(|&r| is_standard(&g.nodes[r], "Relu")) {
            relu = true;
            out = g.nodes[r].outputs[0].clone();
            removed.push(r);
        }
        let mut y = [String::new(), String::new()];
        if let Some(qi) = sole(g, &out).filter(|&q| {
            is_standard(&g.nodes[q], "QuantizeLinear") && per_tensor(g, &g.nodes[q]).is_some()
        }) {
            let q = &g.nodes[qi];
            y = [q.inputs[1].clone(), q.input(2).unwrap_or("").to_string()];
            out = q.outputs[0].clone();
            removed.push(qi);
        }
        let xd = &g.nodes[xi];
        let inputs = vec![
            xd.inputs[0].clone(),
            xd.inputs[1].clone(),
            xd.input(2).unwrap_or("").to_string(),
            wq,
            ws,
            wz,
            node.input(2).unwrap_or("").to_string(),
            y[0].clone(),
            y[1].clone(),
        ];
        let mut attrs = node.attrs.clone();
        attrs.insert("relu".into(), super::Attr::Int(i64::from(relu)));
        if op == QGEMM {
            attrs.retain(|k, _| k == "transB" || k == "relu");
        }
        let fused = Node {
            name: node.name.clone(),
            op_type: op.into(),
            domain: DOMAIN.into(),
            inputs,
            outputs: vec![out],
            attrs,
        };
        g.nodes[ni] = fused;
        removed.sort_unstable();
        for r in removed.into_iter().rev() {
            g.nodes.remove(r);
        }
        return Ok(1);
    }
    Ok(0)
}

/// Removes nodes none of whose outputs is read or is a graph output.
fn remove_dead(g: &mut Graph) {
    loop {
        let read: std::collections::BTreeSet<String> = g
            .consumer_counts()
            .into_keys()
            .map(str::to_string)
            .collect();
        let before = g.nodes.len();
        g.nodes.retain(|n| {
            n.outputs
                .iter()
                .any(|o| !o.is_empty() && read.contains(o.as_str()))
        });
        if g.nodes.len() == before {
            return;
        }
    }
}
