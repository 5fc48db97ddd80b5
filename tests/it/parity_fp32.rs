//! Native FP32 against ONNX Runtime FP32 on the three bundled models and their whole test sets.
//!
//! For every sample, the difference of the two runtimes' logits is measured relative to the
//! largest |logit| of that sample by ORT: `max_i |native_i − ort_i| / max_i |ort_i|` must be
//! ≤ 1e-4 (a per-element relative difference would blow up on logits near zero). The logits are
//! the manifest's output, except when that output is a `Sigmoid`: then its input is compared
//! (mnist-mlp's scores are sigmoids; on a sample whose ten scores are all below 4e-4, ORT's
//! sigmoid alone is 1.7e-4 off the float64 value relative to the largest score, so the
//! sigmoid's own rounding would be measured instead of the network). textdir-cls's output is a
//! 2-class softmax: its probabilities are compared. The top-1
//! classes must agree on at least 99.9% of the samples, and native accuracy must equal the
//! figure the manifest records (`[expected] fp32_accuracy`, measured with ORT when the assets
//! were built: mnist-mlp 95.59%, mnist-cnn 99.05%, textdir-cls 91.30%).
//!
//! Needs ONNX Runtime's library (found as `quench::runtime::ort` finds it); without it the test
//! fails with the install hint rather than passing silently.

use std::path::Path;

use quench::eval::{evaluate, metrics, output_index, Dataset, Manifest};
use quench::graph::{Graph, ValueInfo};
use quench::runtime::native::NativeRuntime;
use quench::runtime::ort::{OrtOptions, OrtRuntime};
use quench::runtime::Runtime;
use quench::tensor::{DataType, Tensor};

/// Largest allowed `max |native − ort| / max |ort|` per sample.
const TOLERANCE: f64 = 1e-4;
/// Smallest allowed share of samples whose top-1 class agrees.
const MIN_AGREEMENT: f64 = 0.999;
/// Samples per run.
const BATCH: usize = 100;

/// `graph` with the input of the `Sigmoid` producing `output` as its only output, when a
/// `Sigmoid` produces it.
fn logits_graph(graph: &Graph, output: &str) -> Option<Graph> {
    let node = graph
        .nodes
        .iter()
        .find(|n| n.outputs.iter().any(|o| o == output))?;
    if node.op_type != "Sigmoid" {
        return None;
    }
    let mut g = graph.clone();
    g.outputs = vec![ValueInfo {
        name: node.inputs[0].clone(),
        dtype: DataType::F32,
        shape: None,
    }];
    Some(g)
}

/// The first output of every sample, in batches of [`BATCH`].
fn run_all(rt: &mut dyn Runtime, data: &Dataset) -> Tensor {
    evaluate(rt, data, BATCH, 0).unwrap().outputs
}

fn check(model: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("assets/models/{model}.toml"));
    let manifest = Manifest::load(&path).unwrap();
    let data = Dataset::load(&manifest.data.test, &manifest.input, None).unwrap();
    let graph = quench::onnx::load(&manifest.model.file).unwrap();
    let outputs: Vec<String> = graph.outputs.iter().map(|o| o.name.clone()).collect();
    let out = output_index(&manifest.output, &outputs).unwrap();
    let mut native = NativeRuntime::new(graph.clone(), 2).unwrap();
    let mut ort = OrtRuntime::from_file(&manifest.model.file, &OrtOptions::new(2))
        .unwrap_or_else(|e| panic!("ONNX Runtime is needed for this test: {e}"));

    let n = evaluate(&mut native, &data, BATCH, out).unwrap();
    let o = evaluate(&mut ort, &data, BATCH, out).unwrap();

    let (nl, ol) = match logits_graph(&graph, &outputs[out]) {
        Some(g) => {
            let bytes = quench::onnx::to_bytes(&g).unwrap();
            let mut ort = OrtRuntime::from_bytes(&bytes, &OrtOptions::new(2)).unwrap();
            let mut native = NativeRuntime::new(g, 2).unwrap();
            (run_all(&mut native, &data), run_all(&mut ort, &data))
        }
        None => (n.outputs.clone(), o.outputs.clone()),
    };
    let (nv, ov) = (nl.as_f32().unwrap(), ol.as_f32().unwrap());
    assert_eq!(nl.shape(), ol.shape(), "{model}: logit shapes");
    let per = nv.len() / data.len();
    let mut worst = (0.0f64, 0usize);
    for (i, (a, b)) in nv.chunks(per).zip(ov.chunks(per)).enumerate() {
        let scale = b.iter().fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
        let diff = a
            .iter()
            .zip(b)
            .fold(0.0f64, |m, (&p, &q)| m.max(f64::from(p - q).abs()));
        let rel = diff / scale.max(f64::MIN_POSITIVE);
        assert!(!rel.is_nan(), "{model}: sample {i} has a NaN");
        if rel > worst.0 {
            worst = (rel, i);
        }
    }
    assert!(
        worst.0 <= TOLERANCE,
        "{model}: sample {} differs by {:.2e} of its max |logit| (limit {TOLERANCE:.0e})",
        worst.1,
        worst.0
    );

    let agreement = metrics::agreement(&o.outputs, &n.outputs).unwrap();
    assert!(
        agreement >= MIN_AGREEMENT,
        "{model}: top-1 agreement {agreement} < {MIN_AGREEMENT}"
    );

    let expected = manifest.expected.fp32_accuracy.unwrap();
    let (na, oa) = (n.accuracy.unwrap(), o.accuracy.unwrap());
    let samples = data.len() as f64;
    // The manifest holds the figure rounded to 4 decimals; a count differs by whole samples.
    assert!(
        ((na - expected) * samples).abs() < 0.5,
        "{model}: native accuracy {na} != expected {expected}"
    );
    assert!(
        ((oa - expected) * samples).abs() < 0.5,
        "{model}: ORT accuracy {oa} != expected {expected}"
    );
    eprintln!(
        "{model}: {} samples, worst rel diff {:.2e} (sample {}), agreement {agreement}, accuracy {na}",
        data.len(),
        worst.0,
        worst.1
    );
}

#[test]
fn mnist_mlp_native_matches_ort() {
    check("mnist-mlp");
}

#[test]
fn mnist_cnn_native_matches_ort() {
    check("mnist-cnn");
}

#[test]
fn textdir_cls_native_matches_ort() {
    check("textdir-cls");
}
