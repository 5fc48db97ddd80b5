//! Constant folding: every node whose inputs are all constant (or, for `Shape`, whose input shape
//! is known) is evaluated once and replaced by an initializer.
//!
//! The graph module runs nothing itself: the caller passes the evaluator, which is the engine's
//! own op implementation ([`crate::engine::ops::eval_node`]), so folded and executed results come
//! from the same code.

use std::collections::BTreeSet;

use super::shape::{check_outputs, infer_node, input_types, shape_value, ValueType};
use super::{Graph, GraphError, Node};
use crate::tensor::Tensor;

/// Evaluates one node on constant inputs (`None` for omitted optional inputs) under an opset.
pub type Evaluator<'a> =
    dyn Fn(&Node, i64, &[Option<&Tensor>]) -> Result<Vec<Tensor>, GraphError> + 'a;

/// Evaluates into initializers every node `which` selects whose inputs are all initializers
/// (a node writing a graph output stays). Unlike [`fold_constants`] it needs no input shapes and
/// leaves what it does not select alone (e.g. `Shape`), so the graph keeps its free batch
/// dimension. Initializers are not pruned. Returns the number of nodes folded.
pub fn fold_constant_nodes(
    g: &mut Graph,
    eval: &Evaluator<'_>,
    which: impl Fn(&Node) -> bool,
) -> Result<usize, GraphError> {
    let mut folded = 0;
    let mut i = 0;
    while i < g.nodes.len() {
        let node = &g.nodes[i];
        let constant = which(node)
            && !node.inputs.is_empty()
            && node.outputs.iter().all(|o| !g.is_output(o))
            && node
                .inputs
                .iter()
                .all(|x| x.is_empty() || g.initializers.contains_key(x));
        if !constant {
            i += 1;
            continue;
        }
        let consts: Vec<Option<&Tensor>> =
            node.inputs.iter().map(|x| g.initializers.get(x)).collect();
        let values = eval(node, g.opset, &consts)?;
        if values.len() != node.outputs.len() {
            return Err(node.error(format!(
                "evaluation gave {} outputs, expected {}",
                values.len(),
                node.outputs.len()
            )));
        }
        let node = g.nodes.remove(i);
        for (name, t) in node.outputs.iter().zip(values) {
            if !name.is_empty() {
                g.initializers.insert(name.clone(), t);
            }
        }
        folded += 1;
    }
    Ok(folded)
}

/// Folds constant nodes into initializers for the given concrete input shapes, then drops
/// initializers nothing reads. Returns the number of nodes folded.
pub fn fold_constants(
    graph: &mut Graph,
    inputs: &[(&str, Vec<usize>)],
    eval: &Evaluator<'_>,
) -> Result<usize, GraphError> {
    let mut types = input_types(graph, inputs)?;
    for (name, t) in &graph.initializers {
        types.insert(name.clone(), ValueType::of(t));
    }
    let mut kept = Vec::with_capacity(graph.nodes.len());
    let mut folded = 0;
    for node in std::mem::take(&mut graph.nodes) {
        let consts: Vec<Option<&Tensor>> = node
            .inputs
            .iter()
            .map(|i| graph.initializers.get(i))
            .collect();
        let all_const = node
            .inputs
            .iter()
            .zip(&consts)
            .all(|(n, c)| n.is_empty() || c.is_some());
        let values = if node.op_type == "Shape" && node.domain.is_empty() {
            let t = node
                .input(0)
                .and_then(|i| types.get(i))
                .ok_or_else(|| node.error("input shape unknown"))?;
            Some(vec![shape_value(&node, &t.shape)?])
        } else if all_const && (!node.inputs.is_empty() || node.op_type == "Constant") {
            let outs = eval(&node, graph.opset, &consts)?;
            check_outputs(&node, &outs.iter().map(ValueType::of).collect::<Vec<_>>())?;
            Some(outs)
        } else {
            None
        };
        match values {
            Some(vals) => {
                if vals.len() < node.outputs.iter().filter(|o| !o.is_empty()).count() {
                    return Err(node.error("evaluation produced too few outputs"));
                }
                for (name, t) in node.outputs.iter().zip(vals) {
                    if !name.is_empty() {
                        types.insert(name.clone(), ValueType::of(&t));
                        graph.initializers.insert(name.clone(), t);
                    }
                }
                folded += 1;
            }
            None => {
                let ins: Vec<Option<&ValueType>> =
                    node.inputs.iter().map(|i| types.get(i)).collect();
                let outs = infer_node(&node, graph.opset, &ins, &consts)?;
                for (name, t) in node.outputs.iter().zip(outs) {
                    types.insert(name.clone(), t);
                }
                kept.push(node);
            }
        }
    }
    graph.nodes = kept;
    prune_initializers(graph);
    Ok(folded)
}

/// Removes initializers that no node reads and that are not graph outputs.
pub fn prune_initializers(graph: &mut Graph) {
    let used: BTreeSet<String> = graph
        .nodes
        .iter()
        .flat_map(|n| n.inputs.iter().cloned())
        .chain(graph.outputs.iter().map(|o| o.name.clone()))
        .collect();
    graph.initializers.retain(|k, _| used.contains(k));
}
