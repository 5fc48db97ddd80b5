//! Single-operator ONNX models for ONNX Runtime, built as [`Graph`]s in code with the same shapes
//! and weights as the quench kernels they are timed against.

use std::collections::BTreeMap;

use crate::graph::{Attr, Dim, Graph, Node, ValueInfo};
use crate::tensor::{DataType, Tensor, TensorData, TensorError};

/// Default-domain opset the models are written for (MatMulInteger needs ≥ 10).
const OPSET: i64 = 17;

fn value(name: &str, dtype: DataType, shape: &[usize]) -> ValueInfo {
    ValueInfo {
        name: name.to_string(),
        dtype,
        shape: Some(shape.iter().map(|&d| Dim::Fixed(d)).collect()),
    }
}

/// One node `Y = op(A, consts…)` with `A` the only runtime input.
fn single_op(
    op: &str,
    domain: &str,
    input: ValueInfo,
    consts: Vec<(&str, Tensor)>,
    output: ValueInfo,
    attrs: BTreeMap<String, Attr>,
) -> Graph {
    let mut inputs = vec![input.name.clone()];
    inputs.extend(consts.iter().map(|(n, _)| n.to_string()));
    let mut extra_opsets = BTreeMap::new();
    if !domain.is_empty() {
        extra_opsets.insert(domain.to_string(), 1);
    }
    Graph {
        name: format!("quench-bench-{op}"),
        opset: OPSET,
        extra_opsets,
        inputs: vec![input],
        outputs: vec![output.clone()],
        initializers: consts
            .into_iter()
            .map(|(n, t)| (n.to_string(), t))
            .collect(),
        nodes: vec![Node {
            name: op.to_string(),
            op_type: op.to_string(),
            domain: domain.to_string(),
            inputs,
            outputs: vec![output.name],
            attrs,
        }],
        metadata: BTreeMap::new(),
    }
}

/// `Y[m×n] = A[m×k] · B` (ONNX MatMul, f32), `b` row-major K×N.
pub fn matmul_f32(m: usize, n: usize, k: usize, b: Vec<f32>) -> Result<Graph, TensorError> {
    Ok(single_op(
        "MatMul",
        "",
        value("A", DataType::F32, &[m, k]),
        vec![("B", Tensor::from_f32(vec![k, n], b)?)],
        value("Y", DataType::F32, &[m, n]),
        BTreeMap::new(),
    ))
}

/// `Y[m×n] = (A - za) · B` (ONNX MatMulInteger, u8 × s8 → i32), `b` row-major K×N, symmetric.
pub fn matmul_integer(
    m: usize,
    n: usize,
    k: usize,
    b: Vec<i8>,
    za: u8,
) -> Result<Graph, TensorError> {
    Ok(single_op(
        "MatMulInteger",
        "",
        value("A", DataType::U8, &[m, k]),
        vec![
            ("B", Tensor::new(vec![k, n], TensorData::I8(b))?),
            (
                "a_zero_point",
                Tensor::new(vec![], TensorData::U8(vec![za]))?,
            ),
        ],
        value("Y", DataType::I32, &[m, n]),
        BTreeMap::new(),
    ))
}

/// `Y[m×n] = A[m×k] · dequant(B)ᵀ` (com.microsoft MatMulNBits, 4 bits), `b` `[N, K/block,
/// block/2]` packed nibbles and `scales` `[N · K/block]`, no zero points (8 implied).
#[allow(clippy::too_many_arguments)]
pub fn matmul_nbits(
    m: usize,
    n: usize,
    k: usize,
    block: usize,
    b: Vec<u8>,
    scales: Vec<f32>,
    accuracy_level: i64,
) -> Result<Graph, TensorError> {
    let blocks = k.div_ceil(block);
    let attrs = [
        ("K", k as i64),
        ("N", n as i64),
        ("bits", 4),
        ("block_size", block as i64),
        ("accuracy_level", accuracy_level),
    ]
    .into_iter()
    .map(|(a, v)| (a.to_string(), Attr::Int(v)))
    .collect();
    Ok(single_op(
        "MatMulNBits",
        "com.microsoft",
        value("A", DataType::F32, &[m, k]),
        vec![
            (
                "B",
                Tensor::new(vec![n, blocks, block / 2], TensorData::U8(b))?,
            ),
            ("scales", Tensor::from_f32(vec![n * blocks], scales)?),
        ],
        value("Y", DataType::F32, &[m, n]),
        attrs,
    ))
}
