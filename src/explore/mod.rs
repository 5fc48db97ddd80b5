//! Accuracy exploration: which layer breaks accuracy, and the best mixed-precision model within
//! an accuracy budget.
//!
//! * [`setup`]: what every exploration shares: the FP32 graph, activation ranges calibrated
//!   once on the calibration split and reused by every per-layer variant, the held-out
//!   evaluation samples (validation split; never the test split) and FP32's outputs on them.
//! * [`sensitivity`]: per quantizable layer, the score when only that layer is quantized and
//!   when every layer but it is, ranked, with the layer's SQNR (`quench sensitivity`).
//! * [`search`]: greedy lowering of per-layer precision from the sensitivity ranking, verified
//!   on held-out data, then refinement, with the objective measured (`quench search`).
//! * [`objective`]: the measured objective (bytes, or latency/energy timed against FP32 in
//!   interleaved rounds).
//! * [`drift`]: per-layer outputs of the native engine against ONNX Runtime on the same inputs,
//!   flagging the first layer where they part (`quench drift`).
//! * [`spec`]: a search request, from `quench search` flags or a profile's `[search]` table.
//! * [`saved`]: the search results file beside `results.jsonl` (`search.jsonl`) and running a
//!   profile's search into it.
//! * [`event`]: the progress stream these long jobs publish.

pub mod drift;
pub mod event;
pub mod objective;
pub mod search;

pub mod saved;
pub mod sensitivity;
pub mod setup;
pub mod spec;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::quant::scheme::{ActQuant, ActType, BinaryActs};
use crate::quant::{Calibration, Precision, Scheme};

pub use event::ExploreEvent;
pub use setup::{Score, Setup, SetupConfig};

/// Why an exploration stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExploreError {
    /// A setting that cannot work, in words.
    #[error("{0}")]
    Invalid(String),
    /// Calibration, export or an ORT pass of the quantization pipeline failed.
    #[error(transparent)]
    Pipeline(#[from] crate::quant::pipeline::PipelineError),
    /// Quantization failed.
    #[error(transparent)]
    Quant(#[from] crate::quant::QuantError),
    /// Data could not be read.
    #[error(transparent)]
    Data(#[from] crate::eval::DataError),
    /// An evaluation pass failed.
    #[error(transparent)]
    Eval(#[from] crate::eval::EvalError),
    /// A runtime failed.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    /// Outputs could not be compared.
    #[error(transparent)]
    Metric(#[from] crate::eval::metrics::MetricError),
    /// A model could not be read or written.
    #[error(transparent)]
    Onnx(#[from] crate::onnx::OnnxError),
    /// A timing run failed.
    #[error("timing {what}: {message}")]
    Timing {
        /// The model being timed.
        what: String,
        /// What failed.
        message: String,
    },
    /// A file could not be written or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The worker pool could not be built.
    #[error("thread pool: {0}")]
    Pool(String),
}

/// A per-layer precision the search and the sensitivity analysis assign, lowest bit count
/// last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Left in FP32.
    Fp32,
    /// INT8 static QDQ (per-channel symmetric weights, u8 activations).
    Int8,
    /// 4-bit weight-only in groups of 32 (`MatMulNBits`; Gemm/MatMul only).
    Int4,
    /// Binary weights with INT8 activations.
    Binary,
}

impl Level {
    /// Every level, highest precision first.
    pub const ALL: [Level; 4] = [Level::Fp32, Level::Int8, Level::Int4, Level::Binary];

    /// Lowercase name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Level::Fp32 => "fp32",
            Level::Int8 => "int8",
            Level::Int4 => "int4",
            Level::Binary => "binary",
        }
    }

    /// The quantization precision of this level, activations calibrated by `calibration`.
    pub fn precision(self, calibration: Calibration) -> Precision {
        let u8_asym = ActQuant {
            dtype: ActType::U8,
            symmetric: false,
        };
        match self {
            Level::Fp32 => Precision::Fp32,
            Level::Int8 => Scheme::int8_static(true, calibration).default,
            Level::Int4 => Scheme::int4(32, false).default,
            Level::Binary => Precision::Binary {
                activations: BinaryActs::Int8 {
                    activations: u8_asym,
                    calibration,
                },
            },
        }
    }

    /// Whether a layer of `op_type` can take this level in an ONNX Runtime model (ORT has no
    /// 4-bit Conv).
    pub fn applies_to(self, op_type: &str) -> bool {
        !(self == Level::Int4 && op_type == "Conv")
    }

    /// The next lower level a layer of `op_type` can take, if any.
    pub fn lower(self, op_type: &str) -> Option<Level> {
        Level::ALL
            .iter()
            .copied()
            .filter(|l| *l > self && l.applies_to(op_type))
            .min()
    }

    /// The next higher level a layer of `op_type` can take, if any.
    pub fn higher(self, op_type: &str) -> Option<Level> {
        Level::ALL
            .iter()
            .copied()
            .filter(|l| *l < self && l.applies_to(op_type))
            .max()
    }

    /// Parses a lowercase name.
    pub fn parse(text: &str) -> Option<Level> {
        Level::ALL.iter().copied().find(|l| l.name() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_step_past_int4_for_conv() {
        assert_eq!(Level::Fp32.lower("Conv"), Some(Level::Int8));
        assert_eq!(Level::Int8.lower("Conv"), Some(Level::Binary));
        assert_eq!(Level::Int8.lower("Gemm"), Some(Level::Int4));
        assert_eq!(Level::Binary.lower("Gemm"), None);
        assert_eq!(Level::Binary.higher("Conv"), Some(Level::Int8));
        assert_eq!(Level::Fp32.higher("Conv"), None);
        assert_eq!(Level::parse("int4"), Some(Level::Int4));
        assert_eq!(Level::parse("int2"), None);
    }
}
