//! Quantization-aware training (QAT): fine-tune a model's FP32 weights while its forward pass
//! sees them, and its activations, as they will be after quantization, so the weights move to
//! where the quantized network works.
//!
//! * Fake quantization with a straight-through estimator ([`fake_quant`] says exactly what is
//!   rounded and where the gradient stops): weights per output channel, symmetric int8 / int4,
//!   or binary `sign(w)·α` (XNOR-Net's scaling, BinaryConnect's clipped STE); activations
//!   (the data input of every Conv, Gemm and MatMul) per tensor, asymmetric u8 over ranges
//!   tracked by an exponential moving average. Activations stay 8-bit at every weight
//!   precision, so "binary" means binary weights with INT8 activations.
//! * Optional distillation from the FP32 model (softened-softmax KL, [`Distillation`]), which
//!   needs no labels.
//! * Gradual bit reduction: a [`BitSchedule`] such as 8 → 4 → 1 bits over the run.
//! * SGD with momentum or Adam, constant/cosine/step learning-rate schedules.
//! * Progress as [`QatEvent`]s given to a callback (a closure that forwards to a
//!   `std::sync::mpsc::Sender` serves a UI thread).
//!
//! ## Why a hand-written autograd
//!
//! The models quench fine-tunes use about a dozen operators (Conv with groups, Gemm/MatMul,
//! element-wise Add/Mul/Div, Relu, Sigmoid, HardSigmoid, HardSwish, Clip, MaxPool,
//! GlobalAveragePool, Flatten/Reshape, a final Softmax) and already exist as a
//! [`Graph`]. A tensor framework such as candle or burn would add a large
//! dependency tree (and its own model format to convert to and from) to differentiate those few
//! ops; here the graph is compiled
//! straight into a program of steps whose backward passes are each a few lines over the same
//! im2col + [`crate::kernels::f32::gemm`] code as the forward, and the trained weights go back
//! into the graph's initializers by name. Every backward is checked against finite differences
//! in the tests.
//!
//! ## Use
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use quench::eval::{Dataset, Manifest};
//! use quench::quant::qat::{self, BitSchedule, QatConfig, WeightBits};
//! # let graph: quench::graph::Graph = unimplemented!();
//! let manifest = Manifest::load("assets/models/mnist-cnn.toml".as_ref())?;
//! let calib = manifest.data.calibration.as_ref().ok_or("no calibration split")?;
//! let data = Dataset::load(calib, &manifest.input, None)?;
//! let config = QatConfig {
//!     bits: BitSchedule::constant(WeightBits::Binary),
//!     ..QatConfig::default()
//! };
//! let result = qat::train(&graph, &data, &config, |event| eprintln!("{event:?}"))?;
//! let test = Dataset::load(&manifest.data.test, &manifest.input, None)?;
//! println!("{:?}", result.evaluate(&test, 256)?);
//! # Ok(()) }
//! ```

mod compile;
mod elementwise;
pub mod fake_quant;
mod linalg;
mod loss;
mod ops;
pub mod optim;
mod persist;
mod program;
mod train;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::eval::DataError;
use crate::graph::Graph;

pub use compile::training_graph;
pub use fake_quant::WeightBits;
pub use optim::{LrSchedule, Optimizer};
pub use persist::METADATA_KEY;
pub use train::{calibrate, fp32_accuracy, train};

/// Why training could not run.
#[derive(Debug, thiserror::Error)]
pub enum QatError {
    /// A node uses an operator or attribute the trainer has no backward for.
    #[error("node `{node}` ({op_type}): not trainable: {reason}")]
    Unsupported {
        /// Node name.
        node: String,
        /// Its operator.
        op_type: String,
        /// What is not supported, with the value found.
        reason: String,
    },
    /// The graph is inconsistent or lacks what training needs (input, output, shapes, ranges).
    #[error("{0}")]
    Graph(String),
    /// A configuration value is out of range.
    #[error("QAT configuration: {field} = {value}: {message}")]
    Config {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        message: &'static str,
    },
    /// The data could not be read or does not fit the model.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Folding BatchNormalization or fusing ops before training failed.
    #[error(transparent)]
    Rewrite(#[from] crate::graph::GraphError),
    /// A model file could not be read or written.
    #[error(transparent)]
    Onnx(#[from] crate::onnx::OnnxError),
    /// A saved result's quantization metadata is missing or malformed.
    #[error("{}: {METADATA_KEY}: {message}", path.display())]
    Metadata {
        /// The model file.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Distillation from the FP32 model: `loss = (1 − weight)·CE(labels) + weight·T²·KL(teacher/T ‖
/// student/T)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Distillation {
    /// Softmax temperature T (> 0); 2–4 is usual.
    pub temperature: f32,
    /// Share of the distillation term in `0..=1`; 1 trains without labels.
    pub weight: f32,
}

/// Weight precision over the run: stages starting at fractions of the total step count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BitSchedule {
    stages: Vec<(f32, WeightBits)>,
}

impl BitSchedule {
    /// One precision throughout.
    pub fn constant(bits: WeightBits) -> BitSchedule {
        BitSchedule {
            stages: vec![(0.0, bits)],
        }
    }

    /// Equal shares of the run for each precision in turn, e.g. `[Int8, Int4, Binary]`.
    pub fn gradual(bits: &[WeightBits]) -> Result<BitSchedule, QatError> {
        let n = bits.len() as f32;
        BitSchedule::new(
            bits.iter()
                .enumerate()
                .map(|(i, &b)| (i as f32 / n, b))
                .collect(),
        )
    }

    /// Stages `(start, bits)`, `start` the fraction of the run in `[0, 1)` where `bits` takes
    /// over; the first starts at 0 and starts increase.
    pub fn new(stages: Vec<(f32, WeightBits)>) -> Result<BitSchedule, QatError> {
        let bad = |message| QatError::Config {
            field: "bits",
            value: format!("{stages:?}"),
            message,
        };
        match stages.first() {
            None => return Err(bad("no stage")),
            Some(&(s, _)) if s != 0.0 => return Err(bad("the first stage must start at 0")),
            _ => {}
        }
        let increasing = stages.windows(2).all(|w| w[1].0 > w[0].0);
        if !increasing || stages.iter().any(|s| s.0.is_nan() || s.0 >= 1.0) {
            return Err(bad("stage starts must increase and stay below 1"));
        }
        Ok(BitSchedule { stages })
    }

    /// The stages, in order.
    pub fn stages(&self) -> &[(f32, WeightBits)] {
        &self.stages
    }

    /// The first step of each stage in a run of `total` steps.
    pub fn start_steps(&self, total: usize) -> Vec<(usize, WeightBits)> {
        self.stages
            .iter()
            .map(|&(f, b)| ((f * total as f32).round() as usize, b))
            .collect()
    }

    /// The precision at `step` of `total`.
    pub fn at(&self, step: usize, total: usize) -> WeightBits {
        self.start_steps(total)
            .into_iter()
            .take_while(|&(s, _)| s <= step)
            .last()
            .or_else(|| self.start_steps(total).first().copied())
            .map_or(WeightBits::Int8, |(_, b)| b)
    }
}

/// Everything a fine-tuning run is told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QatConfig {
    /// Passes over the data.
    pub epochs: usize,
    /// Samples per step (the last batch of an epoch may be smaller).
    pub batch_size: usize,
    /// Base learning rate.
    pub learning_rate: f32,
    /// SGD or Adam.
    pub optimizer: Optimizer,
    /// Learning-rate schedule over all steps.
    pub schedule: LrSchedule,
    /// Weight precision over the run.
    pub bits: BitSchedule,
    /// Distillation from the FP32 model, if any.
    pub distill: Option<Distillation>,
    /// EMA decay of the activation ranges (weight of the old range per step).
    pub ema_decay: f32,
    /// Seed of the per-epoch shuffle.
    pub seed: u64,
    /// Graph output holding the class scores; `None`: the first graph output.
    pub output: Option<String>,
    /// Stop after this many steps (the schedules still span the full run).
    pub max_steps: Option<usize>,
}

impl Default for QatConfig {
    fn default() -> Self {
        QatConfig {
            epochs: 1,
            batch_size: 64,
            learning_rate: 1e-3,
            optimizer: Optimizer::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
            schedule: LrSchedule::Cosine,
            bits: BitSchedule::constant(WeightBits::Int8),
            distill: None,
            ema_decay: 0.9,
            seed: 0,
            output: None,
            max_steps: None,
        }
    }
}

/// One optimisation step, as reported and kept in the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Step index from 0 over the whole run.
    pub step: usize,
    /// Epoch index from 0.
    pub epoch: usize,
    /// Weight precision in force.
    pub bits: WeightBits,
    /// Learning rate used.
    pub lr: f32,
    /// Training loss of the batch.
    pub loss: f32,
    /// Top-1 accuracy of the batch against its labels, when there are labels.
    pub accuracy: Option<f32>,
    /// Top-1 agreement of the batch with the FP32 teacher, when distilling.
    pub agreement: Option<f32>,
}

/// Progress of a run.
#[derive(Debug, Clone, PartialEq)]
pub enum QatEvent {
    /// Training is about to begin.
    Started {
        /// Steps the schedules span.
        total_steps: usize,
        /// Steps per epoch.
        steps_per_epoch: usize,
        /// Training samples.
        samples: usize,
        /// Trainable scalars.
        parameters: usize,
    },
    /// The weight precision changes from this step on.
    BitsChanged {
        /// First step at the new precision.
        step: usize,
        /// The new precision.
        bits: WeightBits,
    },
    /// A step finished.
    Step(StepRecord),
    /// An epoch finished.
    Epoch {
        /// Epoch index from 0.
        epoch: usize,
        /// Mean training loss over the epoch.
        loss: f32,
        /// Training accuracy over the epoch (fake-quantized forward), when labelled.
        accuracy: Option<f32>,
        /// Time since training began.
        elapsed: Duration,
    },
    /// Training finished.
    Finished {
        /// Steps run.
        steps: usize,
        /// Total training time.
        elapsed: Duration,
    },
}

/// How one layer's weights are quantized at the end of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightQuant {
    /// The weight initializer's name.
    pub weight: String,
    /// Precision.
    pub bits: WeightBits,
    /// Axis of the weight tensor that indexes output channels.
    pub axis: usize,
    /// Per-channel scale: the grid step for int8/int4, `α` for binary.
    pub scales: Vec<f32>,
}

/// Top-1 accuracy of a run over a labelled split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    /// Samples whose top score is the label.
    pub correct: usize,
    /// Samples scored.
    pub total: usize,
}

impl Accuracy {
    /// `correct / total` (0 for no samples).
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.correct as f64 / self.total as f64
        }
    }
}

/// The outcome of fine-tuning: the graph with trained FP32 initializers, and the quantization
/// parameters the fake-quantized network ran with, for a static-quantization export.
#[derive(Debug, Clone, PartialEq)]
pub struct QatResult {
    /// The input graph with every trained initializer replaced by its fine-tuned FP32 values.
    pub graph: Graph,
    /// Graph input the samples feed.
    pub input: String,
    /// Graph output that was trained.
    pub output: String,
    /// EMA `(min, max)` of every graph value (input included) seen in training, by value name.
    /// The fake-quantized inputs of Conv/Gemm/MatMul used these, widened to include 0.
    pub activation_ranges: BTreeMap<String, (f32, f32)>,
    /// Final weight quantization of each Conv/Gemm/MatMul, by node name.
    pub weights: BTreeMap<String, WeightQuant>,
    /// Weight precision at the end of the run (every quantized layer has it).
    pub bits: WeightBits,
    /// Every step run.
    pub history: Vec<StepRecord>,
}
