//! Latency statistics, memory, power and the description of the machine a figure came from.
//!
//! * [`latency`] times any closure: a warm-up that stops when the timing settles, a timed loop
//!   to a run count or a time budget, and a [`stats::Summary`] of the runs; cold start (load and
//!   plan) is timed on its own.
//! * [`stats`] holds the statistics (type-7 percentiles, bootstrap interval of the median,
//!   modified-z outliers, the noise rule), [`rng`] the fixed-seed generator behind the bootstrap.
//! * [`memory`] reads peak and current resident memory and resets the peak between cells.
//! * [`power`] measures energy from RAPL, hwmon or INA3221 sensors, or estimates it from CPU time
//!   or operation counts, and labels every figure with its source.
//! * [`machine`] describes the CPU, kernel, OS and build a record was made on.
//!
//! Everything returned is serde-serialisable so that it can go into a JSON record unchanged.
//!
//! A check to wire into the CLI later, "same cell twice": measuring one cell twice in a row
//! (A, A) should give a ratio of medians near 1; on a shared machine whose speed moves, alternate
//! A and B in rounds and report the median of the per-round ratios and its spread, rather than
//! comparing two medians taken minutes apart. See `scripts/README.md`.

pub mod latency;
pub mod machine;
pub mod memory;
pub mod power;
pub mod rng;
pub mod stats;

use std::path::PathBuf;

/// An error while measuring: a file that could not be read or parsed, bad samples, or a setting
/// out of range.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// A file (under /proc or /sys, usually) could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A file was read but a field in it was missing or malformed.
    #[error("{path}: field `{field}`: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The field or line looked for.
        field: String,
        /// What was wrong with it.
        message: String,
    },
    /// Statistics were asked of an empty set of samples.
    #[error("no samples to summarise")]
    NoSamples,
    /// A sample was NaN or infinite.
    #[error("sample {index} is not a finite number ({value})")]
    NonFinite {
        /// Position of the bad sample.
        index: usize,
        /// Its value.
        value: f64,
    },
    /// A setting was out of range.
    #[error("invalid setting `{field}`: {message}")]
    Config {
        /// The setting's name.
        field: &'static str,
        /// Why it was refused.
        message: String,
    },
}

/// Reads a small text file (sysfs, procfs) whole, naming the file in the error.
pub(crate) fn read_text(path: &std::path::Path) -> Result<String, MeasureError> {
    std::fs::read_to_string(path).map_err(|source| MeasureError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a sysfs file holding one unsigned integer, naming the file in the error.
pub(crate) fn read_u64(path: &std::path::Path) -> Result<u64, MeasureError> {
    let text = read_text(path)?;
    text.trim().parse().map_err(|e| MeasureError::Parse {
        path: path.to_path_buf(),
        field: "value".into(),
        message: format!("`{}` is not an unsigned integer: {e}", text.trim()),
    })
}

/// A temporary folder holding `files` (path relative to it, text): the fake sysfs and procfs
/// trees the readers are tested on.
#[cfg(test)]
pub(crate) fn fake_tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}
