//! Which quantized variant a model file already is, read from its operators (and from quench's
//! own export note), so that evaluating a quantized file someone else made — or one `quench
//! quantize` wrote earlier — is labelled by what it holds instead of as FP32.
//!
//! A graph says how its weights are stored and whether activation scales are computed at run time,
//! but not how its static ranges were found: a QAT export and a post-training static export hold
//! the same operators, so both read as static.

use crate::graph::Graph;
use crate::quant::export::META_BINARY;
use crate::quant::pipeline::{Method, Target};

/// The variant a graph holds: its weight precision and how its activations are quantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detected {
    /// Weight precision.
    pub target: Target,
    /// How activation scales are found (static also for QAT exports, which look the same).
    pub method: Method,
}

/// The quantized variant `graph` holds, or `None` when it has no quantized operator (FP32).
pub fn detect(graph: &Graph) -> Option<Detected> {
    let has = |ops: &[&str]| {
        graph
            .nodes
            .iter()
            .any(|n| ops.contains(&n.op_type.as_str()))
    };
    let found = |target, method| Some(Detected { target, method });
    if has(&["MatMulNBits"]) {
        return found(Target::Int4, Method::WeightOnly);
    }
    if graph.metadata.contains_key(META_BINARY) {
        return found(Target::Binary, Method::Static);
    }
    if has(&["DynamicQuantizeLinear"]) {
        return found(Target::Int8, Method::Dynamic);
    }
    let integer = [
        "QuantizeLinear",
        "DequantizeLinear",
        "QLinearConv",
        "QLinearMatMul",
        "MatMulInteger",
        "ConvInteger",
    ];
    if has(&integer) {
        return found(Target::Int8, Method::Static);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::testing::{graph, node};

    fn graph_of(ops: &[&str]) -> Graph {
        let nodes = ops
            .iter()
            .enumerate()
            .map(|(i, op)| node(op, &format!("n{i}"), &[], &[]))
            .collect();
        graph(21, nodes, Vec::new())
    }

    #[test]
    fn reads_the_variant_from_the_operators() {
        let of = |ops: &[&str]| detect(&graph_of(ops)).map(|d| (d.target, d.method));
        assert_eq!(of(&["Conv", "Relu", "Gemm"]), None);
        assert_eq!(
            of(&["QuantizeLinear", "DequantizeLinear", "Conv"]),
            Some((Target::Int8, Method::Static))
        );
        assert_eq!(
            of(&["QLinearConv", "QLinearMatMul"]),
            Some((Target::Int8, Method::Static))
        );
        assert_eq!(
            of(&["DynamicQuantizeLinear", "MatMulInteger", "Mul"]),
            Some((Target::Int8, Method::Dynamic))
        );
        assert_eq!(
            of(&["MatMulNBits", "DynamicQuantizeLinear"]),
            Some((Target::Int4, Method::WeightOnly))
        );
    }

    #[test]
    fn quench_binary_exports_read_as_binary() {
        let mut g = graph_of(&["QuantizeLinear", "DequantizeLinear", "Conv"]);
        g.metadata.insert(META_BINARY.into(), "note".into());
        let d = detect(&g).unwrap();
        assert_eq!((d.target, d.method), (Target::Binary, Method::Static));
    }
}
