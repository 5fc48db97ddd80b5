//! Cross-runtime drift: the same model on the native engine and on ONNX Runtime, same inputs,
//! every intermediate f32 tensor compared, in graph order, and the first tensor where the two
//! part (SQNR of native against ORT below a threshold) flagged with the node that made it.
//!
//! Both runtimes see the model with its intermediate tensors added to the graph outputs
//! ([`crate::quant::probe::expose`]), so neither needs a debugging hook. Which tensors:
//!
//! * FP32 models: every f32 tensor (types from the small propagation in [`f32_values`]) but
//!   a layer's output read only by a Relu, which the native engine fuses into the layer (the
//!   Relu's output is compared).
//! * Quantized (QDQ) models: the output of every `QuantizeLinear`, i.e. each quantized
//!   layer's integer output, compared after dequantizing with its scale and zero point, and
//!   the graph outputs. Exposing the f32 tensors *inside* a layer (the Conv output before its
//!   requantization) would stop both runtimes from fusing DQ→Conv→Q into one integer kernel,
//!   so the comparison would no longer be of the integer kernels; `all_tensors` asks for that
//!   anyway. The report says whether exposure changed the native engine's kernels.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::eval::metrics::{cosine, difference, sqnr_db};
use crate::explore::ExploreError;
use crate::graph::{Graph, ValueInfo};
use crate::quant::layer::{is_quantizable, quantized_output};
use crate::quant::probe::expose;
use crate::runtime::native::NativeRuntime;
use crate::runtime::ort::{OrtOptions, OrtRuntime};
use crate::runtime::{Runtime, RuntimeError};
use crate::tensor::{DataType, Tensor, TensorData};

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
    /// Tensors not compared (not f32, or inside quantized layers).
    pub skipped: usize,
    /// What was compared, in words.
    pub compared: String,
    /// Whether the native engine chose the same kernels (up to activation layout) with the
    /// tensors exposed as without, apart from the conversions that produce the exposed values
    /// (dequantize, quantize, requantizing lookups: bit-equal to the values the plain run holds).
    /// If not, exposure changed what it fused, and the comparison is of another path.
    pub native_kernels_unchanged: bool,
}

/// A tensor to compare, with the node producing it and, for an integer tensor, the scale and
/// zero point that dequantize it.
#[derive(Debug, Clone, PartialEq)]
pub struct Compared {
    /// The tensor.
    pub name: String,
    /// Index of the producing node.
    pub node: usize,
    /// Its type.
    pub dtype: DataType,
    /// `(scale, zero point)` of a per-tensor QuantizeLinear output.
    pub dequantize: Option<(f32, f32)>,
}

/// The tensors [`drift`] compares in `graph` (see the module doc), and how many it leaves out.
pub fn compared_values(graph: &Graph, all_tensors: bool) -> (Vec<Compared>, usize) {
    let (f32s, skipped) = f32_values(graph);
    let quantized = graph.nodes.iter().any(|n| n.op_type == "QuantizeLinear");
    if all_tensors || !quantized {
        // A layer output whose only reader is a Relu is left out unless asked for: the native
        // engine fuses the Relu into the layer, and exposing the output would stop that.
        let fused_away = |name: &str, node: usize| {
            let n = &graph.nodes[node];
            !all_tensors
                && is_quantizable(n)
                && quantized_output(graph, n).is_some_and(|o| o != name)
        };
        let total = f32s.len();
        let v: Vec<Compared> = f32s
            .into_iter()
            .filter(|(name, node)| !fused_away(name, *node))
            .map(|(name, node)| Compared {
                name,
                node,
                dtype: DataType::F32,
                dequantize: None,
            })
            .collect();
        let left_out = total - v.len();
        return (v, skipped + left_out);
    }
    let scalar = |name: Option<&str>| -> Option<f32> {
        let t = graph.initializers.get(name?)?;
        if t.len() != 1 {
            return None;
        }
        match t.data() {
            TensorData::F32(v) => Some(v[0]),
            TensorData::U8(v) => Some(f32::from(v[0])),
            TensorData::I8(v) => Some(f32::from(v[0])),
            _ => None,
        }
    };
    let mut out = Vec::new();
    for (index, node) in graph.nodes.iter().enumerate() {
        let Some(name) = node.outputs.first() else {
            continue;
        };
        if node.op_type == "QuantizeLinear" {
            let zero = node.input(2).and_then(|z| graph.initializers.get(z));
            out.push(Compared {
                name: name.clone(),
                node: index,
                dtype: zero.map_or(DataType::U8, |z| z.dtype()),
                dequantize: scalar(node.input(1))
                    .map(|s| (s, scalar(node.input(2)).unwrap_or(0.0))),
            });
        } else if graph.is_output(name) {
            out.push(Compared {
                name: name.clone(),
                node: index,
                dtype: DataType::F32,
                dequantize: None,
            });
        }
    }
    let total: usize = graph.nodes.iter().map(|n| n.outputs.len()).sum();
    let skipped = total.saturating_sub(out.len());
    (out, skipped)
}

/// `t` as f32: integers dequantized by `(scale, zero)` (or taken as they are), f32 unchanged.
fn as_real(t: &Tensor, dequantize: Option<(f32, f32)>) -> Result<Tensor, ExploreError> {
    let (scale, zero) = dequantize.unwrap_or((1.0, 0.0));
    let values: Vec<f32> = match t.data() {
        TensorData::F32(v) => {
            return Ok(Tensor::from_f32(t.shape().to_vec(), v.clone())
                .map_err(crate::eval::metrics::MetricError::from)?)
        }
        TensorData::U8(v) => v.iter().map(|&x| (f32::from(x) - zero) * scale).collect(),
        TensorData::I8(v) => v.iter().map(|&x| (f32::from(x) - zero) * scale).collect(),
        TensorData::I32(v) => v.iter().map(|&x| (x as f32 - zero) * scale).collect(),
        _ => {
            return Err(ExploreError::Invalid(format!(
                "drift cannot compare a {} tensor",
                t.dtype()
            )))
        }
    };
    Ok(Tensor::from_f32(t.shape().to_vec(), values)
        .map_err(crate::eval::metrics::MetricError::from)?)
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
/// the tensors [`compared_values`] picks.
pub fn drift(
    graph: &Graph,
    input_name: &str,
    input: &Tensor,
    threads: usize,
    threshold_db: f64,
    all_tensors: bool,
) -> Result<DriftReport, ExploreError> {
    let (values, skipped) = compared_values(graph, all_tensors);
    let f32_names: Vec<String> = values
        .iter()
        .filter(|c| c.dtype == DataType::F32)
        .map(|c| c.name.clone())
        .collect();
    let mut exposed = expose(graph, &f32_names)?;
    for c in values.iter().filter(|c| c.dtype != DataType::F32) {
        if !exposed.is_output(&c.name) {
            exposed.outputs.push(ValueInfo {
                name: c.name.clone(),
                dtype: c.dtype,
                shape: None,
            });
        }
    }
    let inputs = [(input_name, input)];
    let cannot = |e: RuntimeError| {
        ExploreError::Invalid(format!("the native engine cannot run this model: {e}"))
    };
    let mut plain = NativeRuntime::new(graph.clone(), threads)?;
    plain.run(&inputs).map_err(cannot)?;
    let mut native = NativeRuntime::new(exposed.clone(), threads)?;
    let native_out = outputs(&mut native, &inputs).map_err(cannot)?;
    // Up to activation layout: exposed values stay NCHW, which changes no bits.
    let sorted = |k: Vec<String>| {
        let mut k: Vec<String> = k
            .iter()
            .map(|n| crate::engine::nhwc::without_layout(n).to_string())
            .collect();
        k.sort();
        k
    };
    let (plain, native) = (sorted(plain.kernel_names()), sorted(native.kernel_names()));
    let conversion = |k: &str| {
        ["dequantize-linear", "quantize-linear"].contains(&k)
            || k.ends_with(crate::kernels::lut::kernel_name())
    };
    let native_kernels_unchanged = plain.iter().all(|k| native.contains(k))
        && native.iter().all(|k| plain.contains(k) || conversion(k));
    let bytes = crate::onnx::to_bytes(&exposed)?;
    let mut ort = OrtRuntime::from_bytes(&bytes, &OrtOptions::new(threads))?;
    let ort_out = outputs(&mut ort, &inputs)?;
    let mut tensors = Vec::new();
    for c in values {
        let (Some(a), Some(b)) = (ort_out.get(&c.name), native_out.get(&c.name)) else {
            continue;
        };
        let (a, b) = (as_real(a, c.dequantize)?, as_real(b, c.dequantize)?);
        let node = &graph.nodes[c.node];
        tensors.push(TensorDrift {
            sqnr_db: sqnr_db(&a, &b)?,
            cosine: cosine(&a, &b)?,
            max_abs: difference(&a, &b)?.max_abs,
            tensor: c.name,
            node: node.name.clone(),
            op_type: node.op_type.clone(),
        });
    }
    let quantized = graph.nodes.iter().any(|n| n.op_type == "QuantizeLinear");
    let compared = match (quantized, all_tensors) {
        (_, true) => "every f32 tensor",
        (true, false) => {
            "each quantized layer's integer output (QuantizeLinear), dequantized, and the graph outputs"
        }
        (false, false) => "every f32 tensor but layer outputs fused into a Relu",
    };
    Ok(DriftReport {
        compared: compared.to_string(),
        native_kernels_unchanged,
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
