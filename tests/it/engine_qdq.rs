//! QDQ models on the native engine: QuantizeLinear/DequantizeLinear semantics (round half to
//! even, saturation, u8/s8, per-axis, zero points) against hand values and ONNX Runtime, bad
//! parameters refused at plan time with the node named, and the exported INT8 MNIST models run
//! natively (fused into integer layers) against ORT on the same model: top-1 agreement and
//! per-layer outputs.
//!
//! The accuracy checks use the first `QUENCH_QDQ_SAMPLES` test images (default 500); the full
//! split: `QUENCH_QDQ_SAMPLES=10000 cargo test --release --test it engine_qdq`.

use std::path::{Path, PathBuf};

use crate::common::*;
use quench::engine::Plan;
use quench::eval::evaluate::{evaluate, output_index};
use quench::eval::{metrics, Dataset, Manifest};
use quench::graph::{Attr, Graph};
use quench::quant::pipeline::calibrate;
use quench::quant::probe::expose;
use quench::quant::scheme::{ActQuant, ActType, BinaryActs, Precision};
use quench::quant::{quantize, Calibration, Scheme};
use quench::runtime::native::NativeRuntime;
use quench::runtime::ort::{OrtOptions, OrtRuntime};
use quench::runtime::Runtime;
use quench::tensor::{DataType, Tensor, TensorData};

fn ort(g: &Graph) -> OrtRuntime {
    let bytes = quench::onnx::to_bytes(g).unwrap();
    let options = OrtOptions {
        spin: false,
        ..OrtOptions::new(1)
    };
    OrtRuntime::from_bytes(&bytes, &options).unwrap()
}

/// `x → Q(scale, zp; axis 1) → q`, `q → DQ → y`: outputs the integers and the round trip.
fn qdq_graph(scale: Vec<f32>, zp: Tensor) -> Graph {
    let qtype = zp.dtype();
    let n = scale.len();
    let mut g = graph(
        13,
        &[("x", 2)],
        &["q", "y"],
        vec![
            node(
                "QuantizeLinear",
                "quant",
                &["x", "s", "z"],
                &["q"],
                vec![("axis", Attr::Int(1))],
            ),
            node(
                "DequantizeLinear",
                "dequant",
                &["q", "s", "z"],
                &["y"],
                vec![("axis", Attr::Int(1))],
            ),
        ],
        vec![("s", t(&[n], scale)), ("z", zp)],
    );
    g.outputs[0].dtype = qtype;
    g
}

fn ints(t: &Tensor) -> Vec<i32> {
    match t.data() {
        TensorData::U8(v) => v.iter().map(|&x| i32::from(x)).collect(),
        TensorData::I8(v) => v.iter().map(|&x| i32::from(x)).collect(),
        other => panic!("not 8-bit: {other:?}"),
    }
}

#[test]
fn quantize_dequantize_follow_onnx_per_axis_u8_and_s8() {
    // Ties round to even, both ends saturate, each column has its own scale and zero point.
    let x = t(&[3, 2], vec![0.5, 0.75, 1.5, -0.25, 300.0, -300.0]);
    let cases: Vec<(Tensor, Vec<i32>)> = vec![
        (
            Tensor::new(vec![2], TensorData::U8(vec![0, 128])).unwrap(),
            vec![0, 131, 2, 127, 255, 0],
        ),
        (
            Tensor::new(vec![2], TensorData::I8(vec![0, -3])).unwrap(),
            vec![0, 0, 2, -4, 127, -128],
        ),
    ];
    for (zp, want) in cases {
        let g = qdq_graph(vec![1.0, 0.25], zp.clone());
        let mut plan = Plan::new(&g, &[("x", vec![3, 2])], 1).unwrap();
        let got = plan.run(&[("x", &x)]).unwrap();
        assert_eq!(got[0].dtype(), zp.dtype());
        assert_eq!(ints(&got[0]), want, "zero point {zp:?}");
        let z = ints(&zp);
        let deq: Vec<f32> = want
            .iter()
            .enumerate()
            .map(|(i, &q)| (q - z[i % 2]) as f32 * [1.0, 0.25][i % 2])
            .collect();
        assert_eq!(got[1].as_f32().unwrap(), deq.as_slice());
        let reference = ort(&g).run(&[("x", &x)]).unwrap();
        assert_eq!(ints(&reference[0]), want, "ORT, zero point {zp:?}");
        assert_eq!(reference[1].as_f32().unwrap(), deq.as_slice());
    }
}

#[test]
fn per_tensor_quantize_dequantize_follow_onnx_on_long_runs() {
    // One scale: the per-tensor loops (vectorized, with a scalar tail) over ties at every odd
    // step, both saturation ends and a length that is no multiple of a vector.
    let xs: Vec<f32> = (-300..=300).map(|k| k as f32 * 0.25).collect();
    let x = t(&[xs.len(), 1], xs.clone());
    for zp in [
        Tensor::new(vec![1], TensorData::U8(vec![128])).unwrap(),
        Tensor::new(vec![1], TensorData::I8(vec![-3])).unwrap(),
    ] {
        let z = ints(&zp)[0];
        let (lo, hi) = if zp.dtype() == DataType::U8 {
            (0, 255)
        } else {
            (-128, 127)
        };
        let want: Vec<i32> = xs
            .iter()
            .map(|&v| ((v / 0.5).round_ties_even() as i32 + z).clamp(lo, hi))
            .collect();
        let g = qdq_graph(vec![0.5], zp.clone());
        let mut plan = Plan::new(&g, &[("x", vec![xs.len(), 1])], 1).unwrap();
        let got = plan.run(&[("x", &x)]).unwrap();
        assert_eq!(ints(&got[0]), want, "zero point {zp:?}");
        let deq: Vec<f32> = want.iter().map(|&q| (q - z) as f32 * 0.5).collect();
        assert_eq!(got[1].as_f32().unwrap(), deq.as_slice());
        let reference = ort(&g).run(&[("x", &x)]).unwrap();
        assert_eq!(ints(&reference[0]), want, "ORT, zero point {zp:?}");
    }
}

#[test]
fn a_bad_scale_or_zero_point_fails_at_plan_time_naming_the_node() {
    let u8zp = || Tensor::new(vec![2], TensorData::U8(vec![0, 0])).unwrap();
    for (scale, what) in [
        (vec![1.0, 0.0], "scale[1] = 0"),
        (vec![f32::NAN, 1.0], "scale[0] = NaN"),
        (vec![1.0, f32::INFINITY], "scale[1] = inf"),
    ] {
        let g = qdq_graph(scale, u8zp());
        let err = Plan::new(&g, &[("x", vec![3, 2])], 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`quant`") && err.contains(what), "{err}");
    }
    let mut g = qdq_graph(vec![1.0, 1.0], u8zp());
    g.initializers.insert(
        "z".into(),
        Tensor::new(vec![3], TensorData::U8(vec![0; 3])).unwrap(),
    );
    let err = Plan::new(&g, &[("x", vec![3, 2])], 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`quant`") && err.contains("3 zero points"),
        "{err}"
    );
}

fn sample_limit() -> usize {
    std::env::var("QUENCH_QDQ_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500)
}

fn manifest(model: &str) -> Manifest {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Manifest::load(&root.join(format!("assets/models/{model}.toml"))).unwrap()
}

/// The model exported with `scheme`, calibrated on 200 calibration images.
fn exported(m: &Manifest, scheme: &Scheme) -> Graph {
    let graph = quench::onnx::load(Path::new(&m.model.file)).unwrap();
    let split = m.data.calibration.as_ref().unwrap();
    let data = Dataset::load(split, &m.input, Some(200)).unwrap();
    let ranges = calibrate(&graph, scheme, &data, 200).unwrap();
    quantize(&graph, scheme, &ranges).unwrap()
}

fn int8(per_channel: bool, acts: ActType) -> Scheme {
    let mut scheme = Scheme::int8_static(per_channel, Calibration::MinMax);
    if let Precision::Int8 { activations, .. } = &mut scheme.default {
        activations.dtype = acts;
    }
    scheme
}

/// Native and ORT on the same exported model: top-1 agreement over the test images, the plan
/// runs the layers on the integer kernels, and every dequantized activation agrees on a few
/// images: never by more than two quantization steps, and at most 5% of values one step off
/// (integer requantization and ORT's f32 path round a few ties differently; binary layers, with
/// their large accumulators, see the most).
fn check(model: &str, scheme: &Scheme) {
    let m = manifest(model);
    let q = exported(&m, scheme);
    let test = Dataset::load(&m.data.test, &m.input, Some(sample_limit())).unwrap();
    let mut native = NativeRuntime::new(q.clone(), 1).unwrap();
    let mut reference = ort(&q);
    let out = output_index(&m.output, reference.output_names()).unwrap();
    let a = evaluate(&mut reference, &test, 100, out).unwrap();
    let b = evaluate(&mut native, &test, 100, out).unwrap();
    let agreement = metrics::agreement(&a.outputs, &b.outputs).unwrap();
    eprintln!(
        "{model} {}: {} images, ORT {:?}, native {:?}, agreement {agreement}",
        scheme.to_json(),
        test.len(),
        a.accuracy,
        b.accuracy
    );
    assert!(agreement >= 0.995, "{model}: agreement {agreement}");

    let input = test.batch(0..8).unwrap();
    let shape = input.shape().to_vec();
    let plan = Plan::new(&q, &[(test.input_name(), shape.clone())], 1).unwrap();
    let names = plan.kernel_names().join(", ");
    assert!(names.contains("i8-gemm"), "not fused: {names}");
    assert!(!names.contains("f32-gemm"), "f32 layers left: {names}");
    assert!(
        plan.kernel_names()[0].contains("i8-"),
        "the first name is not a kernel doing the layers' work: {names}"
    );

    // Every activation DequantizeLinear output, exposed on both runtimes.
    let acts: Vec<(String, f32)> = q
        .nodes
        .iter()
        .filter(|n| n.op_type == "DequantizeLinear" && !q.initializers.contains_key(&n.inputs[0]))
        .map(|n| {
            (
                n.outputs[0].clone(),
                q.initializers[&n.inputs[1]].as_f32().unwrap()[0],
            )
        })
        .collect();
    let names: Vec<String> = acts.iter().map(|a| a.0.clone()).collect();
    let probe = expose(&q, &names).unwrap();
    let want = ort(&probe).run(&[(test.input_name(), &input)]).unwrap();
    let mut plan = Plan::new(&probe, &[(test.input_name(), shape)], 1).unwrap();
    let got = plan.run(&[(test.input_name(), &input)]).unwrap();
    for (name, scale) in &acts {
        let i = probe.outputs.iter().position(|o| &o.name == name).unwrap();
        let (w, g) = (want[i].as_f32().unwrap(), got[i].as_f32().unwrap());
        let steps: Vec<f32> = w
            .iter()
            .zip(g)
            .map(|(a, b)| (a - b).abs() / scale)
            .collect();
        let off = steps.iter().filter(|&&s| s > 0.5).count();
        let worst = steps.iter().fold(0.0f32, |a, &b| a.max(b));
        assert!(
            worst <= 2.01 && off * 20 <= steps.len(),
            "{model} {name}: {off} of {} values differ, worst by {worst} steps",
            steps.len()
        );
    }
}

#[test]
fn mnist_cnn_int8_per_channel_u8_native_agrees_with_ort() {
    check("mnist-cnn", &int8(true, ActType::U8));
}

#[test]
fn mnist_cnn_int8_per_tensor_u8_native_agrees_with_ort() {
    check("mnist-cnn", &int8(false, ActType::U8));
}

#[test]
fn mnist_cnn_int8_per_channel_s8_native_agrees_with_ort() {
    check("mnist-cnn", &int8(true, ActType::S8));
}

#[test]
fn mnist_mlp_int8_native_agrees_with_ort() {
    check("mnist-mlp", &int8(true, ActType::U8));
    check("mnist-mlp", &int8(false, ActType::S8));
}

#[test]
fn mnist_cnn_binary_weights_run_on_the_int8_kernels_and_agree_with_ort() {
    let scheme = Scheme::uniform(Precision::Binary {
        activations: BinaryActs::Int8 {
            activations: ActQuant {
                dtype: ActType::U8,
                symmetric: false,
            },
            calibration: Calibration::MinMax,
        },
    });
    check("mnist-cnn", &scheme);
    let q = exported(&manifest("mnist-cnn"), &scheme);
    let plan = Plan::new(&q, &[("input", vec![1, 1, 28, 28])], 1).unwrap();
    let names = plan.kernel_names().join(", ");
    // By default every Conv and Gemm is a fused int8 layer (the b1 kernels are opt-in: see
    // cli::binary_kernel_switch_keeps_the_results).
    assert!(names.contains("i8-gemm"), "{names}");
    assert!(
        !names.contains("b1-") && !names.contains("f32-gemm"),
        "{names}"
    );
}

/// Two grouped Convs quantized statically (QDQ, per-channel weights): `x [2, 6, 9, 8] →
/// Conv(6 → 10, group 2, 3×3, stride 2, pads 1) → Relu → Conv(10 → 5, group 5, 3×3, pads 1)`.
/// Both fuse into integer layers that run each group on the GEMM (the first requantizes its
/// output for the second), and agree with the FP32 model within quantization error and with ONNX
/// Runtime on the same exported model.
#[test]
fn grouped_convs_fuse_and_agree_with_fp32_and_ort() {
    let conv = |name: &str, io: [&str; 3], group: i64, stride: i64| {
        node(
            "Conv",
            name,
            &[io[0], io[1], io[2]],
            &[&format!("{name}_out")],
            vec![
                ("group", Attr::Int(group)),
                ("kernel_shape", Attr::Ints(vec![3, 3])),
                ("strides", Attr::Ints(vec![stride, stride])),
                ("pads", Attr::Ints(vec![1, 1, 1, 1])),
            ],
        )
    };
    let mut nodes = vec![
        conv("c1", ["x", "w1", "b1"], 2, 2),
        node("Relu", "relu", &["c1_out"], &["r"], vec![]),
        conv("c2", ["r", "w2", "b2"], 5, 1),
    ];
    nodes[2].outputs = vec!["y".into()];
    let g = graph(
        13,
        &[("x", 4)],
        &["y"],
        nodes,
        vec![
            ("w1", t(&[10, 3, 3, 3], values(270, 1))),
            ("b1", t(&[10], values(10, 2))),
            ("w2", t(&[5, 2, 3, 3], values(90, 3))),
            ("b2", t(&[5], values(5, 4))),
        ],
    );
    let x = t(&[2, 6, 9, 8], values(2 * 6 * 72, 5));
    // The ranges a calibration on this input finds: every value of the FP32 run.
    let probe = expose(&g, &["x".into(), "c1_out".into(), "r".into()]).unwrap();
    let all = run(&probe, &[("x", &x)]);
    let ranges = probe
        .outputs
        .iter()
        .zip(&all)
        .map(|(o, v)| {
            let v = v.as_f32().unwrap();
            let (min, max) = v
                .iter()
                .fold((0.0f32, 0.0f32), |(a, b), &x| (a.min(x), b.max(x)));
            (o.name.clone(), quench::quant::CalibratedRange { min, max })
        })
        .collect();
    let scheme = Scheme::int8_static(true, Calibration::MinMax);
    let q = quantize(&g, &scheme, &ranges).unwrap();
    let plan = Plan::new(&q, &[("x", vec![2, 6, 9, 8])], 1).unwrap();
    let names = plan.kernel_names().join(", ");
    assert!(
        names.contains("2 groups") && names.contains("5 groups") && !names.contains("f32-"),
        "not fused: {names}"
    );
    let got = run(&q, &[("x", &x)]);
    let got = got[0].as_f32().unwrap();
    let fp = &all[probe.outputs.iter().position(|o| o.name == "y").unwrap()];
    let fp = fp.as_f32().unwrap();
    let range = fp.iter().fold(0.0f32, |a, &b| a.max(b.abs()));
    let worst = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
    };
    let to_fp32 = worst(got, fp);
    assert!(to_fp32 <= 0.05 * range, "FP32 {to_fp32} of {range}");
    let o = ort(&q).run(&[("x", &x)]).unwrap();
    let to_ort = worst(got, o[0].as_f32().unwrap());
    eprintln!("grouped static: worst {to_fp32} to FP32, {to_ort} to ORT, range {range}");
    assert!(to_ort <= 1e-4 * range, "ORT {to_ort} of {range}");
}

/// mnist-cnn exported with binary weights and binary (`Sign`) activations: every layer runs on
/// the XNOR-popcount kernel, the logits equal the plain f32 path of the same file (the `Sign`
/// outputs tapped, so unfused) up to f32 summation order on 8 test images, and native agrees
/// with ONNX Runtime on the test images.
#[test]
fn mnist_cnn_binary_activations_run_on_xnor_popcount() {
    let scheme = Scheme::uniform(Precision::Binary {
        activations: BinaryActs::Binary,
    });
    let m = manifest("mnist-cnn");
    let q = exported(&m, &scheme);
    let test = Dataset::load(&m.data.test, &m.input, Some(sample_limit())).unwrap();
    let input = test.batch(0..8).unwrap();
    let shapes = [(test.input_name(), input.shape().to_vec())];
    let mut fused = Plan::new(&q, &shapes, 1).unwrap();
    let names = fused.kernel_names().join(", ");
    assert!(
        names.contains("b1-xnor-popcount") && !names.contains("f32-gemm"),
        "{names}"
    );
    let taps: Vec<String> = q
        .nodes
        .iter()
        .filter(|n| n.op_type == "Sign")
        .map(|n| n.outputs[0].clone())
        .collect();
    assert_eq!(taps.len(), 4);
    let pool = quench::engine::plan::thread_pool(1).unwrap();
    let mut plain = Plan::with_taps(&q, &shapes, pool, &taps).unwrap();
    let a = fused.run(&[(test.input_name(), &input)]).unwrap();
    let b = plain.run(&[(test.input_name(), &input)]).unwrap();
    assert_close(a[0].as_f32().unwrap(), b[0].as_f32().unwrap(), 1e-4);

    let mut native = NativeRuntime::new(q.clone(), 1).unwrap();
    let mut reference = ort(&q);
    let out = output_index(&m.output, reference.output_names()).unwrap();
    let r = evaluate(&mut reference, &test, 100, out).unwrap();
    let n = evaluate(&mut native, &test, 100, out).unwrap();
    let agreement = metrics::agreement(&r.outputs, &n.outputs).unwrap();
    eprintln!(
        "mnist-cnn binary×binary: {} images, ORT {:?}, native {:?}, agreement {agreement}",
        test.len(),
        r.accuracy,
        n.accuracy
    );
    assert!(agreement >= 0.995, "agreement {agreement}");
}
