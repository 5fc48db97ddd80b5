//! The native executor: plan a graph once, then run it many times on quench's kernels.
//!
//! [`Plan::new`] simplifies the graph (Identity/Dropout removal, constant folding, BatchNorm
//! and per-channel Add folding into Conv, hard-swish fusion), fixes every shape for the given inputs, packs weights, fuses Relu/Clip into the GEMM
//! store, and lays every intermediate value out in one arena whose regions are reused once their
//! values are dead. [`Plan::run`] then allocates nothing but the returned outputs.

pub mod fuse_b1;
pub mod fuse_int;
pub mod fuse_qelem;
pub mod fuse_qop;
pub mod nhwc;
pub mod ops;
pub mod plan;

pub use plan::{EngineError, Observer, Plan};

use std::collections::BTreeMap;

use crate::eval::manifest::InputSpec;
use crate::graph::fold::fold_constants;
use crate::graph::inputs::concrete_input_shapes;
use crate::graph::shape::{infer_shapes, ValueType};
use crate::graph::stats::{stats, GraphStats};
use crate::graph::{Graph, GraphError};

/// A copy of `graph` with its constant subgraphs folded (by the engine's own kernels) for the
/// input shapes `known` gives (the others declared, a free leading dimension set to `batch`; see
/// [`concrete_input_shapes`]), and the type of every value in it: what `quench inspect`,
/// [`crate::graph::stats::stats`] and the export's opset check need for models whose shapes are
/// computed by `Shape` chains. No other rewrite is applied, so the nodes are the model's own.
pub fn fold_and_infer(
    graph: &Graph,
    batch: usize,
    known: &[(String, Vec<usize>)],
) -> Result<(Graph, BTreeMap<String, ValueType>), GraphError> {
    let shapes = concrete_input_shapes(graph, batch, known)?;
    let inputs: Vec<(&str, Vec<usize>)> = shapes
        .iter()
        .map(|(n, s)| (n.as_str(), s.clone()))
        .collect();
    let mut g = graph.clone();
    fold_constants(&mut g, &inputs, &ops::eval_node)?;
    let types = infer_shapes(&g, &inputs)?;
    Ok((g, types))
}

/// Statistics (per-node output shapes, parameters, MACs) of one inference on a single sample of
/// `input` (other inputs take their declared shapes at batch 1): the unit per-layer MACs and the
/// op-count energy model are quoted in.
pub fn single_sample_stats(graph: &Graph, input: &InputSpec) -> Result<GraphStats, GraphError> {
    let (folded, types) = fold_and_infer(graph, 1, &[input.at_batch(1)])?;
    stats(&folded, &types)
}
