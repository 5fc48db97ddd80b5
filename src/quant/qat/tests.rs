//! Gradient checks of every op against finite differences, STE behaviour inside the program,
//! and small end-to-end runs: a separable toy problem, label-free distillation, the bit
//! schedule, and a couple of steps of the MNIST CNN architecture on real calibration images.

use std::collections::BTreeMap;
use std::path::Path;

use crate::eval::manifest::InputSpec;
use crate::eval::{Dataset, Manifest};
use crate::graph::{Attr, Dim, Graph, Node, ValueInfo};
use crate::measure::rng::SplitMix64;
use crate::quant::qat::compile::compile;
use crate::quant::qat::fake_quant::ActQuant;
use crate::quant::qat::*;
use crate::tensor::{DataType, Tensor};

/// Builds small graphs with random initializers.
pub(crate) struct Builder {
    g: Graph,
    rng: SplitMix64,
}

fn uniform(rng: &mut SplitMix64) -> f32 {
    (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
}

impl Builder {
    pub(crate) fn new(input: &str, sample_shape: &[usize], seed: u64) -> Builder {
        let mut shape = vec![Dim::Symbolic("N".into())];
        shape.extend(sample_shape.iter().map(|&d| Dim::Fixed(d)));
        Builder {
            g: Graph {
                name: "test".into(),
                opset: 13,
                extra_opsets: BTreeMap::new(),
                inputs: vec![ValueInfo {
                    name: input.into(),
                    dtype: DataType::F32,
                    shape: Some(shape),
                }],
                outputs: Vec::new(),
                initializers: BTreeMap::new(),
                nodes: Vec::new(),
                metadata: BTreeMap::new(),
            },
            rng: SplitMix64::new(seed),
        }
    }

    /// A random initializer, uniform in `±scale`.
    pub(crate) fn init(&mut self, name: &str, shape: &[usize], scale: f32) -> String {
        let n = shape.iter().product();
        let data = (0..n).map(|_| uniform(&mut self.rng) * scale).collect();
        self.g
            .initializers
            .insert(name.into(), Tensor::from_f32(shape.to_vec(), data).unwrap());
        name.into()
    }

    pub(crate) fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        output: &str,
        attrs: &[(&str, Attr)],
    ) -> &mut Self {
        self.g.nodes.push(Node {
            name: format!("{op}_{}", self.g.nodes.len()),
            op_type: op.into(),
            domain: String::new(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![output.into()],
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        });
        self
    }

    pub(crate) fn finish(mut self, output: &str) -> Graph {
        self.g.outputs.push(ValueInfo {
            name: output.into(),
            dtype: DataType::F32,
            shape: None,
        });
        self.g
    }
}

fn ints(v: &[i64]) -> Attr {
    Attr::Ints(v.to_vec())
}

/// The mnist-cnn architecture (ccexam MNISTNet) with random weights.
pub(crate) fn mnist_cnn(seed: u64) -> Graph {
    let mut b = Builder::new("input", &[1, 28, 28], seed);
    let w1 = b.init("conv1.weight", &[32, 1, 3, 3], 0.5);
    let b1 = b.init("conv1.bias", &[32], 0.1);
    let w2 = b.init("conv2.weight", &[64, 32, 3, 3], 0.08);
    let b2 = b.init("conv2.bias", &[64], 0.1);
    let w3 = b.init("fc1.weight", &[128, 3136], 0.03);
    let b3 = b.init("fc1.bias", &[128], 0.1);
    let w4 = b.init("fc2.weight", &[10, 128], 0.15);
    let b4 = b.init("fc2.bias", &[10], 0.1);
    let pad = [
        ("pads", ints(&[1, 1, 1, 1])),
        ("kernel_shape", ints(&[3, 3])),
    ];
    let pool = [("kernel_shape", ints(&[2, 2])), ("strides", ints(&[2, 2]))];
    b.node("Conv", &["input", &w1, &b1], "c1", &pad)
        .node("Relu", &["c1"], "r1", &[])
        .node("MaxPool", &["r1"], "p1", &pool)
        .node("Conv", &["p1", &w2, &b2], "c2", &pad)
        .node("Relu", &["c2"], "r2", &[])
        .node("MaxPool", &["r2"], "p2", &pool)
        .node("Flatten", &["p2"], "f", &[("axis", Attr::Int(1))])
        .node("Gemm", &["f", &w3, &b3], "h", &[("transB", Attr::Int(1))])
        .node("Relu", &["h"], "hr", &[])
        .node(
            "Gemm",
            &["hr", &w4, &b4],
            "logits",
            &[("transB", Attr::Int(1))],
        );
    b.finish("logits")
}

/// Compares the backward of `graph` (input `x`, output `y`, FP32) with central differences of
/// `sum(y · r)` for every input element and every parameter element.
fn gradcheck(graph: &Graph, shape: &[usize], batch: usize, x: Vec<f32>) {
    let mut p = compile(graph, "x", shape, "y").unwrap();
    p.track_input_grad();
    let mut rng = SplitMix64::new(99);
    let out_len = batch * p.output_len();
    let r: Vec<f32> = (0..out_len).map(|_| uniform(&mut rng)).collect();
    let tape = p.forward(x.clone(), batch, false).unwrap();
    let (pg, xg) = p.backward(&tape, r.clone()).unwrap();
    let xg = xg.unwrap();
    let loss = |p: &mut crate::quant::qat::program::Program, x: Vec<f32>| -> f64 {
        let t = p.forward(x, batch, false).unwrap();
        t.output(p)
            .iter()
            .zip(&r)
            .map(|(&a, &b)| f64::from(a) * f64::from(b))
            .sum()
    };
    let eps = 1e-2f32;
    let close = |a: f32, n: f64, what: &str| {
        assert!(
            (f64::from(a) - n).abs() <= 1e-2 + 1e-2 * n.abs(),
            "{}: {what}: analytic {a} vs numeric {n}",
            graph.nodes[0].op_type
        );
    };
    for i in 0..x.len() {
        let (mut a, mut b) = (x.clone(), x.clone());
        a[i] += eps;
        b[i] -= eps;
        let n = (loss(&mut p, a) - loss(&mut p, b)) / f64::from(2.0 * eps);
        close(xg[i], n, &format!("input[{i}]"));
    }
    for (pi, grad) in pg.iter().enumerate() {
        for (i, &g) in grad.iter().enumerate() {
            let keep = p.params[pi].data[i];
            p.params[pi].data[i] = keep + eps;
            let up = loss(&mut p, x.clone());
            p.params[pi].data[i] = keep - eps;
            let down = loss(&mut p, x.clone());
            p.params[pi].data[i] = keep;
            let name = format!("{}[{i}]", p.params[pi].name);
            close(g, (up - down) / f64::from(2.0 * eps), &name);
        }
    }
}

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    (0..n).map(|_| uniform(&mut rng)).collect()
}

/// Values at least 0.1 away from 0 (no ReLU kink within a finite-difference step).
fn away_from_zero(n: usize, seed: u64) -> Vec<f32> {
    random(n, seed)
        .into_iter()
        .map(|v| v.signum() * (0.1 + 0.9 * v.abs()))
        .collect()
}

/// Distinct values 0.05 apart in random order (no max-pool ties within a step).
fn distinct(n: usize, seed: u64) -> Vec<f32> {
    let mut v: Vec<f32> = (0..n).map(|i| i as f32 * 0.05 - 1.0).collect();
    let mut rng = SplitMix64::new(seed);
    for i in (1..n).rev() {
        v.swap(i, rng.below(i + 1));
    }
    v
}

#[test]
fn conv_backward_matches_finite_differences() {
    let mut b = Builder::new("x", &[2, 5, 6], 1);
    let w = b.init("w", &[3, 2, 3, 2], 0.5);
    let bias = b.init("b", &[3], 0.5);
    let attrs = [
        ("strides", ints(&[2, 1])),
        ("pads", ints(&[1, 0, 1, 1])),
        ("dilations", ints(&[1, 2])),
    ];
    b.node("Conv", &["x", &w, &bias], "c", &attrs)
        .node("Flatten", &["c"], "y", &[]);
    gradcheck(&b.finish("y"), &[2, 5, 6], 2, random(2 * 60, 2));
}

#[test]
fn dense_backward_matches_finite_differences() {
    for (op, trans_b, bias) in [("Gemm", 1, true), ("Gemm", 0, false), ("MatMul", 0, false)] {
        let mut b = Builder::new("x", &[4], 3);
        let wshape = if trans_b == 1 { [3, 4] } else { [4, 3] };
        let w = b.init("w", &wshape, 0.5);
        let c = b.init("c", &[3], 0.5);
        let inputs: Vec<&str> = if bias {
            vec!["x", &w, &c]
        } else {
            vec!["x", &w]
        };
        let attrs = if op == "Gemm" {
            vec![("transB", Attr::Int(trans_b))]
        } else {
            vec![]
        };
        b.node(op, &inputs, "y", &attrs);
        gradcheck(&b.finish("y"), &[4], 3, random(12, 4));
    }
}

#[test]
fn elementwise_backward_matches_finite_differences() {
    let mut b = Builder::new("x", &[6], 5);
    b.node("Relu", &["x"], "y", &[]);
    gradcheck(&b.finish("y"), &[6], 2, away_from_zero(12, 6));

    let mut b = Builder::new("x", &[6], 5);
    b.node("Sigmoid", &["x"], "y", &[]);
    gradcheck(&b.finish("y"), &[6], 2, random(12, 7));

    // Add of a value to itself through two paths: gradients from both consumers add up.
    let mut b = Builder::new("x", &[6], 5);
    b.node("Sigmoid", &["x"], "s", &[])
        .node("Add", &["s", "x"], "y", &[]);
    gradcheck(&b.finish("y"), &[6], 2, random(12, 8));

    // Add of a constant broadcast over the trailing dimensions.
    let mut b = Builder::new("x", &[3, 2, 2], 5);
    let p = b.init("p", &[1, 2, 2], 0.5);
    b.node("Add", &[&p, "x"], "a", &[])
        .node("Flatten", &["a"], "y", &[]);
    gradcheck(&b.finish("y"), &[3, 2, 2], 2, random(24, 9));
}

#[test]
fn max_pool_backward_matches_finite_differences() {
    for (k, s, pad) in [(2, 2, 0), (3, 2, 1)] {
        let mut b = Builder::new("x", &[2, 5, 5], 5);
        let attrs = [
            ("kernel_shape", ints(&[k, k])),
            ("strides", ints(&[s, s])),
            ("pads", ints(&[pad; 4])),
        ];
        b.node("MaxPool", &["x"], "m", &attrs)
            .node("Flatten", &["m"], "y", &[]);
        gradcheck(&b.finish("y"), &[2, 5, 5], 2, distinct(100, 10));
    }
}

#[test]
fn grouped_and_depthwise_conv_backward_matches_finite_differences() {
    for (groups, out) in [(2, 4), (4, 4), (4, 8)] {
        let mut b = Builder::new("x", &[4, 5, 5], 11);
        let w = b.init("w", &[out, 4 / groups, 3, 3], 0.5);
        let bias = b.init("b", &[out], 0.5);
        let attrs = [
            ("group", Attr::Int(groups as i64)),
            ("pads", ints(&[1, 1, 1, 1])),
            ("strides", ints(&[2, 1])),
        ];
        b.node("Conv", &["x", &w, &bias], "c", &attrs)
            .node("Flatten", &["c"], "y", &[]);
        gradcheck(&b.finish("y"), &[4, 5, 5], 2, random(2 * 100, 12));
    }
}

#[test]
fn mobile_block_ops_backward_matches_finite_differences() {
    // The ops of a MobileNetV3 block: hard-swish spelled out (Add 3, Clip 0..6, Mul, Div 6),
    // squeeze-and-excite (GlobalAveragePool, HardSigmoid, a broadcast Mul), a Reshape.
    let scalar = |b: &mut Builder, name: &str, v: f32| {
        b.g.initializers
            .insert(name.into(), Tensor::from_f32(vec![], vec![v]).unwrap());
        name.to_string()
    };
    let mut b = Builder::new("x", &[2, 3, 3], 13);
    let (three, zero, six) = (
        scalar(&mut b, "three", 3.0),
        scalar(&mut b, "zero", 0.0),
        scalar(&mut b, "six", 6.0),
    );
    let shape = "shape";
    b.g.initializers.insert(
        shape.into(),
        Tensor::from_i64(vec![2], vec![0, -1]).unwrap(),
    );
    b.node("Add", &["x", &three], "a3", &[])
        .node("Clip", &["a3", &zero, &six], "c", &[])
        .node("Mul", &["x", "c"], "m", &[])
        .node("Div", &["m", &six], "hs", &[])
        .node("GlobalAveragePool", &["hs"], "gap", &[])
        .node(
            "HardSigmoid",
            &["gap"],
            "gate",
            &[("alpha", Attr::Float(0.3)), ("beta", Attr::Float(0.4))],
        )
        .node("Mul", &["hs", "gate"], "se", &[])
        .node("HardSwish", &["se"], "h2", &[])
        .node("Reshape", &["h2", shape], "y", &[]);
    // Inputs away from the kinks of clip and hard-swish (at -3 and 3).
    let x: Vec<f32> = random(36, 14).iter().map(|v| v * 2.5).collect();
    gradcheck(&b.finish("y"), &[2, 3, 3], 2, x);
}

#[test]
fn a_final_softmax_is_trained_through_as_scores() {
    let mut b = Builder::new("x", &[4], 5);
    let w = b.init("w", &[4, 3], 0.5);
    b.node("MatMul", &["x", &w], "z", &[])
        .node("Softmax", &["z"], "p", &[("axis", Attr::Int(1))])
        .node("Identity", &["p"], "y", &[]);
    let g = b.finish("y");
    let mut p = compile(&g, "x", &[4], "y").unwrap();
    let x = random(8, 15);
    let tape = p.forward(x.clone(), 2, false).unwrap();
    let mut z = vec![0.0; 6];
    crate::quant::qat::linalg::matmul(
        2,
        4,
        3,
        &x,
        &p.params[0].data,
        crate::quant::qat::linalg::BLayout::KByN,
        None,
        &mut z,
    );
    assert_eq!(tape.output(&p), &z[..], "the scores, not the probabilities");
    gradcheck(&g, &[4], 2, x);
}

#[test]
fn unsupported_nodes_are_named() {
    let mut b = Builder::new("x", &[2, 4, 4], 5);
    let w = b.init("w", &[4, 1, 3, 3], 0.5);
    b.node("Conv", &["x", &w], "c", &[("group", Attr::Int(3))])
        .node("Flatten", &["c"], "y", &[]);
    let err = compile(&b.finish("y"), "x", &[2, 4, 4], "y").unwrap_err();
    assert!(err.to_string().contains("3 groups"), "{err}");
    // Padding that would overflow, or ask for a huge output, is refused before allocating.
    for pads in [[i64::MAX / 2; 4], [1 << 20; 4]] {
        let mut b = Builder::new("x", &[1, 4, 4], 5);
        let w = b.init("w", &[1, 1, 3, 3], 0.5);
        b.node("Conv", &["x", &w], "c", &[("pads", ints(&pads))])
            .node("Flatten", &["c"], "y", &[]);
        let err = compile(&b.finish("y"), "x", &[1, 4, 4], "y").unwrap_err();
        assert!(err.to_string().contains("Conv_0"), "{err}");
    }
    // A Softmax whose result feeds more layers is not the scores' last step.
    let mut b = Builder::new("x", &[4], 5);
    b.node("Softmax", &["x"], "s", &[])
        .node("Relu", &["s"], "y", &[]);
    let err = compile(&b.finish("y"), "x", &[4], "y").unwrap_err();
    assert!(err.to_string().contains("node `Softmax_0`"), "{err}");
    let mut b = Builder::new("x", &[4], 5);
    b.node("Tanh", &["x"], "y", &[]);
    let err = compile(&b.finish("y"), "x", &[4], "y").unwrap_err();
    assert!(
        err.to_string().contains("`Tanh` has no training op"),
        "{err}"
    );
    // A Reshape that fixes the batch size cannot train on batches.
    let mut b = Builder::new("x", &[4], 5);
    b.g.initializers
        .insert("s".into(), Tensor::from_i64(vec![2], vec![1, 4]).unwrap());
    b.node("Reshape", &["x", "s"], "y", &[]);
    let err = compile(&b.finish("y"), "x", &[4], "y").unwrap_err();
    assert!(err.to_string().contains("batch dimension"), "{err}");
}

#[test]
fn fake_quant_forward_and_ste_inside_the_program() {
    let mut b = Builder::new("x", &[3], 11);
    b.init("w", &[2, 3], 1.0);
    b.g.initializers.insert(
        "w".into(),
        Tensor::from_f32(vec![2, 3], vec![0.3, -1.5, 0.9, 0.2, 0.4, -0.1]).unwrap(),
    );
    b.node("Gemm", &["x", "w"], "y", &[("transB", Attr::Int(1))]);
    let mut p = compile(&b.finish("y"), "x", &[3], "y").unwrap();
    p.track_input_grad();
    p.bits = Some(WeightBits::Binary);
    p.ranges[p.input] = Some((-1.0, 1.0));
    let x = vec![0.5, 2.0, -0.25];
    let tape = p.forward(x.clone(), 1, false).unwrap();
    // Binary weights: row 0 α = 0.9, row 1 α = 0.7/3; activations on the u8 grid of [-1, 1].
    let q = ActQuant::from_range(-1.0, 1.0);
    let xq: Vec<f32> = x.iter().map(|&v| q.apply(v)).collect();
    assert_eq!(
        xq[1],
        (255.0 - q.zero_point) * q.scale,
        "2.0 clamps to the top code"
    );
    let a1 = 0.7f32 / 3.0;
    let want = [0.9 * (xq[0] - xq[1] + xq[2]), a1 * (xq[0] + xq[1] - xq[2])];
    let y = tape.output(&p);
    for (a, b) in y.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{y:?} vs {want:?}");
    }
    let (pg, xg) = p.backward(&tape, vec![1.0, 1.0]).unwrap();
    let xg = xg.unwrap();
    // Input STE: x[1] = 2 lies outside the range, so no gradient; the others pass.
    assert_eq!(xg[1], 0.0);
    assert!((xg[0] - (0.9 + a1)).abs() < 1e-6 && (xg[2] - (0.9 - a1)).abs() < 1e-6);
    // Weight STE: dL/dw = x_q, except |w| = 1.5 > 1 which the binary STE clips.
    assert_eq!(pg[0], vec![xq[0], 0.0, xq[2], xq[0], xq[1], xq[2]]);
}

fn spec(name: &str, shape: &[usize]) -> InputSpec {
    InputSpec {
        name: name.into(),
        sample_shape: shape.to_vec(),
        scale: 1.0,
        mean: vec![0.0],
        std: vec![1.0],
        replicate_channels: false,
    }
}

/// `n` points in the plane, labelled by the side of the line x0 + 0.5·x1 = 0.
fn toy_data(n: usize, labelled: bool) -> Dataset {
    let pts = random(2 * n, 21);
    let labels: Vec<i64> = pts
        .chunks(2)
        .map(|p| i64::from(p[0] + 0.5 * p[1] > 0.0))
        .collect();
    let samples = Tensor::from_f32(vec![n, 2], pts).unwrap();
    let labels = Tensor::from_i64(vec![n], labels).unwrap();
    Dataset::from_tensors(
        samples,
        Path::new("toy"),
        labelled.then_some((labels, Path::new("toy-labels"))),
        &spec("x", &[2]),
        None,
    )
    .unwrap()
}

fn mlp(classes: usize, out_scale: f32, seed: u64) -> Graph {
    let mut b = Builder::new("x", &[2], seed);
    let w1 = b.init("w1", &[16, 2], 1.0);
    let b1 = b.init("b1", &[16], 0.2);
    let w2 = b.init("w2", &[16, classes], out_scale);
    let b2 = b.init("b2", &[classes], 0.1);
    b.node("Gemm", &["x", &w1, &b1], "h", &[("transB", Attr::Int(1))])
        .node("Relu", &["h"], "r", &[])
        .node("MatMul", &["r", &w2], "m", &[])
        .node("Add", &["m", &b2], "y", &[]);
    b.finish("y")
}

#[test]
fn a_tiny_int4_model_learns_a_separable_problem() {
    let data = toy_data(400, true);
    let graph = mlp(2, 0.5, 31);
    let before = fp32_accuracy(&graph, &data, 64).unwrap().fraction();
    let config = QatConfig {
        epochs: 15,
        batch_size: 32,
        learning_rate: 0.02,
        bits: BitSchedule::constant(WeightBits::Int4),
        ..QatConfig::default()
    };
    let mut epochs = 0;
    let result = train(&graph, &data, &config, |e| {
        if matches!(e, QatEvent::Epoch { .. }) {
            epochs += 1
        }
    })
    .unwrap();
    assert_eq!(epochs, 15);
    let after = result.evaluate(&data, 64).unwrap();
    assert!(after.fraction() >= 0.95, "{before} -> {after:?}");
    assert_eq!(result.weights.len(), 2);
    assert_eq!(result.weights["Gemm_0"].axis, 0);
    assert_eq!(result.weights["MatMul_2"].axis, 1);
    assert_eq!(result.weights["MatMul_2"].scales.len(), 2);
    assert!(result.activation_ranges.contains_key("x"));
    assert!(result.activation_ranges.contains_key("r"));
    assert_ne!(result.graph.initializers["w1"], graph.initializers["w1"]);
}

#[test]
fn distillation_without_labels_lowers_its_loss() {
    let data = toy_data(256, false);
    let teacher = mlp(3, 4.0, 41);
    let mut config = QatConfig {
        epochs: 10,
        batch_size: 32,
        learning_rate: 0.01,
        bits: BitSchedule::constant(WeightBits::Binary),
        ..QatConfig::default()
    };
    let err = train(&teacher, &data, &config, |_| {}).unwrap_err();
    assert!(
        matches!(
            err,
            QatError::Config {
                field: "distill",
                ..
            }
        ),
        "{err}"
    );
    config.distill = Some(Distillation {
        temperature: 2.0,
        weight: 1.0,
    });
    let r = train(&teacher, &data, &config, |_| {}).unwrap();
    let mean = |s: &[StepRecord]| s.iter().map(|r| r.loss).sum::<f32>() / s.len() as f32;
    let (first, last) = (mean(&r.history[..8]), mean(&r.history[72..]));
    assert!(last < 0.5 * first, "loss {first} -> {last}");
    assert!(r
        .history
        .iter()
        .all(|s| s.accuracy.is_none() && s.agreement.is_some()));
}

#[test]
fn bit_schedule_switches_on_time() {
    let data = toy_data(300, true);
    let config = QatConfig {
        epochs: 3,
        batch_size: 30,
        bits: BitSchedule::gradual(&[WeightBits::Int8, WeightBits::Int4, WeightBits::Binary])
            .unwrap(),
        ..QatConfig::default()
    };
    let mut switches = Vec::new();
    let r = train(&mlp(2, 0.5, 51), &data, &config, |e| {
        if let QatEvent::BitsChanged { step, bits } = e {
            switches.push((step, bits));
        }
    })
    .unwrap();
    assert_eq!(
        switches,
        vec![
            (0, WeightBits::Int8),
            (10, WeightBits::Int4),
            (20, WeightBits::Binary)
        ]
    );
    assert_eq!(r.history.len(), 30);
    assert_eq!(r.history[9].bits, WeightBits::Int8);
    assert_eq!(r.history[19].bits, WeightBits::Int4);
    assert_eq!(r.bits, WeightBits::Binary);
    assert!(r.weights.values().all(|w| w.bits == WeightBits::Binary));
    // Stopping early keeps the schedule of the full run.
    let short = QatConfig {
        max_steps: Some(12),
        ..config.clone()
    };
    let r = train(&mlp(2, 0.5, 51), &data, &short, |_| {}).unwrap();
    assert_eq!(r.history.len(), 12);
    assert_eq!(r.bits, WeightBits::Int4);
    assert!(BitSchedule::new(vec![(0.5, WeightBits::Int8)]).is_err());
    assert!(BitSchedule::new(vec![(0.0, WeightBits::Int8), (0.0, WeightBits::Int4)]).is_err());
}

#[test]
fn mnist_cnn_architecture_trains_on_calibration_images() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = Manifest::load(&root.join("assets/models/mnist-cnn.toml")).unwrap();
    let calib = manifest.data.calibration.as_ref().unwrap();
    let data = Dataset::load(calib, &manifest.input, Some(128)).unwrap();
    let graph = mnist_cnn(61);
    let config = QatConfig {
        batch_size: 64,
        bits: BitSchedule::constant(WeightBits::Binary),
        distill: Some(Distillation {
            temperature: 3.0,
            weight: 0.5,
        }),
        ..QatConfig::default()
    };
    let mut events = Vec::new();
    let r = train(&graph, &data, &config, |e| events.push(e)).unwrap();
    assert_eq!(r.history.len(), 2);
    assert!(r
        .history
        .iter()
        .all(|s| s.loss.is_finite() && s.accuracy.is_some()));
    assert!(matches!(
        events.first(),
        Some(QatEvent::Started {
            total_steps: 2,
            parameters: 421_642,
            ..
        })
    ));
    assert!(matches!(
        events.last(),
        Some(QatEvent::Finished { steps: 2, .. })
    ));
    let channels: Vec<usize> = r.weights.values().map(|w| w.scales.len()).collect();
    assert_eq!(channels, vec![32, 64, 128, 10]);
    for v in ["input", "p1", "f", "hr"] {
        let (lo, hi) = r.activation_ranges[v];
        assert!(lo <= hi, "{v}: {lo} {hi}");
    }
    let acc = r.evaluate(&data, 50).unwrap();
    assert_eq!(acc.total, 128);

    // Saved and loaded through ONNX, the result evaluates the same.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qat.onnx");
    r.save(&path).unwrap();
    let back = QatResult::load(&path).unwrap();
    assert_eq!(back.weights, r.weights);
    assert_eq!(back.activation_ranges, r.activation_ranges);
    assert_eq!(back.history, r.history);
    assert_eq!(back.graph.initializers, r.graph.initializers);
    assert_eq!(back.evaluate(&data, 50).unwrap(), acc);
    let err = QatResult::load(&root.join("assets/models/mnist-cnn.onnx")).unwrap_err();
    assert!(
        err.to_string().contains("no `quench.qat` metadata"),
        "{err}"
    );
}
