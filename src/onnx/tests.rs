//! Tests of loading and saving, on models built here from protobuf messages.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use prost::Message;

use super::proto::{
    attribute_type, tensor_shape_proto::dimension, tensor_shape_proto::Dimension, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto, DATA_LOCATION_EXTERNAL,
};
use super::*;
use crate::graph::{Attr, Dim, Node, ValueInfo};
use crate::tensor::{DataType, Tensor, TensorData};

fn f32_tensor(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        dims: dims.to_vec(),
        data_type: Some(1),
        raw_data: Some(data.iter().flat_map(|x| x.to_le_bytes()).collect()),
        ..TensorProto::default()
    }
}

fn value_info(name: &str, elem_type: i32, dims: &[i64]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem_type),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(dimension::Value::DimValue(d)),
                            denotation: None,
                        })
                        .collect(),
                }),
            })),
            denotation: None,
        }),
        doc_string: None,
    }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str], attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        op_type: Some(op.to_string()),
        attribute,
        ..NodeProto::default()
    }
}

fn named(mut n: NodeProto, name: &str) -> NodeProto {
    n.name = Some(name.to_string());
    n
}

fn tensor_attr(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(attribute_type::TENSOR),
        t: Some(t),
        ..AttributeProto::default()
    }
}

fn model(
    node: Vec<NodeProto>,
    initializer: Vec<TensorProto>,
    input: Vec<ValueInfoProto>,
    output: Vec<ValueInfoProto>,
) -> ModelProto {
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(13),
        }],
        graph: Some(GraphProto {
            node,
            name: Some("g".to_string()),
            initializer,
            input,
            output,
            ..GraphProto::default()
        }),
        ..ModelProto::default()
    }
}

/// x[1,2] · w[2,2] → y, with `w` given as an initializer.
fn matmul_model(w: TensorProto) -> ModelProto {
    model(
        vec![node("MatMul", &["x", "w"], &["y"], vec![])],
        vec![w],
        vec![value_info("x", 1, &[1, 2])],
        vec![value_info("y", 1, &[1, 2])],
    )
}

fn load_err(m: &ModelProto, base: Option<&Path>) -> OnnxError {
    load_bytes(&m.encode_to_vec(), base).unwrap_err()
}

fn problem(e: &OnnxError) -> &Problem {
    match e {
        OnnxError::Invalid { problem, .. } => problem,
        other => panic!("expected an invalid-model error, got {other}"),
    }
}

#[test]
fn constant_nodes_become_initializers() {
    let m = model(
        vec![
            node(
                "Constant",
                &[],
                &["w"],
                vec![tensor_attr(
                    "value",
                    f32_tensor("", &[2, 2], &[1., 2., 3., 4.]),
                )],
            ),
            node("MatMul", &["x", "w"], &["xw"], vec![]),
            node(
                "Constant",
                &[],
                &["s"],
                vec![AttributeProto {
                    name: Some("value_float".into()),
                    r#type: Some(attribute_type::FLOAT),
                    f: Some(0.5),
                    ..AttributeProto::default()
                }],
            ),
            node(
                "Constant",
                &[],
                &["shape"],
                vec![AttributeProto {
                    name: Some("value_ints".into()),
                    r#type: Some(attribute_type::INTS),
                    ints: vec![1, 2],
                    ..AttributeProto::default()
                }],
            ),
            node("Mul", &["xw", "s"], &["m"], vec![]),
            node("Reshape", &["m", "shape"], &["y"], vec![]),
        ],
        vec![],
        vec![value_info("x", 1, &[1, 2])],
        vec![value_info("y", 1, &[1, 2])],
    );
    let g = load_bytes(&m.encode_to_vec(), None).unwrap();
    let ops: Vec<&str> = g.nodes.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(ops, ["MatMul", "Mul", "Reshape"]);
    assert_eq!(
        g.initializers["w"],
        Tensor::from_f32(vec![2, 2], vec![1., 2., 3., 4.]).unwrap()
    );
    assert_eq!(
        g.initializers["s"],
        Tensor::from_f32(vec![], vec![0.5]).unwrap()
    );
    assert_eq!(
        g.initializers["shape"],
        Tensor::from_i64(vec![2], vec![1, 2]).unwrap()
    );
    assert_eq!(g.inputs.len(), 1);
}

#[test]
fn initializer_listed_as_graph_input_is_not_a_runtime_input() {
    let mut m = matmul_model(f32_tensor("w", &[2, 2], &[0.; 4]));
    let graph = m.graph.as_mut().unwrap();
    graph.input.push(value_info("w", 1, &[2, 2]));
    let g = load_bytes(&m.encode_to_vec(), None).unwrap();
    let names: Vec<&str> = g.inputs.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["x"]);
    assert!(g.initializers.contains_key("w"));
}

#[test]
fn typed_data_fields_are_read() {
    let mut m = matmul_model(TensorProto {
        name: Some("w".into()),
        dims: vec![2, 2],
        data_type: Some(1),
        float_data: vec![1., 2., 3., 4.],
        ..TensorProto::default()
    });
    let typed = |name: &str, code: i32, int32: Vec<i32>, int64: Vec<i64>| TensorProto {
        name: Some(name.into()),
        dims: vec![2],
        data_type: Some(code),
        int32_data: int32,
        int64_data: int64,
        ..TensorProto::default()
    };
    let graph = m.graph.as_mut().unwrap();
    graph.initializer.extend([
        typed("u8", 2, vec![0, 255], vec![]),
        typed("i8", 3, vec![-128, 127], vec![]),
        typed("i32", 6, vec![i32::MIN, 7], vec![]),
        typed("i64", 7, vec![], vec![i64::MAX, -1]),
        typed("b", 9, vec![1, 0], vec![]),
    ]);
    let g = load_bytes(&m.encode_to_vec(), None).unwrap();
    let data = |n: &str| g.initializers[n].data().clone();
    assert_eq!(data("w"), TensorData::F32(vec![1., 2., 3., 4.]));
    assert_eq!(data("u8"), TensorData::U8(vec![0, 255]));
    assert_eq!(data("i8"), TensorData::I8(vec![-128, 127]));
    assert_eq!(data("i32"), TensorData::I32(vec![i32::MIN, 7]));
    assert_eq!(data("i64"), TensorData::I64(vec![i64::MAX, -1]));
    assert_eq!(data("b"), TensorData::Bool(vec![true, false]));
}

#[test]
fn int32_data_out_of_range_for_u8_is_refused() {
    let mut m = matmul_model(f32_tensor("w", &[2, 2], &[0.; 4]));
    m.graph.as_mut().unwrap().initializer.push(TensorProto {
        name: Some("q".into()),
        dims: vec![2],
        data_type: Some(2),
        int32_data: vec![3, 300],
        ..TensorProto::default()
    });
    let e = load_err(&m, None);
    assert!(
        matches!(
            problem(&e),
            Problem::OutOfRange {
                index: 1,
                value: 300,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("initializer `q`"), "{e}");
}

#[test]
fn unnamed_nodes_get_unique_names() {
    let m = model(
        vec![
            node("Relu", &["x"], &["a"], vec![]),
            named(node("Relu", &["a"], &["b"], vec![]), "Relu_2"),
            node("Relu", &["b"], &["y"], vec![]),
        ],
        vec![],
        vec![value_info("x", 1, &[1])],
        vec![value_info("y", 1, &[1])],
    );
    let g = load_bytes(&m.encode_to_vec(), None).unwrap();
    let names: Vec<&str> = g.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["Relu_0", "Relu_2", "Relu_2_1"]);
}

#[test]
fn nodes_come_back_in_topological_order() {
    let m = model(
        vec![
            named(node("Relu", &["b"], &["y"], vec![]), "last"),
            named(node("Relu", &["a"], &["b"], vec![]), "middle"),
            named(node("Relu", &["x"], &["a"], vec![]), "first"),
        ],
        vec![],
        vec![value_info("x", 1, &[1])],
        vec![value_info("y", 1, &[1])],
    );
    let g = load_bytes(&m.encode_to_vec(), None).unwrap();
    let names: Vec<&str> = g.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["first", "middle", "last"]);
}

#[test]
fn cycle_is_refused_naming_node_and_value() {
    let m = model(
        vec![
            named(node("Add", &["x", "b"], &["a"], vec![]), "A"),
            named(node("Relu", &["a"], &["b"], vec![]), "B"),
            named(node("Relu", &["b"], &["y"], vec![]), "C"),
        ],
        vec![],
        vec![value_info("x", 1, &[1])],
        vec![value_info("y", 1, &[1])],
    );
    let e = load_err(&m, None);
    let Problem::Cycle { name, producer, .. } = problem(&e) else {
        panic!("{e}")
    };
    assert!(
        (name == "b" && producer == "B") || (name == "a" && producer == "A"),
        "{e}"
    );
    assert!(e.to_string().contains("cycle"), "{e}");
}

#[test]
fn missing_input_is_refused_naming_node_and_value() {
    let m = model(
        vec![named(node("Add", &["x", "nowhere"], &["y"], vec![]), "add")],
        vec![],
        vec![value_info("x", 1, &[1])],
        vec![value_info("y", 1, &[1])],
    );
    let e = load_err(&m, None);
    assert!(
        matches!(problem(&e), Problem::MissingInput { index: 1, name } if name == "nowhere"),
        "{e}"
    );
    assert!(e.to_string().contains("node `add`"), "{e}");
}

#[test]
fn value_defined_twice_is_refused() {
    let m = model(
        vec![node("Relu", &["x"], &["w"], vec![])],
        vec![f32_tensor("w", &[1], &[1.])],
        vec![value_info("x", 1, &[1])],
        vec![value_info("w", 1, &[1])],
    );
    let e = load_err(&m, None);
    assert!(
        matches!(problem(&e), Problem::Duplicate { name, .. } if name == "w"),
        "{e}"
    );
}

#[test]
fn unproduced_graph_output_is_refused() {
    let m = model(
        vec![node("Relu", &["x"], &["y"], vec![])],
        vec![],
        vec![value_info("x", 1, &[1])],
        vec![value_info("z", 1, &[1])],
    );
    let e = load_err(&m, None);
    assert!(
        matches!(problem(&e), Problem::UnproducedOutput { name } if name == "z"),
        "{e}"
    );
}

#[test]
fn wrong_raw_data_length_is_refused() {
    let mut w = f32_tensor("w", &[2, 2], &[0.; 4]);
    w.raw_data.as_mut().unwrap().truncate(7);
    let e = load_err(&matmul_model(w), None);
    assert!(
        matches!(
            problem(&e),
            Problem::DataLength {
                field: "raw_data",
                expected: 16,
                actual: 7,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "(in-memory model): initializer `w` (node `MatMul_0` input 1): `raw_data` holds 7 bytes \
         but dims [2, 2] of f32 need 16"
    );
}

#[test]
fn wrong_typed_data_length_is_refused() {
    let w = TensorProto {
        name: Some("w".into()),
        dims: vec![2, 2],
        data_type: Some(1),
        float_data: vec![1., 2., 3.],
        ..TensorProto::default()
    };
    let e = load_err(&matmul_model(w), None);
    assert!(
        matches!(
            problem(&e),
            Problem::DataLength {
                field: "float_data",
                expected: 4,
                actual: 3,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn data_in_a_field_foreign_to_the_type_is_refused() {
    let mut w = f32_tensor("w", &[2, 2], &[0.; 4]);
    w.int64_data = vec![1];
    let e = load_err(&matmul_model(w), None);
    assert!(
        matches!(
            problem(&e),
            Problem::WrongDataField {
                field: "int64_data",
                expected_field: "raw_data",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn unsupported_element_types_are_refused_by_name() {
    for (code, name) in [
        (10, "FLOAT16"),
        (8, "STRING"),
        (11, "DOUBLE"),
        (99, "unknown"),
    ] {
        let w = TensorProto {
            name: Some("w".into()),
            dims: vec![2, 2],
            data_type: Some(code),
            raw_data: Some(vec![0; 8]),
            ..TensorProto::default()
        };
        let e = load_err(&matmul_model(w), None);
        assert!(
            matches!(problem(&e), Problem::UnsupportedType { code: c, .. } if *c == code),
            "{e}"
        );
        let text = e.to_string();
        assert!(
            text.contains(name) && text.contains("initializer `w`"),
            "{text}"
        );
    }
    let mut m = matmul_model(f32_tensor("w", &[2, 2], &[0.; 4]));
    m.graph.as_mut().unwrap().input[0] = value_info("x", 10, &[1, 2]);
    let e = load_err(&m, None);
    assert!(e.to_string().contains("graph input 0 `x`") && e.to_string().contains("FLOAT16"));
}

#[test]
fn huge_dims_are_refused_before_allocating() {
    let w = TensorProto {
        name: Some("w".into()),
        dims: vec![1 << 40],
        data_type: Some(1),
        ..TensorProto::default()
    };
    let e = load_err(&matmul_model(w), None);
    assert_eq!(
        e.to_string(),
        "(in-memory model): initializer `w` (node `MatMul_0` input 1): tensor dims \
         [1099511627776] exceed the limit of 2147483648 elements"
    );
    for dims in [
        vec![1 << 20, 1 << 20, 1 << 20],
        vec![i64::MAX, i64::MAX],
        vec![0, 1 << 40],
    ] {
        let w = TensorProto {
            name: Some("w".into()),
            dims,
            data_type: Some(1),
            ..TensorProto::default()
        };
        let e = load_err(&matmul_model(w), None);
        assert!(
            matches!(problem(&e), Problem::TooManyElements { .. }),
            "{e}"
        );
    }
    let w = TensorProto {
        name: Some("w".into()),
        dims: vec![2, -2],
        data_type: Some(1),
        ..TensorProto::default()
    };
    let e = load_err(&matmul_model(w), None);
    assert!(matches!(problem(&e), Problem::NegativeDim { .. }), "{e}");
}

#[test]
fn subgraph_attribute_is_refused_naming_the_node() {
    // An If whose then-branch nests 2,000 graphs deep: refused at the outer node, no recursion.
    let mut body: Vec<u8> = GraphProto::default().encode_to_vec();
    for _ in 0..2000 {
        let attr = AttributeProto {
            name: Some("then_branch".into()),
            r#type: Some(attribute_type::GRAPH),
            g: Some(body),
            ..AttributeProto::default()
        };
        body = GraphProto {
            node: vec![node("If", &["c"], &["o"], vec![attr])],
            ..GraphProto::default()
        }
        .encode_to_vec();
    }
    let attr = AttributeProto {
        name: Some("then_branch".into()),
        r#type: Some(attribute_type::GRAPH),
        g: Some(body),
        ..AttributeProto::default()
    };
    let m = model(
        vec![node("If", &["x"], &["y"], vec![attr])],
        vec![],
        vec![value_info("x", 9, &[])],
        vec![value_info("y", 1, &[1])],
    );
    let e = load_err(&m, None);
    assert!(matches!(problem(&e), Problem::Unsupported { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("node `If_0` attribute `then_branch`"),
        "{e}"
    );
}

#[test]
fn functions_and_sparse_initializers_are_refused() {
    let mut m = matmul_model(f32_tensor("w", &[2, 2], &[0.; 4]));
    m.functions.push(vec![]);
    assert!(load_err(&m, None)
        .to_string()
        .contains("model-local functions"));
    let mut m = matmul_model(f32_tensor("w", &[2, 2], &[0.; 4]));
    m.graph.as_mut().unwrap().sparse_initializer.push(vec![]);
    assert!(load_err(&m, None)
        .to_string()
        .contains("sparse initializers"));
}

#[test]
fn attribute_without_type_is_inferred() {
    let attr = AttributeProto {
        name: Some("alpha".into()),
        f: Some(0.25),
        ..AttributeProto::default()
    };
    let m = model(
        vec![node("LeakyRelu", &["x"], &["y"], vec![attr])],
        vec![],
        vec![value_info("x", 1, &[1])],
        vec![value_info("y", 1, &[1])],
    );
    let g = load_bytes(&m.encode_to_vec(), None).unwrap();
    assert_eq!(g.nodes[0].attrs["alpha"], Attr::Float(0.25));
}

#[test]
fn truncated_model_is_an_error_at_every_length() {
    let bytes = matmul_model(f32_tensor("w", &[2, 2], &[1., 2., 3., 4.])).encode_to_vec();
    assert!(load_bytes(&bytes, None).is_ok());
    // opset_import is encoded last, so every strict prefix either cuts a field or lacks it.
    for len in 0..bytes.len() {
        assert!(
            load_bytes(&bytes[..len], None).is_err(),
            "prefix of {len} bytes"
        );
    }
}

/// A model touching every loader path: Constant, typed and raw initializers, attributes.
fn rich_model() -> ModelProto {
    let mut m = model(
        vec![
            node(
                "Constant",
                &[],
                &["c"],
                vec![tensor_attr("value", f32_tensor("", &[2], &[1., -1.]))],
            ),
            node(
                "Gemm",
                &["x", "w", "c"],
                &["g"],
                vec![AttributeProto {
                    name: Some("alpha".into()),
                    r#type: Some(attribute_type::FLOAT),
                    f: Some(1.0),
                    ..AttributeProto::default()
                }],
            ),
            node(
                "Reshape",
                &["g", "shape"],
                &["y"],
                vec![AttributeProto {
                    name: Some("allowzero".into()),
                    r#type: Some(attribute_type::INT),
                    i: Some(0),
                    ..AttributeProto::default()
                }],
            ),
        ],
        vec![
            f32_tensor("w", &[2, 2], &[0.5, 1.5, -2.0, 3.0]),
            TensorProto {
                name: Some("shape".into()),
                dims: vec![2],
                data_type: Some(7),
                int64_data: vec![1, 2],
                ..TensorProto::default()
            },
        ],
        vec![value_info("x", 1, &[1, 2])],
        vec![value_info("y", 1, &[1, 2])],
    );
    m.producer_name = Some("test".into());
    m
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn bit_flips_never_panic(flips in proptest::collection::vec((any::<usize>(), 0u8..8), 1..8)) {
        let mut bytes = rich_model().encode_to_vec();
        for (pos, bit) in flips {
            let i = pos % bytes.len();
            bytes[i] ^= 1 << bit;
        }
        let _ = load_bytes(&bytes, None);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = load_bytes(&bytes, None);
    }
}

fn sample_graph() -> Graph {
    let attrs: BTreeMap<String, Attr> = [
        ("f", Attr::Float(-0.5)),
        ("i", Attr::Int(-7)),
        ("s", Attr::String(b"NOTSET".to_vec())),
        (
            "t",
            Attr::Tensor(Tensor::from_i64(vec![3], vec![1, 2, 3]).unwrap()),
        ),
        ("fs", Attr::Floats(vec![1.0, 2.5])),
        ("is", Attr::Ints(vec![])),
        ("ss", Attr::Strings(vec![b"a".to_vec(), vec![]])),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let initializers = [
        (
            "w",
            Tensor::from_f32(vec![2, 2], vec![0.5, 1.5, -2.0, 3.0]).unwrap(),
        ),
        (
            "u",
            Tensor::new(vec![3], TensorData::U8(vec![0, 128, 255])).unwrap(),
        ),
        (
            "q",
            Tensor::new(vec![2], TensorData::I8(vec![-128, 127])).unwrap(),
        ),
        ("n", Tensor::new(vec![], TensorData::I32(vec![-5])).unwrap()),
        (
            "b",
            Tensor::new(vec![2, 1], TensorData::Bool(vec![true, false])).unwrap(),
        ),
        ("e", Tensor::from_f32(vec![0, 4], vec![]).unwrap()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Graph {
        name: "sample".into(),
        opset: 17,
        extra_opsets: [("com.microsoft".to_string(), 1)].into_iter().collect(),
        inputs: vec![ValueInfo {
            name: "x".into(),
            dtype: DataType::F32,
            shape: Some(vec![
                Dim::Symbolic("batch".into()),
                Dim::Fixed(2),
                Dim::Symbolic(String::new()),
            ]),
        }],
        outputs: vec![ValueInfo {
            name: "y".into(),
            dtype: DataType::F32,
            shape: None,
        }],
        initializers,
        nodes: vec![
            Node {
                name: "mm".into(),
                op_type: "MatMul".into(),
                domain: String::new(),
                inputs: vec!["x".into(), "w".into()],
                outputs: vec!["h".into()],
                attrs,
            },
            Node {
                name: "ms".into(),
                op_type: "FusedThing".into(),
                domain: "com.microsoft".into(),
                inputs: vec!["h".into(), String::new(), "u".into()],
                outputs: vec!["y".into(), String::new()],
                attrs: BTreeMap::new(),
            },
        ],
        metadata: [("author".to_string(), "quench tests".to_string())]
            .into_iter()
            .collect(),
    }
}

#[test]
fn graph_round_trips_through_bytes() {
    let g = sample_graph();
    let bytes = to_bytes(&g).unwrap();
    assert_eq!(load_bytes(&bytes, None).unwrap(), g);
}

#[test]
fn loaded_model_round_trips_with_its_info() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("a.onnx");
    std::fs::write(&first, rich_model().encode_to_vec()).unwrap();
    let m = load_model(&first).unwrap();
    assert_eq!(m.info.producer_name.as_deref(), Some("test"));
    assert_eq!(m.info.ir_version, Some(8));
    let second = dir.path().join("b.onnx");
    save_model(&m, &second).unwrap();
    let again = load_model(&second).unwrap();
    assert_eq!(again, m);
    // The folded constant is written as an initializer, in raw_data.
    let proto = ModelProto::decode(std::fs::read(&second).unwrap().as_slice()).unwrap();
    let graph = proto.graph.unwrap();
    assert!(graph
        .node
        .iter()
        .all(|n| n.op_type.as_deref() != Some("Constant")));
    assert!(graph.initializer.iter().all(|t| t.raw_data.is_some()));
}

#[test]
fn old_ir_version_lists_initializers_as_inputs() {
    let mut m = Model::new(sample_graph());
    m.graph.opset = 8;
    m.info.ir_version = Some(3);
    let proto = ModelProto::decode(model_to_bytes(&m).unwrap().as_slice()).unwrap();
    assert_eq!(proto.ir_version, Some(3));
    assert_eq!(
        proto.graph.as_ref().unwrap().input.len(),
        1 + m.graph.initializers.len()
    );
    assert_eq!(
        load_model_bytes(&model_to_bytes(&m).unwrap(), None)
            .unwrap()
            .graph,
        m.graph
    );
    // A newer opset raises the IR version to one that may carry it.
    m.graph.opset = 21;
    let proto = ModelProto::decode(model_to_bytes(&m).unwrap().as_slice()).unwrap();
    assert_eq!(proto.ir_version, Some(10));
}

/// Writes `bytes` at `offset` of a file under `dir`, padded with junk before it.
fn write_data(path: &Path, offset: usize, bytes: &[u8]) {
    let mut all = vec![0xAB; offset];
    all.extend_from_slice(bytes);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, all).unwrap();
}

fn external(name: &str, dims: &[i64], entries: &[(&str, &str)]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(1),
        data_location: Some(DATA_LOCATION_EXTERNAL),
        external_data: entries
            .iter()
            .map(|(k, v)| StringStringEntryProto {
                key: Some(k.to_string()),
                value: Some(v.to_string()),
            })
            .collect(),
        ..TensorProto::default()
    }
}

fn le(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn external_data_inside_the_folder_is_read() {
    let dir = tempfile::tempdir().unwrap();
    write_data(
        &dir.path().join("data/w.bin"),
        12,
        &le(&[1., 2., 3., 4., 9., 8.]),
    );
    let w = external(
        "w",
        &[2, 2],
        &[
            ("location", "data/w.bin"),
            ("offset", "12"),
            ("length", "16"),
        ],
    );
    let mut m = matmul_model(w);
    // A Constant whose value is external too, and a second tensor right after the first.
    let c = external("", &[2], &[("location", "./data/w.bin"), ("offset", "28")]);
    let graph = m.graph.as_mut().unwrap();
    graph.node.insert(
        0,
        node("Constant", &[], &["c"], vec![tensor_attr("value", c)]),
    );
    graph.node.push(node("Add", &["y", "c"], &["z"], vec![]));
    graph.output[0] = value_info("z", 1, &[1, 2]);
    let path = dir.path().join("m.onnx");
    std::fs::write(&path, m.encode_to_vec()).unwrap();
    let g = load(&path).unwrap();
    assert_eq!(g.initializers["w"].as_f32().unwrap(), &[1., 2., 3., 4.]);
    assert_eq!(g.initializers["c"].as_f32().unwrap(), &[9., 8.]);
    // The same bytes, with the folder given explicitly.
    let g2 = load_bytes(&m.encode_to_vec(), Some(dir.path())).unwrap();
    assert_eq!(g, g2);
}

fn external_err(dir: &Path, entries: &[(&str, &str)]) -> OnnxError {
    let m = matmul_model(external("w", &[2, 2], entries));
    let path = dir.join("m.onnx");
    std::fs::write(&path, m.encode_to_vec()).unwrap();
    load(&path).unwrap_err()
}

#[test]
fn external_data_outside_the_folder_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let outside = root.path().join("secret.bin");
    write_data(&outside, 0, &le(&[1., 2., 3., 4.]));
    let model_dir = root.path().join("model");
    std::fs::create_dir(&model_dir).unwrap();

    let e = external_err(&model_dir, &[("location", "../secret.bin")]);
    assert!(
        matches!(problem(&e), Problem::ExternalLocation { why, .. } if why.contains("..")),
        "{e}"
    );
    let e = external_err(&model_dir, &[("location", "sub/../../secret.bin")]);
    assert!(
        matches!(problem(&e), Problem::ExternalLocation { .. }),
        "{e}"
    );

    let abs = outside.to_str().unwrap();
    let e = external_err(&model_dir, &[("location", abs)]);
    assert!(
        matches!(problem(&e), Problem::ExternalLocation { why, .. } if why.contains("absolute")),
        "{e}"
    );

    std::os::unix::fs::symlink(&outside, model_dir.join("link.bin")).unwrap();
    let e = external_err(&model_dir, &[("location", "link.bin")]);
    assert!(
        matches!(problem(&e), Problem::ExternalLocation { why, .. } if why.contains("outside")),
        "{e}"
    );
    std::os::unix::fs::symlink(root.path(), model_dir.join("up")).unwrap();
    let e = external_err(&model_dir, &[("location", "up/secret.bin")]);
    assert!(
        matches!(problem(&e), Problem::ExternalLocation { why, .. } if why.contains("outside")),
        "{e}"
    );
    assert!(e.to_string().contains("initializer `w`"), "{e}");
}

#[test]
fn external_ranges_are_checked_against_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_data(&dir.path().join("w.bin"), 0, &le(&[1., 2., 3., 4.]));
    let e = external_err(
        dir.path(),
        &[("location", "w.bin"), ("offset", "4"), ("length", "16")],
    );
    assert!(
        matches!(
            problem(&e),
            Problem::ExternalRange {
                offset: 4,
                length: 16,
                file_size: 16,
                ..
            }
        ),
        "{e}"
    );
    let e = external_err(
        dir.path(),
        &[
            ("location", "w.bin"),
            ("offset", "18446744073709551615"),
            ("length", "16"),
        ],
    );
    assert!(matches!(problem(&e), Problem::ExternalRange { .. }), "{e}");
    let e = external_err(dir.path(), &[("location", "w.bin"), ("length", "12")]);
    assert!(matches!(problem(&e), Problem::BadValue { .. }), "{e}");
    let e = external_err(dir.path(), &[("location", "w.bin"), ("offset", "-1")]);
    assert!(matches!(problem(&e), Problem::BadValue { .. }), "{e}");
    let e = external_err(dir.path(), &[("location", "missing.bin")]);
    assert!(matches!(problem(&e), Problem::ExternalIo { .. }), "{e}");
    let e = external_err(dir.path(), &[("offset", "0")]);
    assert!(matches!(problem(&e), Problem::Missing { .. }), "{e}");
    std::fs::create_dir(dir.path().join("d")).unwrap();
    let e = external_err(dir.path(), &[("location", "d")]);
    assert!(
        matches!(problem(&e), Problem::ExternalLocation { .. }),
        "{e}"
    );
}

#[test]
fn overlapping_external_ranges_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_data(&dir.path().join("w.bin"), 0, &le(&[1., 2., 3., 4., 5.]));
    let mut m = matmul_model(external("w", &[2, 2], &[("location", "w.bin")]));
    m.graph.as_mut().unwrap().initializer[0]
        .external_data
        .push(StringStringEntryProto {
            key: Some("length".into()),
            value: Some("16".into()),
        });
    m.graph.as_mut().unwrap().initializer.push(external(
        "v",
        &[1],
        &[("location", "w.bin"), ("offset", "12"), ("length", "4")],
    ));
    let e = load_err(&m, Some(dir.path()));
    assert!(
        matches!(
            problem(&e),
            Problem::ExternalOverlap {
                offset: 12,
                end: 16,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn external_data_without_a_folder_is_refused() {
    let m = matmul_model(external("w", &[2, 2], &[("location", "w.bin")]));
    let e = load_err(&m, None);
    assert!(
        matches!(problem(&e), Problem::ExternalLocation { .. }),
        "{e}"
    );
}

#[test]
fn io_errors_name_the_file() {
    let e = load("/nonexistent/quench/model.onnx").unwrap_err();
    assert!(matches!(e, OnnxError::Io { .. }));
    assert!(
        e.to_string()
            .starts_with("/nonexistent/quench/model.onnx: "),
        "{e}"
    );
}

#[test]
fn constant_with_string_or_mismatched_value_is_refused() {
    for (name, kind, attr) in [
        (
            "value_string",
            "a string",
            AttributeProto {
                r#type: Some(attribute_type::STRING),
                s: Some(b"hi".to_vec()),
                ..AttributeProto::default()
            },
        ),
        (
            "value_float",
            "ints",
            AttributeProto {
                r#type: Some(attribute_type::INTS),
                ints: vec![1; 100_000],
                ..AttributeProto::default()
            },
        ),
    ] {
        let attr = AttributeProto {
            name: Some(name.into()),
            ..attr
        };
        let m = model(
            vec![
                node("Constant", &[], &["c"], vec![attr]),
                node("Add", &["x", "c"], &["y"], vec![]),
            ],
            vec![],
            vec![value_info("x", 1, &[1])],
            vec![value_info("y", 1, &[1])],
        );
        let e = load_err(&m, None);
        let text = e.to_string();
        assert!(matches!(problem(&e), Problem::Unsupported { .. }), "{text}");
        assert!(
            text.contains("node `Constant_0`") && text.contains(kind),
            "{text}"
        );
        assert!(text.len() < 300, "the message stays short: {text}");
    }
}

#[test]
fn deeply_nested_unknown_groups_do_not_overflow_the_stack() {
    // Field 15 of ModelProto is unknown; 0x7b starts a group there. 100,000 nested starts must
    // hit the decoder's recursion limit, not the stack.
    let bytes = vec![0x7b; 100_000];
    assert!(matches!(
        load_bytes(&bytes, None),
        Err(OnnxError::Decode { .. })
    ));
}

#[test]
fn a_folder_is_not_a_model_file() {
    let dir = tempfile::tempdir().unwrap();
    let e = load(dir.path()).unwrap_err();
    assert!(matches!(e, OnnxError::Io { .. }), "{e}");
}
