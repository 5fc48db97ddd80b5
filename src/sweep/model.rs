//! A model made ready to measure: its manifest, its test data loaded and preprocessed, the index
//! of the scored output and the operation counts of one inference.

use std::path::Path;

use crate::eval::{self, Dataset, Manifest};
use crate::graph::Graph;
use crate::measure::latency::Budget;
use crate::measure::machine::MachineInfo;
use crate::measure::power::opcount::OpCounts;
use crate::runtime::RuntimeKind;
use crate::sweep::cell::{run_cell, CellConfig, Subject};
use crate::sweep::record::{Method, Precision};
use crate::tensor::Tensor;

/// A model with what is needed to run its cells.
#[derive(Debug)]
pub struct PreparedModel {
    /// The manifest it was prepared from.
    pub manifest: Manifest,
    /// The test split, preprocessed.
    pub dataset: Dataset,
    /// Index of the scored output among the graph's outputs.
    pub output: usize,
    /// Work of one FP32 inference (batch 1), when the graph's shapes can be worked out.
    pub op_counts: Option<OpCounts>,
}

impl PreparedModel {
    /// Loads the manifest's model (to find its outputs and count its work) and its test split,
    /// keeping the first `limit` samples when given.
    pub fn load(manifest: Manifest, limit: Option<usize>) -> Result<PreparedModel, String> {
        let graph = crate::onnx::load(&manifest.model.file).map_err(|e| e.to_string())?;
        let outputs: Vec<String> = graph.outputs.iter().map(|o| o.name.clone()).collect();
        let output = eval::output_index(&manifest.output, &outputs).map_err(|e| e.to_string())?;
        let dataset = Dataset::load(&manifest.data.test, &manifest.input, limit)
            .map_err(|e| e.to_string())?;
        Ok(PreparedModel {
            op_counts: fp32_op_counts(&graph, &manifest),
            manifest,
            dataset,
            output,
        })
    }

    /// The manifest's name for the model.
    pub fn name(&self) -> &str {
        &self.manifest.model.name
    }

    /// The scored outputs of the model at `path` over this data, for agreement: run on ONNX
    /// Runtime when its library loads, else natively, with a single timed run. Returns a label
    /// for the reference (`path on ort`) and the outputs.
    pub fn reference(
        &self,
        path: &Path,
        config: &CellConfig,
        machine: &MachineInfo,
    ) -> Result<(String, Tensor), String> {
        let kind = if crate::runtime::ort::ort_library().is_ok() {
            RuntimeKind::Ort
        } else {
            RuntimeKind::Native
        };
        let mut cfg = config.clone();
        cfg.runtime = kind;
        cfg.latency.budget = Budget::Runs(1);
        cfg.latency.warmup.max_runs = cfg.latency.warmup.min_runs;
        let subject = self.subject(path, Precision::Fp32, Method::None);
        let outcome = run_cell(&subject, &cfg, None, machine);
        let label = format!("{} on {kind}", path.display());
        match (outcome.outputs, outcome.record.status.detail()) {
            (Some(outputs), _) => Ok((label, outputs)),
            (None, Some(error)) => Err(format!("reference {label}: {error}")),
            (None, None) => Err(format!("reference {label} gave no outputs")),
        }
    }

    /// A cell subject running `path` (the manifest's model or a variant of it) on this data.
    pub fn subject(&self, path: &Path, precision: Precision, method: Method) -> Subject<'_> {
        Subject {
            name: self.manifest.model.name.clone(),
            path: path.to_path_buf(),
            precision,
            method,
            dataset: &self.dataset,
            output: self.output,
            output_kind: self.manifest.output.kind,
            expected_fp32_accuracy: self.manifest.expected.fp32_accuracy,
        }
    }
}

/// MACs and weight bytes of one FP32 inference, for the op-count energy model; `None` when the
/// graph's shapes cannot be worked out.
fn fp32_op_counts(graph: &Graph, manifest: &Manifest) -> Option<OpCounts> {
    let input = &manifest.input;
    let stats = crate::engine::single_sample_stats(graph, &input.name, &input.sample_shape).ok()?;
    Some(OpCounts {
        macs_f32: stats.total_macs,
        dram_bytes: stats.total_param_bytes as u64,
        ..OpCounts::default()
    })
}
