//! Inference-time simplifications: dropping pass-through nodes (Identity, Dropout) and folding
//! BatchNormalization into the convolution before it.

use super::fold::prune_initializers;
use super::{Graph, GraphError};
use crate::tensor::Tensor;

/// Removes Identity and Dropout nodes (Dropout is a no-op at inference) by wiring their readers
/// to their input. A node whose output is a graph output, or whose Dropout mask is read, stays.
/// Returns the number of nodes removed.
pub fn remove_passthrough(graph: &mut Graph) -> usize {
    let mut removed = 0;
    let mut i = 0;
    while i < graph.nodes.len() {
        let node = &graph.nodes[i];
        let passthrough = matches!(node.op_type.as_str(), "Identity" | "Dropout")
            && node.domain.is_empty()
            && node.outputs.first().is_some_and(|o| !graph.is_output(o))
            && node.input(0).is_some();
        let mask_read = node.outputs.get(1).is_some_and(|m| {
            !m.is_empty()
                && (graph.is_output(m) || graph.nodes.iter().any(|n| n.inputs.contains(m)))
        });
        if !passthrough || mask_read {
            i += 1;
            continue;
        }
        let node = graph.nodes.remove(i);
        let (from, to) = (&node.outputs[0], &node.inputs[0]);
        for later in &mut graph.nodes[i..] {
            for input in later.inputs.iter_mut().filter(|x| *x == from) {
                input.clone_from(to);
            }
        }
        removed += 1;
    }
    removed
}

/// Folds every BatchNormalization whose input is a Conv output read by nothing else into that
/// Conv: `W' = W·γ/√(σ²+ε)`, `b' = (b−μ)·γ/√(σ²+ε)+β`. Conv and BN parameters must be constant
/// f32 initializers; other BNs are left for the engine to run. Returns the number folded.
pub fn fold_batchnorm(graph: &mut Graph) -> Result<usize, GraphError> {
    let mut folded = 0;
    let mut j = 0;
    while j < graph.nodes.len() {
        let Some((conv_idx, w, b)) = foldable_bn(graph, j)? else {
            j += 1;
            continue;
        };
        let bn = graph.nodes.remove(j);
        let conv = &mut graph.nodes[conv_idx];
        let wname = unique_name(
            &graph.initializers,
            &format!("{}.bn_folded.weight", conv.name),
        );
        graph.initializers.insert(wname.clone(), w);
        let bname = unique_name(
            &graph.initializers,
            &format!("{}.bn_folded.bias", conv.name),
        );
        graph.initializers.insert(bname.clone(), b);
        conv.inputs.truncate(1);
        conv.inputs.push(wname);
        conv.inputs.push(bname);
        conv.outputs[0].clone_from(&bn.outputs[0]);
        folded += 1;
    }
    prune_initializers(graph);
    Ok(folded)
}

fn unique_name(taken: &std::collections::BTreeMap<String, Tensor>, base: &str) -> String {
    let mut name = base.to_string();
    let mut k = 1;
    while taken.contains_key(&name) {
        name = format!("{base}.{k}");
        k += 1;
    }
    name
}

/// When node `j` is a foldable BN, the index of its Conv and the folded weight and bias.
fn foldable_bn(graph: &Graph, j: usize) -> Result<Option<(usize, Tensor, Tensor)>, GraphError> {
    let bn = &graph.nodes[j];
    if bn.op_type != "BatchNormalization" || !bn.domain.is_empty() || bn.outputs.len() != 1 {
        return Ok(None);
    }
    if bn.attr_int("training_mode", 0)? != 0 || bn.attr_int("spatial", 1)? != 1 {
        return Ok(None);
    }
    let Some(x) = bn.input(0) else {
        return Ok(None);
    };
    let Some(conv_idx) = graph.nodes[..j]
        .iter()
        .rposition(|n| n.outputs.iter().any(|o| o == x))
    else {
        return Ok(None);
    };
    let conv = &graph.nodes[conv_idx];
    if conv.op_type != "Conv"
        || !conv.domain.is_empty()
        || graph.consumer_counts().get(x) != Some(&1)
    {
        return Ok(None);
    }
    let init = |n: Option<&str>| {
        n.and_then(|n| graph.initializers.get(n))
            .and_then(|t| t.as_f32().ok().map(|d| (t, d)))
    };
    let Some((wt, w)) = init(conv.input(1)) else {
        return Ok(None);
    };
    let cout = wt.shape().first().copied().unwrap_or(0);
    let params: Option<Vec<&[f32]>> = (1..5).map(|i| init(bn.input(i)).map(|(_, d)| d)).collect();
    let Some(params) = params else {
        return Ok(None);
    };
    if cout == 0 || params.iter().any(|p| p.len() != cout) {
        return Ok(None);
    }
    let bias = match conv.input(2) {
        None => vec![0.0; cout],
        Some(name) => match init(Some(name)) {
            Some((_, d)) if d.len() == cout => d.to_vec(),
            _ => return Ok(None),
        },
    };
    let eps = bn.attr_float("epsilon", 1e-5)?;
    let (gamma, beta, mean, var) = (params[0], params[1], params[2], params[3]);
    let per = w.len() / cout;
    let mut new_w = w.to_vec();
    let mut new_b = bias;
    for c in 0..cout {
        let s = gamma[c] / (var[c] + eps).sqrt();
        new_w[c * per..(c + 1) * per]
            .iter_mut()
            .for_each(|v| *v *= s);
        new_b[c] = (new_b[c] - mean[c]) * s + beta[c];
    }
    let bad = |e: crate::tensor::TensorError| bn.error(e.to_string());
    let w = Tensor::from_f32(wt.shape().to_vec(), new_w).map_err(bad)?;
    let b = Tensor::from_f32(vec![cout], new_b).map_err(bad)?;
    Ok(Some((conv_idx, w, b)))
}
