//! `ModelProto` → [`Model`]: opsets, initializers and `Constant` nodes folded into constants,
//! nodes named, checked and topologically ordered, inputs and outputs typed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use super::attr::attr_from_proto;
use super::error::{dtype_from_code, OnnxError, Problem};
use super::external::ExternalReader;
use super::proto::{type_proto, GraphProto, ModelProto, NodeProto, ValueInfoProto};
use super::tensor_proto::{checked_shape, tensor_from_proto};
use super::topo;
use super::{Model, ModelInfo};
use crate::graph::{Attr, Dim, Graph, Node, ValueInfo};
use crate::tensor::Tensor;

/// Converts a decoded model; `file` names it in errors, `base_dir` is where external data lives.
pub fn model_from_proto(
    model: &ModelProto,
    file: &str,
    base_dir: Option<&Path>,
) -> Result<Model, OnnxError> {
    let invalid = |at: &str, problem| OnnxError::Invalid {
        file: file.to_string(),
        at: at.to_string(),
        problem: Box::new(problem),
    };
    if !model.functions.is_empty() {
        return Err(invalid(
            "model",
            Problem::Unsupported {
                what: format!("{} model-local functions", model.functions.len()),
                why: "quench runs only standard and contrib operators",
            },
        ));
    }
    let (opset, extra_opsets) = opsets(model).map_err(|(at, p)| invalid(&at, p))?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| invalid("model", Problem::Missing { field: "graph" }))?;
    let mut importer = Importer {
        external: ExternalReader::new(base_dir),
        initializers: BTreeMap::new(),
        sources: HashMap::new(),
    };
    let mut converted = importer
        .graph(graph, opset, extra_opsets)
        .map_err(|(at, p)| invalid(&at, p))?;
    for (i, entry) in model.metadata_props.iter().enumerate() {
        let key = entry.key.clone().unwrap_or_default();
        let value = entry.value.clone().unwrap_or_default();
        if converted.metadata.insert(key.clone(), value).is_some() {
            return Err(invalid(
                &format!("metadata_props {i}"),
                Problem::Duplicate {
                    kind: "metadata key",
                    name: key,
                    first: "an earlier metadata_props entry".to_string(),
                },
            ));
        }
    }
    let info = ModelInfo {
        ir_version: model.ir_version,
        producer_name: model.producer_name.clone(),
        producer_version: model.producer_version.clone(),
        domain: model.domain.clone(),
        model_version: model.model_version,
        doc_string: model.doc_string.clone(),
        graph_doc_string: graph.doc_string.clone(),
    };
    Ok(Model {
        graph: converted,
        info,
    })
}

/// A location in the model and what is wrong there.
type Located = (String, Problem);

/// The default-domain opset and the others, refusing a missing default or a repeated domain.
fn opsets(model: &ModelProto) -> Result<(i64, BTreeMap<String, i64>), Located> {
    let mut default = None;
    let mut extra = BTreeMap::new();
    for (i, op) in model.opset_import.iter().enumerate() {
        let domain = op.domain.clone().unwrap_or_default();
        let version = op.version.unwrap_or(0);
        let at = || format!("opset_import {i} (domain `{domain}`)");
        if version < 1 {
            return Err((
                at(),
                Problem::BadValue {
                    field: "version",
                    value: version.to_string(),
                    why: "opset versions start at 1",
                },
            ));
        }
        let repeated = if is_default_domain(&domain) {
            default.replace(version).is_some()
        } else {
            extra.insert(domain.clone(), version).is_some()
        };
        if repeated {
            return Err((
                at(),
                Problem::Duplicate {
                    kind: "opset domain",
                    name: domain.clone(),
                    first: "an earlier opset_import".to_string(),
                },
            ));
        }
    }
    let opset = default.ok_or_else(|| {
        (
            "model".to_string(),
            Problem::Missing {
                field: "opset_import for the default domain",
            },
        )
    })?;
    Ok((opset, extra))
}

/// True for the names of the default ONNX operator domain.
fn is_default_domain(domain: &str) -> bool {
    domain.is_empty() || domain == "ai.onnx"
}

/// State of one graph conversion.
struct Importer {
    external: ExternalReader,
    initializers: BTreeMap<String, Tensor>,
    /// Values available before any node runs, with what defined them (for duplicate errors).
    sources: HashMap<String, String>,
}

impl Importer {
    fn graph(
        &mut self,
        g: &GraphProto,
        opset: i64,
        extra_opsets: BTreeMap<String, i64>,
    ) -> Result<Graph, Located> {
        if let Some(first) = g.sparse_initializer.first() {
            return Err((
                "graph".to_string(),
                Problem::Unsupported {
                    what: format!(
                        "{} sparse initializers (the first is {} bytes)",
                        g.sparse_initializer.len(),
                        first.len()
                    ),
                    why: "quench keeps dense tensors only",
                },
            ));
        }
        let names = node_names(&g.node);
        let consumers = first_consumers(&g.node, &names);
        for init in &g.initializer {
            let name = init.name.clone().unwrap_or_default();
            let at = match consumers.get(name.as_str()) {
                Some(c) => format!("initializer `{name}` ({c})"),
                None => format!("initializer `{name}`"),
            };
            if name.is_empty() {
                return Err((at, Problem::Missing { field: "name" }));
            }
            let tensor =
                tensor_from_proto(init, &mut self.external).map_err(|p| (at.clone(), p))?;
            self.define(name, tensor, at)?;
        }
        let mut nodes = Vec::with_capacity(g.node.len());
        for (proto, name) in g.node.iter().zip(names) {
            if let Some(node) = self.node(proto, name)? {
                nodes.push(node);
            }
        }
        let initializer_names: HashSet<&str> = g
            .initializer
            .iter()
            .filter_map(|t| t.name.as_deref())
            .collect();
        let mut inputs = Vec::with_capacity(g.input.len());
        for (i, vi) in g.input.iter().enumerate() {
            let name = vi.name.clone().unwrap_or_default();
            let at = format!("graph input {i} `{name}`");
            if initializer_names.contains(name.as_str()) {
                continue;
            }
            let info = value_info(vi).map_err(|p| (at.clone(), p))?;
            if let Some(first) = self.sources.insert(name.clone(), at.clone()) {
                return Err((
                    at,
                    Problem::Duplicate {
                        kind: "value",
                        name,
                        first,
                    },
                ));
            }
            inputs.push(info);
        }
        let nodes = topo::sort(nodes, &self.sources)?;
        let outputs = outputs(&g.output, &nodes, &self.sources)?;
        Ok(Graph {
            name: g.name.clone().unwrap_or_default(),
            opset,
            extra_opsets,
            inputs,
            outputs,
            initializers: std::mem::take(&mut self.initializers),
            nodes,
            metadata: BTreeMap::new(),
        })
    }

    /// Adds a constant value, refusing a name defined before.
    fn define(&mut self, name: String, tensor: Tensor, at: String) -> Result<(), Located> {
        if let Some(first) = self.sources.insert(name.clone(), at.clone()) {
            return Err((
                at,
                Problem::Duplicate {
                    kind: "value",
                    name,
                    first,
                },
            ));
        }
        self.initializers.insert(name, tensor);
        Ok(())
    }

    /// Converts a node; a `Constant` node becomes an initializer and `None` is returned.
    fn node(&mut self, p: &NodeProto, name: String) -> Result<Option<Node>, Located> {
        let at = format!("node `{name}`");
        let op_type = p.op_type.clone().unwrap_or_default();
        if op_type.is_empty() {
            return Err((at, Problem::Missing { field: "op_type" }));
        }
        let domain = p.domain.clone().unwrap_or_default();
        let mut attrs = BTreeMap::new();
        for a in &p.attribute {
            let attr_name = a.name.clone().unwrap_or_default();
            let at = format!("node `{name}` attribute `{attr_name}`");
            if attr_name.is_empty() {
                return Err((at, Problem::Missing { field: "name" }));
            }
            let value = attr_from_proto(a, &mut self.external).map_err(|p| (at.clone(), p))?;
            if attrs.insert(attr_name.clone(), value).is_some() {
                return Err((
                    at,
                    Problem::Duplicate {
                        kind: "attribute",
                        name: attr_name,
                        first: "an earlier attribute of this node".to_string(),
                    },
                ));
            }
        }
        if op_type == "Constant" && is_default_domain(&domain) {
            let (value_name, tensor) =
                constant_value(p, attrs).map_err(|prob| (at.clone(), prob))?;
            self.define(value_name, tensor, at)?;
            return Ok(None);
        }
        Ok(Some(Node {
            name,
            op_type,
            domain,
            inputs: p.input.clone(),
            outputs: p.output.clone(),
            attrs,
        }))
    }
}

/// The value a `Constant` node defines: its one output name and its tensor.
fn constant_value(
    p: &NodeProto,
    attrs: BTreeMap<String, Attr>,
) -> Result<(String, Tensor), Problem> {
    let output = match (p.input.as_slice(), p.output.as_slice()) {
        ([], [out]) if !out.is_empty() => out.clone(),
        _ => {
            return Err(Problem::BadValue {
                field: "input/output",
                value: format!("{:?} -> {:?}", p.input, p.output),
                why: "a Constant has no inputs and one named output",
            })
        }
    };
    let mut iter = attrs.into_iter();
    let (Some((key, attr)), None) = (iter.next(), iter.next()) else {
        return Err(Problem::Missing {
            field: "the one value attribute of a Constant",
        });
    };
    let tensor = match (key.as_str(), attr) {
        ("value", Attr::Tensor(t)) => Ok(t),
        ("value_float", Attr::Float(f)) => Tensor::from_f32(vec![], vec![f]),
        ("value_floats", Attr::Floats(v)) => Tensor::from_f32(vec![v.len()], v),
        ("value_int", Attr::Int(i)) => Tensor::from_i64(vec![], vec![i]),
        ("value_ints", Attr::Ints(v)) => Tensor::from_i64(vec![v.len()], v),
        (other, attr) => return Err(Problem::Unsupported {
            what: format!("Constant attribute `{other}` holding {}", kind_name(&attr)),
            why:
                "quench reads value, value_float(s) and value_int(s) (no strings or sparse values)",
        }),
    };
    let tensor = tensor.map_err(|_| Problem::BadValue {
        field: "value",
        value: key,
        why: "the element count disagrees with the shape",
    })?;
    Ok((output, tensor))
}

/// A short name for the kind of an attribute value, for messages (the value may be huge).
fn kind_name(attr: &Attr) -> &'static str {
    match attr {
        Attr::Float(_) => "a float",
        Attr::Int(_) => "an int",
        Attr::String(_) => "a string",
        Attr::Tensor(_) => "a tensor",
        Attr::Floats(_) => "floats",
        Attr::Ints(_) => "ints",
        Attr::Strings(_) => "strings",
    }
}

/// The names nodes get: their own, or a unique `op_type_index` for unnamed ones.
fn node_names(nodes: &[NodeProto]) -> Vec<String> {
    let taken: HashSet<&str> = nodes.iter().filter_map(|n| n.name.as_deref()).collect();
    let mut made = HashSet::new();
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| match n.name.as_deref() {
            Some(name) if !name.is_empty() => name.to_string(),
            _ => {
                let op = n
                    .op_type
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .unwrap_or("node");
                let base = format!("{op}_{i}");
                let mut candidate = base.clone();
                let mut k = 1;
                while taken.contains(candidate.as_str()) || made.contains(&candidate) {
                    candidate = format!("{base}_{k}");
                    k += 1;
                }
                made.insert(candidate.clone());
                candidate
            }
        })
        .collect()
}

/// For each consumed value, ``node `X` input i`` of its first consumer (for error locations).
fn first_consumers<'a>(nodes: &'a [NodeProto], names: &[String]) -> HashMap<&'a str, String> {
    let mut first = HashMap::new();
    for (node, name) in nodes.iter().zip(names) {
        for (i, input) in node.input.iter().enumerate() {
            first
                .entry(input.as_str())
                .or_insert_with(|| format!("node `{name}` input {i}"));
        }
    }
    first
}

/// A declared input or output; only dense tensors of supported types are accepted.
fn value_info(vi: &ValueInfoProto) -> Result<ValueInfo, Problem> {
    let name = vi.name.clone().unwrap_or_default();
    if name.is_empty() {
        return Err(Problem::Missing { field: "name" });
    }
    let tensor = match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => t,
        Some(_) => {
            return Err(Problem::Unsupported {
                what: "a non-tensor type (sequence, map, optional, sparse or opaque)".to_string(),
                why: "quench runs dense tensors only",
            })
        }
        None => {
            return Err(Problem::Missing {
                field: "type.tensor_type",
            })
        }
    };
    let code = tensor
        .elem_type
        .ok_or(Problem::Missing { field: "elem_type" })?;
    let dtype = dtype_from_code("elem_type", code)?;
    let shape = match &tensor.shape {
        None => None,
        Some(shape) => Some(dims(shape)?),
    };
    Ok(ValueInfo { name, dtype, shape })
}

/// The dimensions of a declared shape. Fixed extents are bounded like tensor dims; a negative
/// `dim_value` (some exporters write -1 for "dynamic") is read as an unnamed free dimension.
fn dims(shape: &super::proto::TensorShapeProto) -> Result<Vec<Dim>, Problem> {
    use super::proto::tensor_shape_proto::dimension::Value;
    let fixed: Vec<i64> = shape
        .dim
        .iter()
        .filter_map(|d| match d.value {
            Some(Value::DimValue(v)) if v >= 0 => Some(v),
            _ => None,
        })
        .collect();
    let (extents, _) = checked_shape("dim_value", &fixed)?;
    let mut extents = extents.into_iter();
    Ok(shape
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(Value::DimValue(v)) if *v >= 0 => Dim::Fixed(extents.next().unwrap_or(0)),
            Some(Value::DimParam(p)) => Dim::Symbolic(p.clone()),
            Some(Value::DimValue(_)) | None => Dim::Symbolic(String::new()),
        })
        .collect())
}

/// The declared outputs, each of which something must produce.
fn outputs(
    declared: &[ValueInfoProto],
    nodes: &[Node],
    sources: &HashMap<String, String>,
) -> Result<Vec<ValueInfo>, Located> {
    let node_outputs: HashSet<&String> = nodes.iter().flat_map(|n| &n.outputs).collect();
    declared
        .iter()
        .enumerate()
        .map(|(i, vi)| {
            let name = vi.name.clone().unwrap_or_default();
            let at = format!("graph output {i} `{name}`");
            let info = value_info(vi).map_err(|p| (at.clone(), p))?;
            if !sources.contains_key(&name) && !node_outputs.contains(&name) {
                return Err((at, Problem::UnproducedOutput { name }));
            }
            Ok(info)
        })
        .collect()
}
