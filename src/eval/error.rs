//! The error every data reader and the dataset loader return: which file, which field, what value.

use std::path::PathBuf;

/// A data file that could not be read or does not hold what it should.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file's contents break its format or disagree with the manifest.
    #[error("{path}: {field}: {message}")]
    Invalid {
        /// The file (for an archive member, `archive.npz:member.npy`).
        path: PathBuf,
        /// The field or property at fault (`magic`, `dims[1]`, `descr`, `payload`, ...).
        field: String,
        /// What is wrong, with the bad value.
        message: String,
    },
}

impl DataError {
    /// An [`DataError::Invalid`] for `path`.
    pub fn invalid(
        path: impl Into<PathBuf>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> DataError {
        DataError::Invalid {
            path: path.into(),
            field: field.into(),
            message: message.into(),
        }
    }

    /// An [`DataError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> DataError {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}
