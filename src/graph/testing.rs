//! Small graphs for unit tests, built one way wherever a test needs one: nodes without
//! attributes and graphs reading f32 `x` and writing f32 `y`.

use std::collections::BTreeMap;

use crate::graph::{Graph, Node, ValueInfo};
use crate::tensor::{DataType, Tensor};

/// A default-domain node without attributes.
pub(crate) fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> Node {
    Node {
        name: name.into(),
        op_type: op.into(),
        domain: String::new(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: outputs.iter().map(|s| s.to_string()).collect(),
        attrs: BTreeMap::new(),
    }
}

/// A graph of `nodes` at `opset` with f32 input `x`, f32 output `y` (shapes unknown) and the
/// given initializers.
pub(crate) fn graph(opset: i64, nodes: Vec<Node>, initializers: Vec<(&str, Tensor)>) -> Graph {
    let f32_value = |name: &str| ValueInfo {
        name: name.into(),
        dtype: DataType::F32,
        shape: None,
    };
    Graph {
        name: "g".into(),
        opset,
        extra_opsets: BTreeMap::new(),
        inputs: vec![f32_value("x")],
        outputs: vec![f32_value("y")],
        initializers: initializers
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        nodes,
        metadata: BTreeMap::new(),
    }
}
