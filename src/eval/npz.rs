//! NumPy `.npz` archives: a zip (stored or deflated) of `.npy` members, read in archive order.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use crate::eval::error::DataError;
use crate::eval::npy;
use crate::tensor::Tensor;

/// Reads every array of an `.npz` file, named as numpy names them (member name without `.npy`).
pub fn read_npz(path: &Path) -> Result<Vec<(String, Tensor)>, DataError> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut archive = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| DataError::invalid(path, "zip", e.to_string()))?;
    let mut arrays = Vec::with_capacity(archive.len().min(1024));
    for i in 0..archive.len() {
        let mut member = archive
            .by_index(i)
            .map_err(|e| DataError::invalid(path, format!("member {i}"), e.to_string()))?;
        let member_name = member
            .name()
            .map_err(|e| DataError::invalid(path, format!("member {i}"), e.to_string()))?
            .into_owned();
        let Some(name) = member_name.strip_suffix(".npy") else {
            return Err(DataError::invalid(
                path,
                format!("member {i}"),
                format!("`{member_name}` is not an .npy file"),
            ));
        };
        let origin = PathBuf::from(format!("{}:{member_name}", path.display()));
        arrays.push((name.to_string(), npy::read_npy_from(&mut member, &origin)?));
    }
    Ok(arrays)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use zip::write::SimpleFileOptions;

    fn npy_of(t: &Tensor) -> Vec<u8> {
        let mut v = Vec::new();
        npy::write_npy_to(&mut v, t, Path::new("mem")).unwrap();
        v
    }

    #[test]
    fn reads_stored_and_deflated_members_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npz");
        let x = Tensor::from_f32(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let y = Tensor::from_i64(vec![2], vec![3, 1]).unwrap();
        let mut w = zip::ZipWriter::new(File::create(&p).unwrap());
        let stored =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        let deflated =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        w.start_file("x.npy", stored).unwrap();
        w.write_all(&npy_of(&x)).unwrap();
        w.start_file("y.npy", deflated).unwrap();
        w.write_all(&npy_of(&y)).unwrap();
        w.finish().unwrap();

        let arrays = read_npz(&p).unwrap();
        assert_eq!(arrays, vec![("x".to_string(), x), ("y".to_string(), y)]);
    }

    #[test]
    fn broken_members_name_archive_and_member() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.npz");
        let x = Tensor::from_f32(vec![4], vec![1.0; 4]).unwrap();
        let bytes = npy_of(&x);
        let mut w = zip::ZipWriter::new(File::create(&p).unwrap());
        w.start_file("x.npy", SimpleFileOptions::default()).unwrap();
        w.write_all(&bytes[..bytes.len() - 2]).unwrap();
        w.finish().unwrap();
        let err = read_npz(&p).unwrap_err().to_string();
        assert!(
            err.contains("b.npz:x.npy") && err.contains("payload"),
            "{err}"
        );

        std::fs::write(&p, b"PK not a zip").unwrap();
        let err = read_npz(&p).unwrap_err().to_string();
        assert!(err.contains("b.npz: zip:"), "{err}");
    }
}
