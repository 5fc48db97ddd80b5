//! Progress events of a sweep. The runner publishes them on one channel; the headless printer
//! and the TUI are two listeners of the same stream, and neither computes a figure of its own:
//! every figure arrives inside a [`Record`].

use serde::{Deserialize, Serialize};

use crate::sweep::record::{CellKey, Record};

/// What a running cell is doing, for progress lines and the TUI's running-cell marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Making the quantized variant (calibration, export).
    Quantizing,
    /// Fine-tuning with fake quantization.
    Training,
    /// Loading the model into the runtime and planning it.
    Loading,
    /// Scoring the evaluation split.
    Evaluating,
    /// Timing the steady state (the UI keeps still during this phase).
    Timing,
}

/// One thing that happened in a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// The plan is fixed: `cells` keys will run in this order, and `dropped` combinations were
    /// left out, each with its reason.
    SweepStarted {
        /// Profile name.
        profile: String,
        /// Hash of the profile text, stamped on every record.
        profile_hash: String,
        /// Every planned cell, in run order.
        cells: Vec<CellKey>,
        /// Combinations left out of the matrix and why.
        dropped: Vec<Dropped>,
    },
    /// Cell `index` (0-based, of `total`) started.
    CellStarted {
        /// Position in the plan.
        index: usize,
        /// Cells in the plan.
        total: usize,
        /// What it is.
        key: CellKey,
    },
    /// Cell `index` moved to another phase; `fraction` is how far the phase is, when known.
    CellPhase {
        /// Position in the plan.
        index: usize,
        /// What it is doing now.
        phase: Phase,
        /// Progress of the phase in 0..=1, when known (training steps, evaluated samples).
        fraction: Option<f64>,
        /// A short note (e.g. `epoch 1/3 loss 0.21`).
        note: Option<String>,
    },
    /// Cell `index` ended (ok, failed, skipped or cancelled) and its record was written.
    CellFinished {
        /// Position in the plan.
        index: usize,
        /// Its record, as appended to `results.jsonl`.
        record: Box<Record>,
    },
    /// A cell already recorded as ok by an earlier run of the same profile (`--resume`).
    CellResumed {
        /// Position in the plan.
        index: usize,
        /// The record found.
        record: Box<Record>,
    },
    /// The sweep ended.
    SweepFinished {
        /// Cells by how they ended.
        ok: usize,
        /// Cells that failed.
        failed: usize,
        /// Cells skipped.
        skipped: usize,
        /// Cells cancelled (and not run because of the cancellation).
        cancelled: usize,
        /// Seconds the sweep took.
        seconds: f64,
    },
    /// Something the user should read that is not a cell's result (e.g. a torn last line of
    /// `results.jsonl` was dropped on resume).
    Warning {
        /// The message.
        message: String,
    },
}

/// A combination of the matrix left out of the plan, with its reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dropped {
    /// The combination, in words (e.g. `mnist-mlp int4 static`).
    pub what: String,
    /// Why it makes no sense.
    pub reason: String,
}
