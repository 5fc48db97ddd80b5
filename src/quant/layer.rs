//! The layers quantization rewrites (Conv, Gemm, MatMul in the default domain with a constant
//! weight) and where their weight, output channels and bias are.

use crate::graph::{Graph, Node};
use crate::quant::QuantError;
use crate::tensor::Tensor;

/// Operator types quantization applies to.
pub const QUANTIZABLE: [&str; 3] = ["Conv", "Gemm", "MatMul"];

/// True for a default-domain Conv, Gemm or MatMul.
pub fn is_quantizable(node: &Node) -> bool {
    (node.domain.is_empty() || node.domain == "ai.onnx")
        && QUANTIZABLE.contains(&node.op_type.as_str())
}

/// Where a static INT8 layer's output is quantized: after the Relu that is its only reader
/// (ORT then folds the Relu into the quantization, as a u8 zero point at 0 clamps the same),
/// else its own output.
pub fn quantized_output<'g>(graph: &'g Graph, node: &'g Node) -> Option<&'g str> {
    let out = node.outputs.first()?.as_str();
    let mut readers = graph
        .nodes
        .iter()
        .filter(|n| n.inputs.iter().any(|i| i == out));
    match (readers.next(), readers.next()) {
        (Some(r), None) if r.op_type == "Relu" && r.domain.is_empty() && !graph.is_output(out) => {
            r.outputs.first().map(String::as_str)
        }
        _ => Some(out),
    }
}

/// A quantizable node with its constant weight resolved.
#[derive(Debug)]
pub struct Layer<'g> {
    /// The node.
    pub node: &'g Node,
    /// Activation input name (input 0).
    pub input: &'g str,
    /// Weight value name (input 1).
    pub weight_name: &'g str,
    /// The weight.
    pub weight: &'g Tensor,
    /// Axis of the weight that indexes output channels (Conv 0, Gemm 0 with transB else 1,
    /// MatMul the last).
    pub channel_axis: usize,
    /// Constant 1-D bias of one value per output channel, when the layer has one that
    /// quantization can fold (Conv's B; Gemm's C when alpha = beta = 1).
    pub bias: Option<(&'g str, &'g Tensor)>,
}

impl<'g> Layer<'g> {
    /// Resolves `node`'s weight and bias in `graph`. Fails naming the layer when the weight is
    /// not a constant f32 of a usable rank.
    pub fn resolve(graph: &'g Graph, node: &'g Node) -> Result<Layer<'g>, QuantError> {
        let err = |m: String| QuantError::Unsupported {
            layer: node.name.clone(),
            op_type: node.op_type.clone(),
            message: m,
        };
        let attr = |e: crate::graph::GraphError| err(e.to_string());
        let input = node.input(0).ok_or_else(|| err("has no input".into()))?;
        let weight_name = node
            .input(1)
            .ok_or_else(|| err("has no weight input".into()))?;
        let weight = graph.initializers.get(weight_name).ok_or_else(|| {
            err(format!(
                "weight `{weight_name}` is not a constant (only constant weights are quantized)"
            ))
        })?;
        if weight.as_f32().is_err() {
            return Err(err(format!(
                "weight `{weight_name}` is {}, not f32",
                weight.dtype()
            )));
        }
        let rank = weight.shape().len();
        let channel_axis = match node.op_type.as_str() {
            "Conv" if rank >= 3 => 0,
            "Gemm" if rank == 2 => {
                if node.attr_int("transB", 0).map_err(attr)? != 0 {
                    0
                } else {
                    1
                }
            }
            "MatMul" if rank == 2 => 1,
            _ => {
                return Err(err(format!(
                    "weight `{weight_name}` has shape {:?}, which this rewrite does not take",
                    weight.shape()
                )))
            }
        };
        let channels = weight.shape()[channel_axis];
        let bias_input = match node.op_type.as_str() {
            "Conv" => node.input(2),
            "Gemm"
                if node.attr_float("alpha", 1.0).map_err(attr)? == 1.0
                    && node.attr_float("beta", 1.0).map_err(attr)? == 1.0 =>
            {
                node.input(2)
            }
            _ => None,
        };
        let bias = bias_input
            .and_then(|b| graph.initializers.get(b).map(|t| (b, t)))
            .filter(|(_, t)| t.shape() == [channels] && t.as_f32().is_ok());
        Ok(Layer {
            node,
            input,
            weight_name,
            weight,
            channel_axis,
            bias,
        })
    }

    /// The weight's f32 values.
    pub fn weight_values(&self) -> &'g [f32] {
        // `resolve` checked the type.
        self.weight.as_f32().unwrap_or_default()
    }

    /// Number of output channels.
    pub fn channels(&self) -> usize {
        self.weight.shape()[self.channel_axis]
    }

    /// An [`QuantError::Unsupported`] about this layer.
    pub fn unsupported(&self, message: impl Into<String>) -> QuantError {
        QuantError::Unsupported {
            layer: self.node.name.clone(),
            op_type: self.node.op_type.clone(),
            message: message.into(),
        }
    }

    /// For Gemm/MatMul: the weight as `B [K, N]` row-major (transposed from Gemm's `[N, K]`
    /// when `transB`), with `K` and `N`. Fails for Conv, and for a Gemm with `transA`, `alpha`
    /// or `beta` other than the defaults (the rewrites to MatMul forms would change them).
    pub fn matmul_weight(&self) -> Result<(Vec<f32>, usize, usize), QuantError> {
        let attr = |e: crate::graph::GraphError| self.unsupported(e.to_string());
        let shape = self.weight.shape();
        let w = self.weight_values();
        match self.node.op_type.as_str() {
            "MatMul" => Ok((w.to_vec(), shape[0], shape[1])),
            "Gemm" => {
                if self.node.attr_int("transA", 0).map_err(attr)? != 0
                    || self.node.attr_float("alpha", 1.0).map_err(attr)? != 1.0
                    || self.node.attr_float("beta", 1.0).map_err(attr)? != 1.0
                {
                    return Err(self.unsupported(
                        "Gemm with transA, alpha or beta other than 0, 1, 1 cannot become a MatMul form",
                    ));
                }
                if self.channel_axis == 0 {
                    let (n, k) = (shape[0], shape[1]);
                    let mut b = vec![0.0f32; k * n];
                    for r in 0..n {
                        for c in 0..k {
                            b[c * n + r] = w[r * k + c];
                        }
                    }
                    Ok((b, k, n))
                } else {
                    Ok((w.to_vec(), shape[0], shape[1]))
                }
            }
            _ => Err(self.unsupported("only Gemm and MatMul have a [K, N] weight")),
        }
    }
}
