//! A small CNN built in code: BN folding, fusion and the arena against the node-by-node reference.

use crate::common::*;
use quench::engine::Plan;
use quench::graph::fold::fold_constants;
use quench::graph::simplify::fold_batchnorm;
use quench::graph::Attr;

fn small_cnn() -> quench::graph::Graph {
    let c = 4;
    graph(
        13,
        &[("x", 4)],
        &["y"],
        vec![
            node(
                "Conv",
                "conv1",
                &["x", "w1", "b1"],
                &["c1"],
                vec![("pads", ints(&[1, 1, 1, 1]))],
            ),
            node(
                "BatchNormalization",
                "bn1",
                &["c1", "g", "be", "mu", "var"],
                &["n1"],
                vec![("epsilon", Attr::Float(1e-3))],
            ),
            node("Relu", "relu1", &["n1"], &["r1"], vec![]),
            node(
                "MaxPool",
                "pool",
                &["r1"],
                &["p1"],
                vec![("kernel_shape", ints(&[2, 2])), ("strides", ints(&[2, 2]))],
            ),
            node("Flatten", "flat", &["p1"], &["f"], vec![]),
            node(
                "Gemm",
                "fc",
                &["f", "wf", "bf"],
                &["y"],
                vec![("transB", Attr::Int(1))],
            ),
        ],
        vec![
            ("w1", t(&[c, 3, 3, 3], values(c * 27, 1))),
            ("b1", t(&[c], values(c, 2))),
            (
                "g",
                t(&[c], values(c, 3).iter().map(|v| 1.0 + 0.5 * v).collect()),
            ),
            ("be", t(&[c], values(c, 4))),
            ("mu", t(&[c], values(c, 5))),
            (
                "var",
                t(&[c], values(c, 6).iter().map(|v| 0.5 + v.abs()).collect()),
            ),
            ("wf", t(&[10, c * 16], values(10 * c * 16, 7))),
            ("bf", t(&[10], values(10, 8))),
        ],
    )
}

#[test]
fn bn_folded_plan_matches_unfolded_reference() {
    let g = small_cnn();
    let x = t(&[2, 3, 8, 8], values(2 * 3 * 64, 9));
    let got = run(&g, &[("x", &x)]);
    let want = interpret(&g, &[("x", &x)]);
    assert_eq!(got[0].shape(), &[2, 10]);
    assert_close(got[0].as_f32().unwrap(), want[0].as_f32().unwrap(), 1e-5);
    let two = run_threads(&g, &[("x", &x)], 2);
    assert_close(two[0].as_f32().unwrap(), want[0].as_f32().unwrap(), 1e-5);
}

#[test]
fn batchnorm_folds_into_conv() {
    let mut g = small_cnn();
    fold_constants(
        &mut g,
        &[("x", vec![1, 3, 8, 8])],
        &quench::engine::ops::eval_node,
    )
    .unwrap();
    assert_eq!(fold_batchnorm(&mut g).unwrap(), 1);
    assert!(g.nodes.iter().all(|n| n.op_type != "BatchNormalization"));
    assert_eq!(g.nodes[0].outputs[0], "n1");
    // The old weights are no longer referenced and were pruned.
    assert!(!g.initializers.contains_key("w1") && !g.initializers.contains_key("g"));
}

#[test]
fn plan_reports_memory_and_kernels_and_reuses_arena() {
    let g = small_cnn();
    let x = t(&[1, 3, 8, 8], values(3 * 64, 10));
    let mut plan = Plan::new(&g, &[("x", vec![1, 3, 8, 8])], 1).unwrap();
    // conv(+bn+relu fused) → maxpool → gemm: three kernel launches, Flatten aliases.
    assert_eq!(plan.step_count(), 3);
    // Conv weights row-major, 4 channels × (27 taps + the folded bias); fc weights (64 K rows)
    // in one 16-column panel of 64-byte rows.
    assert_eq!(plan.packed_weight_bytes(), (4 * 28 + 64 * 16) * 4);
    assert!(plan
        .kernel_names()
        .contains(&quench::kernels::f32::gemm_kernel_name()));
    // Conv output (256 floats) and pool output (64) are live together; gemm output (10, padded
    // to 16) reuses the conv region. im2col scratch: the patch matrix in 16-column panels (4
    // panels × 28 K rows × 16, plus 16 floats of alignment slack), written straight from the
    // input with no row buffer.
    assert_eq!(plan.arena_bytes(), (256 + 64 + 4 * 28 * 16 + 16) * 4);
    let a = plan.run(&[("x", &x)]).unwrap();
    let b = plan.run(&[("x", &x)]).unwrap();
    assert_eq!(a, b);
}
