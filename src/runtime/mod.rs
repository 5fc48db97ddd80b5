//! Runtimes that execute a model: quench's own engine ([`native`]) and ONNX Runtime ([`ort`]),
//! behind one trait so that every comparison runs the same inputs through the same calls.

pub mod native;
pub mod ort;

use crate::tensor::Tensor;

/// An error from building or running a model on a runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// ONNX Runtime's shared library could not be found or loaded; the text says how to install it.
    #[error("{0}")]
    OrtUnavailable(String),
    /// The runtime refused the model or failed while running it.
    #[error("{runtime}: {message}")]
    Failed {
        /// Which runtime.
        runtime: &'static str,
        /// What it said.
        message: String,
    },
    /// An input was missing, misnamed, or of the wrong type or shape.
    #[error("input `{name}`: {message}")]
    BadInput {
        /// The input's name.
        name: String,
        /// What is wrong with it.
        message: String,
    },
}

/// A loaded, planned model that can be run many times.
pub trait Runtime {
    /// Short name of the runtime: `native` or `ort`.
    fn name(&self) -> &'static str;

    /// Threads the runtime computes with (intra-op).
    fn threads(&self) -> usize;

    /// Runs the model once. `inputs` are given by graph input name; outputs come back in the
    /// order of the graph's declared outputs.
    fn run(&mut self, inputs: &[(&str, &Tensor)]) -> Result<Vec<Tensor>, RuntimeError>;

    /// Names of the compute kernels this model runs on, for records and the UI
    /// (e.g. `f32-gemm-avx2-6x16`, `ort-cpu`).
    fn kernel_names(&self) -> Vec<String>;
}
