//! Turns a QOperator graph (ORT's `quantize_static(quant_format=QOperator)`: `QuantizeLinear →
//! QLinearConv / QLinearMatMul / com.microsoft::QGemm, MaxPool, Flatten, … → DequantizeLinear`)
//! into the QDQ form, before [`crate::graph::qdq::fuse_qdq`] runs: each QOperator node becomes
//! `DequantizeLinear(x)`, `DequantizeLinear(W)`, `DequantizeLinear(B)` (the int32 bias on scale
//! `x_scale · w_scale`), the float Conv/MatMul/Gemm and, when the node has an output grid,
//! `QuantizeLinear` on it. The QDQ pass then folds those patterns into the same fused integer
//! layers QDQ models run on (u8/i8 values packed in the arena, requantized in the GEMM
//! epilogue), so the engine has one design for quantized values.
//!
//! The rewrite is the ONNX definition of each operator (DQ, float op, Q), so a pattern the QDQ
//! pass cannot fuse (e.g. u8 weights, a run-time B) still runs, through the standalone
//! QuantizeLinear/DequantizeLinear kernels and the f32 op.

use std::collections::HashSet;

use crate::graph::shape_int::MS_DOMAIN;
use crate::graph::{Attr, Graph, GraphError, Node};
use crate::tensor::Tensor;

/// The float operator behind a QOperator node, and its input positions: x (scale, zero point
/// follow), W (scale, zero point follow), bias, output scale (zero point follows).
struct Layout {
    op: &'static str,
    w: usize,
    bias: Option<usize>,
    y: Option<usize>,
}

fn layout(n: &Node) -> Option<Layout> {
    Some(match (n.domain.as_str(), n.op_type.as_str()) {
        ("" | "ai.onnx", "QLinearConv") => Layout {
            op: "Conv",
            w: 3,
            bias: Some(8),
            y: Some(6),
        },
        ("" | "ai.onnx", "QLinearMatMul") => Layout {
            op: "MatMul",
            w: 3,
            bias: None,
            y: Some(6),
        },
        (MS_DOMAIN, "QGemm") => Layout {
            op: "Gemm",
            w: 3,
            bias: Some(6),
            y: Some(7),
        },
        _ => return None,
    })
}

/// Names not yet used in the graph.
struct Names(HashSet<String>);

impl Names {
    fn of(g: &Graph) -> Names {
        let mut used: HashSet<String> = g.initializers.keys().cloned().collect();
        used.extend(g.inputs.iter().map(|v| v.name.clone()));
        for n in &g.nodes {
            used.extend(n.outputs.iter().cloned());
            used.extend(n.inputs.iter().cloned());
        }
        Names(used)
    }

    fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 1;
        while self.0.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.0.insert(name.clone());
        name
    }
}

fn dequantize(name: String, inputs: [&str; 3], output: &str, axis: Option<i64>) -> Node {
    Node {
        name,
        op_type: "DequantizeLinear".into(),
        domain: String::new(),
        inputs: inputs
            .iter()
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        outputs: vec![output.to_string()],
        attrs: axis
            .map(|a| ("axis".to_string(), Attr::Int(a)))
            .into_iter()
            .collect(),
    }
}

/// A constant f32 input of `n`, checked finite and positive (a scale).
fn scale<'g>(g: &'g Graph, n: &Node, i: usize, what: &str) -> Result<&'g [f32], GraphError> {
    let name = n
        .input(i)
        .ok_or_else(|| n.error(format!("the {what} is missing")))?;
    let s = g
        .initializers
        .get(name)
        .ok_or_else(|| n.error(format!("the {what} `{name}` must be a constant")))?
        .as_f32()
        .map_err(|e| n.error(format!("the {what} `{name}`: {e}")))?;
    if s.is_empty() || s.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
        return Err(n.error(format!(
            "the {what} `{name}` must be finite and positive, got {:?}",
            &s[..s.len().min(4)]
        )));
    }
    Ok(s)
}

/// Rewrites every QOperator node of `g` into its QDQ pattern; returns how many were rewritten.
pub fn unfold_qoperator(g: &mut Graph) -> Result<usize, GraphError> {
    if !g.nodes.iter().any(|n| layout(n).is_some()) {
        return Ok(0);
    }
    let mut names = Names::of(g);
    let mut count = 0;
    let mut nodes = Vec::with_capacity(g.nodes.len());
    for n in std::mem::take(&mut g.nodes) {
        let Some(l) = layout(&n) else {
            nodes.push(n);
            continue;
        };
        let rewritten = (|| -> Result<Vec<Node>, GraphError> {
            let input = |i: usize| n.input(i).unwrap_or("");
            let out = n
                .outputs
                .first()
                .ok_or_else(|| n.error("no output"))?
                .clone();
            let sx = scale(g, &n, 1, "input scale")?;
            let &[sx] = sx else {
                return Err(n.error("the input scale must be one value"));
            };
            let sw = scale(g, &n, l.w + 1, "weight scale")?.to_vec();
            let trans_b = n.attr_int("transB", 0)? != 0;
            if l.op == "Gemm"
                && (n.attr_int("transA", 0)? != 0 || n.attr_float("alpha", 1.0)? != 1.0)
            {
                return Err(n.error("QGemm with transA or alpha ≠ 1 is not supported natively"));
            }
            let w_axis = match l.op {
                "Conv" => 0,
                "Gemm" if trans_b => 0,
                _ => 1,
            };
            let mut out_nodes = Vec::new();
            let x_f = names.fresh(&format!("{}_dq", input(0)));
            out_nodes.push(dequantize(
                names.fresh(&format!("{}_DequantizeLinear", n.name)),
                [input(0), input(1), input(2)],
                &x_f,
                None,
            ));
            let w_f = names.fresh(&format!("{}_dq", input(l.w)));
            out_nodes.push(dequantize(
                names.fresh(&format!("{}_w_DequantizeLinear", n.name)),
                [input(l.w), input(l.w + 1), input(l.w + 2)],
                &w_f,
                (sw.len() > 1).then_some(w_axis),
            ));
            let mut op_inputs = vec![x_f, w_f];
            if let Some(b) = l.bias.and_then(|i| n.input(i)) {
                // The int32 bias is on the accumulator's grid: scale x_scale · w_scale[j].
                let bs: Vec<f32> = sw.iter().map(|s| sx * s).collect();
                let bs_name = names.fresh(&format!("{b}_scale"));
                let shape = if bs.len() > 1 { vec![bs.len()] } else { vec![] };
                let t = Tensor::from_f32(shape, bs).map_err(|e| n.error(e.to_string()))?;
                g.initializers.insert(bs_name.clone(), t);
                let b_f = names.fresh(&format!("{b}_dq"));
                out_nodes.push(dequantize(
                    names.fresh(&format!("{}_b_DequantizeLinear", n.name)),
                    [b, &bs_name, ""],
                    &b_f,
                    (sw.len() > 1).then_some(0),
                ));
                op_inputs.push(b_f);
            }
            let quantized = l.y.is_some_and(|y| n.input(y).is_some());
            let y_f = if quantized {
                names.fresh(&format!("{out}_float"))
            } else {
                out.clone()
            };
            let mut attrs = n.attrs.clone();
            if l.op == "Gemm" {
                attrs.retain(|k, _| k == "transB");
            }
            out_nodes.push(Node {
                name: n.name.clone(),
                op_type: l.op.into(),
                domain: String::new(),
                inputs: op_inputs,
                outputs: vec![y_f.clone()],
                attrs,
            });
            if let Some(y) = l.y.filter(|_| quantized) {
                out_nodes.push(Node {
                    name: names.fresh(&format!("{}_QuantizeLinear", n.name)),
                    op_type: "QuantizeLinear".into(),
                    domain: String::new(),
                    inputs: [y_f.as_str(), input(y), input(y + 1)]
                        .iter()
                        .map(|s| s.to_string())
                        .filter(|s| !s.is_empty())
                        .collect(),
                    outputs: vec![out],
                    attrs: Default::default(),
                });
            }
            Ok(out_nodes)
        })()?;
        nodes.extend(rewritten);
        count += 1;
    }
    g.nodes = nodes;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::qdq::{fuse_qdq, DOMAIN, QCONV};
    use crate::graph::testing::{graph, node};
    use crate::tensor::TensorData;

    fn qlinear_conv(w_scale: Vec<f32>) -> Graph {
        let t = |shape: &[usize], d: TensorData| Tensor::new(shape.to_vec(), d).unwrap();
        let inits = [
            ("xs", t(&[], TensorData::F32(vec![0.1]))),
            ("xz", t(&[], TensorData::U8(vec![3]))),
            ("w", t(&[2, 1, 1, 1], TensorData::I8(vec![5, -7]))),
            ("ws", t(&[2], TensorData::F32(w_scale))),
            ("wz", t(&[2], TensorData::I8(vec![0, 0]))),
            ("ys", t(&[], TensorData::F32(vec![0.2]))),
            ("yz", t(&[], TensorData::U8(vec![1]))),
            ("b", t(&[2], TensorData::I32(vec![40, -9]))),
        ];
        let node = |op: &str, ins: &[&str], out: &str| node(op, &format!("{op}_n"), ins, &[out]);
        graph(
            13,
            vec![
                node("QuantizeLinear", &["x", "xs", "xz"], "xq"),
                node(
                    "QLinearConv",
                    &["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"],
                    "yq",
                ),
                node("DequantizeLinear", &["yq", "ys", "yz"], "y"),
            ],
            inits.into(),
        )
    }

    #[test]
    fn qlinear_conv_becomes_one_fused_integer_conv() {
        let mut g = qlinear_conv(vec![0.01, 0.02]);
        assert_eq!(unfold_qoperator(&mut g).unwrap(), 1);
        let ops: Vec<&str> = g.nodes.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(
            ops,
            [
                "QuantizeLinear",
                "DequantizeLinear",
                "DequantizeLinear",
                "DequantizeLinear",
                "Conv",
                "QuantizeLinear",
                "DequantizeLinear"
            ]
        );
        // The bias is dequantized on x_scale · w_scale per channel.
        let bs = g.nodes[3].input(1).unwrap();
        let want: Vec<f32> = [0.01f32, 0.02].iter().map(|s| 0.1 * s).collect();
        assert_eq!(g.initializers[bs].as_f32().unwrap(), want.as_slice());
        fuse_qdq(&mut g).unwrap();
        let fused: Vec<&Node> = g.nodes.iter().filter(|n| n.domain == DOMAIN).collect();
        assert_eq!(fused.len(), 1);
        assert_eq!(fused[0].op_type, QCONV);
        assert_eq!(fused[0].outputs, ["yq"]);
    }

    #[test]
    fn a_zero_weight_scale_is_refused_naming_the_node() {
        let mut g = qlinear_conv(vec![0.01, 0.0]);
        let err = unfold_qoperator(&mut g).unwrap_err().to_string();
        assert!(
            err.contains("QLinearConv_n") && err.contains("`ws`"),
            "{err}"
        );
    }
}
