//! Binary activations: folds an ONNX `Sign` into the binary layers that read it.
//!
//! Quench exports a binary layer with binary activations as `Sign(x)` feeding a Conv/Gemm/MatMul
//! whose weights are `DequantizeLinear(±1 int8, α per channel)`, which constant folding turns
//! into f32 `±α`. For every such reader that [`XnorLayer`] accepts, this pass rewires input 0 to
//! `x` and marks the node with [`SIGN_INPUT`], so it runs on the XNOR-popcount kernel with the
//! signs packed as bits; the `Sign` node goes when nothing else reads it. A `Sign` whose output
//! is a graph output (or a calibration tap) is left alone, and so are its readers: observed
//! values keep the plain f32 path.

use std::collections::BTreeMap;

use super::ops::b1::{XnorLayer, SIGN_INPUT};
use crate::graph::shape::ValueType;
use crate::graph::{Attr, Graph};
use crate::kernels::f32::Activation;

/// Applies the fusion to `g`, whose value types `types` were inferred before it (the rewired
/// readers see the same shapes, since `Sign` keeps its input's).
pub fn fuse_sign(g: &mut Graph, types: &BTreeMap<String, ValueType>) {
    let standard = |d: &str| d.is_empty() || d == "ai.onnx";
    let signs: Vec<(String, String)> = g
        .nodes
        .iter()
        .filter(|n| standard(&n.domain) && n.op_type == "Sign" && n.outputs.len() == 1)
        .filter(|n| n.inputs.len() == 1 && !g.is_output(&n.outputs[0]))
        .map(|n| (n.inputs[0].clone(), n.outputs[0].clone()))
        .collect();
    for (x, s) in signs {
        for j in 0..g.nodes.len() {
            let n = &g.nodes[j];
            let reader = standard(&n.domain)
                && matches!(n.op_type.as_str(), "Conv" | "Gemm" | "MatMul")
                && n.inputs.first() == Some(&s)
                && !n.inputs[1..].contains(&s);
            if !reader {
                continue;
            }
            let mut fused = n.clone();
            fused.inputs[0] = x.clone();
            fused.attrs.insert(SIGN_INPUT.into(), Attr::Int(1));
            let ins: Vec<Option<&ValueType>> = fused.inputs.iter().map(|i| types.get(i)).collect();
            let consts: Vec<_> = fused.inputs.iter().map(|i| g.initializers.get(i)).collect();
            if XnorLayer::compile(&fused, &ins, &consts, Activation::None).is_ok() {
                g.nodes[j] = fused;
            }
        }
        if !g.nodes.iter().any(|n| n.inputs.contains(&s)) {
            g.nodes.retain(|n| n.outputs.first() != Some(&s));
        }
    }
}
