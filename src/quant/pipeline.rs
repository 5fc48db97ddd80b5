//! The whole `quench quantize` job as one call: check the requested precision and method, find
//! activation ranges (calibration on the manifest's calibration split through ONNX Runtime, or
//! quantization-aware training on it), export, write the model, and measure what changed: file
//! size, test accuracy of FP32 and quantized on ORT, top-1 agreement and KL against FP32, and
//! each quantizable layer's output error on a few calibration samples. The result is a serde
//! [`QuantizeSummary`], so the command line only prints it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::engine::Plan;
use crate::eval::metrics::{self, ErrorSums, MetricError};
use crate::eval::{evaluate, output_index, DataError, Dataset, EvalError, Manifest};
use crate::graph::Graph;
use crate::quant::bias;
use crate::quant::layer::{is_quantizable, quantized_output};
use crate::quant::layer_error::LayerError;
use crate::quant::probe::{calibration_sites, expose, Calibrators};
use crate::quant::qat::{self, BitSchedule, QatConfig, QatError, QatEvent, WeightBits};
use crate::quant::scheme::{ActQuant, ActType, BinaryActs, Int8Mode, Precision, DEFAULT_BINS};
use crate::quant::{CalibratedRange, Calibration, QuantError, Scheme};
use crate::runtime::ort::{OrtOptions, OrtRuntime};
use crate::runtime::{Runtime, RuntimeError, RuntimeKind};
use crate::tensor::Tensor;

/// Calibration samples used when none are asked for (post-training quantization).
pub const DEFAULT_CALIB_SAMPLES: usize = 1000;
/// Calibration samples the per-layer errors are measured on.
pub const LAYER_SAMPLES: usize = 100;
/// The percentile calibrator's share of the histogram kept when none is asked for. 99.999
/// rather than ORT's 99.99: PP-OCR's MobileNetV3 classifier (textdir-cls) keeps 98.4% top-1
/// agreement with FP32 at 99.99 and more at 99.999 (a deep net accumulates the clipping
/// error of ~100 sites; ORT's own quantizer goes from 97.9% to 99.0% there).
pub const DEFAULT_PERCENTILE: f64 = 99.999;
/// Batch size of the ORT passes.
const BATCH: usize = 100;

/// Target precision of the quantizable layers (Conv, Gemm, MatMul).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// 8-bit weights and activations.
    Int8,
    /// 4-bit weights in groups (ORT `MatMulNBits`), FP32 activations.
    Int4,
    /// Binary weights `sign(W)·α` with INT8 activations.
    Binary,
}

/// How the quantization parameters are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Activation scales computed per run (INT8 only).
    Dynamic,
    /// Activation ranges calibrated once and stored in the model.
    Static,
    /// Weights only, activations stay FP32 (4-bit).
    WeightOnly,
    /// Quantization-aware training, then a static export with the trained ranges.
    Qat,
}

/// Which runtime runs the FP32 model while static activation ranges are calibrated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CalibrateOn {
    /// Quench's own engine, observing the tapped values in its arena (no ONNX Runtime needed).
    #[default]
    Native,
    /// ONNX Runtime, with the calibrated tensors exposed as extra graph outputs.
    Ort,
}

impl CalibrateOn {
    /// Lowercase name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            CalibrateOn::Native => "native",
            CalibrateOn::Ort => "ort",
        }
    }
}

/// The histogram or min/max rule for static activation ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CalibratorKind {
    /// Smallest and largest value.
    MinMax,
    /// The central [`DEFAULT_PERCENTILE`]% of a histogram (or `--percentile`'s share).
    Percentile,
    /// The KL-optimal clipping threshold (TensorRT's).
    Entropy,
    /// The squared-error-optimal clipping threshold.
    Mse,
}

impl CalibratorKind {
    /// Lowercase name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            CalibratorKind::MinMax => "minmax",
            CalibratorKind::Percentile => "percentile",
            CalibratorKind::Entropy => "entropy",
            CalibratorKind::Mse => "mse",
        }
    }

    /// The calibration with quench's default parameters.
    pub fn calibration(self) -> Calibration {
        match self {
            CalibratorKind::MinMax => Calibration::MinMax,
            CalibratorKind::Percentile => Calibration::Percentile {
                percentile: DEFAULT_PERCENTILE,
                num_bins: DEFAULT_BINS,
            },
            CalibratorKind::Entropy => Calibration::Entropy {
                num_bins: DEFAULT_BINS,
                num_quantized_bins: 128,
            },
            CalibratorKind::Mse => Calibration::Mse {
                num_bins: DEFAULT_BINS,
            },
        }
    }
}

impl Target {
    /// Lowercase name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Target::Int8 => "int8",
            Target::Int4 => "int4",
            Target::Binary => "binary",
        }
    }

    /// The methods this precision takes.
    pub fn methods(self) -> &'static [Method] {
        match self {
            Target::Int8 => &[Method::Static, Method::Dynamic, Method::Qat],
            Target::Int4 => &[Method::WeightOnly, Method::Qat],
            Target::Binary => &[Method::Static, Method::Qat],
        }
    }

    /// The method used when none is asked for.
    pub fn default_method(self) -> Method {
        self.methods()[0]
    }

    fn weight_bits(self) -> WeightBits {
        match self {
            Target::Int8 => WeightBits::Int8,
            Target::Int4 => WeightBits::Int4,
            Target::Binary => WeightBits::Binary,
        }
    }
}

impl Method {
    /// Lowercase name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Method::Dynamic => "dynamic",
            Method::Static => "static",
            Method::WeightOnly => "weight-only",
            Method::Qat => "qat",
        }
    }
}

/// What a binary layer's activations become (`--binary-acts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BinaryInput {
    /// INT8 through a calibrated QuantizeLinear/DequantizeLinear pair (the default).
    Int8,
    /// `Sign(x)`: binary (−1/0/+1) activations, no calibration.
    Binary,
}

impl BinaryInput {
    /// Lowercase name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            BinaryInput::Int8 => "int8",
            BinaryInput::Binary => "binary",
        }
    }
}

/// Everything `quench quantize` is told.
#[derive(Debug, Clone)]
pub struct QuantizeConfig {
    /// The FP32 model.
    pub model: PathBuf,
    /// Its manifest (data, preprocessing, scored output).
    pub manifest: Manifest,
    /// Target precision.
    pub precision: Target,
    /// Method; `None`: the precision's default ([`Target::default_method`]).
    pub method: Option<Method>,
    /// Static range rule; `None`: MinMax where one applies.
    pub calibrator: Option<CalibratorKind>,
    /// The percentile calibrator's share kept, in `(0, 100]`; `None`: [`DEFAULT_PERCENTILE`].
    pub percentile: Option<f64>,
    /// One INT8 weight scale per tensor instead of per output channel.
    pub per_tensor: bool,
    /// 4-bit group size; `None`: 32.
    pub group: Option<usize>,
    /// Activations of binary layers; `None`: [`BinaryInput::Int8`].
    pub binary_acts: Option<BinaryInput>,
    /// The runtime static calibration runs the FP32 model on.
    pub calibrate_on: CalibrateOn,
    /// Calibration samples (PTQ; default [`DEFAULT_CALIB_SAMPLES`]) or training samples (QAT;
    /// default the whole calibration split).
    pub calib_samples: Option<usize>,
    /// QAT epochs; `None`: 1.
    pub epochs: Option<usize>,
    /// Static INT8: correct each layer's bias for the mean shift quantization causes in its
    /// output, measured on the calibration samples (see [`crate::quant::bias`];
    /// `--bias-correction`). Off by default: it helps textdir-cls with the MSE calibrator but
    /// wrecks mnist-cnn with the entropy one (measured figures in the README).
    pub bias_correction: bool,
    /// Evaluate on the first `limit` test samples only.
    pub limit: Option<usize>,
    /// Where the quantized model is written.
    pub out: PathBuf,
}

/// Why `quench quantize` stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A precision/method/option combination that does not exist.
    #[error("{0}")]
    Invalid(String),
    /// The manifest has no calibration split to calibrate or train on.
    #[error(
        "{0}: the manifest has no [data.calibration] split (calibration never uses the test split)"
    )]
    NoCalibration(String),
    /// Quantization failed.
    #[error(transparent)]
    Quant(#[from] QuantError),
    /// Training failed.
    #[error(transparent)]
    Qat(#[from] QatError),
    /// Data could not be read.
    #[error(transparent)]
    Data(#[from] DataError),
    /// An evaluation pass failed.
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// ONNX Runtime failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The native engine failed.
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    /// A model could not be read or written.
    #[error(transparent)]
    Onnx(#[from] crate::onnx::OnnxError),
    /// Outputs could not be compared.
    #[error(transparent)]
    Metric(#[from] MetricError),
    /// The model's shapes (for per-layer MACs) could not be worked out.
    #[error("working out layer shapes: {0}")]
    Graph(#[from] crate::graph::GraphError),
    /// A file's size could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A layer's output is missing from the quantized graph, so it cannot be compared.
    #[error("layer `{layer}`: its output `{tensor}` is not in the quantized graph")]
    LostTensor {
        /// Node name.
        layer: String,
        /// The tensor.
        tensor: String,
    },
}

/// File sizes in bytes.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sizes {
    /// The FP32 model file.
    pub fp32_bytes: u64,
    /// The quantized model file.
    pub quantized_bytes: u64,
}

/// Test-split results on ONNX Runtime.
#[derive(Debug, Clone, Serialize)]
pub struct TestResults {
    /// Samples scored.
    pub samples: usize,
    /// FP32 top-1 accuracy (with labels).
    pub fp32_accuracy: Option<f64>,
    /// Quantized top-1 accuracy (with labels).
    pub quantized_accuracy: Option<f64>,
    /// Fraction of samples whose top-1 class is FP32's.
    pub top1_agreement: f64,
    /// Mean KL(FP32 ‖ quantized) of the output distributions, nats.
    pub kl: f64,
}

/// The quantized model on quench's own engine, over the same test samples as ORT.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum NativeResults {
    /// The engine ran it.
    Ran {
        /// Top-1 accuracy (with labels).
        accuracy: Option<f64>,
        /// Fraction of samples whose top-1 class is the one ORT gives on the same model.
        ort_agreement: f64,
    },
    /// The engine refused or failed it (e.g. an operator it does not run yet).
    Failed {
        /// The engine's error.
        reason: String,
    },
}

impl std::fmt::Display for NativeResults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NativeResults::Ran {
                accuracy,
                ort_agreement,
            } => {
                if let Some(a) = accuracy {
                    write!(f, "quantized {:.2}%; ", a * 100.0)?;
                }
                write!(f, "top-1 agreement with ORT {:.2}%", ort_agreement * 100.0)
            }
            NativeResults::Failed { reason } => write!(f, "does not run ({reason})"),
        }
    }
}

/// One quantizable layer's output in the quantized model against the original FP32 model
/// (errors accumulate: the layer sees its quantized predecessors' outputs; after QAT they also
/// include the fine-tuned weights' departure from the FP32 ones).
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    /// Node name.
    pub layer: String,
    /// Operator.
    pub op_type: String,
    /// What the export made of it.
    pub precision: String,
    /// The compared tensor (the layer output as the next layer reads it, after a sole Relu).
    pub tensor: String,
    /// Shape of the layer's output for one sample (batch 1).
    pub output_shape: Vec<usize>,
    /// Multiply-accumulates of the layer for one sample.
    pub macs: u64,
    /// The error with the quantized model run on ONNX Runtime.
    pub ort: LayerError,
    /// The error with the quantized model run on quench's engine, which computes the layer with
    /// its own kernels; `None` when the engine cannot run the model ([`Variant::native`] says
    /// why).
    pub native: Option<LayerError>,
}

impl LayerReport {
    /// The error measured on `runtime`, so that a record of a cell run there carries its own.
    pub fn on(&self, runtime: RuntimeKind) -> Option<&LayerError> {
        match runtime {
            RuntimeKind::Ort => Some(&self.ort),
            RuntimeKind::Native => self.native.as_ref(),
        }
    }
}

/// What the training of `--method qat` did.
#[derive(Debug, Clone, Serialize)]
pub struct QatSummary {
    /// Training samples (calibration split).
    pub samples: usize,
    /// Epochs run.
    pub epochs: usize,
    /// Optimisation steps run.
    pub steps: usize,
    /// Mean loss of the last epoch.
    pub last_epoch_loss: Option<f32>,
    /// Training accuracy of the last epoch (fake-quantized forward).
    pub last_epoch_accuracy: Option<f32>,
    /// Training time in seconds (0 when read from the cache).
    pub seconds: f64,
    /// The cached training result reused instead of training, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached: Option<PathBuf>,
}

/// Everything `quench quantize` found.
#[derive(Debug, Clone, Serialize)]
pub struct QuantizeSummary {
    /// The FP32 model.
    pub model: PathBuf,
    /// The written quantized model.
    pub output: PathBuf,
    /// Target precision.
    pub precision: Target,
    /// Method used.
    pub method: Method,
    /// The scheme exported (also in the model's `quench.scheme` metadata).
    pub scheme: Scheme,
    /// Where activation ranges came from, in words.
    pub ranges: String,
    /// Calibration-split samples used (for ranges or training; 0 when none were needed).
    pub calibration_samples: usize,
    /// File sizes.
    pub size: Sizes,
    /// Test split on ORT.
    pub test: TestResults,
    /// Calibration samples the layer errors are measured on.
    pub layer_samples: usize,
    /// Every quantizable layer.
    pub layers: Vec<LayerReport>,
    /// Why the layers' errors on the engine are missing, when they are.
    pub native_layer_failure: Option<String>,
    /// Training, with `--method qat`.
    pub qat: Option<QatSummary>,
    /// Quench's own engine on the quantized model (same test samples as [`Self::test`]).
    pub native: NativeResults,
}

/// `<model stem>.<precision>-<method>.onnx`, in the current directory.
pub fn default_output(model: &Path, precision: Target, method: Method) -> PathBuf {
    let stem = model
        .file_stem()
        .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    PathBuf::from(format!(
        "{stem}.{}-{}.onnx",
        precision.name(),
        method.name()
    ))
}

fn names(methods: &[Method]) -> String {
    methods
        .iter()
        .map(|m| m.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl QuantizeConfig {
    /// The method to use, after checking every option against the precision and method.
    pub fn check(&self) -> Result<Method, PipelineError> {
        let p = self.precision;
        let bad = |m: String| Err(PipelineError::Invalid(m));
        let method = self.method.unwrap_or(p.default_method());
        if !p.methods().contains(&method) {
            return bad(format!(
                "--precision {} does not take --method {}; it takes --method {}",
                p.name(),
                method.name(),
                names(p.methods())
            ));
        }
        let sign_acts = self.binary_acts == Some(BinaryInput::Binary);
        match self.binary_acts {
            Some(a) if p != Target::Binary => {
                return bad(format!(
                    "--binary-acts {} applies only to --precision binary, not {}",
                    a.name(),
                    p.name()
                ))
            }
            Some(BinaryInput::Binary) if method == Method::Qat => {
                return bad("--method qat does not support --binary-acts binary: QAT in quench                      trains binary weights with INT8 activations only (its fake quantization                      has no Sign activation); use --binary-acts int8 with qat, or --method                      static for binary activations"
                    .into())
            }
            _ => {}
        }
        if let (true, Some(c)) = (sign_acts, self.calibrator) {
            return bad(format!(
                "--calibrator {} does not apply to --binary-acts binary: Sign activations have                  no ranges to calibrate",
                c.name()
            ));
        }
        let static_ptq = method == Method::Static;
        if let (Some(c), false) = (self.calibrator, static_ptq) {
            return bad(format!(
                "--calibrator {} applies only to --method static (int8 or binary); {} {} \
                 has no calibrated ranges{}",
                c.name(),
                p.name(),
                method.name(),
                if method == Method::Qat {
                    " (QAT learns its ranges in training)"
                } else {
                    ""
                }
            ));
        }
        if let Some(pct) = self.percentile {
            if self.calibrator != Some(CalibratorKind::Percentile) {
                return bad(format!(
                    "--percentile {pct} applies only to --calibrator percentile"
                ));
            }
            if !(pct > 0.0 && pct <= 100.0) {
                return bad(format!("--percentile {pct} is not in (0, 100]"));
            }
        }
        if self.per_tensor && (p != Target::Int8 || method != Method::Static) {
            return bad(format!(
                "--per-tensor applies only to --precision int8 --method static (dynamic INT8 \
                 weights are already per tensor, QAT trains per-channel scales, binary α and \
                 4-bit groups are not tensor-wide); not to {} {}",
                p.name(),
                method.name()
            ));
        }
        match self.group {
            Some(g) if p != Target::Int4 => {
                return bad(format!(
                    "--group {g} applies only to --precision int4, not {}",
                    p.name()
                ))
            }
            Some(g) if ![32, 64, 128].contains(&g) => {
                return bad(format!(
                    "--group {g}: allowed group sizes are 32, 64 and 128"
                ))
            }
            _ => {}
        }
        if self.bias_correction && (p != Target::Int8 || method != Method::Static) {
            return bad(format!(
                "--bias-correction applies only to --precision int8 --method static, not {} {}",
                p.name(),
                method.name()
            ));
        }
        if self.epochs.is_some() && method != Method::Qat {
            return bad(format!(
                "--epochs applies only to --method qat, not {}",
                method.name()
            ));
        }
        if self.epochs == Some(0) || self.calib_samples == Some(0) || self.limit == Some(0) {
            return bad("--epochs, --calib-samples and --limit must be at least 1".into());
        }
        Ok(method)
    }

    /// The scheme a post-training run exports, or a QAT run exports after training.
    fn scheme(&self, method: Method) -> Scheme {
        let calibration = match (self.calibrator, self.percentile) {
            (Some(CalibratorKind::Percentile), Some(percentile)) => Calibration::Percentile {
                percentile,
                num_bins: DEFAULT_BINS,
            },
            (c, _) => c.unwrap_or(CalibratorKind::MinMax).calibration(),
        };
        let group = self.group.unwrap_or(32);
        match (self.precision, method) {
            (Target::Int8, Method::Dynamic) => Scheme::int8_dynamic(),
            (Target::Int8, _) => {
                let mut s = Scheme::int8_static(!self.per_tensor, calibration);
                s.set_bias_correction(self.bias_correction);
                s
            }
            (Target::Int4, _) => Scheme::int4(group, false),
            (Target::Binary, _) if self.binary_acts == Some(BinaryInput::Binary) => {
                Scheme::uniform(Precision::Binary {
                    activations: BinaryActs::Binary,
                })
            }
            (Target::Binary, _) => Scheme::uniform(Precision::Binary {
                activations: BinaryActs::Int8 {
                    activations: ActQuant {
                        dtype: ActType::U8,
                        symmetric: false,
                    },
                    calibration,
                },
            }),
        }
    }

    fn calibration_split(&self) -> Result<&crate::eval::manifest::Split, PipelineError> {
        self.manifest
            .data
            .calibration
            .as_ref()
            .ok_or_else(|| PipelineError::NoCalibration(self.manifest.model.name.clone()))
    }
}

fn ort_options() -> OrtOptions {
    OrtOptions {
        spin: false,
        ..OrtOptions::new(1)
    }
}

/// An ONNX Runtime session (one thread, no spinning) on `graph` held in memory.
pub fn session(graph: &Graph) -> Result<OrtRuntime, PipelineError> {
    let bytes = crate::onnx::to_bytes(graph)?;
    Ok(OrtRuntime::from_bytes(&bytes, &ort_options())?)
}

/// Runs `graph` with `tensors` exposed over `batches` of `data` and hands each exposed tensor's
/// batch value to `observe`.
fn probe(
    graph: &Graph,
    tensors: &[String],
    data: &Dataset,
    samples: usize,
    observe: &mut dyn FnMut(&str, Tensor) -> Result<(), PipelineError>,
) -> Result<(), PipelineError> {
    let mut rt = session(&expose(graph, tensors)?)?;
    let names = rt.output_names().to_vec();
    let mut start = 0;
    while start < samples.min(data.len()) {
        let end = (start + BATCH).min(samples).min(data.len());
        let batch = data.batch(start..end)?;
        let outs = rt.run(&[(data.input_name(), &batch)])?;
        for (name, value) in names.iter().zip(outs) {
            if tensors.contains(name) {
                observe(name, value)?;
            }
        }
        start = end;
    }
    Ok(())
}

/// What [`probe_native`] hands each tapped value to (name, shape, elements).
type ValueObserver<'a> = dyn FnMut(&str, &[usize], &[f32]) -> Result<(), PipelineError> + Send + 'a;

/// Runs `graph` on the native engine (one thread) over `batches` of the first `samples` of
/// `data`, handing each of `tensors` to `observe` as the engine computes it, straight from its
/// arena. One plan per batch size (the last batch may be shorter).
fn probe_native(
    graph: &Graph,
    tensors: &[String],
    data: &Dataset,
    samples: usize,
    observe: &mut ValueObserver<'_>,
) -> Result<(), PipelineError> {
    let pool = crate::engine::plan::thread_pool(1)?;
    let mut plans: Vec<(Vec<usize>, Plan)> = Vec::new();
    let mut start = 0;
    while start < samples.min(data.len()) {
        let end = (start + BATCH).min(samples).min(data.len());
        let batch = data.batch(start..end)?;
        let shape = batch.shape().to_vec();
        let at = match plans.iter().position(|(s, _)| *s == shape) {
            Some(i) => i,
            None => {
                let plan = Plan::with_taps(
                    graph,
                    &[(data.input_name(), shape.clone())],
                    pool.clone(),
                    tensors,
                )?;
                plans.push((shape, plan));
                plans.len() - 1
            }
        };
        let mut failed: Option<PipelineError> = None;
        plans[at].1.run_observed(
            &[(data.input_name(), &batch)],
            &mut |name, shape, values| {
                if failed.is_none() {
                    failed = observe(name, shape, values).err();
                }
            },
        )?;
        if let Some(e) = failed {
            return Err(e);
        }
        start = end;
    }
    Ok(())
}

/// Calibrated ranges of every site `scheme` needs, from the native engine running the FP32
/// graph over the first `samples` of `data` (what `quench quantize` exports from by default;
/// public so that checks can export the same models).
pub fn calibrate(
    graph: &Graph,
    scheme: &Scheme,
    data: &Dataset,
    samples: usize,
) -> Result<BTreeMap<String, CalibratedRange>, PipelineError> {
    calibrate_on(graph, scheme, data, samples, CalibrateOn::Native)
}

/// Runs `graph` on the runtime `on` over the first `samples` of `data`, handing each of
/// `tensors` batch by batch to `observe` (name, shape, elements).
fn probe_on(
    graph: &Graph,
    tensors: &[String],
    data: &Dataset,
    samples: usize,
    on: CalibrateOn,
    observe: &mut ValueObserver<'_>,
) -> Result<(), PipelineError> {
    match on {
        CalibrateOn::Native => probe_native(graph, tensors, data, samples, observe),
        CalibrateOn::Ort => probe(graph, tensors, data, samples, &mut |name, value| {
            observe(
                name,
                value.shape(),
                value.as_f32().map_err(MetricError::from)?,
            )
        }),
    }
}

/// [`calibrate`] with the FP32 graph run on the runtime `on`.
pub fn calibrate_on(
    graph: &Graph,
    scheme: &Scheme,
    data: &Dataset,
    samples: usize,
    on: CalibrateOn,
) -> Result<BTreeMap<String, CalibratedRange>, PipelineError> {
    let sites = calibration_sites(graph, scheme)?;
    let mut cals = Calibrators::new(&sites)?;
    if !sites.is_empty() {
        let tensors: Vec<String> = sites.iter().map(|s| s.tensor.clone()).collect();
        probe_on(
            graph,
            &tensors,
            data,
            samples,
            on,
            &mut |name, shape, values| Ok(cals.observe_values(name, shape, values)?),
        )?;
    }
    Ok(cals.ranges()?)
}

/// Per-channel means of every target's tensor over the first `samples` of `data`, read from
/// `taps` in `graph` (one per target: the target's tensor, or in a quantized graph the float
/// value it is quantized from).
fn channel_means(
    graph: &Graph,
    targets: &[bias::Target],
    tensors: &[String],
    data: &Dataset,
    samples: usize,
    on: CalibrateOn,
) -> Result<bias::Means, PipelineError> {
    let mut means = bias::Means::new();
    probe_on(
        graph,
        tensors,
        data,
        samples,
        on,
        &mut |name, shape, values| {
            let at = tensors.iter().position(|t| t == name);
            if let Some(t) = at.and_then(|i| targets.get(i)) {
                means
                    .entry(t.tensor.clone())
                    .or_default()
                    .observe(t, shape, values)?;
            }
            Ok(())
        },
    )?;
    Ok(means)
}

/// Bias correction ([`crate::quant::bias`]) of every layer whose precision in `scheme` asks for
/// it: `graph` with each such layer's float bias shifted so that, over the first `samples` of
/// `data` run on `on`, the quantized model's per-channel output means equal the FP32 model's.
/// Layers are corrected one after the other in graph order, each measured on the model
/// quantized with all earlier corrections, so a layer's shift accounts for its corrected
/// predecessors (correcting every layer at once from one pass over-corrects: on textdir-cls
/// the shifts of early layers moved whole plateaus of the text strips' uniform background to
/// other quantization levels downstream, and agreement with FP32 fell to 93.5%). Each
/// measurement runs only the part of the quantized graph the layer depends on.
///
/// The correction is dropped when it lowers the quantized model's top-1 agreement with FP32
/// on those samples by more than [`CORRECTION_TOLERANCE`]: shifting whole channels to restore
/// a mean can hurt when the ranges clip hard (with the entropy calibrator, mnist-cnn fell from
/// 98.66% to 41.5% test accuracy).
pub fn correct_biases(
    graph: &Graph,
    scheme: &Scheme,
    ranges: &BTreeMap<String, CalibratedRange>,
    known: &[(String, Vec<usize>)],
    data: &Dataset,
    samples: usize,
    on: CalibrateOn,
) -> Result<BiasCorrection, PipelineError> {
    let targets = bias::targets(graph, scheme)?;
    let mut corrected = graph.clone();
    if targets.is_empty() || samples == 0 {
        return Ok(BiasCorrection {
            graph: corrected,
            layers: 0,
            calibration_agreement: None,
        });
    }
    let tensors: Vec<String> = targets.iter().map(|t| t.tensor.clone()).collect();
    let fp32 = channel_means(graph, &targets, &tensors, data, samples, on)?;
    for t in &targets {
        let q = crate::quant::quantize_for(&corrected, scheme, ranges, known)?;
        let one = std::slice::from_ref(t);
        let measured = [bias::before_quantization(&q, &t.tensor).to_string()];
        let q = bias::upstream(&q, &measured[0])?;
        let qm = channel_means(&q, one, &measured, data, samples, on)?;
        for shift in bias::shifts(one, &fp32, &qm)? {
            bias::shift_bias(&mut corrected, t, &shift)?;
        }
    }
    // The first output, scored by top-1 agreement with FP32 as the test split is.
    let output: Vec<String> = graph
        .outputs
        .iter()
        .take(1)
        .map(|o| o.name.clone())
        .collect();
    let outputs_of = |g: &Graph| -> Result<Tensor, PipelineError> {
        let (mut values, mut row) = (Vec::new(), 1);
        probe_on(g, &output, data, samples, on, &mut |_, shape, v| {
            row = shape.iter().skip(1).product::<usize>().max(1);
            values.extend_from_slice(v);
            Ok(())
        })?;
        let rows = values.len() / row;
        Ok(Tensor::from_f32(vec![rows, row], values).map_err(MetricError::from)?)
    };
    let agreement_of = |g: &Graph, reference: &Tensor| -> Result<f64, PipelineError> {
        let q = crate::quant::quantize_for(g, scheme, ranges, known)?;
        Ok(metrics::agreement(reference, &outputs_of(&q)?)?)
    };
    let reference = outputs_of(graph)?;
    let without = agreement_of(graph, &reference)?;
    let with = agreement_of(&corrected, &reference)?;
    let kept = with + CORRECTION_TOLERANCE >= without;
    Ok(BiasCorrection {
        graph: if kept { corrected } else { graph.clone() },
        layers: targets.len(),
        calibration_agreement: Some((without, with)),
    })
}

/// How much top-1 agreement with FP32 on the calibration samples bias correction may cost
/// and still be kept. A guard against collapse, not a fit: the correction is fitted on those
/// samples, and a few hundred of them move by whole samples (textdir-cls with the mse
/// calibrator: 99.4% → 99.0% on its 500 calibration strips, yet 98.2% → 99.3% on the 1,000
/// test strips).
pub const CORRECTION_TOLERANCE: f64 = 0.01;

/// What [`correct_biases`] did.
#[derive(Debug, Clone)]
pub struct BiasCorrection {
    /// The graph to export: corrected, or as it came when the correction did not help.
    pub graph: Graph,
    /// Layers the scheme asked to correct.
    pub layers: usize,
    /// Top-1 agreement of the quantized model's first output with FP32's on the calibration
    /// samples, without and with the correction; `None` when there was nothing to correct.
    pub calibration_agreement: Option<(f64, f64)>,
}

impl BiasCorrection {
    /// Whether the corrected biases are in [`BiasCorrection::graph`]: unless the correction
    /// lowered the agreement with FP32 on the calibration samples by more than
    /// [`CORRECTION_TOLERANCE`].
    pub fn kept(&self) -> bool {
        self.calibration_agreement
            .is_some_and(|(without, with)| with + CORRECTION_TOLERANCE >= without)
    }

    /// What happened, for the `ranges:` line; `None` when nothing was corrected.
    pub fn note(&self) -> Option<String> {
        let (without, with) = self.calibration_agreement?;
        let n = self.layers;
        let (without, with) = (without * 100.0, with * 100.0);
        Some(if self.kept() {
            format!(
                "bias correction of {n} layers (top-1 agreement with FP32 on the calibration \
                 samples {without:.2}% -> {with:.2}%)"
            )
        } else {
            format!(
                "bias correction of {n} layers dropped: it lowered the top-1 agreement with \
                 FP32 on the calibration samples from {without:.2}% to {with:.2}%"
            )
        })
    }
}

/// What the export makes of `node` under `scheme` (as [`crate::quant::quantize`] decides).
fn applied(scheme: &Scheme, node: &crate::graph::Node) -> &'static str {
    let (precision, explicit) = scheme.resolve(&node.name, &node.op_type);
    match precision {
        Precision::Fp32 => "fp32",
        Precision::Int4 { .. } if node.op_type == "Conv" && !explicit => {
            "fp32 (ORT has no 4-bit Conv)"
        }
        Precision::Int4 { .. } => "int4",
        Precision::Int8 {
            mode: Int8Mode::Static { .. },
            ..
        } => "int8 static",
        Precision::Int8 { .. } => "int8 dynamic",
        Precision::Binary { .. } => "binary",
    }
}

/// Running error sums of each tapped tensor, with how many of its values were scored.
type Scored = BTreeMap<String, (ErrorSums, usize)>;

/// SQNR and cosine of every quantizable layer's output, quantized against FP32, over the first
/// `samples` of `data`, on ORT and on the engine; with why the engine's are missing, if they are.
fn layer_errors(
    fp32: &Graph,
    quantized: &Graph,
    scheme: &Scheme,
    data: &Dataset,
    samples: usize,
) -> Result<(Vec<LayerReport>, Option<String>), PipelineError> {
    let produced = |g: &Graph, t: &str| g.nodes.iter().any(|n| n.outputs.iter().any(|o| o == t));
    let mut layers = Vec::new();
    for node in fp32.nodes.iter().filter(|n| is_quantizable(n)) {
        let Some(tensor) = quantized_output(fp32, node) else {
            continue;
        };
        if !produced(quantized, tensor) {
            return Err(PipelineError::LostTensor {
                layer: node.name.clone(),
                tensor: tensor.to_string(),
            });
        }
        layers.push((node, tensor.to_string()));
    }
    let stats = crate::engine::single_sample_stats(fp32, data.input())?;
    let node_stats = |name: &str| stats.nodes.iter().find(|s| s.name == name);
    let tensors: Vec<String> = layers.iter().map(|(_, t)| t.clone()).collect();
    // The FP32 values are kept; each runtime's quantized values are scored as they arrive, in
    // the same sample order, so that only one copy of the layers' outputs is held.
    let mut reference: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    probe(fp32, &tensors, data, samples, &mut |name, value| {
        let v = value.as_f32().map_err(MetricError::from)?;
        reference
            .entry(name.to_string())
            .or_default()
            .extend_from_slice(v);
        Ok(())
    })?;
    let scored = |name: &str, values: &[f32], sums: &mut Scored| {
        let all = reference.get(name).map(Vec::as_slice).unwrap_or_default();
        let (s, at) = sums.entry(name.to_string()).or_default();
        let part = all
            .get(*at..*at + values.len())
            .ok_or(MetricError::Mismatch {
                what: "a layer's quantized and FP32 values",
                left: vec![*at + values.len()],
                right: vec![all.len()],
            })?;
        s.add(part, values);
        *at += values.len();
        Ok::<(), PipelineError>(())
    };
    let mut on_ort = Scored::new();
    probe(quantized, &tensors, data, samples, &mut |name, value| {
        scored(
            name,
            value.as_f32().map_err(MetricError::from)?,
            &mut on_ort,
        )
    })?;
    // The same tensors as the engine computes them, or nothing when it cannot run the model.
    let mut on_engine = Scored::new();
    let native_failure = probe_native(quantized, &tensors, data, samples, &mut |name, _, v| {
        scored(name, v, &mut on_engine)
    })
    .err()
    .map(|e| e.to_string());
    let error_of = |sums: &Scored, tensor: &str| -> Result<LayerError, PipelineError> {
        let expected = reference.get(tensor).map_or(0, Vec::len);
        let (s, got) = sums.get(tensor).copied().unwrap_or_default();
        if got != expected {
            return Err(MetricError::Mismatch {
                what: "a layer's quantized and FP32 values",
                left: vec![got],
                right: vec![expected],
            }
            .into());
        }
        Ok(LayerError::of(&s))
    };
    let reports = layers
        .into_iter()
        .map(|(node, tensor)| {
            let ort = error_of(&on_ort, &tensor)?;
            let native = match native_failure {
                None => Some(error_of(&on_engine, &tensor)?),
                Some(_) => None,
            };
            let s = node_stats(&node.name);
            Ok(LayerReport {
                layer: node.name.clone(),
                op_type: node.op_type.clone(),
                precision: applied(scheme, node).to_string(),
                tensor,
                output_shape: s
                    .and_then(|s| s.output_shapes.first().cloned())
                    .unwrap_or_default(),
                macs: s.map_or(0, |s| s.macs),
                ort,
                native,
            })
        })
        .collect::<Result<_, PipelineError>>()?;
    Ok((reports, native_failure))
}

fn file_size(path: &Path) -> Result<u64, PipelineError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| PipelineError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// Test-split accuracy of the model at `path` on ORT, and its scored outputs.
fn test_pass(
    path: &Path,
    manifest: &Manifest,
    test: &Dataset,
) -> Result<crate::eval::EvalResult, PipelineError> {
    let mut rt = OrtRuntime::from_file(path, &ort_options())?;
    let out = output_index(&manifest.output, rt.output_names())?;
    Ok(evaluate(&mut rt, test, BATCH, out)?)
}

/// The model at `path` on the native engine (one thread) over `test`, against ORT's outputs.
fn native_pass(
    path: &Path,
    manifest: &Manifest,
    test: &Dataset,
    ort: &crate::eval::EvalResult,
) -> NativeResults {
    let ran = || -> Result<NativeResults, PipelineError> {
        let mut rt = crate::runtime::open(crate::runtime::RuntimeKind::Native, path, 1)?;
        let out = output_index(&manifest.output, rt.output_names())?;
        let native = evaluate(rt.as_mut(), test, BATCH, out)?;
        Ok(NativeResults::Ran {
            accuracy: native.accuracy,
            ort_agreement: metrics::agreement(&ort.outputs, &native.outputs)?,
        })
    };
    ran().unwrap_or_else(|e| NativeResults::Failed {
        reason: e.to_string(),
    })
}

/// Ranges for a static export from QAT's EMA ranges, widened to include 0 as training did.
fn qat_ranges(ranges: &BTreeMap<String, (f32, f32)>) -> BTreeMap<String, CalibratedRange> {
    ranges
        .iter()
        .map(|(k, &(min, max))| {
            (
                k.clone(),
                CalibratedRange {
                    min: min.min(0.0),
                    max: max.max(0.0),
                },
            )
        })
        .collect()
}

/// A quantized variant written to disk, with what went into it and its per-layer error: the
/// "make this variant" step that `quench quantize`, `quench eval` and sweeps share.
#[derive(Debug, Clone)]
pub struct Variant {
    /// Method used.
    pub method: Method,
    /// The scheme exported.
    pub scheme: Scheme,
    /// Where activation ranges came from, in words.
    pub ranges: String,
    /// Calibration-split samples used (for ranges or training; 0 when none were needed).
    pub calibration_samples: usize,
    /// Calibration samples the layer errors are measured on.
    pub layer_samples: usize,
    /// Every quantizable layer's output error against FP32.
    pub layers: Vec<LayerReport>,
    /// Why the layers' errors on the engine ([`LayerReport::native`]) are missing, when it
    /// could not run the quantized model.
    pub native_layer_failure: Option<String>,
    /// Training, with `--method qat`.
    pub qat: Option<QatSummary>,
}

/// The file a QAT run is cached in under `dir`: keyed by the model's bytes, the target
/// precision, the training settings and the samples, so a changed model or schedule retrains.
fn qat_cache_file(
    dir: &Path,
    config: &QuantizeConfig,
    qat_config: &QatConfig,
    samples: usize,
) -> Result<PathBuf, PipelineError> {
    let bytes = std::fs::read(&config.model).map_err(|source| PipelineError::Io {
        path: config.model.clone(),
        source,
    })?;
    let mut h = crate::hash::Fnv64::default();
    h.update(&bytes)
        .update(config.precision.name().as_bytes())
        .update(
            serde_json::to_string(qat_config)
                .unwrap_or_default()
                .as_bytes(),
        )
        .update(&(samples as u64).to_le_bytes());
    let stem = config
        .model
        .file_stem()
        .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    Ok(dir.join(format!(
        "qat-{stem}-{}-{}.onnx",
        config.precision.name(),
        h.hex()
    )))
}

/// Trains as configured, or reads the result a previous run with the same key left in
/// `cache` (a folder, created when missing).
fn train_cached(
    graph: &Graph,
    config: &QuantizeConfig,
    data: &Dataset,
    cache: Option<&Path>,
    on_qat: &mut dyn FnMut(&QatEvent),
) -> Result<(qat::QatResult, QatSummary), PipelineError> {
    let qat_config = QatConfig {
        epochs: config.epochs.unwrap_or(1),
        bits: BitSchedule::constant(config.precision.weight_bits()),
        output: config.manifest.output.name.clone(),
        ..QatConfig::default()
    };
    let cached = match cache {
        Some(dir) => Some(qat_cache_file(dir, config, &qat_config, data.len())?),
        None => None,
    };
    if let Some(path) = cached.as_ref().filter(|p| p.is_file()) {
        let result = qat::QatResult::load(path)?;
        let summary = QatSummary {
            samples: data.len(),
            epochs: qat_config.epochs,
            steps: result.history.len(),
            last_epoch_loss: None,
            last_epoch_accuracy: None,
            seconds: 0.0,
            cached: Some(path.clone()),
        };
        return Ok((result, summary));
    }
    let started = Instant::now();
    let mut last_epoch = None;
    let result = qat::train(graph, data, &qat_config, |e| {
        if let QatEvent::Epoch { loss, accuracy, .. } = &e {
            last_epoch = Some((*loss, *accuracy));
        }
        on_qat(&e);
    })?;
    if let Some(path) = &cached {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| PipelineError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        result.save(path)?;
    }
    let summary = QatSummary {
        samples: data.len(),
        epochs: qat_config.epochs,
        steps: result.history.len(),
        last_epoch_loss: last_epoch.map(|l| l.0),
        last_epoch_accuracy: last_epoch.and_then(|l| l.1),
        seconds: started.elapsed().as_secs_f64(),
        cached: None,
    };
    Ok((result, summary))
}

/// Quantizes `config.model` as configured (calibrating, or training with `--method qat`),
/// writes the variant to `config.out`, and measures each quantizable layer's error against
/// FP32 on calibration samples. With `qat_cache`, trained models are kept in (and reused from)
/// that folder. `on_qat` receives training progress. `config.limit` is not used here.
pub fn build(
    config: &QuantizeConfig,
    qat_cache: Option<&Path>,
    on_qat: &mut dyn FnMut(&QatEvent),
) -> Result<Variant, PipelineError> {
    let method = config.check()?;
    let graph = crate::onnx::load(&config.model)?;
    // Post-training quantization works on the folded graph (BatchNorm and bias adds in the
    // Convs, see `quant::prepare`); QAT folds the same and more for training
    // (`qat::training_graph`), which needs the data's input shape.
    let graph = match method {
        Method::Qat => graph,
        _ => crate::quant::prepare::prepare(&graph)?,
    };
    let split = config.calibration_split()?;
    let input = &config.manifest.input;
    let mut scheme = config.scheme(method);
    let (exported_from, ranges, ranges_note, calib_used, data, qat_summary) =
        if method == Method::Qat {
            let data = Dataset::load(split, input, config.calib_samples)?;
            let (result, summary) = train_cached(&graph, config, &data, qat_cache, on_qat)?;
            let note = match config.precision {
                Target::Int4 => {
                    "none (4-bit is weight-only; QAT's int4 weights re-quantized in groups)"
                }
                _ => "QAT's EMA ranges from training",
            };
            let n = data.len();
            (
                result.graph,
                qat_ranges(&result.activation_ranges),
                note.to_string(),
                n,
                data,
                Some(summary),
            )
        } else {
            let n = config.calib_samples.unwrap_or(DEFAULT_CALIB_SAMPLES);
            let data = Dataset::load(split, input, Some(n.max(LAYER_SAMPLES)))?;
            let used = if calibration_sites(&graph, &scheme)?.is_empty() {
                0
            } else {
                n.min(data.len())
            };
            let ranges = calibrate_on(&graph, &scheme, &data, used, config.calibrate_on)?;
            let note = match used {
                0 => "none needed".to_string(),
                _ => format!(
                    "{} calibration on {used} calibration samples ({})",
                    match scheme.default.calibration() {
                        Some((_, Calibration::Percentile { percentile, .. })) => {
                            format!("percentile {percentile}")
                        }
                        _ => config
                            .calibrator
                            .unwrap_or(CalibratorKind::MinMax)
                            .name()
                            .into(),
                    },
                    match config.calibrate_on {
                        CalibrateOn::Native => "native engine",
                        CalibrateOn::Ort => "ONNX Runtime",
                    }
                ),
            };
            (graph.clone(), ranges, note, used, data, None)
        };
    let known = [input.at_batch(1)];
    let (exported_from, ranges_note) = if method == Method::Static {
        let c = correct_biases(
            &exported_from,
            &scheme,
            &ranges,
            &known,
            &data,
            calib_used,
            config.calibrate_on,
        )?;
        let note = match c.note() {
            Some(n) => format!("{ranges_note}; {n}"),
            None => ranges_note,
        };
        if !c.kept() {
            // The exported scheme says what the model holds.
            scheme.set_bias_correction(false);
        }
        (c.graph, note)
    } else {
        (exported_from, ranges_note)
    };
    let quantized = crate::quant::quantize_for(&exported_from, &scheme, &ranges, &known)?;
    crate::onnx::save(&quantized, &config.out)?;
    let layer_samples = LAYER_SAMPLES.min(data.len());
    // QAT trains (and exports) its training graph: its layers are compared with the FP32 model
    // rewritten the same way.
    let reference = match method {
        Method::Qat => Cow::Owned(qat::training_graph(&graph, &data)?),
        _ => Cow::Borrowed(&graph),
    };
    let (layers, native_layer_failure) =
        layer_errors(&reference, &quantized, &scheme, &data, layer_samples)?;
    Ok(Variant {
        method,
        scheme,
        ranges: ranges_note,
        calibration_samples: calib_used,
        layer_samples,
        layers,
        native_layer_failure,
        qat: qat_summary,
    })
}

/// Quantizes `config.model` as configured, writes `config.out`, and measures the result.
/// `on_qat` receives training progress with `--method qat`.
pub fn run(
    config: &QuantizeConfig,
    on_qat: &mut dyn FnMut(&QatEvent),
) -> Result<QuantizeSummary, PipelineError> {
    let variant = build(config, None, on_qat)?;
    let size = Sizes {
        fp32_bytes: file_size(&config.model)?,
        quantized_bytes: file_size(&config.out)?,
    };
    let input = &config.manifest.input;
    let test = Dataset::load(&config.manifest.data.test, input, config.limit)?;
    let fp32 = test_pass(&config.model, &config.manifest, &test)?;
    let q = test_pass(&config.out, &config.manifest, &test)?;
    let native = native_pass(&config.out, &config.manifest, &test, &q);
    let test_results = TestResults {
        samples: test.len(),
        fp32_accuracy: fp32.accuracy,
        quantized_accuracy: q.accuracy,
        top1_agreement: metrics::agreement(&fp32.outputs, &q.outputs)?,
        kl: metrics::mean_kl(&fp32.outputs, &q.outputs, config.manifest.output.kind)?,
    };
    Ok(QuantizeSummary {
        model: config.model.clone(),
        output: config.out.clone(),
        precision: config.precision,
        method: variant.method,
        scheme: variant.scheme,
        ranges: variant.ranges,
        calibration_samples: variant.calibration_samples,
        size,
        test: test_results,
        layer_samples: variant.layer_samples,
        layers: variant.layers,
        native_layer_failure: variant.native_layer_failure,
        qat: variant.qat,
        native,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(precision: Target, method: Option<Method>) -> QuantizeConfig {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        QuantizeConfig {
            model: root.join("assets/models/mnist-cnn.onnx"),
            manifest: Manifest::load(&root.join("assets/models/mnist-cnn.toml")).unwrap(),
            precision,
            method,
            calibrator: None,
            percentile: None,
            per_tensor: false,
            group: None,
            binary_acts: None,
            calib_samples: None,
            calibrate_on: CalibrateOn::Native,
            epochs: None,
            bias_correction: false,
            limit: None,
            out: PathBuf::from("unused.onnx"),
        }
    }

    #[test]
    fn check_allows_each_precisions_methods_only() {
        for p in [Target::Int8, Target::Int4, Target::Binary] {
            assert_eq!(config(p, None).check().unwrap(), p.default_method());
            for m in [
                Method::Dynamic,
                Method::Static,
                Method::WeightOnly,
                Method::Qat,
            ] {
                let r = config(p, Some(m)).check();
                assert_eq!(r.is_ok(), p.methods().contains(&m), "{p:?} {m:?}");
            }
        }
        let mut c = config(Target::Int8, Some(Method::Qat));
        c.calibrator = Some(CalibratorKind::Entropy);
        let err = c.check().unwrap_err().to_string();
        assert!(err.contains("QAT learns its ranges"), "{err}");
        c.calibrator = None;
        c.epochs = Some(0);
        assert!(c.check().is_err());
        let mut c = config(Target::Binary, None);
        c.per_tensor = true;
        assert!(c.check().is_err());
        let mut c = config(Target::Int8, Some(Method::Qat));
        c.per_tensor = true;
        assert!(c.check().is_err());
        let mut c = config(Target::Binary, None);
        c.calibrator = Some(CalibratorKind::Percentile);
        assert!(c.check().is_ok());
        let mut c = config(Target::Int8, Some(Method::Dynamic));
        c.bias_correction = true;
        let err = c.check().unwrap_err().to_string();
        assert!(err.contains("--bias-correction"), "{err}");
        let mut c = config(Target::Int8, Some(Method::Dynamic));
        c.epochs = Some(2);
        assert!(c.check().unwrap_err().to_string().contains("--epochs"));
    }

    /// `--binary-acts` belongs to binary only; binary activations take no calibrator and no
    /// QAT (which trains INT8 activations), said plainly.
    #[test]
    fn check_binary_acts() {
        let mut c = config(Target::Binary, None);
        c.binary_acts = Some(BinaryInput::Binary);
        assert_eq!(c.check().unwrap(), Method::Static);
        assert_eq!(
            c.scheme(Method::Static).default,
            Precision::Binary {
                activations: BinaryActs::Binary
            }
        );
        c.method = Some(Method::Qat);
        let err = c.check().unwrap_err().to_string();
        assert!(
            err.contains("qat does not support --binary-acts binary"),
            "{err}"
        );
        c.binary_acts = Some(BinaryInput::Int8);
        assert_eq!(c.check().unwrap(), Method::Qat);
        let mut c = config(Target::Binary, None);
        c.binary_acts = Some(BinaryInput::Binary);
        c.calibrator = Some(CalibratorKind::Entropy);
        assert!(c
            .check()
            .unwrap_err()
            .to_string()
            .contains("Sign activations"));
        let mut c = config(Target::Int8, None);
        c.binary_acts = Some(BinaryInput::Int8);
        assert!(c
            .check()
            .unwrap_err()
            .to_string()
            .contains("--precision binary"));
    }

    #[test]
    fn default_output_names_precision_and_method() {
        let p = default_output(
            Path::new("models/mnist-cnn.onnx"),
            Target::Int4,
            Method::WeightOnly,
        );
        assert_eq!(p, PathBuf::from("mnist-cnn.int4-weight-only.onnx"));
    }
}
