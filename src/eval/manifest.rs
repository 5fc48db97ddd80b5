//! Model manifests: the TOML file beside a model that says how to feed it (input name, sample
//! shape, normalisation), what it outputs, and where its data splits are (see MANIFEST-SPEC).
//! The same [`Manifest`] can be built from command-line flags for a user's own model.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::tensor::checked_numel;

/// Largest number of elements one sample may have (2^28, a 1 GiB f32 sample).
pub const MAX_SAMPLE_ELEMENTS: usize = 1 << 28;

/// A manifest that could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The manifest file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The TOML is malformed, has an unknown key or a value of the wrong type.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        /// The manifest file.
        path: PathBuf,
        /// 1-based line of the offending text.
        line: usize,
        /// 1-based column of the offending text.
        column: usize,
        /// What TOML parsing said (it names the key).
        message: String,
    },
    /// A value is well-typed but not acceptable.
    #[error("{path}: {key}: {message}")]
    Invalid {
        /// The manifest file, or `command line` for a manifest built from flags.
        path: PathBuf,
        /// The key (`input.std`) or flag (`--std`) at fault.
        key: String,
        /// What is wrong, with the bad value.
        message: String,
    },
}

/// How to feed a model, what it outputs and where its data is.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The model file and its description.
    pub model: ModelInfo,
    /// The graph input and the preprocessing of stored samples into it.
    pub input: InputSpec,
    /// The output to score.
    #[serde(default)]
    pub output: OutputSpec,
    /// Where the samples and labels of each split are.
    pub data: DataSplits,
    /// Figures measured when the assets were built.
    #[serde(default)]
    pub expected: Expected,
}

/// The `[model]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    /// The `.onnx` file (resolved against the manifest's folder by [`Manifest::load`]).
    pub file: PathBuf,
    /// Short name for tables; defaults to the model file's stem.
    #[serde(default)]
    pub name: String,
    /// One line saying what the model is.
    #[serde(default)]
    pub description: Option<String>,
    /// Where the model came from, with its licence.
    #[serde(default)]
    pub source: Option<String>,
}

/// The `[input]` table: which graph input receives the samples and how stored values become
/// model inputs: `((x * scale) - mean[c]) / std[c]`, `c` the channel (index along
/// `sample_shape[0]` for samples of rank ≥ 3).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Graph input name.
    pub name: String,
    /// Per-sample shape; the batch dimension is prepended.
    pub sample_shape: Vec<usize>,
    /// Multiplier applied to stored values first.
    #[serde(default = "one")]
    pub scale: f32,
    /// Per-channel (or single) mean subtracted after scaling.
    #[serde(default = "zeros")]
    pub mean: Vec<f32>,
    /// Per-channel (or single) divisor applied last.
    #[serde(default = "ones")]
    pub std: Vec<f32>,
    /// The stored sample is one grey plane, copied into each of `sample_shape[0]` channels.
    #[serde(default)]
    pub replicate_channels: bool,
}

fn one() -> f32 {
    1.0
}
fn zeros() -> Vec<f32> {
    vec![0.0]
}
fn ones() -> Vec<f32> {
    vec![1.0]
}

/// What the scored output holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// Unnormalised scores: softmax is applied before comparing distributions.
    #[default]
    Logits,
    /// Already a probability distribution (the model ends in Softmax).
    Probabilities,
}

/// The `[output]` table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Graph output to score; `None` means the first graph output.
    #[serde(default)]
    pub name: Option<String>,
    /// Logits or probabilities.
    #[serde(default)]
    pub kind: OutputKind,
}

/// One data split: samples (first dimension indexes samples) and optional labels.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Split {
    /// IDX or NPY file of samples.
    pub samples: PathBuf,
    /// IDX or NPY file of integer class labels; without them only agreement can be measured.
    #[serde(default)]
    pub labels: Option<PathBuf>,
}

/// The `[data.*]` tables.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSplits {
    /// Evaluation split: never used to calibrate or train.
    pub test: Split,
    /// Calibration and fine-tuning split.
    #[serde(default)]
    pub calibration: Option<Split>,
    /// Held-out split for searches.
    #[serde(default)]
    pub validation: Option<Split>,
}

/// The `[expected]` table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    /// Top-1 accuracy of the FP32 model on the test split, as measured with ONNX Runtime.
    #[serde(default)]
    pub fp32_accuracy: Option<f64>,
}

/// What a command line gives for a user's own model, in place of a manifest file.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestFlags {
    /// The `.onnx` file.
    pub model: PathBuf,
    /// `--input-name`: graph input that receives the samples.
    pub input_name: String,
    /// `--sample-shape`: per-sample shape without the batch dimension.
    pub sample_shape: Vec<usize>,
    /// `--scale`.
    pub scale: f32,
    /// `--mean`: one value or one per channel.
    pub mean: Vec<f32>,
    /// `--std`: one value or one per channel.
    pub std: Vec<f32>,
    /// `--replicate-channels`.
    pub replicate_channels: bool,
    /// `--samples`: IDX or NPY file.
    pub samples: PathBuf,
    /// `--labels`: optional IDX or NPY file.
    pub labels: Option<PathBuf>,
    /// `--output-name`: defaults to the first graph output.
    pub output_name: Option<String>,
    /// `--output-kind`.
    pub output_kind: OutputKind,
}

impl Manifest {
    /// Reads and validates a manifest; relative paths in it are resolved against its folder.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut manifest = Manifest::parse(&text, path)?;
        let dir = path.parent().unwrap_or_else(|| Path::new(""));
        manifest.resolve_paths(dir);
        Ok(manifest)
    }

    /// Parses and validates manifest text; `origin` names it in errors. Paths stay as written.
    pub fn parse(text: &str, origin: &Path) -> Result<Manifest, ManifestError> {
        let mut manifest: Manifest = toml::from_str(text).map_err(|e| {
            let (line, column) = line_column(text, e.span().map_or(0, |s| s.start));
            ManifestError::Syntax {
                path: origin.to_path_buf(),
                line,
                column,
                message: e.message().trim().to_string(),
            }
        })?;
        manifest.fill_defaults();
        manifest
            .validate()
            .map_err(|(key, message)| ManifestError::Invalid {
                path: origin.to_path_buf(),
                key: key.to_string(),
                message,
            })?;
        Ok(manifest)
    }

    /// A manifest for a user's own model from command-line flags (paths as given, relative to
    /// the working directory); errors name the flag.
    pub fn from_flags(flags: ManifestFlags) -> Result<Manifest, ManifestError> {
        let mut manifest = Manifest {
            model: ModelInfo {
                file: flags.model,
                name: String::new(),
                description: None,
                source: None,
            },
            input: InputSpec {
                name: flags.input_name,
                sample_shape: flags.sample_shape,
                scale: flags.scale,
                mean: flags.mean,
                std: flags.std,
                replicate_channels: flags.replicate_channels,
            },
            output: OutputSpec {
                name: flags.output_name,
                kind: flags.output_kind,
            },
            data: DataSplits {
                test: Split {
                    samples: flags.samples,
                    labels: flags.labels,
                },
                calibration: None,
                validation: None,
            },
            expected: Expected::default(),
        };
        manifest.fill_defaults();
        manifest
            .validate()
            .map_err(|(key, message)| ManifestError::Invalid {
                path: PathBuf::from("command line"),
                key: flag_for_key(key).to_string(),
                message,
            })?;
        Ok(manifest)
    }

    fn fill_defaults(&mut self) {
        if self.model.name.is_empty() {
            self.model.name = self
                .model
                .file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
        }
    }

    fn resolve_paths(&mut self, dir: &Path) {
        self.model.file = dir.join(&self.model.file);
        let splits = [
            Some(&mut self.data.test),
            self.data.calibration.as_mut(),
            self.data.validation.as_mut(),
        ];
        for split in splits.into_iter().flatten() {
            split.samples = dir.join(&split.samples);
            if let Some(labels) = split.labels.as_mut() {
                *labels = dir.join(&*labels);
            }
        }
    }

    /// Checks values serde cannot: returns the TOML key at fault and a message.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.model.name.is_empty() {
            return Err(("model.name", "is empty".into()));
        }
        self.input.validate()?;
        if let Some(acc) = self.expected.fp32_accuracy {
            if !(0.0..=1.0).contains(&acc) {
                return Err((
                    "expected.fp32_accuracy",
                    format!("{acc} is not a fraction in [0, 1]"),
                ));
            }
        }
        Ok(())
    }
}

impl InputSpec {
    /// Channels along `sample_shape[0]` for samples of rank ≥ 3, else 1.
    pub fn channels(&self) -> usize {
        match self.sample_shape.as_slice() {
            [c, _, _, ..] => *c,
            _ => 1,
        }
    }

    /// The input's name and its whole shape for `batch` samples: the known shape shape
    /// inference and the export need for models that leave their input dimensions free.
    pub fn at_batch(&self, batch: usize) -> (String, Vec<usize>) {
        let mut shape = vec![batch];
        shape.extend(&self.sample_shape);
        (self.name.clone(), shape)
    }

    /// Elements of one sample.
    pub fn sample_elements(&self) -> usize {
        self.sample_shape.iter().product()
    }

    /// Checks the shape and normalisation: returns the TOML key at fault and a message.
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.name.is_empty() {
            return Err(("input.name", "is empty".into()));
        }
        let shape = &self.sample_shape;
        if shape.is_empty() || shape.contains(&0) {
            return Err((
                "input.sample_shape",
                format!("{shape:?} must have at least one dimension, none of them 0"),
            ));
        }
        if checked_numel(shape).is_none_or(|n| n > MAX_SAMPLE_ELEMENTS) {
            return Err((
                "input.sample_shape",
                format!("{shape:?} has more than {MAX_SAMPLE_ELEMENTS} elements"),
            ));
        }
        if !self.scale.is_finite() || self.scale == 0.0 {
            return Err((
                "input.scale",
                format!("{} must be finite and non-zero", self.scale),
            ));
        }
        let channels = self.channels();
        for (key, values) in [("input.mean", &self.mean), ("input.std", &self.std)] {
            if values.len() != 1 && values.len() != channels {
                return Err((
                    key,
                    format!(
                        "has {} values; sample_shape {shape:?} has {channels} channel(s): give 1 or {channels}",
                        values.len()
                    ),
                ));
            }
            if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
                return Err((key, format!("{bad} is not finite")));
            }
        }
        if let Some(bad) = self.std.iter().find(|&&v| v == 0.0) {
            return Err((
                "input.std",
                format!("{bad}: a standard deviation cannot be 0"),
            ));
        }
        if self.replicate_channels && shape.len() < 3 {
            return Err((
                "input.replicate_channels",
                format!("needs a channels-first sample_shape of rank >= 3, not {shape:?}"),
            ));
        }
        Ok(())
    }
}

/// The command-line flag that sets a manifest key (see [`ManifestFlags`]).
fn flag_for_key(key: &'static str) -> &'static str {
    match key {
        "model.name" => "--model",
        "input.name" => "--input-name",
        "input.sample_shape" => "--sample-shape",
        "input.scale" => "--scale",
        "input.mean" => "--mean",
        "input.std" => "--std",
        "input.replicate_channels" => "--replicate-channels",
        other => other,
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CNN: &str = r#"
[model]
file = "mnist-cnn.onnx"
name = "mnist-cnn"
description = "MNIST CNN"
source = "PyPI ccexam==1.0.0 (MIT)"

[input]
name = "input"
sample_shape = [1, 28, 28]
scale = 0.00392156862745098
mean = [0.1307]
std = [0.3081]
replicate_channels = false

[output]
name = "logits"
kind = "logits"

[data.test]
samples = "../data/mnist-test-images.idx.gz"
labels = "../data/mnist-test-labels.idx.gz"

[data.calibration]
samples = "../data/mnist-train-images.idx.gz"
labels = "../data/mnist-train-labels.idx.gz"

[expected]
fp32_accuracy = 0.9905
"#;

    #[test]
    fn loads_the_spec_example_and_resolves_paths() {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        std::fs::create_dir(&models).unwrap();
        let path = models.join("mnist-cnn.toml");
        std::fs::write(&path, CNN).unwrap();
        let m = Manifest::load(&path).unwrap();
        assert_eq!(m.model.file, models.join("mnist-cnn.onnx"));
        assert_eq!(m.input.sample_shape, vec![1, 28, 28]);
        assert_eq!(m.output.kind, OutputKind::Logits);
        assert_eq!(m.output.name.as_deref(), Some("logits"));
        assert_eq!(
            m.data.test.samples,
            models.join("../data/mnist-test-images.idx.gz")
        );
        assert!(m.data.calibration.is_some() && m.data.validation.is_none());
        assert_eq!(m.expected.fp32_accuracy, Some(0.9905));
    }

    #[test]
    fn unknown_key_error_names_key_file_and_line() {
        let text = CNN.replace(
            "replicate_channels = false",
            "replicate_channels = false\nmeen = [0.5]",
        );
        let err = Manifest::parse(&text, Path::new("m.toml")).unwrap_err();
        let line = text.lines().position(|l| l.starts_with("meen")).unwrap() + 1;
        match &err {
            ManifestError::Syntax {
                line: l,
                column,
                message,
                ..
            } => {
                assert_eq!((*l, *column), (line, 1));
                assert!(message.contains("unknown field `meen`"), "{message}");
            }
            other => panic!("expected a syntax error, got {other}"),
        }
        assert!(
            err.to_string().starts_with(&format!("m.toml:{line}:1: ")),
            "{err}"
        );

        let text = CNN.replace("[data.test]", "[data.train]\nsamples = \"x\"\n[data.test]");
        let err = Manifest::parse(&text, Path::new("m.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `train`"), "{err}");
    }

    #[test]
    fn bad_values_name_key_and_value() {
        let cases = [
            ("std = [0.3081]", "std = [0.0]", "input.std", "0"),
            (
                "mean = [0.1307]",
                "mean = [0.1, 0.2]",
                "input.mean",
                "has 2 values",
            ),
            (
                "sample_shape = [1, 28, 28]",
                "sample_shape = [0, 28]",
                "input.sample_shape",
                "[0, 28]",
            ),
            (
                "replicate_channels = false",
                "replicate_channels = true\nsample_shape2 = 1",
                "",
                "sample_shape2",
            ),
            (
                "fp32_accuracy = 0.9905",
                "fp32_accuracy = 99.05",
                "expected.fp32_accuracy",
                "99.05",
            ),
            ("kind = \"logits\"", "kind = \"scores\"", "", "scores"),
        ];
        for (from, to, key, value) in cases {
            let err = Manifest::parse(&CNN.replace(from, to), Path::new("m.toml")).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(key) && text.contains(value), "{to}: {text}");
        }
    }

    #[test]
    fn replicate_channels_needs_channels_first_shape() {
        let text = CNN.replace("replicate_channels = false", "replicate_channels = true");
        Manifest::parse(&text, Path::new("m.toml")).unwrap();
        let text = text.replace("sample_shape = [1, 28, 28]", "sample_shape = [784]");
        let err = Manifest::parse(&text, Path::new("m.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("input.replicate_channels"), "{err}");
    }

    fn flags() -> ManifestFlags {
        ManifestFlags {
            model: PathBuf::from("my/model.onnx"),
            input_name: "x".into(),
            sample_shape: vec![3, 4, 4],
            scale: 1.0 / 255.0,
            mean: vec![0.5, 0.4, 0.3],
            std: vec![0.2],
            replicate_channels: false,
            samples: PathBuf::from("samples.npy"),
            labels: None,
            output_name: None,
            output_kind: OutputKind::Probabilities,
        }
    }

    #[test]
    fn builds_from_flags_and_names_flags_in_errors() {
        let m = Manifest::from_flags(flags()).unwrap();
        assert_eq!(m.model.name, "model");
        assert_eq!(m.input.channels(), 3);
        assert_eq!(m.data.test.samples, PathBuf::from("samples.npy"));
        assert_eq!(m.output.kind, OutputKind::Probabilities);

        let mut f = flags();
        f.mean = vec![0.5, 0.5];
        let err = Manifest::from_flags(f).unwrap_err().to_string();
        assert!(
            err.starts_with("command line: --mean: has 2 values"),
            "{err}"
        );
    }
}
