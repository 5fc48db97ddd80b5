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

pub mod attrs;
pub mod fold;
pub mod inputs;
pub mod qdq;
pub mod shape;
pub mod shape_int;
pub mod simplify;
pub mod stats;
#[cfg(test)]
pub(crate) mod testing;

/// An error from a graph pass: a node whose attributes, inputs or shapes cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GraphError {
    /// A node is malformed or its inputs do not fit together; `message` says how.
    #[error("node `{node}` ({op}): {message}")]
    Node {
        /// Node name.
        node: String,
        /// Operator type.
        op: String,
        /// What is wrong.
        message: String,
    },
    /// The operator has no implementation in quench.
    #[error("node `{node}`: operator `{op}` is not supported")]
    Unsupported {
        /// Node name.
        node: String,
        /// Operator type (with its domain when not the default one).
        op: String,
    },
    /// A graph input is missing a shape, or the shape given disagrees with the declared one.
    #[error("graph input `{name}`: {message}")]
    Input {
        /// Input name.
        name: String,
        /// What is wrong.
        message: String,
    },
}

impl Node {
    /// A [`GraphError::Node`] about this node.
    pub fn error(&self, message: impl Into<String>) -> GraphError {
        GraphError::Node {
            node: self.name.clone(),
            op: self.op_type.clone(),
            message: message.into(),
        }
    }

    /// A [`GraphError::Unsupported`] naming this node and its operator.
    pub fn unsupported(&self) -> GraphError {
        let op = if self.domain.is_empty() || self.domain == "ai.onnx" {
            self.op_type.clone()
        } else {
            format!("{}::{}", self.domain, self.op_type)
        };
        GraphError::Unsupported {
            node: self.name.clone(),
            op,
        }
    }
}

impl Graph {
    /// Number of nodes that read each value (graph outputs count as one reader each).
    pub fn consumer_counts(&self) -> BTreeMap<&str, usize> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for node in &self.nodes {
            for input in node.inputs.iter().filter(|i| !i.is_empty()) {
                *counts.entry(input.as_str()).or_default() += 1;
            }
        }
        for out in &self.outputs {
            *counts.entry(out.name.as_str()).or_default() += 1;
        }
        counts
    }

    /// True when `name` is one of the graph's declared outputs.
    pub fn is_output(&self, name: &str) -> bool {
        self.outputs.iter().any(|o| o.name == name)
    }
}
