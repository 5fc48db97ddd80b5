//! Quantized models run on the native engine against ONNX Runtime on the same model: top-1
//! agreement on the MNIST test split must be at least 99.5%.
//!
//! Variants: quench's own exports of mnist-cnn and mnist-mlp (dynamic INT8; 4-bit MatMulNBits
//! g32/g64, symmetric and with zero points) and the ORT-quantized fixtures in assets/quantized
//! (QOperator of both models, ORT's `quantize_dynamic` ConvInteger form of mnist-cnn; see
//! scripts/make_qoperator_fixtures.py).
//!
//! The tests score the first `QUENCH_AGREEMENT_SAMPLES` test images (default 2,000). The full
//! split: `QUENCH_AGREEMENT_SAMPLES=10000 cargo test --release --test it quant_native -- --nocapture`.

use std::path::{Path, PathBuf};

use quench::eval::dataset::Dataset;
use quench::eval::evaluate::output_index;
use quench::eval::manifest::Manifest;
use quench::eval::metrics::top1;
use quench::graph::Graph;
use quench::quant::{quantize, Scheme};
use quench::runtime::native::NativeRuntime;
use quench::runtime::ort::{OrtOptions, OrtRuntime};
use quench::runtime::Runtime;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn manifest(model: &str) -> Manifest {
    Manifest::load(&root().join(format!("assets/models/{model}.toml"))).unwrap()
}

fn samples() -> usize {
    std::env::var("QUENCH_AGREEMENT_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// Top-1 agreement of native and ORT on `graph` over the test split of `model`'s manifest.
fn agreement(model: &str, graph: &Graph) -> f64 {
    let m = manifest(model);
    let bytes = quench::onnx::to_bytes(graph).unwrap();
    let mut ort = OrtRuntime::from_bytes(
        &bytes,
        &OrtOptions {
            spin: false,
            ..OrtOptions::new(1)
        },
    )
    .unwrap();
    let mut native = NativeRuntime::new(graph.clone(), 1).unwrap();
    let out = output_index(&m.output, ort.output_names()).unwrap();
    let test = Dataset::load(&m.data.test, &m.input, Some(samples())).unwrap();
    let (mut same, mut total) = (0, 0);
    for batch in test.batches(100) {
        let batch = batch.unwrap();
        let inputs = [(test.input_name(), &batch)];
        let a = top1(&native.run(&inputs).unwrap()[out]).unwrap();
        let b = top1(&ort.run(&inputs).unwrap()[out]).unwrap();
        same += a.iter().zip(&b).filter(|(x, y)| x == y).count();
        total += a.len();
    }
    let agree = same as f64 / total as f64;
    eprintln!("{model}: native vs ORT top-1 agreement {agree:.4} on {total} images");
    agree
}

fn export(model: &str, scheme: &Scheme) -> Graph {
    let m = manifest(model);
    let g = quench::onnx::load(Path::new(&m.model.file)).unwrap();
    quantize(&g, scheme, &Default::default()).unwrap()
}

fn fixture(name: &str) -> Graph {
    quench::onnx::load(root().join("assets/quantized").join(name)).unwrap()
}

fn check(model: &str, graph: &Graph) {
    let a = agreement(model, graph);
    assert!(a >= 0.995, "{model}: agreement {a}");
}

#[test]
fn dynamic_int8_exports_agree() {
    for model in ["mnist-cnn", "mnist-mlp"] {
        check(model, &export(model, &Scheme::int8_dynamic()));
    }
}

#[test]
fn int4_exports_agree() {
    for model in ["mnist-cnn", "mnist-mlp"] {
        for (group, symmetric) in [(32, true), (32, false), (64, true), (64, false)] {
            eprintln!("int4 g{group} symmetric={symmetric}");
            check(model, &export(model, &Scheme::int4(group, symmetric)));
        }
    }
}

#[test]
fn ort_dynamic_convinteger_fixture_agrees() {
    check("mnist-cnn", &fixture("mnist-cnn.dyn-ort.onnx"));
}

/// QOperator models are turned into the fused integer layers QDQ models run on: every
/// QLinearConv/QLinearMatMul/QGemm is an int8 GEMM with u8 values in the arena, no f32 Conv or
/// MatMul is left.
#[test]
fn qoperator_fixtures_agree() {
    for (model, input) in [
        ("mnist-cnn", vec![1, 1, 28, 28]),
        ("mnist-mlp", vec![1, 784]),
    ] {
        let g = fixture(&format!("{model}.qop.onnx"));
        check(model, &g);
        let name = g.inputs[0].name.clone();
        let plan = quench::engine::Plan::new(&g, &[(name.as_str(), input)], 1).unwrap();
        let names = plan.kernel_names().join(", ");
        assert!(names.contains("i8-gem"), "{model}: {names}");
        assert!(
            !names.contains("f32-gemm") && !names.contains("f32-matmul"),
            "{model}: {names}"
        );
    }
}

/// Static calibration on the native engine finds the ranges calibration on ORT finds (float
/// tolerance), for MinMax and for a histogram calibrator, and the INT8 models exported from
/// either score the same on the test split.
#[test]
fn native_calibration_matches_ort_calibration() {
    use quench::quant::pipeline::{calibrate_on, CalibrateOn, CalibratorKind};
    let m = manifest("mnist-cnn");
    let g = quench::onnx::load(Path::new(&m.model.file)).unwrap();
    let calib = m.data.calibration.as_ref().unwrap();
    let data = Dataset::load(calib, &m.input, Some(150)).unwrap();
    let test = Dataset::load(&m.data.test, &m.input, Some(500)).unwrap();
    let labels = test.labels().unwrap().to_vec();
    for kind in [CalibratorKind::MinMax, CalibratorKind::Entropy] {
        let scheme = Scheme::int8_static(true, kind.calibration());
        // 150 samples: a full batch of 100 and a shorter one (two plans on the native side).
        let native = calibrate_on(&g, &scheme, &data, 150, CalibrateOn::Native).unwrap();
        let ort = calibrate_on(&g, &scheme, &data, 150, CalibrateOn::Ort).unwrap();
        assert!(native.len() >= 4, "{native:?}");
        assert_eq!(
            native.keys().collect::<Vec<_>>(),
            ort.keys().collect::<Vec<_>>()
        );
        for (t, a) in &native {
            let b = ort[t];
            let tol = 1e-4 * (b.max - b.min).abs().max(1.0);
            assert!(
                (a.min - b.min).abs() <= tol && (a.max - b.max).abs() <= tol,
                "{} `{t}`: native {a:?} vs ORT {b:?}",
                kind.name()
            );
        }
        let accuracy = |ranges| {
            let q = quantize(&g, &scheme, &ranges).unwrap();
            let mut rt = NativeRuntime::new(q, 1).unwrap();
            let out = output_index(&m.output, rt.output_names()).unwrap();
            let mut right = 0;
            for (i, batch) in test.batches(100).enumerate() {
                let batch = batch.unwrap();
                let got = top1(&rt.run(&[(test.input_name(), &batch)]).unwrap()[out]).unwrap();
                right += got
                    .iter()
                    .zip(&labels[i * 100..])
                    .filter(|(p, l)| **p == **l as usize)
                    .count();
            }
            right as f64 / labels.len() as f64
        };
        let (a, b) = (accuracy(native), accuracy(ort));
        eprintln!(
            "{}: static INT8 accuracy {a} (native ranges) {b} (ORT ranges)",
            kind.name()
        );
        assert!((a - b).abs() <= 0.002 && a > 0.97, "{a} vs {b}");
    }
}

/// Binary-weight variants (INT8 activations, exported as int8 ±1 with α scales) run on the
/// int8 kernels natively by default and give ORT's top-1 on the exported model (mnist-cnn:
/// engine_qdq; the b1 kernels: cli::binary_kernel_switch_keeps_the_results).
#[test]
fn binary_mlp_runs_on_integer_kernels_and_agrees() {
    use quench::quant::pipeline::calibrate;
    use quench::quant::scheme::{ActQuant, ActType, BinaryActs, Calibration, Precision};
    let model = "mnist-mlp";
    let m = manifest(model);
    let g = quench::onnx::load(Path::new(&m.model.file)).unwrap();
    let scheme = Scheme::uniform(Precision::Binary {
        activations: BinaryActs::Int8 {
            activations: ActQuant {
                dtype: ActType::U8,
                symmetric: false,
            },
            calibration: Calibration::MinMax,
        },
    });
    let calib = m.data.calibration.as_ref().unwrap();
    let data = Dataset::load(calib, &m.input, Some(100)).unwrap();
    let ranges = calibrate(&g, &scheme, &data, 100).unwrap();
    let q = quantize(&g, &scheme, &ranges).unwrap();
    let mut native = NativeRuntime::new(q.clone(), 1).unwrap();
    let x = data.batch(0..1).unwrap();
    native.run(&[(data.input_name(), &x)]).unwrap();
    let names = native.kernel_names();
    assert!(
        names
            .iter()
            .any(|k| k.contains("i8-gemv") || k.contains("i8-gemm"))
            && !names.iter().any(|k| k.starts_with("b1-")),
        "{model}: {names:?}"
    );
    check(model, &q);
}

/// textdir-cls is an opset-11 model whose Softmax works on its last axis: with the manifest's
/// input shape the export may raise it to opset 13 (per-channel DequantizeLinear), and both
/// runtimes then run the static INT8 model alike.
#[test]
fn textdir_int8_static_raises_the_opset_and_agrees() {
    use quench::quant::pipeline::calibrate;
    let m = manifest("textdir-cls");
    let g = quench::onnx::load(Path::new(&m.model.file)).unwrap();
    assert_eq!(g.opset, 11);
    let calib = m.data.calibration.as_ref().unwrap();
    let data = Dataset::load(calib, &m.input, Some(100)).unwrap();
    let scheme = Scheme::int8_static(true, quench::quant::Calibration::MinMax);
    let ranges = calibrate(&g, &scheme, &data, 100).unwrap();
    assert!(
        quantize(&g, &scheme, &ranges).is_err(),
        "without shapes the Softmax cannot be shown to keep its meaning"
    );
    let q = quench::quant::quantize_for(&g, &scheme, &ranges, &[m.input.at_batch(1)]).unwrap();
    assert_eq!(q.opset, 13);
    check("textdir-cls", &q);
}

/// textdir-cls in dynamic INT8, prepared as `quench quantize` prepares it: its depthwise
/// convolutions run on the native engine's depthwise INT8 kernel, and native agrees with ORT on
/// the same exported model.
#[test]
fn textdir_int8_dynamic_runs_natively_and_agrees() {
    let m = manifest("textdir-cls");
    let g = quench::onnx::load(Path::new(&m.model.file)).unwrap();
    let g = quench::quant::prepare::prepare(&g).unwrap();
    let scheme = Scheme::int8_dynamic();
    let q = quench::quant::quantize_for(&g, &scheme, &Default::default(), &[m.input.at_batch(1)])
        .unwrap();
    check("textdir-cls", &q);
}

/// textdir-cls INT8 static per-channel, the "top-1 agreement with FP32 ≥ 99%" row, as
/// `quench quantize assets/models/textdir-cls.onnx --precision int8 --calibrator mse
/// --bias-correction --limit 1000` makes it, over all 1,000 test strips. Measured: 99.30% on
/// ORT, native vs ORT 100.00% (without the correction 98.2%; percentile ranges 99.00% on ORT,
/// 98.90% natively).
#[test]
fn textdir_int8_static_agrees_with_fp32_on_99_percent() {
    use quench::quant::pipeline::{run, CalibratorKind, NativeResults, QuantizeConfig, Target};
    let dir = tempfile::tempdir().unwrap();
    let m = manifest("textdir-cls");
    let config = QuantizeConfig {
        model: PathBuf::from(&m.model.file),
        manifest: m,
        precision: Target::Int8,
        method: None,
        calibrator: Some(CalibratorKind::Mse),
        percentile: None,
        per_tensor: false,
        group: None,
        binary_acts: None,
        calibrate_on: Default::default(),
        calib_samples: None,
        epochs: None,
        bias_correction: true,
        limit: None,
        out: dir.path().join("textdir-int8.onnx"),
    };
    let s = run(&config, &mut |_| {}).unwrap();
    eprintln!(
        "textdir-cls int8 static mse + bias correction: {}; ORT agreement with FP32 {:.4} on {}; \
         native {}",
        s.ranges, s.test.top1_agreement, s.test.samples, s.native
    );
    assert_eq!(s.test.samples, 1000);
    assert!(
        s.ranges.contains("bias correction of 54 layers ("),
        "{}",
        s.ranges
    );
    assert!(s.test.top1_agreement >= 0.99, "{}", s.test.top1_agreement);
    let NativeResults::Ran { ort_agreement, .. } = s.native else {
        panic!("{}", s.native)
    };
    assert!(ort_agreement >= 0.995, "{ort_agreement}");
    // Native agrees with FP32 on at least the strips where ORT does and native agrees with ORT.
    let native_floor = s.test.top1_agreement - (1.0 - ort_agreement);
    assert!(
        native_floor >= 0.99,
        "native agreement with FP32 ≥ {native_floor}"
    );
}

/// mnist-cnn INT8 static minmax with bias correction, as `quench quantize
/// assets/models/mnist-cnn.onnx --precision int8 --bias-correction --limit 2000` makes it:
/// its 4 layers (2 Convs, 2 Gemms) are corrected, the scheme in the model says so, and the
/// corrected model still agrees with FP32 (measured on all 10,000 test images: 99.03% accuracy,
/// 99.96% agreement) and runs natively as ORT runs it.
#[test]
fn mnist_cnn_int8_static_with_bias_correction_agrees() {
    use quench::quant::pipeline::{run, NativeResults};
    let dir = tempfile::tempdir().unwrap();
    let config = bias_corrected_cnn(dir.path(), None);
    let s = run(&config, &mut |_| {}).unwrap();
    assert!(
        s.ranges.contains("bias correction of 4 layers"),
        "{}",
        s.ranges
    );
    assert!(s.scheme.to_json().contains("\"bias_correction\":true"));
    assert!(s.test.top1_agreement >= 0.995, "{}", s.test.top1_agreement);
    let NativeResults::Ran { ort_agreement, .. } = s.native else {
        panic!("{}", s.native)
    };
    assert!(ort_agreement >= 0.995, "{ort_agreement}");
}

/// `quench quantize assets/models/mnist-cnn.onnx --precision int8 --bias-correction` as a
/// config written into `dir`, with `calibrator` (default minmax), scored on 2,000 test images.
fn bias_corrected_cnn(
    dir: &std::path::Path,
    calibrator: Option<quench::quant::pipeline::CalibratorKind>,
) -> quench::quant::pipeline::QuantizeConfig {
    use quench::quant::pipeline::{QuantizeConfig, Target};
    QuantizeConfig {
        model: root().join("assets/models/mnist-cnn.onnx"),
        manifest: manifest("mnist-cnn"),
        precision: Target::Int8,
        method: None,
        calibrator,
        percentile: None,
        per_tensor: false,
        group: None,
        calibrate_on: Default::default(),
        calib_samples: None,
        epochs: None,
        bias_correction: true,
        binary_acts: None,
        limit: Some(2000),
        out: dir.join("mnist-cnn-int8-bc.onnx"),
    }
}

/// With the entropy calibrator, correcting mnist-cnn's biases collapses it (41.5% test
/// accuracy when forced): the guard sees the agreement with FP32 on the calibration images
/// fall, drops the correction, says so, and the model and its recorded scheme are the
/// uncorrected ones (97.95% on the 2,000 test images scored here, 98.66% on all 10,000).
#[test]
fn a_bias_correction_that_breaks_the_model_is_dropped() {
    use quench::quant::pipeline::{run, CalibratorKind};
    let dir = tempfile::tempdir().unwrap();
    let config = bias_corrected_cnn(dir.path(), Some(CalibratorKind::Entropy));
    let s = run(&config, &mut |_| {}).unwrap();
    assert!(
        s.ranges.contains("bias correction of 4 layers dropped"),
        "{}",
        s.ranges
    );
    assert!(s.scheme.to_json().contains("\"bias_correction\":false"));
    let accuracy = s.test.quantized_accuracy.unwrap();
    assert!(accuracy >= 0.97, "{accuracy}");
}
