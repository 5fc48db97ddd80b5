//! `quench sensitivity`, `quench search` and `quench drift` as a user runs them, on the bundled
//! mnist-mlp with small sample counts.

use crate::common::{quench, quench_fails, shown};

#[test]
fn sensitivity_prints_a_ranking_of_both_layers() {
    let o = quench(&[
        "sensitivity",
        "assets/models/mnist-mlp.onnx",
        "--precision",
        "int4",
        "--samples",
        "200",
        "--calib-samples",
        "200",
    ]);
    let t = shown(&o);
    assert!(t.contains("rank") && t.contains("SQNR dB"), "{t}");
    assert!(t.contains("fc0") && t.contains("fc1"), "{t}");
    assert!(t.contains("validation split, 200 of 2000 samples"), "{t}");
}

#[test]
fn search_writes_the_model_and_prints_the_front() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mlp-search.onnx");
    let o = quench(&[
        "search",
        "assets/models/mnist-mlp.onnx",
        "--budget",
        "1%",
        "--samples",
        "300",
        "--calib-samples",
        "200",
        "--levels",
        "int8,int4",
        "--runtime",
        "ort",
        "--rounds",
        "1",
        "--limit",
        "500",
        "-o",
        out.to_str().unwrap(),
    ]);
    let t = shown(&o);
    assert!(t.contains("Pareto front") && t.contains("chosen:"), "{t}");
    assert!(t.contains("test split (500 samples"), "{t}");
    assert!(t.contains("timed on ort"), "{t}");
    quench::onnx::load(&out).unwrap();
}

#[test]
fn search_refuses_a_budget_that_is_not_a_percentage() {
    let o = quench_fails(&["search", "assets/models/mnist-mlp.onnx", "--budget", "abc"]);
    assert!(shown(&o).contains("not a budget"), "{}", shown(&o));
}

#[test]
fn drift_of_the_fp32_mlp_finds_no_parting() {
    let o = quench(&["drift", "assets/models/mnist-mlp.onnx", "--samples", "4"]);
    let t = shown(&o);
    assert!(t.contains("no parting"), "{t}");
}

#[test]
fn a_sweep_with_a_search_table_saves_the_search_beside_its_results() {
    let dir = tempfile::tempdir().unwrap();
    let manifest =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/mnist-mlp.toml");
    let profile = dir.path().join("p.toml");
    std::fs::write(
        &profile,
        format!(
            r#"name = "search-e2e"
[matrix]
models = ["{}"]
precisions = ["fp32"]
methods = ["static"]
runtimes = ["ort"]
[data]
test_limit = 300
calibration_samples = 200
[timing]
seconds = 0.05
warmup_seconds = 0.05
min_runs = 2
[search]
budget = "1%"
precisions = ["int8", "int4"]
samples = 300
rounds = 1
runtime = "ort"
"#,
            manifest.display()
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "sweep",
            profile.to_str().unwrap(),
            "--headless",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        quench(&args)
    };
    let o = run(&[]);
    let t = shown(&o);
    assert!(t.contains("Pareto front") && t.contains("chosen:"), "{t}");
    let (saved, warnings) = quench::explore::saved::read(&out).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(saved.len(), 1);
    let s = &saved[0];
    assert_eq!(s.name, "mnist-mlp");
    let chosen = &s.report.candidates[s.report.chosen];
    assert!(chosen.feasible && chosen.timed.is_some());
    assert!(s.report.front.contains(&s.report.chosen));
    assert_eq!(s.report.test.samples, 300, "[data] test_limit");
    assert_eq!(s.assignment().len(), 2);
    let model = out.join("mnist-mlp.search-size.onnx");
    assert_eq!(std::fs::metadata(&model).unwrap().len(), chosen.bytes);
    // Resumed, the saved search is not run again.
    let o = run(&["--resume"]);
    let t = shown(&o);
    assert!(t.contains("already saved"), "{t}");
    let body = std::fs::read_to_string(out.join("search.jsonl")).unwrap();
    assert_eq!(body.lines().count(), 1);
}
