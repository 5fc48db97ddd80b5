//! Reading a `results.jsonl` for the TUI: one [`Record`] per line, blank lines ignored.

use std::path::{Path, PathBuf};

use crate::sweep::record::Record;

/// A results file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A line is not a record.
    #[error("{path}:{line}: not a quench record: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What serde said.
        source: serde_json::Error,
    },
}

/// The records of a `results.jsonl`, in file order.
pub fn load(path: &Path) -> Result<Vec<Record>, ResultsError> {
    let text = std::fs::read_to_string(path).map_err(|source| ResultsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// The records of `text`, the content of `path` (named in errors).
pub fn parse(text: &str, path: &Path) -> Result<Vec<Record>, ResultsError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| ResultsError::Parse {
                path: path.to_path_buf(),
                line: i + 1,
                source,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_line_is_named_by_number() {
        let err = parse("\n{\"schema\":1}\n", Path::new("r.jsonl")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("r.jsonl:2: not a quench record"),
            "{err}"
        );
    }
}
