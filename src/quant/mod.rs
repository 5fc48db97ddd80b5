//! Quantization: schemes, the numerics every path agrees on, calibrators, and the graph rewrites
//! that turn an FP32 [`crate::graph::Graph`] into INT8 (static QDQ or dynamic), 4-bit
//! (`MatMulNBits`) or binary models that ONNX Runtime runs.
//!
//! * [`scheme`]: what precision each layer gets ([`Scheme`], serde data).
//! * [`numerics`]: QuantizeLinear rounding, ORT's scale/zero-point rules, INT8/INT32/binary
//!   weight quantization.
//! * [`blockwise`]: 4-bit group-wise weights in ORT's `MatMulNBits` layout.
//! * [`histogram`], [`calibrate`]: streaming calibrators (MinMax, Percentile, Entropy, MSE).
//! * [`probe`]: calibration sites, exposing intermediate tensors as outputs, batch-wise
//!   calibrator sets.
//! * [`bias`]: empirical bias correction (per-channel output means, quantized against FP32,
//!   folded into each layer's bias).
//! * [`layer_error`]: per-layer SQNR and cosine.
//! * [`prepare`]: the folds (constants, BatchNorm, Conv bias adds) applied before calibrating.
//! * [`layer`], [`export`]: the rewrites to QDQ, dynamic INT8, `MatMulNBits` and binary graphs.
//! * [`detect`]: which variant an existing model file already is.
//! * [`pipeline`]: the whole `quench quantize` job (ranges, export, measurements) as one call.
//! * [`qat`]: quantization-aware training (fake quantization, straight-through estimator,
//!   distillation, gradual bit reduction) in quench's own autograd.

pub mod bias;
pub mod blockwise;
mod builder;
pub mod calibrate;
pub mod detect;
mod error;
pub mod export;
pub mod histogram;
pub mod layer;
pub mod layer_error;
pub mod numerics;
pub mod pipeline;
pub mod prepare;
pub mod probe;
pub mod qat;
pub mod scheme;

pub use calibrate::{CalibratedRange, Calibrator};
pub use error::QuantError;
pub use export::{quantize, quantize_for};
pub use scheme::{Calibration, Precision, Scheme};
