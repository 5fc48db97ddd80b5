//! Datasets, model manifests and the accuracy and agreement metrics computed on them.
//!
//! * [`idx`], [`npy`], [`npz`] read array files (and [`npy`] writes them); [`read`] opens files
//!   (gzip or not) and picks the format by its first bytes.
//! * [`manifest`] reads the TOML beside a model, or builds the same from command-line flags.
//! * [`dataset`] turns a split into preprocessed f32 batches.
//! * [`metrics`] scores outputs: top-1 accuracy, top-1 agreement, KL divergence, differences.
//! * [`evaluate`](mod@evaluate) runs a dataset through a [`crate::runtime::Runtime`].

pub mod dataset;
pub mod error;
pub mod evaluate;
pub mod idx;
pub mod manifest;
pub mod metrics;
pub mod npy;
pub mod npz;
pub mod read;

pub use dataset::Dataset;
pub use error::DataError;
pub use evaluate::{evaluate, output_index, EvalError, EvalResult};
pub use manifest::{Manifest, ManifestError, ManifestFlags, OutputKind};
