//! Shape inference: the element type and concrete shape of every value, given concrete input
//! shapes (the batch is fixed when a plan is made).
//!
//! The attribute resolution here (conv and pool geometry, reshape targets, slice ranges, axes) is
//! the one place those ONNX rules are written; the engine builds its kernels from the same
//! parameter structs.

use std::collections::BTreeMap;

use super::{Dim, Graph, GraphError, Node};
use crate::tensor::{checked_numel, DataType, Tensor};

/// The element type and shape of a value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ValueType {
    /// Element type.
    pub dtype: DataType,
    /// Concrete dimensions.
    pub shape: Vec<usize>,
}

impl ValueType {
    /// A value type from its parts.
    pub fn new(dtype: DataType, shape: Vec<usize>) -> ValueType {
        ValueType { dtype, shape }
    }

    /// The type of a constant tensor.
    pub fn of(t: &Tensor) -> ValueType {
        ValueType::new(t.dtype(), t.shape().to_vec())
    }

    /// Number of elements (the shape was checked not to overflow when it was inferred).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The numpy-broadcast shape of two shapes, or `None` when they do not broadcast.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for (i, o) in out.iter_mut().enumerate() {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        *o = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// Normalises a possibly negative `axis` against `rank` (`allow_end` admits `axis == rank`).
pub fn norm_axis(
    node: &Node,
    axis: i64,
    rank: usize,
    allow_end: bool,
) -> Result<usize, GraphError> {
    let r = rank as i64 + i64::from(allow_end);
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return Err(node.error(format!("axis {axis} is out of range for rank {rank}")));
    }
    Ok(a as usize)
}

/// Geometry of a 2-D windowed operator (Conv or pooling) on an NCHW input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window2d {
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Strides.
    pub strides: [usize; 2],
    /// Dilations.
    pub dilations: [usize; 2],
    /// Padding: top, left, bottom, right.
    pub pads: [usize; 4],
    /// Input height and width.
    pub input: [usize; 2],
    /// Output height and width.
    pub output: [usize; 2],
}

impl Window2d {
    /// Whether this is the 2×2, stride-2 window without padding or dilation whose windows all
    /// lie inside the input: the common pooling case, which kernels run with no tap arithmetic.
    pub fn is_plain_2x2(&self) -> bool {
        self.kernel == [2, 2]
            && self.strides == [2, 2]
            && self.dilations == [1, 1]
            && self.pads == [0; 4]
            && 2 * self.output[0] <= self.input[0]
            && 2 * self.output[1] <= self.input[1]
    }

    /// Resolves the window attributes of `node` (`strides`, `dilations`, `pads`, `auto_pad`,
    /// `ceil_mode`) for an input of spatial size `input` and a kernel of size `kernel`.
    pub fn resolve(
        node: &Node,
        input: [usize; 2],
        kernel: [usize; 2],
    ) -> Result<Window2d, GraphError> {
        let pair = |name: &str| -> Result<[usize; 2], GraphError> {
            match node.attr_ints(name)? {
                None => Ok([1, 1]),
                Some([a, b]) if *a >= 1 && *b >= 1 => Ok([*a as usize, *b as usize]),
                Some(v) => Err(node.error(format!(
                    "`{name}` must be two positive integers, found {v:?}"
                ))),
            }
        };
        let strides = pair("strides")?;
        let dilations = pair("dilations")?;
        let auto_pad = node.attr_str("auto_pad", "NOTSET")?;
        let ceil = node.attr_int("ceil_mode", 0)? != 0;
        let mut pads = [0usize; 4];
        let mut output = [0usize; 2];
        for d in 0..2 {
            if kernel[d] == 0 {
                return Err(node.error("kernel size 0"));
            }
            let span = dilations[d] * (kernel[d] - 1) + 1;
            let (pb, pe) = match auto_pad.as_str() {
                "NOTSET" => match node.attr_ints("pads")? {
                    None => (0, 0),
                    Some(p) if p.len() == 4 && p.iter().all(|&x| x >= 0) => {
                        (p[d] as usize, p[d + 2] as usize)
                    }
                    Some(p) => {
                        return Err(node.error(format!(
                            "`pads` must be four non-negative integers, found {p:?}"
                        )))
                    }
                },
                "VALID" => (0, 0),
                "SAME_UPPER" | "SAME_LOWER" => {
                    let out = input[d].div_ceil(strides[d]);
                    let need = ((out - 1) * strides[d] + span).saturating_sub(input[d]);
                    let small = need / 2;
                    if auto_pad == "SAME_UPPER" {
                        (small, need - small)
                    } else {
                        (need - small, small)
                    }
                }
                other => return Err(node.error(format!("unknown auto_pad `{other}`"))),
            };
            let padded = input[d] + pb + pe;
            if padded < span {
                return Err(node.error(format!(
                    "kernel extent {span} is larger than the padded input {padded} (axis {})",
                    d + 2
                )));
            }
            let steps = padded - span;
            let mut out = steps / strides[d] + 1;
            if ceil && !steps.is_multiple_of(strides[d]) {
                out += 1;
                // The last window must start inside the input or the leading padding.
                if (out - 1) * strides[d] >= input[d] + pb {
                    out -= 1;
                }
            }
            pads[d] = pb;
            pads[d + 2] = pe;
            output[d] = out;
        }
        Ok(Window2d {
            kernel,
            strides,
            dilations,
            pads,
            input,
            output,
        })
    }
}

/// Convolution geometry: the window plus channels and groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvParams {
    /// Batch size.
    pub batch: usize,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Groups.
    pub group: usize,
    /// Spatial window.
    pub window: Window2d,
}

impl ConvParams {
    /// Resolves a Conv node for input shape `x` (NCHW) and weight shape `w` (Cout, Cin/g, kh, kw).
    pub fn resolve(node: &Node, x: &[usize], w: &[usize]) -> Result<ConvParams, GraphError> {
        if x.len() != 4 || w.len() != 4 {
            return Err(node.error(format!(
                "only 2-D convolution is supported: input {x:?}, weight {w:?}"
            )));
        }
        let group = node.attr_int("group", 1)?;
        if group < 1 {
            return Err(node.error(format!("group {group} must be positive")));
        }
        let group = group as usize;
        let (cin, cout) = (x[1], w[0]);
        if cin % group != 0 || cout % group != 0 || w[1] * group != cin {
            return Err(node.error(format!(
                "input channels {cin}, output channels {cout} and weight {w:?} do not fit group {group}"
            )));
        }
        if let Some(ks) = node.attr_ints("kernel_shape")? {
            if ks != [w[2] as i64, w[3] as i64] {
                return Err(node.error(format!("kernel_shape {ks:?} disagrees with weight {w:?}")));
            }
        }
        let window = Window2d::resolve(node, [x[2], x[3]], [w[2], w[3]])?;
        Ok(ConvParams {
            batch: x[0],
            cin,
            cout,
            group,
            window,
        })
    }

    /// Output shape N × Cout × Hout × Wout.
    pub fn output_shape(&self) -> Vec<usize> {
        vec![
            self.batch,
            self.cout,
            self.window.output[0],
            self.window.output[1],
        ]
    }
}

/// Resolves a MaxPool/AveragePool node on an NCHW input.
pub fn pool_window(node: &Node, x: &[usize]) -> Result<Window2d, GraphError> {
    if x.len() != 4 {
        return Err(node.error(format!("only 2-D pooling is supported: input {x:?}")));
    }
    let kernel = match node.attr_ints("kernel_shape")? {
        Some([a, b]) if *a >= 1 && *b >= 1 => [*a as usize, *b as usize],
        other => {
            return Err(node.error(format!(
                "`kernel_shape` must be two positive integers, found {other:?}"
            )))
        }
    };
    Window2d::resolve(node, [x[2], x[3]], kernel)
}

/// The shapes of a numpy-style matrix product `A·B`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatMulShape {
    /// Output shape.
    pub out: Vec<usize>,
    /// Broadcast batch dimensions.
    pub batch: Vec<usize>,
    /// Rows of each product.
    pub m: usize,
    /// Inner dimension.
    pub k: usize,
    /// Columns of each product.
    pub n: usize,
}

/// Resolves `A·B` with numpy semantics: batch dims broadcast, 1-D operands promoted.
pub fn matmul_shapes(node: &Node, a: &[usize], b: &[usize]) -> Result<MatMulShape, GraphError> {
    if a.is_empty() || b.is_empty() {
        return Err(node.error("MatMul operands must have rank at least 1"));
    }
    let (m, ka) = if a.len() == 1 {
        (1, a[0])
    } else {
        (a[a.len() - 2], a[a.len() - 1])
    };
    let (kb, n) = if b.len() == 1 {
        (b[0], 1)
    } else {
        (b[b.len() - 2], b[b.len() - 1])
    };
    if ka != kb {
        return Err(node.error(format!("inner dimensions differ: A {a:?}, B {b:?}")));
    }
    let ab = if a.len() > 2 {
        &a[..a.len() - 2]
    } else {
        &[][..]
    };
    let bb = if b.len() > 2 {
        &b[..b.len() - 2]
    } else {
        &[][..]
    };
    let batch = broadcast_shape(ab, bb).ok_or_else(|| {
        node.error(format!(
            "batch dimensions do not broadcast: A {a:?}, B {b:?}"
        ))
    })?;
    let mut out = batch.clone();
    if a.len() > 1 {
        out.push(m);
    }
    if b.len() > 1 {
        out.push(n);
    }
    Ok(MatMulShape {
        out,
        batch,
        m,
        k: ka,
        n,
    })
}

/// Gemm geometry: `Y[M×N] = alpha·op(A)·op(B) + beta·C`.
#[derive(Debug, Clone, PartialEq)]
pub struct GemmParams {
    /// Rows of the output.
    pub m: usize,
    /// Inner dimension.
    pub k: usize,
    /// Columns of the output.
    pub n: usize,
    /// A is given transposed (K×M).
    pub trans_a: bool,
    /// B is given transposed (N×K).
    pub trans_b: bool,
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of C.
    pub beta: f32,
}

impl GemmParams {
    /// Resolves a Gemm node for operand shapes `a`, `b` and the optional `c`.
    pub fn resolve(
        node: &Node,
        a: &[usize],
        b: &[usize],
        c: Option<&[usize]>,
    ) -> Result<GemmParams, GraphError> {
        if a.len() != 2 || b.len() != 2 {
            return Err(node.error(format!("Gemm needs 2-D A and B, found {a:?} and {b:?}")));
        }
        let trans_a = node.attr_int("transA", 0)? != 0;
        let trans_b = node.attr_int("transB", 0)? != 0;
        let (m, k) = if trans_a { (a[1], a[0]) } else { (a[0], a[1]) };
        let (kb, n) = if trans_b { (b[1], b[0]) } else { (b[0], b[1]) };
        if k != kb {
            return Err(node.error(format!(
                "inner dimensions differ: A {a:?} (transA={trans_a}), B {b:?} (transB={trans_b})"
            )));
        }
        if let Some(c) = c {
            if broadcast_shape(c, &[m, n]).as_deref() != Some(&[m, n][..]) {
                return Err(node.error(format!("C {c:?} does not broadcast to [{m}, {n}]")));
            }
        }
        Ok(GemmParams {
            m,
            k,
            n,
            trans_a,
            trans_b,
            alpha: node.attr_float("alpha", 1.0)?,
            beta: node.attr_float("beta", 1.0)?,
        })
    }
}

/// The shape an ONNX Reshape produces from `input` and the requested `spec` (0 copies the input
/// dimension unless `allowzero`, -1 is inferred).
pub fn reshape_target(
    node: &Node,
    input: &[usize],
    spec: &[i64],
    allowzero: bool,
) -> Result<Vec<usize>, GraphError> {
    let total: usize = input.iter().product();
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &d) in spec.iter().enumerate() {
        match d {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => out.push(*input.get(i).ok_or_else(|| {
                node.error(format!(
                    "shape {spec:?} copies dimension {i} that input {input:?} lacks"
                ))
            })?),
            d if d >= 0 => out.push(d as usize),
            _ => return Err(node.error(format!("invalid target shape {spec:?}"))),
        }
    }
    let known = checked_numel(&out)
        .ok_or_else(|| node.error(format!("target shape {spec:?} overflows")))?;
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(node.error(format!("cannot reshape {input:?} to {spec:?}")));
        }
        out[i] = total / known;
    } else if known != total {
        return Err(node.error(format!(
            "cannot reshape {input:?} ({total} elements) to {spec:?}"
        )));
    }
    Ok(out)
}

/// One axis of a resolved Slice: first index, step and number of elements taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceAxis {
    /// Index of the first element taken.
    pub start: usize,
    /// Step between taken elements (negative walks backwards).
    pub step: isize,
    /// Number of elements taken.
    pub len: usize,
}

/// Resolves Slice (`starts`, `ends`, `axes`, `steps` as attributes before opset 10, as constant
/// inputs after) for `input`, giving one [`SliceAxis`] per input axis.
pub fn slice_axes(
    node: &Node,
    opset: i64,
    input: &[usize],
    consts: &[Option<&Tensor>],
) -> Result<Vec<SliceAxis>, GraphError> {
    let get = |idx: usize, attr: &str| -> Result<Option<Vec<i64>>, GraphError> {
        if opset < 10 {
            return Ok(node.attr_ints(attr)?.map(<[i64]>::to_vec));
        }
        if node.input(idx).is_none() {
            return Ok(None);
        }
        match consts.get(idx).copied().flatten() {
            Some(t) => t
                .to_i64_vec()
                .map(Some)
                .map_err(|e| node.error(format!("`{attr}`: {e}"))),
            None => Err(node.error(format!("`{attr}` must be a constant"))),
        }
    };
    let starts = get(1, "starts")?.ok_or_else(|| node.error("missing `starts`"))?;
    let ends = get(2, "ends")?.ok_or_else(|| node.error("missing `ends`"))?;
    let axes = get(3, "axes")?.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = get(4, "steps")?.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(node.error("`starts`, `ends`, `axes` and `steps` differ in length"));
    }
    let mut out: Vec<SliceAxis> = input
        .iter()
        .map(|&d| SliceAxis {
            start: 0,
            step: 1,
            len: d,
        })
        .collect();
    for i in 0..starts.len() {
        let ax = norm_axis(node, axes[i], input.len(), false)?;
        let dim = input[ax] as i64;
        let step = steps[i];
        if step == 0 {
            return Err(node.error("slice step 0"));
        }
        let fix = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
        let (s, e) = (fix(starts[i]), fix(ends[i]));
        let (start, len) = if step > 0 {
            let s = s.clamp(0, dim);
            let e = e.clamp(0, dim);
            (s, if e > s { (e - s + step - 1) / step } else { 0 })
        } else {
            let s = s.clamp(-1, dim - 1);
            let e = e.clamp(-1, dim - 1);
            (
                s,
                if s > e {
                    (s - e + (-step) - 1) / (-step)
                } else {
                    0
                },
            )
        };
        out[ax] = SliceAxis {
            start: start.max(0) as usize,
            step: step as isize,
            len: len as usize,
        };
    }
    Ok(out)
}

/// Axes given either as attribute `axes` (before `input_from_opset`) or as constant input 1.
pub fn axes_arg(
    node: &Node,
    opset: i64,
    input_from_opset: i64,
    consts: &[Option<&Tensor>],
) -> Result<Option<Vec<i64>>, GraphError> {
    if opset < input_from_opset {
        return Ok(node.attr_ints("axes")?.map(<[i64]>::to_vec));
    }
    if node.input(1).is_none() {
        return Ok(None);
    }
    match consts.get(1).copied().flatten() {
        Some(t) => t
            .to_i64_vec()
            .map(Some)
            .map_err(|e| node.error(format!("axes: {e}"))),
        None => Err(node.error("axes must be a constant")),
    }
}

/// Squeeze's output shape.
pub fn squeeze_shape(
    node: &Node,
    opset: i64,
    input: &[usize],
    consts: &[Option<&Tensor>],
) -> Result<Vec<usize>, GraphError> {
    match axes_arg(node, opset, 13, consts)? {
        None => Ok(input.iter().copied().filter(|&d| d != 1).collect()),
        Some(axes) => {
            let mut drop = vec![false; input.len()];
            for a in axes {
                let a = norm_axis(node, a, input.len(), false)?;
                if input[a] != 1 {
                    return Err(node.error(format!("cannot squeeze axis {a} of size {}", input[a])));
                }
                drop[a] = true;
            }
            Ok(input
                .iter()
                .zip(drop)
                .filter(|(_, d)| !d)
                .map(|(&x, _)| x)
                .collect())
        }
    }
}

/// Unsqueeze's output shape.
pub fn unsqueeze_shape(
    node: &Node,
    opset: i64,
    input: &[usize],
    consts: &[Option<&Tensor>],
) -> Result<Vec<usize>, GraphError> {
    let axes = axes_arg(node, opset, 13, consts)?.ok_or_else(|| node.error("missing axes"))?;
    let rank = input.len() + axes.len();
    let mut is_new = vec![false; rank];
    for a in axes {
        let a = norm_axis(node, a, rank, false)?;
        if is_new[a] {
            return Err(node.error(format!("axis {a} given twice")));
        }
        is_new[a] = true;
    }
    let mut src = input.iter();
    Ok(is_new
        .iter()
        .map(|&n| {
            if n {
                1
            } else {
                src.next().copied().unwrap_or(1)
            }
        })
        .collect())
}

/// The permutation of a Transpose (reversal when `perm` is absent).
pub fn transpose_perm(node: &Node, rank: usize) -> Result<Vec<usize>, GraphError> {
    let perm: Vec<usize> = match node.attr_ints("perm")? {
        None => (0..rank).rev().collect(),
        Some(p) => p
            .iter()
            .map(|&a| norm_axis(node, a, rank, false))
            .collect::<Result<_, _>>()?,
    };
    let mut seen = vec![false; rank];
    if perm.len() != rank || perm.iter().any(|&a| std::mem::replace(&mut seen[a], true)) {
        return Err(node.error(format!("perm {perm:?} is not a permutation of {rank} axes")));
    }
    Ok(perm)
}

/// The reduced axes (sorted, deduplicated) and keepdims flag of a ReduceMean.
pub fn reduce_axes(
    node: &Node,
    opset: i64,
    rank: usize,
    consts: &[Option<&Tensor>],
) -> Result<(Vec<usize>, bool), GraphError> {
    let keep = node.attr_int("keepdims", 1)? != 0;
    let axes = match axes_arg(node, opset, 18, consts)? {
        Some(a) if !a.is_empty() => a,
        _ if node.attr_int("noop_with_empty_axes", 0)? != 0 => Vec::new(),
        _ => (0..rank as i64).collect(),
    };
    let mut out = axes
        .into_iter()
        .map(|a| norm_axis(node, a, rank, false))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_unstable();
    out.dedup();
    Ok((out, keep))
}

/// Softmax split of `shape` into (outer, reduced, inner) extents: along one axis from opset 13,
/// over everything from `axis` on (the 2-D coercion) before.
pub fn softmax_split(
    node: &Node,
    opset: i64,
    shape: &[usize],
) -> Result<(usize, usize, usize), GraphError> {
    let default = if opset >= 13 { -1 } else { 1 };
    let axis = norm_axis(node, node.attr_int("axis", default)?, shape.len(), false)?;
    let outer = shape[..axis].iter().product();
    if opset >= 13 {
        Ok((outer, shape[axis], shape[axis + 1..].iter().product()))
    } else {
        Ok((outer, shape[axis..].iter().product(), 1))
    }
}

/// The value of a `Constant` node.
pub fn constant_value(node: &Node) -> Result<Tensor, GraphError> {
    let bad = |e: crate::tensor::TensorError| node.error(e.to_string());
    if let Some(t) = node.attr_tensor("value")? {
        return Ok(t.clone());
    }
    match node
        .attrs
        .get("value_float")
        .or(node.attrs.get("value_floats"))
        .or(node.attrs.get("value_int"))
        .or(node.attrs.get("value_ints"))
    {
        Some(super::Attr::Float(v)) => Tensor::from_f32(vec![], vec![*v]).map_err(bad),
        Some(super::Attr::Floats(v)) => Tensor::from_f32(vec![v.len()], v.clone()).map_err(bad),
        Some(super::Attr::Int(v)) => Tensor::from_i64(vec![], vec![*v]).map_err(bad),
        Some(super::Attr::Ints(v)) => Tensor::from_i64(vec![v.len()], v.clone()).map_err(bad),
        _ => Err(node.error("Constant has no supported value attribute")),
    }
}

/// The value a `Shape` node produces for an input of `shape` (honouring opset-15 `start`/`end`).
pub fn shape_value(node: &Node, shape: &[usize]) -> Result<Tensor, GraphError> {
    let rank = shape.len() as i64;
    let clampi = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
    let start = clampi(node.attr_int("start", 0)?);
    let end = clampi(node.attr_int("end", rank)?).max(start);
    let dims: Vec<i64> = shape[start..end].iter().map(|&d| d as i64).collect();
    Tensor::from_i64(vec![dims.len()], dims).map_err(|e| node.error(e.to_string()))
}

/// The type of `node`'s input `i`, or an error naming the node when it is unknown.
pub(crate) fn need<'a>(
    node: &Node,
    types: &[Option<&'a ValueType>],
    i: usize,
) -> Result<&'a ValueType, GraphError> {
    types
        .get(i)
        .copied()
        .flatten()
        .ok_or_else(|| node.error(format!("missing input {i}")))
}

fn need_f32(node: &Node, t: &ValueType, what: &str) -> Result<(), GraphError> {
    if t.dtype != DataType::F32 {
        return Err(node.error(format!("{what} must be f32, found {}", t.dtype)));
    }
    Ok(())
}

/// Output types of one node from its input types (`None` for omitted inputs) and the values of
/// its constant inputs (`None` where not constant).
pub fn infer_node(
    node: &Node,
    opset: i64,
    types: &[Option<&ValueType>],
    consts: &[Option<&Tensor>],
) -> Result<Vec<ValueType>, GraphError> {
    if let Some(t) = super::qdq::infer(node, types, consts)? {
        return Ok(t);
    }
    if let Some(r) = super::shape_int::infer_quantized(node, types) {
        return r;
    }
    if !(node.domain.is_empty() || node.domain == "ai.onnx") {
        return Err(node.unsupported());
    }
    let x = || need(node, types, 0);
    let same = |t: &ValueType| Ok(vec![t.clone()]);
    let f32_of = |shape: Vec<usize>| Ok(vec![ValueType::new(DataType::F32, shape)]);
    match node.op_type.as_str() {
        "Relu" | "Sigmoid" | "HardSigmoid" | "HardSwish" | "Tanh" | "Erf" | "Gelu" | "Sqrt"
        | "Sign" | "Clip" | "Softmax" | "LayerNormalization" | "BatchNormalization" => {
            let t = x()?;
            need_f32(node, t, "input")?;
            if node.op_type == "Softmax" {
                softmax_split(node, opset, &t.shape)?;
            }
            if node.op_type == "LayerNormalization" {
                norm_axis(node, node.attr_int("axis", -1)?, t.shape.len(), false)?;
            }
            if node.op_type == "BatchNormalization" {
                if t.shape.len() < 2 {
                    return Err(node.error(format!("input {:?} has no channel axis", t.shape)));
                }
                for i in 1..5 {
                    let p = need(node, types, i)?;
                    if p.shape != [t.shape[1]] {
                        return Err(node.error(format!(
                            "parameter {i} has shape {:?}, expected [{}]",
                            p.shape, t.shape[1]
                        )));
                    }
                }
            }
            same(t)
        }
        "Identity" | "Dropout" => same(x()?),
        "Add" | "Sub" | "Mul" | "Div" | "Pow" => {
            let (a, b) = (x()?, need(node, types, 1)?);
            if a.dtype != b.dtype && node.op_type != "Pow" {
                return Err(
                    node.error(format!("operand types differ: {} and {}", a.dtype, b.dtype))
                );
            }
            let shape = broadcast_shape(&a.shape, &b.shape).ok_or_else(|| {
                node.error(format!(
                    "shapes {:?} and {:?} do not broadcast",
                    a.shape, b.shape
                ))
            })?;
            Ok(vec![ValueType::new(a.dtype, shape)])
        }
        "Conv" => {
            let (a, w) = (x()?, need(node, types, 1)?);
            need_f32(node, a, "input")?;
            let p = ConvParams::resolve(node, &a.shape, &w.shape)?;
            if let Some(b) = types.get(2).copied().flatten() {
                if b.shape != [p.cout] {
                    return Err(
                        node.error(format!("bias shape {:?}, expected [{}]", b.shape, p.cout))
                    );
                }
            }
            f32_of(p.output_shape())
        }
        "MaxPool" | "AveragePool" => {
            let a = x()?;
            // A max pool runs on quantized u8/i8 values too (it commutes with dequantization).
            let int_max =
                node.op_type == "MaxPool" && matches!(a.dtype, DataType::U8 | DataType::I8);
            if !int_max {
                need_f32(node, a, "input")?;
            }
            let w = pool_window(node, &a.shape)?;
            Ok(vec![ValueType::new(
                a.dtype,
                vec![a.shape[0], a.shape[1], w.output[0], w.output[1]],
            )])
        }
        "GlobalAveragePool" => {
            let a = x()?;
            need_f32(node, a, "input")?;
            if a.shape.len() < 3 {
                return Err(node.error(format!("input {:?} has no spatial axes", a.shape)));
            }
            let mut s = a.shape.clone();
            s[2..].iter_mut().for_each(|d| *d = 1);
            f32_of(s)
        }
        "Gemm" => {
            let (a, b) = (x()?, need(node, types, 1)?);
            need_f32(node, a, "A")?;
            let c = types.get(2).copied().flatten().map(|c| c.shape.as_slice());
            let p = GemmParams::resolve(node, &a.shape, &b.shape, c)?;
            f32_of(vec![p.m, p.n])
        }
        "MatMul" => {
            let (a, b) = (x()?, need(node, types, 1)?);
            need_f32(node, a, "A")?;
            f32_of(matmul_shapes(node, &a.shape, &b.shape)?.out)
        }
        "Flatten" => {
            let a = x()?;
            let axis = norm_axis(node, node.attr_int("axis", 1)?, a.shape.len(), true)?;
            let s = vec![
                a.shape[..axis].iter().product(),
                a.shape[axis..].iter().product(),
            ];
            Ok(vec![ValueType::new(a.dtype, s)])
        }
        "Reshape" => {
            let a = x()?;
            let spec = consts
                .get(1)
                .copied()
                .flatten()
                .ok_or_else(|| node.error("target shape must be a constant"))?
                .to_i64_vec()
                .map_err(|e| node.error(format!("target shape: {e}")))?;
            let s = reshape_target(node, &a.shape, &spec, node.attr_int("allowzero", 0)? != 0)?;
            Ok(vec![ValueType::new(a.dtype, s)])
        }
        "Squeeze" => {
            let a = x()?;
            Ok(vec![ValueType::new(
                a.dtype,
                squeeze_shape(node, opset, &a.shape, consts)?,
            )])
        }
        "Unsqueeze" => {
            let a = x()?;
            Ok(vec![ValueType::new(
                a.dtype,
                unsqueeze_shape(node, opset, &a.shape, consts)?,
            )])
        }
        "Transpose" => {
            let a = x()?;
            let perm = transpose_perm(node, a.shape.len())?;
            Ok(vec![ValueType::new(
                a.dtype,
                perm.iter().map(|&p| a.shape[p]).collect(),
            )])
        }
        "Concat" => {
            let first = x()?;
            let axis = norm_axis(node, node.attr_int("axis", 0)?, first.shape.len(), false)?;
            let mut shape = first.shape.clone();
            shape[axis] = 0;
            for i in 0..node.inputs.len() {
                let t = need(node, types, i)?;
                let compatible = t.shape.len() == shape.len()
                    && t.shape
                        .iter()
                        .zip(&first.shape)
                        .enumerate()
                        .all(|(d, (a, b))| d == axis || a == b);
                if t.dtype != first.dtype || !compatible {
                    return Err(node.error(format!(
                        "input {i} ({} {:?}) does not concatenate with input 0 ({} {:?}) on axis {axis}",
                        t.dtype, t.shape, first.dtype, first.shape
                    )));
                }
                shape[axis] += t.shape[axis];
            }
            Ok(vec![ValueType::new(first.dtype, shape)])
        }
        "Slice" => {
            let a = x()?;
            let axes = slice_axes(node, opset, &a.shape, consts)?;
            Ok(vec![ValueType::new(
                a.dtype,
                axes.iter().map(|s| s.len).collect(),
            )])
        }
        "Gather" => {
            let (a, idx) = (x()?, need(node, types, 1)?);
            if !matches!(idx.dtype, DataType::I64 | DataType::I32) {
                return Err(node.error(format!("indices must be i64 or i32, found {}", idx.dtype)));
            }
            let axis = norm_axis(node, node.attr_int("axis", 0)?, a.shape.len(), false)?;
            let mut s = a.shape[..axis].to_vec();
            s.extend_from_slice(&idx.shape);
            s.extend_from_slice(&a.shape[axis + 1..]);
            Ok(vec![ValueType::new(a.dtype, s)])
        }
        "ReduceMean" => {
            let a = x()?;
            need_f32(node, a, "input")?;
            let (axes, keep) = reduce_axes(node, opset, a.shape.len(), consts)?;
            let s = a
                .shape
                .iter()
                .enumerate()
                .filter_map(|(i, &d)| match (axes.contains(&i), keep) {
                    (false, _) => Some(d),
                    (true, true) => Some(1),
                    (true, false) => None,
                })
                .collect();
            f32_of(s)
        }
        "Shape" => Ok(vec![ValueType::of(&shape_value(node, &x()?.shape)?)]),
        "Cast" => {
            let to = node.attr_int("to", 0)?;
            let dtype = i32::try_from(to)
                .ok()
                .and_then(DataType::from_onnx_code)
                .ok_or_else(|| node.error(format!("unsupported target type code {to}")))?;
            Ok(vec![ValueType::new(dtype, x()?.shape.clone())])
        }
        "Constant" => Ok(vec![ValueType::of(&constant_value(node)?)]),
        _ => Err(node.unsupported()),
    }
}

/// Checks the given input shapes against the graph's declared inputs and returns their types.
pub fn input_types(
    graph: &Graph,
    inputs: &[(&str, Vec<usize>)],
) -> Result<BTreeMap<String, ValueType>, GraphError> {
    let mut out = BTreeMap::new();
    for vi in &graph.inputs {
        let shape = inputs
            .iter()
            .find(|(n, _)| *n == vi.name)
            .map(|(_, s)| s.clone())
            .ok_or_else(|| GraphError::Input {
                name: vi.name.clone(),
                message: "no shape given".into(),
            })?;
        if let Some(decl) = &vi.shape {
            let fits = decl.len() == shape.len()
                && decl.iter().zip(&shape).all(|(d, &s)| match d {
                    Dim::Fixed(f) => *f == s,
                    Dim::Symbolic(_) => true,
                });
            if !fits {
                return Err(GraphError::Input {
                    name: vi.name.clone(),
                    message: format!("shape {shape:?} does not match the declared {decl:?}"),
                });
            }
        }
        if checked_numel(&shape).is_none() {
            return Err(GraphError::Input {
                name: vi.name.clone(),
                message: format!("shape {shape:?} overflows"),
            });
        }
        out.insert(vi.name.clone(), ValueType::new(vi.dtype, shape));
    }
    Ok(out)
}

/// The type of every value in `graph` for the given concrete input shapes: inputs, initializers
/// and every node output. Shape-computing subgraphs must have been folded first (see
/// [`super::fold`]); a node whose shape depends on a non-constant value is an error naming it.
pub fn infer_shapes(
    graph: &Graph,
    inputs: &[(&str, Vec<usize>)],
) -> Result<BTreeMap<String, ValueType>, GraphError> {
    let mut types = input_types(graph, inputs)?;
    for (name, t) in &graph.initializers {
        types.insert(name.clone(), ValueType::of(t));
    }
    for node in &graph.nodes {
        let outs = {
            let ins: Vec<Option<&ValueType>> = node.inputs.iter().map(|i| types.get(i)).collect();
            if let Some(pos) = node
                .inputs
                .iter()
                .zip(&ins)
                .position(|(n, t)| !n.is_empty() && t.is_none())
            {
                return Err(node.error(format!(
                    "input `{}` is not produced by any earlier node",
                    node.inputs[pos]
                )));
            }
            let consts: Vec<Option<&Tensor>> = node
                .inputs
                .iter()
                .map(|i| graph.initializers.get(i))
                .collect();
            infer_node(node, graph.opset, &ins, &consts)?
        };
        check_outputs(node, &outs)?;
        for (name, t) in node.outputs.iter().zip(outs) {
            if !name.is_empty() {
                types.insert(name.clone(), t);
            }
        }
    }
    Ok(types)
}

/// Refuses output shapes whose element count overflows (they come from untrusted attributes).
pub fn check_outputs(node: &Node, outs: &[ValueType]) -> Result<(), GraphError> {
    for t in outs {
        if checked_numel(&t.shape).is_none_or(|n| n.checked_mul(8).is_none()) {
            return Err(node.error(format!("output shape {:?} is too large", t.shape)));
        }
    }
    Ok(())
}
