//! Helpers to build graphs in code and run them for the engine tests.

use std::collections::BTreeMap;
use std::process::{Command, Output};

use quench::engine::ops::eval_node;
use quench::engine::Plan;
use quench::graph::{Attr, Dim, Graph, Node, ValueInfo};
use quench::tensor::{DataType, Tensor};

/// A node with the given attributes.
pub fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: Vec<(&str, Attr)>,
) -> Node {
    Node {
        name: name.into(),
        op_type: op.into(),
        domain: String::new(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: outputs.iter().map(|s| s.to_string()).collect(),
        attrs: attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
    }
}

/// Integer list attribute.
pub fn ints(v: &[i64]) -> Attr {
    Attr::Ints(v.to_vec())
}

/// A graph with f32 inputs (symbolic first dim), the given outputs, nodes and initializers.
pub fn graph(
    opset: i64,
    inputs: &[(&str, usize)],
    outputs: &[&str],
    nodes: Vec<Node>,
    inits: Vec<(&str, Tensor)>,
) -> Graph {
    Graph {
        name: "test".into(),
        opset,
        extra_opsets: BTreeMap::new(),
        inputs: inputs
            .iter()
            .map(|(n, rank)| ValueInfo {
                name: n.to_string(),
                dtype: DataType::F32,
                shape: Some((0..*rank).map(|i| Dim::Symbolic(format!("d{i}"))).collect()),
            })
            .collect(),
        outputs: outputs
            .iter()
            .map(|n| ValueInfo {
                name: n.to_string(),
                dtype: DataType::F32,
                shape: None,
            })
            .collect(),
        initializers: inits.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        nodes,
        metadata: BTreeMap::new(),
    }
}

/// Deterministic pseudo-random values in [-1, 1).
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The formula inputs the ONNX Runtime references were made with:
/// `(((i + start)·37) mod 101)/50 − 1`, then `·scale + offset`.
pub fn formula_from(n: usize, start: usize, scale: f32, offset: f32) -> Vec<f32> {
    (start..start + n)
        .map(|i| (((i * 37) % 101) as f32 / 50.0 - 1.0) * scale + offset)
        .collect()
}

/// f32 tensor.
pub fn t(shape: &[usize], data: Vec<f32>) -> Tensor {
    Tensor::from_f32(shape.to_vec(), data).unwrap()
}

/// i64 tensor.
pub fn ti(shape: &[usize], data: Vec<i64>) -> Tensor {
    Tensor::from_i64(shape.to_vec(), data).unwrap()
}

/// Plans and runs `g` on one thread.
pub fn run(g: &Graph, inputs: &[(&str, &Tensor)]) -> Vec<Tensor> {
    run_threads(g, inputs, 1)
}

/// Plans and runs `g` on `threads` threads.
pub fn run_threads(g: &Graph, inputs: &[(&str, &Tensor)], threads: usize) -> Vec<Tensor> {
    let shapes: Vec<(&str, Vec<usize>)> = inputs
        .iter()
        .map(|(n, t)| (*n, t.shape().to_vec()))
        .collect();
    let mut plan = Plan::new(g, &shapes, threads).unwrap();
    plan.run(inputs).unwrap()
}

/// Runs `g` node by node through `eval_node` with no passes, fusion or arena: the reference path.
pub fn interpret(g: &Graph, inputs: &[(&str, &Tensor)]) -> Vec<Tensor> {
    let mut vals: BTreeMap<String, Tensor> = g.initializers.clone();
    for (n, t) in inputs {
        vals.insert(n.to_string(), (*t).clone());
    }
    for node in &g.nodes {
        let ins: Vec<Option<&Tensor>> = node.inputs.iter().map(|i| vals.get(i)).collect();
        let outs = eval_node(node, g.opset, &ins).unwrap();
        for (name, v) in node.outputs.iter().zip(outs) {
            vals.insert(name.clone(), v);
        }
    }
    g.outputs.iter().map(|o| vals[&o.name].clone()).collect()
}

/// Runs `g` through the planned engine and through [`interpret`] and asserts that both give a
/// first output of `shape` equal to `want` within 1e-5: a reference value checks both paths.
pub fn expect_planned_and_interpreted(
    g: &Graph,
    inputs: &[(&str, &Tensor)],
    shape: &[usize],
    want: &[f32],
) {
    let got = run(g, inputs);
    assert_eq!(got[0].shape(), shape);
    assert_close(got[0].as_f32().unwrap(), want, 1e-5);
    let reference = interpret(g, inputs);
    assert_close(reference[0].as_f32().unwrap(), want, 1e-5);
}

/// Asserts two f32 slices agree within `tol` (absolute, scaled up for large values).
pub fn assert_close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "length differs");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "element {i}: got {g}, want {w} (tol {tol})"
        );
    }
}

/// The `quench` binary with `args`, run from the crate root (the bundled assets' paths are
/// relative to it); add environment variables or path arguments before running it with
/// [`succeeds`] or [`fails`].
pub fn quench_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quench"));
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

/// Runs `quench args…` from the crate root and asserts that it exits 0 (see [`succeeds`]).
pub fn quench(args: &[&str]) -> Output {
    succeeds(&mut quench_command(args))
}

/// Runs `quench args…` from the crate root and asserts that it fails (see [`fails`]).
pub fn quench_fails(args: &[&str]) -> Output {
    fails(&mut quench_command(args))
}

/// Runs `cmd` and asserts that it exits 0; otherwise the test fails showing the exit status,
/// stdout and stderr.
pub fn succeeds(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("the quench binary starts");
    assert!(out.status.success(), "{cmd:?} failed:\n{}", shown(&out));
    out
}

/// Runs `cmd` and asserts that it exits with an error; otherwise the test fails showing its
/// output. The caller checks the exit code and message it expects.
pub fn fails(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("the quench binary starts");
    assert!(
        !out.status.success(),
        "{cmd:?} succeeded but should fail:\n{}",
        shown(&out)
    );
    out
}

/// Exit status, stdout and stderr of a run, for assertion messages.
pub fn shown(o: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(o),
        stderr(o)
    )
}

/// A run's stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A run's stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
