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

/// The single scalar of a constant f32 input, if it is one.
fn const_scalar(graph: &Graph, name: Option<&str>) -> Option<f32> {
    match graph.initializers.get(name?)?.as_f32() {
        Ok([v]) => Some(*v),
        _ => None,
    }
}

/// Index of the only node reading `value`, when exactly one node (and no graph output) does.
fn sole_reader(graph: &Graph, value: &str) -> Option<usize> {
    if graph.is_output(value) {
        return None;
    }
    let mut readers = graph
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.inputs.iter().any(|i| i == value));
    let (idx, node) = readers.next()?;
    let once = node.inputs.iter().filter(|i| *i == value).count() == 1;
    (once && readers.next().is_none()).then_some(idx)
}

/// Rewrites the exported form of hard-swish, `x · clip(x + 3, 0, 6) / 6`, into one HardSwish
/// node (one pass over the data instead of four). Returns the number rewritten.
pub fn fuse_hardswish(graph: &mut Graph) -> Result<usize, GraphError> {
    let mut fused = 0;
    let mut i = 0;
    while i < graph.nodes.len() {
        match hardswish_at(graph, i)? {
            Some((x, [clip, mul, div])) => {
                let out = graph.nodes[div].outputs[0].clone();
                let name = graph.nodes[div].name.clone();
                let node = &mut graph.nodes[div];
                node.op_type = "HardSwish".into();
                node.inputs = vec![x];
                node.outputs = vec![out];
                node.attrs.clear();
                node.name = name;
                let mut dead = [i, clip, mul];
                dead.sort_unstable();
                for d in dead.into_iter().rev() {
                    graph.nodes.remove(d);
                }
                fused += 1;
            }
            None => i += 1,
        }
    }
    prune_initializers(graph);
    Ok(fused)
}

/// When node `i` is the `x + 3` of a hard-swish pattern: `x` and the Clip, Mul and Div indices.
fn hardswish_at(graph: &Graph, i: usize) -> Result<Option<(String, [usize; 3])>, GraphError> {
    let add = &graph.nodes[i];
    if add.op_type != "Add" || !add.domain.is_empty() || add.outputs.len() != 1 {
        return Ok(None);
    }
    let (x, three) = match (
        const_scalar(graph, add.input(1)),
        const_scalar(graph, add.input(0)),
    ) {
        (Some(c), _) => (add.input(0), c),
        (None, Some(c)) => (add.input(1), c),
        _ => return Ok(None),
    };
    let Some(x) = x.filter(|x| !graph.initializers.contains_key(*x)) else {
        return Ok(None);
    };
    if three != 3.0 {
        return Ok(None);
    }
    let Some(clip) = sole_reader(graph, &add.outputs[0]) else {
        return Ok(None);
    };
    let c = &graph.nodes[clip];
    let bounds = if graph.opset < 11 {
        (
            Some(c.attr_float("min", f32::MIN)?),
            Some(c.attr_float("max", f32::MAX)?),
        )
    } else {
        (
            const_scalar(graph, c.input(1)),
            const_scalar(graph, c.input(2)),
        )
    };
    if c.op_type != "Clip"
        || c.input(0) != Some(&add.outputs[0])
        || bounds != (Some(0.0), Some(6.0))
    {
        return Ok(None);
    }
    let Some(mul) = sole_reader(graph, &c.outputs[0]) else {
        return Ok(None);
    };
    let m = &graph.nodes[mul];
    let operands = [m.input(0), m.input(1)];
    if m.op_type != "Mul"
        || !(operands.contains(&Some(x)) && operands.contains(&Some(c.outputs[0].as_str())))
    {
        return Ok(None);
    }
    let Some(div) = sole_reader(graph, &m.outputs[0]) else {
        return Ok(None);
    };
    let d = &graph.nodes[div];
    if d.op_type != "Div"
        || d.input(0) != Some(&m.outputs[0])
        || const_scalar(graph, d.input(1)) != Some(6.0)
    {
        return Ok(None);
    }
    Ok(Some((x.to_string(), [clip, mul, div])))
}

/// Folds an `Add` of a constant per-output-channel (or scalar) tensor that is the only reader of
/// a Conv output into the Conv's bias. Returns the number folded.
pub fn fold_conv_bias_add(graph: &mut Graph) -> Result<usize, GraphError> {
    let mut folded = 0;
    let mut i = 0;
    while i < graph.nodes.len() {
        let Some((add, bias)) = conv_bias_add_at(graph, i) else {
            i += 1;
            continue;
        };
        let add_node = graph.nodes.remove(add);
        let conv = &mut graph.nodes[i];
        let name = unique_name(&graph.initializers, &format!("{}.bias_folded", conv.name));
        let bias =
            Tensor::from_f32(vec![bias.len()], bias).map_err(|e| add_node.error(e.to_string()))?;
        graph.initializers.insert(name.clone(), bias);
        conv.inputs.truncate(2);
        conv.inputs.push(name);
        conv.outputs[0].clone_from(&add_node.outputs[0]);
        folded += 1;
    }
    prune_initializers(graph);
    Ok(folded)
}

/// When node `i` is a Conv whose only reader adds a per-channel constant: that Add's index and
/// the combined bias.
fn conv_bias_add_at(graph: &Graph, i: usize) -> Option<(usize, Vec<f32>)> {
    let conv = &graph.nodes[i];
    if conv.op_type != "Conv" || !conv.domain.is_empty() || conv.outputs.len() != 1 {
        return None;
    }
    let cout = *graph.initializers.get(conv.input(1)?)?.shape().first()?;
    let add_idx = sole_reader(graph, &conv.outputs[0])?;
    let add = &graph.nodes[add_idx];
    if add.op_type != "Add" || !add.domain.is_empty() {
        return None;
    }
    let other = if add.input(0) == Some(&conv.outputs[0]) {
        add.input(1)
    } else {
        add.input(0)
    };
    let c = graph.initializers.get(other?)?;
    let data = c.as_f32().ok()?;
    // Per-channel: [C,1,1], [1,C,1,1] (or a scalar); anything that varies spatially is not a bias.
    let dims: Vec<usize> = c.shape().to_vec();
    let per_channel = dims.len() <= 4
        && (data.len() == 1
            || (data.len() == cout && dims.len() >= 3 && dims[dims.len() - 3] == cout));
    if !per_channel {
        return None;
    }
    let old: Vec<f32> = match conv.input(2) {
        None => vec![0.0; cout],
        Some(b) => graph.initializers.get(b)?.as_f32().ok()?.to_vec(),
    };
    if old.len() != cout {
        return None;
    }
    Some((
        add_idx,
        old.iter()
            .enumerate()
            .map(|(j, b)| b + data[if data.len() == 1 { 0 } else { j }])
            .collect(),
    ))
}
