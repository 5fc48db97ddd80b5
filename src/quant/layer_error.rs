//! Per-layer quantization error: how far a layer's quantized activations are from its FP32
//! ones, by the SQNR and cosine metrics of [`crate::eval::metrics`].

use crate::eval::metrics::{cosine, sqnr_db, ErrorSums, MetricError};
use crate::tensor::Tensor;

/// Agreement of one layer's quantized output with its FP32 output.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LayerError {
    /// Signal-to-quantization-noise ratio in dB (`+inf` when identical).
    pub sqnr_db: f64,
    /// Cosine similarity of the two as flat vectors.
    pub cosine: f64,
}

impl LayerError {
    /// SQNR and cosine of everything `sums` holds (FP32 values as the reference).
    pub fn of(sums: &ErrorSums) -> LayerError {
        LayerError {
            sqnr_db: sums.sqnr_db(),
            cosine: sums.cosine(),
        }
    }
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
        let mut sums = ErrorSums::of(&[1.0, 2.0], &[1.0, 2.0]);
        // Added in two parts, as batches arrive.
        sums.add(&[3.0, 4.0], &[3.0, 5.0]);
        let e = LayerError::of(&sums);
        // signal 30, noise 1: 10·log10(30).
        assert!((e.sqnr_db - 10.0 * 30f64.log10()).abs() < 1e-12);
        assert!((e.cosine - 34.0 / (30f64.sqrt() * 39f64.sqrt())).abs() < 1e-12);
        let same = LayerError::of(&ErrorSums::of(&[1.0, -2.0], &[1.0, -2.0]));
        assert_eq!(same.sqnr_db, f64::INFINITY);
        assert!((same.cosine - 1.0).abs() < 1e-12);
        let zero = LayerError::of(&ErrorSums::of(&[1.0, 2.0], &[0.0, 0.0]));
        assert_eq!(zero.cosine, 0.0);
        // Whole tensors give the same as the sums, and must match in shape.
        let r = Tensor::from_f32(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let q = Tensor::from_f32(vec![2, 2], vec![1.0, 2.0, 3.0, 5.0]).unwrap();
        assert_eq!(layer_error(&r, &q).unwrap(), e);
        let other = Tensor::from_f32(vec![4], vec![0.0; 4]).unwrap();
        assert!(layer_error(&r, &other).is_err());
    }
}
