//! `AttributeProto` ↔ [`Attr`]. Attribute kinds quench cannot represent (subgraphs, sparse
//! tensors, tensor lists, type protos) are refused by name.

use super::error::Problem;
use super::external::ExternalReader;
use super::proto::{attribute_type as ty, AttributeProto};
use super::tensor_proto::{tensor_from_proto, tensor_to_proto};
use crate::graph::Attr;

/// Converts an attribute's value, reading an external tensor value through `external`.
pub fn attr_from_proto(p: &AttributeProto, external: &mut ExternalReader) -> Result<Attr, Problem> {
    if let Some(r) = &p.ref_attr_name {
        return Err(Problem::Unsupported {
            what: format!("a reference to function attribute `{r}`"),
            why:
                "references are only valid inside model-local functions, which quench does not run",
        });
    }
    let kind = match p.r#type {
        Some(t) if t != ty::UNDEFINED => t,
        _ => infer_kind(p)?,
    };
    let unsupported = |what: &str, why| {
        Err(Problem::Unsupported {
            what: what.to_string(),
            why,
        })
    };
    Ok(match kind {
        ty::FLOAT => Attr::Float(p.f.unwrap_or(0.0)),
        ty::INT => Attr::Int(p.i.unwrap_or(0)),
        ty::STRING => Attr::String(p.s.clone().unwrap_or_default()),
        ty::TENSOR => {
            let t = p.t.as_ref().ok_or(Problem::Missing { field: "t" })?;
            Attr::Tensor(tensor_from_proto(t, external)?)
        }
        ty::FLOATS => Attr::Floats(p.floats.clone()),
        ty::INTS => Attr::Ints(p.ints.clone()),
        ty::STRINGS => Attr::Strings(p.strings.clone()),
        ty::GRAPH | ty::GRAPHS => {
            return unsupported(
                "a subgraph attribute (If/Loop/Scan body)",
                "quench does not run control flow",
            )
        }
        ty::TENSORS => {
            return unsupported(
                "a list-of-tensors attribute",
                "no quench operator takes one",
            )
        }
        ty::SPARSE_TENSOR | ty::SPARSE_TENSORS => {
            return unsupported(
                "a sparse tensor attribute",
                "quench keeps dense tensors only",
            )
        }
        ty::TYPE_PROTO | ty::TYPE_PROTOS => {
            return unsupported("a type attribute", "no quench operator takes one")
        }
        other => {
            return Err(Problem::BadValue {
                field: "type",
                value: other.to_string(),
                why: "not an AttributeType code",
            })
        }
    })
}

/// The kind of an attribute written without `type` (very old writers): the field that is set.
fn infer_kind(p: &AttributeProto) -> Result<i32, Problem> {
    let candidates = [
        (p.g.is_some() || !p.graphs.is_empty(), ty::GRAPH),
        (
            p.sparse_tensor.is_some() || !p.sparse_tensors.is_empty(),
            ty::SPARSE_TENSOR,
        ),
        (p.tp.is_some() || !p.type_protos.is_empty(), ty::TYPE_PROTO),
        (p.t.is_some(), ty::TENSOR),
        (!p.tensors.is_empty(), ty::TENSORS),
        (!p.floats.is_empty(), ty::FLOATS),
        (!p.ints.is_empty(), ty::INTS),
        (!p.strings.is_empty(), ty::STRINGS),
        (p.s.is_some(), ty::STRING),
        (p.f.is_some(), ty::FLOAT),
        (p.i.is_some(), ty::INT),
    ];
    candidates
        .iter()
        .find(|(set, _)| *set)
        .map(|&(_, kind)| kind)
        .ok_or(Problem::Missing { field: "type" })
}

/// Encodes `attr` as an `AttributeProto` named `name`, with its `type` set.
pub fn attr_to_proto(name: &str, attr: &Attr) -> AttributeProto {
    let mut p = AttributeProto {
        name: Some(name.to_string()),
        ..AttributeProto::default()
    };
    let kind = match attr {
        Attr::Float(f) => {
            p.f = Some(*f);
            ty::FLOAT
        }
        Attr::Int(i) => {
            p.i = Some(*i);
            ty::INT
        }
        Attr::String(s) => {
            p.s = Some(s.clone());
            ty::STRING
        }
        Attr::Tensor(t) => {
            p.t = Some(tensor_to_proto(None, t));
            ty::TENSOR
        }
        Attr::Floats(v) => {
            p.floats = v.clone();
            ty::FLOATS
        }
        Attr::Ints(v) => {
            p.ints = v.clone();
            ty::INTS
        }
        Attr::Strings(v) => {
            p.strings = v.clone();
            ty::STRINGS
        }
    };
    p.r#type = Some(kind);
    p
}
