//! Opening array files (gzip or not, IDX, NPY or NPZ) and reading their payloads with allocation
//! bounded by what the file really holds.
//!
//! Data files are untrusted: a header may promise any size. Payloads are read through
//! [`Read::take`] so that memory grows only with bytes actually present, never from a header
//! field alone, and a header that promises more than [`MAX_PAYLOAD_BYTES`] is refused outright.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use flate2::read::GzDecoder;

use crate::eval::error::DataError;
use crate::eval::{idx, npy, npz};
use crate::tensor::{checked_numel, Tensor, TensorData};

/// Largest payload a data file may declare (4 GiB): larger is refused before reading.
pub const MAX_PAYLOAD_BYTES: u64 = 4 << 30;

/// The first two bytes of every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// How elements are stored in a file, before they become a [`TensorData`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    U8,
    I8,
    I32,
    I64,
    F32,
    /// Read as f64 and narrowed to f32.
    F64,
}

impl Stored {
    /// Bytes per stored element.
    pub(crate) fn size(self) -> usize {
        match self {
            Stored::U8 | Stored::I8 => 1,
            Stored::I32 | Stored::F32 => 4,
            Stored::I64 | Stored::F64 => 8,
        }
    }
}

/// Byte order of multi-byte elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endian {
    Big,
    Little,
}

/// Payload bytes of `shape` with `elem` bytes per element: the product is checked for overflow
/// and against [`MAX_PAYLOAD_BYTES`] before anything is allocated.
pub(crate) fn payload_len(shape: &[usize], elem: usize, origin: &Path) -> Result<usize, DataError> {
    let bytes = checked_numel(shape)
        .and_then(|n| n.checked_mul(elem))
        .filter(|&b| b as u64 <= MAX_PAYLOAD_BYTES)
        .ok_or_else(|| {
            DataError::invalid(
                origin,
                "dims",
                format!(
                    "shape {shape:?} of {elem}-byte elements exceeds the {} GiB limit",
                    MAX_PAYLOAD_BYTES >> 30
                ),
            )
        })?;
    Ok(bytes)
}

/// Reads exactly `len` payload bytes; fewer is a truncated file, more is trailing garbage.
pub(crate) fn read_payload(
    reader: &mut dyn Read,
    len: usize,
    origin: &Path,
) -> Result<Vec<u8>, DataError> {
    let mut buf = Vec::with_capacity(len.min(1 << 20));
    reader
        .take(len as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| DataError::io(origin, e))?;
    if buf.len() < len {
        return Err(DataError::invalid(
            origin,
            "payload",
            format!(
                "truncated: the header promises {len} bytes but only {} follow",
                buf.len()
            ),
        ));
    }
    if buf.len() > len {
        return Err(DataError::invalid(
            origin,
            "payload",
            format!("trailing data after the {len} bytes the header promises"),
        ));
    }
    Ok(buf)
}

/// Reads exactly `buf.len()` header bytes; end of file first means a truncated header.
pub(crate) fn read_header(
    reader: &mut dyn Read,
    buf: &mut [u8],
    origin: &Path,
    field: &str,
) -> Result<(), DataError> {
    reader.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            DataError::invalid(
                origin,
                field,
                format!("file ends inside the header (wanted {} bytes)", buf.len()),
            )
        } else {
            DataError::io(origin, e)
        }
    })
}

/// Decodes a payload into typed elements (`bytes.len()` is a multiple of the element size).
pub(crate) fn decode(bytes: Vec<u8>, stored: Stored, endian: Endian) -> TensorData {
    fn words<const N: usize, T>(
        bytes: &[u8],
        endian: Endian,
        be: fn([u8; N]) -> T,
        le: fn([u8; N]) -> T,
    ) -> Vec<T> {
        let conv = if endian == Endian::Big { be } else { le };
        bytes
            .chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                conv(a)
            })
            .collect()
    }
    match stored {
        Stored::U8 => TensorData::U8(bytes),
        Stored::I8 => TensorData::I8(bytes.into_iter().map(|b| b as i8).collect()),
        Stored::I32 => TensorData::I32(words(
            &bytes,
            endian,
            i32::from_be_bytes,
            i32::from_le_bytes,
        )),
        Stored::I64 => TensorData::I64(words(
            &bytes,
            endian,
            i64::from_be_bytes,
            i64::from_le_bytes,
        )),
        Stored::F32 => TensorData::F32(words(
            &bytes,
            endian,
            f32::from_be_bytes,
            f32::from_le_bytes,
        )),
        Stored::F64 => TensorData::F32(
            words(&bytes, endian, f64::from_be_bytes, f64::from_le_bytes)
                .into_iter()
                .map(|x| x as f32)
                .collect(),
        ),
    }
}

/// Opens `path` for reading, transparently un-gzipping it when it starts with the gzip magic
/// (files named `*.gz` normally do; an uncompressed file under that name is read as is).
pub fn open(path: &Path) -> Result<BufReader<Box<dyn Read>>, DataError> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut raw = BufReader::new(file);
    let head = raw.fill_buf().map_err(|e| DataError::io(path, e))?;
    let inner: Box<dyn Read> = if head.starts_with(&GZIP_MAGIC) {
        Box::new(GzDecoder::new(raw))
    } else {
        Box::new(raw)
    };
    Ok(BufReader::new(inner))
}

/// Reads one array from an IDX, NPY or single-array NPZ file (optionally gzip-compressed, except
/// NPZ which is already a zip), choosing the format by the file's first bytes.
pub fn load_tensor(path: &Path) -> Result<Tensor, DataError> {
    let mut reader = open(path)?;
    let head = reader.fill_buf().map_err(|e| DataError::io(path, e))?;
    if head.starts_with(npy::MAGIC) {
        npy::read_npy_from(&mut reader, path)
    } else if head.starts_with(b"PK") {
        let mut arrays = npz::read_npz(path)?;
        if arrays.len() != 1 {
            let names: Vec<&str> = arrays.iter().map(|(n, _)| n.as_str()).collect();
            return Err(DataError::invalid(
                path,
                "arrays",
                format!("a sample or label file must hold exactly one array, found {names:?}"),
            ));
        }
        Ok(arrays.remove(0).1)
    } else if head.starts_with(&[0, 0]) {
        idx::read_idx_from(&mut reader, path)
    } else {
        let shown: Vec<u8> = head.iter().copied().take(4).collect();
        Err(DataError::invalid(
            path,
            "magic",
            format!("{shown:02x?} is not the start of an IDX, NPY or NPZ file"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn load_tensor_picks_the_format_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tensor::from_f32(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let mut npy_bytes = Vec::new();
        npy::write_npy_to(&mut npy_bytes, &t, Path::new("mem")).unwrap();
        let idx_bytes = [0, 0, 0x08, 1, 0, 0, 0, 2, 9, 8];

        // Names do not decide the format: contents do (a .gz name holding plain bytes is fine).
        let cases: [(&str, Vec<u8>); 4] = [
            ("a.npy", npy_bytes.clone()),
            ("a.npy.gz", gzip(&npy_bytes)),
            ("b.gz", idx_bytes.to_vec()),
            ("b.idx.gz", gzip(&idx_bytes)),
        ];
        for (name, bytes) in cases {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            let got = load_tensor(&p).unwrap();
            if name.starts_with('a') {
                assert_eq!(got, t, "{name}");
            } else {
                assert_eq!(got.data(), &TensorData::U8(vec![9, 8]), "{name}");
            }
        }

        let p = dir.path().join("c.csv");
        std::fs::write(&p, b"1,2,3\n").unwrap();
        let err = load_tensor(&p).unwrap_err().to_string();
        assert!(
            err.contains("c.csv: magic:") && err.contains("IDX, NPY or NPZ"),
            "{err}"
        );
        let err = load_tensor(&dir.path().join("missing.idx")).unwrap_err();
        assert!(matches!(err, DataError::Io { .. }), "{err}");
    }

    #[test]
    fn payload_limit_is_checked_before_reading() {
        let err = payload_len(&[1 << 31, 4], 1, Path::new("f")).unwrap_err();
        assert!(err.to_string().contains("exceeds the 4 GiB limit"), "{err}");
        assert_eq!(payload_len(&[3, 5], 4, Path::new("f")).unwrap(), 60);
    }
}
