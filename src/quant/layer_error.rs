//! Per-layer quantization error: how far a layer's quantized activations are from its FP32
//! ones, by the SQNR and cosine metrics of [`crate::eval::metrics`].

use crate::eval::metrics::{cosine, sqnr_db, MetricError};
use crate::tensor::Tensor;

/// Agreement of one layer's quantized output with its FP32 output.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LayerError {
    /// Signal-to-quantization-noise ratio in dB (`+inf` when identical).
    pub sqnr_db: f64,
    /// Cosine similarity of the two as flat vectors.
    pub cosine: f64,
}

/// SQNR and cosine of `quantized` against `reference` (same shape, f32).
pub fn layer_error(reference: &Tensor, quantized: &Tensor) -> Result<LayerError, MetricError> {
    Ok(LayerError {
        sqnr_db: sqnr_db(reference, quantized)?,
        cosine: cosine(reference, quantized)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqnr_and_cosine_of_a_known_error() {
        let r = Tensor::from_f32(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let q = Tensor::from_f32(vec![2, 2], vec![1.0, 2.0, 3.0, 5.0]).unwrap();
        let e = layer_error(&r, &q).unwrap();
        // signal 30, noise 1: 10·log10(30).
        assert!((e.sqnr_db - 10.0 * 30f64.log10()).abs() < 1e-12);
        assert!((e.cosine - 34.0 / (30f64.sqrt() * 39f64.sqrt())).abs() < 1e-12);
        let other = Tensor::from_f32(vec![4], vec![0.0; 4]).unwrap();
        assert!(layer_error(&r, &other).is_err());
    }
}
