//! Concrete shapes for a graph's declared inputs: what planning, shape inference and
//! `quench inspect` need when a model leaves its batch (or other) dimensions free.

use super::{Dim, Graph, GraphError};

/// The shape of every runtime input of `graph`: taken from `known` when it names the input,
/// otherwise from the declaration with a free leading dimension set to `batch`. Any other free
/// dimension is an error naming the input, so the caller can ask the user for the shape.
pub fn concrete_input_shapes(
    graph: &Graph,
    batch: usize,
    known: &[(String, Vec<usize>)],
) -> Result<Vec<(String, Vec<usize>)>, GraphError> {
    graph
        .inputs
        .iter()
        .map(|input| {
            if let Some((_, shape)) = known.iter().find(|(name, _)| *name == input.name) {
                return Ok((input.name.clone(), shape.clone()));
            }
            let dims = input.shape.as_ref().ok_or_else(|| GraphError::Input {
                name: input.name.clone(),
                message: "the model declares no shape for it; give one (e.g. --shape NAME=1x3x224x224)"
                    .into(),
            })?;
            let shape = dims
                .iter()
                .enumerate()
                .map(|(axis, dim)| match dim {
                    Dim::Fixed(n) => Ok(*n),
                    Dim::Symbolic(_) if axis == 0 => Ok(batch),
                    Dim::Symbolic(name) => Err(GraphError::Input {
                        name: input.name.clone(),
                        message: format!(
                            "dimension {axis} ({}) is free; give the shape (e.g. --shape {}=…) or a manifest",
                            if name.is_empty() { "unnamed" } else { name },
                            input.name
                        ),
                    }),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((input.name.clone(), shape))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::ValueInfo;
    use crate::tensor::DataType;
    use std::collections::BTreeMap;

    fn graph_with(dims: Vec<Dim>) -> Graph {
        Graph {
            name: "g".into(),
            opset: 13,
            extra_opsets: BTreeMap::new(),
            inputs: vec![ValueInfo {
                name: "x".into(),
                dtype: DataType::F32,
                shape: Some(dims),
            }],
            outputs: vec![],
            initializers: BTreeMap::new(),
            nodes: vec![],
            metadata: BTreeMap::new(),
        }
    }

    #[test]
    fn free_batch_takes_the_batch_size() {
        let g = graph_with(vec![Dim::Symbolic("N".into()), Dim::Fixed(784)]);
        let shapes = concrete_input_shapes(&g, 8, &[]).unwrap();
        assert_eq!(shapes, vec![("x".to_string(), vec![8, 784])]);
    }

    #[test]
    fn known_shape_wins_and_other_free_dims_are_named() {
        let g = graph_with(vec![
            Dim::Symbolic(String::new()),
            Dim::Fixed(3),
            Dim::Symbolic("h".into()),
        ]);
        let err = concrete_input_shapes(&g, 1, &[]).unwrap_err().to_string();
        assert!(err.contains("dimension 2 (h) is free"), "{err}");
        let known = vec![("x".to_string(), vec![1, 3, 48])];
        assert_eq!(concrete_input_shapes(&g, 1, &known).unwrap(), known);
    }
}
