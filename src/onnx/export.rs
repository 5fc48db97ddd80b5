//! [`Model`] → `ModelProto`: opset imports from the graph, initializers as `raw_data`, typed
//! inputs and outputs, metadata, and an IR version new enough for the opset.

use super::attr::attr_to_proto;
use super::proto::{
    tensor_shape_proto::{dimension, Dimension},
    type_proto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use super::tensor_proto::tensor_to_proto;
use super::{Model, DEFAULT_IR_VERSION};
use crate::graph::{Dim, Graph, ValueInfo};
use crate::tensor::Tensor;

/// The smallest IR version that may carry a default-domain opset (from onnx's version table).
fn min_ir_version(opset: i64) -> i64 {
    match opset {
        ..=8 => 3,
        9 => 4,
        10 => 5,
        11 => 6,
        12..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        21..=22 => 10,
        23 => 11,
        24 => 12,
        _ => 13,
    }
}

/// The IR version a model is written with: the one it was loaded with (or
/// [`DEFAULT_IR_VERSION`]), raised if its opset needs a newer one.
pub fn ir_version_for(model: &Model) -> i64 {
    model
        .info
        .ir_version
        .unwrap_or(DEFAULT_IR_VERSION)
        .max(min_ir_version(model.graph.opset))
}

/// Builds the `ModelProto` for `model`.
pub fn model_to_proto(model: &Model) -> ModelProto {
    let g = &model.graph;
    let info = &model.info;
    let ir_version = ir_version_for(model);
    let mut opset_import = vec![OperatorSetIdProto {
        domain: Some(String::new()),
        version: Some(g.opset),
    }];
    opset_import.extend(g.extra_opsets.iter().map(|(d, &v)| OperatorSetIdProto {
        domain: Some(d.clone()),
        version: Some(v),
    }));
    ModelProto {
        ir_version: Some(ir_version),
        opset_import,
        producer_name: info.producer_name.clone(),
        producer_version: info.producer_version.clone(),
        domain: info.domain.clone(),
        model_version: info.model_version,
        doc_string: info.doc_string.clone(),
        graph: Some(graph_to_proto(g, info.graph_doc_string.clone(), ir_version)),
        metadata_props: g
            .metadata
            .iter()
            .map(|(k, v)| StringStringEntryProto {
                key: Some(k.clone()),
                value: Some(v.clone()),
            })
            .collect(),
        functions: Vec::new(),
    }
}

/// Builds the `GraphProto`. IR versions before 4 require every initializer to be a graph input.
fn graph_to_proto(g: &Graph, doc_string: Option<String>, ir_version: i64) -> GraphProto {
    let mut input: Vec<ValueInfoProto> = g.inputs.iter().map(value_info_to_proto).collect();
    if ir_version < 4 {
        input.extend(g.initializers.iter().map(|(name, t)| {
            value_info_to_proto(&ValueInfo {
                name: name.clone(),
                dtype: t.dtype(),
                shape: Some(t.shape().iter().map(|&d| Dim::Fixed(d)).collect()),
            })
        }));
    }
    GraphProto {
        node: g
            .nodes
            .iter()
            .map(|n| NodeProto {
                input: n.inputs.clone(),
                output: n.outputs.clone(),
                name: Some(n.name.clone()),
                op_type: Some(n.op_type.clone()),
                domain: (!n.domain.is_empty()).then(|| n.domain.clone()),
                attribute: n.attrs.iter().map(|(k, a)| attr_to_proto(k, a)).collect(),
                doc_string: None,
            })
            .collect(),
        name: Some(g.name.clone()),
        initializer: g
            .initializers
            .iter()
            .map(|(name, t): (&String, &Tensor)| tensor_to_proto(Some(name), t))
            .collect(),
        sparse_initializer: Vec::new(),
        doc_string,
        input,
        output: g.outputs.iter().map(value_info_to_proto).collect(),
        value_info: Vec::new(),
    }
}

/// A `ValueInfoProto` with a dense tensor type.
fn value_info_to_proto(v: &ValueInfo) -> ValueInfoProto {
    let shape = v.shape.as_ref().map(|dims| TensorShapeProto {
        dim: dims
            .iter()
            .map(|d| Dimension {
                value: Some(match d {
                    Dim::Fixed(n) => {
                        dimension::Value::DimValue(i64::try_from(*n).unwrap_or(i64::MAX))
                    }
                    Dim::Symbolic(s) if s.is_empty() => return Dimension::default(),
                    Dim::Symbolic(s) => dimension::Value::DimParam(s.clone()),
                }),
                denotation: None,
            })
            .collect(),
    });
    ValueInfoProto {
        name: Some(v.name.clone()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(v.dtype.onnx_code()),
                shape,
            })),
            denotation: None,
        }),
        doc_string: None,
    }
}
