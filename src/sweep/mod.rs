//! Sweeps: cells (model × precision × method × runtime × threads) measured one after another,
//! each giving a [`record::Record`] as soon as it ends.
//!
//! * [`record`] is the record layout every view reads.
//! * [`event`] is the progress stream the headless printer and the TUI listen to.
//! * [`profile`] reads and checks a sweep profile (`profiles/*.toml`).
//! * [`plan`] expands a profile's matrix into ordered cells, leaving out (with reasons) the
//!   combinations that make no sense.
//! * [`runner`] runs a plan: variants built once, cells measured, records stored, events sent.
//! * [`store`] is `results.jsonl`: fsynced appends, torn-line recovery, merging.
//! * [`headless`] turns events into log lines (or JSON lines) for terminals without a UI.
//! * [`cell`] measures one cell.
//! * [`model`] loads a model's manifest and test data once for all its cells.
//! * [`repeat`] measures one cell several times in a row, to see the machine's own noise.
//! * [`compare`] runs the FP32 models of a folder on both runtimes: the bundled default job.

pub mod cell;
pub mod compare;
pub mod event;
pub mod headless;
pub mod model;
pub mod plan;
pub mod profile;
pub mod record;
pub mod repeat;
pub mod runner;
pub mod store;

use std::path::PathBuf;

/// An error that stops a sweep before any cell runs.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// A folder or file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The folder holds no model manifest.
    #[error("{0}: no model manifest (*.toml) found")]
    NoManifests(PathBuf),
    /// The profile cannot be used.
    #[error(transparent)]
    Profile(#[from] profile::ProfileError),
    /// The profile's matrix has no cell left.
    #[error(transparent)]
    EmptyPlan(#[from] plan::EmptyPlan),
    /// The results file could not be opened or written.
    #[error(transparent)]
    Store(#[from] store::StoreError),
}
