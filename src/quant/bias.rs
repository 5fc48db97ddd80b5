//! Empirical bias correction (Nagel et al., "Data-Free Quantization Through Weight Equalization
//! and Bias Correction", ICCV 2019, the empirical variant; AIMET, TensorRT-style PTQ tools do the
//! same): quantizing weights and activations shifts the mean of each output channel of a layer,
//! and a deep network accumulates those shifts layer after layer. On calibration inputs, the
//! per-channel mean of every static INT8 layer's output in the quantized model is compared with
//! the FP32 model's, and the difference is folded into the layer's float bias, which the export
//! then quantizes as usual (so ONNX Runtime runs the corrected model and the native engine folds
//! it like any bias).
//!
//! This module holds the arithmetic and the graph edit: which layers can be corrected and which
//! tensor is measured for each ([`targets`]), per-channel means ([`ChannelMeans`]), and the
//! bias shift ([`shift_bias`]). The passes over calibration data are in
//! [`crate::quant::pipeline`].
//!
//! * A Conv, or a Gemm with `alpha = beta = 1`, takes the shift in its bias (input 2), which is
//!   added when it has none. Its measured tensor is its own float output, before its Relu and
//!   before the output's quantization ([`before_quantization`]).
//! * A MatMul whose only reader is an `Add` of a per-channel constant takes the shift in that
//!   constant (the `MatMul` + `Add` form exporters write for a biased linear layer).
//! * Other layers are left as they are.

use std::collections::BTreeMap;

use crate::graph::{Graph, Node};
use crate::quant::layer::is_quantizable;
use crate::quant::scheme::{Int8Mode, Precision};
use crate::quant::{QuantError, Scheme};
use crate::tensor::Tensor;

/// Where a layer's bias shift is folded.
#[derive(Debug, Clone, PartialEq)]
enum Slot {
    /// Input 2 of the layer node itself (added when missing).
    Own,
    /// Input `input` of the `Add` node `add` reading the layer's output.
    Add { add: String, input: usize },
}

/// A layer bias correction applies to.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Node name of the layer.
    pub layer: String,
    /// The tensor whose per-channel means are compared (same name in the FP32 and quantized
    /// graphs).
    pub tensor: String,
    /// Output channels.
    pub channels: usize,
    /// Channels are axis 1 of the measured tensor (Conv) rather than its last axis.
    channel_axis_1: bool,
    slot: Slot,
}

impl Target {
    /// The axis of a measured tensor of rank `rank` that holds the channels.
    pub fn channel_axis(&self, rank: usize) -> usize {
        if self.channel_axis_1 {
            1
        } else {
            rank.saturating_sub(1)
        }
    }
}

/// True when `precision` is static INT8 asking for bias correction.
fn wants_correction(precision: &Precision) -> bool {
    matches!(
        precision,
        Precision::Int8 {
            mode: Int8Mode::Static {
                bias_correction: true,
                ..
            },
            ..
        }
    )
}

/// The per-channel constant `name` in `graph` holding `channels` f32 values (shape `[C]` or
/// `[1, C]`), when it is one.
fn per_channel_constant(graph: &Graph, name: &str, channels: usize) -> bool {
    graph.initializers.get(name).is_some_and(|t| {
        t.as_f32().is_ok()
            && (t.shape() == [channels] || t.shape() == [1, channels])
            && t.len() == channels
    })
}

/// The layers of `graph` whose scheme precision asks for bias correction and whose bias can
/// be shifted, in graph (topological) order.
pub fn targets(graph: &Graph, scheme: &Scheme) -> Result<Vec<Target>, QuantError> {
    let mut out = Vec::new();
    for node in graph.nodes.iter().filter(|n| is_quantizable(n)) {
        if !wants_correction(scheme.precision_for(&node.name, &node.op_type)) {
            continue;
        }
        let layer = crate::quant::layer::Layer::resolve(graph, node)?;
        let channels = layer.channels();
        let Some(tensor) = node.outputs.first().cloned() else {
            continue;
        };
        let slot = match node.op_type.as_str() {
            "Conv" => match node.input(2) {
                None => Some(Slot::Own),
                Some(_) if layer.bias.is_some() => Some(Slot::Own),
                Some(_) => None,
            },
            "Gemm" => {
                let attr = |e: crate::graph::GraphError| layer.unsupported(e.to_string());
                let plain = node.attr_float("alpha", 1.0).map_err(attr)? == 1.0
                    && node.attr_float("beta", 1.0).map_err(attr)? == 1.0;
                match node.input(2) {
                    None if plain => Some(Slot::Own),
                    Some(_) if layer.bias.is_some() => Some(Slot::Own),
                    _ => None,
                }
            }
            _ => bias_add(graph, &tensor, channels),
        };
        if let Some(slot) = slot {
            out.push(Target {
                layer: node.name.clone(),
                tensor,
                channels,
                channel_axis_1: node.op_type == "Conv",
                slot,
            });
        }
    }
    Ok(out)
}

/// The `Add` of a per-channel constant that is the only reader of `tensor`, as a slot.
fn bias_add(graph: &Graph, tensor: &str, channels: usize) -> Option<Slot> {
    let mut readers = graph
        .nodes
        .iter()
        .filter(|n| n.inputs.iter().any(|i| i == tensor));
    let add = readers.next()?;
    if readers.next().is_some()
        || graph.is_output(tensor)
        || add.op_type != "Add"
        || !add.domain.is_empty()
        || add.inputs.len() != 2
    {
        return None;
    }
    let input = usize::from(add.inputs[0] == tensor);
    per_channel_constant(graph, &add.inputs[input], channels).then(|| Slot::Add {
        add: add.name.clone(),
        input,
    })
}

/// The float value `tensor` is quantized from in `graph`: the input of the QuantizeLinear
/// whose DequantizeLinear produces `tensor`, else `tensor` itself. A layer's output is measured
/// there, before its output quantization, because the bias shifts it linearly there (after
/// rounding, a shift smaller than the step moves whole plateaus at once: text strips' uniform
/// background made bias correction diverge when measured after it); the rounding error of the
/// output is the next layer's input error, which its own correction absorbs.
pub fn before_quantization<'g>(graph: &'g Graph, tensor: &'g str) -> &'g str {
    let producer = |t: &str| {
        graph
            .nodes
            .iter()
            .find(|n| n.outputs.iter().any(|o| o == t))
    };
    producer(tensor)
        .filter(|dq| dq.op_type == "DequantizeLinear")
        .and_then(|dq| dq.input(0))
        .and_then(producer)
        .filter(|q| q.op_type == "QuantizeLinear")
        .and_then(|q| q.input(0))
        .unwrap_or(tensor)
}

/// The part of `graph` that computes `tensor`, with `tensor` as its only output: what a
/// layer's measurement needs to run (graph inputs are kept, initializers pruned). Fails naming
/// the tensor when no node produces it.
pub fn upstream(graph: &Graph, tensor: &str) -> Result<Graph, QuantError> {
    let mut needed: std::collections::BTreeSet<&str> = [tensor].into();
    let mut keep = vec![false; graph.nodes.len()];
    for (i, n) in graph.nodes.iter().enumerate().rev() {
        if n.outputs.iter().any(|o| needed.contains(o.as_str())) {
            keep[i] = true;
            needed.extend(n.inputs.iter().map(String::as_str));
        }
    }
    if !keep.iter().any(|&k| k) {
        return Err(QuantError::graph(tensor, "no node produces this value"));
    }
    let mut out = graph.clone();
    out.nodes = graph
        .nodes
        .iter()
        .zip(&keep)
        .filter(|(_, &k)| k)
        .map(|(n, _)| n.clone())
        .collect();
    out.outputs = vec![crate::graph::ValueInfo {
        name: tensor.to_string(),
        dtype: crate::tensor::DataType::F32,
        shape: None,
    }];
    crate::graph::fold::prune_initializers(&mut out);
    Ok(out)
}

/// Running per-channel sums of one tensor's values over calibration batches.
#[derive(Debug, Clone, Default)]
pub struct ChannelMeans {
    sums: Vec<f64>,
    per_channel: u64,
}

impl ChannelMeans {
    /// Adds a batch of `target.tensor` of `shape`. Fails naming the tensor when its channel
    /// axis does not hold `target.channels` values or the data does not fill the shape.
    pub fn observe(
        &mut self,
        target: &Target,
        shape: &[usize],
        data: &[f32],
    ) -> Result<(), QuantError> {
        let bad = |m: String| QuantError::Calibration {
            name: target.tensor.clone(),
            message: m,
        };
        let axis = target.channel_axis(shape.len());
        if shape.get(axis) != Some(&target.channels) {
            return Err(bad(format!(
                "shape {shape:?} has no axis {axis} of {} channels",
                target.channels
            )));
        }
        if shape.iter().product::<usize>() != data.len() {
            return Err(bad(format!(
                "{} values do not fill shape {shape:?}",
                data.len()
            )));
        }
        let inner: usize = shape[axis + 1..].iter().product();
        let c = target.channels;
        if self.sums.is_empty() {
            self.sums = vec![0.0; c];
        }
        for (i, row) in data.chunks_exact(inner.max(1)).enumerate() {
            self.sums[i % c] += row.iter().map(|&v| f64::from(v)).sum::<f64>();
        }
        self.per_channel += (data.len() / c) as u64;
        Ok(())
    }

    /// The mean of each channel (empty before any value).
    pub fn means(&self) -> Vec<f64> {
        let n = self.per_channel.max(1) as f64;
        self.sums.iter().map(|s| s / n).collect()
    }
}

/// Per-channel means of every target's tensor, keyed by tensor name.
pub type Means = BTreeMap<String, ChannelMeans>;

/// The shift of each target: FP32 mean minus quantized mean, per channel. Fails naming a
/// target either side has no values for.
pub fn shifts(
    targets: &[Target],
    fp32: &Means,
    quantized: &Means,
) -> Result<Vec<Vec<f32>>, QuantError> {
    targets
        .iter()
        .map(|t| {
            let get = |m: &Means| {
                m.get(&t.tensor)
                    .map(ChannelMeans::means)
                    .filter(|v| v.len() == t.channels)
                    .ok_or_else(|| QuantError::Calibration {
                        name: t.tensor.clone(),
                        message: "no values observed for bias correction".into(),
                    })
            };
            let (a, b) = (get(fp32)?, get(quantized)?);
            Ok(a.iter().zip(&b).map(|(a, b)| (a - b) as f32).collect())
        })
        .collect()
}

/// Adds `shift` (one value per channel) to `target`'s bias in `graph`. A layer without a bias
/// gets one; a bias constant other nodes also read is copied first, so only this layer changes.
pub fn shift_bias(graph: &mut Graph, target: &Target, shift: &[f32]) -> Result<(), QuantError> {
    let err = |m: String| QuantError::graph(&target.layer, m);
    if shift.len() != target.channels {
        return Err(err(format!(
            "{} bias shifts for {} channels",
            shift.len(),
            target.channels
        )));
    }
    let (node_name, input) = match &target.slot {
        Slot::Own => (target.layer.as_str(), 2),
        Slot::Add { add, input } => (add.as_str(), *input),
    };
    let node_at = graph
        .nodes
        .iter()
        .position(|n| n.name == node_name)
        .ok_or_else(|| err(format!("node `{node_name}` is not in the graph")))?;
    let current = graph.nodes[node_at].input(input).map(str::to_string);
    let readers = |g: &Graph, name: &str| {
        g.nodes
            .iter()
            .flat_map(|n: &Node| n.inputs.iter())
            .filter(|i| *i == name)
            .count()
    };
    let name = match current {
        Some(name) if readers(graph, &name) == 1 && !graph.is_output(&name) => name,
        current => {
            let values = match &current {
                Some(name) => graph
                    .initializers
                    .get(name)
                    .cloned()
                    .ok_or_else(|| err(format!("bias `{name}` is not a constant")))?,
                None => Tensor::from_f32(vec![target.channels], vec![0.0; target.channels])?,
            };
            let base = format!("{}_corrected_bias", target.layer);
            let mut fresh = base.clone();
            let mut k = 1;
            while graph.initializers.contains_key(&fresh)
                || graph.nodes.iter().any(|n| n.outputs.contains(&fresh))
            {
                fresh = format!("{base}_{k}");
                k += 1;
            }
            graph.initializers.insert(fresh.clone(), values);
            let inputs = &mut graph.nodes[node_at].inputs;
            if inputs.len() <= input {
                inputs.resize(input + 1, String::new());
            }
            inputs[input] = fresh.clone();
            fresh
        }
    };
    let bias = graph
        .initializers
        .get_mut(&name)
        .ok_or_else(|| err(format!("bias `{name}` is not a constant")))?;
    let values = bias
        .as_f32_mut()
        .map_err(|_| err(format!("bias `{name}` is not f32")))?;
    if values.len() != shift.len() {
        return Err(err(format!(
            "bias `{name}` has {} values for {} channels",
            values.len(),
            shift.len()
        )));
    }
    for (b, s) in values.iter_mut().zip(shift) {
        *b += s;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::testing::{graph, node};
    use crate::quant::scheme::Calibration;

    fn t(shape: Vec<usize>, v: Vec<f32>) -> Tensor {
        Tensor::from_f32(shape, v).unwrap()
    }

    fn corrected_scheme() -> Scheme {
        let mut s = Scheme::int8_static(true, Calibration::MinMax);
        s.set_bias_correction(true);
        s
    }

    /// x → Conv(w, no bias) → Relu → MatMul(m) → Add(b) → y, plus a Gemm sharing `gb` with a
    /// second Gemm.
    fn net() -> Graph {
        graph(
            13,
            vec![
                node("Conv", "conv", &["x", "w"], &["c"]),
                node("Relu", "relu", &["c"], &["r"]),
                node("MatMul", "mm", &["r", "m"], &["h"]),
                node("Add", "add", &["b", "h"], &["a"]),
                node("Gemm", "g1", &["a", "gw", "gb"], &["g"]),
                node("Gemm", "g2", &["g", "gw", "gb"], &["y"]),
            ],
            vec![
                ("w", t(vec![2, 1, 1, 1], vec![1.0, 2.0])),
                ("m", t(vec![2, 3], vec![1.0; 6])),
                ("b", t(vec![3], vec![0.5, 0.5, 0.5])),
                ("gw", t(vec![3, 3], vec![1.0; 9])),
                ("gb", t(vec![3], vec![1.0, 2.0, 3.0])),
            ],
        )
    }

    #[test]
    fn targets_are_the_corrected_static_layers_with_a_bias_slot() {
        let g = net();
        let found = targets(&g, &corrected_scheme()).unwrap();
        let names: Vec<(&str, &str, usize)> = found
            .iter()
            .map(|t| (t.layer.as_str(), t.tensor.as_str(), t.channels))
            .collect();
        assert_eq!(
            names,
            [
                ("conv", "c", 2),
                ("mm", "h", 3),
                ("g1", "g", 3),
                ("g2", "y", 3)
            ]
        );
        assert_eq!(found[0].channel_axis(4), 1);
        assert_eq!(found[1].channel_axis(3), 2);
        // Without the flag, or a MatMul with no bias Add: nothing to correct.
        let plain = Scheme::int8_static(true, Calibration::MinMax);
        assert!(targets(&g, &plain).unwrap().is_empty());
        let mut g2 = g.clone();
        g2.nodes[3].op_type = "Mul".into();
        let layers: Vec<String> = targets(&g2, &corrected_scheme())
            .unwrap()
            .into_iter()
            .map(|t| t.layer)
            .collect();
        assert_eq!(layers, ["conv", "g1", "g2"]);
    }

    #[test]
    fn channel_means_average_every_position_of_a_channel() {
        let g = net();
        let found = targets(&g, &corrected_scheme()).unwrap();
        // Conv output [N=2, C=2, 1, 2]: channel 0 holds 1, 2, 5, 6; channel 1 holds 3, 4, 7, 8.
        let mut m = ChannelMeans::default();
        let v: Vec<f32> = (1..=8).map(|i| i as f32).collect();
        m.observe(&found[0], &[2, 2, 1, 2], &v).unwrap();
        assert_eq!(m.means(), [3.5, 5.5]);
        m.observe(&found[0], &[1, 2, 1, 2], &[0.0; 4]).unwrap();
        assert_eq!(m.means(), [14.0 / 6.0, 22.0 / 6.0]);
        // MatMul output [N, T, C]: channels on the last axis.
        let mut m = ChannelMeans::default();
        m.observe(&found[1], &[1, 2, 3], &[1.0, 2.0, 3.0, 3.0, 4.0, 5.0])
            .unwrap();
        assert_eq!(m.means(), [2.0, 3.0, 4.0]);
        let err = m.observe(&found[1], &[1, 2], &[0.0; 2]).unwrap_err();
        assert!(err.to_string().contains("`h`"), "{err}");
        assert!(m.observe(&found[1], &[1, 3], &[0.0; 2]).is_err());
    }

    #[test]
    fn shifts_fold_into_own_added_copied_and_add_biases() {
        let mut g = net();
        let found = targets(&g, &corrected_scheme()).unwrap();
        let mut fp32 = Means::new();
        let mut quantized = Means::new();
        for tg in &found {
            let n = tg.channels;
            let ones: Vec<f32> = (0..n).map(|c| c as f32).collect();
            let shape = if tg.channel_axis_1 {
                vec![1, n, 1, 1]
            } else {
                vec![1, n]
            };
            fp32.entry(tg.tensor.clone())
                .or_default()
                .observe(tg, &shape, &ones)
                .unwrap();
            let less: Vec<f32> = ones.iter().map(|v| v - 0.25).collect();
            quantized
                .entry(tg.tensor.clone())
                .or_default()
                .observe(tg, &shape, &less)
                .unwrap();
        }
        let s = shifts(&found, &fp32, &quantized).unwrap();
        assert!(s.iter().flatten().all(|&v| v == 0.25));
        for (tg, shift) in found.iter().zip(&s) {
            shift_bias(&mut g, tg, shift).unwrap();
        }
        let values = |g: &Graph, name: &str| g.initializers[name].as_f32().unwrap().to_vec();
        // The bias-less Conv got one.
        let conv_bias = g.nodes[0].inputs[2].clone();
        assert_eq!(conv_bias, "conv_corrected_bias");
        assert_eq!(values(&g, &conv_bias), [0.25, 0.25]);
        // The MatMul's Add constant moved.
        assert_eq!(values(&g, "b"), [0.75, 0.75, 0.75]);
        // The shared Gemm bias was copied for the first Gemm; the second, then its only
        // reader, shifted it in place.
        for (i, name) in [(4, "g1_corrected_bias"), (5, "gb")] {
            assert_eq!(g.nodes[i].inputs[2], name);
            assert_eq!(values(&g, name), [1.25, 2.25, 3.25]);
        }
        // A second round shifts the now-own biases in place.
        shift_bias(&mut g, &found[2], &[1.0, 1.0, 1.0]).unwrap();
        assert_eq!(values(&g, "g1_corrected_bias"), [2.25, 3.25, 4.25]);
        assert!(shift_bias(&mut g, &found[2], &[1.0]).is_err());
        let missing = shifts(&found, &fp32, &Means::new()).unwrap_err();
        assert!(missing.to_string().contains("`c`"), "{missing}");
    }

    #[test]
    fn upstream_keeps_what_a_tensor_needs_and_quantization_is_looked_through() {
        let g = net();
        let up = upstream(&g, "h").unwrap();
        let kept: Vec<&str> = up.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(kept, ["conv", "relu", "mm"]);
        assert_eq!(up.outputs[0].name, "h");
        assert!(!up.initializers.contains_key("gw"));
        assert!(upstream(&g, "nope").is_err());
        let q = graph(
            13,
            vec![
                node("Relu", "r", &["x"], &["f"]),
                node("QuantizeLinear", "q", &["f", "s", "z"], &["fq"]),
                node("DequantizeLinear", "dq", &["fq", "s", "z"], &["y"]),
            ],
            vec![],
        );
        assert_eq!(before_quantization(&q, "y"), "f");
        assert_eq!(before_quantization(&q, "f"), "f");
    }
}
