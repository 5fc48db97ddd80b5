//! The sweep runner: a profile's plan run cell by cell, each cell's record appended (and
//! fsynced) to `results.jsonl` as soon as it ends, progress published as [`Event`]s to one
//! sink. The headless printer, `--progress json` and the TUI are listeners of that sink; a
//! remote run calls [`run_profile`] on the board.
//!
//! * `--resume`: cells recorded ok by an earlier run of the same profile (same key and profile
//!   hash) are not run again ([`Event::CellResumed`]).
//! * A failing cell is recorded as failed and the sweep goes on. What quench cannot do yet is
//!   recorded as skipped with the reason: a runtime that lacks an operator, a layer the
//!   quantizer cannot export, a model QAT cannot train.
//! * Cancellation (`RunOptions::cancel`, set by a signal handler): the running cell ends, its
//!   record is written (cancelled if the stop came while its variant was being built), and no
//!   further cell starts.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::measure::latency::{Budget, LatencyConfig};
use crate::measure::machine::MachineInfo;
use crate::measure::power::PowerConfig;
use crate::quant::pipeline::{self, LayerReport, PipelineError, QuantizeConfig};
use crate::quant::qat::{QatError, QatEvent};
use crate::quant::QuantError;
use crate::runtime;
use crate::sweep::cell::{quick_latency, run_cell_with, CellConfig, Reference};
use crate::sweep::event::{Event, Phase};
use crate::sweep::model::PreparedModel;
use crate::sweep::plan::{self, Plan, PlannedCell, VariantSpec};
use crate::sweep::profile::{self, Profile};
use crate::sweep::record::{CellKey, LayerRecord, Method, Record, Status};
use crate::sweep::store::ResultsWriter;
use crate::sweep::SweepError;
use crate::tensor::Tensor;

/// How to run a sweep.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Output folder: `results.jsonl`, the built variants (`variants/`) and the QAT cache.
    pub out: PathBuf,
    /// Keep the ok cells of an earlier run of the same profile in `out` and run the rest.
    pub resume: bool,
    /// Set to stop the sweep after the running cell (a signal handler sets it).
    pub cancel: Arc<AtomicBool>,
    /// Folder of trained QAT models reused across sweeps (`None`: `out/cache`).
    pub cache: Option<PathBuf>,
    /// Live control by a listener (the TUI): pause between cells, runtimes turned off.
    pub control: Arc<RunControl>,
    /// Cells run again even when `resume` finds them recorded ok (the TUI's re-run).
    pub rerun: Vec<CellKey>,
}

/// Run control shared with a listener while the sweep runs; checked before each cell.
#[derive(Debug, Default)]
pub struct RunControl {
    /// While set, the runner waits before starting its next cell (cancel still stops it).
    pub pause: AtomicBool,
    /// Runtimes turned off: their cells are recorded as skipped, saying so, and a later
    /// `--resume` runs them.
    pub off: std::sync::Mutex<Vec<crate::runtime::RuntimeKind>>,
}

impl RunControl {
    /// Why `key` is not to run now, when its runtime is turned off.
    fn skip_reason(&self, key: &CellKey) -> Option<String> {
        let off = self.off.lock().unwrap_or_else(|p| p.into_inner());
        off.contains(&key.runtime)
            .then(|| format!("{} turned off during the sweep", key.runtime))
    }

    /// Waits while paused, unless `cancel` is set.
    fn wait_while_paused(&self, cancel: &AtomicBool) {
        while self.pause.load(Ordering::SeqCst) && !cancel.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl RunOptions {
    /// Options writing to `out`, not resuming, never cancelled, caching under `out`.
    pub fn new(out: impl Into<PathBuf>) -> RunOptions {
        RunOptions {
            out: out.into(),
            resume: false,
            cancel: Arc::new(AtomicBool::new(false)),
            cache: None,
            control: Arc::default(),
            rerun: Vec::new(),
        }
    }
}

/// What a finished (or cancelled) sweep did.
#[derive(Debug, Clone)]
pub struct SweepSummary {
    /// The records of every planned cell that has one (resumed ones included), in plan order.
    pub records: Vec<Record>,
    /// Cells ok (resumed ones included).
    pub ok: usize,
    /// Cells failed.
    pub failed: usize,
    /// Cells skipped.
    pub skipped: usize,
    /// Cells cancelled or not run because of the cancellation.
    pub cancelled: usize,
    /// Combinations the plan left out, with reasons.
    pub dropped: Vec<crate::sweep::event::Dropped>,
    /// The results file.
    pub results: PathBuf,
}

/// Reads the profile at `path`, plans it for this machine and runs it headless into
/// `options.out`, publishing progress to `sink`. The entry point of `quench sweep` and of a
/// remote board's run.
pub fn run_profile(
    path: &Path,
    options: &RunOptions,
    sink: &mut dyn FnMut(Event),
) -> Result<SweepSummary, SweepError> {
    let profile = profile::load(path)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let plan = plan::plan(&profile, cores)?;
    run_plan(&profile, &plan, options, sink)
}

/// A model's prepared data and its FP32 reference outputs, made when its first cell runs.
struct ModelState {
    prepared: Result<PreparedModel, String>,
    reference: Option<Result<(String, Tensor), String>>,
}

/// A built variant: the file every runtime runs, and its per-layer error.
#[derive(Clone)]
struct Built {
    path: PathBuf,
    layers: Vec<LayerReport>,
}

/// Runs `plan` (made from `profile`).
pub fn run_plan(
    profile: &Profile,
    plan: &Plan,
    options: &RunOptions,
    sink: &mut dyn FnMut(Event),
) -> Result<SweepSummary, SweepError> {
    let started = Instant::now();
    let (mut writer, loaded) = ResultsWriter::open(&options.out, options.resume)?;
    for message in loaded.warnings {
        sink(Event::Warning { message });
    }
    let done: std::collections::HashMap<_, _> = loaded
        .records
        .into_iter()
        .filter(|r| r.status == Status::Ok && r.profile_hash.as_deref() == Some(&profile.hash))
        .map(|r| (r.key.clone(), r))
        .collect();
    let max_threads = profile.threads.iter().copied().max().unwrap_or(1);
    let ort_version = runtime::ort::ort_library().ok().map(|l| l.version.clone());
    let machine = MachineInfo::collect(Path::new("/"), max_threads, ort_version);
    sink(Event::SweepStarted {
        profile: profile.name.clone(),
        profile_hash: profile.hash.clone(),
        cells: plan.cells.iter().map(|c| c.key.clone()).collect(),
        dropped: plan.dropped.clone(),
    });
    let mut runner = Runner {
        profile,
        plan,
        options,
        machine,
        models: (0..profile.models.len()).map(|_| None).collect(),
        built: None,
    };
    let mut summary = SweepSummary {
        records: Vec::new(),
        ok: 0,
        failed: 0,
        skipped: 0,
        cancelled: 0,
        dropped: plan.dropped.clone(),
        results: writer.path().to_path_buf(),
    };
    let total = plan.cells.len();
    for (index, cell) in plan.cells.iter().enumerate() {
        options.control.wait_while_paused(&options.cancel);
        if options.cancel.load(Ordering::SeqCst) {
            summary.cancelled += plan.cells[index..]
                .iter()
                .filter(|c| !done.contains_key(&c.key))
                .count();
            break;
        }
        if let Some(record) = done
            .get(&cell.key)
            .filter(|_| !options.rerun.contains(&cell.key))
        {
            summary.ok += 1;
            summary.records.push(record.clone());
            sink(Event::CellResumed {
                index,
                record: Box::new(record.clone()),
            });
            continue;
        }
        sink(Event::CellStarted {
            index,
            total,
            key: cell.key.clone(),
        });
        let mut record = match options.control.skip_reason(&cell.key) {
            Some(reason) => runner.skipped(cell, reason),
            None => runner.run(index, cell, sink),
        };
        record.key = cell.key.clone();
        record.profile_hash = Some(profile.hash.clone());
        writer.append(&record)?;
        match record.status {
            Status::Ok => summary.ok += 1,
            Status::Failed { .. } => summary.failed += 1,
            Status::Skipped { .. } => summary.skipped += 1,
            Status::Cancelled => summary.cancelled += 1,
        }
        summary.records.push(record.clone());
        sink(Event::CellFinished {
            index,
            record: Box::new(record),
        });
    }
    sink(Event::SweepFinished {
        ok: summary.ok,
        failed: summary.failed,
        skipped: summary.skipped,
        cancelled: summary.cancelled,
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok(summary)
}

/// The state carried from cell to cell: prepared models and the variant last built.
struct Runner<'a> {
    profile: &'a Profile,
    plan: &'a Plan,
    options: &'a RunOptions,
    machine: MachineInfo,
    models: Vec<Option<ModelState>>,
    built: Option<(usize, Result<Built, Status>)>,
}

/// The latency rules of the profile.
fn latency(profile: &Profile) -> LatencyConfig {
    let t = &profile.timing;
    let mut latency = quick_latency();
    latency.warmup.max_time = Duration::from_secs_f64(t.warmup_seconds);
    latency.budget = Budget::Time {
        time: Duration::from_secs_f64(t.seconds),
        min_runs: t.min_runs,
        max_runs: 1_000_000,
    };
    latency
}

/// How `cell` runs under `profile`.
fn cell_config(profile: &Profile, cell: &PlannedCell, prepared: &PreparedModel) -> CellConfig {
    let mut power = PowerConfig::new("/");
    if let Some(board) = &profile.board {
        power.board = Some(board.clone());
    }
    power.op_counts = prepared.op_counts;
    CellConfig {
        runtime: cell.key.runtime,
        threads: cell.key.threads,
        batch: cell.key.batch,
        eval_batch: profile.data.eval_batch,
        latency: latency(profile),
        power,
    }
}

impl Runner<'_> {
    /// The record of a cell not run because its runtime was turned off.
    fn skipped(&self, cell: &PlannedCell, reason: String) -> Record {
        let variant = &self.plan.variants[cell.variant];
        let model = &self.profile.models[variant.model];
        Record::unmeasured(
            cell.key.clone(),
            Status::Skipped { reason },
            model.manifest.model.file.display().to_string(),
            &self.machine,
        )
    }

    /// Runs one cell and returns its record (its key and profile hash are set by the caller).
    fn run(&mut self, index: usize, cell: &PlannedCell, sink: &mut dyn FnMut(Event)) -> Record {
        let (profile, plan) = (self.profile, self.plan);
        let variant = &plan.variants[cell.variant];
        let model = &profile.models[variant.model];
        let manifest_file = model.manifest.model.file.display().to_string();
        let built = match &self.built {
            Some((v, b)) if *v == cell.variant => b.clone(),
            _ => {
                let b = self.build(index, variant, sink);
                self.built = Some((cell.variant, b.clone()));
                b
            }
        };
        let machine = &self.machine;
        let unmeasured = |status: Status, file: String| {
            Record::unmeasured(cell.key.clone(), status, file, machine)
        };
        let built = match built {
            Ok(b) => b,
            Err(status) => return unmeasured(status, manifest_file),
        };
        if self.options.cancel.load(Ordering::SeqCst) {
            return unmeasured(Status::Cancelled, built.path.display().to_string());
        }
        let state = self.models[variant.model].get_or_insert_with(|| ModelState {
            prepared: PreparedModel::load(model.manifest.clone(), profile.data.test_limit),
            reference: None,
        });
        let prepared = match &state.prepared {
            Ok(p) => p,
            Err(e) => return unmeasured(Status::Failed { error: e.clone() }, manifest_file),
        };
        let config = cell_config(profile, cell, prepared);
        let reference = state.reference.get_or_insert_with(|| {
            let r = prepared.reference(&model.manifest.model.file, &config, machine);
            if let Err(e) = &r {
                sink(Event::Warning {
                    message: format!("{}: no agreement figures: {e}", model.name()),
                });
            }
            r
        });
        let reference = match reference {
            Ok((label, outputs)) => Some(Reference {
                label: format!("{} fp32 on {}", model.name(), label_runtime(label)),
                outputs,
            }),
            Err(_) => None,
        };
        let subject = prepared.subject(&built.path, variant.precision, variant.method);
        let outcome = run_cell_with(
            &subject,
            &config,
            reference.as_ref(),
            machine,
            &mut |phase| {
                sink(Event::CellPhase {
                    index,
                    phase,
                    fraction: None,
                    note: None,
                })
            },
        );
        let mut record = outcome.record;
        record.layers = LayerRecord::all_measured_on(&built.layers, cell.key.runtime);
        record
    }

    /// Builds `variant` (the FP32 model is its own variant), or says why it could not be.
    fn build(
        &self,
        index: usize,
        variant: &VariantSpec,
        sink: &mut dyn FnMut(Event),
    ) -> Result<Built, Status> {
        let model = &self.profile.models[variant.model];
        let (Some(target), Some(method)) = (variant.target(), variant.pipeline_method()) else {
            return Ok(Built {
                path: model.manifest.model.file.clone(),
                layers: Vec::new(),
            });
        };
        if let Some(file) = &variant.import {
            // A QAT export from elsewhere: run as it is. Its tensors are named by its exporter,
            // so there is no per-layer comparison with the FP32 graph.
            return Ok(Built {
                path: file.clone(),
                layers: Vec::new(),
            });
        }
        let qat = variant.method == Method::Qat;
        sink(Event::CellPhase {
            index,
            phase: if qat {
                Phase::Training
            } else {
                Phase::Quantizing
            },
            fraction: None,
            note: None,
        });
        let out = self
            .options
            .out
            .join("variants")
            .join(variant.file_name(model.name()));
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Status::Failed {
                error: format!("{}: {e}", dir.display()),
            })?;
        }
        let config = QuantizeConfig {
            model: model.manifest.model.file.clone(),
            manifest: model.manifest.clone(),
            precision: target,
            method: Some(method),
            calibrator: variant.calibrator,
            percentile: None,
            per_tensor: false,
            group: variant.group,
            binary_acts: None,
            calib_samples: if qat {
                self.profile.qat.samples
            } else {
                self.profile.data.calibration_samples
            },
            calibrate_on: self.profile.data.calibrate_on,
            epochs: qat.then_some(self.profile.qat.epochs),
            bias_correction: self.profile.data.bias_correction,
            limit: None,
            out: out.clone(),
        };
        let cache = self
            .options
            .cache
            .clone()
            .unwrap_or_else(|| self.options.out.join("cache"));
        let mut total_steps = 0usize;
        let mut last_tenth = None;
        let built = pipeline::build(&config, Some(&cache), &mut |e| match e {
            QatEvent::Started { total_steps: t, .. } => total_steps = *t,
            QatEvent::Step(s) if total_steps > 0 => {
                let tenth = (s.step + 1) * 10 / total_steps;
                if last_tenth != Some(tenth) {
                    last_tenth = Some(tenth);
                    sink(Event::CellPhase {
                        index,
                        phase: Phase::Training,
                        fraction: Some((s.step + 1) as f64 / total_steps as f64),
                        note: Some(format!(
                            "step {}/{total_steps} loss {:.3}",
                            s.step + 1,
                            s.loss
                        )),
                    });
                }
            }
            _ => {}
        });
        match built {
            Ok(v) => {
                if let Some(q) = v.qat.as_ref().and_then(|q| q.cached.as_ref()) {
                    sink(Event::CellPhase {
                        index,
                        phase: Phase::Training,
                        fraction: Some(1.0),
                        note: Some(format!("reused {}", q.display())),
                    });
                }
                Ok(Built {
                    path: out,
                    layers: v.layers,
                })
            }
            // Capabilities quench lacks (not broken cells): skipped with the reason, like a
            // runtime that lacks an operator.
            Err(PipelineError::Qat(e @ QatError::Unsupported { .. })) => Err(Status::Skipped {
                reason: format!("QAT cannot train this model yet: {e}"),
            }),
            Err(PipelineError::Quant(e @ QuantError::Unsupported { .. })) => Err(Status::Skipped {
                reason: format!("the quantizer cannot make this variant yet: {e}"),
            }),
            Err(e) => Err(Status::Failed {
                error: format!("building the variant: {e}"),
            }),
        }
    }
}

/// `ort` or `native` from a reference label `PATH on KIND`.
fn label_runtime(label: &str) -> &str {
    label.rsplit(" on ").next().unwrap_or(label)
}
