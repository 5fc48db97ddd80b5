//! Sensitivity analysis and mixed-precision search on the bundled MNIST models, on ONNX
//! Runtime (decisions on the validation split; the test split only in the final check).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use quench::eval::Manifest;
use quench::explore::objective::Objective;
use quench::explore::search::{self, RuntimeChoice, SearchConfig, SearchReport};
use quench::explore::sensitivity::{self, SensitivityConfig};
use quench::explore::spec::SearchSpec;
use quench::explore::{ExploreEvent, Level, Setup, SetupConfig};
use quench::quant::export::META_SCHEME;
use quench::quant::pipeline::CalibratorKind;
use quench::runtime::RuntimeKind;

fn setup(model: &str, samples: usize, seed: u64) -> Setup {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models");
    let config = SetupConfig {
        model: root.join(format!("{model}.onnx")),
        manifest: Manifest::load(&root.join(format!("{model}.toml"))).unwrap(),
        calibrator: CalibratorKind::MinMax,
        calib_samples: 300,
        samples: Some(samples),
        seed,
    };
    Setup::prepare(&config, &|_| {}).unwrap()
}

#[test]
fn sensitivity_ranking_is_the_same_for_the_same_seed() {
    let config = SensitivityConfig {
        precision: Level::Int8.precision(quench::quant::Calibration::MinMax),
        label: "int8 static".into(),
        all_but: true,
        jobs: Some(2),
    };
    let run = |seed| {
        let s = setup("mnist-cnn", 400, seed);
        assert!(s.split.contains("seed"), "{}", s.split);
        sensitivity::run(&s, &config, &|_| {}).unwrap()
    };
    let (a, b) = (run(11), run(11));
    let key = |r: &sensitivity::SensitivityReport| {
        r.layers
            .iter()
            .map(|l| (l.layer.clone(), l.only.kl, l.only.drop, l.sqnr_db))
            .collect::<Vec<_>>()
    };
    assert_eq!(key(&a), key(&b));
    assert_eq!(a.layers.len(), 4);
    assert!(a.layers.iter().all(|l| l.all_but.is_some()));
    // Every layer's output is damaged a little, and measurably, by INT8.
    assert!(
        a.layers
            .iter()
            .all(|l| l.sqnr_db > 20.0 && l.sqnr_db < 80.0),
        "{:?}",
        key(&a)
    );
}

fn search_config(out: PathBuf, budget: f64, levels: Vec<Level>) -> SearchConfig {
    SearchSpec {
        levels,
        runtime: RuntimeChoice::Fixed(RuntimeKind::Ort),
        rounds: 1,
        jobs: Some(2),
        ..SearchSpec::new(budget)
    }
    .config(out)
}

/// Runs a search, checking at every new best that the file on disk is a whole, loadable model
/// carrying its scheme.
fn search_checked(s: &Setup, config: &SearchConfig) -> SearchReport {
    let bests = Mutex::new(0);
    let report = search::run(s, config, &|e| {
        if let ExploreEvent::NewBest { path, .. } = e {
            let g = quench::onnx::load(path).unwrap();
            assert!(g.metadata.contains_key(META_SCHEME));
            *bests.lock().unwrap() += 1;
        }
    })
    .unwrap();
    assert!(*bests.lock().unwrap() >= 1);
    let chosen = &report.candidates[report.chosen];
    assert!(chosen.feasible && chosen.score.drop <= config.spec.budget);
    // Exact sizes: the chosen one is on the front (timed objectives keep an incumbent that a
    // candidate beats only within the noise margin, which may then sit off the front).
    if config.spec.objective == Objective::Size {
        assert!(report.front.contains(&report.chosen));
    }
    let on_disk = std::fs::metadata(&config.out).unwrap().len();
    assert_eq!(on_disk, chosen.bytes, "the written model is the chosen one");
    let t = chosen.timed.as_ref().expect("the chosen model is timed");
    assert!(t.latency_ms > 0.0 && t.latency_ratio > 0.0);
    report
}

#[test]
fn search_on_mnist_mlp_finds_a_model_smaller_than_int8_within_budget() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup("mnist-mlp", 500, 0);
    let mut config = search_config(
        dir.path().join("mlp.onnx"),
        0.01,
        vec![Level::Int8, Level::Int4],
    );
    config.spec.test_limit = Some(2000);
    let r = search_checked(&s, &config);
    let chosen = &r.candidates[r.chosen];
    let int8 = &r.candidates[r.all_int8.unwrap()];
    assert!(
        chosen.bytes < int8.bytes,
        "{} vs {}",
        chosen.bytes,
        int8.bytes
    );
    assert!(
        chosen.levels.contains(&Level::Int4),
        "{}",
        chosen.assignment
    );
    assert!(r.test.within_budget, "{:?}", r.test);
    assert_eq!(r.test.samples, 2000);
    // Only allowed levels were tried.
    assert!(r
        .candidates
        .iter()
        .all(|c| !c.levels.contains(&Level::Binary)));
}

#[test]
fn search_stops_on_its_time_budget_with_fp32_written() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup("mnist-mlp", 200, 0);
    let mut config = search_config(dir.path().join("mlp.onnx"), 0.01, vec![Level::Int8]);
    config.spec.time_budget = Some(Duration::from_millis(1));
    config.spec.test_limit = Some(200);
    let r = search_checked(&s, &config);
    assert!(r.stopped.as_deref().unwrap().contains("time budget"));
    assert_eq!(r.candidates.len(), 1);
    assert_eq!(r.candidates[0].levels, vec![Level::Fp32; 2]);
}

#[test]
fn a_cancelled_search_keeps_and_reports_its_best_so_far() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup("mnist-mlp", 200, 0);
    let mut config = search_config(dir.path().join("mlp.onnx"), 0.01, vec![Level::Int8]);
    config.spec.test_limit = Some(200);
    config.cancel = Some(std::sync::Arc::new(std::sync::atomic::AtomicBool::new(
        true,
    )));
    let r = search_checked(&s, &config);
    assert!(
        r.stopped.as_deref().unwrap().starts_with("interrupted"),
        "{:?}",
        r.stopped
    );
    assert_eq!(r.candidates.len(), 1, "FP32 only: a model is on disk");
}

/// The check: on the CNN with a 0.3% budget the search (validation data only) returns
/// a model that meets the budget on the whole test split and is smaller than all-INT8, with
/// its latency measured.
#[test]
fn search_on_mnist_cnn_meets_a_0_3_percent_budget_on_the_test_split() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup("mnist-cnn", 2000, 0);
    let config = search_config(dir.path().join("cnn.onnx"), 0.003, Level::ALL[1..].to_vec());
    let r = search_checked(&s, &config);
    let chosen = &r.candidates[r.chosen];
    let int8 = &r.candidates[r.all_int8.unwrap()];
    assert!(
        chosen.bytes < int8.bytes,
        "{} vs {}",
        chosen.bytes,
        int8.bytes
    );
    assert!(int8.timed.is_some());
    assert_eq!(r.test.samples, 10_000);
    assert!(r.test.within_budget, "{:?}", r.test);
}

fn first_batch(s: &Setup, n: usize) -> quench::tensor::Tensor {
    s.data.batch(0..n).unwrap()
}

/// FP32 on both runtimes must not part anywhere: only summation order differs.
#[test]
fn drift_of_fp32_mnist_cnn_shows_no_parting() {
    let s = setup("mnist-cnn", 16, 0);
    let r = quench::explore::drift::drift(
        &s.graph,
        s.data.input_name(),
        &first_batch(&s, 8),
        1,
        quench::explore::drift::DEFAULT_THRESHOLD_DB,
        false,
    )
    .unwrap();
    assert_eq!(r.first_parting, None);
    assert!(r.native_kernels_unchanged);
    // Every node's output but conv1/conv2/fc1's, which a Relu reads (and the engine fuses).
    assert_eq!(r.tensors.len(), s.graph.nodes.len() - 3);
    assert!(
        r.tensors.iter().all(|t| t.sqnr_db > 80.0),
        "{:?}",
        r.tensors
    );
    assert_eq!(r.tensors.last().unwrap().tensor, "logits");
}

/// The f32 tensors drift picks in a quantized (QDQ) graph are typed right: ORT, which checks
/// declared output types, loads and runs the graph exposing them all.
#[test]
fn drift_exposes_only_f32_tensors_of_a_qdq_graph() {
    use quench::runtime::Runtime;
    let s = setup("mnist-mlp", 16, 0);
    let q = s.quantize(&s.scheme(&[Level::Int8, Level::Int8])).unwrap();
    let (values, skipped) = quench::explore::drift::f32_values(&q);
    assert!(skipped > 0, "QuantizeLinear outputs are u8");
    let names: Vec<String> = values.into_iter().map(|(n, _)| n).collect();
    assert!(names.len() > 2);
    let exposed = quench::quant::probe::expose(&q, &names).unwrap();
    let mut rt = quench::quant::pipeline::session(&exposed).unwrap();
    let outs = rt
        .run(&[(s.data.input_name(), &first_batch(&s, 4))])
        .unwrap();
    assert_eq!(outs.len(), rt.output_names().len());
    assert!(outs.iter().all(|t| t.as_f32().is_ok()));
}

/// An all-INT8 CNN on the native integer kernels against ORT: every quantized layer's integer
/// output is compared, exposing them leaves the native kernels as they were, and nothing parts.
#[test]
fn drift_of_an_int8_cnn_compares_integer_layer_outputs() {
    let s = setup("mnist-cnn", 16, 0);
    let q = s.quantize(&s.scheme(&[Level::Int8; 4])).unwrap();
    let r = quench::explore::drift::drift(
        &q,
        s.data.input_name(),
        &first_batch(&s, 8),
        1,
        quench::explore::drift::DEFAULT_THRESHOLD_DB,
        false,
    )
    .unwrap();
    assert!(r.native_kernels_unchanged);
    let quantize_outputs = r
        .tensors
        .iter()
        .filter(|t| t.op_type == "QuantizeLinear")
        .count();
    assert!(quantize_outputs >= 5, "{:?}", r.tensors);
    assert_eq!(r.first_parting, None, "{:?}", r.tensors);
}

/// With `Auto`, a latency search times on the native engine when it runs the levels (INT8 QDQ
/// here), and every candidate carries its measured timing.
#[test]
fn latency_search_times_every_candidate_on_the_native_engine() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup("mnist-mlp", 300, 0);
    let mut config = search_config(dir.path().join("mlp.onnx"), 0.01, vec![Level::Int8]);
    config.spec.objective = Objective::Latency;
    config.spec.runtime = RuntimeChoice::Auto;
    config.spec.test_limit = Some(500);
    let r = search_checked(&s, &config);
    assert_eq!(r.runtime, RuntimeKind::Native, "{:?}", r.runtime_note);
    assert!(r.candidates.iter().all(|c| c.timed.is_some()));
    assert!(r
        .candidates
        .iter()
        .all(|c| c.objective == c.timed.as_ref().unwrap().latency_ratio));
}
