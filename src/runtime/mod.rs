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
    /// The runtime lacks an operator (or operator form) the model uses: a capability gap, not
    /// a broken model. Sweeps record such cells as skipped with this reason; they run as soon
    /// as the runtime gains the operator.
    #[error("{runtime} cannot run this model yet: {message}")]
    Unsupported {
        /// Which runtime.
        runtime: &'static str,
        /// What it lacks, naming the node and operator.
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

    /// The graph's output names, in the order [`Runtime::run`] returns them.
    fn output_names(&self) -> &[String];

    /// Names of the compute kernels this model runs on, for records and the UI
    /// (e.g. `f32-gemm-avx2-6x16`, `ort-cpu`).
    fn kernel_names(&self) -> Vec<String>;

    /// Bytes of weights packed for the kernels and of the planned activation arena for the last
    /// run, where the runtime knows them (the native engine does; ONNX Runtime does not say).
    fn footprint(&self) -> Option<Footprint> {
        None
    }

    /// Hands over the parsed model this runtime ran, when it holds one (the native engine does;
    /// ONNX Runtime reads the file itself), so that a caller inspecting the model after a run
    /// need not parse the file again.
    fn into_graph(self: Box<Self>) -> Option<crate::graph::Graph> {
        None
    }
}

/// Memory a runtime set aside for a planned model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// Bytes of weights in the kernels' packed layout.
    pub packed_weight_bytes: u64,
    /// Bytes of the activation arena (scratch included).
    pub arena_bytes: u64,
}

/// Which runtime executes a model.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// quench's own engine and kernels.
    Native,
    /// ONNX Runtime's CPU execution provider.
    Ort,
}

impl RuntimeKind {
    /// Both runtimes, native first.
    pub const ALL: [RuntimeKind; 2] = [RuntimeKind::Native, RuntimeKind::Ort];

    /// The lowercase name used on the command line and in records.
    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::Native => "native",
            RuntimeKind::Ort => "ort",
        }
    }
}

impl std::fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Loads the model at `path` on the runtime `kind` with `threads` compute threads.
pub fn open(
    kind: RuntimeKind,
    path: &std::path::Path,
    threads: usize,
) -> Result<Box<dyn Runtime>, RuntimeError> {
    match kind {
        RuntimeKind::Native => {
            let graph = crate::onnx::load(path).map_err(|e| RuntimeError::Failed {
                runtime: "native",
                message: e.to_string(),
            })?;
            Ok(Box::new(native::NativeRuntime::new(graph, threads)?))
        }
        RuntimeKind::Ort => Ok(Box::new(ort::OrtRuntime::from_file(
            path,
            &ort::OrtOptions::new(threads),
        )?)),
    }
}
