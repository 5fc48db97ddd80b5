//! Turns an IR [`Graph`] into a trainable [`Program`]: values numbered with per-sample shapes,
//! f32 initializers as parameters, one [`Op`] per node, and a fake-quantization step inserted in
//! front of the data input of every Conv, Gemm and MatMul.

use std::collections::BTreeMap;

use crate::engine::ops::elementwise::Unary;
use crate::eval::Dataset;
use crate::graph::simplify::remove_passthrough;
use crate::graph::{Attr, Graph, Node};
use crate::quant::qat::elementwise::{Binary, Broadcast, Pointwise};
use crate::quant::qat::fake_quant::ChannelAxis;
use crate::quant::qat::linalg::ConvGeom;
use crate::quant::qat::program::{Op, Param, PoolGeom, Program, Step, Value};
use crate::quant::qat::QatError;
use crate::tensor::checked_numel;

/// Largest per-sample value (and im2col matrix) a program allocates: 2^28 floats, 1 GiB. A
/// model whose attributes ask for more is refused before anything is allocated.
const MAX_SAMPLE_ELEMENTS: usize = 1 << 28;

/// The graph as it trains on `data`'s input: what post-training quantization works on
/// ([`crate::quant::prepare`]: BatchNorm and Conv bias adds folded into the Convs, so the weights
/// QAT trains are the ones that get quantized and run), with also the shape computations
/// folded (at batch 1, see `keep_batch_free`) and pass-through nodes dropped. The operators
/// stay the model's own (no fused ops a lower opset lacks), so the trained graph exports as it
/// came.
pub fn training_graph(graph: &Graph, data: &Dataset) -> Result<Graph, QatError> {
    let mut shape = vec![1];
    shape.extend_from_slice(&data.input().sample_shape);
    let known = [(data.input_name().to_string(), shape)];
    let (mut g, _) = crate::engine::fold_and_infer(graph, 1, &known)?;
    keep_batch_free(graph, &mut g);
    remove_passthrough(&mut g);
    Ok(crate::quant::prepare::prepare(&g)?)
}

/// Constant folding ran at batch 1, so a Reshape target the model computes from its input's
/// shape (`Shape → Gather → Concat`, as exporters write `x.reshape(x.shape[0], -1)`) became
/// `[1, …]`: training runs whole batches, so that leading 1 goes back to 0 ("copy the batch
/// dimension"). Targets the model wrote as literals are left as they are.
fn keep_batch_free(original: &Graph, folded: &mut Graph) {
    for node in &folded.nodes {
        let Some(target) = node.inputs.get(1) else {
            continue;
        };
        if node.op_type != "Reshape" || original.initializers.contains_key(target) {
            continue;
        }
        if let Some(t) = folded.initializers.get_mut(target) {
            if let Ok([first @ 1, ..]) = t.as_i64_mut() {
                *first = 0;
            }
        }
    }
}

/// Builds the program that computes `output` from the runtime input `input` (per-sample shape
/// `sample_shape`, the batch dimension excluded).
pub(crate) fn compile(
    graph: &Graph,
    input: &str,
    sample_shape: &[usize],
    output: &str,
) -> Result<Program, QatError> {
    if !graph.inputs.iter().any(|v| v.name == input) {
        return Err(QatError::Graph(format!(
            "graph `{}` has no input `{input}` (inputs: {:?})",
            graph.name,
            graph.inputs.iter().map(|v| &v.name).collect::<Vec<_>>()
        )));
    }
    let mut c = Compiler {
        graph,
        values: Vec::new(),
        by_name: BTreeMap::new(),
        params: Vec::new(),
        param_by_name: BTreeMap::new(),
        steps: Vec::new(),
        quantized_input: BTreeMap::new(),
    };
    let input_id = c.add_value(input, sample_shape.to_vec(), true)?;
    for node in &graph.nodes {
        c.node(node)?;
    }
    let output_id = *c.by_name.get(output).ok_or_else(|| {
        QatError::Graph(format!(
            "output `{output}` is not computed by any node of graph `{}`",
            graph.name
        ))
    })?;
    if c.values[output_id].shape.len() != 1 {
        return Err(QatError::Graph(format!(
            "output `{output}` has per-sample shape {:?}; training needs one score per class",
            c.values[output_id].shape
        )));
    }
    Ok(Program::new(
        c.values, c.params, c.steps, input_id, output_id,
    ))
}

struct Compiler<'g> {
    graph: &'g Graph,
    values: Vec<Value>,
    by_name: BTreeMap<String, usize>,
    params: Vec<Param>,
    param_by_name: BTreeMap<String, usize>,
    steps: Vec<Step>,
    /// Fake-quantized copy of a value, by the value's id, when one was made.
    quantized_input: BTreeMap<usize, usize>,
}

impl Compiler<'_> {
    fn add_value(
        &mut self,
        name: &str,
        shape: Vec<usize>,
        observed: bool,
    ) -> Result<usize, QatError> {
        let len = checked_numel(&shape)
            .filter(|&n| n <= MAX_SAMPLE_ELEMENTS)
            .ok_or_else(|| {
                QatError::Graph(format!(
                    "value `{name}` of per-sample shape {shape:?} exceeds {MAX_SAMPLE_ELEMENTS} elements"
                ))
            })?;
        let id = self.values.len();
        self.values.push(Value {
            name: name.to_string(),
            len,
            shape,
            observed,
        });
        self.by_name.insert(name.to_string(), id);
        Ok(id)
    }

    fn unsupported(node: &Node, reason: impl Into<String>) -> QatError {
        QatError::Unsupported {
            node: node.name.clone(),
            op_type: node.op_type.clone(),
            reason: reason.into(),
        }
    }

    /// The runtime value feeding input `i` of `node`.
    fn value(&self, node: &Node, i: usize) -> Result<usize, QatError> {
        let name = node
            .inputs
            .get(i)
            .ok_or_else(|| Self::unsupported(node, format!("input {i} is missing")))?;
        self.by_name.get(name).copied().ok_or_else(|| {
            if self.graph.initializers.contains_key(name) {
                Self::unsupported(
                    node,
                    format!("input {i} `{name}` is a constant; a computed value is needed"),
                )
            } else {
                QatError::Graph(format!(
                    "node `{}` reads `{name}`, which nothing before it produces",
                    node.name
                ))
            }
        })
    }

    /// The f32 initializer feeding input `i` of `node`, as a parameter; `None` when the input
    /// is absent or empty.
    fn param(&mut self, node: &Node, i: usize) -> Result<Option<usize>, QatError> {
        let Some(name) = node.inputs.get(i).filter(|n| !n.is_empty()) else {
            return Ok(None);
        };
        if let Some(&p) = self.param_by_name.get(name) {
            return Ok(Some(p));
        }
        let t = self.graph.initializers.get(name).ok_or_else(|| {
            Self::unsupported(
                node,
                format!("input {i} `{name}` must be a constant (initializer) to be trained"),
            )
        })?;
        let data = t
            .as_f32()
            .map_err(|e| Self::unsupported(node, format!("initializer `{name}`: {e}")))?
            .to_vec();
        let p = self.params.len();
        self.params.push(Param {
            name: name.clone(),
            shape: t.shape().to_vec(),
            data,
            layer: None,
        });
        self.param_by_name.insert(name.clone(), p);
        Ok(Some(p))
    }

    /// Marks parameter `p` as the weights of quantized layer `node` with channels along `axis`.
    fn quantize_weights(&mut self, node: &Node, p: usize, axis: usize) -> Result<(), QatError> {
        let param = &mut self.params[p];
        if let Some((other, _, _)) = &param.layer {
            return Err(Self::unsupported(
                node,
                format!("weights `{}` are shared with layer `{other}`", param.name),
            ));
        }
        let channels = param.shape[axis];
        let inner = param.shape[axis + 1..].iter().product();
        param.layer = Some((node.name.clone(), axis, ChannelAxis { channels, inner }));
        Ok(())
    }

    /// The fake-quantized copy of value `x` (made once, shared by all its consumers).
    fn quantized(&mut self, x: usize) -> Result<usize, QatError> {
        if let Some(&q) = self.quantized_input.get(&x) {
            return Ok(q);
        }
        let name = format!("{}/fake_quant", self.values[x].name);
        let shape = self.values[x].shape.clone();
        let q = self.add_value(&name, shape, false)?;
        self.steps.push(Step {
            op: Op::ActQuant { x },
            output: q,
        });
        self.quantized_input.insert(x, q);
        Ok(q)
    }

    fn push(&mut self, node: &Node, op: Op, shape: Vec<usize>) -> Result<(), QatError> {
        let out = match node.outputs.as_slice() {
            [one] => one,
            _ => {
                return Err(Self::unsupported(
                    node,
                    format!(
                        "{} outputs; only single-output nodes train",
                        node.outputs.len()
                    ),
                ))
            }
        };
        let output = self.add_value(out, shape, true)?;
        self.steps.push(Step { op, output });
        Ok(())
    }

    fn node(&mut self, node: &Node) -> Result<(), QatError> {
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            return Err(Self::unsupported(node, format!("domain `{}`", node.domain)));
        }
        match node.op_type.as_str() {
            "Conv" => self.conv(node),
            "Gemm" | "MatMul" => self.dense(node),
            "Add" | "Mul" | "Div" => self.binary(node),
            "Relu" | "Sigmoid" | "HardSigmoid" | "HardSwish" | "Clip" => {
                let f = self.pointwise(node)?;
                let x = self.value(node, 0)?;
                let shape = self.values[x].shape.clone();
                self.push(node, Op::Pointwise { f, x }, shape)
            }
            "MaxPool" => self.max_pool(node),
            "GlobalAveragePool" => {
                let x = self.value(node, 0)?;
                let xs = &self.values[x].shape;
                let [c, ref plane @ ..] = xs[..] else {
                    return Err(Self::unsupported(node, "input without channels"));
                };
                let plane = plane.iter().product();
                let shape = std::iter::once(c).chain(xs[1..].iter().map(|_| 1)).collect();
                self.push(node, Op::GlobalAveragePool { x, plane }, shape)
            }
            "Flatten" => {
                let x = self.value(node, 0)?;
                let axis = int_attr(node, "axis", 1)?;
                if axis != 1 {
                    return Err(Self::unsupported(node, format!("axis {axis}; only 1 trains")));
                }
                let len = self.values[x].len;
                self.push(node, Op::Reshape { x }, vec![len])
            }
            "Reshape" => self.reshape(node),
            "Identity" => {
                let x = self.value(node, 0)?;
                let [out] = node.outputs.as_slice() else {
                    return Err(Self::unsupported(node, "one output expected"));
                };
                self.by_name.insert(out.clone(), x);
                Ok(())
            }
            "Softmax" => self.final_softmax(node),
            other => Err(Self::unsupported(
                node,
                format!("`{other}` has no training op (Conv, Gemm, MatMul, Add, Mul, Relu, Sigmoid, HardSigmoid, HardSwish, Clip, MaxPool, GlobalAveragePool, Flatten, Reshape, Identity and a final Softmax do)"),
            )),
        }
    }

    /// The activation a pointwise node computes.
    fn pointwise(&self, node: &Node) -> Result<Pointwise, QatError> {
        let float = |name: &str, default: f32| match node.attrs.get(name) {
            None => Ok(default),
            Some(Attr::Float(v)) => Ok(*v),
            Some(other) => Err(Self::unsupported(
                node,
                format!("attribute {name} = {other:?}"),
            )),
        };
        Ok(match node.op_type.as_str() {
            "Relu" => Pointwise::Act(Unary::Relu),
            "Sigmoid" => Pointwise::Act(Unary::Sigmoid),
            "HardSwish" => Pointwise::Act(Unary::HardSwish),
            "HardSigmoid" => Pointwise::Act(Unary::HardSigmoid {
                alpha: float("alpha", 0.2)?,
                beta: float("beta", 0.5)?,
            }),
            _ => {
                // Clip: bounds from attributes (opset < 11) or constant inputs.
                let bound = |i: usize, attr: &str, default: f32| -> Result<f32, QatError> {
                    match node.inputs.get(i).filter(|n| !n.is_empty()) {
                        None => float(attr, default),
                        Some(name) => self
                            .graph
                            .initializers
                            .get(name)
                            .and_then(|t| t.as_f32().ok())
                            .and_then(|v| (v.len() == 1).then(|| v[0]))
                            .ok_or_else(|| {
                                Self::unsupported(
                                    node,
                                    format!("bound `{name}` is not a constant f32 scalar"),
                                )
                            }),
                    }
                };
                let (lo, hi) = (bound(1, "min", f32::MIN)?, bound(2, "max", f32::MAX)?);
                if lo.is_nan() || hi.is_nan() || lo > hi {
                    return Err(Self::unsupported(node, format!("bounds [{lo}, {hi}]")));
                }
                Pointwise::Act(Unary::Clip { lo, hi })
            }
        })
    }

    /// Reshape to a constant shape that keeps the batch dimension first.
    fn reshape(&mut self, node: &Node) -> Result<(), QatError> {
        let x = self.value(node, 0)?;
        let target = node
            .inputs
            .get(1)
            .and_then(|n| self.graph.initializers.get(n))
            .and_then(|t| t.as_i64().ok())
            .ok_or_else(|| Self::unsupported(node, "the shape is not a constant int64 tensor"))?;
        if int_attr(node, "allowzero", 0)? != 0 {
            return Err(Self::unsupported(node, "allowzero=1"));
        }
        let len = self.values[x].len;
        let xs = &self.values[x].shape;
        // The batch dimension must stay where it is: 0 copies it, -1 infers it (then every
        // other dimension is given).
        let (first, rest) = match target {
            [first @ (0 | -1), rest @ ..] => (*first, rest),
            _ => {
                return Err(Self::unsupported(
                    node,
                    format!("shape {target:?} does not keep the batch dimension first"),
                ))
            }
        };
        let mut shape = Vec::with_capacity(rest.len());
        let mut infer = None;
        for (i, &d) in rest.iter().enumerate() {
            shape.push(match d {
                0 => *xs.get(i).ok_or_else(|| {
                    Self::unsupported(node, format!("shape {target:?} copies a missing dimension"))
                })?,
                -1 if first == 0 && infer.is_none() => {
                    infer = Some(i);
                    1
                }
                d => usize::try_from(d)
                    .ok()
                    .filter(|&d| d > 0)
                    .ok_or_else(|| Self::unsupported(node, format!("shape {target:?}")))?,
            });
        }
        let known = checked_numel(&shape).filter(|&n| n > 0);
        match (known, infer) {
            (Some(n), Some(i)) if len.is_multiple_of(n) => shape[i] = len / n,
            (Some(n), None) if n == len => {}
            _ => {
                return Err(Self::unsupported(
                    node,
                    format!("shape {target:?} does not hold the {len} elements of {xs:?}"),
                ))
            }
        }
        self.push(node, Op::Reshape { x }, shape)
    }

    /// A Softmax is trained through only where nothing reads its result: the losses apply
    /// softmax to the scores themselves, so the program's output is the Softmax's input (under
    /// the Softmax's name, which evaluation asks for).
    fn final_softmax(&mut self, node: &Node) -> Result<(), QatError> {
        let x = self.value(node, 0)?;
        let rank = self.values[x].shape.len() + 1;
        let axis = int_attr(node, "axis", if self.graph.opset >= 13 { -1 } else { 1 })?;
        let [out] = node.outputs.as_slice() else {
            return Err(Self::unsupported(node, "one output expected"));
        };
        // Read by nothing, or only by Identity copies nothing reads (graph outputs).
        let nodes = &self.graph.nodes;
        let is_read = |v: &String| nodes.iter().any(|n| n.inputs.contains(v));
        let read = nodes
            .iter()
            .filter(|n| n.inputs.contains(out))
            .any(|n| n.op_type != "Identity" || n.outputs.iter().any(is_read));
        if rank != 2 || !(axis == 1 || axis == -1) || read {
            return Err(Self::unsupported(
                node,
                "`Softmax` trains only as the network's last step, over the classes of [N, classes]",
            ));
        }
        self.by_name.insert(out.clone(), x);
        Ok(())
    }

    fn conv(&mut self, node: &Node) -> Result<(), QatError> {
        let x = self.value(node, 0)?;
        let w = self
            .param(node, 1)?
            .ok_or_else(|| Self::unsupported(node, "no weights"))?;
        let b = self.param(node, 2)?;
        let groups = usize::try_from(int_attr(node, "group", 1)?)
            .ok()
            .filter(|&g| g > 0)
            .ok_or_else(|| Self::unsupported(node, "group < 1"))?;
        if let Some(Attr::String(p)) = node.attrs.get("auto_pad") {
            if p.as_slice() != b"NOTSET" {
                return Err(Self::unsupported(
                    node,
                    format!("auto_pad {}", String::from_utf8_lossy(p)),
                ));
            }
        }
        let xs = &self.values[x].shape;
        let ws = &self.params[w].shape;
        let [c, h, wd] = xs[..] else {
            return Err(Self::unsupported(
                node,
                format!("input of per-sample shape {xs:?}; 2-D NCHW is needed"),
            ));
        };
        let [o, wc, kh, kw] = ws[..] else {
            return Err(Self::unsupported(node, format!("weights of shape {ws:?}")));
        };
        if c % groups != 0 || o % groups != 0 || wc * groups != c {
            return Err(QatError::Graph(format!(
                "node `{}`: {groups} groups of weights with {wc} input channels for an input of {c} channels and {o} outputs",
                node.name
            )));
        }
        if let Some(b) = b {
            if self.params[b].data.len() != o {
                return Err(QatError::Graph(format!(
                    "node `{}`: bias has {} values for {o} channels",
                    node.name,
                    self.params[b].data.len()
                )));
            }
        }
        let strides = ints_attr(node, "strides", &[1, 1])?;
        let dil = ints_attr(node, "dilations", &[1, 1])?;
        let pads = ints_attr(node, "pads", &[0, 0, 0, 0])?;
        if let Some(ks) = node.attrs.get("kernel_shape") {
            if *ks != Attr::Ints(vec![kh as i64, kw as i64]) {
                return Err(Self::unsupported(
                    node,
                    format!("kernel_shape {ks:?} disagrees with weights {ws:?}"),
                ));
            }
        }
        let [sh, sw] = strides[..] else {
            return Err(Self::unsupported(node, format!("strides {strides:?}")));
        };
        let [dh, dw] = dil[..] else {
            return Err(Self::unsupported(node, format!("dilations {dil:?}")));
        };
        let [pt, pl, pb, pr] = pads[..] else {
            return Err(Self::unsupported(node, format!("pads {pads:?}")));
        };
        if sh == 0 || sw == 0 || dh == 0 || dw == 0 {
            return Err(Self::unsupported(node, "zero stride or dilation"));
        }
        let (Some(oh), Some(ow)) = (
            out_len(h, kh, dh, sh, pt, pb),
            out_len(wd, kw, dw, sw, pl, pr),
        ) else {
            return Err(Self::unsupported(
                node,
                "kernel larger than the padded input, or sizes overflow",
            ));
        };
        if oh
            .checked_mul(ow)
            .and_then(|n| n.checked_mul(c * kh * kw))
            .is_none_or(|n| n > MAX_SAMPLE_ELEMENTS)
        {
            return Err(Self::unsupported(
                node,
                format!("im2col of {c}×{kh}×{kw} by {oh}×{ow} is too large"),
            ));
        }
        let g = ConvGeom {
            c,
            h,
            w: wd,
            o,
            kh,
            kw,
            sh,
            sw,
            pt,
            pl,
            dh,
            dw,
            oh,
            ow,
            groups,
        };
        self.quantize_weights(node, w, 0)?;
        let xq = self.quantized(x)?;
        self.push(node, Op::Conv { g, x: xq, w, b }, vec![o, oh, ow])
    }

    fn dense(&mut self, node: &Node) -> Result<(), QatError> {
        let x = self.value(node, 0)?;
        let w = self
            .param(node, 1)?
            .ok_or_else(|| Self::unsupported(node, "no weights"))?;
        let gemm = node.op_type == "Gemm";
        let b = if gemm { self.param(node, 2)? } else { None };
        if gemm {
            for (name, want) in [("alpha", 1.0), ("beta", 1.0)] {
                if let Some(Attr::Float(v)) = node.attrs.get(name) {
                    if *v != want {
                        return Err(Self::unsupported(
                            node,
                            format!("{name} {v}; only 1 trains"),
                        ));
                    }
                }
            }
            if int_attr(node, "transA", 0)? != 0 {
                return Err(Self::unsupported(node, "transA=1"));
            }
        }
        let trans_b = gemm && int_attr(node, "transB", 0)? != 0;
        let xs = &self.values[x].shape;
        let ws = &self.params[w].shape;
        let ([k], [r, cols]) = (&xs[..], &ws[..]) else {
            return Err(Self::unsupported(
                node,
                format!("input per-sample shape {xs:?} with weights {ws:?}; [N,K]·2-D is needed"),
            ));
        };
        let (wk, n) = if trans_b { (*cols, *r) } else { (*r, *cols) };
        if wk != *k {
            return Err(QatError::Graph(format!(
                "node `{}`: weights {ws:?} (transB={}) take {wk} inputs, input has {k}",
                node.name, trans_b as u8
            )));
        }
        let k = *k;
        if let Some(b) = b {
            if self.params[b].data.len() != n {
                return Err(Self::unsupported(
                    node,
                    format!(
                        "bias of {} values for {n} outputs; only a per-output bias trains",
                        self.params[b].data.len()
                    ),
                ));
            }
        }
        self.quantize_weights(node, w, if trans_b { 0 } else { 1 })?;
        let xq = self.quantized(x)?;
        self.push(
            node,
            Op::Dense {
                x: xq,
                w,
                b,
                trans_b,
                k,
                n,
            },
            vec![n],
        )
    }

    fn binary(&mut self, node: &Node) -> Result<(), QatError> {
        let names = (node.inputs.first(), node.inputs.get(1));
        let (Some(a), Some(b)) = names else {
            return Err(Self::unsupported(node, "needs two inputs"));
        };
        let (a_val, b_val) = (self.by_name.get(a).copied(), self.by_name.get(b).copied());
        let op = match node.op_type.as_str() {
            "Add" => Binary::Add,
            "Mul" => Binary::Mul,
            _ => {
                // Only `x / constant` trains: it is `x · (1 / constant)`.
                let (Some(x), None) = (a_val, b_val) else {
                    return Err(Self::unsupported(
                        node,
                        "only a division by a constant trains",
                    ));
                };
                let c = self.scalar(node, 1)?;
                if c == 0.0 || !c.is_finite() {
                    return Err(Self::unsupported(node, format!("divides by {c}")));
                }
                return self.affine(node, x, 1.0 / c, 0.0);
            }
        };
        match (a_val, b_val) {
            (Some(a), Some(b)) => {
                let (sa, sb) = (&self.values[a].shape, &self.values[b].shape);
                let (bcast, shape) = Broadcast::new(sa, sb).ok_or_else(|| {
                    Self::unsupported(node, format!("shapes {sa:?} and {sb:?} do not broadcast"))
                })?;
                self.push(node, Op::Binary { op, a, b, bcast }, shape)
            }
            (Some(x), None) | (None, Some(x)) => {
                let pi = if a_val.is_some() { 1 } else { 0 };
                let elements = self.constant(node, pi)?.len();
                // A scalar is part of the activation (hard-swish's `+ 3`, a `· 0.5`): it stays
                // as the model has it. A larger constant added is a bias, and trains.
                if elements == 1 {
                    let c = self.scalar(node, pi)?;
                    return match op {
                        Binary::Add => self.affine(node, x, 1.0, c),
                        Binary::Mul => self.affine(node, x, c, 0.0),
                    };
                }
                if op == Binary::Mul {
                    return Err(Self::unsupported(
                        node,
                        "multiplies by a constant tensor; only scalars and computed values train",
                    ));
                }
                let p = self
                    .param(node, pi)?
                    .ok_or_else(|| Self::unsupported(node, "empty input"))?;
                let xs = self.values[x].shape.clone();
                let mut ps: &[usize] = &self.params[p].shape;
                while ps.len() > 1 && ps[0] == 1 {
                    ps = &ps[1..];
                }
                if !xs.ends_with(ps) {
                    return Err(Self::unsupported(node, format!("constant of shape {:?} does not broadcast over the trailing dimensions of {xs:?}", self.params[p].shape)));
                }
                self.push(node, Op::AddParam { x, p }, xs)
            }
            (None, None) => Err(Self::unsupported(node, "combines two constants")),
        }
    }

    /// The f32 constant feeding input `i` of `node`.
    fn constant(&self, node: &Node, i: usize) -> Result<&[f32], QatError> {
        node.inputs
            .get(i)
            .and_then(|n| self.graph.initializers.get(n))
            .and_then(|t| t.as_f32().ok())
            .ok_or_else(|| Self::unsupported(node, format!("input {i} is not an f32 constant")))
    }

    /// The one-element f32 constant feeding input `i` of `node`.
    fn scalar(&self, node: &Node, i: usize) -> Result<f32, QatError> {
        match self.constant(node, i)? {
            [c] => Ok(*c),
            other => Err(Self::unsupported(
                node,
                format!("input {i} holds {} values; a scalar is needed", other.len()),
            )),
        }
    }

    /// `x · mul + add` with fixed factors.
    fn affine(&mut self, node: &Node, x: usize, mul: f32, add: f32) -> Result<(), QatError> {
        let shape = self.values[x].shape.clone();
        let f = Pointwise::Affine { mul, add };
        self.push(node, Op::Pointwise { f, x }, shape)
    }

    fn max_pool(&mut self, node: &Node) -> Result<(), QatError> {
        let x = self.value(node, 0)?;
        let xs = &self.values[x].shape;
        let [c, h, w] = xs[..] else {
            return Err(Self::unsupported(
                node,
                format!("input of per-sample shape {xs:?}"),
            ));
        };
        let ks = ints_attr(node, "kernel_shape", &[])?;
        let [kh, kw] = ks[..] else {
            return Err(Self::unsupported(node, format!("kernel_shape {ks:?}")));
        };
        let st = ints_attr(node, "strides", &[1, 1])?;
        let [sh, sw] = st[..] else {
            return Err(Self::unsupported(node, format!("strides {st:?}")));
        };
        let pads = ints_attr(node, "pads", &[0, 0, 0, 0])?;
        let [pt, pl, pb, pr] = pads[..] else {
            return Err(Self::unsupported(node, format!("pads {pads:?}")));
        };
        if int_attr(node, "ceil_mode", 0)? != 0 {
            return Err(Self::unsupported(node, "ceil_mode=1"));
        }
        if ints_attr(node, "dilations", &[1, 1])? != [1, 1] {
            return Err(Self::unsupported(node, "dilations"));
        }
        if kh == 0 || kw == 0 || sh == 0 || sw == 0 || pt >= kh || pb >= kh || pl >= kw || pr >= kw
        {
            return Err(Self::unsupported(
                node,
                format!("kernel {ks:?}, strides {st:?}, pads {pads:?}"),
            ));
        }
        let (Some(oh), Some(ow)) = (out_len(h, kh, 1, sh, pt, pb), out_len(w, kw, 1, sw, pl, pr))
        else {
            return Err(Self::unsupported(
                node,
                "kernel larger than the padded input, or sizes overflow",
            ));
        };
        if u32::try_from(c * h * w).is_err() {
            return Err(Self::unsupported(
                node,
                format!("input {xs:?} too large to index"),
            ));
        }
        let g = PoolGeom {
            c,
            h,
            w,
            kh,
            kw,
            sh,
            sw,
            pt,
            pl,
            oh,
            ow,
        };
        self.push(node, Op::MaxPool { g, x }, vec![c, oh, ow])
    }
}

/// Output extent of a window of `k` taps `d` apart sliding by `s` over `len` padded by `p0` and
/// `p1`; `None` when the window does not fit or the attributes overflow.
fn out_len(len: usize, k: usize, d: usize, s: usize, p0: usize, p1: usize) -> Option<usize> {
    let span = d.checked_mul(k.checked_sub(1)?)?.checked_add(1)?;
    let padded = len.checked_add(p0)?.checked_add(p1)?;
    padded.checked_sub(span).map(|r| r / s + 1)
}

fn int_attr(node: &Node, name: &str, default: i64) -> Result<i64, QatError> {
    match node.attrs.get(name) {
        None => Ok(default),
        Some(Attr::Int(v)) => Ok(*v),
        Some(other) => Err(Compiler::unsupported(
            node,
            format!("attribute {name} = {other:?}"),
        )),
    }
}

/// A list-of-integers attribute as non-negative sizes.
fn ints_attr(node: &Node, name: &str, default: &[usize]) -> Result<Vec<usize>, QatError> {
    match node.attrs.get(name) {
        None => Ok(default.to_vec()),
        Some(Attr::Ints(v)) => v
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .map_err(|_| Compiler::unsupported(node, format!("attribute {name} = {v:?}")))
            })
            .collect(),
        Some(other) => Err(Compiler::unsupported(
            node,
            format!("attribute {name} = {other:?}"),
        )),
    }
}
