//! Output types of the quantized operators that are not plain ONNX: ORT's
//! `com.microsoft::MatMulNBits` and the nodes the engine fuses integer chains into
//! ([`crate::engine::fuse_int`]), so that shape inference and constant folding see through them.

use super::shape::{matmul_shapes, ConvParams, ValueType};
use super::{GraphError, Node};
use crate::tensor::DataType;

/// Domain of the nodes [`crate::engine::fuse_int`] writes: they exist only inside a plan.
pub const INTERNAL_DOMAIN: &str = "quench.engine";
/// Op type of a fused dynamic INT8 MatMul: inputs `[x, w [K, N], w_zero_point?, w_scale
/// (scalar or [N]), bias? [N]]`, attribute `relu`.
pub const DYNAMIC_MATMUL: &str = "DynamicQuantMatMul";
/// Op type of a fused dynamic INT8 Conv: inputs `[x, w [OC, C, kh, kw], w_zero_point?,
/// w_scale (scalar or [OC]), bias? [OC]]`, the Conv attributes and `relu`.
pub const DYNAMIC_CONV: &str = "DynamicQuantConv";
/// Domain of ORT's contrib operators.
pub const MS_DOMAIN: &str = "com.microsoft";

/// The `K`, `N` and `block_size` attributes of a MatMulNBits node, checked positive, with
/// `bits = 4`.
pub fn nbits_dims(node: &Node) -> Result<(usize, usize, usize), GraphError> {
    let bits = node.attr_int("bits", 4)?;
    if bits != 4 {
        return Err(node.error(format!(
            "bits = {bits}: only 4-bit MatMulNBits is supported"
        )));
    }
    let dim = |name: &str| -> Result<usize, GraphError> {
        let v = node.attr_int(name, 0)?;
        usize::try_from(v)
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| node.error(format!("attribute `{name}` = {v} must be positive")))
    };
    Ok((dim("K")?, dim("N")?, dim("block_size")?))
}

/// The output types of `node` when it is one of this module's operators, `None` otherwise.
pub fn infer_quantized(
    node: &Node,
    types: &[Option<&ValueType>],
) -> Option<Result<Vec<ValueType>, GraphError>> {
    let known = matches!(
        (node.domain.as_str(), node.op_type.as_str()),
        (MS_DOMAIN, "MatMulNBits") | (INTERNAL_DOMAIN, DYNAMIC_MATMUL | DYNAMIC_CONV)
    );
    known.then(|| infer(node, types).map(|t| vec![t]))
}

fn infer(node: &Node, types: &[Option<&ValueType>]) -> Result<ValueType, GraphError> {
    let need = |i: usize| {
        types
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| node.error(format!("missing input {i}")))
    };
    let x = need(0)?;
    if x.dtype != DataType::F32 {
        return Err(node.error(format!("input must be f32, found {}", x.dtype)));
    }
    let shape = match node.op_type.as_str() {
        "MatMulNBits" => {
            let (k, n, _) = nbits_dims(node)?;
            match x.shape.split_last() {
                Some((&last, lead)) if last == k => {
                    let mut shape = lead.to_vec();
                    shape.push(n);
                    shape
                }
                _ => {
                    return Err(node.error(format!(
                        "input A has shape {:?}; its last axis must be K = {k}",
                        x.shape
                    )))
                }
            }
        }
        DYNAMIC_CONV => ConvParams::resolve(node, &x.shape, &need(1)?.shape)?.output_shape(),
        _ => matmul_shapes(node, &x.shape, &need(1)?.shape)?.out,
    };
    Ok(ValueType::new(DataType::F32, shape))
}
