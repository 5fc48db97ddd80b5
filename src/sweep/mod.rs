//! Sweeps: cells (model × precision × method × runtime × threads) measured one after another,
//! each giving a [`record::Record`] as soon as it ends.
//!
//! * [`record`] is the record layout every view reads.
//! * [`event`] is the progress stream the headless printer and the TUI listen to.
//! * [`cell`] measures one cell.
//! * [`model`] loads a model's manifest and test data once for all its cells.
//! * [`repeat`] measures one cell several times in a row, to see the machine's own noise.
//! * [`compare`] runs the FP32 models of a folder on both runtimes: the bundled default job.

pub mod cell;
pub mod compare;
pub mod event;
pub mod model;
pub mod record;
pub mod repeat;

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
}
