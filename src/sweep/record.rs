//! The record of one measured cell: the single source of truth that the headless log, the TUI
//! and the reports all read. One record is one JSON line in `results.jsonl`.

use serde::{Deserialize, Serialize};

use crate::measure::latency::{ColdStartReport, LatencyReport};
use crate::measure::machine::MachineInfo;
use crate::measure::memory::{MemoryReport, ModelSizes};
use crate::measure::power::EnergyReport;
use crate::runtime::RuntimeKind;

/// Version of the record layout; bumped whenever a field changes meaning or is removed.
pub const SCHEMA_VERSION: u32 = 1;

/// Numeric precision of a model variant's weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// The original 32-bit float model.
    Fp32,
    /// 8-bit integer weights (and activations, by method).
    Int8,
    /// 4-bit weights, group-wise.
    Int4,
    /// 1-bit weights (sign × per-channel scale).
    Binary,
}

/// How a variant was quantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Not quantized (the FP32 model itself).
    None,
    /// Activation scales computed at run time.
    Dynamic,
    /// Activation scales calibrated on sample data.
    Static,
    /// Weights only; activations stay FP32 (4-bit `MatMulNBits`).
    #[serde(rename = "weight-only")]
    WeightOnly,
    /// Quantization-aware training.
    Qat,
}

impl Precision {
    /// Lowercase name, as in records and profiles.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
            Precision::Int4 => "int4",
            Precision::Binary => "binary",
        }
    }
}

impl Method {
    /// Name as in records and profiles (`none`, `dynamic`, `static`, `weight-only`, `qat`).
    pub fn name(self) -> &'static str {
        match self {
            Method::None => "none",
            Method::Dynamic => "dynamic",
            Method::Static => "static",
            Method::WeightOnly => "weight-only",
            Method::Qat => "qat",
        }
    }
}

/// What identifies a cell of a sweep: the same key measured twice is the same experiment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CellKey {
    /// Model name (from its manifest).
    pub model: String,
    /// Weight precision.
    pub precision: Precision,
    /// Quantization method.
    pub method: Method,
    /// Runtime that executed it.
    pub runtime: RuntimeKind,
    /// Compute threads.
    pub threads: usize,
    /// Batch size of the latency loop.
    pub batch: usize,
    /// Static range rule (`minmax`, `percentile`, `entropy`, `mse`), for static variants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibrator: Option<String>,
    /// 4-bit group size along K, for 4-bit variants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<usize>,
}

impl CellKey {
    /// The variant in words: `int8 static minmax`, `int4 weight-only g32`, `fp32`.
    pub fn variant(&self) -> String {
        let mut words = vec![self.precision.name().to_string()];
        if self.method != Method::None {
            words.push(self.method.name().to_string());
        }
        words.extend(self.calibrator.clone());
        words.extend(self.group.map(|g| format!("g{g}")));
        words.join(" ")
    }
}

impl std::fmt::Display for CellKey {
    /// `mnist-cnn int8 static minmax on ort t1 b1` (threads, batch).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} on {} t{} b{}",
            self.model,
            self.variant(),
            self.runtime,
            self.threads,
            self.batch
        )
    }
}

/// How a cell ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum Status {
    /// Every figure was measured.
    Ok,
    /// The cell could not be completed; `error` says why. Figures measured before the failure
    /// are kept.
    Failed {
        /// The error, as shown to the user.
        error: String,
    },
    /// The cell was not run; `reason` says why (a combination that makes no sense, a runtime
    /// that cannot run the variant yet).
    Skipped {
        /// Why, as shown to the user.
        reason: String,
    },
    /// The sweep was stopped (signal or user) while this cell ran; figures measured before
    /// that are kept.
    Cancelled,
}

impl Status {
    /// One word for tables and logs: `ok`, `failed`, `skipped` or `cancelled`.
    pub fn word(&self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed { .. } => "failed",
            Status::Skipped { .. } => "skipped",
            Status::Cancelled => "cancelled",
        }
    }

    /// The error or reason text, when there is one.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Status::Failed { error } => Some(error),
            Status::Skipped { reason } => Some(reason),
            Status::Ok | Status::Cancelled => None,
        }
    }
}

/// One quantized layer's output error against FP32, measured on calibration inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Node name.
    pub layer: String,
    /// Operator type (`Conv`, `Gemm`, `MatMul`).
    pub op_type: String,
    /// What the layer became (`int8`, `int4`, `binary`, `fp32`).
    pub precision: String,
    /// SQNR in dB (`null` in JSON when the outputs are identical).
    pub sqnr_db: Option<f64>,
    /// Cosine similarity of the two outputs as flat vectors.
    pub cosine: f64,
    /// Shape of the layer's output for one sample (empty in records written before it was kept).
    #[serde(default)]
    pub output_shape: Vec<usize>,
    /// Multiply-accumulates of the layer for one sample (0 in records written before it was kept).
    #[serde(default)]
    pub macs: u64,
}

/// Agreement of a cell's outputs with a reference run of the same samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// What the reference was, e.g. `mnist-cnn fp32 on ort`.
    pub reference: String,
    /// Fraction of samples whose top-1 class matches the reference's.
    pub top1: f64,
    /// Mean KL divergence KL(reference ‖ cell) of the output distributions, nats.
    pub kl: f64,
    /// Largest absolute difference of any output value.
    pub max_abs_diff: f64,
}

/// How well the variant answers on the evaluation split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// The split evaluated (`test` unless said otherwise).
    pub split: String,
    /// Samples run.
    pub samples: usize,
    /// Top-1 accuracy against labels, when the split has labels.
    pub accuracy: Option<f64>,
    /// The FP32 model's accuracy as its manifest records it (measured with ONNX Runtime when the
    /// assets were built), to read `accuracy` against.
    pub expected_fp32_accuracy: Option<f64>,
    /// Agreement with a reference run, when one was given.
    pub agreement: Option<Agreement>,
    /// Wall-clock seconds of the evaluation pass (preprocessing included).
    pub eval_seconds: f64,
}

/// Everything measured for one cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Layout version, [`SCHEMA_VERSION`] when written by this build.
    pub schema: u32,
    /// What was measured (its fields stand at the top level of the JSON object).
    #[serde(flatten)]
    pub key: CellKey,
    /// Hash of the profile that planned this cell (absent for one-off runs); `--resume` only
    /// trusts records of the same profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_hash: Option<String>,
    /// The command line that measured this cell (shell-quoted), so that a report can say how to
    /// reproduce it; absent when the writer did not know it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// How it ended.
    pub status: Status,
    /// The model file run, as given.
    pub model_file: String,
    /// Accuracy and agreement (fields at the top level of the JSON object; absent when the
    /// evaluation did not run).
    #[serde(flatten)]
    pub quality: Option<Quality>,
    /// Load-and-plan time.
    pub cold_start: Option<ColdStartReport>,
    /// Steady-state latency statistics.
    pub latency: Option<LatencyReport>,
    /// Peak and current memory of the cell.
    pub memory: Option<MemoryReport>,
    /// Model, packed-weight and arena bytes.
    pub sizes: ModelSizes,
    /// Energy per inference with its source (measured, estimated or modelled).
    pub energy: Option<EnergyReport>,
    /// Kernels the runtime ran on.
    pub kernels: Vec<String>,
    /// Per-layer output error of a quantized variant against FP32 (empty for FP32).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerRecord>,
    /// The machine the figures come from.
    pub machine: MachineInfo,
}

impl Record {
    /// A record of a cell that measured nothing (it failed before running, was skipped or
    /// cancelled): the key, how it ended, and the machine.
    pub fn unmeasured(
        key: CellKey,
        status: Status,
        model_file: String,
        machine: &MachineInfo,
    ) -> Record {
        Record {
            schema: SCHEMA_VERSION,
            key,
            profile_hash: None,
            command: None,
            status,
            model_file,
            quality: None,
            cold_start: None,
            latency: None,
            memory: None,
            sizes: ModelSizes::default(),
            energy: None,
            kernels: Vec::new(),
            layers: Vec::new(),
            machine: machine.clone(),
        }
    }
}

impl LayerRecord {
    /// The record of `layer` for a cell run on `runtime`: the layer's error as that runtime
    /// computed it; `None` when it was not measured there (the engine could not run the model).
    pub fn measured_on(
        layer: &crate::quant::pipeline::LayerReport,
        runtime: RuntimeKind,
    ) -> Option<LayerRecord> {
        let e = layer.on(runtime)?;
        Some(LayerRecord {
            layer: layer.layer.clone(),
            op_type: layer.op_type.clone(),
            precision: layer.precision.clone(),
            sqnr_db: e.sqnr_db.is_finite().then_some(e.sqnr_db),
            cosine: e.cosine,
            output_shape: layer.output_shape.clone(),
            macs: layer.macs,
        })
    }

    /// [`LayerRecord::measured_on`] for every layer that was measured on `runtime`.
    pub fn all_measured_on(
        layers: &[crate::quant::pipeline::LayerReport],
        runtime: RuntimeKind,
    ) -> Vec<LayerRecord> {
        layers
            .iter()
            .filter_map(|l| LayerRecord::measured_on(l, runtime))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::layer_error::LayerError;
    use crate::quant::pipeline::LayerReport;

    fn report(native: Option<LayerError>) -> LayerReport {
        LayerReport {
            layer: "conv1".into(),
            op_type: "Conv".into(),
            precision: "int8 static".into(),
            tensor: "relu1".into(),
            output_shape: vec![1, 8, 4, 4],
            macs: 1152,
            ort: LayerError {
                sqnr_db: 30.0,
                cosine: 0.999,
            },
            native,
        }
    }

    #[test]
    fn a_cell_records_the_layer_error_of_its_own_runtime() {
        let native = LayerError {
            sqnr_db: f64::INFINITY,
            cosine: 1.0,
        };
        let both = [report(Some(native))];
        let ort = LayerRecord::all_measured_on(&both, RuntimeKind::Ort);
        assert_eq!((ort[0].sqnr_db, ort[0].cosine), (Some(30.0), 0.999));
        let on_engine = LayerRecord::all_measured_on(&both, RuntimeKind::Native);
        // Identical outputs have no finite SQNR: `null` in the record.
        assert_eq!((on_engine[0].sqnr_db, on_engine[0].cosine), (None, 1.0));
        assert_eq!(on_engine[0].macs, 1152);
        // Not measured on the engine: no record rather than ORT's figures under its name.
        assert!(LayerRecord::all_measured_on(&[report(None)], RuntimeKind::Native).is_empty());
    }
}
