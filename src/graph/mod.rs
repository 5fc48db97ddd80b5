//! quench's model IR: a typed, topologically ordered ONNX graph that passes rewrite and the engine
//! plans from.
//!
//! The IR keeps what quench needs to compute, quantize and write a model back out: named values,
//! nodes with typed attributes, constant tensors and the model's declared inputs and outputs. It is
//! independent of the protobuf types in [`crate::onnx`], which convert to and from it.

use std::collections::BTreeMap;

use crate::tensor::{DataType, Tensor};

/// One dimension of a declared input or output shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Dim {
    /// A known extent.
    Fixed(usize),
    /// A named free dimension such as `batch` (empty when ONNX leaves it unnamed).
    Symbolic(String),
}

/// A declared graph input or output: its name, element type and shape.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ValueInfo {
    /// Value name, unique in the graph.
    pub name: String,
    /// Element type.
    pub dtype: DataType,
    /// Dimensions, outermost first; `None` when the model declares no shape.
    pub shape: Option<Vec<Dim>>,
}

/// A node attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    /// A single float.
    Float(f32),
    /// A single integer.
    Int(i64),
    /// A byte string (ONNX strings are bytes).
    String(Vec<u8>),
    /// A constant tensor.
    Tensor(Tensor),
    /// A list of floats.
    Floats(Vec<f32>),
    /// A list of integers.
    Ints(Vec<i64>),
    /// A list of byte strings.
    Strings(Vec<Vec<u8>>),
}

/// One operator application.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Node name; the loader gives unnamed nodes a unique `op_type_index` name so errors can point
    /// at them.
    pub name: String,
    /// Operator type, e.g. `Conv`.
    pub op_type: String,
    /// Operator domain; empty for the default ONNX domain, `com.microsoft` for contrib ops.
    pub domain: String,
    /// Input value names in operator order; an empty string marks an omitted optional input.
    pub inputs: Vec<String>,
    /// Output value names in operator order.
    pub outputs: Vec<String>,
    /// Attributes by name.
    pub attrs: BTreeMap<String, Attr>,
}

/// A whole model: declared inputs and outputs, constants and nodes in topological order.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    /// Graph name from the model file.
    pub name: String,
    /// Default-domain opset version the model was written for.
    pub opset: i64,
    /// Opset versions of other domains (e.g. `com.microsoft`) the model imports.
    pub extra_opsets: BTreeMap<String, i64>,
    /// Runtime inputs (constants excluded).
    pub inputs: Vec<ValueInfo>,
    /// Graph outputs.
    pub outputs: Vec<ValueInfo>,
    /// Constant tensors by value name: initializers and folded `Constant` nodes alike.
    pub initializers: BTreeMap<String, Tensor>,
    /// Nodes in an order where every input is produced before it is consumed.
    pub nodes: Vec<Node>,
    /// Free-form `metadata_props` of the model, written back on save.
    pub metadata: BTreeMap<String, String>,
}
