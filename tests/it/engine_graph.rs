//! Engine and pass behaviour on graphs built in code: convolutions against a naive reference,
//! broadcasting, constant folding, shape-inference and unsupported-op errors, statistics and the
//! native runtime.

use crate::common::*;
use quench::engine::ops::eval_node;
use quench::engine::Plan;
use quench::graph::fold::fold_constants;
use quench::graph::shape::infer_shapes;
use quench::graph::simplify::remove_passthrough;
use quench::graph::stats::stats;
use quench::graph::{Attr, GraphError};
use quench::runtime::native::NativeRuntime;
use quench::runtime::{Runtime, RuntimeError};
use quench::tensor::Tensor;

/// Direct convolution: the definition, loop by loop.
#[allow(clippy::too_many_arguments)]
fn naive_conv(
    x: &[f32],
    xs: [usize; 4],
    w: &[f32],
    ws: [usize; 4],
    b: &[f32],
    group: usize,
    stride: [usize; 2],
    pads: [usize; 4],
    dil: [usize; 2],
) -> (Vec<f32>, [usize; 4]) {
    let [n, c, h, wd] = xs;
    let [co, cig, kh, kw] = ws;
    let oh = (h + pads[0] + pads[2] - dil[0] * (kh - 1) - 1) / stride[0] + 1;
    let ow = (wd + pads[1] + pads[3] - dil[1] * (kw - 1) - 1) / stride[1] + 1;
    let cog = co / group;
    let mut out = vec![0.0; n * co * oh * ow];
    for ni in 0..n {
        for o in 0..co {
            let g = o / cog;
            for y in 0..oh {
                for xx in 0..ow {
                    let mut acc = b.get(o).copied().unwrap_or(0.0);
                    for ci in 0..cig {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (y * stride[0] + ky * dil[0]) as isize - pads[0] as isize;
                                let ix = (xx * stride[1] + kx * dil[1]) as isize - pads[1] as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                    continue;
                                }
                                let cin = g * cig + ci;
                                acc += x[((ni * c + cin) * h + iy as usize) * wd + ix as usize]
                                    * w[((o * cig + ci) * kh + ky) * kw + kx];
                            }
                        }
                    }
                    out[((ni * co + o) * oh + y) * ow + xx] = acc;
                }
            }
        }
    }
    (out, [n, co, oh, ow])
}

/// Conv (+ optional activation node) against the naive reference on 1 and 2 threads.
#[allow(clippy::too_many_arguments)]
fn check_conv(
    xs: [usize; 4],
    co: usize,
    k: [usize; 2],
    group: usize,
    stride: [usize; 2],
    pads: [usize; 4],
    dil: [usize; 2],
    act: Option<&str>,
    seed: u64,
) {
    let ws = [co, xs[1] / group, k[0], k[1]];
    let x = values(xs.iter().product(), seed);
    let w = values(ws.iter().product(), seed + 1);
    let b = values(co, seed + 2);
    let (mut want, os) = naive_conv(&x, xs, &w, ws, &b, group, stride, pads, dil);
    let mut nodes = vec![node(
        "Conv",
        "conv",
        &["x", "w", "b"],
        &["c"],
        vec![
            ("group", Attr::Int(group as i64)),
            ("strides", ints(&[stride[0] as i64, stride[1] as i64])),
            ("pads", ints(&pads.map(|p| p as i64))),
            ("dilations", ints(&[dil[0] as i64, dil[1] as i64])),
        ],
    )];
    let mut inits = vec![("w", t(&ws, w)), ("b", t(&[co], b))];
    let out = match act {
        Some("Relu") => {
            nodes.push(node("Relu", "act", &["c"], &["y"], vec![]));
            want.iter_mut().for_each(|v| *v = v.max(0.0));
            "y"
        }
        Some("Clip") => {
            nodes.push(node("Clip", "act", &["c", "lo", "hi"], &["y"], vec![]));
            inits.push(("lo", t(&[], vec![-0.25])));
            inits.push(("hi", t(&[], vec![0.5])));
            want.iter_mut().for_each(|v| *v = v.clamp(-0.25, 0.5));
            "y"
        }
        _ => "c",
    };
    let g = graph(13, &[("x", 4)], &[out], nodes, inits);
    let xt = t(&xs, x);
    for threads in [1, 2] {
        let got = run_threads(&g, &[("x", &xt)], threads);
        assert_eq!(got[0].shape(), &os);
        assert_close(got[0].as_f32().unwrap(), &want, 1e-4);
    }
    if act.is_some() {
        // The activation was fused: one kernel launch.
        let plan = Plan::new(&g, &[("x", xs.to_vec())], 1).unwrap();
        assert_eq!(plan.step_count(), 1);
    }
}

#[test]
fn depthwise_conv_matches_naive_reference() {
    check_conv(
        [1, 8, 9, 7],
        8,
        [3, 3],
        8,
        [1, 1],
        [1, 1, 1, 1],
        [1, 1],
        None,
        1,
    );
    check_conv(
        [2, 5, 11, 10],
        5,
        [3, 3],
        5,
        [2, 2],
        [1, 1, 1, 1],
        [1, 1],
        Some("Relu"),
        2,
    );
    check_conv(
        [1, 6, 9, 13],
        6,
        [5, 5],
        6,
        [2, 3],
        [2, 1, 0, 2],
        [1, 1],
        Some("Clip"),
        3,
    );
    check_conv(
        [1, 4, 10, 10],
        4,
        [3, 3],
        4,
        [1, 1],
        [2, 2, 2, 2],
        [2, 2],
        None,
        4,
    );
    check_conv(
        [1, 3, 7, 8],
        6,
        [3, 1],
        3,
        [1, 2],
        [0, 0, 1, 0],
        [1, 1],
        None,
        5,
    );
    check_conv(
        [1, 2, 2, 3],
        2,
        [3, 3],
        2,
        [1, 1],
        [1, 1, 1, 1],
        [1, 1],
        None,
        6,
    );
}

#[test]
fn grouped_and_dense_conv_match_naive_reference() {
    check_conv(
        [1, 6, 8, 9],
        4,
        [3, 3],
        2,
        [1, 1],
        [1, 1, 1, 1],
        [1, 1],
        None,
        10,
    );
    check_conv(
        [2, 4, 9, 7],
        6,
        [2, 3],
        2,
        [2, 1],
        [0, 1, 1, 0],
        [2, 1],
        Some("Relu"),
        11,
    );
    check_conv(
        [1, 3, 13, 11],
        5,
        [3, 3],
        1,
        [3, 2],
        [1, 0, 2, 1],
        [1, 2],
        Some("Clip"),
        12,
    );
    check_conv(
        [2, 7, 5, 5],
        9,
        [1, 1],
        1,
        [1, 1],
        [0, 0, 0, 0],
        [1, 1],
        Some("Relu"),
        13,
    );
    check_conv(
        [1, 7, 6, 6],
        3,
        [1, 1],
        1,
        [2, 2],
        [0, 0, 0, 0],
        [1, 1],
        None,
        14,
    );
    check_conv(
        [1, 6, 6, 5],
        6,
        [3, 3],
        3,
        [1, 1],
        [1, 1, 1, 1],
        [1, 1],
        None,
        15,
    );
}

/// Numpy broadcasting by definition: index each operand with its own (stretched) coordinates.
fn naive_broadcast(
    a: &[f32],
    ash: &[usize],
    b: &[f32],
    bsh: &[usize],
    f: impl Fn(f32, f32) -> f32,
) -> (Vec<f32>, Vec<usize>) {
    let rank = ash.len().max(bsh.len());
    let pad = |s: &[usize]| -> Vec<usize> {
        std::iter::repeat_n(1, rank - s.len())
            .chain(s.iter().copied())
            .collect()
    };
    let (pa, pb) = (pad(ash), pad(bsh));
    let out: Vec<usize> = pa
        .iter()
        .zip(&pb)
        .map(|(&x, &y)| if x == 1 { y } else { x })
        .collect();
    let n: usize = out.iter().product();
    let index = |coords: &[usize], s: &[usize]| {
        coords
            .iter()
            .zip(s)
            .fold(0, |acc, (&c, &d)| acc * d + if d == 1 { 0 } else { c })
    };
    let mut res = Vec::with_capacity(n);
    for flat in 0..n {
        let mut coords = vec![0; rank];
        let mut r = flat;
        for d in (0..rank).rev() {
            coords[d] = r % out[d];
            r /= out[d];
        }
        res.push(f(a[index(&coords, &pa)], b[index(&coords, &pb)]));
    }
    (res, out)
}

#[test]
fn broadcasting_edge_cases() {
    let cases: &[(&[usize], &[usize])] = &[
        (&[2, 1, 3], &[4, 1]),
        (&[], &[2, 3]),
        (&[2, 3], &[]),
        (&[1], &[3, 1, 1]),
        (&[3, 1, 5], &[1, 4, 1]),
        (&[2, 3, 4, 5], &[3, 1, 5]),
        (&[1, 1, 1], &[1, 1]),
        (&[2, 1, 1, 3], &[1, 4, 5, 1]),
        (&[6], &[6]),
        (&[4, 0], &[1]),
    ];
    for (i, (ash, bsh)) in cases.iter().enumerate() {
        let a = values(ash.iter().product(), i as u64);
        let b = values(bsh.iter().product(), 100 + i as u64);
        for (op, f) in [
            ("Add", (|x, y| x + y) as fn(f32, f32) -> f32),
            ("Sub", |x, y| x - y),
            ("Mul", |x, y| x * y),
            ("Div", |x, y| x / y),
        ] {
            let (want, shape) = naive_broadcast(&a, ash, &b, bsh, f);
            let g = graph(
                13,
                &[("a", ash.len()), ("b", bsh.len())],
                &["y"],
                vec![node(op, "op", &["a", "b"], &["y"], vec![])],
                vec![],
            );
            let got = run(&g, &[("a", &t(ash, a.clone())), ("b", &t(bsh, b.clone()))]);
            assert_eq!(got[0].shape(), shape.as_slice(), "{op} {ash:?} {bsh:?}");
            assert_close(got[0].as_f32().unwrap(), &want, 1e-6);
        }
    }
    // Shapes that do not broadcast are refused at plan time, naming the node.
    let g = graph(
        13,
        &[("a", 2), ("b", 1)],
        &["y"],
        vec![node("Add", "bad_add", &["a", "b"], &["y"], vec![])],
        vec![],
    );
    let err = Plan::new(&g, &[("a", vec![2, 3]), ("b", vec![4])], 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad_add") && err.contains("[2, 3]") && err.contains("[4]"),
        "{err}"
    );
}

#[test]
fn integer_arithmetic_folds_with_the_same_kernels() {
    let n = node("Mul", "m", &["a", "b"], &["y"], vec![]);
    let a = ti(&[2, 1], vec![3, -4]);
    let b = ti(&[3], vec![1, 2, 0]);
    let y = eval_node(&n, 13, &[Some(&a), Some(&b)]).unwrap();
    assert_eq!(y[0], ti(&[2, 3], vec![3, 6, 0, -4, -8, 0]));
    // Integer division by zero yields 0 instead of a panic.
    let d = node("Div", "d", &["a", "b"], &["y"], vec![]);
    let y = eval_node(&d, 13, &[Some(&a), Some(&b)]).unwrap();
    assert_eq!(y[0], ti(&[2, 3], vec![3, 1, 0, -4, -2, 0]));
}

/// x → Shape → Gather(0) → Unsqueeze → Concat([-1]) → Cast → Reshape(x): flattens per batch.
fn shape_subgraph() -> quench::graph::Graph {
    graph(
        13,
        &[("x", 4)],
        &["y"],
        vec![
            node("Identity", "id", &["x"], &["xi"], vec![]),
            node("Shape", "shape", &["xi"], &["s"], vec![]),
            node(
                "Gather",
                "batch",
                &["s", "zero"],
                &["n"],
                vec![("axis", Attr::Int(0))],
            ),
            node("Unsqueeze", "unsq", &["n", "axes0"], &["n1"], vec![]),
            node(
                "Concat",
                "cat",
                &["n1", "minus1"],
                &["target"],
                vec![("axis", Attr::Int(0))],
            ),
            node(
                "Cast",
                "cast32",
                &["target"],
                &["t32"],
                vec![("to", Attr::Int(6))],
            ),
            node(
                "Cast",
                "cast64",
                &["t32"],
                &["t64"],
                vec![("to", Attr::Int(7))],
            ),
            node("Dropout", "drop", &["xi"], &["xd"], vec![]),
            node("Reshape", "reshape", &["xd", "t64"], &["r"], vec![]),
            node("Relu", "relu", &["r"], &["y"], vec![]),
        ],
        vec![
            ("zero", ti(&[], vec![0])),
            ("axes0", ti(&[1], vec![0])),
            ("minus1", ti(&[1], vec![-1])),
        ],
    )
}

#[test]
fn shape_subgraphs_fold_to_constants() {
    let mut g = shape_subgraph();
    assert_eq!(remove_passthrough(&mut g), 2);
    let folded = fold_constants(&mut g, &[("x", vec![3, 2, 2, 2])], &eval_node).unwrap();
    assert_eq!(folded, 6);
    let ops: Vec<&str> = g.nodes.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(ops, ["Reshape", "Relu"]);
    assert_eq!(g.initializers[&g.nodes[0].inputs[1]], ti(&[2], vec![3, -1]));
    // Only the folded target is still referenced.
    assert_eq!(g.initializers.len(), 1);
    let types = infer_shapes(&g, &[("x", vec![3, 2, 2, 2])]).unwrap();
    assert_eq!(types["y"].shape, vec![3, 8]);

    // The plan folds the same way for another batch size; Reshape aliases its input.
    let g = shape_subgraph();
    let x = t(&[2, 2, 2, 2], values(16, 7));
    let mut plan = Plan::new(&g, &[("x", vec![2, 2, 2, 2])], 1).unwrap();
    assert_eq!(plan.step_count(), 1);
    let y = plan.run(&[("x", &x)]).unwrap();
    assert_eq!(y[0].shape(), &[2, 8]);
    let want: Vec<f32> = x.as_f32().unwrap().iter().map(|v| v.max(0.0)).collect();
    assert_eq!(y[0].as_f32().unwrap(), want.as_slice());
}

#[test]
fn shape_inference_errors_name_node_and_mismatch() {
    let conv = graph(
        13,
        &[("x", 4)],
        &["y"],
        vec![node("Conv", "conv_7", &["x", "w"], &["y"], vec![])],
        vec![("w", t(&[4, 3, 3, 3], vec![0.0; 108]))],
    );
    let err = infer_shapes(&conv, &[("x", vec![1, 5, 8, 8])]).unwrap_err();
    assert!(
        matches!(&err, GraphError::Node { node, op, .. } if node == "conv_7" && op == "Conv"),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("input channels 5") && msg.contains("[4, 3, 3, 3]"),
        "{msg}"
    );

    let mm = graph(
        13,
        &[("a", 2), ("b", 2)],
        &["y"],
        vec![node("MatMul", "mm", &["a", "b"], &["y"], vec![])],
        vec![],
    );
    let msg = infer_shapes(&mm, &[("a", vec![2, 3]), ("b", vec![4, 5])])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("`mm`") && msg.contains("[2, 3]") && msg.contains("[4, 5]"),
        "{msg}"
    );

    let reshape = graph(
        13,
        &[("x", 2)],
        &["y"],
        vec![node("Reshape", "rs", &["x", "s"], &["y"], vec![])],
        vec![("s", ti(&[2], vec![4, -1]))],
    );
    let msg = infer_shapes(&reshape, &[("x", vec![3, 5])])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("`rs`") && msg.contains("[3, 5]") && msg.contains("[4, -1]"),
        "{msg}"
    );

    let pool = graph(
        13,
        &[("x", 4)],
        &["y"],
        vec![node(
            "MaxPool",
            "mp",
            &["x"],
            &["y"],
            vec![("kernel_shape", ints(&[5, 5]))],
        )],
        vec![],
    );
    let msg = infer_shapes(&pool, &[("x", vec![1, 1, 3, 3])])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("`mp`") && msg.contains("larger than the padded input"),
        "{msg}"
    );

    // A declared fixed dimension that disagrees with the given shape.
    let mut g = graph(
        13,
        &[("x", 2)],
        &["y"],
        vec![node("Relu", "r", &["x"], &["y"], vec![])],
        vec![],
    );
    g.inputs[0].shape = Some(vec![
        quench::graph::Dim::Symbolic("n".into()),
        quench::graph::Dim::Fixed(3),
    ]);
    let err = infer_shapes(&g, &[("x", vec![2, 4])]).unwrap_err();
    assert!(
        matches!(err, GraphError::Input { ref name, .. } if name == "x"),
        "{err}"
    );
}

#[test]
fn unsupported_op_is_an_error_naming_op_and_node() {
    let g = graph(
        13,
        &[("x", 2)],
        &["y"],
        vec![
            node("Relu", "r", &["x"], &["h"], vec![]),
            node("NonMaxSuppression", "nms_3", &["h"], &["y"], vec![]),
        ],
        vec![],
    );
    let err = Plan::new(&g, &[("x", vec![2, 2])], 1)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "node `nms_3`: operator `NonMaxSuppression` is not supported"
    );
    let mut g = graph(
        13,
        &[("x", 2)],
        &["y"],
        vec![node("Gelu", "g", &["x"], &["y"], vec![])],
        vec![],
    );
    g.nodes[0].domain = "com.microsoft".into();
    let err = Plan::new(&g, &[("x", vec![2, 2])], 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("com.microsoft::Gelu"), "{err}");
}

#[test]
fn stats_count_params_and_macs() {
    let g = graph(
        13,
        &[("x", 4)],
        &["y"],
        vec![
            node(
                "Conv",
                "conv",
                &["x", "w", "b"],
                &["c"],
                vec![("pads", ints(&[1, 1, 1, 1])), ("group", Attr::Int(2))],
            ),
            node("Relu", "relu", &["c"], &["r"], vec![]),
            node("Flatten", "flat", &["r"], &["f"], vec![]),
            node(
                "Gemm",
                "fc",
                &["f", "wf"],
                &["y"],
                vec![("transB", Attr::Int(1))],
            ),
        ],
        vec![
            ("w", t(&[4, 1, 3, 3], vec![0.0; 36])),
            ("b", t(&[4], vec![0.0; 4])),
            ("wf", t(&[10, 4 * 25], vec![0.0; 1000])),
        ],
    );
    let types = infer_shapes(&g, &[("x", vec![2, 2, 5, 5])]).unwrap();
    let s = stats(&g, &types).unwrap();
    // Conv: N·Cout·Hout·Wout·(Cin/groups)·kh·kw = 2·4·5·5·1·9.
    assert_eq!(s.nodes[0].macs, 2 * 4 * 25 * 9);
    assert_eq!(s.nodes[0].params, 40);
    assert_eq!(s.nodes[0].param_bytes, 160);
    assert_eq!(s.nodes[0].output_shapes, vec![vec![2, 4, 5, 5]]);
    assert_eq!(s.nodes[1].macs, 0);
    assert_eq!(s.nodes[1].elements, 200);
    // Gemm: M·N·K = 2·10·100.
    assert_eq!(s.nodes[3].macs, 2000);
    assert_eq!(s.total_macs, 1800 + 2000);
    assert_eq!(s.total_params, 1040);
    assert_eq!(s.total_param_bytes, 4160);
}

#[test]
fn native_runtime_replans_per_batch_and_reports() {
    let g = graph(
        13,
        &[("x", 2)],
        &["y"],
        vec![
            node("MatMul", "mm", &["x", "w"], &["h"], vec![]),
            node("Relu", "r", &["h"], &["y"], vec![]),
        ],
        vec![("w", t(&[3, 2], vec![1.0, -1.0, 2.0, 0.5, -1.0, 1.0]))],
    );
    let mut rt = NativeRuntime::new(g.clone(), 1).unwrap();
    assert_eq!(rt.name(), "native");
    assert_eq!(rt.threads(), 1);
    assert!(rt.kernel_names().is_empty());
    let x1 = t(&[1, 3], vec![1.0, 2.0, 3.0]);
    let y = rt.run(&[("x", &x1)]).unwrap();
    assert_eq!(y[0], t(&[1, 2], vec![2.0, 3.0]));
    assert_eq!(
        rt.kernel_names(),
        vec![quench::kernels::f32::gemm_kernel_name()]
    );
    // K = 3 rows of one 16-column panel.
    assert_eq!(rt.packed_weight_bytes(), 3 * 16 * 4);
    let x2 = t(&[2, 3], vec![1.0, 2.0, 3.0, -1.0, -2.0, -3.0]);
    let y = rt.run(&[("x", &x2)]).unwrap();
    assert_eq!(y[0], t(&[2, 2], vec![2.0, 3.0, 0.0, 0.0]));
    rt.run(&[("x", &x1)]).unwrap();
    assert_eq!(rt.cached_plans(), 2);
    assert!(rt.arena_bytes() > 0);

    let err = rt.run(&[("z", &x1)]).unwrap_err();
    assert!(
        matches!(err, RuntimeError::BadInput { ref name, .. } if name == "x"),
        "{err}"
    );
    let wrong = Tensor::from_i64(vec![1, 3], vec![1, 2, 3]).unwrap();
    let err = rt.run(&[("x", &wrong)]).unwrap_err();
    assert!(matches!(err, RuntimeError::BadInput { .. }), "{err}");
    let err = rt.run(&[("x", &t(&[1, 4], vec![0.0; 4]))]).unwrap_err();
    assert!(err.to_string().contains("`mm`"), "{err}");
    assert!(NativeRuntime::new(graph(13, &[], &[], vec![], vec![]), 0).is_err());
    // Done, it hands over the graph it ran.
    assert_eq!(Box::new(rt).into_graph(), Some(g));
}

/// A cell run on the native engine hands over the graph it parsed (`quench eval` reads the
/// file's quantization from it instead of parsing the file again); on ONNX Runtime, which reads
/// the file itself, there is none.
#[test]
fn a_native_cell_hands_over_the_graph_it_ran() {
    use quench::measure::latency::Budget;
    use quench::runtime::RuntimeKind;
    use quench::sweep::cell::{quick_latency, run_cell, CellConfig};
    use quench::sweep::record::{Method, Precision, Status};
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let manifest =
        quench::eval::Manifest::load(&root.join("assets/models/mnist-mlp.toml")).unwrap();
    let prepared = quench::sweep::model::PreparedModel::load(manifest, Some(20)).unwrap();
    let file = prepared.manifest.model.file.clone();
    let subject = prepared.subject(&file, Precision::Fp32, Method::None);
    let machine = quench::measure::machine::MachineInfo::collect(&root, 1, None);
    let mut latency = quick_latency();
    latency.budget = Budget::Runs(3);
    for runtime in [RuntimeKind::Native, RuntimeKind::Ort] {
        let config = CellConfig {
            runtime,
            threads: 1,
            batch: 1,
            eval_batch: 20,
            latency: latency.clone(),
            power: quench::measure::power::PowerConfig::new("/"),
        };
        let outcome = run_cell(&subject, &config, None, &machine);
        assert_eq!(outcome.record.status, Status::Ok, "{runtime}");
        match runtime {
            RuntimeKind::Native => {
                assert_eq!(outcome.graph, Some(quench::onnx::load(&file).unwrap()))
            }
            RuntimeKind::Ort => assert!(outcome.graph.is_none()),
        }
    }
}

#[test]
fn graph_output_can_be_an_input_alias_or_a_constant() {
    let g = graph(
        13,
        &[("x", 2)],
        &["x", "flat", "k"],
        vec![
            node(
                "Flatten",
                "f",
                &["x"],
                &["flat"],
                vec![("axis", Attr::Int(0))],
            ),
            node("Identity", "id", &["c"], &["k"], vec![]),
        ],
        vec![("c", t(&[2], vec![5.0, 6.0]))],
    );
    let x = t(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]);
    let y = run(&g, &[("x", &x)]);
    assert_eq!(y[0], x);
    assert_eq!(y[1], t(&[1, 4], vec![1.0, 2.0, 3.0, 4.0]));
    assert_eq!(y[2], t(&[2], vec![5.0, 6.0]));
}

#[test]
fn hardswish_pattern_fuses_and_matches_unfused() {
    let g = graph(
        13,
        &[("x", 2)],
        &["y"],
        vec![
            node("Add", "add", &["x", "three"], &["a"], vec![]),
            node("Clip", "clip", &["a", "zero", "six"], &["c"], vec![]),
            node("Mul", "mul", &["x", "c"], &["m"], vec![]),
            node("Div", "div", &["m", "six"], &["y"], vec![]),
        ],
        vec![
            ("three", t(&[], vec![3.0])),
            ("zero", t(&[], vec![0.0])),
            ("six", t(&[], vec![6.0])),
        ],
    );
    let mut fused = g.clone();
    assert_eq!(
        quench::graph::simplify::fuse_hardswish(&mut fused).unwrap(),
        1
    );
    assert_eq!(fused.nodes.len(), 1);
    assert_eq!(fused.nodes[0].op_type, "HardSwish");
    assert!(fused.initializers.is_empty());
    let x = t(&[3, 5], formula_from(15, 0, 5.0, 0.0));
    let want = interpret(&g, &[("x", &x)]);
    let got = run(&g, &[("x", &x)]);
    assert_close(got[0].as_f32().unwrap(), want[0].as_f32().unwrap(), 1e-6);
    // A Clip with other bounds is left alone.
    let mut other = g.clone();
    other.initializers.insert("six".into(), t(&[], vec![5.0]));
    assert_eq!(
        quench::graph::simplify::fuse_hardswish(&mut other).unwrap(),
        0
    );
}

#[test]
fn per_channel_add_folds_into_conv_bias() {
    let g = graph(
        13,
        &[("x", 4)],
        &["y"],
        vec![
            node("Conv", "conv", &["x", "w"], &["c"], vec![]),
            node("Add", "add", &["c", "bias"], &["a"], vec![]),
            node("Relu", "relu", &["a"], &["y"], vec![]),
        ],
        vec![
            ("w", t(&[3, 2, 1, 1], values(6, 1))),
            ("bias", t(&[1, 3, 1, 1], vec![0.5, -0.5, 0.25])),
        ],
    );
    let x = t(&[1, 2, 3, 3], values(18, 2));
    let plan = Plan::new(&g, &[("x", vec![1, 2, 3, 3])], 1).unwrap();
    assert_eq!(plan.step_count(), 1);
    let want = interpret(&g, &[("x", &x)]);
    let got = run(&g, &[("x", &x)]);
    assert_close(got[0].as_f32().unwrap(), want[0].as_f32().unwrap(), 1e-6);
    // A spatially varying addend is not a bias.
    let mut g2 = g.clone();
    g2.initializers
        .insert("bias".into(), t(&[1, 1, 3, 3], values(9, 3)));
    assert_eq!(
        quench::graph::simplify::fold_conv_bias_add(&mut g2).unwrap(),
        0
    );
}

#[test]
fn stats_work_on_graphs_with_shape_subgraphs_after_folding() {
    let g = shape_subgraph();
    assert!(infer_shapes(&g, &[("x", vec![2, 2, 2, 2])]).is_err());
    let (folded, types) =
        quench::engine::fold_and_infer(&g, 2, &[("x".into(), vec![2, 2, 2, 2])]).unwrap();
    let s = stats(&folded, &types).unwrap();
    let ops: Vec<&str> = s.nodes.iter().map(|n| n.op.as_str()).collect();
    assert_eq!(ops, ["Identity", "Dropout", "Reshape", "Relu"]);
    assert_eq!(s.nodes[3].output_shapes, vec![vec![2, 8]]);
    assert_eq!(s.total_macs, 0);
}

#[test]
fn taps_hand_intermediate_values_to_the_observer_as_computed() {
    // MatMul → Relu → MatMul: tapping the MatMul output before its Relu keeps it from being
    // fused away; the Flatten alias of the Relu output and the graph input are observed too.
    let nodes = vec![
        node("MatMul", "a", &["x", "w1"], &["h"], vec![]),
        node("Relu", "r", &["h"], &["h2"], vec![]),
        node("Flatten", "f", &["h2"], &["h3"], vec![]),
        node("MatMul", "b", &["h3", "w2"], &["y"], vec![]),
    ];
    let w1 = formula_from(6, 0, 1.0, 0.0);
    let w2 = formula_from(6, 3, 0.2, -0.5);
    let inits = vec![("w1", t(&[3, 2], w1.clone())), ("w2", t(&[2, 3], w2))];
    let g = graph(13, &[("x", 2)], &["y"], nodes, inits);
    let x = t(&[2, 3], formula_from(6, 1, 0.5, -1.0));
    let want_y = run(&g, &[("x", &x)]);
    let taps: Vec<String> = ["h", "h3", "x", "y"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let pool = quench::engine::plan::thread_pool(1).unwrap();
    let mut plan = Plan::with_taps(&g, &[("x", vec![2, 3])], pool, &taps).unwrap();
    let mut seen: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let y = plan
        .run_observed(&[("x", &x)], &mut |n, s, v| {
            seen.push((n.to_string(), s.to_vec(), v.to_vec()))
        })
        .unwrap();
    assert_eq!(y[0].as_f32().unwrap(), want_y[0].as_f32().unwrap());
    let names: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, ["x", "h", "h3", "y"]);
    let xs = x.as_f32().unwrap();
    let h: Vec<f32> = (0..4)
        .map(|ij| {
            let (i, j) = (ij / 2, ij % 2);
            (0..3).map(|k| xs[i * 3 + k] * w1[k * 2 + j]).sum()
        })
        .collect();
    assert_eq!(seen[1].1, [2, 2]);
    assert_close(&seen[1].2, &h, 1e-5);
    assert!(
        h.iter().any(|&v| v < 0.0),
        "the test needs a negative pre-Relu value"
    );
    let relu: Vec<f32> = h.iter().map(|v| v.max(0.0)).collect();
    assert_close(&seen[2].2, &relu, 1e-5);
    assert_eq!(seen[3].2, y[0].as_f32().unwrap());
    // Plain runs observe nothing and give the same output; unknown taps are refused by name.
    assert_eq!(plan.run(&[("x", &x)]).unwrap()[0], y[0]);
    let pool = quench::engine::plan::thread_pool(1).unwrap();
    let err = Plan::with_taps(&g, &[("x", vec![2, 3])], pool, &["nope".into()]).unwrap_err();
    assert!(err.to_string().contains("`nope`"), "{err}");
}
