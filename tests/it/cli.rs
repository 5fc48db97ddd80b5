//! The `quench` binary as a user runs it, on the bundled assets and the real ONNX Runtime
//! (installed into .venv by scripts/setup-ort.sh, which the README's test command runs first).

use std::path::Path;

use crate::common::{quench, quench_command, quench_fails, stderr, stdout, succeeds};

/// `quench compare` on the bundled default: every bundled model on both runtimes, with the known
/// accuracies and full agreement between the runtimes (the README's first command, the
/// quickstart sweep, is tested in tests/sweep_cli.rs on a trimmed profile).
#[test]
fn compare_prints_the_comparison_table() {
    let out = quench(&["compare"]);
    let text = stdout(&out);
    let rows: Vec<&str> = text.lines().collect();
    assert!(
        rows[0].starts_with("model") && rows[0].contains("accuracy") && rows[0].contains("p50")
    );
    for (model, accuracy) in [
        ("mnist-cnn", "99.05%"),
        ("mnist-mlp", "95.59%"),
        ("textdir-cls", "91.30%"),
    ] {
        for runtime in ["native", "ort"] {
            let row = rows
                .iter()
                .find(|r| r.starts_with(model) && r.split_whitespace().nth(2) == Some(runtime))
                .unwrap_or_else(|| panic!("no row for {model} on {runtime}:\n{text}"));
            assert!(row.contains(accuracy), "{model} on {runtime}: {row}");
            if runtime == "native" {
                assert!(
                    row.contains("100.00%"),
                    "native must agree with ORT on every sample: {row}"
                );
            }
        }
    }
    assert!(
        text.contains("energy/inf:"),
        "the energy source is explained:\n{text}"
    );
}

#[test]
fn inspect_counts_parameters_and_macs() {
    let out = quench(&["inspect", "assets/models/mnist-cnn.onnx"]);
    let text = stdout(&out);
    assert!(text.contains("opset 13"), "{text}");
    assert!(text.contains("input  input: f32 [1, 1, 28, 28]"), "{text}");
    assert!(
        text.contains("conv2    Conv     [1, 64, 14, 14]   18496"),
        "{text}"
    );
    assert!(
        text.contains("total: 421642 parameters (1.6 MiB), 4241152 MACs per inference"),
        "{text}"
    );
    let json = quench(&["inspect", "assets/models/mnist-cnn.onnx", "--json"]);
    let stats: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(stats["total_macs"], 4241152);
}

#[test]
fn eval_json_is_a_full_record() {
    let out = quench(&[
        "eval",
        "assets/models/mnist-cnn.onnx",
        "--runtime",
        "ort",
        "--limit",
        "500",
        "--seconds",
        "0.2",
        "--json",
    ]);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["model"], "mnist-cnn");
    assert_eq!(r["runtime"], "ort");
    assert_eq!(r["samples"], 500);
    let accuracy = r["accuracy"].as_f64().unwrap();
    assert!((0.98..=1.0).contains(&accuracy), "{accuracy}");
    assert_eq!(r["status"]["state"], "ok");
    assert!(r["latency"]["latency_ms"]["p50"].as_f64().unwrap() > 0.0);
    assert!(r["memory"]["peak_rss_bytes"].as_u64().unwrap() > 0);
    assert!(r["energy"]["headline"]["source"].is_string());
    assert!(r["machine"]["cpu_features"].is_array());
    assert!(r["kernels"][0].as_str().unwrap().starts_with("ort-cpu-"));
    // The record says how to measure it again, for `quench report`.
    assert_eq!(
        r["command"],
        "quench eval assets/models/mnist-cnn.onnx --runtime ort --limit 500 --seconds 0.2 --json"
    );
}

/// A user's own model and data without labels: quench reports agreement with the FP32 model.
#[test]
fn eval_without_labels_reports_agreement() {
    let out = quench(&[
        "eval",
        "assets/models/mnist-cnn.onnx",
        "--samples",
        "assets/data/mnist-test-images.idx.gz",
        "--input-name",
        "input",
        "--sample-shape",
        "1x28x28",
        "--scale",
        "0.00392156862745098",
        "--mean",
        "0.1307",
        "--std",
        "0.3081",
        "--limit",
        "300",
        "--seconds",
        "0.2",
    ]);
    let text = stdout(&out);
    assert!(
        text.contains("agreement with assets/models/mnist-cnn.onnx on ort: top-1 100.00%"),
        "{text}"
    );
}

#[test]
fn run_writes_every_output_as_npy_and_runtimes_agree() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("x.npy");
    let x: Vec<f32> = (0..2 * 784)
        .map(|i| ((i * 37) % 255) as f32 / 255.0)
        .collect();
    let tensor = quench::tensor::Tensor::from_f32(vec![2, 1, 28, 28], x).unwrap();
    quench::eval::npy::write_npy(&input, &tensor).unwrap();
    let mut logits = Vec::new();
    for runtime in ["native", "ort"] {
        let out_dir = dir.path().join(runtime);
        let out = quench(&[
            "run",
            "assets/models/mnist-cnn.onnx",
            "--input",
            &format!("input={}", input.display()),
            "--runtime",
            runtime,
            "-o",
            out_dir.to_str().unwrap(),
        ]);
        assert!(
            stdout(&out).contains("logits [2, 10] f32"),
            "{}",
            stdout(&out)
        );
        let t = quench::eval::read::load_tensor(&out_dir.join("logits.npy")).unwrap();
        logits.push(t.as_f32().unwrap().to_vec());
    }
    let scale = logits[1].iter().fold(0f32, |m, v| m.max(v.abs()));
    for (a, b) in logits[0].iter().zip(&logits[1]) {
        assert!((a - b).abs() <= 1e-4 * scale, "native {a} vs ort {b}");
    }
}

#[test]
fn a_model_without_manifest_or_data_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.onnx");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/mnist-mlp.onnx"),
        &model,
    )
    .unwrap();
    let out = quench_fails(&["eval", model.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("no manifest beside the model") && err.contains("--manifest"),
        "{err}"
    );
}

#[test]
fn a_truncated_model_is_an_error_naming_the_file_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("cut.onnx");
    let bytes =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/mnist-cnn.onnx"))
            .unwrap();
    std::fs::write(&model, &bytes[..bytes.len() / 3]).unwrap();
    let path = model.to_str().unwrap();
    let out = quench_fails(&["inspect", path]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cut.onnx") && !err.contains("panicked"),
        "{err}"
    );
    // Evaluated against the bundled manifest, the cell fails with the reason; nothing panics.
    let out = quench_fails(&[
        "eval",
        path,
        "--manifest",
        "assets/models/mnist-cnn.toml",
        "--limit",
        "50",
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAILED mnist-cnn fp32 on native") && text.contains("cut.onnx"),
        "{text}"
    );
    assert!(!stderr(&out).contains("panicked"));
}

/// `QUENCH_BINARY_KERNEL=b1` moves binary-weight layers from the int8 kernels (the default) to
/// the b1 binary × int8 kernel; the outputs are bit-equal, so the accuracy is the same.
#[test]
fn binary_kernel_switch_keeps_the_results() {
    let eval = |b1: bool| -> serde_json::Value {
        let mut cmd = quench_command(&[
            "eval",
            "assets/models/mnist-mlp.onnx",
            "--precision",
            "binary",
            "--runtime",
            "native",
            "--limit",
            "300",
            "--json",
        ]);
        if b1 {
            cmd.env("QUENCH_BINARY_KERNEL", "b1");
        }
        serde_json::from_slice(&succeeds(&mut cmd).stdout).unwrap()
    };
    let kernels = |v: &serde_json::Value| v["kernels"].to_string();
    let (int8, b1) = (eval(false), eval(true));
    assert!(
        kernels(&int8).contains("i8-gemv") && !kernels(&int8).contains("b1-"),
        "{}",
        kernels(&int8)
    );
    assert!(kernels(&b1).contains("b1-i8-gemm"), "{}", kernels(&b1));
    assert_eq!(int8["accuracy"], b1["accuracy"]);
    assert_eq!(int8["samples"], b1["samples"]);
}
