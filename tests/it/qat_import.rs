//! A real QAT export: assets/quantized/mnist-cnn.qat-torch.onnx, the bundled CNN fine-tuned by
//! PyTorch quantization-aware training and exported by `torch.onnx.export` as QDQ opset 13
//! (scripts/make-qat-fixture.py). Its f32 weights are quantized in the graph
//! (`W → QuantizeLinear → DequantizeLinear`, per channel, s8 in -128..127), its zero points reach
//! the Q/DQ nodes through `Identity` nodes, its per-tensor scales are 1-element 1-D tensors and
//! its biases stay f32: quench must fold all of it into integer layers, run it natively as ORT
//! does, and refuse a broken copy with an error naming the node.
//!
//! The tests score the first `QUENCH_AGREEMENT_SAMPLES` test images (default 2,000). The full
//! split: `QUENCH_AGREEMENT_SAMPLES=10000 cargo test --release --test it qat_import -- --nocapture`.

use crate::common::quench;
use std::path::PathBuf;

use quench::eval::dataset::Dataset;
use quench::eval::manifest::Manifest;
use quench::eval::metrics::top1;
use quench::graph::Graph;
use quench::runtime::native::NativeRuntime;
use quench::runtime::ort::{OrtOptions, OrtRuntime};
use quench::runtime::Runtime;
use quench::tensor::{Tensor, TensorData};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const FIXTURE: &str = "assets/quantized/mnist-cnn.qat-torch.onnx";

fn fixture() -> Graph {
    quench::onnx::load(root().join(FIXTURE)).unwrap()
}

fn manifest() -> Manifest {
    Manifest::load(&root().join("assets/quantized/mnist-cnn.qat-torch.toml")).unwrap()
}

fn samples() -> usize {
    std::env::var("QUENCH_AGREEMENT_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

fn ort(path: &str) -> OrtRuntime {
    OrtRuntime::from_file(
        &root().join(path),
        &OrtOptions {
            spin: false,
            ..OrtOptions::new(1)
        },
    )
    .unwrap()
}

/// The export runs on the int8 kernels only (no f32 GEMM or convolution left), agrees with ONNX
/// Runtime on at least 99.5% of the test images, and is as accurate as the FP32 model it was
/// trained from (within 0.2 points on the subset; on the whole split 99.06% against 99.05%).
#[test]
fn torch_qat_export_runs_on_integer_kernels_and_agrees_with_ort() {
    let g = fixture();
    let ops: Vec<&str> = g.nodes.iter().map(|n| n.op_type.as_str()).collect();
    assert!(
        ops.contains(&"QuantizeLinear") && ops.contains(&"Identity"),
        "the fixture is the raw PyTorch export: {ops:?}"
    );
    let plan = quench::engine::Plan::new(&g, &[("input", vec![1, 1, 28, 28])], 1).unwrap();
    let kernels = plan.kernel_names().join(", ");
    assert!(kernels.contains("i8-gem"), "{kernels}");
    assert!(
        kernels.contains("(hwc patches)") && !kernels.contains("im2col"),
        "the 3×3 convolutions read their patches in place: {kernels}"
    );
    assert!(
        !kernels.contains("f32-gemm") && !kernels.contains("f32-conv"),
        "every Conv/Gemm is an integer layer: {kernels}"
    );

    let m = manifest();
    let mut ort_q = ort(FIXTURE);
    let mut ort_fp32 = ort("assets/models/mnist-cnn.onnx");
    let mut native = NativeRuntime::new(g, 1).unwrap();
    let test = Dataset::load(&m.data.test, &m.input, Some(samples())).unwrap();
    let labels = test.labels().unwrap().to_vec();
    let (mut same, mut right, mut right_fp32, mut total) = (0, 0, 0, 0);
    let correct = |p: &[usize], at: usize| {
        p.iter()
            .zip(&labels[at..])
            .filter(|(p, l)| **p as i64 == **l)
            .count()
    };
    for batch in test.batches(100) {
        let batch = batch.unwrap();
        let inputs = [(test.input_name(), &batch)];
        let a = top1(&native.run(&inputs).unwrap()[0]).unwrap();
        let b = top1(&ort_q.run(&inputs).unwrap()[0]).unwrap();
        let f = top1(&ort_fp32.run(&inputs).unwrap()[0]).unwrap();
        same += a.iter().zip(&b).filter(|(x, y)| x == y).count();
        right += correct(&a, total);
        right_fp32 += correct(&f, total);
        total += a.len();
    }
    let agree = same as f64 / total as f64;
    let accuracy = right as f64 / total as f64;
    let fp32 = right_fp32 as f64 / total as f64;
    eprintln!(
        "torch QAT export on {total} images: native accuracy {accuracy:.4} (FP32 {fp32:.4}), native vs ORT agreement {agree:.4}"
    );
    assert!(agree >= 0.995, "agreement {agree}");
    assert!(accuracy >= fp32 - 0.002, "accuracy {accuracy}, FP32 {fp32}");
}

/// A copy whose first weight scale is 0 (a broken export) is refused by the native engine with
/// an error naming the QuantizeLinear node and the bad value, not run into a wrong model.
#[test]
fn a_zero_weight_scale_is_an_error_naming_the_node() {
    let mut g = fixture();
    let name = "features.0.weight_fake_quant.scale";
    let t = &g.initializers[name];
    let mut scales = t.as_f32().unwrap().to_vec();
    scales[3] = 0.0;
    let bad = Tensor::new(t.shape().to_vec(), TensorData::F32(scales)).unwrap();
    g.initializers.insert(name.into(), bad);
    let err = quench::engine::Plan::new(&g, &[("input", vec![1, 1, 28, 28])], 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/features.0/weight_fake_quant/QuantizeLinear")
            && err.contains("scale[3] = 0"),
        "{err}"
    );
}

/// `quench eval` on the export with its manifest, as a user runs it: labelled by what it holds.
#[test]
fn quench_eval_runs_the_export_natively() {
    let out = quench(&[
        "eval",
        FIXTURE,
        "--runtime",
        "native",
        "--limit",
        "300",
        "--seconds",
        "0.2",
        "--json",
    ]);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["model"], "mnist-cnn-qat-torch");
    assert_eq!(
        (&r["precision"], &r["method"]),
        (&serde_json::json!("int8"), &serde_json::json!("static")),
        "the record says what the file holds (a QAT export reads as static QDQ)"
    );
    assert_eq!(r["samples"], 300);
    let accuracy = r["accuracy"].as_f64().unwrap();
    assert!((0.98..=1.0).contains(&accuracy), "{accuracy}");
    let kernels = r["kernels"].to_string();
    assert!(kernels.contains("i8-"), "{kernels}");
}
