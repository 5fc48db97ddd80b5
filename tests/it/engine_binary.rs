//! Binary layers with binary activations (`Sign` → Conv/Gemm/MatMul with `±α` weights) on the
//! XNOR-popcount kernel, against the plain f32 path of the same graph (kept by tapping the
//! `Sign` outputs, which leaves them unfused): equal up to f32 summation order.

use crate::common::*;
use quench::engine::Plan;
use quench::graph::{Attr, Graph};
use quench::tensor::Tensor;

/// `±α_j` weights, `n` channels of `k` values, row-major; α from 0.05 up.
fn binary_weights(n: usize, k: usize, seed: u64) -> Vec<f32> {
    let signs = values(n * k, seed);
    (0..n * k)
        .map(|i| {
            let a = 0.05 + 0.01 * (i / k) as f32;
            if signs[i] < 0.0 {
                -a
            } else {
                a
            }
        })
        .collect()
}

/// Inputs in [-1, 1) with about a third exact zeros (`Sign(0) = 0` must be honoured), −0.0
/// among them.
fn inputs_with_zeros(n: usize, seed: u64) -> Vec<f32> {
    values(n, seed)
        .into_iter()
        .enumerate()
        .map(|(i, v)| match i % 6 {
            0 => 0.0,
            3 => -0.0,
            _ => v,
        })
        .collect()
}

/// Runs `g` fused and unfused (every `Sign` output tapped) and compares the outputs; returns
/// the fused plan's kernel names.
fn fused_matches_f32(g: &Graph, x: &Tensor) -> String {
    let shapes = [("x", x.shape().to_vec())];
    let mut fused = Plan::new(g, &shapes, 1).unwrap();
    let taps: Vec<String> = g
        .nodes
        .iter()
        .filter(|n| n.op_type == "Sign")
        .map(|n| n.outputs[0].clone())
        .collect();
    let pool = quench::engine::plan::thread_pool(1).unwrap();
    let mut plain = Plan::with_taps(g, &shapes, pool, &taps).unwrap();
    let plain_names = plain.kernel_names().join(", ");
    assert!(!plain_names.contains("b1-"), "{plain_names}");
    let a = fused.run(&[("x", x)]).unwrap();
    let b = plain.run(&[("x", x)]).unwrap();
    assert_eq!(a[0].shape(), b[0].shape());
    assert_close(a[0].as_f32().unwrap(), b[0].as_f32().unwrap(), 1e-5);
    assert!(a[0].as_f32().unwrap().iter().any(|&v| v != 0.0));
    fused.kernel_names().join(", ")
}

/// Sign → Conv (pads, strides, a K = 3·3·5 = 45 that is no whole word, bias) → Relu, and a
/// 70-channel Conv whose patch rows straddle words, batch 2.
#[test]
fn sign_conv_runs_on_xnor_popcount() {
    for (c, h, w, oc, kernel, strides, pads) in [
        (
            5usize,
            9usize,
            8usize,
            6usize,
            [3usize, 3usize],
            [1i64, 2i64],
            [1i64, 0, 2, 1],
        ),
        (70, 5, 6, 9, [2, 2], [1, 1], [0, 1, 1, 0]),
    ] {
        let k = c * kernel[0] * kernel[1];
        let g = graph(
            13,
            &[("x", 4)],
            &["y"],
            vec![
                node("Sign", "sign", &["x"], &["s"], vec![]),
                node(
                    "Conv",
                    "conv",
                    &["s", "w", "b"],
                    &["c"],
                    vec![
                        ("kernel_shape", ints(&[kernel[0] as i64, kernel[1] as i64])),
                        ("strides", ints(&strides)),
                        ("pads", ints(&pads)),
                    ],
                ),
                node("Relu", "relu", &["c"], &["y"], vec![]),
            ],
            vec![
                (
                    "w",
                    t(&[oc, c, kernel[0], kernel[1]], binary_weights(oc, k, 3)),
                ),
                ("b", t(&[oc], values(oc, 4))),
            ],
        );
        let x = t(&[2, c, h, w], inputs_with_zeros(2 * c * h * w, 5));
        let names = fused_matches_f32(&g, &x);
        assert!(
            names.contains("b1-xnor-popcount") && names.contains("bit patches"),
            "{names}"
        );
    }
}

/// Sign → Gemm (transB 0 and 1, bias `[1, N]`, K = 67 and 130) and Sign → MatMul on 3-D input,
/// two readers sharing one Sign.
#[test]
fn sign_gemm_and_matmul_run_on_xnor_popcount() {
    for (trans_b, k) in [(1i64, 67usize), (0, 130)] {
        let n = 11;
        let w = binary_weights(n, k, 7);
        // Gemm B is [K, N] without transB: transpose the row-major N×K values.
        let (w_shape, w_vals) = if trans_b == 1 {
            (vec![n, k], w.clone())
        } else {
            (
                vec![k, n],
                (0..k * n).map(|i| w[(i % n) * k + i / n]).collect(),
            )
        };
        let g = graph(
            13,
            &[("x", 2)],
            &["y", "z"],
            vec![
                node("Sign", "sign", &["x"], &["s"], vec![]),
                node(
                    "Gemm",
                    "gemm",
                    &["s", "w", "b"],
                    &["y"],
                    vec![("transB", Attr::Int(trans_b))],
                ),
                node(
                    "Gemm",
                    "gemm2",
                    &["s", "w"],
                    &["z"],
                    vec![("transB", Attr::Int(trans_b))],
                ),
            ],
            vec![("w", t(&w_shape, w_vals)), ("b", t(&[1, n], values(n, 8)))],
        );
        let x = t(&[3, k], inputs_with_zeros(3 * k, 9));
        let names = fused_matches_f32(&g, &x);
        assert!(names.contains("b1-xnor-popcount"), "{names}");
        assert!(!names.contains("f32-elementwise"), "Sign left: {names}");
    }
    let (k, n) = (100, 5);
    let w = binary_weights(n, k, 1);
    let kn: Vec<f32> = (0..k * n).map(|i| w[(i % n) * k + i / n]).collect();
    let g = graph(
        13,
        &[("x", 3)],
        &["y"],
        vec![
            node("Sign", "sign", &["x"], &["s"], vec![]),
            node("MatMul", "mm", &["s", "w"], &["y"], vec![]),
        ],
        vec![("w", t(&[k, n], kn))],
    );
    let x = t(&[2, 3, k], inputs_with_zeros(6 * k, 2));
    assert!(fused_matches_f32(&g, &x).contains("b1-xnor-popcount"));
}

/// Weights that are not `±α` per channel keep the f32 path (with ONNX Sign semantics).
#[test]
fn sign_before_non_binary_weights_stays_f32() {
    let g = graph(
        13,
        &[("x", 2)],
        &["y"],
        vec![
            node("Sign", "sign", &["x"], &["s"], vec![]),
            node(
                "Gemm",
                "gemm",
                &["s", "w"],
                &["y"],
                vec![("transB", Attr::Int(1))],
            ),
        ],
        vec![("w", t(&[2, 3], vec![0.5, -0.5, 0.25, 1.0, 1.0, -1.0]))],
    );
    let x = t(&[1, 3], vec![-2.0, 0.0, 3.0]);
    let mut plan = Plan::new(&g, &[("x", vec![1, 3])], 1).unwrap();
    assert!(!plan.kernel_names().join(",").contains("b1-"));
    let y = plan.run(&[("x", &x)]).unwrap();
    // sign = [-1, 0, 1]: row 0 → -0.5 + 0.25, row 1 → -1 - 1.
    assert_eq!(y[0].as_f32().unwrap(), &[-0.25, -2.0]);
}
