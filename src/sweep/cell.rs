//! Measuring one cell: a model on one runtime at one thread count, evaluated on its test split
//! and timed, giving one [`Record`]. A failure at any step ends the cell with the figures
//! measured so far and the error, never the whole sweep.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::eval::{self, Dataset, OutputKind};
use crate::graph::Graph;
use crate::measure::latency::{
    cold_start, ColdStartReport, LatencyConfig, LatencyError, LatencyReport,
};
use crate::measure::machine::MachineInfo;
use crate::measure::memory::{ModelSizes, PeakTracker};
use crate::measure::power::{measure_with_energy, EnergyReport, PowerConfig};
use crate::runtime::{self, Runtime, RuntimeKind};
use crate::sweep::event::Phase;
use crate::sweep::record::{
    Agreement, CellKey, Method, Precision, Quality, Record, Status, SCHEMA_VERSION,
};
use crate::tensor::Tensor;

/// The model a cell runs, with the data it is judged on.
#[derive(Debug)]
pub struct Subject<'a> {
    /// Short name for records and tables.
    pub name: String,
    /// The `.onnx` file.
    pub path: PathBuf,
    /// Weight precision of this variant.
    pub precision: Precision,
    /// How it was quantized.
    pub method: Method,
    /// The evaluation split, already loaded.
    pub dataset: &'a Dataset,
    /// Index of the scored output among the graph's outputs.
    pub output: usize,
    /// Whether that output holds logits or probabilities.
    pub output_kind: OutputKind,
    /// The FP32 accuracy the manifest records, carried into the record.
    pub expected_fp32_accuracy: Option<f64>,
}

/// How to run and time a cell.
#[derive(Debug, Clone)]
pub struct CellConfig {
    /// Runtime to execute on.
    pub runtime: RuntimeKind,
    /// Compute threads.
    pub threads: usize,
    /// Batch size of the latency loop.
    pub batch: usize,
    /// Batch size of the accuracy pass (larger is faster; it does not change the answers).
    pub eval_batch: usize,
    /// Timing rules; its `batch_size` and `threads` are overwritten with the cell's.
    pub latency: LatencyConfig,
    /// Energy probe chain.
    pub power: PowerConfig,
}

/// Outputs of another run of the same samples, to measure agreement against.
#[derive(Debug)]
pub struct Reference<'a> {
    /// What the reference was, for the record.
    pub label: String,
    /// Its scored output for every sample, `[samples, ...]`.
    pub outputs: &'a Tensor,
}

/// A finished cell: its record, and the scored outputs (kept for agreement with later cells).
#[derive(Debug)]
pub struct CellOutcome {
    /// What was measured.
    pub record: Record,
    /// The scored output of every evaluated sample, when the evaluation ran.
    pub outputs: Option<Tensor>,
    /// The model as the run parsed it, when the cell finished on a runtime that parses it
    /// itself (the native engine; `None` on ONNX Runtime), so that a caller inspecting the file
    /// it ran (e.g. for its quantization) need not parse it again.
    pub graph: Option<Graph>,
}

/// Figures gathered so far, turned into a record whether the cell finished or not.
#[derive(Default)]
struct Partial {
    quality: Option<Quality>,
    cold: Option<ColdStartReport>,
    latency: Option<LatencyReport>,
    energy: Option<EnergyReport>,
    kernels: Vec<String>,
    outputs: Option<Tensor>,
    footprint: Option<runtime::Footprint>,
    graph: Option<Graph>,
}

/// Why a cell stopped before its end.
enum Stop {
    /// Something went wrong.
    Failed(String),
    /// The runtime lacks an operator the model uses ([`runtime::RuntimeError::Unsupported`]).
    Unsupported(String),
}

impl<E: std::fmt::Display> From<E> for Stop {
    fn from(e: E) -> Stop {
        Stop::Failed(e.to_string())
    }
}

/// Runs one cell: load and plan (timed as cold start), evaluate the test split, time the
/// steady state with energy metered, and read memory. `machine` is copied into the record.
pub fn run_cell(
    subject: &Subject<'_>,
    config: &CellConfig,
    reference: Option<&Reference<'_>>,
    machine: &MachineInfo,
) -> CellOutcome {
    run_cell_with(subject, config, reference, machine, &mut |_| {})
}

/// [`run_cell`], telling `on_phase` as the cell moves to loading, evaluating and timing. A
/// runtime that lacks an operator the model uses ends the cell as skipped with its reason (so
/// the cell runs by itself once the runtime gains the operator); any other error as failed.
pub fn run_cell_with(
    subject: &Subject<'_>,
    config: &CellConfig,
    reference: Option<&Reference<'_>>,
    machine: &MachineInfo,
    on_phase: &mut dyn FnMut(Phase),
) -> CellOutcome {
    let tracker = PeakTracker::start();
    let mut partial = Partial::default();
    let result = measure_into(&mut partial, subject, config, reference, on_phase);
    let status = match result {
        Ok(()) => Status::Ok,
        Err(Stop::Failed(error)) => Status::Failed { error },
        Err(Stop::Unsupported(reason)) => Status::Skipped { reason },
    };
    let sizes = ModelSizes {
        model_file_bytes: file_bytes(&subject.path),
        packed_weight_bytes: partial.footprint.map(|f| f.packed_weight_bytes),
        arena_bytes: partial.footprint.map(|f| f.arena_bytes),
    };
    let record = Record {
        schema: SCHEMA_VERSION,
        key: CellKey {
            model: subject.name.clone(),
            precision: subject.precision,
            method: subject.method,
            runtime: config.runtime,
            threads: config.threads,
            batch: config.batch,
            calibrator: None,
            group: None,
        },
        profile_hash: None,
        command: None,
        status,
        model_file: subject.path.display().to_string(),
        quality: partial.quality,
        cold_start: partial.cold,
        latency: partial.latency,
        memory: tracker.read().ok(),
        sizes,
        energy: partial.energy,
        kernels: partial.kernels,
        layers: Vec::new(),
        machine: machine.clone(),
    };
    CellOutcome {
        record,
        outputs: partial.outputs,
        graph: partial.graph,
    }
}

fn file_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The steps of a cell, each storing its figures in `partial` as soon as it has them.
fn measure_into(
    partial: &mut Partial,
    subject: &Subject<'_>,
    config: &CellConfig,
    reference: Option<&Reference<'_>>,
    on_phase: &mut dyn FnMut(Phase),
) -> Result<(), Stop> {
    let dataset = subject.dataset;
    let batch = config.batch.min(dataset.len()).max(1);
    let timing_input = dataset.batch(0..batch)?;
    let input_name = dataset.input_name().to_string();

    on_phase(Phase::Loading);
    let (mut rt, cold) = cold_start(|| {
        let mut rt = runtime::open(config.runtime, &subject.path, config.threads)?;
        rt.run(&[(input_name.as_str(), &timing_input)])?;
        Ok::<Box<dyn Runtime>, runtime::RuntimeError>(rt)
    })
    .map_err(|e| match e {
        LatencyError::Work {
            source: source @ runtime::RuntimeError::Unsupported { .. },
            ..
        } => Stop::Unsupported(source.to_string()),
        other => Stop::from(other),
    })?;
    partial.cold = Some(cold);
    partial.kernels = rt.kernel_names();
    partial.footprint = rt.footprint();

    on_phase(Phase::Evaluating);
    let eval = eval::evaluate(
        rt.as_mut(),
        dataset,
        config.eval_batch.max(1),
        subject.output,
    )?;
    let agreement = match reference {
        Some(r) => Some(agreement(r, &eval.outputs, subject.output_kind)?),
        None => None,
    };
    partial.quality = Some(Quality {
        split: "test".into(),
        samples: eval.samples,
        accuracy: eval.accuracy,
        expected_fp32_accuracy: subject.expected_fp32_accuracy,
        agreement,
        eval_seconds: eval.wall_time.as_secs_f64(),
    });
    partial.outputs = Some(eval.outputs);

    let mut latency = config.latency.clone();
    latency.batch_size = batch;
    latency.threads = config.threads;
    on_phase(Phase::Timing);
    let (report, energy) = measure_with_energy(&latency, &config.power, || {
        rt.run(&[(input_name.as_str(), &timing_input)])
    })?;
    partial.latency = Some(report);
    partial.energy = Some(energy);
    partial.footprint = rt.footprint();
    partial.graph = rt.into_graph();
    Ok(())
}

/// Agreement of `outputs` with the reference's outputs on the same samples.
fn agreement(
    reference: &Reference<'_>,
    outputs: &Tensor,
    kind: OutputKind,
) -> Result<Agreement, eval::metrics::MetricError> {
    Ok(Agreement {
        reference: reference.label.clone(),
        top1: eval::metrics::agreement(reference.outputs, outputs)?,
        kl: eval::metrics::mean_kl(reference.outputs, outputs, kind)?,
        max_abs_diff: eval::metrics::difference(reference.outputs, outputs)?.max_abs,
    })
}

/// Timing rules for quick, interactive runs: a short warm-up and about a second of timed runs.
pub fn quick_latency() -> LatencyConfig {
    let mut config = LatencyConfig::default();
    config.warmup.max_time = Duration::from_secs(2);
    config.budget = crate::measure::latency::Budget::Time {
        time: Duration::from_secs(1),
        min_runs: 10,
        max_runs: 100_000,
    };
    config
}
