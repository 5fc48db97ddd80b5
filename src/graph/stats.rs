//! Per-node statistics for `quench inspect`: output shapes, parameters and multiply-accumulates.
//!
//! MACs count only the multiply-accumulates of Conv, Gemm and MatMul (the work the GEMM kernels
//! do); elementwise, pooling and normalisation nodes count 0 MACs and report their output element
//! count separately in `elements`.

use std::collections::BTreeMap;

use super::shape::{matmul_shapes, ConvParams, GemmParams, ValueType};
use super::{Graph, GraphError};

/// Statistics of one node.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NodeStats {
    /// Node name.
    pub name: String,
    /// Operator type.
    pub op: String,
    /// Shape of each output.
    pub output_shapes: Vec<Vec<usize>>,
    /// Elements in the constant (initializer) inputs.
    pub params: usize,
    /// Bytes of the constant inputs.
    pub param_bytes: usize,
    /// Multiply-accumulates (Conv: N·Cout·Hout·Wout·(Cin/groups)·kh·kw; Gemm/MatMul: M·N·K per
    /// batch; everything else 0).
    pub macs: u64,
    /// Elements produced (all outputs), the work measure of ops that count 0 MACs.
    pub elements: u64,
}

/// Statistics of a whole graph.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GraphStats {
    /// One entry per node, in graph order.
    pub nodes: Vec<NodeStats>,
    /// Elements in all initializers (each counted once, even when shared).
    pub total_params: usize,
    /// Bytes of all initializers.
    pub total_param_bytes: usize,
    /// Sum of node MACs.
    pub total_macs: u64,
}

/// Computes statistics from a graph and the value types from [`super::shape::infer_shapes`].
pub fn stats(graph: &Graph, types: &BTreeMap<String, ValueType>) -> Result<GraphStats, GraphError> {
    let mut nodes = Vec::with_capacity(graph.nodes.len());
    for node in &graph.nodes {
        let ty = |i: usize| -> Result<&ValueType, GraphError> {
            node.input(i)
                .and_then(|n| types.get(n))
                .ok_or_else(|| node.error(format!("type of input {i} unknown")))
        };
        let output_shapes: Vec<Vec<usize>> = node
            .outputs
            .iter()
            .map(|o| types.get(o).map(|t| t.shape.clone()).unwrap_or_default())
            .collect();
        let macs = match node.op_type.as_str() {
            "Conv" => {
                let p = ConvParams::resolve(node, &ty(0)?.shape, &ty(1)?.shape)?;
                let k = (p.cin / p.group) * p.window.kernel[0] * p.window.kernel[1];
                (p.batch * p.cout * p.window.output[0] * p.window.output[1]) as u64 * k as u64
            }
            "Gemm" => {
                let c = node
                    .input(2)
                    .and_then(|n| types.get(n))
                    .map(|t| t.shape.as_slice());
                let p = GemmParams::resolve(node, &ty(0)?.shape, &ty(1)?.shape, c)?;
                (p.m * p.n) as u64 * p.k as u64
            }
            "MatMul" => {
                let s = matmul_shapes(node, &ty(0)?.shape, &ty(1)?.shape)?;
                (s.batch.iter().product::<usize>() * s.m * s.n) as u64 * s.k as u64
            }
            _ => 0,
        };
        let (mut params, mut param_bytes) = (0, 0);
        for t in node.inputs.iter().filter_map(|i| graph.initializers.get(i)) {
            params += t.len();
            param_bytes += t.size_bytes();
        }
        let elements = output_shapes
            .iter()
            .map(|s| s.iter().product::<usize>() as u64)
            .sum();
        nodes.push(NodeStats {
            name: node.name.clone(),
            op: node.op_type.clone(),
            output_shapes,
            params,
            param_bytes,
            macs,
            elements,
        });
    }
    Ok(GraphStats {
        total_macs: nodes.iter().map(|n| n.macs).sum(),
        total_params: graph.initializers.values().map(|t| t.len()).sum(),
        total_param_bytes: graph.initializers.values().map(|t| t.size_bytes()).sum(),
        nodes,
    })
}
