//! `quench quantize` as a user runs it, on the bundled mnist-cnn and the real ONNX Runtime
//! (installed into .venv by scripts/setup-ort.sh).

use std::path::Path;

use std::process::Output;

use crate::common::{quench, quench_fails, stderr, stdout};

const MODEL: &str = "assets/models/mnist-cnn.onnx";

/// `quench quantize args…`, which must succeed.
fn quantize(args: &[&str]) -> Output {
    quench(&[&["quantize"], args].concat())
}

/// `quench quantize args…`, which must fail.
fn quantize_fails(args: &[&str]) -> Output {
    quench_fails(&[&["quantize"], args].concat())
}

/// The percentage after `label` on the line starting with `line`, e.g. "quantized 98.80%".
fn percent_after(out: &str, line: &str, label: &str) -> f64 {
    let l = out
        .lines()
        .find(|l| l.starts_with(line))
        .unwrap_or_else(|| panic!("no `{line}` line:\n{out}"));
    let rest = &l[l.find(label).unwrap_or_else(|| panic!("{l}")) + label.len()..];
    rest.trim_start()
        .split('%')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{l}: {e}"))
}

#[test]
fn int8_static_writes_a_model_ort_runs_at_fp32_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("cnn-int8.onnx");
    let out = quantize(&[
        MODEL,
        "--precision",
        "int8",
        "--method",
        "static",
        "--limit",
        "1000",
        "-o",
        out_path.to_str().unwrap(),
    ]);
    let text = stdout(&out);
    let q = percent_after(&text, "test (1000 samples", "quantized");
    assert!(q >= 98.5, "{text}");
    let native = percent_after(&text, "native:", "quantized");
    assert!(
        (native - q).abs() <= 0.5,
        "native {native}% vs ORT {q}%:\n{text}"
    );
    let agreement = percent_after(&text, "native:", "agreement with ORT");
    assert!(agreement >= 99.5, "{text}");
    for layer in ["conv1", "conv2", "fc1", "fc2"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(layer) && l.contains("int8 static")),
            "{layer}:\n{text}"
        );
    }
    // The written file is a QDQ model ORT loads and runs through `quench eval`.
    let graph = quench::onnx::load(&out_path).unwrap();
    assert!(graph.nodes.iter().any(|n| n.op_type == "QuantizeLinear"));
    let eval = quench(&[
        "eval",
        out_path.to_str().unwrap(),
        "--manifest",
        "assets/models/mnist-cnn.toml",
        "--runtime",
        "ort",
        "--limit",
        "1000",
        "--seconds",
        "0.1",
        "--json",
    ]);
    let record: serde_json::Value = serde_json::from_slice(&eval.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&eval), stderr(&eval)));
    let acc = record["accuracy"].as_f64().unwrap();
    assert!((acc * 100.0 - q).abs() < 0.01, "{acc} vs {q}");
    // Run on ORT, the record still says what the file holds.
    assert_eq!(
        (&record["precision"], &record["method"]),
        (&"int8".into(), &"static".into())
    );
}

#[test]
fn a_bad_combination_names_what_is_allowed() {
    let out = quantize_fails(&[MODEL, "--precision", "binary", "--method", "dynamic"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("--method static, qat"), "{err}");
    let out = quantize_fails(&[MODEL, "--precision", "int4", "--calibrator", "entropy"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("only to --method static"), "{err}");
    let out = quantize_fails(&[MODEL, "--precision", "int4", "--group", "48"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("32, 64 and 128"));
    // QAT trains INT8 activations only: binary activations are refused, not silently replaced.
    let out = quantize_fails(&[
        MODEL,
        "--precision",
        "binary",
        "--method",
        "qat",
        "--binary-acts",
        "binary",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("qat does not support --binary-acts binary"),
        "{err}"
    );
    assert!(!Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("mnist-cnn.int4-weight-only.onnx")
        .exists());
}

#[test]
fn json_summary_of_int4_parses() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("cnn-int4.onnx");
    let out = quantize(&[
        MODEL,
        "--precision",
        "int4",
        "--group",
        "64",
        "--limit",
        "500",
        "--json",
        "-o",
        out_path.to_str().unwrap(),
    ]);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["precision"], "int4");
    assert_eq!(s["method"], "weight-only");
    assert_eq!(s["scheme"]["default"]["group_size"], 64);
    assert_eq!(s["test"]["samples"], 500);
    assert!(s["test"]["quantized_accuracy"].as_f64().unwrap() > 0.97);
    assert!(
        s["size"]["quantized_bytes"].as_u64().unwrap()
            < s["size"]["fp32_bytes"].as_u64().unwrap() / 4
    );
    let layers = s["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 4);
    assert_eq!(layers[2]["precision"], "int4");
    // The layer error is measured on both runtimes, and they run the same numerics.
    let ort = layers[2]["ort"]["sqnr_db"].as_f64().unwrap();
    let native = layers[2]["native"]["sqnr_db"].as_f64().unwrap();
    assert!(ort > 20.0, "{ort}");
    assert!(
        (ort - native).abs() < 0.5,
        "ort {ort} dB, native {native} dB"
    );
    assert!(s["native_layer_failure"].is_null());
    assert!(out_path.is_file());
}

#[test]
fn binary_qat_beats_binary_ptq_and_reports_progress() {
    let dir = tempfile::tempdir().unwrap();
    let run = |method: &str| {
        let path = dir.path().join(format!("cnn-binary-{method}.onnx"));
        let out = quantize(&[
            MODEL,
            "--precision",
            "binary",
            "--method",
            method,
            "--calib-samples",
            "2000",
            "--limit",
            "1000",
            "-o",
            path.to_str().unwrap(),
        ]);
        assert!(path.is_file());
        (
            percent_after(&stdout(&out), "test (1000 samples", "quantized"),
            stderr(&out),
        )
    };
    let (ptq, _) = run("static");
    let (qat, progress) = run("qat");
    assert!(
        progress.contains("qat: 2000 samples") && progress.contains("qat: epoch 0 done"),
        "{progress}"
    );
    // Measured: PTQ 92.9%, one QAT epoch on 2,000 calibration images 96.9% (full test split).
    assert!(qat >= 95.0 && qat > ptq + 1.0, "qat {qat}% vs ptq {ptq}%");
}

#[test]
fn eval_takes_the_quantize_options_and_measures_the_variant() {
    let out = quench(&[
        "eval",
        "assets/models/mnist-mlp.onnx",
        "--precision",
        "int8",
        "--method",
        "static",
        "--calibrator",
        "percentile",
        "--calib-samples",
        "100",
        "--runtime",
        "ort",
        "--limit",
        "200",
        "--seconds",
        "0.05",
        "--json",
    ]);
    let r: quench::sweep::record::Record = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r.key.precision.name(), "int8");
    assert_eq!(r.key.method.name(), "static");
    assert_eq!(r.key.calibrator.as_deref(), Some("percentile"));
    assert_eq!(r.status, quench::sweep::record::Status::Ok);
    let q = r.quality.unwrap();
    assert!(q.accuracy.unwrap() > 0.9, "{:?}", q.accuracy);
    assert!(q.agreement.unwrap().top1 > 0.95);
    assert!(!r.layers.is_empty());
    assert!(r.layers.iter().all(|l| l.precision == "int8 static"));
    // The same options are checked the same way as quantize's.
    let bad = quench_fails(&[
        "eval",
        "assets/models/mnist-mlp.onnx",
        "--precision",
        "int4",
        "--group",
        "48",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("allowed group sizes are 32, 64 and 128"));
}

#[test]
fn int8_qat_trains_the_mobile_text_direction_classifier() {
    // Depthwise and grouped convolutions, BatchNorm, spelled-out hard-swish, squeeze-and-excite
    // and a final Softmax: QAT trains through all of them and the export runs on both runtimes.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("textdir-int8-qat.onnx");
    let out = quantize(&[
        "assets/models/textdir-cls.onnx",
        "--precision",
        "int8",
        "--method",
        "qat",
        "--calib-samples",
        "256",
        "--limit",
        "200",
        "-o",
        path.to_str().unwrap(),
    ]);
    let (stdout, stderr) = (stdout(&out), stderr(&out));
    assert!(stderr.contains("qat: epoch 0 done"), "{stderr}");
    let agree = percent_after(&stdout, "native:", "top-1 agreement with ORT");
    assert!(agree >= 99.5, "{stdout}");
    // The FP32 model scores 89.5% on these 200 strips; a short QAT run on the calibration split
    // must not lose it (measured: 94.5% after 256 training strips).
    let q = percent_after(&stdout, "test (200 samples", "quantized");
    assert!(q >= 88.0, "{stdout}");
    assert!(path.is_file());
}

/// A model with a grouped Conv that is not depthwise, quantized dynamically end to end: the
/// Conv is quantized, the native engine runs the written model (each group on the INT8 GEMM) and
/// agrees with ONNX Runtime on it.
#[test]
fn dynamic_int8_of_a_grouped_conv_model_runs_natively_and_agrees_with_ort() {
    use crate::common::{graph, node, t, values};
    use quench::graph::Attr;
    let dir = tempfile::tempdir().unwrap();
    // input [N, 1, 28, 28] → Conv(1 → 6, stride 2) → Relu → Conv(6 → 10, group 2, stride 2)
    // → Relu → GlobalAveragePool → Flatten → logits [N, 10].
    let conv = |name: &str, io: [&str; 4], group: i64| {
        node(
            "Conv",
            name,
            &io[..3],
            &[io[3]],
            vec![
                ("group", Attr::Int(group)),
                ("kernel_shape", Attr::Ints(vec![3, 3])),
                ("strides", Attr::Ints(vec![2, 2])),
                ("pads", Attr::Ints(vec![1, 1, 1, 1])),
            ],
        )
    };
    let mut g = graph(
        13,
        &[("input", 4)],
        &["logits"],
        vec![
            conv("conv1", ["input", "w1", "b1", "h1"], 1),
            node("Relu", "relu1", &["h1"], &["r1"], vec![]),
            conv("gconv", ["r1", "w2", "b2", "h2"], 2),
            node("Relu", "relu2", &["h2"], &["r2"], vec![]),
            node("GlobalAveragePool", "gap", &["r2"], &["p"], vec![]),
            node("Flatten", "flat", &["p"], &["logits"], vec![]),
        ],
        vec![
            ("w1", t(&[6, 1, 3, 3], values(54, 1))),
            ("b1", t(&[6], values(6, 2))),
            ("w2", t(&[10, 3, 3, 3], values(270, 3))),
            ("b2", t(&[10], values(10, 4))),
        ],
    );
    g.name = "grouped".into();
    let model = dir.path().join("grouped.onnx");
    quench::onnx::save(&g, &model).unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/data");
    let manifest = format!(
        "[model]\nfile = \"grouped.onnx\"\nname = \"grouped\"\n\n\
         [input]\nname = \"input\"\nsample_shape = [1, 28, 28]\nscale = 0.00392156862745098\n\n\
         [output]\nname = \"logits\"\nkind = \"logits\"\n\n\
         [data.test]\nsamples = \"{0}/mnist-test-images.idx.gz\"\n\
         labels = \"{0}/mnist-test-labels.idx.gz\"\n\n\
         [data.calibration]\nsamples = \"{0}/mnist-train-images.idx.gz\"\n\
         labels = \"{0}/mnist-train-labels.idx.gz\"\n",
        data.display()
    );
    std::fs::write(dir.path().join("grouped.toml"), manifest).unwrap();
    let out_path = dir.path().join("grouped-int8.onnx");
    let out = quantize(&[
        model.to_str().unwrap(),
        "--precision",
        "int8",
        "--method",
        "dynamic",
        "--limit",
        "200",
        "--json",
        "-o",
        out_path.to_str().unwrap(),
    ]);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let gconv = s["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["layer"] == "gconv")
        .unwrap_or_else(|| panic!("no gconv layer: {s:#}"));
    assert_eq!(gconv["precision"], "int8 dynamic", "{s:#}");
    // Its layer error, measured on both runtimes, which run the same numerics.
    let ort = gconv["ort"]["sqnr_db"].as_f64().unwrap();
    let native = gconv["native"]["sqnr_db"].as_f64().unwrap();
    assert!(ort > 30.0 && (ort - native).abs() < 0.5, "{s:#}");
    assert!(s["native_layer_failure"].is_null(), "{s:#}");
    assert_eq!(s["native"]["status"], "ran", "{s:#}");
    assert!(
        s["native"]["ort_agreement"].as_f64().unwrap() >= 0.995,
        "{s:#}"
    );
    assert!(
        s["test"]["top1_agreement"].as_f64().unwrap() >= 0.99,
        "{s:#}"
    );
}
