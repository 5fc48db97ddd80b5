//! `results.jsonl`: one [`Record`] per line, appended and fsynced as each cell ends, so that a
//! sweep killed at any moment (kill -9 included) loses at most the cell that was running. A
//! torn last line (the write the kill interrupted) is detected on reading and dropped with a
//! warning; when a sweep resumes, it is cut off before appending.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::sweep::record::Record;

/// The results file's name inside a sweep's output folder.
pub const RESULTS_FILE: &str = "results.jsonl";

/// Why the results file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O error on `path`.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file exists and the sweep was not asked to resume it.
    #[error(
        "{}: results of an earlier sweep are here; add --resume to continue it (cells already \
         ok are kept), or choose another --out folder",
        .0.display()
    )]
    Exists(PathBuf),
    /// A record could not be turned into JSON.
    #[error("cannot write a record as JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The merge output is one of its inputs.
    #[error("{}: the merge output must not be one of its inputs", .0.display())]
    OutputIsInput(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a results file holds.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every record that parsed, in file order.
    pub records: Vec<Record>,
    /// Lines that were dropped, each said in words.
    pub warnings: Vec<String>,
    /// Bytes up to the end of the last complete line (where appending may resume).
    pub complete_len: u64,
}

/// Reads every record of `path`. A last line without its newline is torn (the write was
/// interrupted) and is dropped with a warning; a complete line that does not parse is skipped
/// with a warning naming its line number.
pub fn read(path: &Path) -> Result<Loaded, StoreError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let mut loaded = Loaded::default();
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    loaded.complete_len = complete as u64;
    if complete < bytes.len() {
        loaded.warnings.push(format!(
            "{}: dropped a torn last line ({} bytes without a newline: the write of a cell \
             that was interrupted)",
            path.display(),
            bytes.len() - complete
        ));
    }
    for (i, line) in bytes[..complete].split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Record>(line) {
            Ok(r) => loaded.records.push(r),
            Err(e) => loaded.warnings.push(format!(
                "{}:{}: skipped a line that is not a record: {e}",
                path.display(),
                i + 1
            )),
        }
    }
    Ok(loaded)
}

/// An open results file that records are appended to.
#[derive(Debug)]
pub struct ResultsWriter {
    path: PathBuf,
    file: File,
}

impl ResultsWriter {
    /// Opens `dir/results.jsonl` (creating `dir`). With `resume`, an existing file is read and
    /// its torn last line cut off, and its records are returned; without, an existing file is
    /// an error ([`StoreError::Exists`]) so no result is mixed into another sweep's.
    pub fn open(dir: &Path, resume: bool) -> Result<(ResultsWriter, Loaded), StoreError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(RESULTS_FILE);
        let loaded = if path.exists() {
            if !resume {
                return Err(StoreError::Exists(path));
            }
            read(&path)?
        } else {
            Loaded::default()
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        if path.exists() && file.metadata().map_err(io(&path))?.len() > loaded.complete_len {
            file.set_len(loaded.complete_len).map_err(io(&path))?;
        }
        Ok((ResultsWriter { path, file }, loaded))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `record` as one line and waits until it is on disk.
    pub fn append(&mut self, record: &Record) -> Result<(), StoreError> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        self.file.write_all(&line).map_err(io(&self.path))?;
        self.file.sync_data().map_err(io(&self.path))
    }
}

/// Combines the records of `inputs` (results of several machines or runs) into `out`, in input
/// order, and returns the records written and the warnings of reading the inputs.
pub fn merge(inputs: &[PathBuf], out: &Path) -> Result<Loaded, StoreError> {
    let same = |a: &Path| match (a.canonicalize(), out.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == out,
    };
    if let Some(p) = inputs.iter().find(|p| same(p)) {
        return Err(StoreError::OutputIsInput(p.clone()));
    }
    let mut all = Loaded::default();
    for input in inputs {
        let loaded = read(input)?;
        all.records.extend(loaded.records);
        all.warnings.extend(loaded.warnings);
    }
    let mut text = Vec::new();
    for r in &all.records {
        serde_json::to_writer(&mut text, r)?;
        text.push(b'\n');
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let tmp = out.with_extension("jsonl.partial");
    let mut file = File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(&text).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, out).map_err(io(out))?;
    all.complete_len = text.len() as u64;
    Ok(all)
}
