//! The one error type of [`crate::quant`]: every variant names the layer or tensor at fault and
//! the bad value, so a wrong model is never produced silently.

use crate::tensor::TensorError;

/// Why a scheme could not be applied, a range calibrated, or a graph quantized.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    /// The scheme itself is malformed (e.g. a group size of 48).
    #[error("scheme: {0}")]
    Scheme(String),
    /// The scheme asks for something a layer's operator cannot take.
    #[error("layer `{layer}` ({op_type}): {message}")]
    Unsupported {
        /// Node name.
        layer: String,
        /// Its operator.
        op_type: String,
        /// What is not supported and why.
        message: String,
    },
    /// A scale that is zero, negative where it must be positive, or not finite.
    #[error("`{name}`: scale {value} is not a finite positive number")]
    BadScale {
        /// Tensor or layer whose scale it is.
        name: String,
        /// The scale.
        value: f32,
    },
    /// A range (calibrated or observed) that is not finite or has min > max.
    #[error("`{name}`: range [{min}, {max}] is not a finite interval")]
    BadRange {
        /// Tensor the range belongs to.
        name: String,
        /// Lower end.
        min: f32,
        /// Upper end.
        max: f32,
    },
    /// Calibration data that does not fit the tensor it is for.
    #[error("calibration of `{name}`: {message}")]
    Calibration {
        /// Tensor being calibrated.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A quantized layer's activation has no calibrated range.
    #[error("layer `{layer}`: no calibrated range for its input `{tensor}`")]
    MissingRange {
        /// Node name.
        layer: String,
        /// Activation tensor.
        tensor: String,
    },
    /// A weight, bias or graph structure the rewrite cannot use.
    #[error("layer `{layer}`: {message}")]
    Graph {
        /// Node name (or value name when no node is involved).
        layer: String,
        /// What is wrong.
        message: String,
    },
    /// A tensor could not be built.
    #[error("{0}")]
    Tensor(#[from] TensorError),
}

impl QuantError {
    /// A [`QuantError::Graph`] for `layer`.
    pub fn graph(layer: &str, message: impl Into<String>) -> QuantError {
        QuantError::Graph {
            layer: layer.to_string(),
            message: message.into(),
        }
    }
}
