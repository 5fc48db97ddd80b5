//! Load → save → load keeps every bundled model identical, and ONNX Runtime runs the saved bytes
//! with the same outputs as the original file.

use std::path::Path;

use quench::runtime::ort::{OrtOptions, OrtRuntime};
use quench::runtime::Runtime;
use quench::tensor::Tensor;

fn assets() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/models"))
}

#[test]
fn bundled_models_round_trip_and_ort_runs_the_saved_bytes() {
    for (model, input, shape) in [
        ("mnist-mlp.onnx", "input", vec![2, 784]),
        ("mnist-cnn.onnx", "input", vec![2, 1, 28, 28]),
        ("textdir-cls.onnx", "x", vec![2, 3, 48, 192]),
    ] {
        let path = assets().join(model);
        let graph = quench::onnx::load(&path).unwrap();
        let bytes = quench::onnx::to_bytes(&graph).unwrap();
        let again = quench::onnx::load_bytes(&bytes, None).unwrap();
        assert_eq!(graph, again, "{model}: the graph changed in a round trip");

        let n: usize = shape.iter().product();
        let x = Tensor::from_f32(
            shape,
            (0..n)
                .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
                .collect(),
        )
        .unwrap();
        let options = OrtOptions::new(1);
        let original = OrtRuntime::from_file(&path, &options)
            .unwrap()
            .run(&[(input, &x)])
            .unwrap();
        let saved = OrtRuntime::from_bytes(&bytes, &options)
            .unwrap()
            .run(&[(input, &x)])
            .unwrap();
        assert_eq!(
            original, saved,
            "{model}: ORT's outputs differ on the saved model"
        );
    }
}
