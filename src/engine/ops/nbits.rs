//! `com.microsoft::MatMulNBits` (4-bit, ONNX Runtime's weight-only MatMul) on quench's 4-bit
//! kernels ([`crate::kernels::q4`]), which read its weight layout as stored.
//!
//! `Y[..., N] = A[..., K] · dequant(B)ᵀ (+ bias)`, with B `[N, n_blocks, block/2]` u8 (two 4-bit
//! values per byte, low nibble first), `scales` `[N · n_blocks]` f32 and `zero_points` packed
//! u4 `[N · ceil(n_blocks / 2)]` or absent (8). `accuracy_level = 4` asks for int8 activations
//! per block (as ORT does); any other level computes in f32.

use crate::graph::shape::ValueType;
use crate::graph::shape_int::{infer_quantized, nbits_dims};
use crate::graph::{GraphError, Node};
use crate::kernels::q4::{gemm, kernel_name, PackedQ4, Q4Mode};
use crate::tensor::{Tensor, TensorData};

/// A compiled MatMulNBits node with its weights kept in ORT's layout.
#[derive(Debug, Clone)]
pub struct MatMulNBits {
    packed: PackedQ4,
    mode: Q4Mode,
    bias: Option<Vec<f32>>,
    rows: usize,
}

impl MatMulNBits {
    /// Compiles `node` for input type `a` and the node's constant inputs.
    pub fn compile(
        node: &Node,
        a: &ValueType,
        consts: &[Option<&Tensor>],
    ) -> Result<MatMulNBits, GraphError> {
        let rows_of = |t: &ValueType| t.numel() / t.shape.last().copied().unwrap_or(1).max(1);
        let out = infer_quantized(node, &[Some(a)]).ok_or_else(|| node.unsupported())??;
        let rows = out.first().map_or(0, rows_of);
        let (k, n, block) = nbits_dims(node)?;
        let get = |i: usize, what: &str| super::integer::constant(node, consts, i, what);
        let b = match get(1, "B")?.map(Tensor::data) {
            Some(TensorData::U8(b)) => b,
            Some(other) => {
                return Err(node.error(format!("B must be uint8, found {}", other.dtype())))
            }
            None => return Err(node.error("B is missing")),
        };
        let scales = match get(2, "scales")?.map(Tensor::data) {
            Some(TensorData::F32(s)) => s,
            Some(other) => {
                return Err(node.error(format!("scales must be f32, found {}", other.dtype())))
            }
            None => return Err(node.error("scales are missing")),
        };
        if let Some(bad) = scales.iter().find(|s| !s.is_finite()) {
            return Err(node.error(format!("scale {bad} is not finite")));
        }
        let zero_points = match get(3, "zero_points")?.map(Tensor::data) {
            None => None,
            Some(TensorData::U8(z)) => Some(z.as_slice()),
            Some(other) => {
                return Err(node.error(format!(
                    "zero_points must be packed uint8, found {}",
                    other.dtype()
                )))
            }
        };
        if node.input(4).is_some() {
            return Err(node.error("g_idx (act-order) is not supported natively"));
        }
        let bias = match get(5, "bias")?.map(Tensor::data) {
            None => None,
            Some(TensorData::F32(v)) if v.len() == n => Some(v.clone()),
            Some(_) => return Err(node.error(format!("bias must be f32 with {n} values"))),
        };
        let packed = PackedQ4::from_matmul_nbits(n, k, block, b, scales, zero_points)
            .map_err(|e| node.error(e.to_string()))?;
        let mode = if node.attr_int("accuracy_level", 0)? == 4 {
            Q4Mode::Int8
        } else {
            Q4Mode::F32
        };
        Ok(MatMulNBits {
            packed,
            mode,
            bias,
            rows,
        })
    }

    /// Bytes of the packed weights, scales and zero points.
    pub fn packed_bytes(&self) -> usize {
        self.packed.size_bytes()
    }

    /// Name of the kernel, for records.
    pub fn kernel_name(&self) -> String {
        kernel_name(self.rows, self.mode)
    }

    /// Runs on `a`, writing `out`.
    pub fn run(&self, a: &[f32], out: &mut [f32]) {
        let (k, n) = (self.packed.k(), self.packed.n());
        let r = gemm(
            self.rows,
            a,
            k,
            &self.packed,
            self.mode,
            self.bias.as_deref(),
            out,
            n,
        );
        if let Err(e) = r {
            // Shapes were checked when the node was compiled.
            debug_assert!(false, "4-bit kernel refused a checked shape: {e}");
            out.fill(f32::NAN);
        }
    }
}
