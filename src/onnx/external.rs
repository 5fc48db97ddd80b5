//! Reading tensor bytes stored outside the `.onnx` file (`data_location = EXTERNAL`), only from
//! regular files inside the model's own folder.
//!
//! The `location` is untrusted: an absolute path, a `..` component, or a path that resolves
//! (following symlinks) outside the folder is refused. `offset` and `length` are checked against
//! the file's size before any byte is read or any buffer allocated, and two tensors may not claim
//! overlapping bytes, so the bytes read never exceed the bytes on disk.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use super::error::Problem;
use super::proto::StringStringEntryProto;

/// Reads external tensor data for one model, remembering which byte ranges are already used.
pub struct ExternalReader {
    /// The model's folder as given; `None` when the model came from bytes without a folder.
    base_dir: Option<PathBuf>,
    /// The folder canonicalized, computed on first use.
    canonical_base: Option<PathBuf>,
    /// Byte ranges already read, per canonical file: start → end.
    used: HashMap<PathBuf, BTreeMap<u64, u64>>,
}

/// The parsed `external_data` entries of one tensor.
struct Spec {
    location: String,
    offset: u64,
    length: Option<u64>,
}

impl ExternalReader {
    /// A reader resolving locations against `base_dir` (the folder holding the model file).
    pub fn new(base_dir: Option<&Path>) -> ExternalReader {
        ExternalReader {
            base_dir: base_dir.map(Path::to_path_buf),
            canonical_base: None,
            used: HashMap::new(),
        }
    }

    /// Reads the bytes an `external_data` list points at; they must be exactly `expected` bytes.
    pub fn read(
        &mut self,
        entries: &[StringStringEntryProto],
        expected: u64,
    ) -> Result<Vec<u8>, Problem> {
        let spec = parse(entries)?;
        let path = self.resolve(&spec.location)?;
        let io_err = |source| Problem::ExternalIo {
            path: path.clone(),
            source,
        };
        let mut file = File::open(&path).map_err(io_err)?;
        let meta = file.metadata().map_err(io_err)?;
        if !meta.is_file() {
            return Err(Problem::ExternalLocation {
                location: spec.location,
                why: "it is not a regular file",
            });
        }
        let file_size = meta.len();
        let length = spec
            .length
            .unwrap_or_else(|| file_size.saturating_sub(spec.offset));
        let end = spec.offset.checked_add(length).filter(|&e| e <= file_size);
        let Some(end) = end else {
            return Err(Problem::ExternalRange {
                location: spec.location,
                offset: spec.offset,
                length,
                file_size,
            });
        };
        if length != expected {
            return Err(Problem::BadValue {
                field: "external_data length",
                value: length.to_string(),
                why: if spec.length.is_some() {
                    "it differs from the byte size the tensor's dims and type need"
                } else {
                    "the rest of the file from `offset` differs from the byte size the tensor's dims and type need"
                },
            });
        }
        self.claim(&path, &spec.location, spec.offset, end)?;
        let capacity = usize::try_from(length).map_err(|_| Problem::TooLarge {
            what: "external tensor",
            size: length,
            limit: usize::MAX as u64,
        })?;
        file.seek(SeekFrom::Start(spec.offset)).map_err(io_err)?;
        let mut bytes = Vec::with_capacity(capacity);
        file.take(length).read_to_end(&mut bytes).map_err(io_err)?;
        if bytes.len() as u64 != length {
            return Err(Problem::ExternalRange {
                location: spec.location,
                offset: spec.offset,
                length,
                file_size: spec.offset + bytes.len() as u64,
            });
        }
        Ok(bytes)
    }

    /// The canonical path of `location`, refused unless it names something inside the folder.
    fn resolve(&mut self, location: &str) -> Result<PathBuf, Problem> {
        let refuse = |why| Problem::ExternalLocation {
            location: location.to_string(),
            why,
        };
        if location.is_empty() {
            return Err(refuse("it is empty"));
        }
        let rel = Path::new(location);
        if rel.is_absolute() || location.starts_with('/') || location.starts_with('\\') {
            return Err(refuse("it is an absolute path"));
        }
        for part in rel.components() {
            match part {
                Component::ParentDir => return Err(refuse("it contains `..`")),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(refuse("it is an absolute path"))
                }
                Component::CurDir | Component::Normal(_) => {}
            }
        }
        let base = match (&self.canonical_base, &self.base_dir) {
            (Some(base), _) => base.clone(),
            (None, None) => {
                return Err(refuse(
                    "the model was given as bytes without a folder to read it from",
                ))
            }
            (None, Some(dir)) => {
                let base = dir.canonicalize().map_err(|source| Problem::ExternalIo {
                    path: dir.clone(),
                    source,
                })?;
                self.canonical_base = Some(base.clone());
                base
            }
        };
        let joined = base.join(rel);
        let path = joined
            .canonicalize()
            .map_err(|source| Problem::ExternalIo {
                path: joined,
                source,
            })?;
        if !path.starts_with(&base) || path == base {
            return Err(refuse("it resolves outside the model's folder"));
        }
        Ok(path)
    }

    /// Records `offset..end` of `path` as used, refusing an overlap with a range used before.
    fn claim(&mut self, path: &Path, location: &str, offset: u64, end: u64) -> Result<(), Problem> {
        if offset == end {
            return Ok(());
        }
        let ranges = self.used.entry(path.to_path_buf()).or_default();
        let before = ranges.range(..end).next_back();
        if let Some((_, &prev_end)) = before {
            if prev_end > offset {
                return Err(Problem::ExternalOverlap {
                    location: location.to_string(),
                    offset,
                    end,
                });
            }
        }
        ranges.insert(offset, end);
        Ok(())
    }
}

/// Parses `location`, `offset`, `length` (and ignores `checksum`); other keys are refused.
fn parse(entries: &[StringStringEntryProto]) -> Result<Spec, Problem> {
    let mut location = None;
    let mut offset = None;
    let mut length = None;
    for entry in entries {
        let key = entry.key.as_deref().unwrap_or_default();
        let value = entry.value.as_deref().unwrap_or_default();
        let slot = match key {
            "location" => {
                set_once(&mut location, key, value, value.to_string())?;
                continue;
            }
            "offset" => &mut offset,
            "length" => &mut length,
            "checksum" => continue,
            _ => {
                return Err(Problem::BadValue {
                    field: "external_data key",
                    value: format!("`{key}`"),
                    why: "only `location`, `offset`, `length` and `checksum` are known",
                })
            }
        };
        let number = value.parse::<u64>().map_err(|_| Problem::BadValue {
            field: if key == "offset" {
                "external_data offset"
            } else {
                "external_data length"
            },
            value: format!("`{value}`"),
            why: "not a non-negative decimal integer",
        })?;
        set_once(slot, key, value, number)?;
    }
    Ok(Spec {
        location: location.ok_or(Problem::Missing {
            field: "external_data location",
        })?,
        offset: offset.unwrap_or(0),
        length,
    })
}

/// Stores `parsed` in `slot`, refusing a key given twice.
fn set_once<T>(slot: &mut Option<T>, key: &str, value: &str, parsed: T) -> Result<(), Problem> {
    if slot.is_some() {
        return Err(Problem::Duplicate {
            kind: "external_data key",
            name: key.to_string(),
            first: format!("an earlier entry; this one says `{value}`"),
        });
    }
    *slot = Some(parsed);
    Ok(())
}
