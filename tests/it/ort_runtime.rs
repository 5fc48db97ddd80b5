//! ONNX Runtime through `OrtRuntime`, on the tiny models in tests/fixtures (made by
//! scripts/make_ort_fixtures.py). The library is found by the normal discovery: the project's
//! `.venv` (see README) or `ORT_DYLIB_PATH`.

use std::path::{Path, PathBuf};

use quench::eval::manifest::{InputSpec, OutputKind};
use quench::eval::{evaluate, metrics, Dataset};
use quench::runtime::ort::{ort_library, OptLevel, OrtOptions, OrtRuntime};
use quench::runtime::{Runtime, RuntimeError};
use quench::tensor::{Tensor, TensorData};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn loads_the_library_and_reports_its_version() {
    let lib = ort_library().unwrap();
    assert!(lib.version.starts_with("1."), "{}", lib.version);
    let rt = OrtRuntime::from_file(&fixture("add.onnx"), &OrtOptions::new(1)).unwrap();
    assert_eq!(rt.kernel_names(), vec![format!("ort-cpu-{}", lib.version)]);
    assert_eq!((rt.name(), rt.threads()), ("ort", 1));
}

#[test]
fn adds_from_file_and_from_bytes() {
    let a = Tensor::from_f32(vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let b = Tensor::from_f32(vec![2, 3], vec![0.5, -2.0, 0.0, 10.0, 0.25, -6.0]).unwrap();
    let bytes = std::fs::read(fixture("add.onnx")).unwrap();
    let options = OrtOptions {
        threads: 2,
        opt_level: OptLevel::Disable,
        spin: false,
    };
    for mut rt in [
        OrtRuntime::from_file(&fixture("add.onnx"), &OrtOptions::new(1)).unwrap(),
        OrtRuntime::from_bytes(&bytes, &options).unwrap(),
    ] {
        assert_eq!(rt.input_names(), ["A", "B"]);
        assert_eq!(rt.output_names(), ["C"]);
        // Inputs given out of declaration order are matched by name.
        let out = rt.run(&[("B", &b), ("A", &a)]).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].shape(), &[2, 3]);
        assert_eq!(out[0].as_f32().unwrap(), &[1.5, 0.0, 3.0, 14.0, 5.25, 0.0]);
    }
}

#[test]
fn converts_every_element_type_both_ways() {
    let mut rt = OrtRuntime::from_file(&fixture("types.onnx"), &OrtOptions::new(1)).unwrap();
    let f = Tensor::from_f32(vec![1, 2], vec![1.5, -2.0]).unwrap();
    let l = Tensor::from_i64(vec![1, 2], vec![i64::MAX, -7]).unwrap();
    let i = Tensor::new(vec![1, 2], TensorData::I32(vec![70000, -1])).unwrap();
    let u = Tensor::new(vec![1, 2], TensorData::U8(vec![0, 255])).unwrap();
    let s = Tensor::new(vec![1, 2], TensorData::I8(vec![127, -5])).unwrap();
    let out = rt
        .run(&[("fi", &f), ("li", &l), ("ii", &i), ("ui", &u), ("si", &s)])
        .unwrap();
    let want = [
        TensorData::F32(vec![-1.5, 2.0]),
        TensorData::I64(vec![-i64::MAX, 7]),
        TensorData::I32(vec![-70000, 1]),
        TensorData::U8(vec![0, 255]),
        TensorData::I8(vec![-127, 5]),
    ];
    assert_eq!(out.len(), want.len());
    for (o, w) in out.iter().zip(want) {
        assert_eq!(o.shape(), &[1, 2]);
        assert_eq!(o.data(), &w);
    }
}

#[test]
fn bad_inputs_and_bad_models_are_errors_not_panics() {
    let mut rt = OrtRuntime::from_file(&fixture("add.onnx"), &OrtOptions::new(1)).unwrap();
    let a = Tensor::from_f32(vec![1, 3], vec![0.0; 3]).unwrap();
    let err = rt.run(&[("A", &a)]).unwrap_err();
    assert!(
        matches!(&err, RuntimeError::BadInput { name, .. } if name == "B"),
        "{err}"
    );
    let err = rt.run(&[("A", &a), ("B", &a), ("Z", &a)]).unwrap_err();
    assert!(
        matches!(&err, RuntimeError::BadInput { name, .. } if name == "Z"),
        "{err}"
    );
    let wrong_type = Tensor::from_i64(vec![1, 3], vec![0; 3]).unwrap();
    let err = rt.run(&[("A", &a), ("B", &wrong_type)]).unwrap_err();
    assert!(
        matches!(err, RuntimeError::Failed { runtime: "ort", .. }),
        "{err}"
    );

    let err = OrtRuntime::from_bytes(b"not a model", &OrtOptions::new(1))
        .err()
        .unwrap();
    assert!(
        matches!(err, RuntimeError::Failed { runtime: "ort", .. }),
        "{err}"
    );
    let missing = fixture("nope.onnx");
    let err = OrtRuntime::from_file(&missing, &OrtOptions::new(1))
        .err()
        .unwrap();
    assert!(err.to_string().contains("nope.onnx"), "{err}");
}

#[test]
fn evaluates_a_dataset_through_ort() {
    // logits = x·W + b with W = [I3; 1 1 1], b = [0, 0.5, 0]: the class is the largest of
    // x0, x1 + 0.5, x2 (x3 shifts all three alike).
    let samples = Tensor::from_f32(
        vec![5, 4],
        vec![
            3.0, 1.0, 0.0, 9.0, // class 0
            1.0, 0.8, 0.0, 0.0, // class 1 (0.8 + 0.5 > 1)
            0.0, 0.0, 2.0, -1.0, // class 2
            1.0, 0.4, 0.0, 0.0, // class 0 (0.4 + 0.5 < 1)
            0.0, 1.0, 5.0, 0.0, // class 2
        ],
    )
    .unwrap();
    let labels = Tensor::from_i64(vec![5], vec![0, 1, 2, 0, 1]).unwrap();
    let spec = InputSpec {
        name: "input".into(),
        sample_shape: vec![4],
        scale: 1.0,
        mean: vec![0.0],
        std: vec![1.0],
        replicate_channels: false,
    };
    let ds = Dataset::from_tensors(
        samples,
        Path::new("mem"),
        Some((labels, Path::new("labels"))),
        &spec,
        None,
    )
    .unwrap();
    let mut rt = OrtRuntime::from_file(&fixture("linear.onnx"), &OrtOptions::new(1)).unwrap();
    let r = evaluate(&mut rt, &ds, 2, 0).unwrap();
    assert_eq!(r.samples, 5);
    assert_eq!(r.correct, Some(4));
    assert_eq!(r.accuracy, Some(0.8));
    assert_eq!(r.outputs.shape(), &[5, 3]);
    assert_eq!(&r.outputs.as_f32().unwrap()[..3], &[12.0, 10.5, 9.0]);
    assert_eq!(metrics::top1(&r.outputs).unwrap(), vec![0, 1, 2, 0, 2]);

    // The same pass in one batch agrees exactly; asking for a second output is an error.
    let again = evaluate(&mut rt, &ds, 64, 0).unwrap();
    assert_eq!(metrics::agreement(&r.outputs, &again.outputs).unwrap(), 1.0);
    assert_eq!(
        metrics::mean_kl(&r.outputs, &again.outputs, OutputKind::Logits).unwrap(),
        0.0
    );
    let err = evaluate(&mut rt, &ds, 2, 1).unwrap_err().to_string();
    assert!(err.contains("only 1 output"), "{err}");
}
