//! Reading and writing `.onnx` files (protobuf), with every field checked before it is trusted.
//!
//! A model file is untrusted input: loading never panics and never allocates from an unchecked
//! field. Element counts are computed with checked arithmetic and bounded by [`MAX_ELEMENTS`]
//! before any buffer exists; data lengths must match the declared dimensions; external data is
//! read only from regular files inside the model's own folder, within their size. Subgraphs
//! (control flow), sparse tensors, model-local functions and element types quench does not compute
//! with are refused with an error naming the node or tensor.
//!
//! Loading converts to the IR in [`crate::graph`]: `Constant` nodes are folded into
//! [`Graph::initializers`], graph inputs that are initializers are dropped from
//! [`Graph::inputs`], unnamed nodes get a unique `OpType_index` name, and nodes come back in
//! topological order. Saving writes initializers as `raw_data` and an IR version suited to the
//! opset. Model-level fields the IR does not hold (producer, versions, doc strings) travel in
//! [`ModelInfo`] so that [`load_model`] → [`save_model`] keeps them.

mod attr;
mod error;
mod export;
mod external;
mod import;
pub mod proto;
mod tensor_proto;
mod topo;

#[cfg(test)]
mod tests;

use std::path::Path;

use prost::Message;

pub use error::{OnnxError, Problem};

use crate::graph::Graph;

/// Largest element count of any one tensor (or declared shape) the loader accepts: 2^31.
pub const MAX_ELEMENTS: u64 = 1 << 31;

/// Largest model file the loader reads and the saver writes: 2 GiB, protobuf's message limit.
/// Bigger weights belong in external data.
pub const MAX_MODEL_BYTES: u64 = (1 << 31) - 1;

/// IR version written for a graph that was not loaded from a file (raised if its opset needs).
pub const DEFAULT_IR_VERSION: i64 = 8;

/// The label errors use for a model that came from memory rather than a file.
const BYTES_LABEL: &str = "(in-memory model)";

/// Model-level fields of an ONNX file that the graph IR does not hold, kept so that a
/// load → save round trip writes them back.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelInfo {
    /// `ir_version` the file was written with; saving raises it if the opset needs a newer one.
    pub ir_version: Option<i64>,
    /// `producer_name`, e.g. `pytorch`.
    pub producer_name: Option<String>,
    /// `producer_version`.
    pub producer_version: Option<String>,
    /// `domain` of the model.
    pub domain: Option<String>,
    /// `model_version`.
    pub model_version: Option<i64>,
    /// The model's `doc_string`.
    pub doc_string: Option<String>,
    /// The graph's `doc_string`.
    pub graph_doc_string: Option<String>,
}

/// A graph together with the model-level fields of its file.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// The computation.
    pub graph: Graph,
    /// Producer, versions and doc strings.
    pub info: ModelInfo,
}

impl Model {
    /// A model for a graph made by quench itself: producer `quench`, default IR version.
    pub fn new(graph: Graph) -> Model {
        Model {
            graph,
            info: ModelInfo {
                producer_name: Some("quench".to_string()),
                producer_version: Some(env!("CARGO_PKG_VERSION").to_string()),
                ..ModelInfo::default()
            },
        }
    }
}

/// Loads the graph of the `.onnx` file at `path` (external data is read from its folder).
pub fn load(path: impl AsRef<Path>) -> Result<Graph, OnnxError> {
    load_model(path).map(|m| m.graph)
}

/// Loads the `.onnx` file at `path` with its model-level fields.
pub fn load_model(path: impl AsRef<Path>) -> Result<Model, OnnxError> {
    let path = path.as_ref();
    let file = path.display().to_string();
    let io = |source| OnnxError::Io {
        file: file.clone(),
        action: "read the model",
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    check_size(&file, "the model file", meta.len())?;
    let bytes = std::fs::read(path).map_err(io)?;
    let base_dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    decode(&bytes, &file, Some(base_dir))
}

/// Loads a graph from the bytes of an `.onnx` file. External data is read from `base_dir` (the
/// folder the file would be in); with `None`, a model that has external data is refused.
pub fn load_bytes(bytes: &[u8], base_dir: Option<&Path>) -> Result<Graph, OnnxError> {
    load_model_bytes(bytes, base_dir).map(|m| m.graph)
}

/// Loads a model with its model-level fields from the bytes of an `.onnx` file; see
/// [`load_bytes`].
pub fn load_model_bytes(bytes: &[u8], base_dir: Option<&Path>) -> Result<Model, OnnxError> {
    check_size(BYTES_LABEL, "the model", bytes.len() as u64)?;
    decode(bytes, BYTES_LABEL, base_dir)
}

/// Writes `graph` as an `.onnx` file at `path` (producer `quench`, see [`Model::new`]).
pub fn save(graph: &Graph, path: impl AsRef<Path>) -> Result<(), OnnxError> {
    save_model(&Model::new(graph.clone()), path)
}

/// Writes `model` as an `.onnx` file at `path`, keeping its model-level fields.
pub fn save_model(model: &Model, path: impl AsRef<Path>) -> Result<(), OnnxError> {
    let path = path.as_ref();
    let file = path.display().to_string();
    let bytes = encode(model, &file)?;
    std::fs::write(path, bytes).map_err(|source| OnnxError::Io {
        file,
        action: "write the model",
        source,
    })
}

/// The bytes of an `.onnx` file holding `graph` (producer `quench`, see [`Model::new`]).
pub fn to_bytes(graph: &Graph) -> Result<Vec<u8>, OnnxError> {
    encode(&Model::new(graph.clone()), BYTES_LABEL)
}

/// The bytes of an `.onnx` file holding `model`, keeping its model-level fields.
pub fn model_to_bytes(model: &Model) -> Result<Vec<u8>, OnnxError> {
    encode(model, BYTES_LABEL)
}

/// Decodes and converts; `file` labels errors.
fn decode(bytes: &[u8], file: &str, base_dir: Option<&Path>) -> Result<Model, OnnxError> {
    let proto = proto::ModelProto::decode(bytes).map_err(|source| OnnxError::Decode {
        file: file.to_string(),
        source,
    })?;
    import::model_from_proto(&proto, file, base_dir)
}

/// Converts and encodes, refusing a model over the protobuf size limit.
fn encode(model: &Model, file: &str) -> Result<Vec<u8>, OnnxError> {
    let proto = export::model_to_proto(model);
    check_size(file, "the encoded model", proto.encoded_len() as u64)?;
    Ok(proto.encode_to_vec())
}

/// Refuses a model over [`MAX_MODEL_BYTES`].
fn check_size(file: &str, what: &'static str, size: u64) -> Result<(), OnnxError> {
    if size <= MAX_MODEL_BYTES {
        return Ok(());
    }
    Err(OnnxError::Invalid {
        file: file.to_string(),
        at: "model".to_string(),
        problem: Box::new(Problem::TooLarge {
            what,
            size,
            limit: MAX_MODEL_BYTES,
        }),
    })
}
