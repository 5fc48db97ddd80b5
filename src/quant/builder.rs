//! A graph under rewrite: fresh value names, new constants and nodes appended in order.

use std::collections::{BTreeMap, HashSet};

use crate::graph::{Attr, Graph, Node};
use crate::quant::QuantError;
use crate::tensor::{Tensor, TensorData};

/// Collects the rewritten graph's nodes and constants while guaranteeing unique value names.
pub struct Builder {
    taken: HashSet<String>,
    /// Constants of the graph being built.
    pub initializers: BTreeMap<String, Tensor>,
    /// Nodes of the graph being built, in order.
    pub nodes: Vec<Node>,
}

impl Builder {
    /// A builder that starts from `graph`'s constants and knows every name it uses.
    pub fn new(graph: &Graph) -> Builder {
        let mut taken: HashSet<String> = graph.initializers.keys().cloned().collect();
        for n in &graph.nodes {
            taken.extend(n.inputs.iter().cloned());
            taken.extend(n.outputs.iter().cloned());
            taken.insert(n.name.clone());
        }
        taken.extend(graph.inputs.iter().map(|v| v.name.clone()));
        taken.extend(graph.outputs.iter().map(|v| v.name.clone()));
        Builder {
            taken,
            initializers: graph.initializers.clone(),
            nodes: Vec::with_capacity(graph.nodes.len() * 2),
        }
    }

    /// `base`, or `base_1`, `base_2`, … whichever is unused; reserved from now on.
    pub fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut i = 1;
        while self.taken.contains(&name) {
            name = format!("{base}_{i}");
            i += 1;
        }
        self.taken.insert(name.clone());
        name
    }

    /// Adds a constant under a fresh name derived from `base`; returns the name.
    pub fn constant(&mut self, base: &str, tensor: Tensor) -> String {
        let name = self.fresh(base);
        self.initializers.insert(name.clone(), tensor);
        name
    }

    /// A constant of `shape` (`[]` for a scalar) holding `data`.
    pub fn constant_of(
        &mut self,
        base: &str,
        shape: Vec<usize>,
        data: TensorData,
    ) -> Result<String, QuantError> {
        Ok(self.constant(base, Tensor::new(shape, data)?))
    }

    /// Appends a node named after `base` (made unique); returns nothing, outputs are given.
    pub fn node(
        &mut self,
        base: &str,
        op_type: &str,
        domain: &str,
        inputs: Vec<String>,
        outputs: Vec<String>,
        attrs: Vec<(&str, Attr)>,
    ) {
        let name = self.fresh(base);
        self.nodes.push(Node {
            name,
            op_type: op_type.to_string(),
            domain: domain.to_string(),
            inputs,
            outputs,
            attrs: attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        });
    }
}
