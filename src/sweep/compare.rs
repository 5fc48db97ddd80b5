//! The FP32 comparison: every given model on every given runtime, evaluated on its test split and
//! timed, with the native engine's answers checked against ONNX Runtime's on the same samples.

use std::path::{Path, PathBuf};

use crate::eval::Manifest;
use crate::measure::machine::MachineInfo;
use crate::runtime::RuntimeKind;
use crate::sweep::cell::{run_cell, CellConfig, Reference};
use crate::sweep::model::PreparedModel;
use crate::sweep::record::{CellKey, Method, Precision, Record, Status};
use crate::sweep::SweepError;

/// What to compare and how.
#[derive(Debug, Clone)]
pub struct CompareConfig {
    /// Runtimes to run every model on; ONNX Runtime, when listed, runs first and is the
    /// reference the others' answers are compared with.
    pub runtimes: Vec<RuntimeKind>,
    /// Evaluate only the first `limit` test samples (all when `None`).
    pub limit: Option<usize>,
    /// Settings of each cell (its `runtime` is set per cell).
    pub cell: CellConfig,
}

/// The model manifests (`*.toml`) in `dir`, sorted by file name.
pub fn manifests_in(dir: &Path) -> Result<Vec<PathBuf>, SweepError> {
    let io = |source| SweepError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            found.push(path);
        }
    }
    found.sort();
    if found.is_empty() {
        return Err(SweepError::NoManifests(dir.to_path_buf()));
    }
    Ok(found)
}

/// Runs the comparison, handing each record to `on_record` as soon as its cell ends. A model
/// whose manifest, model file or data cannot be read gives a failed record per runtime; the
/// other models still run.
pub fn compare(
    manifests: &[PathBuf],
    config: &CompareConfig,
    machine: &MachineInfo,
    on_record: &mut dyn FnMut(&Record),
) -> Vec<Record> {
    let mut records = Vec::new();
    let mut order = config.runtimes.clone();
    order.sort_by_key(|r| *r != RuntimeKind::Ort);
    for manifest_path in manifests {
        let prepared = Manifest::load(manifest_path)
            .map_err(|e| e.to_string())
            .and_then(|m| PreparedModel::load(m, config.limit));
        let mut reference = None;
        for &runtime in &order {
            let mut cell = config.cell.clone();
            cell.runtime = runtime;
            cell.power.op_counts = prepared.as_ref().ok().and_then(|p| p.op_counts);
            let record = match &prepared {
                Err(error) => failed_record(manifest_path, runtime, &cell, error, machine),
                Ok(p) => {
                    let subject = p.subject(&p.manifest.model.file, Precision::Fp32, Method::None);
                    let against = reference.as_ref().map(|outputs| Reference {
                        label: format!("{} fp32 on ort", subject.name),
                        outputs,
                    });
                    let outcome = run_cell(&subject, &cell, against.as_ref(), machine);
                    if runtime == RuntimeKind::Ort {
                        reference = outcome.outputs;
                    }
                    outcome.record
                }
            };
            on_record(&record);
            records.push(record);
        }
    }
    records
}

fn failed_record(
    manifest_path: &Path,
    runtime: RuntimeKind,
    cell: &CellConfig,
    error: &str,
    machine: &MachineInfo,
) -> Record {
    let name = manifest_path.file_stem().map_or_else(
        || manifest_path.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
    let key = CellKey {
        model: name,
        precision: Precision::Fp32,
        method: Method::None,
        runtime,
        threads: cell.threads,
        batch: cell.batch,
        calibrator: None,
        group: None,
    };
    let status = Status::Failed {
        error: error.to_string(),
    };
    Record::unmeasured(key, status, manifest_path.display().to_string(), machine)
}
