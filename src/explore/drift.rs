//! Cross-runtime drift: the same model on the native engine and on ONNX Runtime, same inputs,
//! every intermediate f32 tensor compared, in graph order, and the first tensor where the two
//! part (SQNR of native against ORT below a threshold) flagged with the node that made it.
//!
//! Both runtimes see the model with its intermediate tensors added to the graph outputs
//! ([`crate::quant::probe::expose`]), so neither needs a debugging hook. Only f32 tensors are
//! compared (integer tensors of a quantized graph, e.g. QuantizeLinear outputs, are followed by
//! the DequantizeLinear whose f32 output is compared); their types come from the small
//! propagation in [`f32_values`].

use std::collections::BTreeMap;

use serde::Serialize;

use crate::eval::metrics::{cosine, difference, sqnr_db};
use crate::explore::ExploreError;
use crate::graph::Graph;
use crate::quant::probe::expose;
use crate::runtime::native::NativeRuntime;
use crate::runtime::ort::{OrtOptions, OrtRuntime};
use crate::runtime::{Runtime, RuntimeError};
use crate::tensor::{DataType, Tensor};

/// SQNR (dB) below which two runtimes' values of a tensor are said to part, by default. FP32
/// runtimes agree to well over 100 dB (summation order only); one INT8 rounding step apart on
/// a few elements stays above 40 dB; a wrong kernel or scale falls far below 30.
pub const DEFAULT_THRESHOLD_DB: f64 = 30.0;

/// One tensor on both runtimes.
#[derive(Debug, Clone, Serialize)]
pub struct TensorDrift {
    /// The tensor.
    pub tensor: String,
    /// The node that produced it.
    pub node: String,
    /// Its operator.
    pub op_type: String,
    /// SQNR of native against ORT, dB (`+inf` when equal).
    pub sqnr_db: f64,
    /// Cosine similarity.
    pub cosine: f64,
    /// Largest absolute element difference.
    pub max_abs: f64,
}

/// What `quench drift` found.
#[derive(Debug, Clone, Serialize)]
pub struct DriftReport {
    /// Samples in the compared batch.
    pub samples: usize,
    /// The parting threshold, dB.
    pub threshold_db: f64,
    /// Every compared tensor, in graph order.
    pub tensors: Vec<TensorDrift>,
    /// Index in `tensors` of the first one below the threshold.
    pub first_parting: Option<usize>,
    /// Tensors not compared because they are not f32.
    pub skipped: usize,
}

/// The f32 values of `graph`, in node order, with the node producing each. Types propagate
/// from the inputs and initializers: quantizing operators give the zero point's (or u8) type,
/// integer matmuls i32, shape-like operators i64, `Cast` its `to`, anything else its first
/// input's type. Also returns how many node outputs are not f32.
pub fn f32_values(graph: &Graph) -> (Vec<(String, usize)>, usize) {
    let mut types: BTreeMap<&str, DataType> = graph
        .inputs
        .iter()
        .map(|i| (i.name.as_str(), i.dtype))
        .chain(
            graph
                .initializers
                .iter()
                .map(|(n, t)| (n.as_str(), t.dtype())),
        )
        .collect();
    let (mut out, mut skipped) = (Vec::new(), 0);
    for (index, node) in graph.nodes.iter().enumerate() {
        let input = |i: usize| node.input(i).and_then(|n| types.get(n).copied());
        let dtype = match node.op_type.as_str() {
            "QuantizeLinear" => Some(input(2).unwrap_or(DataType::U8)),
            "DynamicQuantizeLinear" => Some(DataType::U8),
            "MatMulInteger" | "ConvInteger" => Some(DataType::I32),
            "Shape" | "Size" | "ArgMax" | "ArgMin" | "NonZero" => Some(DataType::I64),
            "Cast" => node
                .attr_int("to", 0)
                .ok()
                .and_then(|c| DataType::from_onnx_code(c as i32)),
            "DequantizeLinear" => Some(DataType::F32),
            _ => input(0),
        };
        for (k, name) in node.outputs.iter().enumerate() {
            if name.is_empty() {
                continue;
            }
            // DynamicQuantizeLinear's scale (output 1) is f32; its zero point u8.
            let t = match (node.op_type.as_str(), k) {
                ("DynamicQuantizeLinear", 1) => Some(DataType::F32),
                _ => dtype,
            };
            if let Some(t) = t {
                types.insert(name.as_str(), t);
            }
            if t == Some(DataType::F32) {
                out.push((name.clone(), index));
            } else {
                skipped += 1;
            }
        }
    }
    (out, skipped)
}

/// Index of the first tensor whose SQNR is below `threshold_db` (NaN counts as parted).
pub fn first_parting(tensors: &[TensorDrift], threshold_db: f64) -> Option<usize> {
    tensors
        .iter()
        .position(|t| t.sqnr_db.is_nan() || t.sqnr_db < threshold_db)
}

/// Values of `names` after one run of `rt` on `inputs`.
fn outputs(
    rt: &mut dyn Runtime,
    inputs: &[(&str, &Tensor)],
) -> Result<BTreeMap<String, Tensor>, RuntimeError> {
    let names = rt.output_names().to_vec();
    Ok(names.into_iter().zip(rt.run(inputs)?).collect())
}

/// Runs `graph` on the native engine and on ORT with `input` fed to `input_name`, and compares
/// every intermediate f32 tensor.
pub fn drift(
    graph: &Graph,
    input_name: &str,
    input: &Tensor,
    threads: usize,
    threshold_db: f64,
) -> Result<DriftReport, ExploreError> {
    let (values, skipped) = f32_values(graph);
    let names: Vec<String> = values.iter().map(|(n, _)| n.clone()).collect();
    let exposed = expose(graph, &names)?;
    let inputs = [(input_name, input)];
    let mut native = NativeRuntime::new(exposed.clone(), threads)?;
    let native_out = outputs(&mut native, &inputs).map_err(|e| {
        ExploreError::Invalid(format!("the native engine cannot run this model: {e}"))
    })?;
    let bytes = crate::onnx::to_bytes(&exposed)?;
    let mut ort = OrtRuntime::from_bytes(&bytes, &OrtOptions::new(threads))?;
    let ort_out = outputs(&mut ort, &inputs)?;
    let mut tensors = Vec::new();
    for (name, node) in values {
        let (Some(a), Some(b)) = (ort_out.get(&name), native_out.get(&name)) else {
            continue;
        };
        let node = &graph.nodes[node];
        tensors.push(TensorDrift {
            sqnr_db: sqnr_db(a, b)?,
            cosine: cosine(a, b)?,
            max_abs: difference(a, b)?.max_abs,
            tensor: name,
            node: node.name.clone(),
            op_type: node.op_type.clone(),
        });
    }
    Ok(DriftReport {
        samples: input.shape().first().copied().unwrap_or(1),
        threshold_db,
        first_parting: first_parting(&tensors, threshold_db),
        tensors,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, sqnr_db: f64) -> TensorDrift {
        TensorDrift {
            tensor: name.into(),
            node: name.into(),
            op_type: "Conv".into(),
            sqnr_db,
            cosine: 1.0,
            max_abs: 0.0,
        }
    }

    #[test]
    fn the_first_tensor_below_the_threshold_parts() {
        let v = vec![
            t("a", f64::INFINITY),
            t("b", 45.0),
            t("c", 12.0),
            t("d", 5.0),
        ];
        assert_eq!(first_parting(&v, 30.0), Some(2));
        assert_eq!(first_parting(&v, 50.0), Some(1));
        assert_eq!(first_parting(&v[..2], 30.0), None);
        assert_eq!(first_parting(&[t("n", f64::NAN)], 30.0), Some(0));
    }
}
